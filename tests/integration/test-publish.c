/* SPDX-License-Identifier: MIT */
/* What keyd publishes and how it is watched, through the real daemon's real sockets: every published issuer keyring's
 * JWKS, discovery document and revocation list on the public listener; a jwks-file that cannot be written (told,
 * degraded, counted, cleared); /healthz on both listeners; /metrics on the metrics listener, parsed whole. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <ctype.h>
#include <netinet/in.h>
#include <p11-kit/pkcs11.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/crypto-util.h"
#include "jose/jwk.h"
#include "jose/jws.h"
#include "tests/helpers/test-api.h"
#include "tests/helpers/test-daemon.h"
#include "tests/helpers/test-shim.h"
#include "tests/helpers/test-util.h"

static TestToken tok;
static TestShim shim;
static bool shim_used;
static TestDaemon d = { .notify_fd = -1 };
static char sock[512];
static int public_port, metrics_port;

static const char *RINGS =
        "[keyring default]\nkind = issuer\nalg = ES256\nissuer = https://issuer.test\nrotation-period = 1h\n"
        "prepublish = 10m\ntoken-ttl-max = 10m\ndefault-ttl = 5m\nsign-users = root\n\n"
        "[keyring tenant-x]\nkind = issuer\nalg = EdDSA\nissuer = https://a.example/tenants/x\n"
        "token-ttl-max = 10m\ndefault-ttl = 5m\n\n"
        /* The same (empty) issuer path as default's, on another host: the unprefixed discovery stays default's. */
        "[keyring tenant-y]\nkind = issuer\nalg = ES256\nissuer = https://b.example/\n"
        "token-ttl-max = 10m\ndefault-ttl = 5m\n\n"
        "[keyring agent-1]\nkind = agent\nowner-uid = 0\nalg = EdDSA\n";

/* keyd with its public listener (and with metrics its metrics listener) on free ports of 127.0.0.1, and rings; with
 * status, a notify message that must come before READY=1 (STATUS= is sent when it changes: what start-up said is read
 * here). A port taken meanwhile by another process is worth another try, with new ports. */
static void start_with(const char *rings, const char *status, bool metrics) {
        char log[8192] = "";

        test_daemon_socket(&tok, sock, sizeof sock);
        for (int attempt = 0; attempt < 4; attempt++) {
                char *text, *conf;
                public_port = test_free_port();
                metrics_port = test_free_port();
                if (metrics_port == public_port)
                        continue;
                if (metrics)
                        cr_assert(asprintf(&text,
                                           "[public]\nlisten = 127.0.0.1:%d\n\n[metrics]\nlisten = 127.0.0.1:%d\n\n%s",
                                           public_port, metrics_port, rings) >= 0);
                else
                        cr_assert(asprintf(&text, "[public]\nlisten = 127.0.0.1:%d\n\n%s", public_port, rings) >= 0);
                conf = test_daemon_write_config(&tok, text);
                free(text);
                test_daemon_start(&d, &tok, conf, NULL);
                free(conf);
                if (status && test_daemon_wait_notify(&d, status, 30000, NULL, 0)) {
                        cr_assert(test_daemon_wait_notify(&d, "READY=1", 30000, NULL, 0), "no READY=1");
                        return;
                }
                if (!status && test_daemon_wait_notify(&d, "READY=1", 30000, NULL, 0))
                        return;
                test_file_tail(d.log, log, sizeof log);
                cr_assert(strstr(log, "Address already in use"), "keyd did not become ready:\n%s", log);
                unlink(d.log);
                test_daemon_done(&d);
        }
        cr_assert_fail("keyd found its ports taken four times, the last with:\n%s", log);
}

static void start(const char *rings) {
        start_with(rings, NULL, false);
}

static void setup(void) {
        test_token_setup(&tok);
}

static void teardown(void) {
        test_daemon_done(&d);
        if (shim_used) {
                test_shim_clear_fault(&shim);
                test_shim_teardown(&shim);
                shim_used = false;
        }
        test_token_teardown(&tok);
}

TestSuite(publish, .init = setup, .fini = teardown, .timeout = 120);

/* GET path on the public listener (port): its body; status and headers as test_http_get(). */
static char *get_on(int port, const char *path, const char *header, long *ret_status, char **ret_headers) {
        char url[1200];
        snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
        return test_http_get(url, header, ret_status, ret_headers);
}

static char *public_get(const char *path, long want, char **ret_headers) {
        long st;
        char *body = get_on(public_port, path, NULL, &st, ret_headers);
        cr_assert_eq(st, want, "GET %s on the public listener: %ld, want %ld: %s", path, st, want, body ?: "");
        return body;
}

static json_t *public_get_json(const char *path) {
        char *body = public_get(path, 200, NULL);
        json_t *j = json_loads(body, JSON_REJECT_DUPLICATES, NULL);
        cr_assert_not_null(j, "GET %s: not JSON: %s", path, body);
        free(body);
        return j;
}

static char *header_value(const char *headers, const char *name) {
        char key[64];
        snprintf(key, sizeof key, "\n%s: ", name);
        const char *e = strcasestr(headers, key);
        cr_assert_not_null(e, "no %s in:\n%s", name, headers);
        e += strlen(key);
        return strndup(e, strcspn(e, "\r\n"));
}

/* The document at path: 200 with a strong ETag and Cache-Control public, then 304 for that ETag. Its ETag. */
static char *expect_etag_304(const char *path, const char *type) {
        char *headers, inm[160];
        long st;
        free(public_get(path, 200, &headers));
        char *etag = header_value(headers, "etag"), *ct = header_value(headers, "content-type");
        cr_assert(etag[0] == '"', "a strong ETag for %s: %s", path, etag);
        cr_assert(strcasestr(headers, "cache-control: public, max-age=") != NULL, "%s: %s", path, headers);
        cr_assert_str_eq(ct, type, "%s", path);
        snprintf(inm, sizeof inm, "If-None-Match: %s", etag);
        free(get_on(public_port, path, inm, &st, NULL));
        cr_assert_eq(st, 304, "%s answers 304 to its own ETag", path);
        free(headers), free(ct);
        return etag;
}

static json_t *revocations_payload(const char *jws_text, char **ret_kid) {
        JoseJws *jws = NULL;
        cr_assert_eq(jose_jws_parse(jws_text, strlen(jws_text), &jws), JOSE_OK, "a signed JWS: %s", jws_text);
        json_t *p = json_loads((const char *) jws->payload, JSON_REJECT_DUPLICATES, NULL);
        cr_assert_not_null(p);
        cr_assert_str_eq(json_string_value(json_object_get(jws->header, "typ")), "keyd-revocations+jwt");
        *ret_kid = strdup(jws->kid);
        jose_jws_free(jws);
        return p;
}

/* The revocation list of ring at path: signed by ring's active key (the signature checked with that key's JWK from
 * the local API), naming ring and its issuer. Its payload. */
static json_t *expect_revocations(const char *path, const char *ring, const char *issuer) {
        char *body = public_get(path, 200, NULL), *kid = NULL, jwks_path[128];
        json_t *p = revocations_payload(body, &kid), *jwks, *k;
        char *active = test_api_active_kid(sock, ring);
        size_t i;
        bool verified = false;

        cr_assert_str_eq(kid, active, "%s is signed by %s's active key", path, ring);
        snprintf(jwks_path, sizeof jwks_path, "/v1/keyrings/%s/jwks", ring);
        jwks = test_api_expect(sock, "GET", jwks_path, NULL, 200);
        json_array_foreach(json_object_get(jwks, "keys"), i, k) {
                if (!streq_ptr(json_string_value(json_object_get(k, "kid")), kid))
                        continue;
                EVP_PKEY *pkey = NULL;
                JoseJws *jws = NULL;
                cr_assert_eq(jose_jwk_to_pkey(k, &pkey), 0);
                cr_assert_eq(jose_jws_parse(body, strlen(body), &jws), JOSE_OK);
                cr_assert_eq(jose_jws_verify(jws, pkey, keyd_alg_from_string(json_string_value(
                                                                json_object_get(k, "alg")))),
                             JOSE_OK, "%s verifies with %s's key", path, ring);
                verified = true;
                jose_jws_free(jws);
                EVP_PKEY_free(pkey);
        }
        cr_assert(verified, "%s: the signing key is in %s's JWKS", path, ring);
        cr_assert_str_eq(json_string_value(json_object_get(p, "keyring")), ring, "%s", path);
        cr_assert_str_eq(json_string_value(json_object_get(p, "iss")), issuer, "%s", path);
        json_decref(jwks);
        free(body), free(kid), free(active);
        return p;
}

static bool revoked_lists(json_t *payload, const char *kid) {
        json_t *e;
        size_t i;
        json_array_foreach(json_object_get(payload, "revoked"), i, e) if (streq_ptr(
                json_string_value(json_object_get(e, "kid")), kid)) return true;
        return false;
}

/* --- ITEM 1: every published issuer keyring: its JWKS, its discovery document, its revocation list --- */

Test(publish, every_issuer_keyring) {
        start(RINGS);

        /* Its JWKS: the bytes the local API serves. */
        char *jwks = public_get("/jwks/tenant-x.json", 200, NULL);
        json_t *local = test_api_expect(sock, "GET", "/v1/keyrings/tenant-x/jwks", NULL, 200);
        char *local_text = json_dumps(local, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_t *pub = json_loads(jwks, 0, NULL);
        cr_assert(json_equal(pub, local), "%s\n%s", jwks, local_text);
        json_decref(pub), json_decref(local), free(local_text), free(jwks);
        free(expect_etag_304("/jwks/tenant-x.json", "application/jwk-set+json"));

        /* Its discovery document, at its issuer's path, naming its own JWKS. */
        json_t *doc = public_get_json("/tenants/x/.well-known/openid-configuration");
        cr_assert_str_eq(json_string_value(json_object_get(doc, "issuer")), "https://a.example/tenants/x");
        cr_assert_str_eq(json_string_value(json_object_get(doc, "jwks_uri")), "https://a.example/jwks/tenant-x.json");
        cr_assert_str_eq(json_string_value(json_array_get(json_object_get(doc, "id_token_signing_alg_values_supported"),
                                                          0)),
                         "EdDSA");
        json_decref(doc);
        free(expect_etag_304("/tenants/x/.well-known/openid-configuration", "application/json"));

        /* Its revocation list, signed by its own active key. */
        json_decref(expect_revocations("/revocations/tenant-x.json", "tenant-x", "https://a.example/tenants/x"));
        char *e1 = expect_etag_304("/revocations/tenant-x.json", "application/jwt");

        /* The unprefixed paths are the default keyring's. */
        doc = public_get_json("/.well-known/openid-configuration");
        cr_assert_str_eq(json_string_value(json_object_get(doc, "issuer")), "https://issuer.test");
        cr_assert_str_eq(json_string_value(json_object_get(doc, "jwks_uri")),
                         "https://issuer.test/.well-known/jwks.json");
        json_decref(doc);
        json_decref(expect_revocations("/revocations.json", "default", "https://issuer.test"));
        json_decref(expect_revocations("/revocations/default.json", "default", "https://issuer.test"));
        char *a = public_get("/.well-known/jwks.json", 200, NULL), *b = public_get("/jwks/default.json", 200, NULL);
        cr_assert_str_eq(a, b, "/.well-known/jwks.json is default's");
        free(a), free(b);
        /* tenant-y's issuer path is default's too: its JWKS and revocation list are served by name. */
        free(public_get("/jwks/tenant-y.json", 200, NULL));
        json_decref(expect_revocations("/revocations/tenant-y.json", "tenant-y", "https://b.example/"));

        /* A revocation in tenant-x: in its list (a new ETag), out of its JWKS, and in no other keyring's list. */
        char *next = test_api_kid_in_state(sock, "tenant-x", "next"), path[256], inm[160];
        cr_assert_not_null(next);
        snprintf(path, sizeof path, "/v1/keys/%s/revoke", next);
        json_decref(test_api_expect(sock, "POST", path, "{\"reason\":\"key_compromise\"}", 200));
        long st;
        snprintf(inm, sizeof inm, "If-None-Match: %s", e1);
        free(get_on(public_port, "/revocations/tenant-x.json", inm, &st, NULL));
        cr_assert_eq(st, 200, "a revocation changes tenant-x's list");
        json_t *p = expect_revocations("/revocations/tenant-x.json", "tenant-x", "https://a.example/tenants/x");
        cr_assert(revoked_lists(p, next), "tenant-x's list names the revoked key");
        json_decref(p);
        p = expect_revocations("/revocations.json", "default", "https://issuer.test");
        cr_assert(!revoked_lists(p, next), "default's list does not");
        json_decref(p);
        jwks = public_get("/jwks/tenant-x.json", 200, NULL);
        cr_assert_null(strstr(jwks, next), "the revoked key left tenant-x's JWKS");
        free(jwks), free(next), free(e1);

        /* A keyring created while keyd runs is served at once: its discovery path is routed. */
        json_decref(test_api_expect(sock, "POST", "/v1/keyrings",
                                    "{\"name\":\"tenant-z\",\"policy\":{\"issuer\":\"https://c.example/z/\"}}", 201));
        doc = public_get_json("/z/.well-known/openid-configuration");
        cr_assert_str_eq(json_string_value(json_object_get(doc, "jwks_uri")), "https://c.example/jwks/tenant-z.json");
        json_decref(doc);
        json_decref(expect_revocations("/revocations/tenant-z.json", "tenant-z", "https://c.example/z/"));

        /* Nothing else: an agent keyring is not published; names that are no keyring's; nothing that signs. */
        static const char *const none[] = {
                "/jwks/agent-1.json",       "/revocations/agent-1.json",  "/revocations/nosuch.json",
                "/revocations/.x.json",     "/revocations/default",       "/tenants/y/.well-known/openid-configuration",
                "/a.example/tenants/x/.well-known/openid-configuration", "/v1/keyrings/default/tokens",
                NULL,
        };
        for (size_t i = 0; none[i]; i++)
                free(public_get(none[i], 404, NULL));
        test_daemon_stop_clean(&d);
}

/* --- ITEM 2: a jwks-file that cannot be written --- */

static double sample_value(const char *text, const char *series);
static char *scrape_local(void);

static json_t *local_health(long want, const char *query) {
        char path[128];
        snprintf(path, sizeof path, "/healthz%s", query ?: "");
        return test_api_expect(sock, "GET", path, NULL, want);
}

static json_t *public_health(long *ret_status) {
        char *body = get_on(public_port, "/healthz", NULL, ret_status, NULL);
        json_t *j = json_loads(body, 0, NULL);
        cr_assert_not_null(j, "public /healthz: %s", body);
        free(body);
        return j;
}

/* The public /healthz is made at most once a second: wait for its status to be want (at most timeout_ms). */
static json_t *public_health_becomes(long want, int timeout_ms) {
        long st = 0;
        for (int waited = 0;; waited += 100) {
                json_t *j = public_health(&st);
                if (st == want || waited >= timeout_ms) {
                        char *text = json_dumps(j, JSON_COMPACT);
                        cr_assert_eq(st, want, "public /healthz: %ld, want %ld: %s", st, want, text);
                        free(text);
                        return j;
                }
                json_decref(j);
                usleep(100000);
        }
}

static bool array_has(json_t *a, const char *s) {
        json_t *e;
        size_t i;
        json_array_foreach(a, i, e) if (streq_ptr(json_string_value(e), s)) return true;
        return false;
}

Test(publish, jwks_file_failure_degrades_and_recovers) {
        char rings[2048], dir[600], file[700], other[700];
        snprintf(dir, sizeof dir, "%s/www/jwks", tok.dir); /* not there yet: every write fails */
        snprintf(file, sizeof file, "%s/default.json", dir);
        snprintf(other, sizeof other, "%s/other.json", tok.dir);
        snprintf(rings, sizeof rings,
                 "[keyring default]\nkind = issuer\nalg = ES256\nissuer = https://issuer.test\nsign-users = root\n"
                 "token-ttl-max = 10m\ndefault-ttl = 5m\njwks-file = %s\n\n"
                 "[keyring other]\nkind = issuer\nalg = ES256\nissuer = https://other.test\njwks-file = %s\n",
                 file, other);
        /* STATUS= counts it from the start (before READY=1). */
        start_with(rings, "2 keyring(s), 1 degraded", false);
        cr_assert(access(other, R_OK) == 0, "the other keyring's file is written");

        /* The log names the keyring and the path. */
        char *log = test_read_file(d.log, NULL);
        cr_assert(strstr(log, "keyring default: jwks-file.failed") && strstr(log, file), "%s", log);
        free(log);

        /* /healthz on the Unix socket: 503 degraded, the keyring and why. */
        json_t *h = local_health(503, NULL);
        cr_assert_str_eq(json_string_value(json_object_get(h, "status")), "degraded");
        cr_assert_str_eq(json_string_value(json_object_get(h, "error")), "degraded");
        cr_assert(array_has(json_object_get(h, "degraded"), "default"));
        cr_assert(!array_has(json_object_get(h, "degraded"), "other"));
        const char *why = json_string_value(json_object_get(json_object_get(h, "reasons"), "default"));
        cr_assert(why && strstr(why, file), "the reason names the path: %s", why ?: "(none)");
        cr_assert(strstr(json_string_value(json_object_get(h, "message")), "keyring default"));
        json_decref(h);
        /* Scoped to one keyring: the healthy one is 200; the names are checked. */
        h = local_health(200, "?keyring=other");
        cr_assert_str_eq(json_string_value(json_object_get(h, "status")), "ok");
        json_decref(h);
        json_decref(local_health(503, "?keyring=default"));
        test_api_expect_error(sock, "GET", "/healthz?keyring=nosuch", NULL, 404, "not_found", NULL);
        test_api_expect_error(sock, "GET", "/healthz?keyring=a/b", NULL, 400, "bad_request", NULL);
        test_api_expect_error(sock, "GET", "/healthz?verbose=1", NULL, 400, "bad_request", NULL);

        /* The keyring says so too, and STATUS=. */
        h = test_api_expect(sock, "GET", "/v1/keyrings/default", NULL, 200);
        cr_assert(strstr(json_string_value(json_object_get(h, "degraded")) ?: "", file));
        json_decref(h);

        /* The public /healthz: 503, the published keyring by name, no path. */
        h = public_health_becomes(503, 3000);
        cr_assert_str_eq(json_string_value(json_object_get(h, "status")), "degraded");
        cr_assert(array_has(json_object_get(h, "degraded"), "default"));
        char *text = json_dumps(h, JSON_COMPACT);
        cr_assert_null(strstr(text, dir), "no path on the public listener: %s", text);
        cr_assert_null(json_object_get(h, "reasons"), "%s", text);
        free(text);
        json_decref(h);

        /* Counted, per keyring. */
        char *m = scrape_local();
        cr_assert_geq(sample_value(m, "keyd_jwks_file_failures_total{keyring=\"default\"}"), 1, "%s", m);
        cr_assert_eq(sample_value(m, "keyd_jwks_file_failures_total{keyring=\"other\"}"), 0, "%s", m);
        cr_assert_eq(sample_value(m, "keyd_keyring_healthy{keyring=\"default\"}"), 0, "%s", m);
        cr_assert_eq(sample_value(m, "keyd_keyrings_degraded"), 1, "%s", m);
        double failures = sample_value(m, "keyd_jwks_file_failures_total{keyring=\"default\"}");
        free(m);

        /* The directory is made; the next write (a rotation here) succeeds and clears the mark. */
        char cmd[1400];
        snprintf(cmd, sizeof cmd, "mkdir -p '%s'", dir);
        cr_assert_eq(system(cmd), 0);
        json_decref(test_api_expect(sock, "POST", "/v1/keyrings/default/rotate", "{\"force\":true}", 200));
        h = local_health(200, NULL);
        cr_assert_str_eq(json_string_value(json_object_get(h, "status")), "ok");
        json_decref(h);
        char *written = test_read_file(file, NULL);
        char *served = public_get("/jwks/default.json", 200, NULL);
        cr_assert_str_eq(written, served, "the file holds the served JWKS");
        free(written), free(served);
        json_decref(public_health_becomes(200, 3000));
        cr_assert(test_daemon_wait_notify(&d, "2 keyring(s), 0 degraded", 5000, NULL, 0), "STATUS= says it is over");
        log = test_read_file(d.log, NULL);
        cr_assert(strstr(log, "keyring default: jwks-file.written"), "%s", log);
        free(log);
        m = scrape_local();
        cr_assert_eq(sample_value(m, "keyd_jwks_file_failures_total{keyring=\"default\"}"), failures, "%s", m);
        cr_assert_eq(sample_value(m, "keyd_keyring_healthy{keyring=\"default\"}"), 1, "%s", m);
        free(m);
        test_daemon_stop_clean(&d);
}

/* --- ITEM 3: /healthz on the public listener while the token is down --- */

Test(publish, public_healthz_follows_the_token) {
        test_shim_use(&shim, &tok);
        shim_used = true;
        start("[keyring default]\nkind = issuer\nalg = ES256\nissuer = https://issuer.test\nsign-users = root\n"
              "token-ttl-max = 10m\ndefault-ttl = 5m\n");
        json_t *h = public_health_becomes(200, 1000);
        cr_assert_str_eq(json_string_value(json_object_get(h, "status")), "ok");
        cr_assert(json_is_true(json_object_get(json_object_get(h, "token"), "up")));
        cr_assert_null(json_object_get(h, "version"), "the public listener does not say which keyd it is");
        json_decref(h);

        test_shim_fault(&shim, P11SHIM_FN_SIGN, CKR_DEVICE_ERROR, -1);
        long st;
        json_decref(test_api(sock, "POST", "/v1/keyrings/default/tokens", "{\"sub\":\"a\"}", &st));
        cr_assert_eq(st, 503);
        h = public_health_becomes(503, 3000);
        cr_assert_str_eq(json_string_value(json_object_get(h, "status")), "unavailable");
        cr_assert_str_eq(json_string_value(json_object_get(h, "error")), "unavailable");
        json_t *token = json_object_get(h, "token");
        cr_assert(json_is_false(json_object_get(token, "up")));
        cr_assert_str_eq(json_string_value(json_object_get(token, "reason")), "CKR_DEVICE_ERROR");
        cr_assert_null(json_object_get(token, "sessions"), "how busy the token is stays on the Unix socket");
        cr_assert(strstr(json_string_value(json_object_get(h, "message")), "token is down"));
        json_decref(h);
        /* The documents are still served from memory. */
        free(public_get("/.well-known/jwks.json", 200, NULL));

        test_shim_clear_fault(&shim);
        json_decref(public_health_becomes(200, 20000));
        test_daemon_stop_clean(&d);
}

/* --- ITEM 4: /metrics on its own listener, the whole exposition checked --- */

static bool endswith_total(const char *s) {
        size_t n = strlen(s);
        return n > 6 && streq(s + n - 6, "_total");
}

/* The metric name at s: its length, 0 if there is none. */
static size_t name_len(const char *s) {
        size_t n = 0;
        if (!(isalpha((unsigned char) s[0]) || s[0] == '_' || s[0] == ':'))
                return 0;
        while (isalnum((unsigned char) s[n]) || s[n] == '_' || s[n] == ':')
                n++;
        return n;
}

/* A label set {k="v",...} at s: its length (0 if it is not one); *ret_le: it has an "le" label. */
static size_t labels_len(const char *s, bool *ret_le) {
        size_t i = 1;
        *ret_le = false;
        if (s[0] != '{')
                return 0;
        while (s[i] != '}') {
                size_t k = name_len(s + i);
                if (k == 0 || memchr(s + i, ':', k))
                        return 0;
                *ret_le |= k == 2 && strncmp(s + i, "le", 2) == 0;
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

/* The family a sample of name (n bytes) belongs to, into family; false if no TYPE names it. */
static bool family_of(json_t *families, const char *name, size_t n, bool le, char *family, size_t size) {
        static const char *const suffixes[] = { "_bucket", "_sum", "_count" };
        snprintf(family, size, "%.*s", (int) n, name);
        json_t *f = json_object_get(families, family);
        if (f && !streq_ptr(json_string_value(json_object_get(f, "type")), "histogram"))
                return true;
        for (size_t i = 0; i < ELEMENTSOF(suffixes); i++) {
                size_t s = strlen(suffixes[i]);
                if (n <= s || strncmp(name + n - s, suffixes[i], s) != 0)
                        continue;
                snprintf(family, size, "%.*s", (int) (n - s), name);
                f = json_object_get(families, family);
                if (streq_ptr(json_string_value(json_object_get(f, "type")), "histogram"))
                        return i > 0 || le; /* a bucket has its bound */
        }
        return false;
}

/* The Prometheus text format (0.0.4) as keyd promises it: every family has one "# HELP" with a text and one
 * "# TYPE" (counter, gauge or histogram), both before its first sample; a family's samples come together; no
 * series twice; counters end in _total; a histogram's samples are _bucket (with le), _sum and _count; every value is
 * a number; the text ends with a newline. */
static void expect_exposition(const char *text) {
        json_t *families = json_object(), *series = json_object();
        char line[2048], family[256], last[256] = "";
        size_t n;

        cr_assert(*text && text[strlen(text) - 1] == '\n', "ends with a newline");
        for (const char *l = text; *l; l += n + 1) {
                n = strcspn(l, "\n");
                cr_assert_lt(n, sizeof line, "a line of %zu bytes", n);
                snprintf(line, sizeof line, "%.*s", (int) n, l);
                bool help = startswith(line, "# HELP "), type = startswith(line, "# TYPE ");
                if (help || type) {
                        size_t k = name_len(line + 7);
                        cr_assert_gt(k, 0, "%s", line);
                        cr_assert_eq(line[7 + k], ' ', "%s", line);
                        snprintf(family, sizeof family, "%.*s", (int) k, line + 7);
                        json_t *f = json_object_get(families, family);
                        if (!f)
                                json_object_set_new(families, family, f = json_object());
                        cr_assert_null(json_object_get(f, "samples"), "%s after the family's samples", line);
                        cr_assert_null(json_object_get(f, help ? "help" : "type"), "a second one: %s", line);
                        const char *v = line + 8 + k;
                        cr_assert(*v && !isspace((unsigned char) *v), "empty: %s", line);
                        if (type) {
                                cr_assert(streq(v, "counter") || streq(v, "gauge") || streq(v, "histogram"), "%s",
                                          line);
                                cr_assert(!streq(v, "counter") || endswith_total(family), "a counter's name ends in "
                                                                                         "_total: %s",
                                          line);
                        }
                        json_object_set_new(f, help ? "help" : "type", json_string(v));
                        continue;
                }
                cr_assert(line[0] != '#', "no other comments: %s", line);
                size_t k = name_len(line), j = k;
                bool le = false;
                cr_assert_gt(k, 0, "not a sample: '%s'", line);
                if (line[j] == '{') {
                        size_t s = labels_len(line + j, &le);
                        cr_assert_gt(s, 0, "bad labels: %s", line);
                        j += s;
                }
                cr_assert(family_of(families, line, k, le, family, sizeof family), "no TYPE before: %s", line);
                json_t *f = json_object_get(families, family);
                cr_assert_not_null(json_object_get(f, "help"), "no HELP before: %s", line);
                cr_assert(streq(last, family) || !json_object_get(f, "samples"),
                          "the samples of %s are not together: %s", family, line);
                json_object_set_new(f, "samples", json_true());
                snprintf(last, sizeof last, "%s", family);
                char id[2048];
                snprintf(id, sizeof id, "%.*s", (int) j, line);
                cr_assert_null(json_object_get(series, id), "a series twice: %s", line);
                json_object_set_new(series, id, json_true());
                cr_assert_eq(line[j], ' ', "%s", line);
                const char *value = line + j + 1;
                char *end;
                (void) strtod(value, &end);
                cr_assert(end != value && *end == 0, "not a number: %s", line);
        }
        const char *name;
        json_t *f;
        json_object_foreach(families, name, f) {
                cr_assert_not_null(json_object_get(f, "help"), "%s has no HELP", name);
                cr_assert_not_null(json_object_get(f, "type"), "%s has no TYPE", name);
        }
        json_decref(families), json_decref(series);
}

static double sample_value(const char *text, const char *series) {
        size_t n = strlen(series);
        for (const char *l = text; l; l = strchr(l, '\n'), l = l ? l + 1 : NULL)
                if (strncmp(l, series, n) == 0 && l[n] == ' ')
                        return strtod(l + n + 1, NULL);
        return -1;
}

/* GET /metrics on the metrics listener: 200, the exposition's content type, checked whole. */
static char *scrape_listener(void) {
        char *headers, *ct;
        long st;
        char *m = get_on(metrics_port, "/metrics", NULL, &st, &headers);
        cr_assert_eq(st, 200, "%s", m);
        ct = header_value(headers, "content-type");
        cr_assert_str_eq(ct, "text/plain; version=0.0.4");
        expect_exposition(m);
        free(headers), free(ct);
        return m;
}

/* GET /metrics on the Unix socket, checked whole. */
static char *scrape_local(void) {
        long st;
        char *m = test_api_raw(sock, "GET", "/metrics", NULL, NULL, &st);
        cr_assert_eq(st, 200, "%s", m);
        expect_exposition(m);
        return m;
}

/* A raw request on the metrics listener: the status of its reply. */
static int raw_status(const char *request) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t) metrics_port) };
        char buf[4096];
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), status = 0;
        ssize_t got;

        cr_assert_geq(fd, 0);
        cr_assert_eq(inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr), 1);
        cr_assert_eq(connect(fd, (struct sockaddr *) &sa, sizeof sa), 0);
        cr_assert_eq(write(fd, request, strlen(request)), (ssize_t) strlen(request));
        got = read(fd, buf, sizeof buf - 1);
        cr_assert_gt(got, 0);
        buf[got] = 0;
        cr_assert_eq(sscanf(buf, "HTTP/1.1 %d", &status), 1, "%s", buf);
        close(fd);
        return status;
}

Test(publish, metrics_listener_and_exposition) {
        start_with(RINGS, NULL, true);
        json_t *v = test_api_audit_verify(sock);
        uint64_t before = (uint64_t) json_integer_value(json_object_get(v, "head_seq"));
        json_decref(v);

        char *m = scrape_listener();
        free(scrape_local()); /* the Unix socket's is the same exposition */

        /* Per keyring: the active key's age, the next transition, what happened. */
        usec_t now = now_realtime() / USEC_PER_SEC;
        double age = sample_value(m, "keyd_keyring_active_key_age_seconds{keyring=\"default\"}");
        cr_assert(age >= 0 && age < 120, "default's active key is new: %f\n%s", age, m);
        double next = sample_value(m, "keyd_keyring_next_transition_timestamp_seconds{keyring=\"default\"}");
        cr_assert(next > now + 3000 && next < now + 3700, "default rotates in an hour: %f (now %llu)", next,
                  (unsigned long long) now);
        cr_assert_eq(sample_value(m, "keyd_rotations_total{keyring=\"default\"}"), 0, "a first key is no rotation");
        cr_assert_eq(sample_value(m, "keyd_revocations_total{keyring=\"tenant-x\"}"), 0);
        cr_assert_eq(sample_value(m, "keyd_keyring_healthy{keyring=\"agent-1\"}"), 1);
        cr_assert_lt(sample_value(m, "keyd_jwks_file_failures_total{keyring=\"default\"}"), 0,
                     "only keyrings with a jwks-file have the counter");
        /* The audit chain: its head, its last checkpoint (signed at start). */
        double head = sample_value(m, "keyd_audit_head_seq");
        cr_assert(head >= (double) before && head <= (double) before + 2, "head %f, verify said %llu", head,
                  (unsigned long long) before);
        cr_assert_gt(sample_value(m, "keyd_audit_checkpoint_seq"), 0, "%s", m);
        double cp_age = sample_value(m, "keyd_audit_checkpoint_age_seconds");
        cr_assert(cp_age >= 0 && cp_age < 120, "%f", cp_age);
        free(m);

        json_decref(test_api_expect(sock, "POST", "/v1/keyrings/default/rotate", "{\"force\":true}", 200));
        char *kid = test_api_active_kid(sock, "tenant-x"), path[256];
        snprintf(path, sizeof path, "/v1/keys/%s/revoke", kid);
        json_decref(test_api_expect(sock, "POST", path, "{\"reason\":\"superseded\"}", 200));
        free(kid);
        m = scrape_listener();
        cr_assert_eq(sample_value(m, "keyd_rotations_total{keyring=\"default\"}"), 1, "%s", m);
        cr_assert_eq(sample_value(m, "keyd_revocations_total{keyring=\"tenant-x\"}"), 1, "%s", m);
        cr_assert_eq(sample_value(m, "keyd_rotations_total{keyring=\"tenant-x\"}"), 1,
                     "revoking the active key promotes the standby");
        cr_assert_gt(sample_value(m, "keyd_audit_head_seq"), head, "the transitions are in the chain");
        free(m);

        /* GET /metrics and nothing else. */
        cr_assert_eq(raw_status("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"), 404);
        cr_assert_eq(raw_status("GET /v1/keyrings HTTP/1.1\r\nHost: x\r\n\r\n"), 404);
        cr_assert_eq(raw_status("GET /.well-known/jwks.json HTTP/1.1\r\nHost: x\r\n\r\n"), 404);
        cr_assert_eq(raw_status("DELETE /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), 405);
        cr_assert_eq(raw_status("GET /metrics%00 HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
        /* Not on the public listener. */
        free(public_get("/metrics", 404, NULL));
        test_daemon_stop_clean(&d);
}
