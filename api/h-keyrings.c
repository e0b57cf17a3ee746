/* SPDX-License-Identifier: MIT */
/* Reading keyrings, their JWKS, and creating one. */
#include "api/api-internal.h"
#include "common/crypto-util.h"

/* GET /v1/keyrings pages through the keyrings in name order (the engine keeps them sorted by strcmp). A page is
 * copied in batches of LIST_BATCH keyrings, each under the read lock for a moment, and its JSON is built without it:
 * with thousands of keyrings a list never holds the lock for long. Between batches the walk goes on from the last
 * name copied, so a keyring created meanwhile is neither skipped before nor listed twice. */
#define LIST_DEFAULT 100
#define LIST_MAX 1000
#define LIST_BATCH 64

/* The index of the first keyring whose name sorts after name (read lock held). */
static size_t ring_index_after(Engine *e, const char *name) {
        size_t lo = 0, hi = engine_n_rings(e);
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (strcmp(ring_name(engine_ring_at(e, mid)), name) <= 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

int h_keyrings_list(Request *rq, const char *arg, Reply *rp) {
        static const char *const params[] = { "after", "limit", NULL };
        Engine *e = rq->api->engine;
        const char *after;
        RingCopy *page = NULL;
        size_t n = 0;
        uint64_t limit;
        bool more = false;
        json_t *list = NULL;
        int r = 0;
        (void) arg;

        if (api_query_check(rq, params, rp) < 0)
                return -EINVAL;
        if (api_query_uint(rq, "limit", LIST_DEFAULT, LIST_MAX, &limit) < 0 || limit == 0)
                return reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request", "limit: an integer from 1 to %d",
                                   LIST_MAX);
        after = api_query_get(rq, "after");
        if (after && !keyring_name_valid(after))
                return reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request",
                                   "after: a keyring name (1-64 of A-Z a-z 0-9 . _ -, not starting with . or -)");

        page = calloc(limit, sizeof *page);
        if (!page)
                return reply_errno(rp, -ENOMEM, "keyrings");
        while (n < limit && r >= 0) {
                const char *from = n > 0 ? page[n - 1].name : after;
                engine_read_lock(e);
                size_t i = from ? ring_index_after(e, from) : 0,
                       end = MIN(engine_n_rings(e), i + MIN((size_t) LIST_BATCH, (size_t) limit - n));
                for (; i < end && r >= 0; i++)
                        if ((r = ring_copy(engine_ring_at(e, i), &page[n])) >= 0)
                                n++;
                more = i < engine_n_rings(e);
                engine_read_unlock(e);
                if (!more)
                        break;
        }
        if (r >= 0 && !(list = json_array()))
                r = -ENOMEM;
        for (size_t i = 0; r >= 0 && i < n; i++)
                if (json_array_append_new(list, ring_copy_to_json(&page[i])) < 0)
                        r = -ENOMEM;
        json_t *next = r >= 0 && more && n > 0 ? json_string(page[n - 1].name) : json_null();
        for (size_t i = 0; i < n; i++)
                ring_copy_done(&page[i]);
        free(page);
        if (r < 0) {
                json_decref(list);
                json_decref(next);
                return reply_errno(rp, r, "keyrings");
        }
        return reply_json(rp, MHD_HTTP_OK, json_pack("{s:o, s:o}", "keyrings", list, "next", next));
}

int h_keyring_show(Request *rq, const char *name, Reply *rp) {
        Engine *e = rq->api->engine;
        RingCopy c;
        int k = -ENOENT;
        engine_read_lock(e);
        Ring *r = engine_get_ring(e, name);
        if (r)
                k = ring_copy(r, &c);
        engine_read_unlock(e);
        if (k < 0)
                return reply_errno(rp, k, name);
        json_t *o = ring_copy_to_json(&c);
        ring_copy_done(&c);
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
        /* 0 until the request sets it: rsa_bits for a key that is not RSA would be ignored, and is refused instead. */
        p.rsa_bits = 0;
        if (pj && policy_update_from_json(&p, pj, &err) < 0) {
                policy_done(&p);
                return reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request", "policy: %s", err ?: "invalid");
        }
        if (p.rsa_bits != 0 && !keyd_alg_is_rsa(p.alg)) {
                r = reply_error(rp, MHD_HTTP_UNPROCESSABLE_CONTENT, "unprocessable",
                                "policy: rsa_bits applies to RS256 and PS256 only, not to %s",
                                keyd_alg_to_string(p.alg));
                policy_done(&p);
                return r;
        }
        if (p.rsa_bits == 0)
                p.rsa_bits = 2048;
        /* Every client gets the same rule: verifiers fetch the keys from the issuer's URL. */
        if (k == RING_ISSUER && p.issuer && policy_issuer_check(p.issuer, &why) < 0) {
                policy_done(&p);
                return reply_error(rp, MHD_HTTP_UNPROCESSABLE_CONTENT, "unprocessable", "policy: issuer %s", why);
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
