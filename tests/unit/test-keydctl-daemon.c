/* SPDX-License-Identifier: MIT */
/* keydctl against the real daemon on a real SoftHSM2 token: the emergency commands as an operator runs them, again
 * and again. Kids typed as "keydctl keyrings" shows them (12 characters) or starting with "-"; a revocation or a
 * denial run twice; what revoke says about the key that signs now and the verifiers' caches; rekey-all replacing
 * every key, failing in one keyring (a key generation the token refuses, through the PKCS#11 shim) and completed by
 * a second run; key show, token inspect and status as the operator issue asks (items 6 to 8).
 *
 * KEYD_TEST_KEYDCTL runs another build of keydctl (and KEYD_TEST_KEYD of keyd), to show that these tests fail on
 * it. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <p11-kit/pkcs11.h>
#include <spawn.h>
#include <sys/socket.h>
#include <stdio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/macro.h"
#include "tests/helpers/test-api.h"
#include "tests/helpers/test-daemon.h"
#include "tests/helpers/test-shim.h"
#include "tests/helpers/test-util.h"

extern char **environ;

static TestToken tok;
static TestDaemon d = { .notify_fd = -1 };
static TestShim shim;
static bool shim_used;
static char sock[128];

/* prepublish 10m: the JWKS max-age is 5m (prepublish/2), 60 s for ten minutes after a revocation. */
#define RINGS                                                                                                          \
        "[keyring default]\nkind = issuer\nalg = ES256\nissuer = https://issuer.test\nrotation-period = 1h\n"          \
        "prepublish = 10m\ntoken-ttl-max = 10m\ndefault-ttl = 5m\nsign-users = root\n\n"                               \
        "[keyring gw]\nkind = issuer\nalg = EdDSA\nissuer = https://gw.test\nrotation-period = 1h\n"                   \
        "prepublish = 10m\ntoken-ttl-max = 10m\ndefault-ttl = 5m\nsign-users = root\n"

static void start(bool with_shim) {
        test_token_setup(&tok);
        if (with_shim) {
                test_shim_use(&shim, &tok);
                shim_used = true;
        }
        test_daemon_start_rings(&d, &tok, RINGS);
        test_daemon_socket(&tok, sock, sizeof sock);
        cr_assert_eq(setenv("KEYD_SOCKET", sock, 1), 0);
}

static void stop(void) {
        test_daemon_done(&d);
        if (shim_used)
                test_shim_teardown(&shim);
        test_token_teardown(&tok);
}

TestSuite(keydctl_daemon, .fini = stop, .timeout = 120);

/* keyd tells its notify socket of every change (STATUS=); nobody else reads the test's, and a full one would block
 * keyd's event loop in sd_notify(). */
static void drain_notify(void) {
        char buf[4096];
        while (d.notify_fd >= 0 && recv(d.notify_fd, buf, sizeof buf, MSG_DONTWAIT) > 0)
                ;
}

typedef struct Run {
        int status;
        char *out, *err;
} Run;

static void run_done(Run *r) {
        free(r->out);
        free(r->err);
}

/* keydctl with args (NULL-terminated) and env (more "NAME=value" for it, or NULL), at most 60 s. */
static Run run_env(const char *const *env, const char *const *args) {
        _cleanup_free_ char *out = NULL, *err = NULL;
        const char *bin = getenv("KEYD_TEST_KEYDCTL") ?: KEYD_TEST_BUILDDIR "/keydctl";
        const char *argv[32] = { bin }, *envp[256];
        posix_spawn_file_actions_t fa;
        size_t n = 0;
        Run r = { .status = -1 };
        int status;
        pid_t pid;

        drain_notify();
        for (size_t i = 0; args[i]; i++) {
                cr_assert_lt(i + 2, ELEMENTSOF(argv));
                argv[i + 1] = args[i];
        }
        for (char **e = environ; *e && n < ELEMENTSOF(envp) - 8; e++)
                envp[n++] = *e;
        for (size_t i = 0; env && env[i]; i++)
                envp[n++] = env[i];
        envp[n] = NULL;
        cr_assert(asprintf(&out, "%s/keydctl.out", tok.dir) > 0 && asprintf(&err, "%s/keydctl.err", tok.dir) > 0);
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_addopen(&fa, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        posix_spawn_file_actions_addopen(&fa, 2, err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        cr_assert_eq(posix_spawn(&pid, bin, &fa, NULL, (char *const *) argv, (char *const *) envp), 0, "spawn %s", bin);
        posix_spawn_file_actions_destroy(&fa);
        for (int i = 0;; i++) {
                pid_t w = waitpid(pid, &status, WNOHANG);
                cr_assert(w >= 0);
                if (w == pid)
                        break;
                if (i == 6000) {
                        kill(pid, SIGKILL);
                        waitpid(pid, &status, 0);
                        cr_assert_fail("keydctl did not finish within 60 s");
                }
                (void) nanosleep(&(struct timespec){ .tv_nsec = 10 * 1000 * 1000 }, NULL);
        }
        cr_assert(WIFEXITED(status), "keydctl was killed by signal %d", WTERMSIG(status));
        r.status = WEXITSTATUS(status);
        r.out = test_read_file(out, NULL);
        r.err = test_read_file(err, NULL);
        return r;
}
#define RUN(...) run_env(NULL, (const char *const[]){ __VA_ARGS__, NULL })
#define RUN_ENV(env, ...) run_env((const char *const[]){ env, NULL }, (const char *const[]){ __VA_ARGS__, NULL })

static void expect_status(const Run *r, int status) {
        cr_assert_eq(r->status, status, "exit status %d, expected %d\nstdout:\n%s\nstderr:\n%s", r->status, status,
                     r->out, r->err);
}

static void expect_out(const Run *r, const char *text) {
        cr_assert(strstr(r->out, text), "stdout lacks \"%s\":\n%s\nstderr:\n%s", text, r->out, r->err);
}

static json_t *keyring(const char *name) {
        char path[128];
        snprintf(path, sizeof path, "/v1/keyrings/%s", name);
        return test_api_expect(sock, "GET", path, NULL, 200);
}

static json_t *key_of(json_t *ring, const char *kid) {
        json_t *k;
        size_t i;
        json_array_foreach(json_object_get(ring, "keys"), i, k)
                if (streq_ptr(json_string_value(json_object_get(k, "kid")), kid))
                        return k;
        cr_assert_fail("keyring %s has no key %s", json_string_value(json_object_get(ring, "name")), kid);
        return NULL;
}

/* The state of key kid in keyring name, as a new string. */
static char *key_state(const char *name, const char *kid) {
        json_t *ring = keyring(name);
        char *s = strdup(json_string_value(json_object_get(key_of(ring, kid), "state")));
        json_decref(ring);
        return s;
}

static void expect_state(const char *name, const char *kid, const char *state) {
        _cleanup_free_ char *s = key_state(name, kid);
        cr_assert_str_eq(s, state, "key %s of %s", kid, name);
}

static char *prefix12(const char *kid) {
        return strndup(kid, 12);
}

static int64_t seconds(const char *rfc3339) {
        struct tm tm = { 0 };
        cr_assert_not_null(strptime(rfc3339, "%Y-%m-%dT%H:%M:%SZ", &tm), "not a time: %s", rfc3339);
        return (int64_t) timegm(&tm);
}

static void format_utc(char *buf, size_t size, int64_t t) {
        time_t tt = (time_t) t;
        struct tm tm;
        strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&tt, &tm));
}

/* Item 1: a kid is what "keydctl keyrings" shows (12 characters) or any unique prefix of 8 or more; a kid that starts
 * with "-" is a kid, not an option; options go before or after it, POSIXLY_CORRECT or not. */
Test(keydctl_daemon, revoke_takes_kid_prefixes_and_dashes) {
        start(false);
        _cleanup_free_ char *active = test_api_active_kid(sock, "default"),
                            *next = test_api_kid_in_state(sock, "default", "next"), *a12 = prefix12(active),
                            *n12 = prefix12(next), *a7 = strndup(active, 7);
        char want[256];

        /* The ACTIVE-KID column of keydctl keyrings is what people copy. */
        Run r = RUN("keyrings");
        expect_status(&r, 0);
        expect_out(&r, a12);
        run_done(&r);

        r = RUN("revoke", a7, "--reason", "key_compromise");
        expect_status(&r, 2);
        cr_assert(strstr(r.err, "too short"), "%s", r.err);
        run_done(&r);
        expect_state("default", active, "active");

        r = RUN("revoke", a12, "--reason", "key_compromise");
        expect_status(&r, 0);
        snprintf(want, sizeof want, "Revoked key %s of keyring default at ", active);
        expect_out(&r, want);
        run_done(&r);
        expect_state("default", active, "revoked");

        /* Options before the operand, and after it with POSIXLY_CORRECT (getopt stops at the first operand then). */
        r = RUN_ENV("POSIXLY_CORRECT=1", "revoke", n12, "--reason", "superseded");
        expect_status(&r, 0);
        run_done(&r);
        expect_state("default", next, "revoked");
        _cleanup_free_ char *gw = test_api_active_kid(sock, "gw"), *g12 = prefix12(gw);
        r = RUN("revoke", "--reason", "superseded", g12);
        expect_status(&r, 0);
        run_done(&r);
        expect_state("gw", gw, "revoked");

        /* Keys until one has a kid that starts with "-" (1 in 64 do): each forced rotation makes a next key. */
        _cleanup_free_ char *dash = NULL;
        for (int i = 0; i < 2000 && !dash; i++) {
                long status;
                char log[4096];
                drain_notify();
                json_t *ring = test_api(sock, "POST", "/v1/keyrings/default/rotate", "{\"force\":true}", &status), *k;
                size_t j;
                cr_assert_eq(status, 200, "rotation %d: %ld\n%s", i, status, test_file_tail(d.log, log, sizeof log));
                json_array_foreach(json_object_get(ring, "keys"), j, k) {
                        const char *kid = json_string_value(json_object_get(k, "kid"));
                        const char *state = json_string_value(json_object_get(k, "state"));
                        if (kid[0] == '-' && !dash && !streq(state, "revoked") && !streq(state, "expired"))
                                dash = strdup(kid);
                }
                json_decref(ring);
        }
        cr_assert_not_null(dash, "no kid starting with - in 2000 rotations");
        _cleanup_free_ char *d12 = prefix12(dash), *d8 = strndup(dash, 8);
        r = RUN("revoke", d12, "--reason", "key_compromise");
        expect_status(&r, 0);
        snprintf(want, sizeof want, "Revoked key %s of keyring default", dash);
        expect_out(&r, want);
        run_done(&r);
        expect_state("default", dash, "revoked");
        /* After "--" too (run again: already revoked, and said so). */
        r = RUN("revoke", "--reason", "key_compromise", "--", d8);
        expect_status(&r, 0);
        snprintf(want, sizeof want, "Key %s of keyring default was already revoked at ", dash);
        expect_out(&r, want);
        run_done(&r);

        /* No such key: not found (exit 5) after the lookup, nothing revoked. */
        r = RUN("revoke", "AAAAAAAAAAAAAAAAAAAA", "--reason", "key_compromise");
        expect_status(&r, 5);
        cr_assert(strstr(r.err, "no key has a kid that starts with 'AAAAAAAAAAAAAAAAAAAA'"), "%s", r.err);
        run_done(&r);
}

/* Item 2: a revocation and a denial run a second time succeed, saying they were done already, and when. */
Test(keydctl_daemon, revoke_and_deny_twice) {
        start(false);
        _cleanup_free_ char *active = test_api_active_kid(sock, "default");
        char want[256], exp[32], later[32];

        Run r = RUN("revoke", active, "--reason", "key_compromise");
        expect_status(&r, 0);
        run_done(&r);
        json_t *ring = keyring("default");
        const char *at = json_string_value(json_object_get(key_of(ring, active), "revoked_at"));
        snprintf(want, sizeof want, "Key %s of keyring default was already revoked at %s (key_compromise).\n", active,
                 at);
        json_decref(ring);

        r = RUN("revoke", active, "--reason", "key_compromise");
        expect_status(&r, 0);
        expect_out(&r, want);
        run_done(&r);
        r = RUN("revoke", active, "--reason", "superseded", "--json");
        expect_status(&r, 0);
        json_t *o = json_loads(r.out, 0, NULL);
        cr_assert(json_is_true(json_object_get(o, "already")), "%s", r.out);
        cr_assert_str_eq(json_string_value(json_object_get(o, "reason")), "key_compromise", "the first reason stands");
        json_decref(o);
        run_done(&r);

        /* A denial run twice: the same, with when it was denied and until when. */
        int64_t now = (int64_t) time(NULL);
        snprintf(exp, sizeof exp, "@%lld", (long long) now + 3600);
        format_utc(later, sizeof later, now + 7200); /* RFC 3339 as well as @SECONDS */
        r = RUN("token", "revoke", "jti-twice", "--exp", exp);
        expect_status(&r, 0);
        run_done(&r);
        r = RUN("token", "revoke", "jti-twice", "--exp", exp);
        expect_status(&r, 0);
        char until[32];
        format_utc(until, sizeof until, now + 3600);
        snprintf(want, sizeof want, ", until %s.\n", until);
        expect_out(&r, "Token jti-twice was already denied at ");
        expect_out(&r, want);
        run_done(&r);
        /* Without --exp: the denial that stands is enough. */
        r = RUN("token", "revoke", "jti-twice");
        expect_status(&r, 0);
        expect_out(&r, "was already denied at ");
        run_done(&r);
        /* Asked for longer than the denial that stands: keyd does not extend it, and keydctl does not hide that: a
         * conflict (exit 6). */
        r = RUN("token", "revoke", "jti-twice", "--exp", later);
        expect_status(&r, 6);
        cr_assert(strstr(r.err, "does not extend"), "%s", r.err);
        run_done(&r);
}

/* Item 3: after a revocation, the key that signs now and when it was published, when the revoked key is out of
 * every verifier's JWKS cache, a warning when the new signing key is younger than prepublish; --reason's free text
 * is in the output and in the audit record. */
Test(keydctl_daemon, revoke_says_what_verifiers_see) {
        start(false);
        _cleanup_free_ char *active = test_api_active_kid(sock, "default"),
                            *next = test_api_kid_in_state(sock, "default", "next");
        char want[512], clear[32];

        Run r = RUN("revoke", active, "--reason", "key_compromise: INC-4711 PIN leaked");
        expect_status(&r, 0);
        json_t *ring = keyring("default");
        const char *at = json_string_value(json_object_get(key_of(ring, active), "revoked_at"));
        const char *published = json_string_value(json_object_get(key_of(ring, next), "publish_at"));
        snprintf(want, sizeof want, "Revoked key %s of keyring default at %s (key_compromise: INC-4711 PIN leaked).\n",
                 active, at);
        expect_out(&r, want);
        /* The next key took over; it was published when keyd started, less than prepublish (10m) ago. */
        expect_state("default", next, "active");
        snprintf(want, sizeof want, "Signing key:      %s, published %s\n", next, published);
        expect_out(&r, want);
        /* The first revocation: caches filled before it keep the key for max-age prepublish/2 = 5m. */
        format_utc(clear, sizeof clear, seconds(at) + 300);
        snprintf(want, sizeof want, "Verifier caches:  every JWKS cache drops the revoked key by %s (max-age 5m)\n",
                 clear);
        expect_out(&r, want);
        cr_assert(strstr(r.err, "was published less than prepublish (10m) ago"), "%s", r.err);
        json_decref(ring);
        run_done(&r);

        /* The free text went to keyd: in the key.revoke record, beside the code. */
        json_t *recs = test_api_audit_records(sock), *rec;
        size_t i;
        bool found = false;
        json_array_foreach(recs, i, rec)
                if (streq_ptr(json_string_value(json_object_get(rec, "action")), "key.revoke") &&
                    streq_ptr(json_string_value(json_object_get(rec, "kid")), active)) {
                        json_t *detail = json_object_get(rec, "detail");
                        cr_assert_str_eq(json_string_value(json_object_get(detail, "reason")), "key_compromise");
                        cr_assert_str_eq(json_string_value(json_object_get(detail, "comment")), "INC-4711 PIN leaked");
                        found = true;
                }
        cr_assert(found, "no key.revoke record of %s", active);
        json_decref(recs);
        json_decref(test_api_audit_verify(sock));

        /* A reason that starts with no code is refused before anything is sent. */
        r = RUN("revoke", next, "--reason", "INC-4711");
        expect_status(&r, 2);
        cr_assert(strstr(r.err, "does not start with a reason code"), "%s", r.err);
        run_done(&r);
        expect_state("default", next, "active");
}

/* The keys of every keyring that sign or verify (next, active, retired): kid → keyring, into a new object. */
static json_t *keys_in_use(void) {
        json_t *all = test_api_expect(sock, "GET", "/v1/keyrings?limit=1000", NULL, 200), *ring, *k, *o = json_object();
        size_t i, j;
        json_array_foreach(json_object_get(all, "keyrings"), i, ring)
                json_array_foreach(json_object_get(ring, "keys"), j, k) {
                        const char *state = json_string_value(json_object_get(k, "state"));
                        if (streq(state, "next") || streq(state, "active") || streq(state, "retired"))
                                json_object_set(o, json_string_value(json_object_get(k, "kid")),
                                                json_object_get(ring, "name"));
                }
        json_decref(all);
        return o;
}

/* Every key of old is revoked now, for key_compromise; every keyring but the disabled one has an active and a next
 * key, none of them old. */
static void expect_replaced(json_t *old) {
        json_t *now = keys_in_use(), *ring_name;
        const char *kid;
        json_object_foreach(old, kid, ring_name) {
                json_t *ring = keyring(json_string_value(ring_name)), *k = key_of(ring, kid);
                cr_assert_str_eq(json_string_value(json_object_get(k, "state")), "revoked", "key %s", kid);
                cr_assert_str_eq(json_string_value(json_object_get(k, "reason")), "key_compromise");
                cr_assert_null(json_object_get(now, kid));
                json_decref(ring);
        }
        for (const char *const *n = (const char *const[]){ "default", "gw", NULL }; *n; n++) {
                _cleanup_free_ char *a = test_api_kid_in_state(sock, *n, "active"),
                                    *x = test_api_kid_in_state(sock, *n, "next");
                cr_assert(a && x, "keyring %s has an active and a next key", *n);
        }
        json_decref(now);
}

/* Item 4: rekey-all replaces every key that signs or verifies in every keyring, tokens signed before are refused,
 * a keyring that fails is named and the run exits 1, and a second run completes it. */
Test(keydctl_daemon, rekey_all) {
        start(true);
        /* A retired key (still verifies), a disabled keyring, a token signed before. */
        json_decref(test_api_expect(sock, "POST", "/v1/keyrings/default/rotate", "{\"force\":true}", 200));
        json_decref(test_api_expect(sock, "POST", "/v1/keyrings",
                                    "{\"name\":\"gone\",\"kind\":\"issuer\",\"policy\":{\"alg\":\"ES256\"}}", 201));
        json_decref(test_api_expect(sock, "POST", "/v1/keyrings/gone/disable", NULL, 200));
        _cleanup_free_ char *token =
                test_api_created(sock, "/v1/keyrings/default/tokens", "{\"sub\":\"agent-1\"}", "token");
        json_t *old = keys_in_use();
        cr_assert_eq(json_object_size(old), 5, "default: retired, active, next; gw: active, next");

        Run r = RUN("rekey-all");
        expect_status(&r, 2);
        cr_assert(strstr(r.err, "rekey-all needs --reason"), "%s", r.err);
        run_done(&r);

        /* The token refuses the first key generation: the first keyring (by name, "default") fails at its first
         * step, the others go on. */
        test_shim_fault(&shim, P11SHIM_FN_GENERATE_KEY_PAIR, CKR_FUNCTION_FAILED, 1);
        r = RUN("rekey-all", "--reason", "INC-4711 PIN leaked");
        expect_status(&r, 1);
        expect_out(&r, "default: FAILED revoking its next key ");
        expect_out(&r, "gw: replaced 2 key(s): next ");
        expect_out(&r, "gone: disabled: every key revoked already\n");
        expect_out(&r, "rekey-all: 1 keyring(s) rekeyed, 0 replaced already, 1 disabled, 1 failed.\n");
        const char *again = strstr(r.err, "keydctl rekey-all --reason 'INC-4711 PIN leaked' --before ");
        cr_assert_not_null(again, "how to complete the run: %s", r.err);
        char before[32];
        cr_assert_eq(sscanf(again, "keydctl rekey-all --reason 'INC-4711 PIN leaked' --before %31s", before), 1);
        run_done(&r);
        json_t *gw_after = keys_in_use();

        /* The second run, as printed: default is done, gw is left alone (its new keys are newer than the run). */
        r = RUN("rekey-all", "--reason", "INC-4711 PIN leaked", "--before", before);
        expect_status(&r, 0);
        expect_out(&r, "default: replaced 3 key(s): next ");
        expect_out(&r, "gw: no key from before ");
        expect_out(&r, "rekey-all: 1 keyring(s) rekeyed, 1 replaced already, 1 disabled, 0 failed.\n");
        expect_out(&r, "  Verifier caches:  every JWKS cache drops the old keys by ");
        run_done(&r);
        expect_replaced(old);
        /* gw's keys of the first run are still in use. */
        json_t *in_use = keys_in_use(), *v;
        const char *kid;
        json_object_foreach(gw_after, kid, v)
                if (streq(json_string_value(v), "gw"))
                        cr_assert_not_null(json_object_get(in_use, kid), "gw's key %s replaced twice", kid);
        json_decref(in_use);
        test_api_expect_invalid(sock, token, NULL, "key_revoked");

        /* A third run changes nothing. */
        json_t *before_third = keys_in_use();
        r = RUN("rekey-all", "--reason", "INC-4711 PIN leaked", "--before", before, "--json");
        expect_status(&r, 0);
        json_t *o = json_loads(r.out, 0, NULL), *now = keys_in_use();
        cr_assert_eq(json_integer_value(json_object_get(o, "failed")), 0, "%s", r.out);
        cr_assert(json_equal(now, before_third), "nothing replaced twice");
        json_decref(o);
        json_decref(now);
        json_decref(before_third);
        run_done(&r);

        /* The comment is in each revocation's audit record, and the chain verifies. */
        json_t *recs = test_api_audit_records(sock), *rec;
        size_t i, n = 0;
        json_array_foreach(recs, i, rec)
                if (streq_ptr(json_string_value(json_object_get(rec, "action")), "key.revoke") &&
                    streq_ptr(json_string_value(json_object_get(json_object_get(rec, "detail"), "comment")),
                              "INC-4711 PIN leaked"))
                        n++;
        cr_assert_eq(n, 5, "one key.revoke record per old key");
        json_decref(recs);
        json_decref(test_api_audit_verify(sock));
        json_decref(gw_after);
        json_decref(old);
}

/* Item 6: key show names the key's private object in the token by an RFC 7512 URI, with its JWK as the JWKS has it;
 * a prefix of the kid will do, as for revoke. */
Test(keydctl_daemon, key_show) {
        start(false);
        _cleanup_free_ char *active = test_api_active_kid(sock, "default"), *a12 = prefix12(active), *path = NULL;
        char want[256];

        Run r = RUN("key", "show", a12);
        expect_status(&r, 0);
        snprintf(want, sizeof want, "Key:          %s\nKeyring:      default (issuer)\nAlg:          ES256\n"
                                    "State:        active\n", active);
        cr_assert(startswith(r.out, want), "%s", r.out);
        expect_out(&r, "PKCS#11 URI:  pkcs11:token=" TEST_TOKEN_LABEL ";object=keyd:");
        expect_out(&r, ";type=private\n              (the private key object is in token " TEST_TOKEN_LABEL ")\n");
        run_done(&r);

        /* --json: keyd's reply, the URI as GET /v1/keys/{kid} gives it. */
        cr_assert(asprintf(&path, "/v1/keys/%s", active) > 0);
        json_t *api = test_api_expect(sock, "GET", path, NULL, 200);
        r = RUN("--json", "key", "show", active);
        expect_status(&r, 0);
        json_t *o = json_loads(r.out, 0, NULL);
        cr_assert(json_equal(o, api), "%s", r.out);
        json_decref(o);
        json_decref(api);
        run_done(&r);

        r = RUN("key", "show", "AAAAAAAAAAAA");
        expect_status(&r, 5);
        run_done(&r);
}

/* Item 7: token inspect decodes what keyd minted, says it verified nothing, and what keyd knows of the kid; after a
 * revocation, that the key is revoked. */
Test(keydctl_daemon, token_inspect) {
        start(false);
        _cleanup_free_ char *active = test_api_active_kid(sock, "default"),
                            *token = test_api_created(sock, "/v1/keyrings/default/tokens",
                                                      "{\"sub\":\"agent-1\",\"aud\":\"api\"}", "token");
        char want[256];

        Run r = RUN("token", "inspect", token);
        expect_status(&r, 0);
        cr_assert(startswith(r.out, "NOT VERIFIED: "), "%s", r.out);
        snprintf(want, sizeof want, "  kid  %s\n", active);
        expect_out(&r, want);
        expect_out(&r, "  iss  https://issuer.test\n");
        expect_out(&r, "Key:        keyring default, ES256, state active\n");
        run_done(&r);

        json_decref(test_api_expect(sock, "POST", "/v1/keyrings/default/rotate", "{\"force\":true}", 200));
        r = RUN("token", "inspect", token);
        expect_status(&r, 0);
        expect_out(&r, "Key:        keyring default, ES256, state retired\n");
        run_done(&r);
        /* verify and inspect take the same --aud spelling and the same token. */
        r = RUN("verify", token, "--aud", "api");
        expect_status(&r, 0);
        run_done(&r);
        r = RUN("verify", token, "--aud", "billing");
        expect_status(&r, 1);
        run_done(&r);
}

/* Item 8: status exits 1 while keyd is not ok: the token down (keyd answers 503 then, with the reason), and 0 again
 * once the token is back. */
Test(keydctl_daemon, status_follows_health) {
        start(true);
        long st;
        Run r = RUN("status");
        expect_status(&r, 0);
        expect_out(&r, "status:    ok\n");
        expect_out(&r, "token:     up\n");
        run_done(&r);

        /* Every call of the token fails: the first signature takes it down, and its recovery fails too. */
        test_shim_fault(&shim, P11SHIM_FN_ALL, CKR_DEVICE_ERROR, -1);
        json_decref(test_api(sock, "POST", "/v1/keyrings/default/tokens", "{\"sub\":\"a\"}", &st));
        cr_assert_eq(st, 503);
        r = RUN("status");
        expect_status(&r, 1);
        expect_out(&r, "status:    unavailable\n");
        expect_out(&r, "token:     DOWN: ");
        cr_assert_str_empty(r.err, "%s", r.err);
        run_done(&r);
        r = RUN("status", "--json");
        expect_status(&r, 1);
        json_t *o = json_loads(r.out, 0, NULL);
        cr_assert_str_eq(json_string_value(json_object_get(o, "status")), "unavailable", "%s", r.out);
        cr_assert(json_is_false(json_object_get(json_object_get(o, "token"), "up")), "%s", r.out);
        json_decref(o);
        run_done(&r);

        test_shim_clear_fault(&shim);
        for (int i = 0; i < 300; i++) {
                json_decref(test_api(sock, "GET", "/healthz", NULL, &st));
                if (st == 200)
                        break;
                usleep(50 * 1000);
        }
        cr_assert_eq(st, 200, "the token came back");
        r = RUN("status");
        expect_status(&r, 0);
        run_done(&r);
}

/* The man page's entry for a command: ".TP" then ".B cmd", ".BI "cmd ..." or "\fBcmd\fR ...", its hyphens escaped. */
static bool man_documents(const char *man, const char *cmd) {
        char esc[128], want[4][160];
        size_t n = 0;
        for (const char *p = cmd; *p && n + 3 < sizeof esc; p++) {
                if (*p == '-')
                        esc[n++] = '\\';
                esc[n++] = *p;
        }
        esc[n] = 0;
        snprintf(want[0], sizeof want[0], "\n.TP\n.B %s\n", esc);
        snprintf(want[1], sizeof want[1], "\n.TP\n.BI \"%s ", esc);
        snprintf(want[2], sizeof want[2], "\n.TP\n.B %s ", esc);
        snprintf(want[3], sizeof want[3], "\n.TP\n\\fB%s\\fR", esc);
        for (size_t i = 0; i < ELEMENTSOF(want); i++)
                if (strstr(man, want[i]))
                        return true;
        return false;
}

/* Item 5: "keydctl COMMAND --help" and "keydctl help COMMAND" for every command that keydctl --help lists, and for
 * the groups (keyring, token, audit); every command has its entry in keydctl(1). Nothing needs keyd. */
Test(keydctl_daemon, help_for_every_command) {
        tok.dir = test_mkdtemp();
        char socket_path[256], *man_path = test_path("docs/man/keydctl.1"), *man = test_read_file(man_path, NULL);
        snprintf(socket_path, sizeof socket_path, "%s/no-keyd.sock", tok.dir);
        cr_assert_eq(setenv("KEYD_SOCKET", socket_path, 1), 0);

        Run top = RUN("--help");
        expect_status(&top, 0);
        char *list = strstr(top.out, "Commands:\n"), *end;
        cr_assert_not_null(list, "%s", top.out);
        list += strlen("Commands:\n");
        end = strstr(list, "\n\n");
        cr_assert_not_null(end);
        *end = 0;
        unsigned n = 0;
        for (char *line = strtok(list, "\n"); line; line = strtok(NULL, "\n")) {
                /* "  audit tail [-n N] ...  summary": the command is the words before its first argument. */
                char *w[2] = { NULL, NULL }, words[128] = "", *save = NULL, *copy = strdup(line);
                size_t nw = 0;
                for (char *t = strtok_r(copy, " ", &save); t && nw < 2; t = strtok_r(NULL, " ", &save)) {
                        if (!(t[0] >= 'a' && t[0] <= 'z'))
                                break;
                        w[nw++] = t;
                        snprintf(words + strlen(words), sizeof words - strlen(words), "%s%s", nw > 1 ? " " : "", t);
                }
                cr_assert_gt(nw, 0, "a command line without a command: %s", line);
                char usage[160];
                snprintf(usage, sizeof usage, "Usage: keydctl [OPTIONS] %s", words);

                Run r = nw == 1 ? RUN(w[0], "--help") : RUN(w[0], w[1], "--help");
                expect_status(&r, 0);
                cr_assert(startswith(r.out, usage), "keydctl %s --help:\n%s", words, r.out);
                cr_assert_str_empty(r.err, "keydctl %s --help", words);
                run_done(&r);
                r = nw == 1 ? RUN("help", w[0]) : RUN("help", w[0], w[1]);
                expect_status(&r, 0);
                cr_assert(startswith(r.out, usage), "keydctl help %s:\n%s", words, r.out);
                run_done(&r);
                r = nw == 1 ? RUN(w[0], "-h") : RUN(w[0], w[1], "-h");
                expect_status(&r, 0);
                run_done(&r);

                if (nw == 2) {
                        char group[160];
                        snprintf(group, sizeof group, "Usage: keydctl [OPTIONS] %s COMMAND", w[0]);
                        for (const char *const *form = (const char *const[]){ "--help", "-h", "help", NULL }; *form;
                             form++) {
                                r = streq(*form, "help") ? RUN("help", w[0]) : RUN(w[0], *form);
                                expect_status(&r, 0);
                                cr_assert(startswith(r.out, group), "keydctl %s %s:\n%s", w[0], *form, r.out);
                                cr_assert(strstr(r.out, words), "the group's help lists %s:\n%s", words, r.out);
                                run_done(&r);
                        }
                }
                cr_assert(man_documents(man, words), "keydctl(1) has no entry for %s", words);
                free(copy);
                n++;
        }
        cr_assert_geq(n, 16, "every command: %u", n);
        run_done(&top);
        free(man);
        free(man_path);
}
