/* SPDX-License-Identifier: MIT */
/* Health and metrics. */
#include <stdarg.h>
#include <stdio.h>

#include "api/api-internal.h"
#include "common/crypto-util.h"

int h_healthz(Request *rq, const char *arg, Reply *rp) {
        Engine *e = rq->api->engine;
        json_t *degraded = json_array(), *o;
        char storage[128];
        size_t n;
        (void) arg;

        engine_read_lock(e);
        n = engine_n_rings(e);
        /* Degraded, or unable to sign for any reason (an active key that could not be opened): never "ok". */
        for (size_t i = 0; degraded && i < n; i++) {
                Ring *r = engine_ring_at(e, i);
                if (!ring_healthy(r))
                        json_array_append_new(degraded, json_string(ring_name(r)));
        }
        engine_read_unlock(e);
        o = json_pack("{s:s, s:I, s:o, s:s}", "status", json_array_size(degraded) ? "degraded" : "ok", "keyrings",
                      (json_int_t) n, "degraded", degraded, "version", KEYD_VERSION);
        /* A database that cannot be written fails every mint and change: not healthy, whatever the keyrings say. */
        if (o && store_health_fault(rq->api->cfg.storage, NULL, storage, sizeof storage)) {
                json_object_set_new(o, "status", json_string("unavailable"));
                json_object_set_new(o, "storage", json_string(storage));
                return reply_json(rp, MHD_HTTP_SERVICE_UNAVAILABLE, o);
        }
        return reply_json(rp, MHD_HTTP_OK, o);
}

static void append(char **buf, size_t *len, size_t *cap, const char *fmt, ...) _printf_(4, 5);
static void append(char **buf, size_t *len, size_t *cap, const char *fmt, ...) {
        va_list ap;
        for (;;) {
                va_start(ap, fmt);
                int n = *buf ? vsnprintf(*buf + *len, *cap - *len, fmt, ap) : -1;
                va_end(ap);
                if (n >= 0 && (size_t) n < *cap - *len) {
                        *len += (size_t) n;
                        return;
                }
                size_t ncap = *cap ? *cap * 2 : 4096;
                char *nb = realloc(*buf, ncap);
                if (!nb)
                        return;
                *buf = nb;
                *cap = ncap;
        }
}

int h_metrics(Request *rq, const char *arg, Reply *rp) {
        Api *a = rq->api;
        Engine *e = a->engine;
        char *buf = NULL;
        size_t len = 0, cap = 0, rings, degraded = 0, disabled = 0;
        (void) arg;

        engine_read_lock(e);
        rings = engine_n_rings(e);
        for (size_t i = 0; i < rings; i++) {
                degraded += ring_degraded(engine_ring_at(e, i)) != NULL;
                disabled += ring_disabled(engine_ring_at(e, i));
        }
        engine_read_unlock(e);

        append(&buf, &len, &cap, "# HELP keyd_keyrings Keyrings.\n# TYPE keyd_keyrings gauge\nkeyd_keyrings %zu\n",
               rings);
        append(&buf, &len, &cap, "# TYPE keyd_keyrings_degraded gauge\nkeyd_keyrings_degraded %zu\n", degraded);
        append(&buf, &len, &cap, "# TYPE keyd_keyrings_disabled gauge\nkeyd_keyrings_disabled %zu\n", disabled);
        append(&buf, &len, &cap,
               "# HELP keyd_keys_lost_total Keys found missing from the token (at start or while signing).\n"
               "# TYPE keyd_keys_lost_total counter\nkeyd_keys_lost_total %llu\n",
               (unsigned long long) engine_keys_lost(e));
        append(&buf, &len, &cap,
               "# HELP keyd_audit_events_dropped_total Committed audit records whose journal line was lost.\n"
               "# TYPE keyd_audit_events_dropped_total counter\nkeyd_audit_events_dropped_total %llu\n",
               (unsigned long long) engine_events_dropped(e));
        append(&buf, &len, &cap,
               "# TYPE keyd_tokens_minted_total counter\nkeyd_tokens_minted_total %llu\n"
               "# TYPE keyd_jws_signed_total counter\nkeyd_jws_signed_total %llu\n"
               "# TYPE keyd_data_signed_total counter\nkeyd_data_signed_total %llu\n"
               "# TYPE keyd_verify_total counter\nkeyd_verify_total{valid=\"true\"} %llu\n"
               "keyd_verify_total{valid=\"false\"} %llu\n"
               "# TYPE keyd_authz_denied_total counter\nkeyd_authz_denied_total %llu\n"
               "# TYPE keyd_audit_failures_total counter\nkeyd_audit_failures_total %llu\n"
               "# TYPE keyd_audit_commits_total counter\nkeyd_audit_commits_total %llu\n"
               "# TYPE keyd_connections gauge\nkeyd_connections %u\n",
               (unsigned long long) a->minted, (unsigned long long) a->signed_jws, (unsigned long long) a->signed_raw,
               (unsigned long long) a->verified_ok, (unsigned long long) a->verified_bad,
               (unsigned long long) a->denied, (unsigned long long) a->audit_failures,
               (unsigned long long) audit_log_commits(a->audit), (unsigned) a->connections);
        append(&buf, &len, &cap, "# TYPE keyd_requests_total counter\n");
        for (size_t i = 0; i < api_n_routes(); i++)
                append(&buf, &len, &cap, "keyd_requests_total{route=\"%s\"} %llu\n", api_route_name(i),
                       (unsigned long long) a->route_stats[i].requests);
        append(&buf, &len, &cap, "# TYPE keyd_request_errors_total counter\n");
        for (size_t i = 0; i < api_n_routes(); i++)
                append(&buf, &len, &cap, "keyd_request_errors_total{route=\"%s\"} %llu\n", api_route_name(i),
                       (unsigned long long) a->route_stats[i].errors);
        if (!buf)
                return reply_errno(rp, -ENOMEM, "metrics");
        rp->status = MHD_HTTP_OK;
        rp->text = buf;
        rp->content_type = "text/plain; version=0.0.4";
        return 0;
}
