/* SPDX-License-Identifier: MIT */
#pragma once

/* The audit tests' fixture (test-store-audit.c, test-store-audit-retention.c): keys of our own standing in for the
 * token's, the records keyd writes when it creates a keyring and generates a key, checkpoints signed with them, and
 * a history (an issuer keyring, its key, some records) to verify. Include after store-fixture.h. */
#include <openssl/ec.h>
#include <openssl/rsa.h>

#include "jose/jwk.h"
#include "jose/jws.h"
#include "rotation/audit.h"
#include "rotation/policy.h"

#define CHECKPOINT_TYP KEYD_TYP_AUDIT_CHECKPOINT

/* A key pair of our own, standing in for a key in the token (or for an outsider's key). */
typedef struct Signer {
        EVP_PKEY *pkey;
        KeydAlg alg;
        char kid[JOSE_THUMBPRINT_LEN + 1];
        char *jwk;
} Signer;

static inline Signer signer_new(KeydAlg alg) {
        Signer k = {.alg = alg};
        json_t *jwk = NULL;
        k.pkey = keyd_alg_is_ec(alg) ? EVP_EC_gen("P-256") : EVP_RSA_gen(2048);
        cr_assert_not_null(k.pkey);
        cr_assert_eq(jose_jwk_from_pkey(k.pkey, alg, &jwk), 0);
        cr_assert_eq(jose_jwk_thumbprint(jwk, k.kid), 0);
        /* As keyd stores it: with kid, alg and use. */
        cr_assert_eq(json_object_set_new(jwk, "kid", json_string(k.kid)), 0);
        cr_assert_eq(json_object_set_new(jwk, "alg", json_string(keyd_alg_to_string(alg))), 0);
        cr_assert_eq(json_object_set_new(jwk, "use", json_string("sig")), 0);
        k.jwk = json_dumps(jwk, JSON_COMPACT);
        cr_assert_not_null(k.jwk);
        json_decref(jwk);
        return k;
}

static inline void signer_done(Signer *k) {
        EVP_PKEY_free(k->pkey);
        free(k->jwk);
}

/* A compact JWS of payload signed by k with header {alg, kid, typ}. */
static inline char *sign_jws(const Signer *k, const char *alg, const char *kid, const char *typ, const char *payload) {
        json_t *h = json_pack("{s:s, s:s, s:s}", "alg", alg, "kid", kid, "typ", typ);
        uint8_t der[1024], sig[512];
        size_t len, n = sizeof der, sig_len = 0;
        EVP_PKEY_CTX *pctx = NULL;
        char *input = NULL;

        cr_assert_eq(jose_jws_signing_input(h, payload, strlen(payload), &input, &len), 0);
        json_decref(h);
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        cr_assert_eq(EVP_DigestSignInit(ctx, &pctx, EVP_sha256(), NULL, k->pkey), 1);
        if (streq(alg, "PS256")) {
                cr_assert_eq(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING), 1);
                cr_assert_eq(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 32), 1);
                cr_assert_eq(EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()), 1);
        }
        cr_assert_eq(EVP_DigestSign(ctx, der, &n, (const uint8_t *) input, len), 1);
        EVP_MD_CTX_free(ctx);
        if (keyd_alg_is_ec(k->alg)) {
                cr_assert_eq(jose_ecdsa_der_to_raw(der, n, 32, sig), 0);
                sig_len = 64;
        } else {
                memcpy(sig, der, n);
                sig_len = n;
        }
        cr_assert_gt(jose_jws_append_signature(input, len, sig, sig_len), 0);
        return input;
}

/* What keyd writes when it creates a keyring. */
static inline void keyring_created(Store *s, const char *name, const char *kind) {
        StoreKeyring row = keyring(name, kind);
        char detail[128];
        snprintf(detail, sizeof detail, "{\"kind\":\"%s\",\"policy\":{\"alg\":\"ES256\"}}", kind);
        StoreAudit a = audit("keyring.create", detail);
        a.keyring = (char *) name;
        a.kid = NULL;
        if (streq(kind, "agent"))
                row.owner_uid = 1000;
        cr_assert_eq(store_begin(s, STORE_SYNCED), 0);
        cr_assert_eq(store_keyring_insert(s, &row), 0);
        cr_assert_eq(store_audit_append(s, &a), 0);
        cr_assert_eq(store_commit(s), 0);
}

/* A key row for k in the keyring, and (audited) the key.generate record keyd writes with it. */
static inline void key_added(Store *s, const char *ring, const Signer *k, bool audited) {
        static unsigned ids;
        char id[32], detail[64];
        snprintf(id, sizeof id, "%04x", ++ids);
        StoreKey row = key(id, k->kid, ring, 1);
        row.alg = k->alg;
        row.jwk = k->jwk;
        snprintf(detail, sizeof detail, "{\"alg\":\"%s\"}", keyd_alg_to_string(k->alg));
        StoreAudit a = audit("key.generate", detail);
        a.keyring = (char *) ring;
        a.kid = (char *) k->kid;
        cr_assert_eq(store_begin(s, STORE_SYNCED), 0);
        cr_assert_eq(store_key_insert(s, &row), 0);
        if (audited)
                cr_assert_eq(store_audit_append(s, &a), 0);
        cr_assert_eq(store_commit(s), 0);
}

typedef struct CheckpointOpts {
        const char *alg, *kid, *typ; /* NULL: the signer's, keyd's */
        bool raw;                    /* insert with a connection of our own, as an outsider would */
} CheckpointOpts;

/* Sign the record seq (at time, in seconds) with k and store the checkpoint. */
static inline void checkpoint_opts(Store *s, const Signer *k, uint64_t seq, int64_t time, CheckpointOpts o) {
        StoreAudit **l;
        size_t n;
        char *payload, *jws;
        usec_t t = (usec_t) time * USEC_PER_SEC;

        cr_assert_eq(store_audit_list(s, seq - 1, 1, &l, &n), 0);
        cr_assert_eq(n, 1);
        cr_assert_eq(audit_checkpoint_payload(seq, l[0]->hash, t, &payload), 0);
        jws = sign_jws(k, o.alg ?: keyd_alg_to_string(k->alg), o.kid ?: k->kid, o.typ ?: CHECKPOINT_TYP, payload);
        if (o.raw) {
                char *sql;
                cr_assert(asprintf(&sql,
                                   "INSERT INTO audit_checkpoints (seq, hash, time, kid, signature) VALUES "
                                   "(%" PRIu64 ", '%s', %" PRId64 ", '%s', '%s')",
                                   seq, l[0]->hash, (int64_t) t, o.kid ?: k->kid, jws) >= 0);
                raw_exec(sql);
                free(sql);
        } else {
                cr_assert_eq(store_begin(s, STORE_SYNCED), 0);
                cr_assert_eq(store_checkpoint_insert(s, seq, l[0]->hash, t, o.kid ?: k->kid, jws), 0);
                cr_assert_eq(store_commit(s), 0);
        }
        free(jws);
        free(payload);
        store_audit_list_free(l);
}
#define checkpoint(s, k, seq, time, ...) checkpoint_opts((s), (k), (seq), (time), (CheckpointOpts){__VA_ARGS__})

static inline uint64_t head(Store *s) {
        uint64_t seq;
        cr_assert_eq(store_audit_head(s, &seq, NULL), 0);
        return seq;
}

/* audit_verify() refuses, naming what in its message. */
static inline void assert_refused(Store *s, const char *what) {
        AuditVerifyResult res;
        cr_assert_eq(audit_verify(s, &res), -EBADMSG, "must be refused (%s); said: %s", what, res.message);
        cr_assert(strstr(res.message, what) != NULL, "the message names \"%s\": %s", what, res.message);
}

static inline void assert_verifies(Store *s, uint64_t want_checkpoint) {
        AuditVerifyResult res;
        cr_assert_eq(audit_verify(s, &res), 0, "%s", res.message);
        cr_assert_eq(res.checkpoint_seq, want_checkpoint, "%s", res.message);
}

/* keyd's history: an issuer keyring, its key a, some records; and b, another key (an outsider's, or the next one). */
typedef struct History {
        Store *s;
        Signer a, b;
        uint64_t head; /* the head seq after the history */
} History;

static inline History history_new(KeydAlg alg) {
        History h = { .s = open_rw(), .a = signer_new(alg), .b = signer_new(KEYD_ALG_ES256) };
        keyring_created(h.s, "default", "issuer");
        key_added(h.s, "default", &h.a, true);
        append_n(h.s, 5);
        h.head = head(h.s);
        return h;
}

static inline void history_done(History *h) {
        signer_done(&h->a);
        signer_done(&h->b);
        store_close(h->s);
}

/* audit_verify() refuses what was done to the history, naming what; then the history is done with. */
static inline void history_refused(History *h, const char *what) {
        assert_refused(h->s, what);
        history_done(h);
}
