/* SPDX-License-Identifier: MIT */
/* jose/: base64url, JWK, thumbprints, the RFC examples, ECDSA signature forms, keys made by OpenSSL. */
#include <criterion/criterion.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>

#include "common/crypto-util.h"
#include "jose/b64.h"
#include "jose/jose-internal.h"
#include "jose/jwk.h"
#include "jose/jws.h"
#include "tests/helpers/test-crypto.h"
#include "tests/helpers/test-util.h"

static const KeydAlg all_algs[] = {KEYD_ALG_ES256, KEYD_ALG_ES384, KEYD_ALG_RS256, KEYD_ALG_PS256, KEYD_ALG_EDDSA};

static const char *vec_str(const json_t *v, const char *key) {
        const char *s = json_string_value(json_object_get(v, key));
        cr_assert_not_null(s, "vector member %s", key);
        return s;
}

/* ---- base64url ---- */

Test(b64, rfc4648_vectors) {
        static const struct {
                const char *in, *out;
        } v[] = {{"", ""},           {"f", "Zg"},          {"fo", "Zm8"},          {"foo", "Zm9v"},
                 {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"}, {"\xfb\xff", "-_8"}};
        for (size_t i = 0; i < ELEMENTSOF(v); i++) {
                _cleanup_free_ char *s = NULL;
                _cleanup_free_ void *back = NULL;
                size_t n;
                cr_assert_eq(jose_b64url_encode(v[i].in, strlen(v[i].in), &s), 0);
                cr_assert_str_eq(s, v[i].out);
                cr_assert_eq(jose_b64url_decode(v[i].out, strlen(v[i].out), &back, &n), 0);
                cr_assert_eq(n, strlen(v[i].in));
                cr_assert_arr_eq(back, v[i].in, n);
        }
}

Test(b64, refusals) {
        static const char *const bad[] = {
                "QQ==", "QQ=", "QUI=", "Q Q", "QQ\n",  " QQ", "QUJD\t", "QU+D", "QU/D", "QU?D",       "QUJD?",
                "QR",   "QX",  "QUJ",  "QUK", "QUJDR", "Q",   "QUJD=",  "QU%D", "QU.D", "\xc3\xa9QQ",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                void *buf = (void *) 0x1;
                size_t n = 4242;
                uint8_t out[16] = {};
                cr_assert_eq(jose_b64url_decode(bad[i], strlen(bad[i]), &buf, &n), -EINVAL, "'%s' accepted", bad[i]);
                cr_assert_eq(buf, (void *) 0x1, "'%s': output written on refusal", bad[i]);
                cr_assert_eq(n, 4242);
                cr_assert_eq(jose_b64url_decode_to(bad[i], strlen(bad[i]), out, sizeof out, &n), -EINVAL, "'%s'",
                             bad[i]);
                cr_assert_eq(n, 4242);
        }
        /* A NUL inside the given length is not base64url either. */
        void *buf = NULL;
        size_t n;
        cr_assert_eq(jose_b64url_decode("QU\0D", 4, &buf, &n), -EINVAL);
        /* The same values, canonically encoded, are accepted: the refusals above are about form only. */
        cr_assert_eq(jose_b64url_decode("QQ", 2, &buf, &n), 0);
        cr_assert_eq(n, 1);
        cr_assert_eq(((uint8_t *) buf)[0], 'A');
        free(buf);
}

Test(b64, no_room) {
        uint8_t out[2];
        size_t n = 99;
        cr_assert_eq(jose_b64url_decode_to("QUJD", 4, out, sizeof out, &n), -ENOBUFS);
        cr_assert_eq(n, 99);
        cr_assert_eq(jose_b64url_decode_to("QUI", 3, out, sizeof out, &n), 0);
        cr_assert_eq(n, 2);
}

Test(b64, round_trips_0_to_100) {
        uint8_t data[100];
        for (size_t i = 0; i < sizeof data; i++)
                data[i] = (uint8_t) (i * 37 + 11) ^ (uint8_t) (i >> 1);
        for (size_t len = 0; len <= 100; len++) {
                _cleanup_free_ char *s = NULL;
                _cleanup_free_ void *back = NULL;
                uint8_t out[100];
                size_t n = 0, m = 0;
                cr_assert_eq(jose_b64url_encode(data, len, &s), 0);
                cr_assert_eq(strlen(s), jose_b64url_encoded_len(len));
                cr_assert_eq(jose_b64url_decoded_max(strlen(s)), len);
                cr_assert_eq(jose_b64url_decode(s, strlen(s), &back, &n), 0, "len %zu: %s", len, s);
                cr_assert_eq(n, len);
                cr_assert_arr_eq(back, data, len);
                cr_assert_eq(((char *) back)[n], 0, "decoded buffer is NUL-terminated");
                cr_assert_eq(jose_b64url_decode_to(s, strlen(s), out, len, &m), 0);
                cr_assert_eq(m, len);
                cr_assert_arr_eq(out, data, len);
        }
}

/* ---- JWK ---- */

Test(jwk, thumbprint_rfc7638) {
        _cleanup_json_ json_t *v = test_load_json("tests/vectors/rfc/rfc7638-3.1.json");
        char tp[JOSE_THUMBPRINT_LEN + 1];
        cr_assert_eq(jose_jwk_thumbprint(json_object_get(v, "jwk"), tp), 0);
        cr_assert_str_eq(tp, vec_str(v, "thumbprint"));
        cr_assert_str_eq(tp, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");

        /* Only the required members count: dropping alg and kid changes nothing, changing e changes it. */
        _cleanup_json_ json_t *bare = json_deep_copy(json_object_get(v, "jwk"));
        cr_assert_eq(json_object_del(bare, "alg"), 0);
        cr_assert_eq(json_object_del(bare, "kid"), 0);
        char tp2[JOSE_THUMBPRINT_LEN + 1];
        cr_assert_eq(jose_jwk_thumbprint(bare, tp2), 0);
        cr_assert_str_eq(tp2, tp);
        cr_assert_eq(json_object_set_new(bare, "e", json_string("AQAC")), 0);
        cr_assert_eq(jose_jwk_thumbprint(bare, tp2), 0);
        cr_assert_str_neq(tp2, tp);
}

Test(jwk, thumbprint_rfc8037) {
        _cleanup_json_ json_t *v = test_load_json("tests/vectors/rfc/rfc8037-a4.json");
        char tp[JOSE_THUMBPRINT_LEN + 1];
        cr_assert_eq(jose_jwk_thumbprint(json_object_get(v, "jwk"), tp), 0);
        cr_assert_str_eq(tp, vec_str(v, "thumbprint"));
}

Test(jwk, thumbprint_refusals) {
        static const char *const bad[] = {
                "{\"kty\":\"oct\",\"k\":\"AAAA\"}",
                "{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AAAA\"}",
                "{\"kty\":\"RSA\",\"n\":\"AAAA\",\"e\":1}",
                "{\"crv\":\"Ed25519\",\"x\":\"AAAA\"}",
                "[]",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_json_ json_t *j = json_loads(bad[i], 0, NULL);
                char tp[JOSE_THUMBPRINT_LEN + 1] = "untouched";
                cr_assert_not_null(j);
                cr_assert_eq(jose_jwk_thumbprint(j, tp), -EINVAL, "%s", bad[i]);
                cr_assert_str_eq(tp, "untouched");
        }
}

/* {kty, n, e} of a fresh RSA key of that size, built here (jose_jwk_from_pkey() refuses small keys). */
static json_t *rsa_jwk_of_bits(size_t bits) {
        _cleanup_pkey_ EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", bits);
        _cleanup_(BN_freep) BIGNUM *n = NULL, *e = NULL;
        _cleanup_free_ char *ns = NULL, *es = NULL;
        uint8_t nb[512], eb[8];
        cr_assert_not_null(key);
        cr_assert_eq(EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_N, &n), 1);
        cr_assert_eq(EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_E, &e), 1);
        int nl = BN_bn2bin(n, nb), el = BN_bn2bin(e, eb);
        cr_assert_eq(jose_b64url_encode(nb, (size_t) nl, &ns), 0);
        cr_assert_eq(jose_b64url_encode(eb, (size_t) el, &es), 0);
        return json_pack("{s:s,s:s,s:s}", "kty", "RSA", "n", ns, "e", es);
}

Test(jwk, to_pkey_refusals) {
        _cleanup_json_ json_t *a3 = test_load_json("tests/vectors/rfc/rfc7515-a3.json");
        _cleanup_json_ json_t *a2 = test_load_json("tests/vectors/rfc/rfc7515-a2.json");
        const json_t *ec = json_object_get(a3, "jwk"), *rsa = json_object_get(a2, "jwk");
        const char *x = vec_str(ec, "x"), *n = vec_str(rsa, "n");
        char x_bad_point[64], x_padded[64], n_zero[400];
        _cleanup_free_ char *n_big = NULL;
        uint8_t big[513];
        EVP_PKEY *pkey;

        memset(big, 0xc5, sizeof big);
        cr_assert_eq(jose_b64url_encode(big, sizeof big, &n_big), 0);

        /* The same key, sound, is accepted (so each refusal below is about its one change). */
        cr_assert_eq(jose_jwk_to_pkey(ec, &pkey), 0);
        EVP_PKEY_free(pkey);
        cr_assert_eq(jose_jwk_to_pkey(rsa, &pkey), 0);
        EVP_PKEY_free(pkey);
        _cleanup_json_ json_t *rsa2048 = rsa_jwk_of_bits(2048);
        cr_assert_eq(jose_jwk_to_pkey(rsa2048, &pkey), 0);
        EVP_PKEY_free(pkey);

        /* x with its first character changed: (x', y) is not on P-256. */
        snprintf(x_bad_point, sizeof x_bad_point, "%c%s", x[0] == 'A' ? 'B' : 'A', x + 1);
        /* 33 bytes (a leading zero octet) instead of 32. */
        snprintf(x_padded, sizeof x_padded, "AA%s", x);
        snprintf(n_zero, sizeof n_zero, "AA%s", n);

        struct {
                json_t *jwk;
                const char *what;
        } bad[] = {
                {json_pack("{s:s}", "kty", "EC"), "EC without crv"},
                {json_pack("{s:s,s:s,s:s,s:s}", "kty", "EC", "crv", "P-521", "x", x, "y", vec_str(ec, "y")), "P-521"},
                {json_pack("{s:s,s:s,s:s,s:s}", "kty", "EC", "crv", "P-256", "x", x_bad_point, "y", vec_str(ec, "y")),
                 "point not on the curve"},
                {json_pack("{s:s,s:s,s:s,s:s}", "kty", "EC", "crv", "P-256", "x", x_padded, "y", vec_str(ec, "y")),
                 "33-byte x"},
                {json_pack("{s:s,s:s,s:s,s:s}", "kty", "EC", "crv", "P-256", "x", "AAAA", "y", vec_str(ec, "y")),
                 "3-byte x"},
                {json_pack("{s:s,s:s,s:s,s:s}", "kty", "EC", "crv", "P-384", "x", x, "y", vec_str(ec, "y")),
                 "P-256 coordinates as P-384"},
                {json_pack("{s:s,s:s,s:s,s:i}", "kty", "EC", "crv", "P-256", "x", x, "y", 1), "y a number"},
                {json_pack("{s:s,s:s,s:s}", "kty", "RSA", "n", n_zero, "e", "AQAB"), "n with a leading zero"},
                {json_pack("{s:s,s:s,s:s}", "kty", "RSA", "n", n, "e", "AAEAAQ"), "e with a leading zero"},
                {json_pack("{s:s,s:s,s:s}", "kty", "RSA", "n", n, "e", "AQ"), "e = 1"},
                {json_pack("{s:s,s:s,s:s}", "kty", "RSA", "n", n, "e", "AQAC"), "even e"},
                {rsa_jwk_of_bits(1024), "a 1024-bit modulus"},
                {json_pack("{s:s,s:s,s:s}", "kty", "RSA", "n", n_big, "e", "AQAB"), "a 4104-bit modulus"},
                {json_pack("{s:s,s:s,s:s}", "kty", "RSA", "n", "AQAB=", "e", "AQAB"), "padded base64"},
                {json_pack("{s:s,s:s,s:s}", "kty", "OKP", "crv", "Ed448", "x", x), "Ed448"},
                {json_pack("{s:s,s:s,s:s}", "kty", "OKP", "crv", "X25519", "x", x), "X25519"},
                {json_pack("{s:s,s:s,s:s}", "kty", "OKP", "crv", "Ed25519", "x", x_padded), "33-byte Ed25519"},
                {json_pack("{s:s,s:s}", "kty", "oct", "k", "AAAA"), "oct"},
                {json_pack("{s:s}", "x", x), "no kty"},
                {json_pack("[]"), "an array"},
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                pkey = (EVP_PKEY *) 0x1;
                cr_assert_not_null(bad[i].jwk, "%s", bad[i].what);
                cr_assert_eq(jose_jwk_to_pkey(bad[i].jwk, &pkey), -EINVAL, "%s accepted", bad[i].what);
                cr_assert_eq(pkey, (EVP_PKEY *) 0x1, "%s: output written on refusal", bad[i].what);
                json_decref(bad[i].jwk);
        }
}

Test(jwk, to_pkey_usage) {
        _cleanup_json_ json_t *v = test_load_json("tests/vectors/rfc/rfc7515-a3.json");
        static const char *const members[][2] = {
                {"use", "\"sig\""},
                {"key_ops", "[\"verify\"]"},
                {"key_ops", "[\"sign\",\"verify\"]"},
                {"use", "\"enc\""},
                {"key_ops", "[\"encrypt\"]"},
                {"key_ops", "[]"},
                {"key_ops", "\"verify\""},
                {"use", "1"},
                {"key_ops", "[\"verify\",1]"},
        };
        for (size_t i = 0; i < ELEMENTSOF(members); i++) {
                _cleanup_json_ json_t *jwk = json_deep_copy(json_object_get(v, "jwk"));
                _cleanup_pkey_ EVP_PKEY *pkey = NULL;
                cr_assert_eq(json_object_set_new(jwk, members[i][0], json_loads(members[i][1], JSON_DECODE_ANY, NULL)),
                             0);
                int r = jose_jwk_to_pkey(jwk, &pkey);
                if (i < 3)
                        cr_assert_eq(r, 0, "%s: %s refused", members[i][0], members[i][1]);
                else
                        cr_assert_eq(r, -EINVAL, "%s: %s accepted", members[i][0], members[i][1]);
        }
}

static void check_from_pkey(KeydAlg alg) {
        _cleanup_pkey_ EVP_PKEY *key = test_gen_key(alg), *back = NULL;
        _cleanup_json_ json_t *jwk = NULL;
        _cleanup_free_ uint8_t *sig = NULL;
        _cleanup_free_ void *bytes = NULL;
        const char *msg = "message signed by OpenSSL";
        size_t sig_len, n;

        cr_assert_eq(jose_jwk_from_pkey(key, alg, &jwk), 0, "%s", keyd_alg_to_string(alg));
        if (keyd_alg_is_ec(alg)) {
                cr_assert_eq(json_object_size(jwk), 4);
                cr_assert_str_eq(vec_str(jwk, "kty"), "EC");
                cr_assert_str_eq(vec_str(jwk, "crv"), keyd_alg_jwk_crv(alg));
                cr_assert_eq(strlen(vec_str(jwk, "x")), jose_b64url_encoded_len(keyd_alg_ec_size(alg)));
                cr_assert_eq(strlen(vec_str(jwk, "y")), jose_b64url_encoded_len(keyd_alg_ec_size(alg)));
        } else if (keyd_alg_is_rsa(alg)) {
                cr_assert_eq(json_object_size(jwk), 3);
                cr_assert_str_eq(vec_str(jwk, "kty"), "RSA");
                cr_assert_str_eq(vec_str(jwk, "e"), "AQAB");
                cr_assert_eq(jose_b64url_decode(vec_str(jwk, "n"), strlen(vec_str(jwk, "n")), &bytes, &n), 0);
                cr_assert_eq(n, 256);
                cr_assert_neq(((uint8_t *) bytes)[0], 0, "n is minimal");
        } else {
                cr_assert_eq(json_object_size(jwk), 3);
                cr_assert_str_eq(vec_str(jwk, "kty"), "OKP");
                cr_assert_str_eq(vec_str(jwk, "crv"), "Ed25519");
                cr_assert_eq(strlen(vec_str(jwk, "x")), 43);
        }

        cr_assert_eq(jose_jwk_to_pkey(jwk, &back), 0);
        cr_assert_eq(EVP_PKEY_eq(key, back), 1, "%s: the JWK names the same public key", keyd_alg_to_string(alg));
        cr_assert_eq(jose_pkey_matches_alg(back, alg), 1);

        sig = test_sign(key, alg, msg, strlen(msg), false, &sig_len);
        cr_assert_eq(jose_verify_signature(alg, back, msg, strlen(msg), sig, sig_len), JOSE_OK);
        cr_assert_eq(jose_verify_signature(alg, back, msg, strlen(msg) - 1, sig, sig_len), JOSE_BAD_SIGNATURE);

        /* And as a whole token: header and payload through jose_jws_signing_input(), the signature appended. */
        _cleanup_json_ json_t *header = json_pack("{s:s,s:s}", "alg", keyd_alg_to_string(alg), "kid", "k1");
        _cleanup_free_ char *token = NULL;
        _cleanup_free_ uint8_t *tsig = NULL;
        size_t len, tsig_len;
        cr_assert_eq(jose_jws_signing_input(header, msg, strlen(msg), &token, &len), 0);
        tsig = test_sign(key, alg, token, len, false, &tsig_len);
        int total = jose_jws_append_signature(token, len, tsig, tsig_len);
        cr_assert_gt(total, (int) len);
        JoseJws *jws = NULL;
        cr_assert_eq(jose_jws_parse(token, (size_t) total, &jws), JOSE_OK);
        cr_assert_str_eq(jws->kid, "k1");
        cr_assert_eq(jws->alg, alg);
        cr_assert_eq(jws->payload_len, strlen(msg));
        cr_assert_str_eq((char *) jws->payload, msg);
        cr_assert_eq(jose_jws_verify(jws, back, alg), JOSE_OK);
        jose_jws_free(jws);
}

Test(jwk, from_pkey_es256) {
        check_from_pkey(KEYD_ALG_ES256);
}
Test(jwk, from_pkey_es384) {
        check_from_pkey(KEYD_ALG_ES384);
}
Test(jwk, from_pkey_rs256) {
        check_from_pkey(KEYD_ALG_RS256);
}
Test(jwk, from_pkey_ps256) {
        check_from_pkey(KEYD_ALG_PS256);
}
Test(jwk, from_pkey_eddsa) {
        check_from_pkey(KEYD_ALG_EDDSA);
}

/* A coordinate that starts with a zero octet is still written on the curve's full size (RFC 7518 §6.2.1.2). */
Test(jwk, ec_coordinates_padded) {
        for (int i = 0; i < 5000; i++) {
                _cleanup_pkey_ EVP_PKEY *key = test_gen_key(KEYD_ALG_ES256), *back = NULL;
                _cleanup_(BN_freep) BIGNUM *x = NULL, *y = NULL;
                cr_assert_eq(EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_X, &x), 1);
                cr_assert_eq(EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_Y, &y), 1);
                if (BN_num_bytes(x) == 32 && BN_num_bytes(y) == 32)
                        continue;
                _cleanup_json_ json_t *jwk = NULL;
                cr_assert_eq(jose_jwk_from_pkey(key, KEYD_ALG_ES256, &jwk), 0);
                cr_assert_eq(strlen(vec_str(jwk, "x")), 43);
                cr_assert_eq(strlen(vec_str(jwk, "y")), 43);
                cr_assert_eq(jose_jwk_to_pkey(jwk, &back), 0);
                cr_assert_eq(EVP_PKEY_eq(key, back), 1);
                return;
        }
        cr_assert_fail("no key with a short coordinate in 5000 tries");
}

Test(jwk, alg_mismatch) {
        _cleanup_pkey_ EVP_PKEY *p256 = test_gen_key(KEYD_ALG_ES256), *ed = test_gen_key(KEYD_ALG_EDDSA),
                                *rsa1024 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t) 1024);
        json_t *jwk = (json_t *) 0x1;
        cr_assert_not_null(rsa1024);
        cr_assert_eq(jose_jwk_from_pkey(p256, KEYD_ALG_ES384, &jwk), -EINVAL);
        cr_assert_eq(jose_jwk_from_pkey(p256, KEYD_ALG_RS256, &jwk), -EINVAL);
        cr_assert_eq(jose_jwk_from_pkey(ed, KEYD_ALG_ES256, &jwk), -EINVAL);
        cr_assert_eq(jose_jwk_from_pkey(rsa1024, KEYD_ALG_RS256, &jwk), -EINVAL);
        cr_assert_eq(jwk, (json_t *) 0x1);
        for (size_t i = 0; i < ELEMENTSOF(all_algs); i++) {
                cr_assert_eq(jose_pkey_matches_alg(p256, all_algs[i]), all_algs[i] == KEYD_ALG_ES256);
                cr_assert_eq(jose_pkey_matches_alg(ed, all_algs[i]), all_algs[i] == KEYD_ALG_EDDSA);
                cr_assert_eq(jose_pkey_matches_alg(rsa1024, all_algs[i]), 0);
        }
}

/* ---- the RFC examples ---- */

static void check_rfc_example(const char *rel) {
        _cleanup_json_ json_t *v = test_load_json(rel);
        _cleanup_pkey_ EVP_PKEY *pkey = NULL;
        const char *token = vec_str(v, "token"), *payload = vec_str(v, "payload");
        KeydAlg alg = keyd_alg_from_string(vec_str(v, "alg"));
        JoseJws *jws = NULL;

        cr_assert_geq(alg, 0);
        cr_assert_eq(jose_jwk_to_pkey(json_object_get(v, "jwk"), &pkey), 0);
        cr_assert_eq(jose_jws_parse(token, strlen(token), &jws), JOSE_OK);
        cr_assert(json_equal(jws->header, json_object_get(v, "header")));
        cr_assert_eq(jws->alg, alg);
        cr_assert_null(jws->kid);
        cr_assert_eq(jws->payload_len, strlen(payload));
        cr_assert_arr_eq(jws->payload, payload, strlen(payload));
        cr_assert_eq(jws->signing_input_len, (size_t) (strrchr(token, '.') - token));
        cr_assert_eq(jose_jws_verify(jws, pkey, alg), JOSE_OK);
        jose_jws_free(jws);

        /* Every one-bit change of the header, the payload or the signature is refused. */
        const char *dot1 = strchr(token, '.'), *dot2 = strrchr(token, '.');
        const struct {
                const char *s;
                size_t len;
        } parts[3] = {
                {token, (size_t) (dot1 - token)}, {dot1 + 1, (size_t) (dot2 - dot1 - 1)}, {dot2 + 1, strlen(dot2 + 1)}};
        for (int p = 0; p < 3; p++) {
                _cleanup_free_ uint8_t *bytes = NULL;
                size_t n;
                cr_assert_eq(jose_b64url_decode(parts[p].s, parts[p].len, (void **) &bytes, &n), 0);
                for (size_t bit = 0; bit < 8 * n; bit++) {
                        _cleanup_free_ char *enc = NULL, *changed = NULL;
                        bytes[bit / 8] ^= (uint8_t) (1u << (bit % 8));
                        cr_assert_eq(jose_b64url_encode(bytes, n, &enc), 0);
                        bytes[bit / 8] ^= (uint8_t) (1u << (bit % 8));
                        cr_assert(asprintf(&changed, "%.*s%s%.*s", (int) (parts[p].s - token), token, enc,
                                           (int) strlen(parts[p].s + parts[p].len), parts[p].s + parts[p].len) > 0);
                        JoseResult r = jose_jws_parse(changed, strlen(changed), &jws);
                        if (r == JOSE_OK) {
                                r = jose_jws_verify(jws, pkey, alg);
                                jws = jose_jws_free(jws);
                        }
                        if (p == 0)
                                cr_assert(r == JOSE_MALFORMED || r == JOSE_UNSUPPORTED_ALG || r == JOSE_BAD_SIGNATURE,
                                          "%s: header bit %zu: %s", rel, bit, jose_result_to_string(r));
                        else
                                cr_assert_eq(r, JOSE_BAD_SIGNATURE, "%s: part %d bit %zu: %s", rel, p, bit,
                                             jose_result_to_string(r));
                }
        }
}

Test(rfc, rfc7515_a2_rs256) {
        check_rfc_example("tests/vectors/rfc/rfc7515-a2.json");
}
Test(rfc, rfc7515_a3_es256) {
        check_rfc_example("tests/vectors/rfc/rfc7515-a3.json");
}
Test(rfc, rfc8037_a4_eddsa) {
        check_rfc_example("tests/vectors/rfc/rfc8037-a4.json");
}

/* The RFC 7515 A.2 claims: {"iss":"joe","exp":1300819380,...}. */
Test(rfc, rfc7515_claims) {
        _cleanup_json_ json_t *v = test_load_json("tests/vectors/rfc/rfc7515-a2.json");
        _cleanup_json_ json_t *claims = NULL;
        const char *token = vec_str(v, "token");
        JoseJws *jws = NULL;
        cr_assert_eq(jose_jws_parse(token, strlen(token), &jws), JOSE_OK);
        cr_assert_eq(jose_jws_claims(jws, &claims), JOSE_OK);
        jose_jws_free(jws);
        JoseClaimsCheck c = {.now = 1300819379, .issuer = "joe", .require_exp = true};
        cr_assert_eq(jose_claims_check(claims, &c), JOSE_OK);
        c.now = 1300819380;
        cr_assert_eq(jose_claims_check(claims, &c), JOSE_EXPIRED);
        c.leeway = 60;
        c.now = 1300819439;
        cr_assert_eq(jose_claims_check(claims, &c), JOSE_OK);
        c.now = 1300819440;
        cr_assert_eq(jose_claims_check(claims, &c), JOSE_EXPIRED);
        c.now = 1300819379;
        c.issuer = "jo";
        cr_assert_eq(jose_claims_check(claims, &c), JOSE_ISSUER_MISMATCH);
}

/* ---- ECDSA signature forms ---- */

static void check_der_raw(const uint8_t *raw, size_t n) {
        _cleanup_free_ uint8_t *der = NULL;
        uint8_t back[2 * 66];
        size_t der_len;
        cr_assert_eq(jose_ecdsa_raw_to_der(raw, 2 * n, &der, &der_len), 0);
        cr_assert_eq(der[0], 0x30);
        cr_assert_eq(jose_ecdsa_der_to_raw(der, der_len, n, back), 0);
        cr_assert_arr_eq(back, raw, 2 * n);
}

Test(ecdsa, der_raw_round_trips) {
        uint8_t raw[96];
        for (size_t n = 32; n <= 48; n += 16) {
                /* Leading zero octets in r and s (short INTEGERs), the high bit set (a 0x00 pad in DER), both. */
                for (int shape = 0; shape < 6; shape++) {
                        for (size_t i = 0; i < 2 * n; i++)
                                raw[i] = (uint8_t) (i * 29 + 7);
                        switch (shape) {
                        case 0:
                                raw[0] = 0;
                                break;
                        case 1:
                                raw[n] = 0;
                                raw[n + 1] = 0;
                                break;
                        case 2:
                                raw[0] = 0x80;
                                raw[n] = 0xff;
                                break;
                        case 3:
                                memset(raw, 0, n - 1);
                                break;
                        case 4:
                                raw[0] = 0;
                                raw[1] = 0x80;
                                break;
                        default:
                                break;
                        }
                        check_der_raw(raw, n);
                }
        }
        /* Signatures made by OpenSSL, converted both ways. */
        for (int i = 0; i < 64; i++) {
                KeydAlg alg = i % 2 ? KEYD_ALG_ES384 : KEYD_ALG_ES256;
                _cleanup_pkey_ EVP_PKEY *key = test_gen_key(alg);
                size_t len;
                _cleanup_free_ uint8_t *sig = test_sign(key, alg, "m", 1, false, &len);
                check_der_raw(sig, keyd_alg_ec_size(alg));
        }
}

Test(ecdsa, der_refusals) {
        uint8_t raw[64], out[64];
        _cleanup_free_ uint8_t *der = NULL;
        size_t der_len;
        memset(raw, 0x11, sizeof raw);
        cr_assert_eq(jose_ecdsa_raw_to_der(raw, 63, &der, &der_len), -EINVAL);
        cr_assert_eq(jose_ecdsa_raw_to_der(raw, 0, &der, &der_len), -EINVAL);
        cr_assert_eq(jose_ecdsa_raw_to_der(raw, 64, &der, &der_len), 0);

        uint8_t buf[80];
        memcpy(buf, der, der_len);
        cr_assert_eq(jose_ecdsa_der_to_raw(buf, der_len, 32, out), 0);
        /* Trailing bytes. */
        buf[der_len] = 0;
        cr_assert_eq(jose_ecdsa_der_to_raw(buf, der_len + 1, 32, out), -EINVAL);
        /* Truncated. */
        cr_assert_eq(jose_ecdsa_der_to_raw(buf, der_len - 1, 32, out), -EINVAL);
        /* Too large for the curve size asked for. */
        cr_assert_eq(jose_ecdsa_der_to_raw(buf, der_len, 31, out), -ENOBUFS);
        /* A long-form length where the short form is required (BER, not DER). */
        uint8_t ber[80] = {0x30, 0x81, (uint8_t) (der_len - 2)};
        memcpy(ber + 3, der + 2, der_len - 2);
        cr_assert_eq(jose_ecdsa_der_to_raw(ber, der_len + 1, 32, out), -EINVAL);
        /* A needless leading zero in r: 30 07 02 02 00 01 02 01 01. */
        static const uint8_t nonminimal[] = {0x30, 0x07, 0x02, 0x02, 0x00, 0x01, 0x02, 0x01, 0x01};
        cr_assert_eq(jose_ecdsa_der_to_raw(nonminimal, sizeof nonminimal, 32, out), -EINVAL);
        static const uint8_t minimal[] = {0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01};
        cr_assert_eq(jose_ecdsa_der_to_raw(minimal, sizeof minimal, 32, out), 0);
        cr_assert_eq(out[31], 1);
        cr_assert_eq(out[63], 1);
        /* A negative r. */
        static const uint8_t negative[] = {0x30, 0x06, 0x02, 0x01, 0xff, 0x02, 0x01, 0x01};
        cr_assert_eq(jose_ecdsa_der_to_raw(negative, sizeof negative, 32, out), -EINVAL);
}

Test(ecdsa, curve_orders_match_openssl) {
        static const struct {
                KeydAlg alg;
                int nid;
        } curves[] = {{KEYD_ALG_ES256, NID_X9_62_prime256v1}, {KEYD_ALG_ES384, NID_secp384r1}};
        for (size_t i = 0; i < ELEMENTSOF(curves); i++) {
                EC_GROUP *g = EC_GROUP_new_by_curve_name(curves[i].nid);
                uint8_t order[66];
                size_t n = keyd_alg_ec_size(curves[i].alg);
                cr_assert_not_null(g);
                cr_assert_eq(BN_bn2binpad(EC_GROUP_get0_order(g), order, (int) n), (int) n);
                cr_assert_arr_eq(jose_ec_order(curves[i].alg), order, n);
                EC_GROUP_free(g);
        }
        cr_assert_null(jose_ec_order(KEYD_ALG_RS256));
}

/* ---- building tokens ---- */

Test(build, signing_input_room) {
        _cleanup_json_ json_t *header = json_pack("{s:s,s:s,s:s}", "typ", "JWT", "alg", "RS256", "kid", "x");
        _cleanup_free_ char *s = NULL;
        uint8_t sig[513];
        size_t len;
        memset(sig, 0xa5, sizeof sig);
        cr_assert_eq(jose_jws_signing_input(header, "", 0, &s, &len), 0);
        /* Members in insertion order, compact. */
        cr_assert_str_eq(s, "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiIsImtpZCI6IngifQ.");
        cr_assert_eq(len, strlen(s));
        cr_assert_eq(jose_jws_append_signature(s, len, sig, 513), -ENOBUFS);
        cr_assert_eq(s[len], 0, "nothing appended on refusal");
        int total = jose_jws_append_signature(s, len, sig, 512);
        cr_assert_eq(total, (int) (len + 1 + jose_b64url_encoded_len(512)));
        cr_assert_eq(strlen(s), (size_t) total);

        json_t *bad = json_pack("[]");
        char *t = (char *) 0x1;
        cr_assert_eq(jose_jws_signing_input(bad, "", 0, &t, &len), -EINVAL);
        cr_assert_eq(t, (char *) 0x1);
        json_decref(bad);
}

Test(build, result_names) {
        static const char *const names[] = {
                "ok",      "malformed",     "unsupported_alg",   "unknown_kid",     "key_revoked",   "bad_signature",
                "expired", "not_yet_valid", "audience_mismatch", "issuer_mismatch", "token_revoked", "internal"};
        cr_assert_eq(ELEMENTSOF(names), _JOSE_RESULT_MAX);
        for (int r = 0; r < _JOSE_RESULT_MAX; r++)
                cr_assert_str_eq(jose_result_to_string(r), names[r]);
        cr_assert_null(jose_result_to_string(_JOSE_RESULT_MAX));
}
