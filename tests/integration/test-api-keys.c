/* SPDX-License-Identifier: MIT */
/* Through the real daemon on a real SoftHSM2 token: POST /v1/keyrings refuses a policy option that does not apply
 * (rsa_bits for a key that is not RSA) and an issuer keyring whose issuer is not an https URL (http only on a
 * loopback host), for every client, with 422; GET /v1/keys/{kid} shows a key with its JWK and the RFC 7512 URI of
 * its private key object, which standard PKCS#11 tooling (p11-kit's parser, OpenSSL's pkcs11 engine from libp11)
 * takes to find the very key and sign with it. */
#include <criterion/criterion.h>
#include <openssl/evp.h>
#include <p11-kit/uri.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/crypto-util.h"
#include "common/hex.h"
#include "jose/jwk.h"
#include "tests/helpers/test-api.h"
#include "tests/helpers/test-daemon.h"
#include "tests/helpers/test-util.h"

static TestToken tok;
static TestDaemon d = { .notify_fd = -1 };
static char sock[100];

static void start(void) {
        test_token_setup(&tok);
        test_daemon_start_rings(&d, &tok,
                                "[keyring default]\nkind = issuer\nalg = ES256\nissuer = https://issuer.test\n"
                                "rotation-period = 1h\nprepublish = 10m\ntoken-ttl-max = 10m\ndefault-ttl = 5m\n");
        test_daemon_socket(&tok, sock, sizeof sock);
}

static void stop(void) {
        test_daemon_teardown(&d, &tok);
}

TestSuite(keys, .init = start, .fini = stop, .timeout = 120);

static void create_refused(const char *name, const char *kind, const char *policy, const char *in_message) {
        char body[1024];
        snprintf(body, sizeof body, "{\"name\":\"%s\",\"kind\":\"%s\"%s,\"policy\":%s}", name, kind,
                 streq(kind, "agent") ? ",\"owner_uid\":1000" : "", policy);
        test_api_expect_error(sock, "POST", "/v1/keyrings", body, 422, "unprocessable", in_message);
        /* Nothing was made. */
        char path[128];
        snprintf(path, sizeof path, "/v1/keyrings/%s", name);
        json_decref(test_api_expect(sock, "GET", path, NULL, 404));
}

static void created(const char *name, const char *kind, const char *policy) {
        char body[1024];
        snprintf(body, sizeof body, "{\"name\":\"%s\",\"kind\":\"%s\"%s,\"policy\":%s}", name, kind,
                 streq(kind, "agent") ? ",\"owner_uid\":1000" : "", policy);
        json_decref(test_api_expect(sock, "POST", "/v1/keyrings", body, 201));
}

/* rsa_bits with an EC or EdDSA key would be ignored: refused, as keydctl refuses --rsa-bits. */
Test(keys, create_refuses_rsa_bits_for_keys_that_are_not_rsa) {
        create_refused("ec", "issuer", "{\"alg\":\"ES256\",\"rsa_bits\":3072}", "rsa_bits applies to RS256 and PS256");
        create_refused("ed", "agent", "{\"alg\":\"EdDSA\",\"rsa_bits\":2048}", "not to EdDSA");
        /* The default alg is ES256. */
        create_refused("dflt", "issuer", "{\"rsa_bits\":4096}", "not to ES256");
        created("rsa", "issuer", "{\"alg\":\"PS256\",\"rsa_bits\":3072}");
        json_t *ring = test_api_expect(sock, "GET", "/v1/keyrings/rsa", NULL, 200);
        cr_assert_eq(json_integer_value(json_object_get(json_object_get(ring, "policy"), "rsa_bits")), 3072);
        json_decref(ring);
        created("ec-plain", "issuer", "{\"alg\":\"ES384\"}");
}

/* An issuer keyring's issuer is where verifiers fetch its keys: https, or http to a loopback host. */
Test(keys, create_requires_an_https_issuer) {
        static const char *const bad[] = {
                "http://issuer.example.com",
                "issuer.example.com",
                "ftp://issuer.example.com",
                "https://",
                "https://user:pw@issuer.example.com",
                "https://issuer.example.com/?q=1",
                "https://issuer.example.com#x",
                "https://issuer example.com",
                "http://127.0.0.2",
                "https://issuer.example.com:0",
                "https://issuer.example.com:65536",
                "https://[::1",
                "http://localhost.example.com",
        };
        static const char *const good[] = {
                "https://issuer.example.com", "HTTPS://Issuer.Example.com:8443/tenant/a",
                "http://127.0.0.1:8080",      "http://localhost",
                "http://[::1]:8080/x",        "https://[2001:db8::1]",
        };
        char policy[256], name[32];

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                snprintf(name, sizeof name, "bad-%zu", i);
                snprintf(policy, sizeof policy, "{\"issuer\":\"%s\"}", bad[i]);
                create_refused(name, "issuer", policy, "issuer must be");
        }
        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                snprintf(name, sizeof name, "good-%zu", i);
                snprintf(policy, sizeof policy, "{\"issuer\":\"%s\"}", good[i]);
                created(name, "issuer", policy);
        }
        /* An agent's issuer is its own business (a client id, often): not checked. */
        created("agent-1", "agent", "{\"issuer\":\"agent-1\"}");
        /* Without an issuer: tokens without iss, as before. */
        created("no-iss", "issuer", "{\"alg\":\"ES256\"}");
}

/* The URI's attributes as p11-kit reads them. */
static void expect_uri(const char *uri, const json_t *token) {
        P11KitUri *u = p11_kit_uri_new();
        CK_ATTRIBUTE *a;
        cr_assert_eq(p11_kit_uri_parse(uri, P11_KIT_URI_FOR_ANY, u), P11_KIT_URI_OK, "p11-kit cannot parse %s", uri);
        CK_TOKEN_INFO *ti = p11_kit_uri_get_token_info(u);
        cr_assert(strncmp((const char *) ti->label, TEST_TOKEN_LABEL, strlen(TEST_TOKEN_LABEL)) == 0, "%s", uri);
        a = p11_kit_uri_get_attribute(u, CKA_LABEL);
        cr_assert_not_null(a, "%s", uri);
        const char *label = json_string_value(json_object_get(token, "object"));
        cr_assert(a->ulValueLen == strlen(label) && memcmp(a->pValue, label, a->ulValueLen) == 0, "object= %s", uri);
        a = p11_kit_uri_get_attribute(u, CKA_ID);
        cr_assert_not_null(a, "%s", uri);
        uint8_t id[64];
        size_t n;
        cr_assert_eq(hex_decode(json_string_value(json_object_get(token, "id")), id, sizeof id, &n), 0);
        cr_assert(a->ulValueLen == n && memcmp(a->pValue, id, n) == 0, "id= %s", uri);
        a = p11_kit_uri_get_attribute(u, CKA_CLASS);
        cr_assert(a && *(CK_OBJECT_CLASS *) a->pValue == CKO_PRIVATE_KEY, "type=private: %s", uri);
        p11_kit_uri_free(u);
}

/* OpenSSL's pkcs11 engine (libp11) signs SHA-256 of "hello" with the key the URI names; the signature verifies
 * with the key's JWK. */
static void expect_engine_signs(const char *uri, const json_t *jwk) {
        static const char engine[] = "/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so";
        char cmd[4096], dgst[64], sig[64];
        int status;

        if (access(engine, R_OK) < 0) {
                cr_log_warn("no %s (libengine-pkcs11-openssl): the URI is not tried with libp11", engine);
                return;
        }
        snprintf(dgst, sizeof dgst, "%s/dgst", tok.dir);
        snprintf(sig, sizeof sig, "%s/sig", tok.dir);
        _cleanup_free_ char *pin = test_read_file(tok.pin_file, NULL);
        pin[strcspn(pin, "\n")] = 0;
        snprintf(cmd, sizeof cmd,
                 "printf hello | openssl dgst -sha256 -binary > %s && SOFTHSM2_CONF=%s PKCS11_MODULE_PATH=%s "
                 "openssl pkeyutl -engine pkcs11 -keyform engine -inkey '%s;pin-value=%s' -sign -in %s -out %s 2>&1",
                 dgst, tok.conf, tok.module, uri, pin, dgst, sig);
        _cleanup_free_ char *out = test_run(cmd, &status);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "openssl with the URI:\n%s", out);

        EVP_PKEY *pub = NULL;
        cr_assert_eq(jose_jwk_to_pkey(jwk, &pub), 0);
        size_t sig_len;
        _cleanup_free_ char *sig_der = test_read_file(sig, &sig_len);
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        cr_assert_eq(EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, pub), 1);
        cr_assert_eq(EVP_DigestVerify(ctx, (const uint8_t *) sig_der, sig_len, (const uint8_t *) "hello", 5), 1,
                     "the signature made through the URI verifies with the key's JWK");
        EVP_MD_CTX_free(ctx);
        EVP_PKEY_free(pub);
}

Test(keys, show_names_the_private_key_in_the_token) {
        _cleanup_free_ char *active = test_api_active_kid(sock, "default"), *path = NULL;
        cr_assert(asprintf(&path, "/v1/keys/%s", active) > 0);
        json_t *k = test_api_expect(sock, "GET", path, NULL, 200);
        cr_assert_str_eq(json_string_value(json_object_get(k, "kid")), active);
        cr_assert_str_eq(json_string_value(json_object_get(k, "keyring")), "default");
        cr_assert_str_eq(json_string_value(json_object_get(k, "kind")), "issuer");
        cr_assert_str_eq(json_string_value(json_object_get(k, "state")), "active");
        cr_assert_str_eq(json_string_value(json_object_get(k, "alg")), "ES256");
        cr_assert_not_null(json_string_value(json_object_get(k, "activate_at")));

        /* The JWK is the one the JWKS publishes. */
        json_t *jwks = test_api_expect(sock, "GET", "/v1/keyrings/default/jwks", NULL, 200), *e, *published = NULL;
        size_t i;
        json_array_foreach(json_object_get(jwks, "keys"), i, e)
                if (streq_ptr(json_string_value(json_object_get(e, "kid")), active))
                        published = e;
        cr_assert_not_null(published);
        cr_assert(json_equal(json_object_get(k, "jwk"), published), "jwk differs from the JWKS");

        json_t *t = json_object_get(k, "token");
        cr_assert_str_eq(json_string_value(json_object_get(t, "label")), TEST_TOKEN_LABEL);
        cr_assert(startswith(json_string_value(json_object_get(t, "object")), "keyd:"));
        cr_assert(json_is_true(json_object_get(t, "private_key")));
        const char *uri = json_string_value(json_object_get(t, "uri"));
        cr_assert(startswith(uri, "pkcs11:token=" TEST_TOKEN_LABEL ";object=keyd:") && strstr(uri, ";id=%") &&
                          strstr(uri, ";type=private"),
                  "%s", uri);
        expect_uri(uri, t);
        expect_engine_signs(uri, published);
        json_decref(jwks);
        json_decref(k);

        /* A retired key has no private object any more; its URI still names where it was. */
        json_decref(test_api_expect(sock, "POST", "/v1/keyrings/default/rotate", "{\"force\":true}", 200));
        k = test_api_expect(sock, "GET", path, NULL, 200);
        cr_assert_str_eq(json_string_value(json_object_get(k, "state")), "retired");
        cr_assert(json_is_false(json_object_get(json_object_get(k, "token"), "private_key")));
        json_decref(k);

        test_api_expect_error(sock, "GET", "/v1/keys/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", NULL, 404,
                              "not_found", NULL);
        test_api_expect_error(sock, "GET", "/v1/keys/a.b", NULL, 400, "bad_request", "kid");
}
