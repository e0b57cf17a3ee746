/* SPDX-License-Identifier: MIT */
/* Interoperability: keyd's tokens verified by an independent JOSE implementation (panva/jose on Node.js,
 * tests/interop/verify.mjs) that takes its keys from keyd's public JWKS only. For each of ES256, ES384, RS256,
 * PS256 and EdDSA: a minted token verifies; a forced rotation keeps the old token verifiable (its key retired and
 * still published) and the new one verifies; revoking the retired key makes keyd answer key_revoked, removes the kid
 * from the public JWKS, and node's verification fails. A token with one signature bit flipped, or checked against
 * another audience, fails in node.
 *
 * Node.js and npm are required: the test fails without them (scripts/deps.sh installs Debian's). The npm packages
 * (tests/interop/package-lock.json) are installed with "npm ci" once per run of this program, into a private copy
 * of tests/interop under the build directory. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/macro.h"
#include "tests/helpers/test-api.h"
#include "tests/helpers/test-daemon.h"
#include "tests/helpers/test-util.h"

#define AUDIENCE "https://api.interop.test"
#define NODE_TIMEOUT "60"
#define NPM_TIMEOUT "240"

static TestToken tok;
static TestDaemon d = { .notify_fd = -1 };
static char sock[512];

typedef struct Ring {
        const char *name;
        const char *alg;
} Ring;

static const Ring RINGS[] = {
        { "es256", "ES256" }, { "es384", "ES384" }, { "rs256", "RS256" }, { "ps256", "PS256" }, { "eddsa", "EdDSA" },
};
#define N_RINGS (sizeof RINGS / sizeof RINGS[0])

static void setup(void) {
        test_token_setup(&tok);
        test_daemon_socket(&tok, sock, sizeof sock);
}
static void teardown(void) {
        test_daemon_teardown(&d, &tok);
}

/* ASan builds generate RSA keys and start node slower: generous, but bounded. */
TestSuite(interop, .init = setup, .fini = teardown, .timeout = 300);

/* ---- HTTP: the API over the Unix socket, the public listener over TCP ---- */

/* A request to the local API, expecting status want; returns the JSON reply. */
static json_t *api(const char *method, const char *path, json_t *body, long want) {
        long status;
        char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
        char *reply = test_api_raw(sock, method, path, text, NULL, &status);
        cr_assert_eq(status, want, "%s %s %s: HTTP %ld, want %ld: %s", method, path, text ? text : "", status, want,
                     reply);
        json_error_t err;
        json_t *j = json_loads(reply, 0, &err);
        cr_assert_not_null(j, "%s %s: reply is not JSON (%s): %s", method, path, err.text, reply);
        free(reply);
        free(text);
        json_decref(body);
        return j;
}

static const char *jstr(json_t *o, const char *key) {
        json_t *v = json_object_get(o, key);
        return json_is_string(v) ? json_string_value(v) : NULL;
}

/* ---- keyd ---- */

/* Start keyd with the five keyrings and the public listener; returns the port. */
static unsigned start_keyd(void) {
        char *rings = strdup("");
        cr_assert_not_null(rings);
        for (size_t i = 0; i < N_RINGS; i++) {
                char *more;
                cr_assert(asprintf(&more,
                                   "%s\n[keyring %s]\nkind = issuer\nalg = %s\nissuer = https://%s.keyd.test\n"
                                   "rotation-period = 1h\nprepublish = 10m\ntoken-ttl-max = 10m\n"
                                   "default-ttl = 5m\nsign-users = root\n",
                                   rings, RINGS[i].name, RINGS[i].alg, RINGS[i].name) >= 0);
                free(rings);
                rings = more;
        }
        /* Ten keys, four of them RSA, made in SoftHSM2 before READY=1: up to 120 s under ASan. */
        int port = test_daemon_start_public(&d, &tok, rings, 120000);
        free(rings);
        return (unsigned) port;
}

typedef struct Minted {
        char *token;
        char *kid;
} Minted;

static Minted mint(const Ring *r) {
        char path[256];
        snprintf(path, sizeof path, "/v1/keyrings/%s/tokens", r->name);
        json_t *j = api("POST", path, json_pack("{s:s, s:s, s:i}", "sub", "interop-alice", "aud", AUDIENCE, "ttl", 300),
                        201);
        Minted m = { .token = strdup(jstr(j, "token") ?: ""), .kid = strdup(jstr(j, "kid") ?: "") };
        cr_assert(m.token[0] && m.kid[0], "mint %s: no token or kid", r->name);
        json_decref(j);
        return m;
}

static void minted_done(Minted *m) {
        free(m->token);
        free(m->kid);
        m->token = m->kid = NULL;
}

/* keyd's own verdict on a token: valid, or the error code. */
static char *keyd_verify(const char *token) {
        json_t *j = test_api_verify(sock, token, NULL);
        json_t *valid = json_object_get(j, "valid");
        cr_assert(json_is_boolean(valid), "verify: no boolean valid");
        char *out = strdup(json_is_true(valid) ? "valid" : (jstr(j, "error") ?: "(no error)"));
        json_decref(j);
        return out;
}

/* The public JWKS of a keyring, as served. */
static json_t *public_jwks(unsigned port, const Ring *r) {
        char url[256];
        long status;
        snprintf(url, sizeof url, "http://127.0.0.1:%u/jwks/%s.json", port, r->name);
        char *body = test_http_get(url, NULL, &status, NULL);
        cr_assert_eq(status, 200, "GET %s: HTTP %ld: %s", url, status, body);
        json_error_t err;
        json_t *j = json_loads(body, JSON_REJECT_DUPLICATES, &err);
        cr_assert_not_null(j, "GET %s: not JSON (%s): %s", url, err.text, body);
        cr_assert(json_is_array(json_object_get(j, "keys")), "GET %s: no keys array: %s", url, body);
        free(body);
        return j;
}

static bool jwks_has(json_t *jwks, const char *kid) {
        size_t i;
        json_t *k;
        json_array_foreach(json_object_get(jwks, "keys"), i, k) {
                if (streq_ptr(jstr(k, "kid"), kid))
                        return true;
        }
        return false;
}

/* ---- node ---- */

static char *node_dir(void) {
        char *p;
        cr_assert(asprintf(&p, "%s/interop", KEYD_TEST_BUILDDIR) >= 0);
        return p;
}

/* Run a shell command; returns its wait status. */
static int sh(const char *cmd) {
        int status = system(cmd);
        cr_assert(status != -1, "system(%s): %m", cmd);
        return status;
}

static void copy_file(const char *from, const char *to) {
        size_t len;
        char *data = test_read_file(from, &len);
        char *tmp;
        cr_assert(asprintf(&tmp, "%s.tmp.%d", to, (int) getpid()) >= 0);
        FILE *f = fopen(tmp, "we");
        cr_assert_not_null(f, "create %s: %m", tmp);
        cr_assert_eq(fwrite(data, 1, len, f), len);
        cr_assert_eq(fclose(f), 0);
        cr_assert_eq(rename(tmp, to), 0, "rename %s: %m", to);
        free(tmp);
        free(data);
}

/* Node.js and npm must be there, and the packages of tests/interop installed with "npm ci" into
 * BUILDDIR/interop once per run of this program: criterion runs each test in a process of its own, child of the
 * runner, so the runner's pid names the run. A lock file serialises the tests that run at once. */
static char *node_prepare(void) {
        static const char *const FILES[] = { "package.json", "package-lock.json", "verify.mjs" };
        char *dir = node_dir(), *path, *cmd;
        char run[64];

        cr_assert_eq(sh("command -v node >/dev/null 2>&1"), 0,
                     "node (Node.js) is missing: the interop test needs it (scripts/deps.sh installs nodejs)");
        cr_assert_eq(sh("command -v npm >/dev/null 2>&1"), 0,
                     "npm is missing: the interop test needs it (scripts/deps.sh installs npm)");
        cr_assert_eq(sh("node -e 'process.exit(Number(process.versions.node.split(\".\")[0]) >= 18 ? 0 : 1)'"), 0,
                     "Node.js 18 or later is needed");

        cr_assert(mkdir(dir, 0755) == 0 || errno == EEXIST, "mkdir %s: %m", dir);
        cr_assert(asprintf(&path, "%s/.lock", dir) >= 0);
        int lock = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        cr_assert(lock >= 0, "open %s: %m", path);
        cr_assert_eq(flock(lock, LOCK_EX), 0, "flock %s: %m", path);
        free(path);

        snprintf(run, sizeof run, "%d\n", (int) getppid());
        cr_assert(asprintf(&path, "%s/.npm-ci-run", dir) >= 0);
        char *done = access(path, F_OK) == 0 ? test_read_file(path, NULL) : strdup("");
        char *have;
        cr_assert(asprintf(&have, "%s/node_modules/jose/package.json", dir) >= 0);
        if (!streq(done, run) || access(have, F_OK) != 0) {
                for (size_t i = 0; i < sizeof FILES / sizeof FILES[0]; i++) {
                        char *from, *to;
                        cr_assert(asprintf(&from, "%s/tests/interop/%s", test_srcdir(), FILES[i]) >= 0);
                        cr_assert(asprintf(&to, "%s/%s", dir, FILES[i]) >= 0);
                        copy_file(from, to);
                        free(from);
                        free(to);
                }
                (void) unlink(path);
                cr_assert(asprintf(&cmd,
                                   "cd '%s' && timeout " NPM_TIMEOUT
                                   " npm ci --no-audit --no-fund --loglevel=error >npm-ci.log 2>&1",
                                   dir) >= 0);
                int status = sh(cmd);
                free(cmd);
                if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
                        static char log[8192];
                        char log_path[4096];
                        snprintf(log_path, sizeof log_path, "%s/npm-ci.log", dir);
                        cr_assert_fail("npm ci in %s failed (status %d):\n%s", dir, status,
                                       test_file_tail(log_path, log, sizeof log));
                }
                FILE *f = fopen(path, "we");
                cr_assert_not_null(f);
                fputs(run, f);
                cr_assert_eq(fclose(f), 0);
        }
        cr_assert_eq(access(have, F_OK), 0, "jose is not installed in %s", dir);
        free(have);
        free(done);
        free(path);
        close(lock);
        return dir;
}

/* Verify items (a JSON array for verify.mjs --tokens, stolen) with node; returns one result object per item. */
static json_t *node_verify(json_t *items) {
        char *dir = node_prepare();
        char *file, *cmd;
        size_t n = json_array_size(items);

        cr_assert(asprintf(&file, "%s/tokens-%d.json", tok.dir, (int) getpid()) >= 0);
        cr_assert_eq(json_dump_file(items, file, JSON_COMPACT), 0);
        json_decref(items);
        cr_assert(asprintf(&cmd, "timeout " NODE_TIMEOUT " node '%s/verify.mjs' --tokens '%s' 2>&1", dir, file) >= 0);
        int status;
        char *out = test_run(cmd, &status);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s: status %d:\n%s", cmd, status, out);

        json_t *results = json_array();
        char *save = NULL;
        for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                json_error_t err;
                json_t *j = json_loads(line, 0, &err);
                cr_assert(json_is_object(j), "node printed a line that is no JSON object (%s): %s", err.text, line);
                json_array_append_new(results, j);
        }
        cr_assert_eq(json_array_size(results), n, "node gave %zu results for %zu tokens", json_array_size(results), n);
        (void) unlink(file);
        free(out);
        free(cmd);
        free(file);
        free(dir);
        return results;
}

static json_t *item(unsigned port, const Ring *r, const char *token, const char *audience) {
        char jwks[256], iss[256];
        snprintf(jwks, sizeof jwks, "http://127.0.0.1:%u/jwks/%s.json", port, r->name);
        snprintf(iss, sizeof iss, "https://%s.keyd.test", r->name);
        return json_pack("{s:s, s:s, s:s, s:s}", "token", token, "jwks", jwks, "issuer", iss, "audience", audience);
}

static void assert_node_ok(json_t *res, const Ring *r, const char *kid, const char *what) {
        cr_assert(json_is_true(json_object_get(res, "ok")), "%s %s: node refuses the token: %s", r->alg, what,
                  jstr(res, "error") ?: "(no error)");
        cr_assert_str_eq(jstr(res, "alg") ?: "", r->alg, "%s %s: alg", r->alg, what);
        cr_assert_str_eq(jstr(res, "kid") ?: "", kid, "%s %s: kid", r->alg, what);
}

static void assert_node_fails(json_t *res, const Ring *r, const char *code, const char *what) {
        cr_assert(json_is_false(json_object_get(res, "ok")), "%s %s: node accepts it", r->alg, what);
        const char *err = jstr(res, "error") ?: "";
        cr_assert(!code || strncmp(err, code, strlen(code)) == 0, "%s %s: node fails with %s, want %s", r->alg, what,
                  err, code);
}

/* One signature bit flipped: the first character of the signature part, as a base64url digit, XOR 1 (a bit of the
 * signature's first byte, never one of the unused bits of the last character). */
static char *tamper(const char *token) {
        static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        char *t = strdup(token);
        char *sig = strrchr(t, '.');
        cr_assert(sig && sig[1], "no signature in %s", token);
        const char *at = strchr(B64, sig[1]);
        cr_assert(at && *at, "bad base64url in %s", token);
        sig[1] = B64[(at - B64) ^ 1];
        return t;
}

/* ---- tests ---- */

/* Static, so that a failing assertion (which leaves the test by a long jump) leaks nothing LeakSanitizer sees. */
static Minted old[N_RINGS], new[N_RINGS];
static char *tampered[N_RINGS];

/* Node's verdicts on the old and the new token of every keyring: old at 2i, new at 2i + 1. */
static json_t *node_verify_old_and_new(unsigned port) {
        json_t *items = json_array();
        for (size_t i = 0; i < N_RINGS; i++) {
                json_array_append_new(items, item(port, &RINGS[i], old[i].token, AUDIENCE));
                json_array_append_new(items, item(port, &RINGS[i], new[i].token, AUDIENCE));
        }
        return node_verify(items);
}

Test(interop, five_algs_mint_rotate_revoke) {
        char path[256];

        /* Install the packages before keyd starts: npm's time does not count against keyd's. */
        free(node_prepare());
        unsigned port = start_keyd();

        /* 1. A token of each keyring verifies in node through the JWKS; flipped or for another audience, it fails. */
        json_t *items = json_array();
        for (size_t i = 0; i < N_RINGS; i++) {
                old[i] = mint(&RINGS[i]);
                json_t *jwks = public_jwks(port, &RINGS[i]);
                cr_assert(jwks_has(jwks, old[i].kid), "%s: the signing kid %s is not in the public JWKS", RINGS[i].alg,
                          old[i].kid);
                json_decref(jwks);
                tampered[i] = tamper(old[i].token);
                json_array_append_new(items, item(port, &RINGS[i], old[i].token, AUDIENCE));
                json_array_append_new(items, item(port, &RINGS[i], tampered[i], AUDIENCE));
                json_array_append_new(items, item(port, &RINGS[i], old[i].token, "https://other.test"));
        }
        json_t *res = node_verify(items);
        for (size_t i = 0; i < N_RINGS; i++) {
                assert_node_ok(json_array_get(res, 3 * i), &RINGS[i], old[i].kid, "fresh token");
                assert_node_fails(json_array_get(res, 3 * i + 1), &RINGS[i], "ERR_JWS_SIGNATURE_VERIFICATION_FAILED",
                                  "tampered token");
                assert_node_fails(json_array_get(res, 3 * i + 2), &RINGS[i], "ERR_JWT_CLAIM_VALIDATION_FAILED",
                                  "other audience");
                char *v = keyd_verify(tampered[i]);
                cr_assert_str_eq(v, "bad_signature", "%s: keyd on the tampered token", RINGS[i].alg);
                free(v);
        }
        json_decref(res);

        /* 2. Forced rotation: the old token's key is retired, still published; old and new tokens verify. */
        for (size_t i = 0; i < N_RINGS; i++) {
                snprintf(path, sizeof path, "/v1/keyrings/%s/rotate", RINGS[i].name);
                json_decref(api("POST", path, json_pack("{s:b}", "force", 1), 200));
                new[i] = mint(&RINGS[i]);
                cr_assert_str_neq(new[i].kid, old[i].kid, "%s: the rotation did not change the signing key",
                                  RINGS[i].alg);
                json_t *jwks = public_jwks(port, &RINGS[i]);
                cr_assert(jwks_has(jwks, old[i].kid), "%s: the retired kid %s left the JWKS", RINGS[i].alg, old[i].kid);
                cr_assert(jwks_has(jwks, new[i].kid), "%s: the active kid %s is not in the JWKS", RINGS[i].alg,
                          new[i].kid);
                json_decref(jwks);
                char *v = keyd_verify(old[i].token);
                cr_assert_str_eq(v, "valid", "%s: keyd on the token of the retired key", RINGS[i].alg);
                free(v);
        }
        res = node_verify_old_and_new(port);
        for (size_t i = 0; i < N_RINGS; i++) {
                assert_node_ok(json_array_get(res, 2 * i), &RINGS[i], old[i].kid, "token of the retired key");
                assert_node_ok(json_array_get(res, 2 * i + 1), &RINGS[i], new[i].kid, "token of the new key");
        }
        json_decref(res);

        /* 3. Revoking the retired key: keyd says key_revoked, the kid leaves the public JWKS, node fails. */
        for (size_t i = 0; i < N_RINGS; i++) {
                snprintf(path, sizeof path, "/v1/keys/%s/revoke", old[i].kid);
                json_decref(api("POST", path, json_pack("{s:s}", "reason", "key_compromise"), 200));
                char *v = keyd_verify(old[i].token);
                cr_assert_str_eq(v, "key_revoked", "%s: keyd on the token of the revoked key", RINGS[i].alg);
                free(v);
                v = keyd_verify(new[i].token);
                cr_assert_str_eq(v, "valid", "%s: keyd on the token of the active key", RINGS[i].alg);
                free(v);
                json_t *jwks = public_jwks(port, &RINGS[i]);
                cr_assert(!jwks_has(jwks, old[i].kid), "%s: the revoked kid %s is still in the public JWKS",
                          RINGS[i].alg, old[i].kid);
                cr_assert(jwks_has(jwks, new[i].kid), "%s: the active kid %s left the JWKS", RINGS[i].alg, new[i].kid);
                json_decref(jwks);
        }
        res = node_verify_old_and_new(port);
        for (size_t i = 0; i < N_RINGS; i++) {
                assert_node_fails(json_array_get(res, 2 * i), &RINGS[i], "ERR_JWKS_NO_MATCHING_KEY",
                                  "token of the revoked key");
                assert_node_ok(json_array_get(res, 2 * i + 1), &RINGS[i], new[i].kid, "token of the active key");
        }
        json_decref(res);

        static char log[8192];
        int status = test_daemon_stop(&d, SIGTERM);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "keyd: no clean stop, wait status %d:\n%s", status,
                  test_file_tail(d.log, log, sizeof log));
        for (size_t i = 0; i < N_RINGS; i++) {
                minted_done(&old[i]);
                minted_done(&new[i]);
                free(tampered[i]);
        }
}

/* The script's contract, which the test above relies on: one line per token whatever its fate, exit 0; a usage
 * error exits 2. */
Test(interop, verify_script_contract) {
        char *dir = node_prepare();
        char *cmd;

        cr_assert(asprintf(&cmd, "timeout " NODE_TIMEOUT " node '%s/verify.mjs' >/dev/null 2>&1", dir) >= 0);
        int status = sh(cmd);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 2, "no token: usage error, status %d", status);
        free(cmd);

        /* Nothing listens on port 1: the JWKS cannot be fetched; the second token is not even a JWS. */
        json_t *res = node_verify(json_pack("[{s:s, s:s}, {s:s, s:s}]", "token", "eyJhbGciOiJFUzI1NiJ9.e30.AA", "jwks",
                                            "http://127.0.0.1:1/jwks.json", "token", "a.b", "jwks",
                                            "http://127.0.0.1:1/jwks.json"));
        cr_assert_eq(json_array_size(res), 2);
        for (size_t i = 0; i < 2; i++)
                cr_assert(json_is_false(json_object_get(json_array_get(res, i), "ok")), "token %zu: ok", i);
        cr_assert_str_eq(jstr(json_array_get(res, 0), "alg") ?: "", "ES256", "the header's alg on a failure");
        json_decref(res);
        free(dir);
}
