/* SPDX-License-Identifier: MIT */
#include <criterion/criterion.h>
#include <openssl/rsa.h>
#include <stdio.h>

#include "common/crypto-util.h"
#include "jose/b64.h"
#include "jose/jws.h"
#include "tests/helpers/test-crypto.h"

EVP_PKEY *test_gen_key(KeydAlg alg) {
        EVP_PKEY *k = NULL;
        switch (alg) {
        case KEYD_ALG_ES256:
                k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
                break;
        case KEYD_ALG_ES384:
                k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
                break;
        case KEYD_ALG_RS256:
        case KEYD_ALG_PS256:
                k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t) 2048);
                break;
        case KEYD_ALG_EDDSA:
                k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
                break;
        default:
                break;
        }
        cr_assert_not_null(k, "keygen %s", keyd_alg_to_string(alg));
        return k;
}

uint8_t *test_sign(EVP_PKEY *key, KeydAlg alg, const void *msg, size_t len, bool der, size_t *ret_len) {
        _cleanup_(EVP_MD_CTX_freep) EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        EVP_PKEY_CTX *pctx = NULL;
        const EVP_MD *md = alg == KEYD_ALG_ES384 ? EVP_sha384() : alg == KEYD_ALG_EDDSA ? NULL : EVP_sha256();
        uint8_t buf[600], *out;
        size_t n = sizeof buf;

        cr_assert_not_null(ctx);
        cr_assert_eq(EVP_DigestSignInit(ctx, &pctx, md, NULL, key), 1);
        if (alg == KEYD_ALG_PS256) {
                cr_assert_gt(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING), 0);
                cr_assert_gt(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 32), 0);
                cr_assert_gt(EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()), 0);
        }
        cr_assert_eq(EVP_DigestSign(ctx, buf, &n, msg, len), 1);
        if (keyd_alg_is_ec(alg) && !der) {
                size_t c = keyd_alg_ec_size(alg);
                out = malloc(2 * c);
                cr_assert_not_null(out);
                cr_assert_eq(jose_ecdsa_der_to_raw(buf, n, c, out), 0);
                n = 2 * c;
        } else {
                out = malloc(n);
                cr_assert_not_null(out);
                memcpy(out, buf, n);
        }
        *ret_len = n;
        return out;
}

char *test_b64url(const void *data, size_t n) {
        char *s;
        cr_assert_eq(jose_b64url_encode(data, n, &s), 0);
        return s;
}

char *test_jws_input(const char *header_text, const char *payload) {
        _cleanup_free_ char *h = test_b64url(header_text, strlen(header_text)),
                           *p = test_b64url(payload, strlen(payload));
        char *s;
        cr_assert(asprintf(&s, "%s.%s", h, p) > 0);
        return s;
}

char *test_jws_with_signature(const char *input, const void *sig, size_t sig_len) {
        _cleanup_free_ char *b = test_b64url(sig, sig_len);
        char *s;
        cr_assert(asprintf(&s, "%s.%s", input, b) > 0);
        return s;
}
