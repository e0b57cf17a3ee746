/* SPDX-License-Identifier: MIT */
/* SPEC §4 "Verification rules": every refusal, each with the JoseResult it must give, next to a control that the
 * same token without the one fault is accepted. Tokens are signed here with OpenSSL. */
#include <criterion/criterion.h>
#include <openssl/pem.h>

#include "common/crypto-util.h"
#include "jose/b64.h"
#include "jose/jose-internal.h"
#include "jose/jwk.h"
#include "jose/jws.h"
#include "tests/helpers/test-crypto.h"

#define SENTINEL ((JoseJws *) 0x1)

/* A token with exactly this header text (duplicates, odd forms), signed by key. */
static char *token_text(EVP_PKEY *key, KeydAlg alg, const char *header_text, const char *payload) {
        _cleanup_free_ char *input = test_jws_input(header_text, payload);
        _cleanup_free_ uint8_t *sig = NULL;
        size_t sig_len;
        sig = test_sign(key, alg, input, strlen(input), false, &sig_len);
        return test_jws_with_signature(input, sig, sig_len);
}

/* Parse, and when that succeeds verify with pkey as a key of key_alg. */
static JoseResult check(const char *token, EVP_PKEY *pkey, KeydAlg key_alg) {
        JoseJws *jws = SENTINEL;
        JoseResult r = jose_jws_parse(token, strlen(token), &jws);
        if (r != JOSE_OK) {
                cr_assert_eq(jws, SENTINEL, "output written on refusal");
                return r;
        }
        r = jose_jws_verify(jws, pkey, key_alg);
        jose_jws_free(jws);
        return r;
}

static const char *PAYLOAD = "{\"sub\":\"agent-1\",\"exp\":4102444800}";

Test(refuse, alg_none) {
        _cleanup_pkey_ EVP_PKEY *es = test_gen_key(KEYD_ALG_ES256);
        _cleanup_free_ char *ok = token_text(es, KEYD_ALG_ES256, "{\"alg\":\"ES256\"}", PAYLOAD);
        cr_assert_eq(check(ok, es, KEYD_ALG_ES256), JOSE_OK);

        static const char *const nones[] = {"{\"alg\":\"none\"}", "{\"alg\":\"NONE\"}", "{\"alg\":\"None\"}"};
        for (size_t i = 0; i < ELEMENTSOF(nones); i++) {
                /* With a signature part (made by the right key, even) ... */
                _cleanup_free_ char *t = token_text(es, KEYD_ALG_ES256, nones[i], PAYLOAD);
                cr_assert_eq(check(t, es, KEYD_ALG_ES256), JOSE_UNSUPPORTED_ALG, "%s", nones[i]);
                /* ... and as an unsecured JWS, "h.p.": named unsupported_alg when alg is exactly "none" (RFC 7515
                 * §A.5), malformed otherwise (an empty signature belongs to nothing else). */
                _cleanup_free_ char *u = test_jws_input(nones[i], PAYLOAD), *unsecured = NULL;
                cr_assert(asprintf(&unsecured, "%s.", u) > 0);
                cr_assert_eq(check(unsecured, es, KEYD_ALG_ES256), i == 0 ? JOSE_UNSUPPORTED_ALG : JOSE_MALFORMED,
                             "%s", nones[i]);
        }
}

/* The classic confusion: an HS256 token whose MAC key is the verifier's public key (PEM or JWK text). */
Test(refuse, hs256_public_key_as_secret) {
        _cleanup_pkey_ EVP_PKEY *es = test_gen_key(KEYD_ALG_ES256);
        _cleanup_json_ json_t *jwk = NULL;
        _cleanup_free_ char *jwk_text = NULL;
        char *pem = NULL;
        BIO *bio = BIO_new(BIO_s_mem());

        cr_assert_not_null(bio);
        cr_assert_eq(PEM_write_bio_PUBKEY(bio, es), 1);
        long pem_len = BIO_get_mem_data(bio, &pem);
        cr_assert_gt(pem_len, 0);
        cr_assert_eq(jose_jwk_from_pkey(es, KEYD_ALG_ES256, &jwk), 0);
        jwk_text = json_dumps(jwk, JSON_COMPACT);
        cr_assert_not_null(jwk_text);

        const struct {
                const void *key;
                size_t len;
        } secrets[] = {{pem, (size_t) pem_len}, {jwk_text, strlen(jwk_text)}};
        static const char *const algs[][2] = {{"{\"alg\":\"HS256\"}", "SHA256"},
                                              {"{\"alg\":\"HS384\"}", "SHA384"},
                                              {"{\"alg\":\"HS512\"}", "SHA512"}};
        for (size_t s = 0; s < ELEMENTSOF(secrets); s++)
                for (size_t a = 0; a < ELEMENTSOF(algs); a++) {
                        _cleanup_free_ char *input = test_jws_input(algs[a][0], PAYLOAD), *token = NULL;
                        uint8_t mac[64];
                        size_t mac_len = 0;
                        cr_assert_not_null(EVP_Q_mac(NULL, "HMAC", NULL, algs[a][1], NULL, secrets[s].key,
                                                     secrets[s].len, (const uint8_t *) input, strlen(input), mac,
                                                     sizeof mac, &mac_len));
                        token = test_jws_with_signature(input, mac, mac_len);
                        cr_assert_eq(check(token, es, KEYD_ALG_ES256), JOSE_UNSUPPORTED_ALG, "%s with secret %zu",
                                     algs[a][0], s);
                        /* Nor does the MAC pass as an ES256 signature of the same bytes. */
                        cr_assert_eq(jose_verify_signature(KEYD_ALG_ES256, es, input, strlen(input), mac, mac_len),
                                     JOSE_BAD_SIGNATURE);
                }
        BIO_free(bio);
}

Test(refuse, header_alg_is_not_key_alg) {
        _cleanup_pkey_ EVP_PKEY *es = test_gen_key(KEYD_ALG_ES256), *rsa = test_gen_key(KEYD_ALG_RS256),
                                *p384 = test_gen_key(KEYD_ALG_ES384);
        _cleanup_free_ char *rs = token_text(rsa, KEYD_ALG_RS256, "{\"alg\":\"RS256\"}", PAYLOAD);
        _cleanup_free_ char *e256 = token_text(es, KEYD_ALG_ES256, "{\"alg\":\"ES256\"}", PAYLOAD);
        _cleanup_free_ char *ps = token_text(rsa, KEYD_ALG_PS256, "{\"alg\":\"PS256\"}", PAYLOAD);

        cr_assert_eq(check(rs, rsa, KEYD_ALG_RS256), JOSE_OK);
        cr_assert_eq(check(ps, rsa, KEYD_ALG_PS256), JOSE_OK);
        cr_assert_eq(check(e256, es, KEYD_ALG_ES256), JOSE_OK);
        /* An RS256 header on an ES256 key. */
        cr_assert_eq(check(rs, es, KEYD_ALG_ES256), JOSE_UNSUPPORTED_ALG);
        /* The right header and alg, the wrong kind of key. */
        cr_assert_eq(check(e256, rsa, KEYD_ALG_ES256), JOSE_UNSUPPORTED_ALG);
        cr_assert_eq(check(e256, p384, KEYD_ALG_ES256), JOSE_UNSUPPORTED_ALG);
        cr_assert_eq(check(e256, p384, KEYD_ALG_ES384), JOSE_UNSUPPORTED_ALG);
        /* PS256 and RS256 on one RSA key are still two algorithms: the key's alg decides. */
        cr_assert_eq(check(ps, rsa, KEYD_ALG_RS256), JOSE_UNSUPPORTED_ALG);
        cr_assert_eq(check(rs, rsa, KEYD_ALG_PS256), JOSE_UNSUPPORTED_ALG);
        cr_assert_eq(check(e256, es, _KEYD_ALG_INVALID), JOSE_UNSUPPORTED_ALG);
        cr_assert_eq(check(e256, NULL, KEYD_ALG_ES256), JOSE_UNSUPPORTED_ALG);
}

static void expect_header(EVP_PKEY *key, const char *header_text, JoseResult expected) {
        _cleanup_free_ char *t = token_text(key, KEYD_ALG_ES256, header_text, PAYLOAD);
        JoseResult r = check(t, key, KEYD_ALG_ES256);
        cr_assert_eq(r, expected, "%s: %s, expected %s", header_text, jose_result_to_string(r),
                     jose_result_to_string(expected));
}

/* expect_header() for every header text of the NULL-terminated list. */
static void expect_headers(EVP_PKEY *key, JoseResult expected, const char *const *headers) {
        for (size_t i = 0; headers[i]; i++)
                expect_header(key, headers[i], expected);
}

#define EXPECT_HEADERS(key, expected, ...) expect_headers((key), (expected), (const char *const[]){__VA_ARGS__, NULL})

Test(refuse, crit) {
        _cleanup_pkey_ EVP_PKEY *es = test_gen_key(KEYD_ALG_ES256);
        expect_header(es, "{\"alg\":\"ES256\",\"foo\":1}", JOSE_OK);
        EXPECT_HEADERS(es, JOSE_UNSUPPORTED_ALG, "{\"alg\":\"ES256\",\"crit\":[\"foo\"],\"foo\":1}",
                       "{\"alg\":\"ES256\",\"crit\":[\"exp\"],\"exp\":4102444800}",
                       "{\"alg\":\"ES256\",\"crit\":[\"b64\"],\"b64\":true}", "{\"alg\":\"ES256\",\"crit\":[]}",
                       "{\"alg\":\"ES256\",\"crit\":null}");
}

Test(refuse, b64) {
        _cleanup_pkey_ EVP_PKEY *es = test_gen_key(KEYD_ALG_ES256);
        expect_header(es, "{\"alg\":\"ES256\",\"b64\":true}", JOSE_OK);
        EXPECT_HEADERS(es, JOSE_UNSUPPORTED_ALG, "{\"alg\":\"ES256\",\"b64\":false}",
                       "{\"alg\":\"ES256\",\"b64\":\"true\"}", "{\"alg\":\"ES256\",\"b64\":0}",
                       "{\"alg\":\"ES256\",\"b64\":null}");
}

Test(refuse, keys_named_by_the_token) {
        _cleanup_pkey_ EVP_PKEY *es = test_gen_key(KEYD_ALG_ES256);
        _cleanup_json_ json_t *jwk = NULL;
        _cleanup_free_ char *jwk_text = NULL, *embedded = NULL;
        expect_header(es, "{\"alg\":\"ES256\",\"kid\":\"k\"}", JOSE_OK);
        EXPECT_HEADERS(es, JOSE_UNSUPPORTED_ALG, "{\"alg\":\"ES256\",\"jku\":\"https://attacker.example/jwks.json\"}",
                       "{\"alg\":\"ES256\",\"x5u\":\"https://attacker.example/cert.pem\"}",
                       "{\"alg\":\"ES256\",\"x5c\":[\"MIIBszCCAVmgAwIBAgIUaaaa\"]}");
        /* Even the verifier's own key, embedded, is refused: keyd never takes a key from the token. */
        cr_assert_eq(jose_jwk_from_pkey(es, KEYD_ALG_ES256, &jwk), 0);
        jwk_text = json_dumps(jwk, JSON_COMPACT);
        cr_assert(asprintf(&embedded, "{\"alg\":\"ES256\",\"jwk\":%s}", jwk_text) > 0);
        expect_header(es, embedded, JOSE_UNSUPPORTED_ALG);
}

Test(refuse, duplicate_header_members) {
        _cleanup_pkey_ EVP_PKEY *es = test_gen_key(KEYD_ALG_ES256);
        expect_header(es, "{\"alg\":\"ES256\",\"kid\":\"a\"}", JOSE_OK);
        EXPECT_HEADERS(es, JOSE_MALFORMED, "{\"alg\":\"ES256\",\"alg\":\"ES256\"}",
                       "{\"alg\":\"none\",\"alg\":\"ES256\"}", "{\"alg\":\"ES256\",\"\\u0061lg\":\"none\"}",
                       "{\"alg\":\"ES256\",\"kid\":\"a\",\"kid\":\"b\"}",
                       "{\"alg\":\"ES256\",\"x\":{\"a\":1,\"a\":2}}");
}

Test(refuse, duplicate_claims) {
        _cleanup_pkey_ EVP_PKEY *es = test_gen_key(KEYD_ALG_ES256);
        static const struct {
                const char *payload;
                JoseResult expected;
        } cases[] = {
                {"{\"sub\":\"a\",\"exp\":1}", JOSE_OK},
                {"{\"sub\":\"a\",\"sub\":\"b\"}", JOSE_MALFORMED},
                {"{\"exp\":1,\"exp\":4102444800}", JOSE_MALFORMED},
                {"{\"cnf\":{\"jkt\":\"a\",\"jkt\":\"b\"}}", JOSE_MALFORMED},
                {"[{\"sub\":\"a\"}]", JOSE_MALFORMED},
                {"\"sub\"", JOSE_MALFORMED},
                {"{\"sub\":\"a\"} {}", JOSE_MALFORMED},
                {"not json", JOSE_MALFORMED},
                {"", JOSE_MALFORMED},
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *t = token_text(es, KEYD_ALG_ES256, "{\"alg\":\"ES256\"}", cases[i].payload);
                json_t *claims = (json_t *) 0x1;
                JoseJws *jws = NULL;
                /* The signature is good: the payload is what is refused. */
                cr_assert_eq(jose_jws_parse(t, strlen(t), &jws), JOSE_OK);
                cr_assert_eq(jose_jws_verify(jws, es, KEYD_ALG_ES256), JOSE_OK);
                JoseResult r = jose_jws_claims(jws, &claims);
                cr_assert_eq(r, cases[i].expected, "'%s': %s", cases[i].payload, jose_result_to_string(r));
                if (r == JOSE_OK)
                        json_decref(claims);
                else
                        cr_assert_eq(claims, (json_t *) 0x1);
                jose_jws_free(jws);
        }
}

Test(refuse, ecdsa_der_signature) {
        for (KeydAlg alg = KEYD_ALG_ES256; alg <= KEYD_ALG_ES384; alg++) {
                _cleanup_pkey_ EVP_PKEY *key = test_gen_key(alg);
                _cleanup_free_ char *header = NULL, *input = NULL, *token = NULL;
                _cleanup_free_ uint8_t *der = NULL;
                size_t der_len;
                cr_assert(asprintf(&header, "{\"alg\":\"%s\"}", keyd_alg_to_string(alg)) > 0);
                input = test_jws_input(header, PAYLOAD);
                der = test_sign(key, alg, input, strlen(input), true, &der_len);
                cr_assert_eq(der[0], 0x30);
                token = test_jws_with_signature(input, der, der_len);
                cr_assert_eq(check(token, key, alg), JOSE_BAD_SIGNATURE);
                cr_assert_eq(jose_verify_signature(alg, key, input, strlen(input), der, der_len), JOSE_BAD_SIGNATURE);
        }
}

Test(refuse, ecdsa_r_s_range) {
        for (KeydAlg alg = KEYD_ALG_ES256; alg <= KEYD_ALG_ES384; alg++) {
                _cleanup_pkey_ EVP_PKEY *key = test_gen_key(alg);
                _cleanup_free_ char *header = NULL, *input = NULL;
                _cleanup_free_ uint8_t *sig = NULL;
                const uint8_t *order = jose_ec_order(alg);
                size_t n = keyd_alg_ec_size(alg), len;
                uint8_t bad[96];

                cr_assert(asprintf(&header, "{\"alg\":\"%s\"}", keyd_alg_to_string(alg)) > 0);
                input = test_jws_input(header, PAYLOAD);
                sig = test_sign(key, alg, input, strlen(input), false, &len);
                cr_assert_eq(len, 2 * n);
                cr_assert_eq(jose_verify_signature(alg, key, input, strlen(input), sig, len), JOSE_OK);

                for (int c = 0; c < 7; c++) {
                        memcpy(bad, sig, 2 * n);
                        switch (c) {
                        case 0: /* r = s = 0 */
                                memset(bad, 0, 2 * n);
                                break;
                        case 1: /* r = 0 */
                                memset(bad, 0, n);
                                break;
                        case 2: /* s = 0 */
                                memset(bad + n, 0, n);
                                break;
                        case 3: /* r = n */
                                memcpy(bad, order, n);
                                break;
                        case 4: /* s = n */
                                memcpy(bad + n, order, n);
                                break;
                        case 5: /* r = n + 1 */
                                memcpy(bad, order, n);
                                bad[n - 1]++;
                                break;
                        case 6: /* s = 2^(8n) - 1 */
                                memset(bad + n, 0xff, n);
                                break;
                        }
                        _cleanup_free_ char *token = test_jws_with_signature(input, bad, 2 * n);
                        cr_assert_eq(check(token, key, alg), JOSE_BAD_SIGNATURE, "%s case %d", keyd_alg_to_string(alg),
                                     c);
                }
        }
}

Test(refuse, signature_length) {
        for (KeydAlg alg = 0; alg < _KEYD_ALG_MAX; alg++) {
                _cleanup_pkey_ EVP_PKEY *key = test_gen_key(alg);
                _cleanup_free_ char *header = NULL, *input = NULL, *good = NULL, *shorter = NULL, *longer = NULL;
                _cleanup_free_ uint8_t *sig = NULL, *sig1 = NULL;
                size_t len;
                cr_assert(asprintf(&header, "{\"alg\":\"%s\"}", keyd_alg_to_string(alg)) > 0);
                input = test_jws_input(header, PAYLOAD);
                sig = test_sign(key, alg, input, strlen(input), false, &len);
                sig1 = malloc(len + 1);
                cr_assert_not_null(sig1);
                memcpy(sig1, sig, len);
                sig1[len] = 0;
                good = test_jws_with_signature(input, sig, len);
                shorter = test_jws_with_signature(input, sig, len - 1);
                longer = test_jws_with_signature(input, sig1, len + 1);
                cr_assert_eq(check(good, key, alg), JOSE_OK, "%s", keyd_alg_to_string(alg));
                cr_assert_eq(check(shorter, key, alg), JOSE_BAD_SIGNATURE, "%s short", keyd_alg_to_string(alg));
                cr_assert_eq(check(longer, key, alg), JOSE_BAD_SIGNATURE, "%s long", keyd_alg_to_string(alg));
                cr_assert_eq(jose_verify_signature(alg, key, input, strlen(input), sig, 0), JOSE_BAD_SIGNATURE);
        }
}

/* A correctly signed ES256 token of exactly total bytes (the payload and kid sized to fit). */
static char *token_of_length(EVP_PKEY *key, size_t total) {
        for (size_t kid = 1; kid < 8; kid++) {
                _cleanup_json_ json_t *header = json_pack("{s:s,s:s%}", "alg", "ES256", "kid", "kkkkkkkk", kid);
                _cleanup_free_ char *h = json_dumps(header, JSON_COMPACT);
                size_t fixed = jose_b64url_encoded_len(strlen(h)) + 1 + 1 + jose_b64url_encoded_len(64);
                for (size_t p = (total - fixed) * 3 / 4 - 4; p < (total - fixed) * 3 / 4 + 4; p++) {
                        if (fixed + jose_b64url_encoded_len(p) != total)
                                continue;
                        _cleanup_free_ char *payload = malloc(p);
                        char *s = NULL;
                        size_t len, sig_len;
                        cr_assert_not_null(payload);
                        memset(payload, 'a', p);
                        cr_assert_eq(jose_jws_signing_input(header, payload, p, &s, &len), 0);
                        _cleanup_free_ uint8_t *sig = test_sign(key, KEYD_ALG_ES256, s, len, false, &sig_len);
                        cr_assert_eq(jose_jws_append_signature(s, len, sig, sig_len), (int) total);
                        return s;
                }
        }
        cr_assert_fail("no token of %zu bytes", total);
        return NULL;
}

Test(refuse, size_limit) {
        _cleanup_pkey_ EVP_PKEY *es = test_gen_key(KEYD_ALG_ES256);
        _cleanup_free_ char *max = token_of_length(es, JOSE_JWS_MAX), *over = token_of_length(es, JOSE_JWS_MAX + 1);
        cr_assert_eq(strlen(max), 16384);
        cr_assert_eq(strlen(over), 16385);
        cr_assert_eq(check(max, es, KEYD_ALG_ES256), JOSE_OK);
        cr_assert_eq(check(over, es, KEYD_ALG_ES256), JOSE_MALFORMED);
}

Test(refuse, structure) {
        _cleanup_pkey_ EVP_PKEY *es = test_gen_key(KEYD_ALG_ES256);
        _cleanup_free_ char *good = token_text(es, KEYD_ALG_ES256, "{\"alg\":\"ES256\"}", PAYLOAD);
        _cleanup_free_ char *empty_payload = token_text(es, KEYD_ALG_ES256, "{\"alg\":\"ES256\"}", "");
        const char *dot1 = strchr(good, '.'), *dot2 = strrchr(good, '.');
        _cleanup_free_ char *two = NULL, *four = NULL, *four_empty = NULL, *no_header = NULL, *no_sig = NULL,
                            *no_payload = NULL, *nul = NULL;

        cr_assert_eq(check(good, es, KEYD_ALG_ES256), JOSE_OK);
        /* An empty payload is a payload (RFC 7515 allows it); with its own signature it verifies. */
        cr_assert_eq(check(empty_payload, es, KEYD_ALG_ES256), JOSE_OK);

        cr_assert(asprintf(&two, "%.*s", (int) (dot2 - good), good) > 0);
        cr_assert(asprintf(&four, "%s.%s", good, dot2 + 1) > 0);
        cr_assert(asprintf(&four_empty, "%s.", good) > 0);
        cr_assert(asprintf(&no_header, "%s", dot1) > 0);
        cr_assert(asprintf(&no_sig, "%.*s", (int) (dot2 - good + 1), good) > 0);
        cr_assert(asprintf(&no_payload, "%.*s%s", (int) (dot1 - good + 1), good, dot2) > 0);
        const char *const bad[] = {"",  ".",  "..",       "...",     "abc",  "a.b",     "a.b.c.d",
                                   two, four, four_empty, no_header, no_sig, no_payload};
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                JoseResult r = check(bad[i], es, KEYD_ALG_ES256);
                cr_assert(r == JOSE_MALFORMED || (bad[i] == no_payload && r == JOSE_BAD_SIGNATURE), "'%s': %s", bad[i],
                          jose_result_to_string(r));
        }
        /* A NUL inside the given length; a NULL token. */
        nul = strdup(good);
        cr_assert_not_null(nul);
        nul[5] = 0;
        JoseJws *jws = SENTINEL;
        cr_assert_eq(jose_jws_parse(nul, strlen(good), &jws), JOSE_MALFORMED);
        cr_assert_eq(jose_jws_parse(NULL, 10, &jws), JOSE_MALFORMED);
        cr_assert_eq(jose_jws_parse(good, 0, &jws), JOSE_MALFORMED);
        cr_assert_eq(jws, SENTINEL);
}

Test(refuse, header_not_an_object) {
        _cleanup_pkey_ EVP_PKEY *es = test_gen_key(KEYD_ALG_ES256);
        static const char *const headers[] = {
                "[]",
                "[{\"alg\":\"ES256\"}]",
                "\"ES256\"",
                "1",
                "null",
                "true",
                "{",
                "{\"alg\":\"ES256\"",
                "{\"alg\":\"ES256\"}x",
                "{\"alg\":\"ES256\"}{}",
                "{alg:\"ES256\"}",
                "{\"alg\":'ES256'}",
                /* and objects without a string alg, or with a kid that is not a string */
                "{}",
                "{\"alg\":1}",
                "{\"alg\":null}",
                "{\"alg\":[\"ES256\"]}",
                "{\"alg\":\"ES256\",\"kid\":7}",
        };
        for (size_t i = 0; i < ELEMENTSOF(headers); i++)
                expect_header(es, headers[i], JOSE_MALFORMED);
}

Test(refuse, algorithms_keyd_does_not_know) {
        _cleanup_pkey_ EVP_PKEY *es = test_gen_key(KEYD_ALG_ES256);
        static const char *const algs[] = {"HS256",  "HS384",  "HS512",  "RS384",    "RS512", "PS384",
                                           "PS512",  "ES512",  "ES256K", "Ed25519",  "Ed448", "es256",
                                           "ES256 ", " ES256", "",       "RSA-OAEP", "dir"};
        for (size_t i = 0; i < ELEMENTSOF(algs); i++) {
                _cleanup_free_ char *h = NULL;
                cr_assert(asprintf(&h, "{\"alg\":\"%s\"}", algs[i]) > 0);
                expect_header(es, h, JOSE_UNSUPPORTED_ALG);
        }
}

/* ---- claims ---- */

static JoseResult claims_check(const char *claims_text, const JoseClaimsCheck *c) {
        json_error_t error;
        _cleanup_json_ json_t *claims = json_loads(claims_text, JSON_REJECT_DUPLICATES, &error);
        cr_assert_not_null(claims, "%s: %s", claims_text, error.text);
        return jose_claims_check(claims, c);
}

#define NOW 1700000000

/* Every claims set of the NULL-terminated list, checked with c, gives expected. */
static void expect_claims(const JoseClaimsCheck *c, JoseResult expected, const char *const *claims) {
        for (size_t i = 0; claims[i]; i++) {
                JoseResult r = claims_check(claims[i], c);
                cr_assert_eq(r, expected, "%s (leeway %lld, aud %s, iss %s, exp %s): %s, expected %s", claims[i],
                             (long long) c->leeway, c->audience ?: "-", c->issuer ?: "-",
                             c->require_exp ? "required" : "optional", jose_result_to_string(r),
                             jose_result_to_string(expected));
        }
}

#define EXPECT_CLAIMS(c, expected, ...) expect_claims((c), (expected), (const char *const[]){__VA_ARGS__, NULL})

Test(claims, exp) {
        JoseClaimsCheck c = {.now = NOW};
        EXPECT_CLAIMS(&c, JOSE_OK, "{\"exp\":1700000001}");
        EXPECT_CLAIMS(&c, JOSE_EXPIRED, "{\"exp\":1700000000}" /* exp == now is expired */, "{\"exp\":1600000000}");
        c.leeway = 60;
        EXPECT_CLAIMS(&c, JOSE_OK, "{\"exp\":1699999941}" /* within the leeway */,
                      "{\"exp\":1699999941.5}" /* a NumericDate may be a real */,
                      "{}" /* exp is optional unless required */);
        EXPECT_CLAIMS(&c, JOSE_EXPIRED, "{\"exp\":1699999940}" /* exp + leeway == now */, "{\"exp\":1699999939.5}");
        c.require_exp = true;
        EXPECT_CLAIMS(&c, JOSE_MALFORMED, "{}");
        EXPECT_CLAIMS(&c, JOSE_OK, "{\"exp\":1700000100}");
}

Test(claims, nbf_and_iat) {
        JoseClaimsCheck c = {.now = NOW};
        EXPECT_CLAIMS(&c, JOSE_OK, "{\"nbf\":1700000000,\"iat\":1700000000}");
        EXPECT_CLAIMS(&c, JOSE_NOT_YET_VALID, "{\"nbf\":1700000001}", "{\"iat\":1700000001}");
        c.leeway = 30;
        EXPECT_CLAIMS(&c, JOSE_OK, "{\"nbf\":1700000030}", "{\"iat\":1700000030}");
        EXPECT_CLAIMS(&c, JOSE_NOT_YET_VALID, "{\"nbf\":1700000031}", "{\"iat\":1700000031}");
        /* Expired wins over not yet valid only by order; both are refusals. */
        EXPECT_CLAIMS(&c, JOSE_EXPIRED, "{\"exp\":1,\"nbf\":1800000000}");
}

Test(claims, audience) {
        JoseClaimsCheck c = {.now = NOW, .audience = "https://api.example"};
        EXPECT_CLAIMS(&c, JOSE_OK, "{\"aud\":\"https://api.example\"}", "{\"aud\":[\"x\",\"https://api.example\"]}");
        EXPECT_CLAIMS(&c, JOSE_AUDIENCE_MISMATCH, "{\"aud\":\"https://api.example/\"}",
                      "{\"aud\":\"https://API.example\"}", "{\"aud\":[\"x\",\"y\"]}", "{\"aud\":[]}", "{}");
        EXPECT_CLAIMS(&c, JOSE_MALFORMED, "{\"aud\":[\"https://api.example\",1]}", "{\"aud\":1}",
                      "{\"aud\":{\"a\":\"https://api.example\"}}");
        c.audience = NULL;
        EXPECT_CLAIMS(&c, JOSE_OK, "{\"aud\":[\"x\",\"y\"]}" /* aud not asked for */);
        EXPECT_CLAIMS(&c, JOSE_MALFORMED, "{\"aud\":1}" /* a malformed aud is malformed anyway */);
}

Test(claims, issuer) {
        JoseClaimsCheck c = {.now = NOW, .issuer = "https://issuer.example"};
        EXPECT_CLAIMS(&c, JOSE_OK, "{\"iss\":\"https://issuer.example\"}");
        EXPECT_CLAIMS(&c, JOSE_ISSUER_MISMATCH, "{\"iss\":\"https://issuer.example.evil\"}",
                      "{\"iss\":\"https://issuer.exampl\"}", "{}");
        EXPECT_CLAIMS(&c, JOSE_MALFORMED, "{\"iss\":[\"https://issuer.example\"]}");
        c.issuer = NULL;
        EXPECT_CLAIMS(&c, JOSE_OK, "{\"iss\":\"anyone\"}");
}

Test(claims, times_must_be_numbers) {
        JoseClaimsCheck c = {.now = NOW, .leeway = 300};
        static const char *const bad[] = {
                "{\"exp\":\"4102444800\"}",
                "{\"exp\":null}",
                "{\"exp\":true}",
                "{\"exp\":[4102444800]}",
                "{\"nbf\":\"0\"}",
                "{\"iat\":{}}",
                "{\"exp\":4102444800,\"iat\":\"now\"}",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                cr_assert_eq(claims_check(bad[i], &c), JOSE_MALFORMED, "%s", bad[i]);
        /* Malformed even when the token is also expired. */
        cr_assert_eq(claims_check("{\"exp\":1,\"nbf\":\"x\"}", &c), JOSE_MALFORMED);
}

Test(claims, bad_arguments) {
        JoseClaimsCheck c = {.now = NOW, .leeway = 301};
        cr_assert_eq(claims_check("{}", &c), JOSE_INTERNAL);
        c.leeway = -1;
        cr_assert_eq(claims_check("{}", &c), JOSE_INTERNAL);
        c.leeway = 300;
        cr_assert_eq(claims_check("{}", &c), JOSE_OK);
        cr_assert_eq(jose_claims_check(NULL, &c), JOSE_INTERNAL);
}
