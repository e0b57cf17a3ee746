/* SPDX-License-Identifier: MIT */
/* Reading keyrings, their JWKS, and creating one. */
#include "api/api-internal.h"
#include "common/crypto-util.h"

int h_keyrings_list(Request *rq, const char *arg, Reply *rp) {
        Engine *e = rq->api->engine;
        json_t *list = json_array();
        (void) arg;

        if (!list)
                return reply_errno(rp, -ENOMEM, "keyrings");
        engine_read_lock(e);
        for (size_t i = 0; i < engine_n_rings(e); i++)
                json_array_append_new(list, ring_to_json(engine_ring_at(e, i)));
        engine_read_unlock(e);
        return reply_json(rp, MHD_HTTP_OK, json_pack("{s:o}", "keyrings", list));
}

int h_keyring_show(Request *rq, const char *name, Reply *rp) {
        Engine *e = rq->api->engine;
        json_t *o = NULL;
        engine_read_lock(e);
        Ring *r = engine_get_ring(e, name);
        if (r)
                o = ring_to_json(r);
        engine_read_unlock(e);
        if (!r)
                return reply_errno(rp, -ENOENT, name);
        return reply_json(rp, MHD_HTTP_OK, o);
}

int h_keyring_jwks(Request *rq, const char *name, Reply *rp) {
        Engine *e = rq->api->engine;
        const char *body = NULL;
        size_t len = 0;
        engine_read_lock(e);
        Ring *r = engine_get_ring(e, name);
        if (r && (body = ring_jwks(r, now_realtime(), &len, NULL, NULL)))
                rp->text = strndup(body, len);
        engine_read_unlock(e);
        if (!r)
                return reply_errno(rp, -ENOENT, name);
        if (!body)
                return reply_error(rp, MHD_HTTP_NOT_FOUND, "not_found", "keyring %s is not published", name);
        if (!rp->text)
                return reply_errno(rp, -ENOMEM, name);
        rp->status = MHD_HTTP_OK;
        rp->content_type = "application/jwk-set+json";
        return 0;
}

typedef struct CreateCall {
        RingSpec spec;
        Actor actor;
} CreateCall;

static int create_on_loop(Engine *e, void *arg) {
        CreateCall *c = arg;
        int r = engine_create_ring(e, &c->spec, &c->actor);
        if (r < 0)
                return r;
        /* The first keys now, so that the keyring can sign as soon as this call returns. */
        r = engine_tick(e, NULL);
        return r < 0 ? r : 0;
}

int h_keyring_create(Request *rq, const char *arg, Reply *rp) {
        json_t *b = rq->json, *name = json_object_get(b, "name"), *kind = json_object_get(b, "kind"),
               *owner = json_object_get(b, "owner_uid"), *pj = json_object_get(b, "policy");
        _cleanup_free_ char *err = NULL;
        const char *why = NULL, *key;
        json_t *v;
        Policy p;
        int r;
        (void) arg;

        json_object_foreach(b, key, v) if (!streq(key, "name") && !streq(key, "kind") && !streq(key, "owner_uid") &&
                                           !streq(key, "policy")) return reply_error(rp, MHD_HTTP_BAD_REQUEST,
                                                                                     "bad_request",
                                                                                     "unknown member '%s'", key);
        if (!json_is_string(name) || !keyring_name_valid(json_string_value(name)))
                return reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request",
                                   "name: 1-64 of A-Z a-z 0-9 . _ -, not starting with . or -");
        RingKind k = kind ? ring_kind_from_string(json_string_value(kind)) : RING_ISSUER;
        if (k < 0)
                return reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request", "kind: issuer or agent");
        if ((k == RING_AGENT) != (owner != NULL) ||
            (owner && (!json_is_integer(owner) || json_integer_value(owner) < 0 ||
                       json_integer_value(owner) >= 4294967295LL)))
                return reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request",
                                   "owner_uid: a uid, required for agent keyrings and only for them");
        if (pj && json_object_get(pj, "jwks_file"))
                return reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request",
                                   "policy: jwks_file is set in keyd.conf only (a path keyd writes to)");
        policy_init(&p, k);
        if (pj && policy_update_from_json(&p, pj, &err) < 0) {
                policy_done(&p);
                return reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request", "policy: %s", err ?: "invalid");
        }
        if (policy_validate(&p, &why) < 0) {
                policy_done(&p);
                return reply_error(rp, MHD_HTTP_UNPROCESSABLE_CONTENT, "unprocessable", "policy: %s", why);
        }
        CreateCall c = { .spec = { json_string_value(name), k, owner ? json_integer_value(owner) : -1, &p },
                         .actor = api_actor(rq) };
        r = rq->api->call(rq->api->call_userdata, create_on_loop, &c);
        policy_done(&p);
        if (r < 0)
                return reply_write_errno(rq, rp, r, json_string_value(name));
        r = h_keyring_show(rq, json_string_value(name), rp);
        if (r < 0)
                return r;
        rp->status = MHD_HTTP_CREATED;
        return 0;
}
