/* SPDX-License-Identifier: MIT */
/* GET /metrics: the Prometheus text exposition (format 0.0.4), one function per source of metrics. To add a
 * source, write a function that appends its families with the helpers below and add it to sources[]. */
#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>

#include "api/api-internal.h"

/* The reply being built: a memstream, so that any write may grow it; a write that fails (no memory) leaves the
 * stream in error, and the reply is then refused as a whole rather than sent cut short. */
struct MetricsText {
        FILE *f;
        char *buf;
        size_t len;
};

void metrics_append(MetricsText *m, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        (void) vfprintf(m->f, fmt, ap);
        va_end(ap);
}

void metrics_family(MetricsText *m, const char *name, const char *type, const char *help) {
        metrics_append(m, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void metrics_counter(MetricsText *m, const char *name, const char *help, uint64_t value) {
        metrics_family(m, name, "counter", help);
        metrics_append(m, "%s %" PRIu64 "\n", name, value);
}

void metrics_gauge(MetricsText *m, const char *name, const char *help, uint64_t value) {
        metrics_family(m, name, "gauge", help);
        metrics_append(m, "%s %" PRIu64 "\n", name, value);
}

void metrics_histogram(MetricsText *m, const char *name, const char *labels, const Histogram *h) {
        (void) histogram_render(h, m->f, name, labels);
}

/* --- keyd_request_duration_seconds: by route and status --- */

/* The statuses keyd answers with; anything else is counted as code="other". */
static const unsigned status_codes[] = { 200, 201, 204, 304, 400, 401, 403, 404, 405,
                                         409, 413, 415, 422, 429, 431, 500, 503 };
static_assert(ELEMENTSOF(status_codes) + 1 == API_STATUS_SLOTS, "one slot per status, and one for the others");

static size_t status_slot(unsigned status) {
        for (size_t i = 0; i < ELEMENTSOF(status_codes); i++)
                if (status_codes[i] == status)
                        return i;
        return API_STATUS_SLOTS - 1;
}

void api_observe_request(Api *a, const Request *rq, unsigned status) {
        RouteStats *s = rq->route >= 0 ? &a->route_stats[rq->route] : &a->unrouted;
        histogram_observe_since(&s->duration[status_slot(status)], rq->start);
}

/* The series of one route that have been observed (a scrape never shows thousands of empty series). Route names are
 * the router's own ("POST /v1/keyrings/{}/tokens"): nothing in them needs escaping in a label value. */
static void route_durations(MetricsText *m, const char *route, const RouteStats *s) {
        char labels[128];

        for (size_t i = 0; i < API_STATUS_SLOTS; i++) {
                if (histogram_count(&s->duration[i]) == 0)
                        continue;
                if (i < ELEMENTSOF(status_codes))
                        snprintf(labels, sizeof labels, "route=\"%s\",code=\"%u\"", route, status_codes[i]);
                else
                        snprintf(labels, sizeof labels, "route=\"%s\",code=\"other\"", route);
                metrics_histogram(m, "keyd_request_duration_seconds", labels, &s->duration[i]);
        }
}

/* --- the sources --- */

static void metrics_keyrings(MetricsText *m, Api *a) {
        Engine *e = a->engine;
        size_t rings, degraded = 0, disabled = 0;

        engine_read_lock(e);
        rings = engine_n_rings(e);
        for (size_t i = 0; i < rings; i++) {
                degraded += ring_degraded(engine_ring_at(e, i)) != NULL;
                disabled += ring_disabled(engine_ring_at(e, i));
        }
        engine_read_unlock(e);

        metrics_gauge(m, "keyd_keyrings", "Keyrings.", rings);
        metrics_gauge(m, "keyd_keyrings_degraded", "Keyrings that are degraded.", degraded);
        metrics_gauge(m, "keyd_keyrings_disabled", "Keyrings that are disabled.", disabled);
        metrics_counter(m, "keyd_keys_lost_total", "Keys found missing from the token (at start or while signing).",
                        engine_keys_lost(e));
        metrics_counter(m, "keyd_audit_events_dropped_total", "Committed audit records whose journal line was lost.",
                        engine_events_dropped(e));
}

/* What /metrics shows of one keyring, copied under the engine's read lock and printed after it. */
typedef struct RingSample {
        char name[KEYRING_NAME_MAX + 1];
        usec_t active_since; /* activate_at of the active key, 0 when there is none */
        usec_t next_due;     /* USEC_INFINITY: nothing scheduled */
        RingCounters counters;
        bool jwks_file, healthy;
} RingSample;

/* Per keyring: one series per family and keyring (keyring names need no escaping in a label value: [A-Za-z0-9._-]).
 * A gauge without a value (no active key, nothing scheduled) has no sample for that keyring. */
static void metrics_per_keyring(MetricsText *m, Api *a) {
        _cleanup_free_ RingSample *rs = NULL;
        Engine *e = a->engine;
        usec_t now = now_realtime();
        size_t n;

        engine_read_lock(e);
        n = engine_n_rings(e);
        rs = calloc(n + 1, sizeof *rs);
        for (size_t i = 0; rs && i < n; i++) {
                Ring *r = engine_ring_at(e, i);
                const StoreKey *k = ring_key_in_state(r, KEY_STATE_ACTIVE);
                snprintf(rs[i].name, sizeof rs[i].name, "%s", ring_name(r));
                rs[i].active_since = k ? MAX(k->activate_at, (usec_t) 1) : 0;
                rs[i].next_due = ring_next_due(r);
                ring_counters(r, &rs[i].counters);
                rs[i].jwks_file = ring_policy(r)->jwks_file;
                rs[i].healthy = ring_healthy(r);
        }
        engine_read_unlock(e);
        if (!rs)
                n = 0; /* no memory for the copy: the families, without samples */

        metrics_family(m, "keyd_keyring_healthy", "gauge",
                       "Whether the keyring keeps its promises (1), or is degraded or cannot sign (0), by keyring.");
        for (size_t i = 0; i < n; i++)
                metrics_append(m, "keyd_keyring_healthy{keyring=\"%s\"} %d\n", rs[i].name, rs[i].healthy);
        metrics_family(m, "keyd_keyring_active_key_age_seconds", "gauge",
                       "Time since the keyring's active key became active, by keyring.");
        for (size_t i = 0; i < n; i++)
                if (rs[i].active_since)
                        metrics_append(m, "keyd_keyring_active_key_age_seconds{keyring=\"%s\"} %" PRIu64 "\n",
                                       rs[i].name, (uint64_t) (now - MIN(now, rs[i].active_since)) / USEC_PER_SEC);
        metrics_family(m, "keyd_keyring_next_transition_timestamp_seconds", "gauge",
                       "When keyd will next change one of the keyring's keys (Unix time), by keyring.");
        for (size_t i = 0; i < n; i++)
                if (rs[i].next_due != USEC_INFINITY)
                        metrics_append(m, "keyd_keyring_next_transition_timestamp_seconds{keyring=\"%s\"} %" PRIu64
                                          "\n",
                                       rs[i].name, (uint64_t) (rs[i].next_due / USEC_PER_SEC));
        metrics_family(m, "keyd_rotations_total", "counter",
                       "Keys that became active, other than a keyring's first: rotations, and standbys promoted after "
                       "a revocation or a repair, by keyring.");
        for (size_t i = 0; i < n; i++)
                metrics_append(m, "keyd_rotations_total{keyring=\"%s\"} %" PRIu64 "\n", rs[i].name,
                               rs[i].counters.rotations);
        metrics_family(m, "keyd_revocations_total", "counter", "Keys revoked (revoke, disable), by keyring.");
        for (size_t i = 0; i < n; i++)
                metrics_append(m, "keyd_revocations_total{keyring=\"%s\"} %" PRIu64 "\n", rs[i].name,
                               rs[i].counters.revocations);
        metrics_family(m, "keyd_jwks_file_failures_total", "counter",
                       "Writes of the keyring's jwks-file that failed, by keyring (keyrings with a jwks-file).");
        for (size_t i = 0; i < n; i++)
                if (rs[i].jwks_file)
                        metrics_append(m, "keyd_jwks_file_failures_total{keyring=\"%s\"} %" PRIu64 "\n",
                                       rs[i].name, rs[i].counters.jwks_file_failures);
}

static void metrics_signing(MetricsText *m, Api *a) {
        metrics_counter(m, "keyd_tokens_minted_total", "Tokens minted.", a->minted);
        metrics_counter(m, "keyd_jws_signed_total", "JWS signed (/jws).", a->signed_jws);
        metrics_counter(m, "keyd_data_signed_total", "Raw signatures (/sign).", a->signed_raw);
        metrics_family(m, "keyd_verify_total", "counter", "Tokens verified, by verdict.");
        metrics_append(m, "keyd_verify_total{valid=\"true\"} %" PRIu64 "\n", (uint64_t) a->verified_ok);
        metrics_append(m, "keyd_verify_total{valid=\"false\"} %" PRIu64 "\n", (uint64_t) a->verified_bad);
        metrics_counter(m, "keyd_authz_denied_total", "Requests refused for want of a role (403).", a->denied);
}

/* The head of the audit chain and its last checkpoint, read from the database (a connection of this request's own,
 * read-only, as GET /v1/audit does): every writer's records count, the API's and the engine's. */
static void metrics_audit_chain(MetricsText *m, Api *a) {
        StoreCheckpoint **cps = NULL;
        uint64_t head = 0, cp = 0;
        bool have_head = false;
        usec_t cp_time = 0;
        Store *s = NULL;

        if (a->cfg.db_path && store_open(a->cfg.db_path, STORE_READ_ONLY, &s) >= 0) {
                have_head = store_audit_head(s, &head, NULL) >= 0;
                if (store_checkpoint_latest(s, &cp, NULL, NULL, NULL) >= 0 &&
                    store_checkpoint_list(s, cp - 1, 1, &cps, NULL) >= 0 && cps[0] && cps[0]->seq == cp)
                        cp_time = cps[0]->time;
                store_checkpoint_list_free(cps);
                store_close(s);
        }
        metrics_family(m, "keyd_audit_head_seq", "gauge", "The sequence number of the last audit record.");
        if (have_head)
                metrics_append(m, "keyd_audit_head_seq %" PRIu64 "\n", head);
        metrics_family(m, "keyd_audit_checkpoint_seq", "gauge",
                       "The audit record the last signed checkpoint covers (0: none yet).");
        if (have_head)
                metrics_append(m, "keyd_audit_checkpoint_seq %" PRIu64 "\n", cp);
        metrics_family(m, "keyd_audit_checkpoint_age_seconds", "gauge",
                       "Time since the last audit checkpoint was signed (no sample while there is none).");
        if (cp_time) {
                usec_t now = now_realtime();
                metrics_append(m, "keyd_audit_checkpoint_age_seconds %" PRIu64 "\n",
                               (uint64_t) (now > cp_time ? now - cp_time : 0) / USEC_PER_SEC);
        }
}

static void metrics_audit(MetricsText *m, Api *a) {
        metrics_counter(m, "keyd_audit_failures_total",
                        "Requests failed because their audit record could not be written.", a->audit_failures);
        metrics_counter(m, "keyd_audit_commits_total", "Transactions committed by the audit group commit.",
                        audit_log_commits(a->audit));
        metrics_family(m, "keyd_audit_commit_seconds", "histogram",
                       "Time of each audit group commit, from BEGIN to the end of COMMIT.");
        metrics_histogram(m, "keyd_audit_commit_seconds", NULL, audit_log_commit_times(a->audit));
}

static void metrics_requests(MetricsText *m, Api *a) {
        metrics_gauge(m, "keyd_connections", "Open connections to the API socket.", a->connections);
        metrics_family(m, "keyd_requests_total", "counter", "Requests, by route.");
        for (size_t i = 0; i < api_n_routes(); i++)
                metrics_append(m, "keyd_requests_total{route=\"%s\"} %" PRIu64 "\n", api_route_name(i),
                               (uint64_t) a->route_stats[i].requests);
        metrics_family(m, "keyd_request_errors_total", "counter",
                       "Requests answered with a status of 400 or more, by route.");
        for (size_t i = 0; i < api_n_routes(); i++)
                metrics_append(m, "keyd_request_errors_total{route=\"%s\"} %" PRIu64 "\n", api_route_name(i),
                               (uint64_t) a->route_stats[i].errors);
        metrics_family(m, "keyd_request_duration_seconds", "histogram",
                       "Time from the request's headers to its reply being queued, by route and status.");
        for (size_t i = 0; i < api_n_routes(); i++)
                route_durations(m, api_route_name(i), &a->route_stats[i]);
        route_durations(m, "unmatched", &a->unrouted);
}

static void metrics_token(MetricsText *m, Api *a) {
        Hsm *h = engine_hsm(a->engine);
        HsmErrorCount errors[64];
        HsmHealth th;
        size_t n;

        hsm_health(h, &th);
        metrics_gauge(m, "keyd_token_up", "Whether the token can sign (0: down, being re-initialised).", th.up);
        metrics_counter(m, "keyd_token_reinit_total", "Times the token's module was re-initialised after a fault.",
                        th.reinits);
        metrics_family(m, "keyd_pkcs11_sessions", "gauge", "Signing sessions open, by state.");
        metrics_append(m, "keyd_pkcs11_sessions{state=\"busy\"} %u\n", th.sessions_busy);
        metrics_append(m, "keyd_pkcs11_sessions{state=\"idle\"} %u\n", th.sessions_idle);
        metrics_gauge(m, "keyd_pkcs11_sessions_max", "The most signing sessions keyd opens (max-sessions).",
                      th.max_sessions);
        metrics_gauge(m, "keyd_pkcs11_stuck_calls", "Signing calls abandoned after sign-timeout, still in the token.",
                      th.sessions_stuck);
        metrics_family(m, "keyd_pkcs11_errors_total", "counter", "Errors the token returned, by function and CK_RV.");
        n = hsm_errors(h, errors, ELEMENTSOF(errors));
        for (size_t i = 0; i < MIN(n, ELEMENTSOF(errors)); i++)
                metrics_append(m, "keyd_pkcs11_errors_total{function=\"%s\",rv=\"%s\"} %" PRIu64 "\n",
                               errors[i].function, hsm_rv_name(errors[i].rv), errors[i].count);
        metrics_family(m, "keyd_pkcs11_sign_seconds", "histogram",
                       "The token's time per signature (C_SignInit + C_Sign), by algorithm.");
        for (KeydAlg alg = 0; alg < _KEYD_ALG_MAX; alg++) {
                char labels[32];
                const Histogram *t = hsm_sign_times(h, alg);
                if (histogram_count(t) == 0)
                        continue;
                snprintf(labels, sizeof labels, "alg=\"%s\"", keyd_alg_to_string(alg));
                metrics_histogram(m, "keyd_pkcs11_sign_seconds", labels, t);
        }
}

static void metrics_build(MetricsText *m, Api *a) {
        (void) a;
        metrics_family(m, "keyd_build_info", "gauge", "The version of keyd running (always 1).");
        metrics_append(m, "keyd_build_info{version=\"%s\"} 1\n", KEYD_VERSION);
}

typedef void (*MetricsSource)(MetricsText *m, Api *a);

static const MetricsSource sources[] = {
        metrics_keyrings,    metrics_per_keyring, metrics_signing, metrics_audit,
        metrics_audit_chain, metrics_requests,    metrics_token,   metrics_build,
};

int api_metrics_render(Api *a, char **ret) {
        MetricsText m = { 0 };
        bool failed;

        m.f = open_memstream(&m.buf, &m.len);
        if (!m.f)
                return -ENOMEM;
        for (size_t i = 0; i < ELEMENTSOF(sources); i++)
                sources[i](&m, a);
        failed = ferror(m.f);
        if (fclose(m.f) != 0 || failed) {
                free(m.buf);
                return -ENOMEM;
        }
        *ret = m.buf;
        return 0;
}

int h_metrics(Request *rq, const char *arg, Reply *rp) {
        char *text;
        (void) arg;

        if (api_metrics_render(rq->api, &text) < 0)
                return reply_errno(rp, -ENOMEM, "metrics");
        rp->status = MHD_HTTP_OK;
        rp->text = text;
        rp->content_type = API_METRICS_TYPE;
        return 0;
}
