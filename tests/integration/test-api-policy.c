/* SPDX-License-Identifier: MIT */
/* The signing policy through the real daemon on a real token: raw signing (/jws, /sign) only where a keyring's policy
 * allows it, never with keyd's own document types; an agent's key never vouches for an issuer token; every denial and
 * every signing failure audited; mint never issues a token that verify would refuse for its size. */
#include <criterion/criterion.h>
#include <poll.h>
#include <stdio.h>
#include <unistd.h>

#include "common/crypto-util.h"
#include "jose/b64.h"
#include "jose/jwk.h"
#include "jose/jws.h"
#include "tests/helpers/test-api.h"
#include "tests/helpers/test-crypto.h"
#include "tests/helpers/test-daemon.h"
#include "tests/helpers/test-util.h"
#define TYP_REVOCATIONS "keyd-revocations+jwt"
#define TYP_CHECKPOINT "keyd-audit-checkpoint+jwt"

static TestToken tok;
static TestDaemon d = { .notify_fd = -1 };
static char sock[100];

#define DEFAULT_RING                                                                                                   \
        "[keyring default]\nkind = issuer\nalg = ES256\nissuer = https://issuer.test\n"                                \
        "rotation-period = 1h\nprepublish = 10m\ntoken-ttl-max = 10m\ndefault-ttl = 5m\nsign-users = root\n"

static void start(const char *rings) {
        test_token_setup(&tok);
        test_daemon_start_rings(&d, &tok, rings);
        /* Let the unprivileged children of the denial tests reach the socket. */
        test_daemon_open_socket(&tok, sock, sizeof sock);
}

static void stop(void) {
        test_daemon_teardown(&d, &tok);
}

/* "default" alone: raw signing is not allowed on it. */
static void setup_default(void) {
        start(DEFAULT_RING);
}

/* "raw": an issuer keyring whose policy allows raw signing. */
static void setup_raw(void) {
        start(DEFAULT_RING "\n[keyring raw]\nkind = issuer\nalg = ES256\nissuer = https://raw.test\n"
                           "token-ttl-max = 10m\ndefault-ttl = 5m\nsign-users = root\nallow-raw-sign = yes\n");
}

TestSuite(policy, .init = setup_default, .fini = stop, .timeout = 120);
TestSuite(policy_raw, .init = setup_raw, .fini = stop, .timeout = 120);

static json_t *call(const char *method, const char *path, const char *body, long want) {
        return test_api_expect(sock, method, path, body, want);
}

static void expect_error(const char *method, const char *path, const char *body, long want, const char *code,
                         const char *in_message) {
        test_api_expect_error(sock, method, path, body, want, code, in_message);
}

/* The JWS of a 201 reply. */
static char *signed_jws(const char *path, const char *body) {
        return test_api_created(sock, path, body, "jws");
}

static void create_agent(const char *name) {
        char body[256];
        snprintf(body, sizeof body, "{\"name\":\"%s\",\"kind\":\"agent\",\"owner_uid\":%u}", name, (unsigned) getuid());
        json_decref(call("POST", "/v1/keyrings", body, 201));
}

/* Whether a token object's label ("keyd:[installation:]keyring:id") is of this keyring. */
static bool label_of_ring(const char *label, const char *ring) {
        const char *last = strrchr(label, ':');
        size_t n = strlen(ring);
        return last && (size_t) (last - label) > n && last[-(long) n - 1] == ':' && strncmp(last - n, ring, n) == 0;
}

/* Sign header.payload with the active key of a keyring from this process, through the token: what keyd signs when
 * /jws is asked for that header and payload. */
static char *forge(const char *ring, const char *typ, const char *payload) {
        char *kid = test_api_active_kid(sock, ring), tp[JOSE_THUMBPRINT_LEN + 1];
        Hsm *h = test_token_open(&tok, 1);
        HsmObject *objs = NULL;
        HsmKey *key = NULL;
        size_t n = 0;

        cr_assert_eq(hsm_list(h, "keyd:", &objs, &n), 0);
        for (size_t i = 0; i < n && !key; i++) {
                HsmKey *k = NULL;
                EVP_PKEY *pk = NULL;
                json_t *jwk = NULL;
                unsigned long pub = 0;
                for (size_t j = 0; j < n; j++)
                        if (!objs[j].is_private && objs[j].id_len == objs[i].id_len &&
                            memcmp(objs[j].id, objs[i].id, objs[i].id_len) == 0)
                                pub = objs[j].handle;
                if (!objs[i].is_private || !label_of_ring(objs[i].label, ring) ||
                    hsm_key_open_handles(h, KEYD_ALG_ES256, objs[i].id, objs[i].id_len, objs[i].handle, pub, &k) < 0)
                        continue;
                if (hsm_key_public(k, &pk) == 0 && jose_jwk_from_pkey(pk, KEYD_ALG_ES256, &jwk) == 0 &&
                    jose_jwk_thumbprint(jwk, tp) == 0 && streq(tp, kid))
                        key = k;
                else
                        hsm_key_free(k);
                json_decref(jwk);
                EVP_PKEY_free(pk);
        }
        cr_assert_not_null(key, "the active key of %s is not in the token", ring);

        json_t *header = json_pack("{s:s, s:s}", "alg", "ES256", "kid", kid);
        if (typ)
                json_object_set_new(header, "typ", json_string(typ));
        char *input;
        size_t len;
        uint8_t sig[HSM_SIG_MAX];
        cr_assert_eq(jose_jws_signing_input(header, payload, strlen(payload), &input, &len), 0);
        int s = hsm_key_sign(key, input, len, sig, sizeof sig);
        cr_assert_gt(s, 0, "sign: %s", hsm_last_error());
        cr_assert_gt(jose_jws_append_signature(input, len, sig, (size_t) s), 0);
        json_decref(header);
        hsm_key_free(key);
        free(objs);
        hsm_close(h);
        free(kid);
        return input;
}

/* A payload that verifies but for what is tested: exp in ten minutes, and iss if given. */
static char *claims_with(const char *iss) {
        char *p;
        long long now = (long long) time(NULL);
        if (iss)
                cr_assert(asprintf(&p, "{\"iss\":\"%s\",\"sub\":\"a\",\"iat\":%lld,\"exp\":%lld}", iss, now,
                                   now + 600) >= 0);
        else
                cr_assert(asprintf(&p, "{\"sub\":\"a\",\"iat\":%lld,\"exp\":%lld}", now, now + 600) >= 0);
        return p;
}

/* {"data": b64url(b64url(header) "." b64url(payload))}: a JWS signing input to sign raw. */
static char *raw_jws_input_body(const char *header) {
        char *input = test_jws_input(header, "{\"sub\":\"a\"}"), *data = test_b64url(input, strlen(input)), *body;
        cr_assert(asprintf(&body, "{\"data\":\"%s\"}", data) >= 0);
        free(input), free(data);
        return body;
}

/* --- ITEM 2: raw signing is for agents; issuer keyrings only with allow-raw-sign, never keyd's own typs --- */

Test(policy, raw_signing_refused_on_issuer_keyring) {
        expect_error("POST", "/v1/keyrings/default/jws", "{\"payload_json\":{\"sub\":\"a\"}}", 403, "forbidden",
                     "allow-raw-sign");
        expect_error("POST", "/v1/keyrings/default/sign", "{\"data\":\"aGVsbG8\"}", 403, "forbidden",
                     "allow-raw-sign");
        /* Minting is what an issuer keyring is for. */
        json_decref(call("POST", "/v1/keyrings/default/tokens", "{\"sub\":\"a\"}", 201));

        json_t *recs = test_api_audit_records(sock), *r;
        size_t i, denied = 0;
        json_array_foreach(recs, i, r) {
                if (streq(json_string_value(json_object_get(r, "action")), "authz.denied") &&
                    streq(json_string_value(json_object_get(r, "result")), "denied") &&
                    streq(json_string_value(json_object_get(r, "keyring")) ?: "", "default"))
                        denied++;
        }
        cr_assert_eq(denied, 2, "both refusals are audited as denials, found %zu", denied);
        json_decref(recs);
}

Test(policy, keyd_typs_refused_on_agent_keyring) {
        create_agent("agent-0");
        /* What an agent is for: a DPoP proof. */
        free(signed_jws("/v1/keyrings/agent-0/jws",
                        "{\"payload_json\":{\"htm\":\"POST\"},\"header\":{\"typ\":\"dpop+jwt\"},\"embed_jwk\":true}"));
        expect_error("POST", "/v1/keyrings/agent-0/jws",
                     "{\"payload_json\":{\"sub\":\"a\"},\"header\":{\"typ\":\"" TYP_REVOCATIONS "\"}}", 422,
                     "unprocessable", TYP_REVOCATIONS);
        expect_error("POST", "/v1/keyrings/agent-0/jws",
                     "{\"payload_json\":{\"sub\":\"a\"},\"header\":{\"typ\":\"" TYP_CHECKPOINT "\"}}", 422,
                     "unprocessable", NULL);
        /* typ is compared as a media type: case-insensitive, "application/" may be left out (RFC 7515 §4.1.9). */
        expect_error("POST", "/v1/keyrings/agent-0/jws",
                     "{\"payload_json\":{\"sub\":\"a\"},\"header\":{\"typ\":\"application/Keyd-Revocations+JWT\"}}",
                     422, "unprocessable", NULL);

        /* Raw data that is the signing input of a JWS with keyd's typ is the same thing by another door. */
        char *body = raw_jws_input_body("{\"alg\":\"ES256\",\"typ\":\"" TYP_CHECKPOINT "\"}");
        expect_error("POST", "/v1/keyrings/agent-0/sign", body, 422, "unprocessable", NULL);
        free(body);
        body = raw_jws_input_body("{\"alg\":\"ES256\",\"typ\":\"dpop+jwt\"}");
        json_decref(call("POST", "/v1/keyrings/agent-0/sign", body, 200));
        free(body);
        json_decref(call("POST", "/v1/keyrings/agent-0/sign", "{\"data\":\"aGVsbG8\"}", 200));
}

Test(policy, mint_token_type_never_keyd_typ) {
        expect_error("POST", "/v1/keyrings",
                     "{\"name\":\"x\",\"kind\":\"issuer\",\"policy\":{\"token_type\":\"" TYP_REVOCATIONS "\"}}", 422,
                     "unprocessable", "token-type");
        expect_error("POST", "/v1/keyrings",
                     "{\"name\":\"y\",\"kind\":\"issuer\",\"policy\":{\"token_type\":\"" TYP_CHECKPOINT "\"}}", 422,
                     "unprocessable", NULL);
        /* The switch is in the policy, off by default, and in its JSON. */
        json_t *j = call("GET", "/v1/keyrings/default", NULL, 200);
        cr_assert(json_is_false(json_object_get(json_object_get(j, "policy"), "allow_raw_sign")));
        json_decref(j);
}

Test(policy, verify_refuses_keyd_typs) {
        char *claims = claims_with("https://issuer.test");
        char *ok = forge("default", "JWT", claims), *rev = forge("default", TYP_REVOCATIONS, claims),
             *chk = forge("default", TYP_CHECKPOINT, claims);
        test_api_expect_valid(sock, ok, NULL);
        test_api_expect_invalid(sock, rev, NULL, "malformed");
        test_api_expect_invalid(sock, chk, NULL, "malformed");
        free(ok), free(rev), free(chk), free(claims);
}

Test(policy_raw, allowed_but_never_keyd_typs) {
        char *claims = claims_with("https://raw.test"), body[512];
        snprintf(body, sizeof body, "{\"payload_json\":%s,\"header\":{\"typ\":\"JWT\"}}", claims);
        char *t = signed_jws("/v1/keyrings/raw/jws", body);
        test_api_expect_valid(sock, t, NULL);
        free(t);
        json_decref(call("POST", "/v1/keyrings/raw/sign", "{\"data\":\"aGVsbG8\"}", 200));
        json_t *j = call("GET", "/v1/keyrings/raw", NULL, 200);
        cr_assert(json_is_true(json_object_get(json_object_get(j, "policy"), "allow_raw_sign")));
        json_decref(j);

        snprintf(body, sizeof body, "{\"payload_json\":%s,\"header\":{\"typ\":\"" TYP_REVOCATIONS "\"}}", claims);
        expect_error("POST", "/v1/keyrings/raw/jws", body, 422, "unprocessable", NULL);
        snprintf(body, sizeof body, "{\"payload_json\":%s,\"header\":{\"typ\":\"" TYP_CHECKPOINT "\"}}", claims);
        expect_error("POST", "/v1/keyrings/raw/jws", body, 422, "unprocessable", NULL);
        char *raw = raw_jws_input_body("{\"alg\":\"ES256\",\"typ\":\"" TYP_REVOCATIONS "\"}");
        expect_error("POST", "/v1/keyrings/raw/sign", raw, 422, "unprocessable", NULL);
        free(raw);
        /* Duplicate members leave typ to the reader: refused as well. */
        raw = raw_jws_input_body("{\"typ\":\"" TYP_REVOCATIONS "\",\"alg\":\"ES256\",\"typ\":\"JWT\"}");
        expect_error("POST", "/v1/keyrings/raw/sign", raw, 422, "unprocessable", NULL);
        free(raw);
        /* A header jansson cannot read (a lone surrogate escape) that other JSON readers take: refused too. */
        raw = raw_jws_input_body("{\"typ\":\"" TYP_REVOCATIONS "\",\"x\":\"\\ud800\"}");
        expect_error("POST", "/v1/keyrings/raw/sign", raw, 422, "unprocessable", NULL);
        free(raw);
        raw = raw_jws_input_body(" {\"typ\":\"" TYP_CHECKPOINT "\",\"n\":1e999999}");
        expect_error("POST", "/v1/keyrings/raw/sign", raw, 422, "unprocessable", NULL);
        free(raw);
        /* Still refused where the policy does not allow it. */
        expect_error("POST", "/v1/keyrings/default/sign", "{\"data\":\"aGVsbG8\"}", 403, "forbidden",
                     "allow-raw-sign");
        free(claims);
}

/* --- ITEM 3: an agent's token never verifies as an issuer token; iss must be the signing keyring's issuer --- */

Test(policy, agent_key_only_when_asked_for) {
        create_agent("agent-1");
        char *claims = claims_with("https://issuer.test"), body[512];
        snprintf(body, sizeof body, "{\"payload_json\":%s}", claims);
        char *t = signed_jws("/v1/keyrings/agent-1/jws", body);
        /* By default only issuer keyrings vouch for a token. */
        test_api_expect_invalid(sock, t, NULL, "unknown_kid");
        test_api_expect_invalid(sock, t, ",\"keyrings\":[\"default\"]", "unknown_kid");
        /* A caller who names the agent keyring checks an agent's own proof. */
        test_api_expect_valid(sock, t, ",\"keyrings\":[\"agent-1\"]");
        free(t), free(claims);
}

Test(policy, iss_must_be_the_keyrings_issuer) {
        char *other = claims_with("https://other.test"), *none = claims_with(NULL),
             *good = claims_with("https://issuer.test");
        char *t1 = forge("default", "JWT", other), *t2 = forge("default", "JWT", none),
             *t3 = forge("default", "JWT", good);
        test_api_expect_invalid(sock, t1, NULL, "issuer_mismatch");
        test_api_expect_invalid(sock, t2, NULL, "issuer_mismatch");
        test_api_expect_valid(sock, t3, NULL);
        free(t1), free(t2), free(t3), free(other), free(none), free(good);
}

/* --- ITEM 7: every denial and every signing failure is audited --- */

/* As nobody: one raw request (the bytes as given, not percent-escaped); returns the HTTP status, or exits. */
static int nobody_request(const char *req) {
        char out[4096];
        int fd = test_api_try_connect(sock);
        if (fd < 0 || write(fd, req, strlen(req)) != (ssize_t) strlen(req))
                _exit(2);
        struct pollfd p = { fd, POLLIN, 0 };
        if (poll(&p, 1, 10000) != 1)
                _exit(3);
        ssize_t n = read(fd, out, sizeof out - 1);
        if (n < 12)
                _exit(4);
        out[n] = 0;
        close(fd);
        return atoi(out + 9);
}

#define REVOKE_REQUEST(kid)                                                                                            \
        "POST /v1/keys/" kid "/revoke HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n" \
        "Connection: close\r\n\r\n{}"

/* Exit 0: both denied (403); 10: the kid that is not UTF-8 was refused as a bad path (400) before authorisation. */
static void nobody_revokes(void) {
        if (nobody_request(REVOKE_REQUEST("k-ascii")) != 403)
                _exit(5);
        /* A path that is not UTF-8 is a bad request, refused before anything is authorised. */
        if (nobody_request(REVOKE_REQUEST("k\xff\xfe\xc3")) != 400)
                _exit(6);
        _exit(0);
}

static json_t *denial_of_kid(json_t *recs, const char *kid) {
        json_t *r;
        size_t i;
        json_array_foreach(recs, i, r) {
                if (streq(json_string_value(json_object_get(r, "action")), "authz.denied") &&
                    json_integer_value(json_object_get(r, "uid")) == TEST_NOBODY &&
                    streq(json_string_value(json_object_get(r, "kid")) ?: "", kid)) {
                        cr_assert(json_is_null(json_object_get(r, "keyring")), "a kid is not a keyring");
                        cr_assert_str_eq(json_string_value(json_object_get(r, "result")), "denied");
                        return r;
                }
        }
        return NULL;
}

/* A denial on the kid route records the kid as kid (before, as the keyring); a kid that is not UTF-8 is a bad request
 * (400) before anything is authorised, so the audit chain never meets bytes it cannot hold. */
Test(policy, denial_with_non_utf8_kid_is_audited) {
        pid_t pid = test_fork_as_nobody();
        if (pid == 0)
                nobody_revokes();
        int status = test_wait_child(pid);
        cr_assert_eq(status, 0, "the unprivileged requests: exit %d", status);

        json_t *recs = test_api_audit_records(sock);
        cr_assert_not_null(denial_of_kid(recs, "k-ascii"), "the denial is in the audit log, with the kid as kid");
        json_decref(recs);
        json_decref(test_api_audit_verify(sock));
}

/* Destroy every object of a keyring in the token behind keyd's back: its keys can no longer sign. */
static void destroy_keyring_objects(const char *ring) {
        Hsm *h = test_token_open(&tok, 1);
        HsmObject *objs = NULL;
        size_t n = 0, destroyed = 0;
        cr_assert_eq(hsm_list(h, "keyd:", &objs, &n), 0);
        for (size_t i = 0; i < n; i++)
                if (label_of_ring(objs[i].label, ring)) {
                        cr_assert_eq(hsm_destroy_handles(h, objs[i].handle, 0), 1);
                        destroyed++;
                }
        cr_assert_gt(destroyed, 0, "no object of %s in the token", ring);
        free(objs);
        hsm_close(h);
}

static void expect_error_audited(json_t *recs, const char *action, const char *ring) {
        json_t *r, *found = NULL;
        size_t i;
        json_array_foreach(recs, i, r) {
                if (streq(json_string_value(json_object_get(r, "action")), action) &&
                    streq(json_string_value(json_object_get(r, "result")), "error"))
                        found = r;
        }
        cr_assert_not_null(found, "no %s record with result error", action);
        cr_assert_str_eq(json_string_value(json_object_get(found, "keyring")), ring);
        json_t *detail = json_object_get(found, "detail");
        const char *ckr = json_string_value(json_object_get(detail, "pkcs11"));
        cr_assert(ckr && startswith(ckr, "CKR_") && !streq(ckr, "CKR_OK"), "the PKCS#11 return is named: %s",
                  ckr ?: "(none)");
        cr_assert(json_is_string(json_object_get(detail, "error")), "the errno text is there");
}

Test(policy, sign_failures_are_audited) {
        /* One keyring per request: the first failure of each sets off its repair (new keys), which a second request
         * might find done. */
        create_agent("agent-2");
        create_agent("agent-3");
        destroy_keyring_objects("default");
        destroy_keyring_objects("agent-2");
        destroy_keyring_objects("agent-3");
        expect_error("POST", "/v1/keyrings/default/tokens", "{\"sub\":\"a\"}", 503, "unavailable", NULL);
        expect_error("POST", "/v1/keyrings/agent-2/jws", "{\"payload_json\":{\"sub\":\"a\"}}", 503, "unavailable",
                     NULL);
        expect_error("POST", "/v1/keyrings/agent-3/sign", "{\"data\":\"aGVsbG8\"}", 503, "unavailable", NULL);
        json_t *recs = test_api_audit_records(sock);
        expect_error_audited(recs, "token.mint", "default");
        expect_error_audited(recs, "jws.sign", "agent-2");
        expect_error_audited(recs, "data.sign", "agent-3");
        json_decref(recs);
}

/* --- ITEM 10: mint never issues a token verify would refuse for its size --- */

static long mint_padded(size_t pad, char **ret_token) {
        char *fill = malloc(pad + 1), *body;
        long status;
        memset(fill, 'x', pad);
        fill[pad] = 0;
        cr_assert(asprintf(&body, "{\"sub\":\"a\",\"claims\":{\"pad\":\"%s\"}}", fill) >= 0);
        json_t *j = test_api(sock, "POST", "/v1/keyrings/default/tokens", body, &status);
        if (ret_token)
                *ret_token = status == 201 ? strdup(json_string_value(json_object_get(j, "token"))) : NULL;
        json_decref(j);
        free(body), free(fill);
        return status;
}

Test(policy, mint_refuses_oversized_token) {
        cr_assert_eq(mint_padded(20000, NULL), 422, "a token over 16 KiB is refused");
        /* The largest padding that mints: its token verifies, one byte more is refused. */
        size_t lo = 8000, hi = 20000;
        cr_assert_eq(mint_padded(lo, NULL), 201);
        while (hi - lo > 1) {
                size_t mid = (lo + hi) / 2;
                long st = mint_padded(mid, NULL);
                cr_assert(st == 201 || st == 422, "status %ld", st);
                if (st == 201)
                        lo = mid;
                else
                        hi = mid;
        }
        char *t = NULL;
        cr_assert_eq(mint_padded(lo, &t), 201);
        cr_assert_leq(strlen(t), JOSE_JWS_MAX);
        cr_assert_geq(strlen(t), JOSE_JWS_MAX - 3, "the limit is verify's, not a smaller one: %zu", strlen(t));
        test_api_expect_valid(sock, t, NULL);
        free(t);
        cr_assert_eq(mint_padded(lo + 1, NULL), 422);
}
