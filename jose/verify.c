/* SPDX-License-Identifier: MIT */
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <pthread.h>

#include "common/crypto-util.h"
#include "common/macro.h"
#include "jose/jose-internal.h"
#include "jose/jwk.h"
#include "jose/jws.h"

/* Group orders (SEC 2 §2.4.2, §2.5.1), big-endian. A test checks them against OpenSSL's groups. */
static const uint8_t p256_order[32] = {
        0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
};
static const uint8_t p384_order[48] = {
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc7, 0x63, 0x4d, 0x81, 0xf4, 0x37, 0x2d, 0xdf,
        0x58, 0x1a, 0x0d, 0xb2, 0x48, 0xb0, 0xa7, 0x7a, 0xec, 0xec, 0x19, 0x6a, 0xcc, 0xc5, 0x29, 0x73,
};

const uint8_t *jose_ec_order(KeydAlg alg) {
        switch (alg) {
        case KEYD_ALG_ES256:
                return p256_order;
        case KEYD_ALG_ES384:
                return p384_order;
        default:
                return NULL;
        }
}

int jose_ecdsa_raw_to_der(const uint8_t *raw, size_t raw_len, uint8_t **ret, size_t *ret_len) {
        _cleanup_(ECDSA_SIG_freep) ECDSA_SIG *sig = NULL;
        BIGNUM *r, *s;
        uint8_t *der, *p;
        size_t n = raw_len / 2;
        int len;

        if (!raw || !ret || raw_len == 0 || raw_len % 2 != 0 || n > 66)
                return -EINVAL;
        sig = ECDSA_SIG_new();
        if (!sig)
                return -ENOMEM;
        r = BN_bin2bn(raw, (int) n, NULL);
        s = BN_bin2bn(raw + n, (int) n, NULL);
        if (!r || !s || ECDSA_SIG_set0(sig, r, s) != 1) {
                BN_free(r);
                BN_free(s);
                return -ENOMEM;
        }
        len = i2d_ECDSA_SIG(sig, NULL);
        if (len <= 0)
                return -ENOMEM;
        der = malloc((size_t) len);
        if (!der)
                return -ENOMEM;
        p = der;
        if (i2d_ECDSA_SIG(sig, &p) != len) {
                free(der);
                return -ENOMEM;
        }
        *ret = der;
        if (ret_len)
                *ret_len = (size_t) len;
        return 0;
}

int jose_ecdsa_der_to_raw(const uint8_t *der, size_t der_len, size_t n, uint8_t *out) {
        _cleanup_(ECDSA_SIG_freep) ECDSA_SIG *sig = NULL;
        const BIGNUM *r, *s;
        const uint8_t *p = der;
        uint8_t *again = NULL;
        int len;
        bool strict;

        if (!der || !out || der_len == 0 || der_len > 1024 || n == 0 || n > 66)
                return -EINVAL;
        sig = d2i_ECDSA_SIG(NULL, &p, (long) der_len);
        if (!sig || p != der + der_len)
                return -EINVAL;
        /* Only the one DER encoding: re-encode and compare (BER forms, long lengths, padding are refused). */
        len = i2d_ECDSA_SIG(sig, &again);
        strict = len > 0 && (size_t) len == der_len && memcmp(again, der, der_len) == 0;
        OPENSSL_free(again);
        if (!strict)
                return -EINVAL;
        ECDSA_SIG_get0(sig, &r, &s);
        if (BN_is_negative(r) || BN_is_negative(s))
                return -EINVAL;
        if ((size_t) BN_num_bytes(r) > n || (size_t) BN_num_bytes(s) > n)
                return -ENOBUFS;
        if (BN_bn2binpad(r, out, (int) n) != (int) n || BN_bn2binpad(s, out + n, (int) n) != (int) n)
                return -EINVAL;
        return 0;
}

/* 0 < v < order, both n bytes big-endian. */
static bool ec_scalar_in_range(const uint8_t *v, const uint8_t *order, size_t n) {
        bool zero = true;

        for (size_t i = 0; i < n; i++)
                if (v[i] != 0)
                        zero = false;
        return !zero && memcmp(v, order, n) < 0;
}

/* One EVP_DigestVerify; md NULL for Ed25519; pss selects RSASSA-PSS with MGF1-SHA256 and a 32-byte salt. */
static JoseResult digest_verify(EVP_PKEY *pkey, const EVP_MD *md, bool pss, const void *msg, size_t msg_len,
                                const void *sig, size_t sig_len) {
        _cleanup_(EVP_MD_CTX_freep) EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        EVP_PKEY_CTX *pctx = NULL; /* owned by ctx */
        int r;

        if (!ctx)
                return JOSE_INTERNAL;
        if (EVP_DigestVerifyInit(ctx, &pctx, md, NULL, pkey) != 1)
                goto internal;
        if (pss &&
            (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) <= 0 ||
             EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) <= 0 || EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 32) <= 0))
                goto internal;
        r = EVP_DigestVerify(ctx, sig, sig_len, msg_len > 0 ? msg : (const void *) "", msg_len);
        /* The set-up succeeded, so any failure from here is the signature's (malformed padding, s ≥ n, ...). */
        ERR_clear_error();
        return r == 1 ? JOSE_OK : JOSE_BAD_SIGNATURE;

internal:
        ERR_clear_error();
        return JOSE_INTERNAL;
}

/* R‖S (both n bytes, 0 < r, s < order) as the one DER encoding of an ECDSA-Sig-Value, written into out (room for
 * 2 × (n + 3) + 3 bytes): the bytes i2d_ECDSA_SIG() writes, without a BIGNUM or an allocation. Returns its length. */
static size_t ecdsa_raw_to_der_to(const uint8_t *raw, size_t n, uint8_t *out) {
        size_t len[2], skip[2], body = 0, o = 0;

        for (int i = 0; i < 2; i++) {
                const uint8_t *v = raw + i * n;
                skip[i] = 0;
                while (skip[i] < n - 1 && v[skip[i]] == 0)
                        skip[i]++;
                len[i] = n - skip[i] + ((v[skip[i]] & 0x80) ? 1 : 0);
                body += 2 + len[i];
        }
        out[o++] = 0x30;
        if (body >= 0x80)
                out[o++] = 0x81;
        out[o++] = (uint8_t) body;
        for (int i = 0; i < 2; i++) {
                const uint8_t *v = raw + i * n;
                out[o++] = 0x02;
                out[o++] = (uint8_t) len[i];
                if (v[skip[i]] & 0x80)
                        out[o++] = 0;
                memcpy(out + o, v + skip[i], n - skip[i]);
                o += n - skip[i];
        }
        return o;
}

static JoseResult verify_ecdsa(KeydAlg alg, EVP_PKEY *pkey, const void *msg, size_t msg_len, const uint8_t *sig,
                               size_t sig_len) {
        uint8_t der[2 * (66 + 3) + 3];
        const uint8_t *order = jose_ec_order(alg);
        size_t n = keyd_alg_ec_size(alg);

        if (sig_len != 2 * n)
                return JOSE_BAD_SIGNATURE;
        if (!ec_scalar_in_range(sig, order, n) || !ec_scalar_in_range(sig + n, order, n))
                return JOSE_BAD_SIGNATURE;
        return digest_verify(pkey, alg == KEYD_ALG_ES256 ? EVP_sha256() : EVP_sha384(), false, msg, msg_len, der,
                             ecdsa_raw_to_der_to(sig, n, der));
}

JoseResult jose_verify_signature(KeydAlg alg, EVP_PKEY *pkey, const void *msg, size_t msg_len, const void *sig,
                                 size_t sig_len) {
        if (!jose_pkey_matches_alg(pkey, alg))
                return JOSE_UNSUPPORTED_ALG;
        if ((!msg && msg_len > 0) || !sig || sig_len == 0)
                return JOSE_BAD_SIGNATURE;

        switch (alg) {
        case KEYD_ALG_ES256:
        case KEYD_ALG_ES384:
                return verify_ecdsa(alg, pkey, msg, msg_len, sig, sig_len);
        case KEYD_ALG_RS256:
        case KEYD_ALG_PS256:
                if (EVP_PKEY_get_size(pkey) <= 0 || sig_len != (size_t) EVP_PKEY_get_size(pkey))
                        return JOSE_BAD_SIGNATURE;
                return digest_verify(pkey, EVP_sha256(), alg == KEYD_ALG_PS256, msg, msg_len, sig, sig_len);
        case KEYD_ALG_EDDSA:
                if (sig_len != 64)
                        return JOSE_BAD_SIGNATURE;
                return digest_verify(pkey, NULL, false, msg, msg_len, sig, sig_len);
        default:
                return JOSE_UNSUPPORTED_ALG;
        }
}

JoseResult jose_jws_verify(const JoseJws *jws, EVP_PKEY *pkey, KeydAlg key_alg) {
        if (!jws)
                return JOSE_INTERNAL;
        /* The algorithm comes from the key: the header may only name the same one. */
        if (key_alg < 0 || key_alg >= _KEYD_ALG_MAX || jws->alg != key_alg)
                return JOSE_UNSUPPORTED_ALG;
        return jose_verify_signature(key_alg, pkey, jws->signing_input, jws->signing_input_len, jws->signature,
                                     jws->signature_len);
}

/* ---- A key prepared once for many verifications ----
 *
 * EVP_DigestVerifyInit() fetches the digest and the signature algorithm from the provider and builds a context for
 * every call, and jose_verify_signature() asks the key what it is every time. A JoseVerifier does that once per key:
 * the digest fetched, an EVP_PKEY_CTX set up for EVP_PKEY_verify() (padding and digest), checked against the alg.
 * A verification hashes the signing input and calls EVP_PKEY_verify() on a context taken from a small pool (a
 * duplicate of the template when the pool is empty), so that threads never share one. */

#define VERIFIER_POOL 16

typedef struct VerifyCtx {
        EVP_PKEY_CTX *pctx;
        EVP_MD_CTX *mctx;
} VerifyCtx;

struct JoseVerifier {
        unsigned refs; /* atomic */
        EVP_PKEY *pkey;
        KeydAlg alg;
        bool matches;  /* the key fits alg (else every verification is JOSE_UNSUPPORTED_ALG) */
        bool prepared; /* md and tmpl are ready; else jose_verify_signature() does the work */
        size_t sig_size; /* RSA: the modulus size in bytes */
        EVP_MD *md;
        EVP_PKEY_CTX *tmpl;
        pthread_mutex_t lock;
        size_t n_free;
        VerifyCtx free[VERIFIER_POOL];
};

static void verify_ctx_done(VerifyCtx *c) {
        EVP_PKEY_CTX_free(c->pctx);
        EVP_MD_CTX_free(c->mctx);
        *c = (VerifyCtx){ 0 };
}

static bool verifier_prepare(JoseVerifier *v) {
        const char *md_name = v->alg == KEYD_ALG_ES384 ? "SHA384" : "SHA256";

        switch (v->alg) {
        case KEYD_ALG_ES256:
        case KEYD_ALG_ES384:
        case KEYD_ALG_RS256:
        case KEYD_ALG_PS256:
                break;
        default:
                return false; /* Ed25519 has no separate digest: the one-shot EVP_DigestVerify() */
        }
        if (!keyd_alg_is_ec(v->alg)) {
                int size = EVP_PKEY_get_size(v->pkey);
                if (size <= 0)
                        return false;
                v->sig_size = (size_t) size;
        }
        v->md = EVP_MD_fetch(NULL, md_name, NULL);
        v->tmpl = v->md ? EVP_PKEY_CTX_new_from_pkey(NULL, v->pkey, NULL) : NULL;
        if (!v->tmpl || EVP_PKEY_verify_init(v->tmpl) <= 0)
                return false;
        if (v->alg == KEYD_ALG_RS256 && EVP_PKEY_CTX_set_rsa_padding(v->tmpl, RSA_PKCS1_PADDING) <= 0)
                return false;
        if (v->alg == KEYD_ALG_PS256 &&
            (EVP_PKEY_CTX_set_rsa_padding(v->tmpl, RSA_PKCS1_PSS_PADDING) <= 0 ||
             EVP_PKEY_CTX_set_rsa_mgf1_md(v->tmpl, v->md) <= 0 || EVP_PKEY_CTX_set_rsa_pss_saltlen(v->tmpl, 32) <= 0))
                return false;
        return EVP_PKEY_CTX_set_signature_md(v->tmpl, v->md) > 0;
}

int jose_verifier_new(EVP_PKEY *pkey, KeydAlg alg, JoseVerifier **ret) {
        JoseVerifier *v;

        if (!pkey || !ret)
                return -EINVAL;
        v = calloc(1, sizeof *v);
        if (!v)
                return -ENOMEM;
        if (EVP_PKEY_up_ref(pkey) != 1) {
                free(v);
                return -ENOMEM;
        }
        v->refs = 1;
        v->pkey = pkey;
        v->alg = alg;
        pthread_mutex_init(&v->lock, NULL);
        v->matches = alg >= 0 && alg < _KEYD_ALG_MAX && jose_pkey_matches_alg(pkey, alg);
        if (v->matches && !verifier_prepare(v)) {
                /* Not fatal: the unprepared path verifies the same way, only slower. */
                EVP_PKEY_CTX_free(TAKE_PTR(v->tmpl));
                EVP_MD_free(TAKE_PTR(v->md));
        }
        v->prepared = v->tmpl != NULL;
        ERR_clear_error();
        *ret = v;
        return 0;
}

JoseVerifier *jose_verifier_ref(JoseVerifier *v) {
        if (v)
                __atomic_add_fetch(&v->refs, 1, __ATOMIC_RELAXED);
        return v;
}

JoseVerifier *jose_verifier_unref(JoseVerifier *v) {
        if (!v || __atomic_sub_fetch(&v->refs, 1, __ATOMIC_ACQ_REL) > 0)
                return NULL;
        for (size_t i = 0; i < v->n_free; i++)
                verify_ctx_done(&v->free[i]);
        EVP_PKEY_CTX_free(v->tmpl);
        EVP_MD_free(v->md);
        EVP_PKEY_free(v->pkey);
        pthread_mutex_destroy(&v->lock);
        free(v);
        return NULL;
}

EVP_PKEY *jose_verifier_pkey(const JoseVerifier *v) {
        return v ? v->pkey : NULL;
}

static VerifyCtx verifier_take(JoseVerifier *v) {
        VerifyCtx c = { 0 };

        pthread_mutex_lock(&v->lock);
        if (v->n_free > 0)
                c = v->free[--v->n_free];
        pthread_mutex_unlock(&v->lock);
        if (c.pctx)
                return c;
        c.pctx = EVP_PKEY_CTX_dup(v->tmpl);
        c.mctx = EVP_MD_CTX_new();
        if (!c.pctx || !c.mctx)
                verify_ctx_done(&c);
        return c;
}

static void verifier_give(JoseVerifier *v, VerifyCtx *c) {
        pthread_mutex_lock(&v->lock);
        if (v->n_free < VERIFIER_POOL) {
                v->free[v->n_free++] = *c;
                *c = (VerifyCtx){ 0 };
        }
        pthread_mutex_unlock(&v->lock);
        verify_ctx_done(c);
}

/* The digest of msg, then EVP_PKEY_verify() with the prepared context: what EVP_DigestVerify() does. */
static JoseResult prepared_verify(JoseVerifier *v, const void *msg, size_t msg_len, const uint8_t *sig,
                                  size_t sig_len) {
        uint8_t digest[EVP_MAX_MD_SIZE];
        unsigned digest_len = 0;
        VerifyCtx c = verifier_take(v);
        JoseResult res;
        int r;

        if (!c.pctx) {
                ERR_clear_error();
                return JOSE_INTERNAL;
        }
        if (EVP_DigestInit_ex2(c.mctx, v->md, NULL) != 1 || EVP_DigestUpdate(c.mctx, msg, msg_len) != 1 ||
            EVP_DigestFinal_ex(c.mctx, digest, &digest_len) != 1) {
                verify_ctx_done(&c);
                ERR_clear_error();
                return JOSE_INTERNAL;
        }
        r = EVP_PKEY_verify(c.pctx, sig, sig_len, digest, digest_len);
        res = r == 1 ? JOSE_OK : JOSE_BAD_SIGNATURE;
        if (r != 1)
                /* The set-up succeeded, so any failure from here is the signature's (malformed padding, s ≥ n, ...). */
                ERR_clear_error();
        verifier_give(v, &c);
        return res;
}

JoseResult jose_verifier_verify(JoseVerifier *v, const void *msg, size_t msg_len, const void *sig, size_t sig_len) {
        if (!v)
                return JOSE_INTERNAL;
        if (!v->matches)
                return JOSE_UNSUPPORTED_ALG;
        if ((!msg && msg_len > 0) || !sig || sig_len == 0)
                return JOSE_BAD_SIGNATURE;
        if (!v->prepared)
                return jose_verify_signature(v->alg, v->pkey, msg, msg_len, sig, sig_len);
        if (keyd_alg_is_ec(v->alg)) {
                uint8_t der[2 * (66 + 3) + 3];
                size_t n = keyd_alg_ec_size(v->alg);
                const uint8_t *order = jose_ec_order(v->alg);
                if (sig_len != 2 * n || !ec_scalar_in_range(sig, order, n) ||
                    !ec_scalar_in_range((const uint8_t *) sig + n, order, n))
                        return JOSE_BAD_SIGNATURE;
                return prepared_verify(v, msg ?: "", msg_len, der, ecdsa_raw_to_der_to(sig, n, der));
        }
        if (sig_len != v->sig_size)
                return JOSE_BAD_SIGNATURE;
        return prepared_verify(v, msg ?: "", msg_len, sig, sig_len);
}

JoseResult jose_jws_verify_with(const JoseJws *jws, JoseVerifier *v) {
        if (!jws || !v)
                return JOSE_INTERNAL;
        /* The algorithm comes from the key: the header may only name the same one. */
        if (v->alg < 0 || v->alg >= _KEYD_ALG_MAX || jws->alg != v->alg)
                return JOSE_UNSUPPORTED_ALG;
        return jose_verifier_verify(v, jws->signing_input, jws->signing_input_len, jws->signature,
                                    jws->signature_len);
}
