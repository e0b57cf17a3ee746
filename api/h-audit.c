/* SPDX-License-Identifier: MIT */
/* The audit chain (admin): read it with filters, verify it. Reads open a read-only connection of their own, so that
 * a long read never holds up the event loop or the group commit. */
#include <stdio.h>

#include "api/api-internal.h"
#include "common/crypto-util.h"
#include "rotation/lifecycle.h"
#include "rotation/policy.h"

#define AUDIT_SCAN_MAX 100000 /* seqs one page examines at most, whatever its filters (about 0.1 s of SQLite) */

/* A record as the API shows it: time in RFC 3339 for people, time_us as hashed (µs) for a verifier. NULL for want of
 * memory. */
static json_t *audit_record_to_json(const StoreAudit *a) {
        json_t *detail = a->detail ? json_loads(a->detail, 0, NULL) : json_null();
        return json_pack("{s:I, s:o, s:I, s:I, s:I, s:s?, s:s, s:s?, s:s?, s:s, s:o, s:s, s:s}", "seq",
                         (json_int_t) a->seq, "time", json_time(a->time), "time_us", (json_int_t) a->time, "uid",
                         (json_int_t) a->uid, "pid", (json_int_t) a->pid, "comm", a->comm, "action", a->action,
                         "keyring", a->keyring, "kid", a->kid, "result", a->result, "detail", detail ?: json_null(),
                         "prev_hash", a->prev_hash, "hash", a->hash);
}

/* An action as keyd names them: "token.mint", "authz.denied". */
static bool action_valid(const char *s) {
        size_t n = strlen(s);
        return n > 0 && n <= 64 && strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789._") == n;
}

/* The query of GET /v1/audit into q (its strings in bufs): 0, or -1 with rp filled (400). */
static int audit_query_parse(Request *rq, StoreAuditQuery *q, char bufs[4][1100], Reply *rp) {
        static const char *const params[] = { "after", "before", "limit", "order", "keyring", "kid",
                                              "action", "sub",    "uid",   "since", "until", NULL };
        const char *order = api_query_get(rq, "order"), *uid = api_query_get(rq, "uid");
        uint64_t limit, u;

        if (api_query_check(rq, params, rp) < 0)
                return -1;
        *q = (StoreAuditQuery){ .scan_max = AUDIT_SCAN_MAX };
        if (api_query_uint(rq, "after", 0, INT64_MAX, &q->after) < 0 ||
            api_query_uint(rq, "before", 0, INT64_MAX, &q->before) < 0 ||
            api_query_uint(rq, "limit", 100, 1000, &limit) < 0 || limit == 0)
                return reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request",
                                   "after, before: sequence numbers; limit: 1 to 1000");
        q->limit = (size_t) limit;
        if (order && !streq(order, "asc") && !streq(order, "desc"))
                return reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request", "order: asc or desc");
        q->descending = order && streq(order, "desc");
        if (api_query_text(rq, "keyring", bufs[0], sizeof bufs[0], &q->keyring) < 0 ||
            (q->keyring && !keyring_name_valid(q->keyring)))
                return reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request", "keyring: a keyring name");
        if (api_query_text(rq, "kid", bufs[1], STORE_KID_MAX + 1, &q->kid) < 0)
                return reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request", "kid: 1 to %d characters", STORE_KID_MAX);
        if (api_query_text(rq, "action", bufs[2], sizeof bufs[2], &q->action) < 0 ||
            (q->action && !action_valid(q->action)))
                return reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request",
                                   "action: an audit action (1 to 64 of a-z 0-9 . _)");
        if (api_query_text(rq, "sub", bufs[3], 1025, &q->sub) < 0)
                return reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request",
                                   "sub: 1 to 1024 bytes of UTF-8, percent-encoded");
        if (uid) {
                /* -1 is keyd itself; else a uid (uid_t, less (uid_t) -1). */
                if (streq(uid, "-1"))
                        q->uid = -1;
                else if (parse_uint64(uid, UINT32_MAX - 1, &u) >= 0)
                        q->uid = (int64_t) u;
                else
                        return reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request",
                                           "uid: a uid, or -1 for keyd itself");
                q->has_uid = true;
        }
        if (api_query_time(rq, "since", &q->since) < 0 || api_query_time(rq, "until", &q->until) < 0)
                return reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request",
                                   "since, until: seconds since the epoch, or RFC 3339");
        return 0;
}

int h_audit_list(Request *rq, const char *arg, Reply *rp) {
        StoreAuditQuery q;
        char bufs[4][1100];
        Store *s = NULL;
        StoreAudit **recs = NULL;
        size_t n = 0;
        uint64_t next = 0, head = 0;
        bool more = false;
        json_t *list;
        (void) arg;

        if (audit_query_parse(rq, &q, bufs, rp) < 0)
                return -EINVAL;
        int r = store_open(rq->api->cfg.db_path, STORE_READ_ONLY, &s);
        if (r >= 0)
                r = store_audit_query(s, &q, &recs, &n, &next, &more);
        if (r >= 0)
                r = store_audit_range(s, NULL, &head);
        store_close(s);
        if (r < 0)
                return reply_errno(rp, r, "audit");
        list = json_array();
        for (size_t i = 0; list && i < n; i++)
                if (json_array_append_new(list, audit_record_to_json(recs[i])) < 0)
                        list = (json_decref(list), NULL);
        store_audit_list_free(recs);
        return reply_json(rp, MHD_HTTP_OK,
                          json_pack("{s:o, s:I, s:b, s:I}", "records", list, "next", (json_int_t) next, "more", more,
                                    "head", (json_int_t) head));
}

int h_audit_verify(Request *rq, const char *arg, Reply *rp) {
        AuditVerifyResult res = { 0 };
        Store *s = NULL;
        (void) arg;
        int r = store_open(rq->api->cfg.db_path, STORE_READ_ONLY, &s);
        if (r >= 0)
                r = audit_verify(s, &res);
        store_close(s);
        if (r < 0 && r != -EBADMSG)
                return reply_errno(rp, r, "audit");
        return reply_json(rp, MHD_HTTP_OK,
                          json_pack("{s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:s}", "ok", r == 0, "records",
                                    (json_int_t) res.records, "head_seq", (json_int_t) res.head_seq, "first_seq",
                                    (json_int_t) (res.anchor_seq + 1), "anchor_seq", (json_int_t) res.anchor_seq,
                                    "checkpoint_seq", (json_int_t) res.checkpoint_seq, "bad_seq",
                                    (json_int_t) res.bad_seq, "message", res.message));
}

/* ---- retention: checkpoints on demand, keys, exports, prune ---- */

/* A body's members are among allowed (NULL-terminated), else 400 with rp filled: -1. */
static int body_members(Request *rq, const char *const *allowed, Reply *rp) {
        const char *key;
        json_t *v;
        json_object_foreach(rq->json, key, v) {
                bool ok = false;
                for (const char *const *a = allowed; *a; a++)
                        ok |= streq(*a, key);
                if (!ok)
                        return reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request", "unknown member '%s'", key);
        }
        return 0;
}

/* An optional member as a sequence number 1 ... INT64_MAX: 0 when absent; -1 (400 in rp) when not one. */
static int body_seq(Request *rq, const char *key, bool required, uint64_t *ret, Reply *rp) {
        json_t *v = json_object_get(rq->json, key);
        *ret = 0;
        if (!v && !required)
                return 0;
        if (!json_is_integer(v) || json_integer_value(v) < 1)
                return reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request", "%s: a sequence number (1 or more)", key);
        *ret = (uint64_t) json_integer_value(v);
        return 0;
}

static bool hex64(const char *s) {
        return s && strlen(s) == STORE_HASH_HEX && strspn(s, "0123456789abcdef") == STORE_HASH_HEX;
}

/* The public key kid names as the API shows it: {kid, keyring, alg, state, jwk}; NULL if there is no such key. */
static json_t *audit_key_json(Store *s, const char *kid, int *ret_error) {
        StoreKey *k = NULL;
        *ret_error = store_key_get_by_kid(s, kid, &k);
        if (*ret_error < 0)
                return NULL;
        json_t *jwk = json_loads(k->jwk, 0, NULL);
        json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:o}", "kid", k->kid, "keyring", k->keyring, "alg",
                              keyd_alg_to_string(k->alg), "state", key_state_to_string(k->state), "jwk",
                              jwk ?: json_null());
        store_key_free(k);
        if (!o)
                *ret_error = -ENOMEM;
        return o;
}

/* The first checkpoint at or after seq at_least, with its key: {seq, hash, time, time_s, kid, jws, key}. 0 and *ret,
 * -ENOENT when there is none yet. */
static int checkpoint_at_least(Api *a, uint64_t at_least, json_t **ret) {
        StoreCheckpoint **l = NULL;
        Store *s = NULL;
        size_t n = 0;
        int r = store_open(a->cfg.db_path, STORE_READ_ONLY, &s);
        if (r >= 0)
                r = store_checkpoint_list(s, at_least - 1, 1, &l, &n);
        if (r >= 0 && n == 0)
                r = -ENOENT;
        if (r >= 0) {
                int kr;
                json_t *key = audit_key_json(s, l[0]->kid, &kr);
                *ret = json_pack("{s:I, s:s, s:o, s:I, s:s, s:s, s:o}", "seq", (json_int_t) l[0]->seq, "hash",
                                 l[0]->hash, "time", json_time(l[0]->time), "time_s",
                                 (json_int_t) (l[0]->time / USEC_PER_SEC), "kid", l[0]->kid, "jws", l[0]->jws, "key",
                                 key ?: json_null());
                if (!*ret)
                        r = -ENOMEM;
        }
        store_checkpoint_list_free(l);
        store_close(s);
        return r;
}

static int checkpoint_on_loop(Engine *e, void *arg) {
        (void) arg;
        return engine_checkpoint(e, NULL, NULL);
}

int h_audit_checkpoint(Request *rq, const char *arg, Reply *rp) {
        static const char *const members[] = { "at_least", NULL };
        uint64_t at_least, first = 0, last = 0;
        json_t *cp = NULL;
        Store *s = NULL;
        (void) arg;

        if (rq->json && (body_members(rq, members, rp) < 0 || body_seq(rq, "at_least", false, &at_least, rp) < 0))
                return -1;
        int r = store_open(rq->api->cfg.db_path, STORE_READ_ONLY, &s);
        if (r >= 0)
                r = store_audit_range(s, &first, &last);
        store_close(s);
        if (r < 0)
                return reply_errno(rp, r, "audit");
        if (!rq->json || !json_object_get(rq->json, "at_least"))
                at_least = MAX(last, (uint64_t) 1);
        if (at_least < first || at_least > last)
                return reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request",
                                   "at_least: a record of the log (%llu to %llu)", (unsigned long long) first,
                                   (unsigned long long) last);
        /* One that covers the record already, or sign the head now (on the event loop, as every checkpoint). */
        r = checkpoint_at_least(rq->api, at_least, &cp);
        bool signed_now = r == -ENOENT;
        if (signed_now) {
                r = rq->api->call(rq->api->call_userdata, checkpoint_on_loop, NULL);
                if (r >= 0)
                        r = checkpoint_at_least(rq->api, at_least, &cp);
        }
        if (r < 0)
                return reply_write_errno(rq, rp, r, "audit checkpoint");
        return reply_json(rp, signed_now ? MHD_HTTP_CREATED : MHD_HTTP_OK,
                          json_pack("{s:o, s:b}", "checkpoint", cp, "signed", signed_now));
}

int h_audit_key(Request *rq, const char *kid, Reply *rp) {
        Store *s = NULL;
        json_t *o = NULL;
        int r;

        if (!*kid || strlen(kid) > STORE_KID_MAX)
                return reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request", "invalid kid");
        r = store_open(rq->api->cfg.db_path, STORE_READ_ONLY, &s);
        if (r >= 0)
                o = audit_key_json(s, kid, &r);
        store_close(s);
        if (r < 0)
                return reply_errno(rp, r, kid);
        return reply_json(rp, MHD_HTTP_OK, o);
}

/* A connection of the request's own that can write (exports and prunes do not go through the event loop). */
static int open_rw(Request *rq, Store **ret) {
        int r = store_open(rq->api->cfg.db_path, 0, ret);
        if (r >= 0)
                store_set_health(*ret, rq->api->cfg.storage);
        return r;
}

int h_audit_export(Request *rq, const char *arg, Reply *rp) {
        static const char *const members[] = { "first", "last", "checkpoint_seq", "last_hash", "sha256", NULL };
        const char *last_hash = json_string_value(json_object_get(rq->json, "last_hash")),
                   *sha256 = json_string_value(json_object_get(rq->json, "sha256"));
        char message[AUDIT_MESSAGE_MAX];
        StoreAuditExport e = { .time = now_realtime() };
        Actor actor = api_actor(rq);
        Store *s = NULL;
        (void) arg;

        if (body_members(rq, members, rp) < 0 || body_seq(rq, "first", true, &e.first, rp) < 0 ||
            body_seq(rq, "last", true, &e.last, rp) < 0 ||
            body_seq(rq, "checkpoint_seq", true, &e.checkpoint_seq, rp) < 0)
                return -1;
        if (!hex64(last_hash) || !hex64(sha256))
                return reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request",
                                   "last_hash, sha256: 64 lower case hex digits");
        memcpy(e.last_hash, last_hash, sizeof e.last_hash);
        memcpy(e.sha256, sha256, sizeof e.sha256);
        int r = open_rw(rq, &s);
        if (r >= 0)
                r = audit_export_seal(s, &e, &actor, e.time, message);
        store_close(s);
        /* A refusal (nothing written) gets its api.refused record from the router. */
        if (r == -EINVAL || r == -EBADMSG || r == -ENOENT)
                return reply_error(rp, r == -EINVAL ? MHD_HTTP_UNPROCESSABLE_CONTENT : MHD_HTTP_CONFLICT,
                                   r == -EINVAL ? "unprocessable" : "conflict", "%s", message);
        if (r < 0)
                return reply_write_errno(rq, rp, r, "audit export");
        return reply_json(rp, MHD_HTTP_CREATED,
                          json_pack("{s:I, s:I, s:I, s:s, s:s, s:o}", "first", (json_int_t) e.first, "last",
                                    (json_int_t) e.last, "checkpoint_seq", (json_int_t) e.checkpoint_seq, "last_hash",
                                    e.last_hash, "sha256", e.sha256, "exported_at", json_time(e.time)));
}

int h_audit_prune(Request *rq, const char *arg, Reply *rp) {
        static const char *const members[] = { "before", NULL };
        static pthread_mutex_t one_at_a_time = PTHREAD_MUTEX_INITIALIZER;
        AuditPruneResult res = { 0 };
        Actor actor = api_actor(rq);
        Store *s = NULL;
        uint64_t before;
        (void) arg;

        if (body_members(rq, members, rp) < 0 || body_seq(rq, "before", true, &before, rp) < 0)
                return -1;
        if (pthread_mutex_trylock(&one_at_a_time) != 0)
                return reply_error(rp, MHD_HTTP_CONFLICT, "conflict", "a prune is running");
        int r = open_rw(rq, &s);
        if (r >= 0)
                r = audit_prune(s, before, &actor, now_realtime(), &res);
        store_close(s);
        pthread_mutex_unlock(&one_at_a_time);
        /* Refused: nothing was pruned (the router audits the refusal). */
        if (r == -EPERM || r == -EBADMSG || r == -EAGAIN || r == -EINVAL)
                return reply_error(rp, r == -EINVAL ? MHD_HTTP_UNPROCESSABLE_CONTENT : MHD_HTTP_CONFLICT,
                                   r == -EINVAL ? "unprocessable" : "conflict", "%s", res.message);
        if (r < 0 && res.record_seq == 0)
                return reply_write_errno(rq, rp, r, "audit prune");
        if (r < 0)
                return reply_error(rp, MHD_HTTP_SERVICE_UNAVAILABLE, "storage_unavailable", "%s", res.message);
        return reply_json(rp, MHD_HTTP_OK,
                          json_pack("{s:I, s:I, s:{s:I, s:s}, s:I, s:s*}", "pruned", (json_int_t) res.pruned, "first",
                                    (json_int_t) res.first, "anchor", "seq", (json_int_t) res.anchor_seq, "hash",
                                    res.anchor_hash, "record", (json_int_t) res.record_seq, "message",
                                    res.pruned == 0 && res.record_seq == 0 ? res.message : NULL));
}
