/* SPDX-License-Identifier: MIT */
/* Project Wycheproof vectors (tests/vectors/wycheproof/, README.md there) through jose/: every "valid" accepted,
 * every "invalid" refused, every "acceptable" decided as the README says; every vector of a file is counted, and the
 * count must equal the file's numberOfTests, so that nothing can be skipped silently. */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <openssl/x509.h>

#include "common/crypto-util.h"
#include "jose/b64.h"
#include "jose/jwk.h"
#include "jose/jws.h"
#include "tests/helpers/test-util.h"

typedef struct Counts {
        unsigned checked, valid, invalid, acceptable, acceptable_refused;
        unsigned results[_JOSE_RESULT_MAX]; /* what keyd answered, over all vectors */
} Counts;

static json_t *load(const char *name) {
        _cleanup_free_ char *rel = NULL;
        cr_assert(asprintf(&rel, "tests/vectors/wycheproof/%s", name) > 0);
        return test_load_json(rel);
}

static void log_counts(const char *name, const Counts *c) {
        cr_log_info("%s: %u checked: %u valid accepted, %u invalid refused, %u acceptable (%u refused)", name,
                    c->checked, c->valid, c->invalid, c->acceptable, c->acceptable_refused);
}

/* The README's decision for an "acceptable" vector: keyd refuses every one of them. The only ones in these files are
 * RSASSA-PKCS1-v1_5 signatures whose DigestInfo omits the NULL parameters ("MissingNull"): keyd (OpenSSL) compares
 * the whole encoded message with the one DER encoding RFC 8017 §9.2 gives, so a second encoding is not accepted. */
static JoseResult acceptable_decision(const json_t *test) {
        const json_t *flag;
        size_t i;
        json_array_foreach(json_object_get(test, "flags"), i,
                           flag) if (json_is_string(flag) &&
                                     streq(json_string_value(flag), "MissingNull")) return JOSE_BAD_SIGNATURE;
        cr_assert_fail("tcId %lld: an acceptable vector the README does not decide",
                       json_integer_value(json_object_get(test, "tcId")));
        return JOSE_INTERNAL;
}

static void run_signature_file(const char *name, KeydAlg alg, Counts *c) {
        _cleanup_json_ json_t *v = load(name);
        const json_t *group, *test;
        size_t gi, ti;

        json_array_foreach(json_object_get(v, "testGroups"), gi, group) {
                _cleanup_free_ uint8_t *der = NULL;
                size_t der_len;
                const char *hex = json_string_value(json_object_get(group, "publicKeyDer"));
                cr_assert_not_null(hex, "%s group %zu: no publicKeyDer", name, gi);
                der = test_unhex(hex, &der_len);
                cr_assert_not_null(der);
                const uint8_t *p = der;
                _cleanup_pkey_ EVP_PKEY *pkey = d2i_PUBKEY(NULL, &p, (long) der_len);
                cr_assert_not_null(pkey, "%s group %zu: d2i_PUBKEY", name, gi);
                cr_assert_eq(jose_pkey_matches_alg(pkey, alg), 1, "%s group %zu: key does not fit %s", name, gi,
                             keyd_alg_to_string(alg));
                JoseVerifier *verifier = NULL;
                cr_assert_eq(jose_verifier_new(pkey, alg, &verifier), 0);

                json_array_foreach(json_object_get(group, "tests"), ti, test) {
                        _cleanup_free_ uint8_t *msg = NULL, *sig = NULL;
                        size_t msg_len, sig_len;
                        long long id = json_integer_value(json_object_get(test, "tcId"));
                        const char *result = json_string_value(json_object_get(test, "result"));
                        msg = test_unhex(json_string_value(json_object_get(test, "msg")), &msg_len);
                        sig = test_unhex(json_string_value(json_object_get(test, "sig")), &sig_len);
                        cr_assert(msg && sig && result, "%s tcId %lld: bad vector", name, id);

                        JoseResult r = jose_verify_signature(alg, pkey, msg, msg_len, sig, sig_len);
                        /* The prepared path (the daemon's) answers every vector the same way. */
                        cr_assert_eq(jose_verifier_verify(verifier, msg, msg_len, sig, sig_len), r,
                                     "%s tcId %lld: the prepared verifier disagrees", name, id);
                        c->checked++;
                        c->results[r]++;
                        if (streq(result, "valid")) {
                                cr_assert_eq(r, JOSE_OK, "%s tcId %lld (valid) refused: %s", name, id,
                                             jose_result_to_string(r));
                                c->valid++;
                        } else if (streq(result, "invalid")) {
                                cr_assert_eq(r, JOSE_BAD_SIGNATURE, "%s tcId %lld (invalid): %s", name, id,
                                             jose_result_to_string(r));
                                c->invalid++;
                        } else {
                                cr_assert_str_eq(result, "acceptable");
                                JoseResult expected = acceptable_decision(test);
                                cr_assert_eq(r, expected, "%s tcId %lld (acceptable): %s", name, id,
                                             jose_result_to_string(r));
                                c->acceptable++;
                                if (r != JOSE_OK)
                                        c->acceptable_refused++;
                        }
                }
                jose_verifier_unref(verifier);
        }
        cr_assert_eq(c->checked, json_integer_value(json_object_get(v, "numberOfTests")),
                     "%s: checked %u vectors of %lld", name, c->checked,
                     json_integer_value(json_object_get(v, "numberOfTests")));
        log_counts(name, c);
}

/* The counts of a file: how many vectors were valid or invalid (the rest "acceptable"), and how many valid. */
static void expect_counts(const char *name, KeydAlg alg, unsigned decided, unsigned valid) {
        Counts c = {};
        run_signature_file(name, alg, &c);
        cr_assert_eq(c.valid + c.invalid, decided, "%s: %u valid and %u invalid vectors", name, c.valid, c.invalid);
        cr_assert_eq(c.valid, valid, "%s: %u valid vectors", name, c.valid);
}

Test(wycheproof, ecdsa_p256_sha256_p1363) {
        expect_counts("ecdsa_secp256r1_sha256_p1363_test.json", KEYD_ALG_ES256, 262, 173);
}

Test(wycheproof, ecdsa_p384_sha384_p1363) {
        expect_counts("ecdsa_secp384r1_sha384_p1363_test.json", KEYD_ALG_ES384, 280, 193);
}

Test(wycheproof, ed25519) {
        expect_counts("ed25519_test.json", KEYD_ALG_EDDSA, 151, 88);
}

Test(wycheproof, rsa_pkcs1_2048_sha256) {
        Counts c = {};
        run_signature_file("rsa_signature_2048_sha256_test.json", KEYD_ALG_RS256, &c);
        cr_assert_eq(c.checked, 259);
        cr_assert_eq(c.valid, 9);
        cr_assert_eq(c.acceptable, 1);
        cr_assert_eq(c.acceptable_refused, 1);
}

Test(wycheproof, rsa_pss_2048_sha256_mgf1_32) {
        expect_counts("rsa_pss_2048_sha256_mgf1_32_test.json", KEYD_ALG_PS256, 108, 63);
}

/* ---- json_web_signature_test.json ---- */

/* The group's key as keyd would hold it: the JWK through jose_jwk_to_pkey(), its alg from the JWK's "alg" (or, without
 * one, from its curve). NULL when keyd cannot hold such a key: "oct" (HMAC), P-521, an alg keyd does not know, a key
 * marked for encryption ("use":"enc", "key_ops":["encrypt"]), an RSA key without "alg". */
static EVP_PKEY *group_key(const json_t *group, KeydAlg *ret_alg) {
        const json_t *jwk = json_object_get(group, "public");
        EVP_PKEY *pkey = NULL;
        KeydAlg alg;

        if (!jwk)
                jwk = json_object_get(group, "private");
        cr_assert(json_is_object(jwk));
        if (jose_jwk_to_pkey(jwk, &pkey) < 0)
                return NULL;
        if (json_object_get(jwk, "alg"))
                alg = keyd_alg_from_string(json_string_value(json_object_get(jwk, "alg")));
        else {
                const char *crv = json_string_value(json_object_get(jwk, "crv"));
                alg = !crv                    ? _KEYD_ALG_INVALID
                      : streq(crv, "P-256")   ? KEYD_ALG_ES256
                      : streq(crv, "P-384")   ? KEYD_ALG_ES384
                      : streq(crv, "Ed25519") ? KEYD_ALG_EDDSA
                                              : _KEYD_ALG_INVALID;
        }
        if (alg < 0 || !jose_pkey_matches_alg(pkey, alg)) {
                EVP_PKEY_free(pkey);
                return NULL;
        }
        *ret_alg = alg;
        return pkey;
}

/* The "alg" of a compact token's protected header, read here independently of jose_jws_parse(); NULL if unreadable. */
static char *header_alg(const char *token) {
        const char *dot = strchr(token, '.');
        _cleanup_free_ void *h = NULL;
        size_t n;
        if (!dot || jose_b64url_decode(token, (size_t) (dot - token), &h, &n) < 0)
                return NULL;
        _cleanup_json_ json_t *j = json_loadb(h, n, 0, NULL);
        const char *alg = json_string_value(json_object_get(j, "alg"));
        return alg ? strdup(alg) : NULL;
}

/* What keyd must answer for a vector Wycheproof marks "valid" (README.md): JOSE_OK when the header names one of
 * keyd's algorithms and it is the group key's; JOSE_UNSUPPORTED_ALG for RS384, RS512, PS384, PS512, ES512, HS256 and
 * for a PS384 header on a PS256 key; JOSE_MALFORMED for tcIds 372 and 373 (a '?' inside base64url). */
static JoseResult valid_decision(long long id, const char *token, const json_t *group) {
        const json_t *jwk = json_object_get(group, "public") ?: json_object_get(group, "private");
        _cleanup_free_ char *alg = NULL;
        if (id == 372 || id == 373)
                return JOSE_MALFORMED;
        alg = header_alg(token);
        cr_assert_not_null(alg, "tcId %lld: a valid vector without a readable alg", id);
        if (keyd_alg_from_string(alg) < 0 || !streq_ptr(alg, json_string_value(json_object_get(jwk, "alg"))))
                return JOSE_UNSUPPORTED_ALG;
        return JOSE_OK;
}

Test(wycheproof, json_web_signature) {
        _cleanup_json_ json_t *v = load("json_web_signature_test.json");
        const json_t *group, *test;
        size_t gi, ti;
        Counts c = {};
        unsigned valid_refused = 0, no_key_groups = 0;

        json_array_foreach(json_object_get(v, "testGroups"), gi, group) {
                KeydAlg alg = _KEYD_ALG_INVALID;
                _cleanup_pkey_ EVP_PKEY *pkey = group_key(group, &alg);
                if (!pkey)
                        no_key_groups++;

                json_array_foreach(json_object_get(group, "tests"), ti, test) {
                        const json_t *jws_member = json_object_get(test, "jws");
                        long long id = json_integer_value(json_object_get(test, "tcId"));
                        const char *result = json_string_value(json_object_get(test, "result"));
                        _cleanup_free_ char *token = NULL;
                        JoseJws *jws = NULL;

                        /* The JSON serialization (tcId 17) is fed as the text it is: keyd must refuse it too. */
                        token = json_is_string(jws_member) ? strdup(json_string_value(jws_member))
                                                           : json_dumps(jws_member, JSON_COMPACT);
                        cr_assert(token && result);

                        JoseResult r = jose_jws_parse(token, strlen(token), &jws);
                        if (r == JOSE_OK) {
                                r = pkey ? jose_jws_verify(jws, pkey, alg) : JOSE_UNKNOWN_KID;
                                if (pkey) {
                                        JoseVerifier *verifier = NULL;
                                        cr_assert_eq(jose_verifier_new(pkey, alg, &verifier), 0);
                                        cr_assert_eq(jose_jws_verify_with(jws, verifier), r,
                                                     "tcId %lld: the prepared verifier disagrees", id);
                                        jose_verifier_unref(verifier);
                                }
                                jose_jws_free(jws);
                        }
                        c.checked++;
                        c.results[r]++;
                        if (streq(result, "valid")) {
                                JoseResult expected = valid_decision(id, token, group);
                                cr_assert_eq(r, expected, "tcId %lld (valid, %s): %s, expected %s", id,
                                             json_string_value(json_object_get(test, "comment")),
                                             jose_result_to_string(r), jose_result_to_string(expected));
                                if (r == JOSE_OK)
                                        c.valid++;
                                else
                                        valid_refused++;
                        } else {
                                cr_assert_str_eq(result, "invalid", "tcId %lld", id);
                                cr_assert_neq(r, JOSE_OK, "tcId %lld (invalid, %s) accepted", id,
                                              json_string_value(json_object_get(test, "comment")));
                                cr_assert_neq(r, JOSE_INTERNAL, "tcId %lld", id);
                                c.invalid++;
                        }
                }
        }

        cr_log_info("json_web_signature_test.json: %u checked: %u valid accepted, %u valid refused (README), "
                    "%u invalid refused; %u groups with a key keyd cannot hold; results: malformed %u, "
                    "unsupported_alg %u, bad_signature %u, no key %u",
                    c.checked, c.valid, valid_refused, c.invalid, no_key_groups, c.results[JOSE_MALFORMED],
                    c.results[JOSE_UNSUPPORTED_ALG], c.results[JOSE_BAD_SIGNATURE], c.results[JOSE_UNKNOWN_KID]);
        cr_assert_eq(c.checked, json_integer_value(json_object_get(v, "numberOfTests")));
        cr_assert_eq(c.checked, 401);
        cr_assert_eq(c.valid, 16, "valid vectors accepted");
        cr_assert_eq(valid_refused, 30, "valid vectors refused by keyd's rules");
        cr_assert_eq(c.invalid, 355);
}
