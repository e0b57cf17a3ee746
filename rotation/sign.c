/* SPDX-License-Identifier: MIT */
/* Signing and key lookup for the API's threads: under the engine's read lock, against a keyring's current view. */
#include <stdio.h>

#include "common/crypto-util.h"
#include "jose/jws.h"
#include "rotation/engine-internal.h"

/* A signature the token refused because the key's object is gone (a fresh search found nothing): tell the daemon, so
 * that the event loop repairs the keyring, and answer "no usable key" rather than "no such keyring". Called with the
 * read lock held. */
static int signer_result(Engine *e, Ring *ring, int r) {
        if (r != -ENOENT)
                return r;
        /* One repair queued at a time, however many signers fail meanwhile. */
        if (e->opts.on_key_lost && !__atomic_exchange_n(&ring->repair_pending, true, __ATOMIC_ACQ_REL))
                e->opts.on_key_lost(ring->name, ring->view->signer_kid, e->opts.key_lost_userdata);
        return -ENOKEY;
}

/* The keyring that may sign now, or the reason why none: -ENOENT, -ESHUTDOWN (disabled), -ENOKEY (no active key open
 * in the token). Called with the read lock held. */
static int signing_ring(Engine *e, const char *name, Ring **ret) {
        Ring *ring = engine_get_ring(e, name);
        if (!ring)
                return -ENOENT;
        if (ring->disabled)
                return -ESHUTDOWN;
        if (!ring->view->signer || ring->view->signer_lost)
                return -ENOKEY;
        *ret = ring;
        return 0;
}

static json_t *public_members(const char *jwk_text) {
        _cleanup_json_ json_t *jwk = json_loads(jwk_text, 0, NULL);
        json_t *out = json_object();
        static const char *const keep[] = { "kty", "crv", "x", "y", "n", "e" };
        if (!jwk || !out)
                return json_decref(out), NULL;
        for (size_t i = 0; i < ELEMENTSOF(keep); i++) {
                json_t *v = json_object_get(jwk, keep[i]);
                if (v && json_object_set(out, keep[i], v) < 0)
                        return json_decref(out), NULL;
        }
        return out;
}

/* The JWS header of a signature by the ring's signer: alg and kid (and with embed_jwk, the public key) set in h. */
static int signer_header(Ring *ring, json_t *h, bool embed_jwk) {
        const StoreKey *active;
        if (json_object_set_new(h, "alg", json_string(keyd_alg_to_string(hsm_key_alg(ring->view->signer)))) < 0 ||
            json_object_set_new(h, "kid", json_string(ring->view->signer_kid)) < 0)
                return -ENOMEM;
        if (!embed_jwk)
                return 0;
        active = ring_key_in_state(ring, KEY_STATE_ACTIVE);
        if (!active)
                return -ENOKEY;
        return json_object_set_new(h, "jwk", public_members(active->jwk)) < 0 ? -ENOMEM : 0;
}

int engine_sign_compact(Engine *e, const char *name, const json_t *header, bool embed_jwk, const void *payload,
                        size_t len, size_t max, char **ret, char ret_kid[STORE_KID_MAX + 1]) {
        _cleanup_json_ json_t *h = header ? json_copy((json_t *) header) : json_object();
        uint8_t sig[HSM_SIG_MAX];
        char *input = NULL;
        size_t input_len;
        Ring *ring = NULL;
        int r;

        if (!h)
                return -ENOMEM;
        pthread_rwlock_rdlock(&e->lock);
        r = signing_ring(e, name, &ring);
        if (r >= 0)
                r = signer_header(ring, h, embed_jwk);
        if (r >= 0)
                r = jose_jws_signing_input(h, payload, len, &input, &input_len);
        /* "." and the signature in base64url without padding: ceil(4n/3) characters. */
        if (r >= 0 && max > 0 && input_len + 1 + (hsm_key_signature_size(ring->view->signer) * 4 + 2) / 3 > max)
                r = -EMSGSIZE;
        if (r >= 0)
                r = signer_result(e, ring, hsm_key_sign(ring->view->signer, input, input_len, sig, sizeof sig));
        if (r >= 0 && ret_kid)
                memcpy(ret_kid, ring->view->signer_kid, sizeof ring->view->signer_kid);
        pthread_rwlock_unlock(&e->lock);
        if (r >= 0)
                r = jose_jws_append_signature(input, input_len, sig, (size_t) r);
        if (r < 0) {
                free(input);
                return r;
        }
        *ret = input;
        return 0;
}

int engine_sign(Engine *e, const char *name, const void *msg, size_t len, uint8_t *sig, size_t sig_size,
                char ret_kid[STORE_KID_MAX + 1], KeydAlg *ret_alg) {
        Ring *ring = NULL;
        int r;

        pthread_rwlock_rdlock(&e->lock);
        r = signing_ring(e, name, &ring);
        if (r >= 0)
                r = signer_result(e, ring, hsm_key_sign(ring->view->signer, msg, len, sig, sig_size));
        if (r >= 0 && ret_kid)
                memcpy(ret_kid, ring->view->signer_kid, sizeof ring->view->signer_kid);
        if (r >= 0 && ret_alg)
                *ret_alg = hsm_key_alg(ring->view->signer);
        pthread_rwlock_unlock(&e->lock);
        return r;
}

int engine_lookup_key(Engine *e, const char *kid, KeyLookup *ret) {
        int r = -ENOENT;
        pthread_rwlock_rdlock(&e->lock);
        KeyRef *ref = kid ? strmap_get(e->kids, kid) : NULL;
        if (ref && ref->verifier) {
                snprintf(ret->keyring, sizeof ret->keyring, "%s", ref->ring->name);
                ret->kind = ref->ring->kind;
                snprintf(ret->issuer, sizeof ret->issuer, "%s", ref->ring->policy.issuer ?: "");
                ret->alg = ref->key->alg;
                ret->state = ref->key->state;
                ret->verifier = jose_verifier_ref(ref->verifier);
                r = 0;
        }
        pthread_rwlock_unlock(&e->lock);
        return r;
}

int engine_token_denied(Engine *e, const char *jti) {
        return denylist_contains(e->denied, jti, engine_now(e));
}
