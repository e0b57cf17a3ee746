/* SPDX-License-Identifier: MIT */
/* Replies, the JSON form of keyrings, and auditing requests. */
#include <stdarg.h>
#include <stdio.h>

#include "api/api-internal.h"
#include "common/crypto-util.h"
#include "common/log.h"
#include "common/utf8.h"

int reply_json(Reply *rp, unsigned status, json_t *body) {
        json_decref(rp->json);
        rp->status = status;
        rp->json = body;
        if (!body)
                return reply_error(rp, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "out of memory");
        return 0;
}

int reply_error(Reply *rp, unsigned status, const char *code, const char *fmt, ...) {
        char msg[512];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        json_decref(rp->json);
        rp->status = status;
        rp->json = json_pack("{s:s, s:s}", "error", code, "message", msg);
        return -1;
}

int reply_errno(Reply *rp, int r, const char *what) {
        switch (r) {
        case -ENOENT:
                return reply_error(rp, MHD_HTTP_NOT_FOUND, "not_found", "%s: not found", what);
        case -EEXIST:
                return reply_error(rp, MHD_HTTP_CONFLICT, "conflict", "%s: already exists", what);
        case -EALREADY:
                return reply_error(rp, MHD_HTTP_CONFLICT, "conflict", "%s: already done", what);
        case -EBUSY:
                return reply_error(rp, MHD_HTTP_CONFLICT, "conflict",
                                   "%s: the next key was published less than prepublish ago (use force)", what);
        case -ESHUTDOWN:
                return reply_error(rp, MHD_HTTP_CONFLICT, "conflict", "%s: the keyring is disabled", what);
        case -EINVAL:
                return reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request", "%s: invalid", what);
        case -ECANCELED:
                return reply_error(rp, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable", "%s: keyd is stopping", what);
        case -ENOKEY:
                return reply_error(rp, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable",
                                   "%s: the keyring has no usable active key", what);
        default:
                return reply_error(rp, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "%s: %s", what, strerror(-r));
        }
}

json_t *json_time(usec_t t) {
        char buf[32];
        return t > 0 ? json_string(format_rfc3339(buf, sizeof buf, t)) : json_null();
}

static json_t *key_to_json(const StoreKey *k) {
        return json_pack("{s:s, s:s, s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:s?, s:b}", "kid", k->kid, "alg",
                         keyd_alg_to_string(k->alg), "state", key_state_to_string(k->state), "created_at",
                         json_time(k->created_at), "publish_at", json_time(k->publish_at), "activate_at",
                         json_time(k->activate_at), "retire_at", json_time(k->retire_at), "expire_at",
                         json_time(k->expire_at), "revoked_at", json_time(k->revoked_at), "reason", k->reason,
                         "lost", k->lost);
}

json_t *ring_to_json(Ring *r) {
        json_t *policy = NULL, *keys = json_array(), *o;
        size_t n;
        StoreKey *const *k = ring_keys(r, &n);

        if (!keys || policy_to_json(ring_policy(r), &policy) < 0) {
                json_decref(keys);
                return NULL;
        }
        for (size_t i = 0; i < n; i++)
                json_array_append_new(keys, key_to_json(k[i]));
        o = json_pack("{s:s, s:s, s:o, s:o, s:b, s:s?, s:o, s:o}", "name", ring_name(r), "kind",
                      ring_kind_to_string(ring_kind(r)), "owner_uid",
                      ring_owner_uid(r) >= 0 ? json_integer(ring_owner_uid(r)) : json_null(), "policy", policy,
                      "disabled", ring_disabled(r), "degraded", ring_degraded(r), "next_transition",
                      json_time(ring_next_due(r) == USEC_INFINITY ? 0 : ring_next_due(r)), "keys", keys);
        return o;
}

Actor api_actor(const Request *rq) {
        return (Actor){ rq->peer->uid, rq->peer->gid, rq->peer->pid, rq->peer->comm };
}

/* s as the audit log can hold it: NULL if s is valid UTF-8 (use s), else a new string where every byte that is not
 * part of a valid sequence is written "\xHH". *ret_err is -ENOMEM when that string cannot be made. */
static char *utf8_escaped(const char *s, int *ret_err) {
        const unsigned char *u = (const unsigned char *) s;
        size_t n = s ? strlen(s) : 0, i = 0, o = 0, len;
        char *out;

        if (utf8_valid(s, n))
                return NULL;
        out = malloc(n * 4 + 1);
        if (!out) {
                *ret_err = -ENOMEM;
                return NULL;
        }
        for (i = 0; i < n;) {
                len = utf8_char_len(u + i, n - i);
                if (len > 0) {
                        memcpy(out + o, u + i, len);
                        o += len;
                        i += len;
                } else {
                        out[o++] = '\\';
                        out[o++] = 'x';
                        out[o++] = "0123456789abcdef"[u[i] >> 4];
                        out[o++] = "0123456789abcdef"[u[i++] & 15];
                }
        }
        out[o] = 0;
        return out;
}

int api_audit(Request *rq, const char *action, const char *ring, const char *kid, const char *result,
              json_t *detail) {
        _cleanup_free_ char *text = NULL, *comm = NULL, *ring_esc = NULL, *kid_esc = NULL;
        StoreAudit rec = { 0 };
        int64_t r;
        int err = 0;

        /* Every string of the record as UTF-8 (the canonical form is JSON): a kid from a path is any bytes. Strings in
         * detail are UTF-8 already (jansson refuses anything else). */
        comm = utf8_escaped(rq->peer->comm, &err);
        ring_esc = utf8_escaped(ring, &err);
        kid_esc = utf8_escaped(kid, &err);
        if (err < 0) {
                json_decref(detail);
                atomic_fetch_add(&rq->api->audit_failures, 1);
                return log_error_errno(err, "Cannot write the audit record of %s: %m", action);
        }

        if (detail) {
                text = json_dumps(detail, JSON_COMPACT | JSON_SORT_KEYS);
                json_decref(detail);
                if (!text)
                        return -ENOMEM;
        }
        rec.time = now_realtime();
        rec.uid = rq->peer->uid;
        rec.pid = rq->peer->pid;
        rec.comm = comm ?: rq->peer->comm;
        rec.action = (char *) action;
        rec.keyring = ring_esc ?: (char *) ring;
        rec.kid = kid_esc ?: (char *) kid;
        rec.result = (char *) result;
        rec.detail = text;
        r = audit_log_write(rq->api->audit, &rec, STORE_COMMITTED);
        if (r < 0) {
                atomic_fetch_add(&rq->api->audit_failures, 1);
                log_error_errno((int) r, "Cannot write the audit record of %s: %m", action);
                return (int) r;
        }
        return 0;
}
