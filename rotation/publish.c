/* SPDX-License-Identifier: MIT */
/* A keyring's view in memory after every change: its keys, its signer, its JWKS and revocation list. */
#include "common/crypto-util.h"
#include "common/fileio.h"
#include "common/log.h"
#include "jose/jwk.h"
#include "jose/jws.h"
#include "rotation/engine-internal.h"

static int sign_revocations(Engine *e, Ring *r, char **ret) {
        _cleanup_json_ json_t *header = NULL;
        _cleanup_free_ char *payload = NULL, *input = NULL;
        uint8_t sig[HSM_SIG_MAX];
        size_t len;
        int n;

        if (!r->signer)
                return -ENOKEY;
        n = jwks_revocations_payload(r->name, r->policy.issuer, r->keys, r->n_keys, engine_now(e), &payload);
        if (n < 0)
                return n;
        header = json_pack("{s:s, s:s, s:s}", "alg", keyd_alg_to_string(hsm_key_alg(r->signer)), "kid",
                           r->signer_kid, "typ", KEYD_TYP_REVOCATIONS);
        if (!header)
                return -ENOMEM;
        n = jose_jws_signing_input(header, payload, strlen(payload), &input, &len);
        if (n < 0)
                return n;
        n = hsm_key_sign(r->signer, input, len, sig, sizeof sig);
        if (n < 0)
                return n;
        n = jose_jws_append_signature(input, len, sig, (size_t) n);
        if (n < 0)
                return n;
        *ret = TAKE_PTR(input);
        return 0;
}

static int refresh_signer(Engine *e, Ring *r) {
        const StoreKey *active = ring_key_in_state(r, KEY_STATE_ACTIVE);
        int rc;

        if (active && r->signer && streq(r->signer_kid, active->kid))
                return 0;
        r->signer = hsm_key_free(r->signer);
        r->signer_kid[0] = 0;
        __atomic_store_n(&r->repair_pending, false, __ATOMIC_RELEASE);
        if (!active || r->disabled)
                return 0;
        rc = engine_open_key(e, active, &r->signer);
        if (rc < 0)
                return rc;
        memcpy(r->signer_kid, active->kid, sizeof r->signer_kid);
        return 0;
}

int ring_refresh(Engine *e, Ring *r) {
        StoreKey **all = NULL, **keep;
        size_t n = 0, k = 0;
        int rc;

        rc = store_key_list(e->store, r->name, &all, &n);
        if (rc < 0)
                return rc;
        keep = calloc(n + 1, sizeof *keep);
        if (!keep) {
                store_key_list_free(all);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                if (all[i]->state == KEY_STATE_EXPIRED)
                        store_key_free(all[i]);
                else
                        keep[k++] = all[i];
        }
        free(all);
        KeyRef *refs = calloc(k + 1, sizeof *refs);
        if (!refs) {
                store_key_list_free(keep);
                return -ENOMEM;
        }
        ring_drop_refs(e, r);
        store_key_list_free(r->keys);
        r->keys = keep;
        r->n_keys = k;
        r->refs = refs;
        for (size_t i = 0; i < k; i++) {
                _cleanup_json_ json_t *jwk = json_loads(keep[i]->jwk, 0, NULL);
                refs[i].ring = r;
                refs[i].key = keep[i];
                if (!jwk || jose_jwk_to_pkey(jwk, &refs[i].pkey) < 0)
                        log_debug("keyring %s: key %s has an unreadable JWK", r->name, keep[i]->kid);
                if (strmap_put(e->kids, keep[i]->kid, &refs[i], NULL) < 0)
                        return -ENOMEM;
        }

        rc = refresh_signer(e, r);
        if (rc < 0) {
                free(r->degraded);
                r->degraded = strdup("the active key cannot be opened in the token");
        }

        free(r->jwks);
        r->jwks = NULL;
        free(r->revocations);
        r->revocations = NULL;
        if (!r->policy.publish)
                return 0;
        rc = jwks_build(r->keys, r->n_keys, &r->jwks, &r->jwks_len);
        if (rc < 0)
                return rc;
        jwks_etag(r->jwks, r->jwks_len, r->etag);
        if (r->signer && !e->opts.read_only && sign_revocations(e, r, &r->revocations) < 0)
                log_debug("keyring %s: cannot sign the revocation list: %s", r->name, hsm_last_error());
        return 0;
}

int ring_publish_file(Engine *e, Ring *r) {
        (void) e;
        if (!r->policy.jwks_file || !r->jwks)
                return 0;
        int rc = write_file_atomic(r->policy.jwks_file, r->jwks, r->jwks_len, 0644);
        if (rc < 0)
                log_debug("keyring %s: cannot write %s: %s", r->name, r->policy.jwks_file, strerror(-rc));
        return rc;
}

int engine_publish_all(Engine *e) {
        int r = 0;
        for (size_t i = 0; i < e->n_rings; i++) {
                int k = ring_publish_file(e, e->rings[i]);
                if (k < 0 && r == 0)
                        r = k;
        }
        return r;
}
