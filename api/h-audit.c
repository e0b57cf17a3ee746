/* SPDX-License-Identifier: MIT */
/* The audit chain (admin): read it with filters, verify it. Reads open a read-only connection of their own, so that
 * a long read never holds up the event loop or the group commit. */
#include <stdio.h>

#include "api/api-internal.h"
#include "common/crypto-util.h"
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
                          json_pack("{s:b, s:I, s:I, s:I, s:I, s:s}", "ok", r == 0, "records", (json_int_t) res.records,
                                    "head_seq", (json_int_t) res.head_seq, "checkpoint_seq",
                                    (json_int_t) res.checkpoint_seq, "bad_seq", (json_int_t) res.bad_seq, "message",
                                    res.message));
}
