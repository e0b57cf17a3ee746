/* SPDX-License-Identifier: MIT */
/* Replies and the JSON form of keyrings. */
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

/* What an engine error means to a caller. */
static const struct {
        int error;
        unsigned status;
        const char *code, *message;
} errno_replies[] = {
        { -ENOENT, MHD_HTTP_NOT_FOUND, "not_found", "not found" },
        { -EEXIST, MHD_HTTP_CONFLICT, "conflict", "already exists" },
        { -EALREADY, MHD_HTTP_CONFLICT, "conflict", "already done" },
        { -EBUSY, MHD_HTTP_CONFLICT, "conflict", "the next key was published less than prepublish ago (use force)" },
        { -ESHUTDOWN, MHD_HTTP_CONFLICT, "conflict", "the keyring is disabled" },
        { -EINVAL, MHD_HTTP_BAD_REQUEST, "bad_request", "invalid" },
        { -ECANCELED, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable", "keyd is stopping" },
        { -ENOKEY, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable", "the keyring has no usable active key" },
        { -ETIMEDOUT, MHD_HTTP_SERVICE_UNAVAILABLE, "token_unavailable",
          "the token did not answer in time (it is overloaded or hung)" },
        { -ENODEV, MHD_HTTP_SERVICE_UNAVAILABLE, "token_unavailable",
          "the token could not sign (see /healthz)" },
        /* Only the store gives these two (store/store.h): a storage fault, whatever else is known. */
        { -ENOSPC, MHD_HTTP_SERVICE_UNAVAILABLE, "storage_unavailable", "database disk is full" },
        { -ENOLCK, MHD_HTTP_SERVICE_UNAVAILABLE, "storage_unavailable", "database is locked by another process" },
};

int reply_errno(Reply *rp, int r, const char *what) {
        for (size_t i = 0; i < ELEMENTSOF(errno_replies); i++)
                if (errno_replies[i].error == r)
                        return reply_error(rp, errno_replies[i].status, errno_replies[i].code, "%s: %s", what,
                                           errno_replies[i].message);
        return reply_error(rp, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "%s: %s", what, strerror(-r));
}

int reply_write_errno(Request *rq, Reply *rp, int r, const char *what) {
        char reason[128];

        /* -EROFS and -EIO come from the token too: they are the database's only while it is known not to take
         * writes. */
        if ((r == -EROFS || r == -EIO || r == -ENOSPC || r == -ENOLCK) &&
            store_health_fault(rq->api->cfg.storage, NULL, reason, sizeof reason))
                return reply_error(rp, MHD_HTTP_SERVICE_UNAVAILABLE, "storage_unavailable",
                                   "%s: %s: nothing was changed", what, reason);
        return reply_errno(rp, r, what);
}

json_t *json_time(usec_t t) {
        char buf[32];
        return t > 0 ? json_string(format_rfc3339(buf, sizeof buf, t)) : json_null();
}

json_t *key_copy_to_json(const KeyCopy *k) {
        return json_pack("{s:s, s:s, s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:s?, s:b}", "kid", k->kid, "alg",
                         keyd_alg_to_string(k->alg), "state", key_state_to_string(k->state), "created_at",
                         json_time(k->created_at), "publish_at", json_time(k->publish_at), "activate_at",
                         json_time(k->activate_at), "retire_at", json_time(k->retire_at), "expire_at",
                         json_time(k->expire_at), "revoked_at", json_time(k->revoked_at), "reason", k->reason, "lost",
                         k->lost);
}

int key_copy(const StoreKey *k, KeyCopy *ret) {
        KeyCopy d = { .alg = k->alg, .state = k->state, .created_at = k->created_at, .publish_at = k->publish_at,
                      .activate_at = k->activate_at, .retire_at = k->retire_at, .expire_at = k->expire_at,
                      .revoked_at = k->revoked_at, .lost = k->lost };

        (void) snprintf(d.kid, sizeof d.kid, "%s", k->kid);
        if (k->reason && !(d.reason = strdup(k->reason)))
                return -ENOMEM;
        *ret = d;
        return 0;
}

void key_copy_done(KeyCopy *k) {
        free(k->reason);
        k->reason = NULL;
}

void ring_copy_done(RingCopy *c) {
        if (!c)
                return;
        for (size_t i = 0; i < c->n_keys; i++)
                key_copy_done(&c->keys[i]);
        free(c->keys);
        free(c->degraded);
        if (c->has_policy)
                policy_done(&c->policy);
        *c = (RingCopy){ 0 };
}

int ring_copy(Ring *r, RingCopy *ret) {
        RingCopy c = { .kind = ring_kind(r), .owner_uid = ring_owner_uid(r), .disabled = ring_disabled(r),
                       .next_due = ring_next_due(r) };
        StoreKey *const *k = ring_keys(r, &c.n_keys);

        (void) snprintf(c.name, sizeof c.name, "%s", ring_name(r));
        if (policy_copy(ring_policy(r), &c.policy) < 0) {
                c.n_keys = 0;
                return -ENOMEM;
        }
        c.has_policy = true;
        if (ring_degraded(r) && !(c.degraded = strdup(ring_degraded(r)))) {
                c.n_keys = 0;
                ring_copy_done(&c);
                return -ENOMEM;
        }
        c.keys = calloc(c.n_keys ?: 1, sizeof *c.keys);
        if (!c.keys) {
                c.n_keys = 0;
                ring_copy_done(&c);
                return -ENOMEM;
        }
        for (size_t i = 0; i < c.n_keys; i++)
                if (key_copy(k[i], &c.keys[i]) < 0) {
                        ring_copy_done(&c);
                        return -ENOMEM;
                }
        *ret = c;
        return 0;
}

json_t *ring_copy_to_json(const RingCopy *c) {
        json_t *policy = NULL, *keys = json_array();

        if (!keys || policy_to_json(&c->policy, &policy) < 0) {
                json_decref(keys);
                return NULL;
        }
        for (size_t i = 0; i < c->n_keys; i++)
                json_array_append_new(keys, key_copy_to_json(&c->keys[i]));
        return json_pack("{s:s, s:s, s:o, s:o, s:b, s:s?, s:o, s:o}", "name", c->name, "kind",
                         ring_kind_to_string(c->kind), "owner_uid",
                         c->owner_uid >= 0 ? json_integer(c->owner_uid) : json_null(), "policy", policy, "disabled",
                         c->disabled, "degraded", c->degraded, "next_transition",
                         json_time(c->next_due == USEC_INFINITY ? 0 : c->next_due), "keys", keys);
}

Actor api_actor(const Request *rq) {
        return (Actor){ rq->peer->uid, rq->peer->gid, rq->peer->pid, rq->peer->comm };
}
