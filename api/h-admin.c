/* SPDX-License-Identifier: MIT */
/* Administration: rotate, revoke, disable, deny a token (the audit chain: h-audit.c). Changes run on the event
 * loop (the engine's only writer); each is one transaction with its audit record, synced before the answer. */
#include <stdio.h>

#include "api/api-internal.h"
#include "common/crypto-util.h"
#include "rotation/lifecycle.h"

typedef struct AdminCall {
        const char *name;
        const char *reason;
        const char *comment; /* revoke: the operator's free text, or NULL */
        bool force;
        usec_t exp;
        Actor actor;
} AdminCall;

static int rotate_on_loop(Engine *e, void *arg) {
        AdminCall *c = arg;
        return engine_rotate(e, c->name, c->force, c->reason, &c->actor);
}

static int revoke_on_loop(Engine *e, void *arg) {
        AdminCall *c = arg;
        return engine_revoke_key_comment(e, c->name, c->reason, c->comment, &c->actor);
}

static int disable_on_loop(Engine *e, void *arg) {
        AdminCall *c = arg;
        return engine_disable_ring(e, c->name, &c->actor);
}

static int deny_on_loop(Engine *e, void *arg) {
        AdminCall *c = arg;
        return engine_deny_token(e, c->name, c->reason, c->exp, &c->actor);
}

static const char *opt_string(Request *rq, const char *key, Reply *rp, bool *bad) {
        json_t *v = rq->json ? json_object_get(rq->json, key) : NULL;
        if (v && (!json_is_string(v) || json_string_length(v) > 256)) {
                reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request", "%s: a string", key);
                *bad = true;
        }
        return json_is_string(v) ? json_string_value(v) : NULL;
}

int h_rotate(Request *rq, const char *name, Reply *rp) {
        bool bad = false;
        json_t *force = rq->json ? json_object_get(rq->json, "force") : NULL;
        AdminCall c = { .name = name, .reason = opt_string(rq, "reason", rp, &bad), .actor = api_actor(rq) };
        if (bad)
                return -1;
        if (force && !json_is_boolean(force))
                return reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request", "force: true or false");
        c.force = json_is_true(force);
        int r = rq->api->call(rq->api->call_userdata, rotate_on_loop, &c);
        if (r < 0)
                return reply_write_errno(rq, rp, r, name);
        return h_keyring_show(rq, name, rp);
}

int h_revoke_key(Request *rq, const char *kid, Reply *rp) {
        bool bad = false;
        AdminCall c = { .name = kid,
                        .reason = opt_string(rq, "reason", rp, &bad),
                        .comment = opt_string(rq, "comment", rp, &bad),
                        .actor = api_actor(rq) };
        char ring[KEYRING_NAME_MAX + 1] = "";
        if (bad)
                return -1;
        /* Checked here, before the event loop is asked: the engine refuses it too. */
        if (revoke_reason_from_string(c.reason) < 0)
                return reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request", "reason: " REVOKE_REASONS_TEXT);
        int r = rq->api->call(rq->api->call_userdata, revoke_on_loop, &c);
        if (r < 0)
                return reply_write_errno(rq, rp, r, kid);
        json_t *revoked_at = json_null();
        engine_read_lock(rq->api->engine);
        Ring *rr = NULL;
        const StoreKey *k = engine_find_key(rq->api->engine, kid, &rr);
        if (k) {
                snprintf(ring, sizeof ring, "%s", ring_name(rr));
                revoked_at = json_time(k->revoked_at);
        }
        engine_read_unlock(rq->api->engine);
        return reply_json(rp, MHD_HTTP_OK,
                          json_pack("{s:s, s:s, s:s, s:o, s:s, s:s*}", "kid", kid, "keyring", ring, "state", "revoked",
                                    "revoked_at", revoked_at, "reason", c.reason, "comment", c.comment));
}

int h_disable(Request *rq, const char *name, Reply *rp) {
        AdminCall c = { .name = name, .actor = api_actor(rq) };
        int r = rq->api->call(rq->api->call_userdata, disable_on_loop, &c);
        if (r < 0)
                return reply_write_errno(rq, rp, r, name);
        return h_keyring_show(rq, name, rp);
}

/* A jti denied already: 409 as before, with the denial that stands (when, and until when), so that a client that
 * runs the same denial again can tell "done already" from a failure without another endpoint. */
static int reply_denied_already(Request *rq, const char *jti, Reply *rp) {
        StoreRevokedToken **l = NULL;
        usec_t at = 0, exp = 0;
        size_t n = 0;
        Store *s = NULL;
        char when[32], until[32], msg[400];

        int r = store_open(rq->api->cfg.db_path, STORE_READ_ONLY, &s);
        if (r >= 0)
                r = store_revoked_token_list(s, &l, &n);
        store_close(s);
        for (size_t i = 0; r >= 0 && i < n; i++)
                if (streq(l[i]->jti, jti)) {
                        at = l[i]->revoked_at;
                        exp = l[i]->exp;
                }
        store_revoked_token_list_free(l);
        if (r < 0 || at == 0)
                return reply_errno(rp, -EEXIST, jti);
        (void) snprintf(msg, sizeof msg, "%s: already denied at %s until %s", jti,
                        format_rfc3339(when, sizeof when, at), format_rfc3339(until, sizeof until, exp));
        return reply_json(rp, MHD_HTTP_CONFLICT,
                          json_pack("{s:s, s:s, s:s, s:o, s:I}", "error", "conflict", "message", msg, "jti", jti,
                                    "revoked_at", json_time(at), "exp", (json_int_t) (exp / USEC_PER_SEC)));
}

int h_revoke_token(Request *rq, const char *arg, Reply *rp) {
        json_t *jti = json_object_get(rq->json, "jti"), *exp = json_object_get(rq->json, "exp");
        bool bad = false;
        AdminCall c = { .reason = opt_string(rq, "keyring", rp, &bad), .actor = api_actor(rq) };
        usec_t now = now_realtime();
        (void) arg;

        if (bad)
                return -1;
        if (!json_is_string(jti) || json_string_length(jti) == 0 || json_string_length(jti) > 256)
                return reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request", "jti: a string is required");
        c.name = json_string_value(jti);
        if (exp) {
                if (!json_is_integer(exp) || json_integer_value(exp) <= now / USEC_PER_SEC ||
                    json_integer_value(exp) > now / USEC_PER_SEC + 10LL * 365 * 86400)
                        return reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request",
                                           "exp: the token's expiry (unix seconds, in the future)");
                c.exp = (usec_t) json_integer_value(exp) * USEC_PER_SEC;
        } else {
                /* Without its exp, deny for as long as any token keyd issues can live. */
                usec_t longest = 0;
                engine_read_lock(rq->api->engine);
                for (size_t i = 0; i < engine_n_rings(rq->api->engine); i++) {
                        const Policy *p = ring_policy(engine_ring_at(rq->api->engine, i));
                        longest = MAX(longest, p->token_ttl_max + p->clock_skew);
                }
                engine_read_unlock(rq->api->engine);
                c.exp = now + MAX(longest, USEC_PER_SEC);
        }
        int r = rq->api->call(rq->api->call_userdata, deny_on_loop, &c);
        if (r == -EEXIST)
                return reply_denied_already(rq, c.name, rp);
        if (r < 0)
                return reply_write_errno(rq, rp, r, c.name);
        return reply_json(rp, MHD_HTTP_OK,
                          json_pack("{s:s, s:I}", "jti", c.name, "exp", (json_int_t) (c.exp / USEC_PER_SEC)));
}
