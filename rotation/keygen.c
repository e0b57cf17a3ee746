/* SPDX-License-Identifier: MIT */
/* Keys come into the token and leave it: crash-safe generation (the id is recorded before the object exists) and
 * destruction by id. */
#include <openssl/rand.h>
#include <stdio.h>

#include "common/crypto-util.h"
#include "common/hex.h"
#include "common/log.h"
#include "jose/jwk.h"
#include "rotation/engine-internal.h"

#define KEY_ID_BYTES 16

/* The public JWK of a token key with kid, alg and use: the row's jwk text and kid. */
static int public_jwk(HsmKey *k, KeydAlg alg, char **ret_jwk, char kid[STORE_KID_MAX + 1]) {
        _cleanup_pkey_ EVP_PKEY *pub = NULL;
        _cleanup_json_ json_t *jwk = NULL;
        char tp[JOSE_THUMBPRINT_LEN + 1];
        int r;

        r = hsm_key_public(k, &pub);
        if (r >= 0)
                r = jose_jwk_from_pkey(pub, alg, &jwk);
        if (r >= 0)
                r = jose_jwk_thumbprint(jwk, tp);
        if (r < 0)
                return r;
        if (json_object_set_new(jwk, "kid", json_string(tp)) < 0 ||
            json_object_set_new(jwk, "alg", json_string(keyd_alg_to_string(alg))) < 0 ||
            json_object_set_new(jwk, "use", json_string("sig")) < 0)
                return -ENOMEM;
        *ret_jwk = json_dumps(jwk, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (!*ret_jwk)
                return -ENOMEM;
        memcpy(kid, tp, sizeof tp);
        return 0;
}

/* A key that was never committed is gone from the token again: its keygen record is done with. Best effort: a record
 * left behind is pruned by the next reconcile. */
static void forget_pending(Engine *e, const char *key_id) {
        if (store_begin(e->store, STORE_COMMITTED) < 0)
                return;
        if (store_pending_key_delete(e->store, key_id) < 0 || store_commit(e->store) < 0)
                store_rollback(e->store);
}

void engine_discard_key(Engine *e, const char *key_id) {
        if (engine_destroy_objects(e, key_id) >= 0)
                forget_pending(e, key_id);
}

static int record_pending(Engine *e, const StoreKey *k) {
        int r = store_begin(e->store, STORE_COMMITTED);
        if (r >= 0)
                r = store_pending_key_insert(e->store, k->id, k->keyring, k->created_at);
        if (r >= 0)
                r = store_commit(e->store);
        if (r < 0)
                store_rollback(e->store);
        return r;
}

/* The label of a key's token objects. The installation's id in it: another installation sharing the token never
 * takes the object for its own. */
static void key_label(const Engine *e, const char *ring, const char *key_id, char label[static HSM_LABEL_MAX + 1]) {
        (void) snprintf(label, HSM_LABEL_MAX + 1, "keyd:%s:%s:%s", e->instance_id, ring, key_id);
}

int engine_key_object(Engine *e, const char *ring, const char *key_id, KeyObject *ret) {
        _cleanup_free_ HsmEntry *index = NULL;
        KeyObject o = { 0 };
        size_t n;
        int r;

        r = hex_decode(key_id, o.id, sizeof o.id, &o.id_len);
        if (r < 0)
                return r;
        (void) snprintf(o.token, sizeof o.token, "%s", hsm_token_label(e->hsm));
        key_label(e, ring, key_id, o.label);
        /* A copy of the whole index: an operator's question, not a signer's. */
        r = hsm_index_list(e->hsm, &index, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++)
                if (index[i].id_len == o.id_len && memcmp(index[i].id, o.id, o.id_len) == 0) {
                        if (index[i].label[0])
                                (void) snprintf(o.label, sizeof o.label, "%s", index[i].label);
                        o.private_key = index[i].priv != 0;
                        break;
                }
        *ret = o;
        return 0;
}

int engine_generate_key(Engine *e, Ring *r, StoreKey **ret) {
        uint8_t id[KEY_ID_BYTES];
        char label[HSM_LABEL_MAX + 1];
        HsmKey *hk = NULL;
        StoreKey *k;
        int rc;

        k = calloc(1, sizeof *k);
        if (!k)
                return -ENOMEM;
        if (RAND_bytes(id, sizeof id) != 1) {
                free(k);
                return -EIO;
        }
        hex_encode(id, sizeof id, k->id, sizeof k->id);
        key_label(e, r->name, k->id, label);
        k->keyring = strdup(r->name);
        k->alg = r->policy.alg;
        k->state = KEY_STATE_NEXT;
        k->created_at = k->publish_at = engine_now(e);
        if (!k->keyring || engine_failpoint(e, "generate:before-token")) {
                rc = k->keyring ? -ECANCELED : -ENOMEM;
                store_key_free(k);
                return rc;
        }
        /* The id is recorded first, then the token object comes, then the row: a crash in between leaves an orphan
         * object that reconcile destroys (it can prove the object is this installation's own by the record), never a
         * row without its key. */
        rc = record_pending(e, k);
        if (rc < 0) {
                store_key_free(k);
                return rc;
        }
        rc = hsm_generate(e->hsm, k->alg, r->policy.rsa_bits, id, sizeof id, label, &hk);
        if (rc >= 0 && engine_failpoint(e, "generate:after-token"))
                rc = -ECANCELED;
        if (rc >= 0)
                rc = public_jwk(hk, k->alg, &k->jwk, k->kid);
        hsm_key_free(hk);
        if (rc < 0) {
                if (rc != -ECANCELED) {
                        int d = hsm_destroy(e->hsm, id, sizeof id);
                        if (d >= 0 || d == -ENOENT)
                                forget_pending(e, k->id);
                }
                store_key_free(k);
                return rc;
        }
        *ret = k;
        return 0;
}

int engine_destroy_objects(Engine *e, const char *key_id) {
        uint8_t id[HSM_ID_MAX];
        size_t n;
        int r;

        r = hex_decode(key_id, id, sizeof id, &n);
        if (r < 0)
                return r;
        r = hsm_destroy(e->hsm, id, n);
        if (r < 0 && r != -ENOENT) {
                log_debug("destroying token objects of key %s: %s", key_id, hsm_last_error());
                return r;
        }
        return 0;
}
