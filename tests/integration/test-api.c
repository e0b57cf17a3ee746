/* SPDX-License-Identifier: MIT */
/* The local API through the real socket of the real daemon, on a real token: every endpoint, its errors, and
 * authorisation across uids. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <inttypes.h>
#include <ctype.h>
#include <dirent.h>
#include <openssl/hmac.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/crypto-util.h"
#include "jose/b64.h"
#include "jose/jwk.h"
#include "jose/jws.h"
#include "tests/helpers/test-api.h"
#include "tests/helpers/test-crypto.h"
#include "tests/helpers/test-daemon.h"
#include "tests/helpers/test-util.h"

static TestToken tok;
static TestDaemon d = { .notify_fd = -1 };
static char sock[100];
static int public_port;

static void start(const char *api_extra) {
        char rings[4096];
        test_token_setup(&tok);
        snprintf(rings, sizeof rings,
                 "%s\n[keyring default]\nkind = issuer\nalg = ES256\nissuer = https://issuer.test\n"
                 "rotation-period = 1h\nprepublish = 10m\ntoken-ttl-max = 10m\ndefault-ttl = 5m\n"
                 "sign-users = root\n"
                 /* The tests of /jws and /sign use this issuer keyring: its policy allows raw signing. */
                 "allow-raw-sign = yes\n\n"
                 "[keyring gw]\nkind = issuer\nalg = EdDSA\nissuer = https://gw.test\nsign-users = nobody\n"
                 "token-ttl-max = 10m\ndefault-ttl = 5m\n",
                 api_extra ? api_extra : "");
        public_port = test_daemon_start_public(&d, &tok, rings, 30000);
        /* Let the unprivileged children of the authorisation tests reach the socket. */
        test_daemon_open_socket(&tok, sock, sizeof sock);
}

static void stop(void) {
        test_daemon_teardown(&d, &tok);
}

static void setup(void) {
        start(NULL);
}

TestSuite(api, .init = setup, .fini = stop, .timeout = 120);

static json_t *call(const char *method, const char *path, const char *body, long want) {
        return test_api_expect(sock, method, path, body, want);
}

static void expect_error(const char *method, const char *path, const char *body, long want, const char *code) {
        test_api_expect_error(sock, method, path, body, want, code, NULL);
}

static char *mint(const char *path, const char *body) {
        return test_api_created(sock, path, body, "token");
}

static json_t *verify(const char *token, const char *extra) {
        return test_api_verify(sock, token, extra);
}

static void expect_invalid(const char *token, const char *extra, const char *error) {
        test_api_expect_invalid(sock, token, extra, error);
}

static uint64_t audit_head(void) {
        json_t *j = test_api_audit_verify(sock);
        uint64_t n = (uint64_t) json_integer_value(json_object_get(j, "head_seq"));
        json_decref(j);
        return n;
}

static char *active_kid(const char *ring) {
        return test_api_active_kid(sock, ring);
}

/* --- every endpoint's success path --- */

Test(api, mint_and_verify) {
        char *t = mint("/v1/keyrings/default/tokens",
                       "{\"sub\":\"agent-1\",\"aud\":[\"api\",\"mcp\"],\"ttl\":\"2m\",\"scope\":\"read\","
                       "\"act\":{\"sub\":\"user-7\"},\"claims\":{\"tenant\":\"t1\",\"n\":3}}");
        json_t *j = verify(t, ",\"audience\":\"mcp\",\"issuer\":\"https://issuer.test\",\"keyrings\":[\"default\"]");
        cr_assert(json_is_true(json_object_get(j, "valid")));
        json_t *c = json_object_get(j, "claims");
        cr_assert_str_eq(json_string_value(json_object_get(c, "sub")), "agent-1");
        cr_assert_str_eq(json_string_value(json_object_get(c, "iss")), "https://issuer.test");
        cr_assert_str_eq(json_string_value(json_object_get(c, "tenant")), "t1");
        cr_assert_str_eq(json_string_value(json_object_get(json_object_get(c, "act"), "sub")), "user-7");
        cr_assert_eq(json_integer_value(json_object_get(c, "exp")) - json_integer_value(json_object_get(c, "iat")), 120);
        cr_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "header"), "typ")), "JWT");
        cr_assert_str_eq(json_string_value(json_object_get(j, "alg")), "ES256");
        json_decref(j);
        expect_invalid(t, ",\"keyrings\":[\"gw\"]", "unknown_kid");
        free(t);
}

Test(api, jws_and_raw_sign) {
        json_t *j = call("POST", "/v1/keyrings/default/jws",
                         "{\"payload_json\":{\"htm\":\"POST\",\"htu\":\"https://x/y\"},\"header\":{\"typ\":\"dpop+jwt\"},"
                         "\"embed_jwk\":true}",
                         201);
        const char *jws = json_string_value(json_object_get(j, "jws"));
        JoseJws *p = NULL;
        /* keyd's own parser never trusts an embedded key: a DPoP proof is for the resource server to check. */
        cr_assert_eq(jose_jws_parse(jws, strlen(jws), &p), JOSE_UNSUPPORTED_ALG);
        const char *dot1 = strchr(jws, '.'), *dot2 = strrchr(jws, '.');
        void *hdr_text, *sig;
        size_t hdr_len, sig_len;
        cr_assert_eq(jose_b64url_decode(jws, (size_t) (dot1 - jws), &hdr_text, &hdr_len), 0);
        cr_assert_eq(jose_b64url_decode(dot2 + 1, strlen(dot2 + 1), &sig, &sig_len), 0);
        json_t *hdr = json_loads(hdr_text, 0, NULL);
        cr_assert_str_eq(json_string_value(json_object_get(hdr, "typ")), "dpop+jwt");
        cr_assert_str_eq(json_string_value(json_object_get(hdr, "alg")), "ES256");
        json_t *jwk = json_object_get(hdr, "jwk");
        cr_assert_null(json_object_get(jwk, "d"), "never a private member");
        cr_assert_null(json_object_get(jwk, "kid"), "public members only");
        EVP_PKEY *pk = NULL;
        cr_assert_eq(jose_jwk_to_pkey(jwk, &pk), 0);
        cr_assert_eq(jose_verify_signature(KEYD_ALG_ES256, pk, jws, (size_t) (dot2 - jws), sig, sig_len), JOSE_OK,
                     "verifies with its embedded public key");
        EVP_PKEY_free(pk);
        json_decref(hdr);
        free(hdr_text), free(sig);
        json_decref(j);

        j = call("POST", "/v1/keyrings/default/jws", "{\"payload\":\"aGVsbG8\"}", 201);
        json_decref(j);
        expect_error("POST", "/v1/keyrings/default/jws", "{\"payload\":\"aGVsbG8\",\"header\":{\"alg\":\"none\"}}", 422,
                     "unprocessable");
        expect_error("POST", "/v1/keyrings/default/jws", "{\"payload\":\"aGVsbG8\",\"payload_json\":1}", 400,
                     "bad_request");

        j = call("POST", "/v1/keyrings/default/sign", "{\"data\":\"aGVsbG8gd29ybGQ\"}", 200);
        const char *sig64 = json_string_value(json_object_get(j, "signature"));
        void *raw;
        size_t n;
        cr_assert_eq(jose_b64url_decode(sig64, strlen(sig64), &raw, &n), 0);
        cr_assert_eq(n, 64, "ES256 signatures are R||S, 64 bytes");
        free(raw);
        json_decref(j);
}

Test(api, keyrings_create_list_show_jwks) {
        json_t *j = call("POST", "/v1/keyrings",
                         "{\"name\":\"agent-42\",\"kind\":\"agent\",\"owner_uid\":65534,\"policy\":{\"alg\":\"EdDSA\","
                         "\"rotation_period\":\"1d\",\"prepublish\":3600,\"token_ttl_max\":\"10m\",\"default_ttl\":\"5m\"}}",
                         201);
        cr_assert_str_eq(json_string_value(json_object_get(j, "kind")), "agent");
        cr_assert_eq(json_integer_value(json_object_get(j, "owner_uid")), TEST_NOBODY);
        cr_assert_eq(json_array_size(json_object_get(j, "keys")), 2, "active and next made at once");
        json_decref(j);
        expect_error("POST", "/v1/keyrings", "{\"name\":\"agent-42\",\"kind\":\"agent\",\"owner_uid\":1}", 409,
                     "conflict");
        expect_error("POST", "/v1/keyrings", "{\"name\":\"x\",\"kind\":\"agent\"}", 400, "bad_request");
        expect_error("POST", "/v1/keyrings", "{\"name\":\"../x\"}", 400, "bad_request");
        expect_error("POST", "/v1/keyrings", "{\"name\":\"x\",\"policy\":{\"alg\":\"HS256\"}}", 400, "bad_request");
        expect_error("POST", "/v1/keyrings", "{\"name\":\"x\",\"policy\":{\"prepublish\":\"2d\"}}", 422,
                     "unprocessable");
        expect_error("POST", "/v1/keyrings", "{\"name\":\"x\",\"policy\":{\"bogus\":1}}", 400, "bad_request");
        expect_error("POST", "/v1/keyrings", "{\"name\":\"x\",\"policy\":{\"jwks_file\":\"/var/lib/keyd/keyd.db\"}}", 400,
                     "bad_request");

        j = call("GET", "/v1/keyrings", NULL, 200);
        cr_assert_eq(json_array_size(json_object_get(j, "keyrings")), 3);
        json_decref(j);
        j = call("GET", "/v1/keyrings/default", NULL, 200);
        cr_assert(json_is_string(json_object_get(j, "next_transition")));
        cr_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "policy"), "rotation_period")), "1h");
        json_decref(j);
        j = call("GET", "/v1/keyrings/default/jwks", NULL, 200);
        cr_assert_eq(json_array_size(json_object_get(j, "keys")), 2);
        json_decref(j);
        expect_error("GET", "/v1/keyrings/agent-42/jwks", NULL, 404, "not_found");
        expect_error("GET", "/v1/keyrings/nope", NULL, 404, "not_found");
}

/* GET /v1/keyrings in pages: 25 keyrings ("default", "gw" and 23 agents), 10 at a time, each exactly once and in
 * name order; "next" names the last of a page while there are more, null after the last. */
static json_t *keyrings_page(const char *query, size_t want_n, const char *want_next) {
        char path[256];
        snprintf(path, sizeof path, "/v1/keyrings%s", query);
        json_t *j = call("GET", path, NULL, 200), *rings = json_object_get(j, "keyrings"),
               *next = json_object_get(j, "next");
        cr_assert(json_is_array(rings), "%s: no keyrings list", path);
        cr_assert_eq(json_array_size(rings), want_n, "%s: %zu keyrings, expected %zu", path, json_array_size(rings),
                     want_n);
        cr_assert_not_null(next, "%s: no \"next\" member", path);
        if (want_next)
                cr_assert_str_eq(json_string_value(next), want_next, "%s", path);
        else
                cr_assert(json_is_null(next), "%s: next is not null", path);
        return j;
}

Test(api, keyrings_pages) {
        char body[128], name[32];
        for (int i = 0; i < 23; i++) {
                snprintf(body, sizeof body, "{\"name\":\"page-%02d\",\"kind\":\"agent\",\"owner_uid\":1000}", i);
                long st = 0;
                char msg[4096];
                /* keyd sends STATUS= after each creation: read them, or its notify socket fills up and blocks it. */
                while (recv(d.notify_fd, msg, sizeof msg, MSG_DONTWAIT) > 0)
                        ;
                json_decref(test_api(sock, "POST", "/v1/keyrings", body, &st));
                if (st != 201) {
                        char log[4096];
                        cr_assert_fail("POST /v1/keyrings %s: %ld; keyd's log:\n%s", body, st,
                                       test_file_tail(d.log, log, sizeof log));
                }
        }
        /* Every keyring in one page (the default limit is 100): the order to compare with. */
        json_t *all = keyrings_page("", 25, NULL), *ring;
        const char *names[25];
        size_t i, seen = 0;
        json_array_foreach(json_object_get(all, "keyrings"), i, ring) {
                names[i] = json_string_value(json_object_get(ring, "name"));
                cr_assert(i == 0 || strcmp(names[i - 1], names[i]) < 0, "not in name order: %s, %s", names[i - 1],
                          names[i]);
        }

        /* limit=10: 10, 10, 5, each keyring once, in order, with the items of the one-page list. */
        char query[128] = "?limit=10";
        for (int page = 0; page < 3; page++) {
                size_t want = page < 2 ? 10 : 5;
                json_t *j = keyrings_page(query, want, page < 2 ? names[seen + want - 1] : NULL);
                json_array_foreach(json_object_get(j, "keyrings"), i, ring) {
                        cr_assert_str_eq(json_string_value(json_object_get(ring, "name")), names[seen]);
                        cr_assert(json_equal(ring, json_array_get(json_object_get(all, "keyrings"), seen)),
                                  "%s differs between pages and one list", names[seen]);
                        seen++;
                }
                if (page < 2)
                        snprintf(query, sizeof query, "?after=%s&limit=10",
                                 json_string_value(json_object_get(j, "next")));
                json_decref(j);
        }
        cr_assert_eq(seen, 25);

        /* after the last: an empty page; after a name that is not a keyring: from the next one on (exclusive). */
        snprintf(query, sizeof query, "?after=%s", names[24]);
        json_decref(keyrings_page(query, 0, NULL));
        snprintf(query, sizeof query, "?limit=1&after=%s", names[24]);
        json_decref(keyrings_page(query, 0, NULL));
        json_decref(keyrings_page("?limit=25", 25, NULL));
        json_decref(keyrings_page("?limit=24", 24, names[23]));
        json_decref(keyrings_page("?limit=1000", 25, NULL));
        json_decref(keyrings_page("?limit=1", 1, names[0]));
        snprintf(name, sizeof name, "%s0", names[4]); /* after names[4], before names[5] */
        snprintf(query, sizeof query, "?after=%s&limit=2", name);
        json_t *j = keyrings_page(query, 2, names[6]);
        cr_assert_str_eq(json_string_value(json_object_get(json_array_get(json_object_get(j, "keyrings"), 0), "name")),
                         names[5]);
        json_decref(j);
        json_decref(all);

        /* Bad values, unknown and repeated parameters: 400. */
        static const char *const bad[] = {
                "?limit=0",         "?limit=1001",           "?limit=-1",       "?limit=abc",   "?limit=",
                "?limit=1x",        "?limit=99999999999999999999",              "?after=",      "?after=.x",
                "?after=-x",        "?after=a%2Fb",          "?after=a/b",      "?after",       "?limit",
                "?bogus=1",         "?limit=10&limit=10",    "?after=a&after=b", "?limit=10&x=", "?LIMIT=10",
        };
        for (i = 0; i < ELEMENTSOF(bad); i++) {
                snprintf(query, sizeof query, "/v1/keyrings%s", bad[i]);
                expect_error("GET", query, NULL, 400, "bad_request");
        }
        test_api_expect_error(sock, "GET", "/v1/keyrings?limit=0", NULL, 400, "bad_request", "limit");
        test_api_expect_error(sock, "GET", "/v1/keyrings?after=.x", NULL, 400, "bad_request", "after");
        test_api_expect_error(sock, "GET", "/v1/keyrings?bogus=1", NULL, 400, "bad_request", "unknown query parameter");
        test_api_expect_error(sock, "GET", "/v1/keyrings?limit=1&limit=2", NULL, 400, "bad_request", "more than once");
        /* The audit log's parameters are checked the same way. */
        expect_error("GET", "/v1/audit?after=0&bogus=1", NULL, 400, "bad_request");
        expect_error("GET", "/v1/audit?limit=1&limit=2", NULL, 400, "bad_request");
}

Test(api, rotate_revoke_disable_deny) {
        char *old = mint("/v1/keyrings/default/tokens", "{\"sub\":\"a\"}");
        char *kid = active_kid("default");
        expect_error("POST", "/v1/keyrings/default/rotate", "{}", 409, "conflict");
        json_t *j = call("POST", "/v1/keyrings/default/rotate", "{\"force\":true,\"reason\":\"test\"}", 200);
        json_decref(j);
        char *kid2 = active_kid("default");
        cr_assert_str_neq(kid, kid2);
        j = verify(old, NULL);
        cr_assert(json_is_true(json_object_get(j, "valid")), "a token of the retired key still verifies");
        json_decref(j);

        char path[256], body[128];
        snprintf(path, sizeof path, "/v1/keys/%s/revoke", kid);
        expect_error("POST", path, "{\"reason\":\"because\"}", 400, "bad_request");
        expect_error("POST", path, "{}", 400, "bad_request");
        j = call("POST", path, "{\"reason\":\"key_compromise\"}", 200);
        cr_assert_str_eq(json_string_value(json_object_get(j, "state")), "revoked");
        cr_assert_str_eq(json_string_value(json_object_get(j, "keyring")), "default");
        json_decref(j);
        expect_invalid(old, NULL, "key_revoked");
        expect_error("POST", path, "{\"reason\":\"key_compromise\"}", 409, "conflict");
        expect_error("POST", "/v1/keys/nope/revoke", "{\"reason\":\"key_compromise\"}", 404, "not_found");

        /* Deny one token by jti. */
        char *t = mint("/v1/keyrings/default/tokens", "{\"sub\":\"b\"}");
        j = verify(t, NULL);
        const char *jti = json_string_value(json_object_get(json_object_get(j, "claims"), "jti"));
        snprintf(body, sizeof body, "{\"jti\":\"%s\"}", jti);
        json_decref(call("POST", "/v1/tokens/revoke", body, 200));
        json_decref(j);
        expect_invalid(t, NULL, "token_revoked");
        expect_error("POST", "/v1/tokens/revoke", "{\"jti\":5}", 400, "bad_request");

        /* Disable: every key revoked, signing refused with 503, its tokens refused. */
        j = call("POST", "/v1/keyrings/default/disable", NULL, 200);
        cr_assert(json_is_true(json_object_get(j, "disabled")));
        json_decref(j);
        expect_error("POST", "/v1/keyrings/default/tokens", "{\"sub\":\"a\"}", 503, "unavailable");
        expect_error("POST", "/v1/keyrings/default/disable", NULL, 409, "conflict");
        expect_invalid(t, NULL, "key_revoked");
        free(old), free(kid), free(kid2), free(t);
}

Test(api, audit_health_metrics) {
        uint64_t before = audit_head();
        free(mint("/v1/keyrings/default/tokens", "{\"sub\":\"a\"}"));
        cr_assert_eq(audit_head(), before + 1, "one audit record per mint, committed before the reply");
        json_t *j = call("GET", "/v1/audit?after=0&limit=1000", NULL, 200), *r;
        size_t i;
        bool found = false;
        json_array_foreach(json_object_get(j, "records"), i, r) found |=
                streq(json_string_value(json_object_get(r, "action")), "token.mint") &&
                json_integer_value(json_object_get(r, "uid")) == 0;
        cr_assert(found, "the mint is audited with the caller's uid");
        json_decref(j);
        expect_error("GET", "/v1/audit?limit=0", NULL, 400, "bad_request");
        expect_error("GET", "/v1/audit?after=-1", NULL, 400, "bad_request");
        j = call("GET", "/healthz", NULL, 200);
        cr_assert_str_eq(json_string_value(json_object_get(j, "status")), "ok");
        json_decref(j);
        long st;
        char *m = test_api_raw(sock, "GET", "/metrics", NULL, NULL, &st);
        cr_assert_eq(st, 200);
        cr_assert(strstr(m, "keyd_tokens_minted_total 1\n") != NULL, "%s", m);
        free(m);
        expect_error("GET", "/v1/nothing", NULL, 404, "not_found");
        expect_error("DELETE", "/v1/keyrings", NULL, 405, "method_not_allowed");
}

/* --- /metrics as Prometheus text --- */

/* The metric name a sample line starts with: its length, 0 if it does not start with one. */
static size_t metric_name_len(const char *s) {
        size_t n = 0;
        if (!(isalpha((unsigned char) s[0]) || s[0] == '_' || s[0] == ':'))
                return 0;
        while (isalnum((unsigned char) s[n]) || s[n] == '_' || s[n] == ':')
                n++;
        return n;
}

/* A label set {k="v",...} at s (values with \\ \" \n escapes): its length, 0 if it is not one. */
static size_t label_set_len(const char *s) {
        size_t i = 1;
        if (s[0] != '{')
                return 0;
        while (s[i] != '}') {
                size_t k = metric_name_len(s + i);
                if (k == 0 || memchr(s + i, ':', k)) /* a label name has no ':' */
                        return 0;
                i += k;
                if (s[i] != '=' || s[i + 1] != '"')
                        return 0;
                for (i += 2; s[i] != '"'; i++) {
                        if (s[i] == '\\' && (s[i + 1] == '\\' || s[i + 1] == '"' || s[i + 1] == 'n'))
                                i++;
                        else if (s[i] == 0 || s[i] == '\n')
                                return 0;
                }
                i++;
                if (s[i] == ',')
                        i++;
                else if (s[i] != '}')
                        return 0;
        }
        return i + 1;
}

/* The family a sample belongs to: its name, less _bucket, _sum or _count when the family is a histogram. */
static bool sample_family(json_t *types, const char *name, size_t n, char *family, size_t size) {
        static const char *suffixes[] = { "_bucket", "_sum", "_count" };
        snprintf(family, size, "%.*s", (int) n, name);
        if (json_object_get(types, family))
                return true;
        for (size_t i = 0; i < ELEMENTSOF(suffixes); i++) {
                size_t s = strlen(suffixes[i]);
                if (n > s && strncmp(name + n - s, suffixes[i], s) == 0) {
                        snprintf(family, size, "%.*s", (int) (n - s), name);
                        if (streq_ptr(json_string_value(json_object_get(types, family)), "histogram"))
                                return true;
                }
        }
        return false;
}

/* Every line is a comment (# HELP, # TYPE once per family before its samples) or a sample "name{labels} value"
 * whose family has a TYPE. */
static void expect_prometheus_text(const char *text) {
        json_t *types = json_object();
        char line[1024], family[256], type[32];
        size_t n;

        cr_assert(*text && text[strlen(text) - 1] == '\n', "ends with a newline");
        for (const char *l = text; *l; l += n + 1) {
                n = strcspn(l, "\n");
                cr_assert_lt(n, sizeof line);
                snprintf(line, sizeof line, "%.*s", (int) n, l);
                if (startswith(line, "# TYPE ")) {
                        size_t k = metric_name_len(line + 7);
                        cr_assert_gt(k, 0, "%s", line);
                        snprintf(family, sizeof family, "%.*s", (int) k, line + 7);
                        cr_assert_eq(sscanf(line + 7 + k, " %31s", type), 1, "%s", line);
                        cr_assert(streq(type, "counter") || streq(type, "gauge") || streq(type, "histogram"), "%s",
                                  line);
                        cr_assert_null(json_object_get(types, family), "a second TYPE: %s", line);
                        json_object_set_new(types, family, json_string(type));
                        continue;
                }
                if (startswith(line, "# HELP ")) {
                        cr_assert_gt(metric_name_len(line + 7), 0, "%s", line);
                        continue;
                }
                size_t k = metric_name_len(line), j = k;
                cr_assert_gt(k, 0, "not a sample: '%s'", line);
                cr_assert(sample_family(types, line, k, family, sizeof family), "no TYPE before: %s", line);
                if (line[j] == '{') {
                        size_t s = label_set_len(line + j);
                        cr_assert_gt(s, 0, "bad labels: %s", line);
                        j += s;
                }
                cr_assert_eq(line[j], ' ', "%s", line);
                char *end;
                const char *value = line + j + 1;
                double v = strtod(value, &end);
                cr_assert(end != value && *end == 0 && v >= 0, "bad value: %s", line);
        }
        json_decref(types);
}

/* The value of the sample "series" (name and labels as printed), or -1 if there is none. */
static double sample_value(const char *text, const char *series) {
        size_t n = strlen(series);
        for (const char *l = text; l; l = strchr(l, '\n'), l = l ? l + 1 : NULL)
                if (strncmp(l, series, n) == 0 && l[n] == ' ')
                        return strtod(l + n + 1, NULL);
        return -1;
}

/* One series of a histogram: its buckets cumulative (le ascending, ending with +Inf), +Inf equal to _count; returns
 * _count. */
static double expect_histogram(const char *text, const char *name, const char *labels) {
        char prefix[256], series[256];
        double last = 0, le_last = -1;
        int buckets = 0;
        bool inf = false;

        snprintf(prefix, sizeof prefix, "%s_bucket{%s%sle=\"", name, labels, *labels ? "," : "");
        for (const char *l = strstr(text, prefix); l; l = strstr(l + 1, prefix)) {
                const char *le = l + strlen(prefix);
                double count = strtod(strchr(le, ' ') + 1, NULL);
                cr_assert(!inf, "a bucket after +Inf: %.80s", l);
                if (startswith(le, "+Inf\""))
                        inf = true;
                else {
                        double b = strtod(le, NULL);
                        cr_assert_gt(b, le_last, "bounds ascend: %.80s", l);
                        le_last = b;
                }
                cr_assert_geq(count, last, "cumulative: %.80s", l);
                last = count;
                buckets++;
        }
        cr_assert(inf && buckets > 1, "no buckets for %s{%s}:\n%s", name, labels, text);
        snprintf(series, sizeof series, "%s_count%s%s%s", name, *labels ? "{" : "", labels, *labels ? "}" : "");
        cr_assert_eq(sample_value(text, series), last, "%s equals the +Inf bucket", series);
        snprintf(series, sizeof series, "%s_sum%s%s%s", name, *labels ? "{" : "", labels, *labels ? "}" : "");
        cr_assert_geq(sample_value(text, series), 0, "%s", series);
        return last;
}

static char *scrape(void) {
        long st;
        char *m = test_api_raw(sock, "GET", "/metrics", NULL, NULL, &st);
        cr_assert_eq(st, 200, "%s", m);
        expect_prometheus_text(m);
        return m;
}

#define DURATION "keyd_request_duration_seconds"

Test(api, metrics_histograms) {
        free(scrape()); /* timed once its reply is queued: the next scrape shows it, and only it */
        for (int i = 0; i < 3; i++)
                free(mint("/v1/keyrings/default/tokens", "{\"sub\":\"a\"}"));
        for (int i = 0; i < 2; i++)
                expect_error("GET", "/v1/keyrings/nosuch", NULL, 404, "not_found");
        expect_error("GET", "/v1/nothing", NULL, 404, "not_found");
        expect_error("DELETE", "/v1/keyrings", NULL, 405, "method_not_allowed");
        /* Refused on its headers, before it is dispatched: still its route's. */
        char *header = malloc(9000);
        long st;
        memcpy(header, "X-Big: ", 7);
        memset(header + 7, 'b', 8990);
        header[8997] = 0;
        free(test_api_raw(sock, "GET", "/v1/keyrings", NULL, header, &st));
        free(header);
        cr_assert_eq(st, 431);

        char *m = scrape();
        cr_assert_eq(expect_histogram(m, DURATION, "route=\"GET /metrics\",code=\"200\""), 1, "%s", m);
        cr_assert_eq(expect_histogram(m, DURATION, "route=\"POST /v1/keyrings/{}/tokens\",code=\"201\""), 3);
        cr_assert_eq(expect_histogram(m, DURATION, "route=\"GET /v1/keyrings/{}\",code=\"404\""), 2);
        cr_assert_eq(expect_histogram(m, DURATION, "route=\"unmatched\",code=\"404\""), 1);
        cr_assert_eq(expect_histogram(m, DURATION, "route=\"unmatched\",code=\"405\""), 1);
        cr_assert_eq(expect_histogram(m, DURATION, "route=\"GET /v1/keyrings\",code=\"431\""), 1);
        /* Only series that were observed are shown. */
        cr_assert_null(strstr(m, DURATION "_count{route=\"GET /v1/keyrings\",code=\"200\"}"), "%s", m);
        cr_assert_null(strstr(m, "code=\"other\""), "%s", m);
        /* The existing counters are still there, with their names. */
        cr_assert_eq(sample_value(m, "keyd_requests_total{route=\"POST /v1/keyrings/{}/tokens\"}"), 3);
        cr_assert_eq(sample_value(m, "keyd_tokens_minted_total"), 3);

        /* Each committed audit transaction is timed: the mints' at least. */
        double commits = expect_histogram(m, "keyd_audit_commit_seconds", "");
        cr_assert_gt(commits, 0, "%s", m);
        cr_assert_eq(commits, sample_value(m, "keyd_audit_commits_total"), "%s", m);

        cr_assert_eq(sample_value(m, "keyd_build_info{version=\"" KEYD_VERSION "\"}"), 1, "%s", m);
        free(m);
}

/* --- bad input: each with its status and code, and nothing changes --- */

/* A token with the given header and payload JSON, signed by nothing: the signature part is sig_b64. */
static char *craft(const char *header, const char *payload, const char *sig_b64) {
        char *input = test_jws_input(header, payload), *t;
        cr_assert(asprintf(&t, "%s.%s", input, sig_b64) >= 0);
        free(input);
        return t;
}

static void expect_crafted(const char *header, const char *payload, const char *sig_b64, const char *error) {
        char *t = craft(header, payload, sig_b64);
        expect_invalid(t, NULL, error);
        free(t);
}

Test(api, bad_input_changes_nothing) {
        char *good = mint("/v1/keyrings/default/tokens", "{\"sub\":\"a\",\"aud\":\"api\"}");
        char *kid = active_kid("default");
        uint64_t head = audit_head();
        json_t *keys_before = call("GET", "/v1/keyrings", NULL, 200);

        const char *M = "/v1/keyrings/default/tokens";
        static const char *const mint_bad_request[] = {
                "{\"sub\":",
                "[\"sub\"]",
                "\"sub\"",
                "{}",
                "{\"sub\":\"\"}",
                "{\"sub\":7}",
                "{\"sub\":\"a\",\"ttl\":1e300}",
                "{\"sub\":\"a\",\"ttl\":\"ten\"}",
                "{\"sub\":\"a\",\"ttl\":true}",
                "{\"sub\":\"a\",\"bogus\":1}",
                "{\"sub\":\"a\",\"sub\":\"b\"}",
                "{\"sub\":\"a\",\"aud\":[]}",
                NULL,
        };
        static const char *const mint_unprocessable[] = {
                "{\"sub\":\"a\",\"ttl\":0}",
                "{\"sub\":\"a\",\"ttl\":-1}",
                "{\"sub\":\"a\",\"ttl\":99999999999}",
                "{\"sub\":\"a\",\"ttl\":601}",
                /* Registered claims are keyd's to set. */
                "{\"sub\":\"a\",\"claims\":{\"iss\":1}}",
                "{\"sub\":\"a\",\"claims\":{\"iat\":1}}",
                "{\"sub\":\"a\",\"claims\":{\"nbf\":1}}",
                "{\"sub\":\"a\",\"claims\":{\"exp\":1}}",
                "{\"sub\":\"a\",\"claims\":{\"jti\":1}}",
                "{\"sub\":\"a\",\"bind_agent\":\"nope\"}",
                NULL,
        };
        static const char *const bad_keyring_paths[] = {
                "/v1/keyrings/a%2Fb/tokens",
                "/v1/keyrings/../tokens",
                "/v1/keyrings/..%2F..%2Fetc/tokens",
                NULL,
        };
        static const char *const sign_bad_request[] = {
                "{\"data\":\"not base64url!\"}",
                "{\"data\":\"aGVsbG8=\"}",
                "{\"data\":5}",
                NULL,
        };
        for (size_t i = 0; mint_bad_request[i]; i++)
                expect_error("POST", M, mint_bad_request[i], 400, "bad_request");
        for (size_t i = 0; mint_unprocessable[i]; i++)
                expect_error("POST", M, mint_unprocessable[i], 422, "unprocessable");
        expect_error("POST", "/v1/keyrings/nope/tokens", "{\"sub\":\"a\"}", 404, "not_found");
        for (size_t i = 0; bad_keyring_paths[i]; i++)
                expect_error("POST", bad_keyring_paths[i], "{\"sub\":\"a\"}", 400, "bad_request");
        for (size_t i = 0; sign_bad_request[i]; i++)
                expect_error("POST", "/v1/keyrings/default/sign", sign_bad_request[i], 400, "bad_request");

        /* Over the limits. */
        size_t big = 65 * 1024;
        char *body = malloc(big + 32);
        memset(body, ' ', big + 31);
        memcpy(body, "{\"sub\":\"a\"", 10);
        strcpy(body + big + 29, "}");
        expect_error("POST", M, body, 413, "payload_too_large");
        free(body);
        char *header = malloc(9000);
        memcpy(header, "X-Big: ", 7);
        memset(header + 7, 'b', 8990);
        header[8997] = 0;
        long st;
        char *r = test_api_raw(sock, "GET", "/healthz", NULL, header, &st);
        cr_assert_eq(st, 431, "a header over 8 KiB: %ld %s", st, r);
        free(r), free(header);

        /* Tokens keyd must refuse, each for its own reason. */
        char h[512];
        expect_crafted("{\"alg\":\"none\",\"kid\":\"x\"}", "{\"sub\":\"a\"}", "AAAA", "unsupported_alg");
        expect_crafted("{\"alg\":\"none\",\"kid\":\"x\"}", "{\"sub\":\"a\"}", "", "unsupported_alg");
        char *parts = strdup(good), *dot1 = strchr(parts, '.'), *dot2 = strchr(dot1 + 1, '.');
        *dot2 = 0;
        /* HS256 with the public key (its JWK text) as the HMAC secret: the classic confusion. */
        json_t *ring = call("GET", "/v1/keyrings/default/jwks", NULL, 200);
        char *jwk_text = json_dumps(json_array_get(json_object_get(ring, "keys"), 0), JSON_COMPACT);
        snprintf(h, sizeof h, "{\"alg\":\"HS256\",\"kid\":\"%s\"}", kid);
        char *hh = test_b64url(h, strlen(h)), *input;
        cr_assert(asprintf(&input, "%s.%s", hh, dot1 + 1) >= 0);
        unsigned char mac[32];
        unsigned mac_len = 0;
        HMAC(EVP_sha256(), jwk_text, (int) strlen(jwk_text), (unsigned char *) input, strlen(input), mac, &mac_len);
        char *hs = test_jws_with_signature(input, mac, mac_len);
        expect_invalid(hs, NULL, "unsupported_alg");

        /* The real signature, in DER instead of R||S; and r = s = 0. */
        void *sig;
        size_t sig_len;
        cr_assert_eq(jose_b64url_decode(dot2 + 1, strlen(dot2 + 1), &sig, &sig_len), 0);
        uint8_t *der;
        size_t der_len;
        cr_assert_eq(jose_ecdsa_raw_to_der(sig, sig_len, &der, &der_len), 0);
        char *t_der = test_jws_with_signature(parts, der, der_len);
        expect_invalid(t_der, NULL, "bad_signature");
        uint8_t zeros[64] = { 0 };
        char *t_zero = test_jws_with_signature(parts, zeros, sizeof zeros);
        expect_invalid(t_zero, NULL, "bad_signature");

        /* crit, b64:false, a duplicated alg member: refused before any key is used. */
        snprintf(h, sizeof h, "{\"alg\":\"ES256\",\"kid\":\"%s\",\"crit\":[\"exp\"],\"exp\":1}", kid);
        expect_crafted(h, "{\"sub\":\"a\"}", dot2 + 1, "unsupported_alg");
        snprintf(h, sizeof h, "{\"alg\":\"ES256\",\"kid\":\"%s\",\"b64\":false,\"crit\":[\"b64\"]}", kid);
        expect_crafted(h, "{\"sub\":\"a\"}", dot2 + 1, "unsupported_alg");
        snprintf(h, sizeof h, "{\"alg\":\"ES256\",\"alg\":\"ES256\",\"kid\":\"%s\"}", kid);
        expect_crafted(h, "{\"sub\":\"a\"}", dot2 + 1, "malformed");

        /* 17 KiB. */
        char *huge = malloc(17 * 1024 + 1);
        memset(huge, 'A', 17 * 1024);
        huge[17 * 1024] = 0;
        huge[100] = '.';
        huge[200] = '.';
        expect_invalid(huge, NULL, "malformed");
        free(huge);

        /* Time and audience. */
        expect_invalid(good, ",\"audience\":\"other\"", "audience_mismatch");
        expect_invalid(good, ",\"issuer\":\"https://evil.test\"", "issuer_mismatch");
        json_t *j = call("POST", "/v1/verify", "{\"token\":\"x\",\"leeway\":301}", 400);
        json_decref(j);
        json_decref(call("POST", "/v1/verify", "{}", 400));

        /* Nothing above changed any state: the same keys, and no audit record but the refusals' (the 422s and the
         * 404: one api.refused record each; none for a 400, a 413 or a 431). */
        json_t *keys_after = call("GET", "/v1/keyrings", NULL, 200);
        json_object_del(keys_before, "next_transition");
        cr_assert(json_equal(json_object_get(keys_before, "keyrings"), json_object_get(keys_after, "keyrings")),
                  "bad input changed keyrings");
        size_t refused = 1;
        for (size_t i = 0; mint_unprocessable[i]; i++)
                refused++;
        cr_assert_eq(audit_head(), head + refused, "bad input wrote audit records");
        char q[64];
        snprintf(q, sizeof q, "/v1/audit?after=%" PRIu64 "&limit=1000", head);
        json_t *recs = call("GET", q, NULL, 200), *rec;
        size_t i;
        json_array_foreach(json_object_get(recs, "records"), i, rec) {
                json_int_t status = json_integer_value(json_object_get(json_object_get(rec, "detail"), "status"));
                cr_assert_str_eq(json_string_value(json_object_get(rec, "action")), "api.refused");
                cr_assert(status == 422 || status == 404, "%" JSON_INTEGER_FORMAT, status);
        }
        json_decref(recs);
        json_decref(keys_after), json_decref(keys_before), json_decref(ring);
        free(jwk_text), free(hh), free(input), free(hs), free(sig), free(der), free(t_der), free(t_zero), free(parts),
                free(good), free(kid);
}

/* exp in the past and nbf in the future need tokens signed by keyd's key: mint short-lived ones and wait. */
Test(api, expired_and_not_yet_valid) {
        char *t = mint("/v1/keyrings/default/tokens", "{\"sub\":\"a\",\"ttl\":1}");
        sleep(2);
        expect_invalid(t, NULL, "expired");
        json_t *j = verify(t, ",\"leeway\":30");
        cr_assert(json_is_true(json_object_get(j, "valid")), "within leeway");
        json_decref(j);
        free(t);
        /* nbf in the future: keyd's JWS endpoint signs any payload with the keyring's key. */
        char body[256];
        snprintf(body, sizeof body, "{\"payload_json\":{\"sub\":\"a\",\"nbf\":%lld,\"exp\":%lld}}",
                 (long long) time(NULL) + 3600, (long long) time(NULL) + 7200);
        j = call("POST", "/v1/keyrings/default/jws", body, 201);
        expect_invalid(json_string_value(json_object_get(j, "jws")), NULL, "not_yet_valid");
        json_decref(j);
        /* A token that never expires is not one keyd vouches for, even with its own signature on it. */
        j = call("POST", "/v1/keyrings/default/jws", "{\"payload_json\":{\"sub\":\"a\"}}", 201);
        expect_invalid(json_string_value(json_object_get(j, "jws")), NULL, "malformed");
        json_decref(j);
}

/* --- authorisation across uids --- */

/* Run requests as uid nobody in a child; returns the child's verdict (0 when every expectation held). */
static int as_nobody(void (*fn)(void)) {
        pid_t pid = test_fork_as_nobody();
        if (pid == 0) {
                fn();
                _exit(0);
        }
        return test_wait_child(pid);
}

static void child_expect(const char *method, const char *path, const char *body, long want, int code) {
        long status;
        json_t *j = test_api(sock, method, path, body, &status);
        json_decref(j);
        if (status != want) {
                fprintf(stderr, "as nobody: %s %s → %ld, want %ld\n", method, path, status, want);
                _exit(code);
        }
}

static char *shared_token;

static void nobody_requests(void) {
        child_expect("POST", "/v1/keyrings/default/tokens", "{\"sub\":\"a\"}", 403, 1);
        child_expect("POST", "/v1/keyrings/default/sign", "{\"data\":\"aGk\"}", 403, 2);
        child_expect("POST", "/v1/keyrings/default/rotate", "{\"force\":true}", 403, 3);
        child_expect("POST", "/v1/keyrings", "{\"name\":\"mine\"}", 403, 4);
        child_expect("GET", "/v1/audit", NULL, 403, 5);
        child_expect("POST", "/v1/tokens/revoke", "{\"jti\":\"x\"}", 403, 6);
        /* verify: anyone who can connect. */
        char body[2048];
        snprintf(body, sizeof body, "{\"token\":\"%s\"}", shared_token);
        child_expect("POST", "/v1/verify", body, 200, 7);
        child_expect("GET", "/v1/keyrings", NULL, 200, 8);
        /* gw lists nobody in sign-users: it may sign there, and only there. */
        child_expect("POST", "/v1/keyrings/gw/tokens", "{\"sub\":\"a\"}", 201, 9);
        /* An agent keyring signs for its owner only. */
        child_expect("POST", "/v1/keyrings/agent-nobody/sign", "{\"data\":\"aGk\"}", 200, 10);
        child_expect("POST", "/v1/keyrings/agent-other/sign", "{\"data\":\"aGk\"}", 403, 11);
}

Test(api, authorisation_by_uid) {
        shared_token = mint("/v1/keyrings/default/tokens", "{\"sub\":\"a\"}");
        json_decref(call("POST", "/v1/keyrings", "{\"name\":\"agent-nobody\",\"kind\":\"agent\",\"owner_uid\":65534}", 201));
        json_decref(call("POST", "/v1/keyrings", "{\"name\":\"agent-other\",\"kind\":\"agent\",\"owner_uid\":65533}", 201));
        /* root is admin (the default admin-users) but is not in gw's sign-users. */
        expect_error("POST", "/v1/keyrings/gw/tokens", "{\"sub\":\"a\"}", 403, "forbidden");

        int v = as_nobody(nobody_requests);
        cr_assert_eq(v, 0, "the unprivileged client's expectation %d failed", v);

        /* Every denial is in the audit log, with the caller's uid. */
        json_t *j = call("GET", "/v1/audit?after=0&limit=1000", NULL, 200), *r;
        size_t i, denials = 0;
        json_array_foreach(json_object_get(j, "records"), i, r) if (
                streq(json_string_value(json_object_get(r, "action")), "authz.denied") &&
                json_integer_value(json_object_get(r, "uid")) == TEST_NOBODY) denials++;
        cr_assert_eq(denials, 7, "7 denials of nobody audited, found %zu", denials);
        json_decref(j);
        free(shared_token);
}

/* --- connections --- */

static const char HEALTHZ[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";

static int http_on(int fd, const char *req, char *out, size_t size) {
        cr_assert_eq(write(fd, req, strlen(req)), (ssize_t) strlen(req));
        struct pollfd p = { fd, POLLIN, 0 };
        cr_assert_eq(poll(&p, 1, 10000), 1);
        ssize_t n = read(fd, out, size - 1);
        cr_assert_gt(n, 0);
        out[n] = 0;
        return atoi(out + 9);
}

/* n connections of this uid, each served a GET /healthz (200) and kept open; then one more, which must be refused
 * with status over_limit. The n + 1 fds in c. */
static void connect_up_to_limit(int *c, int n, int over_limit) {
        char out[4096];
        for (int i = 0; i < n; i++) {
                c[i] = test_api_connect(sock);
                cr_assert_eq(http_on(c[i], HEALTHZ, out, sizeof out), 200, "connection %d: %s", i, out);
        }
        c[n] = test_api_connect(sock);
        cr_assert_eq(http_on(c[n], HEALTHZ, out, sizeof out), over_limit, "connection %d: %s", n, out);
}

Test(api_limits, stalled_client_and_connection_limits, .timeout = 60) {
        char out[4096];
        start("[api]\nidle-timeout = 2s\nmax-connections-per-uid = 3\n");
        /* Half a request, then silence: the connection is closed after the idle timeout, and others are served. */
        int stalled = test_api_connect(sock);
        const char *half = "POST /v1/verify HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"tok";
        cr_assert_eq(write(stalled, half, strlen(half)), (ssize_t) strlen(half));
        long st;
        json_decref(test_api(sock, "GET", "/healthz", NULL, &st));
        cr_assert_eq(st, 200, "served while a client stalls");
        struct pollfd p = { stalled, POLLIN, 0 };
        cr_assert_eq(poll(&p, 1, 8000), 1, "the stalled connection is not closed");
        cr_assert_leq(read(stalled, out, sizeof out), 0, "closed without a reply");
        close(stalled);

        /* Per uid: the fourth concurrent connection of one uid is refused with 429. */
        int c[4];
        connect_up_to_limit(c, 3, 429);
        /* One over the limit that sends nothing does not keep a slot or a thread: it is told 429 at once and
         * closed within seconds. */
        int idle = test_api_connect(sock);
        struct pollfd q = { idle, POLLIN, 0 };
        cr_assert_eq(poll(&q, 1, 5000), 1, "an idle connection over the limit is answered");
        ssize_t n = read(idle, out, sizeof out - 1);
        cr_assert_gt(n, 0);
        out[n] = 0;
        cr_assert(strncmp(out, "HTTP/1.1 429", 12) == 0, "%s", out);
        for (;;) {
                q.revents = 0;
                cr_assert_eq(poll(&q, 1, 5000), 1, "then closed");
                if (read(idle, out, sizeof out) <= 0)
                        break;
        }
        close(idle);
        for (int i = 0; i < 4; i++)
                close(c[i]);
        stop();
}

Test(api_limits, total_connections, .timeout = 60) {
        start("[api]\nmax-connections = 2\nmax-connections-per-uid = 10\n");
        int c[3];
        connect_up_to_limit(c, 2, 503);
        for (int i = 0; i < 3; i++)
                close(c[i]);
        stop();
}

/* --- the public listener --- */

static char *etag_of(const char *headers) {
        const char *e = strcasestr(headers, "\netag: ");
        cr_assert_not_null(e, "%s", headers);
        e += 7;
        return strndup(e, strcspn(e, "\r\n"));
}

/* One reply read from fd (headers, then Content-Length bytes of body), into buf; its length. */
static size_t read_reply(int fd, char *buf, size_t size) {
        size_t got = 0;
        for (;;) {
                ssize_t n = read(fd, buf + got, size - 1 - got);
                cr_assert_gt(n, 0, "the connection was closed before the reply was read");
                got += (size_t) n;
                buf[got] = 0;
                char *end = strstr(buf, "\r\n\r\n"), *cl = strcasestr(buf, "content-length:");
                if (end && (!cl || got >= (size_t) (end + 4 - buf) + strtoul(cl + 15, NULL, 10)))
                        return got;
                cr_assert_lt(got, size - 1);
        }
}

/* The public listener keeps a connection for the next request: a JWKS poller does not pay a new connection each
 * time. A request that announces a body is still answered. */
Test(api, public_keep_alive) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t) public_port) };
        char buf[8192], req[256], etag[128] = "";
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        cr_assert_geq(fd, 0);
        cr_assert_eq(inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr), 1);
        cr_assert_eq(connect(fd, (struct sockaddr *) &sa, sizeof sa), 0);
        const char *get = "GET /.well-known/jwks.json HTTP/1.1\r\nHost: x\r\n\r\n";
        cr_assert_eq(write(fd, get, strlen(get)), (ssize_t) strlen(get));
        read_reply(fd, buf, sizeof buf);
        cr_assert(strncmp(buf, "HTTP/1.1 200", 12) == 0, "%s", buf);
        cr_assert(strcasestr(buf, "connection: close") == NULL, "%s", buf);
        char *e = strcasestr(buf, "etag: ");
        cr_assert_not_null(e);
        cr_assert_eq(sscanf(e + 6, "%127[^\r]", etag), 1);

        snprintf(req, sizeof req, "GET /.well-known/jwks.json HTTP/1.1\r\nHost: x\r\nIf-None-Match: %s\r\n\r\n", etag);
        cr_assert_eq(write(fd, req, strlen(req)), (ssize_t) strlen(req));
        read_reply(fd, buf, sizeof buf);
        cr_assert(strncmp(buf, "HTTP/1.1 304", 12) == 0, "the same connection answers again: %s", buf);
        cr_assert(strcasestr(buf, etag) != NULL, "%s", buf);

        const char *with_body = "GET /.well-known/jwks.json HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc";
        cr_assert_eq(write(fd, with_body, strlen(with_body)), (ssize_t) strlen(with_body));
        read_reply(fd, buf, sizeof buf);
        cr_assert(strncmp(buf, "HTTP/1.1 200", 12) == 0, "%s", buf);
        close(fd);
}

Test(api, public_jwks_etag_304) {
        char url[128], *headers, *body, inm[128];
        long st;
        snprintf(url, sizeof url, "http://127.0.0.1:%d/.well-known/jwks.json", public_port);
        body = test_http_get(url, NULL, &st, &headers);
        cr_assert_eq(st, 200);
        cr_assert(strcasestr(headers, "cache-control: public, max-age=300") != NULL, "%s", headers);
        /* Verifiers and caches keep the connection: no handshake per GET (libmicrohttpd closes after a response
         * queued before the request is read in full). */
        cr_assert(strcasestr(headers, "connection: close") == NULL, "the public listener keeps alive: %s", headers);
        char *e1 = etag_of(headers);
        free(body), free(headers);
        /* The public listener decodes its path strictly too: an escaped NUL does not cut it to the JWKS's path. */
        char bad[160];
        snprintf(bad, sizeof bad, "http://127.0.0.1:%d/.well-known/jwks.json%%00xyz", public_port);
        free(test_http_get(bad, NULL, &st, NULL));
        cr_assert_eq(st, 400, "%s", bad);
        snprintf(inm, sizeof inm, "If-None-Match: %s", e1);
        body = test_http_get(url, inm, &st, NULL);
        cr_assert_eq(st, 304, "its own ETag answers 304");
        free(body);

        json_decref(call("POST", "/v1/keyrings/default/rotate", "{\"force\":true}", 200));
        body = test_http_get(url, inm, &st, &headers);
        cr_assert_eq(st, 200, "a rotation changes the ETag");
        char *e2 = etag_of(headers);
        cr_assert_str_neq(e1, e2);
        free(body), free(headers);

        char *kid = active_kid("default"), path[256];
        snprintf(path, sizeof path, "/v1/keys/%s/revoke", kid);
        json_decref(call("POST", path, "{\"reason\":\"key_compromise\"}", 200));
        body = test_http_get(url, NULL, &st, &headers);
        cr_assert_eq(st, 200);
        char *e3 = etag_of(headers);
        cr_assert_str_neq(e2, e3, "a revocation changes the ETag");
        cr_assert(strstr(body, kid) == NULL, "the revoked kid is gone from the JWKS");
        cr_assert(strcasestr(headers, "max-age=60") != NULL, "a short max-age after a revocation: %s", headers);
        free(body), free(headers);

        snprintf(url, sizeof url, "http://127.0.0.1:%d/revocations.json", public_port);
        body = test_http_get(url, NULL, &st, NULL);
        cr_assert_eq(st, 200);
        JoseJws *jws = NULL;
        cr_assert_eq(jose_jws_parse(body, strlen(body), &jws), JOSE_OK, "a signed JWS");
        cr_assert(strstr((char *) jws->payload, kid) != NULL);
        jose_jws_free(jws);
        free(body);

        snprintf(url, sizeof url, "http://127.0.0.1:%d/.well-known/openid-configuration", public_port);
        body = test_http_get(url, NULL, &st, NULL);
        cr_assert_eq(st, 200);
        cr_assert(strstr(body, "\"jwks_uri\":\"https://issuer.test/.well-known/jwks.json\"") != NULL, "%s", body);
        free(body);
        snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/keyrings/default/tokens", public_port);
        body = test_http_get(url, NULL, &st, NULL);
        cr_assert_eq(st, 404, "nothing that signs is reachable on the public listener");
        free(body), free(e1), free(e2), free(e3), free(kid);
}

/* The nice values of keyd's threads: how many run at nice 19 and how many at 0 (/proc/PID/task/TID/stat, field 19). */
static void thread_nices(pid_t pid, int *ret_low, int *ret_normal) {
        char path[512], buf[1024];
        snprintf(path, sizeof path, "/proc/%d/task", (int) pid);
        DIR *dir = opendir(path);
        struct dirent *de;
        *ret_low = *ret_normal = 0;
        cr_assert_not_null(dir);
        while ((de = readdir(dir))) {
                if (de->d_name[0] == '.')
                        continue;
                snprintf(path, sizeof path, "/proc/%d/task/%s/stat", (int) pid, de->d_name);
                FILE *f = fopen(path, "re");
                if (!f)
                        continue; /* the thread left */
                size_t n = fread(buf, 1, sizeof buf - 1, f);
                fclose(f);
                buf[n] = 0;
                const char *p = strrchr(buf, ')');
                long nice = -100;
                /* After "(comm)": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
                 * cutime cstime priority nice. */
                cr_assert(p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %ld",
                                      &nice) == 1);
                if (nice == 19)
                        (*ret_low)++;
                else if (nice == 0)
                        (*ret_normal)++;
        }
        closedir(dir);
}

/* The public listener's threads give way to signing (nice 19), and only they: a JWKS flood from the network takes
 * what signing leaves of the processors. */
Test(api, public_threads_give_way) {
        char url[128];
        long st;
        int low, normal;

        snprintf(url, sizeof url, "http://127.0.0.1:%d/.well-known/jwks.json", public_port);
        for (int i = 0; i < 8; i++) {
                free(test_http_get(url, NULL, &st, NULL));
                cr_assert_eq(st, 200);
        }
        json_decref(call("POST", "/v1/keyrings/default/tokens", "{\"sub\":\"agent-1\"}", 201));
        thread_nices(d.pid, &low, &normal);
        cr_assert_geq(low, 1, "a public listener thread runs at nice 19");
        cr_assert_eq(low, 1, "only the public listener's thread: %d", low);
        cr_assert_geq(normal, 3, "the main loop, the local API and signing stay at nice 0: %d", normal);
}
