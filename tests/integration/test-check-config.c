/* SPDX-License-Identifier: MIT */
/* keyd --check-config past the file: the PKCS#11 module loads, the PIN file is private, the users and groups the file
 * names exist; each problem with its file and line, and the exit status keyd(8) documents. Then SIGHUP: a keyring
 * whose section is removed is named in the log. KEYD_TEST_KEYD runs another build of keyd (an older one fails). */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/macro.h"
#include "tests/helpers/test-api.h"
#include "tests/helpers/test-daemon.h"
#include "tests/helpers/test-util.h"

static char *dir;

static void setup(void) {
        dir = test_mkdtemp();
}

static void teardown(void) {
        test_rmrf(dir);
        free(dir);
}

TestSuite(check_config, .init = setup, .fini = teardown, .timeout = 60);

static const char *keyd_bin(void) {
        return getenv("KEYD_TEST_KEYD") ?: KEYD_TEST_BUILDDIR "/keyd";
}

/* A file in the test directory with this text and mode; returns its path. */
static char *write_file(const char *name, const char *text, mode_t mode) {
        char *path;
        FILE *f;

        cr_assert(asprintf(&path, "%s/%s", dir, name) >= 0);
        f = fopen(path, "we");
        cr_assert_not_null(f, "%s: %m", path);
        fputs(text, f);
        cr_assert_eq(fclose(f), 0);
        cr_assert_eq(chmod(path, mode), 0);
        return path;
}

/* keyd.conf: line 1 [token], 2 module (or a comment), 3 uri, 4 pin-file (or a comment), 5 [api], then extra. */
static char *write_config(const char *module, const char *uri, const char *pin_file, const char *extra) {
        _cleanup_free_ char *text = NULL;
        cr_assert(asprintf(&text, "[token]\n%s%s\nuri = %s\n%s%s\n[api]\nsocket = %s/keyd.sock\n%s",
                           module ? "module = " : "; module: the default", module ?: "", uri,
                           pin_file ? "pin-file = " : "; no pin-file", pin_file ?: "", dir, extra ?: "") >= 0);
        return write_file("keyd.conf", text, 0600);
}

/* keyd --check-config -c conf, with env before it ("CREDENTIALS_DIRECTORY=..." or ""): output (stdout and stderr)
 * and exit status. */
static char *check(const char *env, const char *conf, int *ret_exit) {
        char cmd[2048];
        int status;
        char *out;

        snprintf(cmd, sizeof cmd, "env -u CREDENTIALS_DIRECTORY %s %s --check-config -c %s 2>&1", env, keyd_bin(),
                 conf);
        out = test_run(cmd, &status);
        cr_assert(WIFEXITED(status), "keyd did not exit: %s", out);
        *ret_exit = WEXITSTATUS(status);
        return out;
}

#define ASSERT_CONTAINS(out, s) cr_assert(strstr((out), (s)), "expected '%s' in:\n%s", (s), (out))

Test(check_config, good) {
        _cleanup_free_ char *pin = write_file("pin", "1234\n", 0600);
        _cleanup_free_ char *conf = write_config(KEYD_DEFAULT_MODULE, "pkcs11:token=keyd", pin,
                                                 "admin-users = root\nadmin-groups = root\n"
                                                 "[keyring default]\nsign-users = root\nsign-groups = root\n");
        _cleanup_free_ char *expected = NULL, *out = NULL;
        int st;

        out = check("", conf, &st);
        cr_assert_eq(st, 0, "%s", out);
        cr_assert(asprintf(&expected, "%s: OK, 1 keyring(s)\n", conf) >= 0);
        cr_assert_str_eq(out, expected);
}

/* keyd(8): a configuration that cannot be read exits 2, as one with errors does; before, it exited 1. */
Test(check_config, missing_file_exits_2) {
        _cleanup_free_ char *missing = NULL, *out = NULL, *cmd = NULL;
        int st;

        cr_assert(asprintf(&missing, "%s/nope.conf", dir) >= 0);
        out = check("", missing, &st);
        cr_assert_eq(st, 2, "%s", out);
        ASSERT_CONTAINS(out, "No such file or directory");
        free(out);

        out = check("", dir, &st);
        cr_assert_eq(st, 2, "a directory: %s", out);

        /* Starting the daemon on it: the same. */
        cr_assert(asprintf(&cmd, "%s -c %s 2>&1", keyd_bin(), missing) >= 0);
        free(out);
        out = test_run(cmd, &st);
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 2, "keyd -c missing: status %d: %s", st, out);
}

Test(check_config, file_errors_exit_2) {
        _cleanup_free_ char *conf = write_config(NULL, "pkcs11:token=keyd", NULL, "sokcet = /x\n");
        _cleanup_free_ char *out = NULL;
        int st;

        out = check("", conf, &st);
        cr_assert_eq(st, 2, "%s", out);
        ASSERT_CONTAINS(out, "keyd.conf:7: unknown key 'sokcet' in [api] (did you mean 'socket'?)");
}

Test(check_config, pin_file_mode) {
        _cleanup_free_ char *pin = write_file("pin", "1234\n", 0644), *expected = NULL, *out = NULL;
        _cleanup_free_ char *conf = write_config(NULL, "pkcs11:token=keyd", pin, NULL);
        int st;

        out = check("", conf, &st);
        cr_assert_eq(st, 1, "%s", out);
        cr_assert(asprintf(&expected, "%s:4: pin-file: the PIN file %s has mode 0644 (0600 or stricter: chmod 600 %s)",
                           conf, pin, pin) >= 0);
        ASSERT_CONTAINS(out, expected);
        cr_assert_null(strstr(out, "OK"), "%s", out);

        /* 0400 is stricter; 0640 and 0700 are not. */
        cr_assert_eq(chmod(pin, 0400), 0);
        free(out);
        out = check("", conf, &st);
        cr_assert_eq(st, 0, "%s", out);
        cr_assert_eq(chmod(pin, 0640), 0);
        free(out);
        out = check("", conf, &st);
        cr_assert_eq(st, 1, "%s", out);
        ASSERT_CONTAINS(out, "has mode 0640");
        cr_assert_eq(chmod(pin, 0700), 0);
        free(out);
        out = check("", conf, &st);
        cr_assert_eq(st, 1, "%s", out);
        ASSERT_CONTAINS(out, "has mode 0700");
}

Test(check_config, pin_file_symlink_and_missing) {
        _cleanup_free_ char *pin = write_file("pin", "1234\n", 0600), *link = NULL, *out = NULL, *conf = NULL;
        _cleanup_free_ char *missing = NULL;
        int st;

        cr_assert(asprintf(&link, "%s/pin-link", dir) >= 0);
        cr_assert_eq(symlink(pin, link), 0);
        conf = write_config(NULL, "pkcs11:token=keyd", link, NULL);
        out = check("", conf, &st);
        cr_assert_eq(st, 1, "%s", out);
        ASSERT_CONTAINS(out, "keyd.conf:4: pin-file: the PIN file");
        ASSERT_CONTAINS(out, "pin-link is a symbolic link (name the file itself)");

        cr_assert(asprintf(&missing, "%s/no-pin", dir) >= 0);
        free(conf);
        conf = write_config(NULL, "pkcs11:token=keyd", missing, NULL);
        free(out);
        out = check("", conf, &st);
        cr_assert_eq(st, 1, "%s", out);
        ASSERT_CONTAINS(out, "no-pin: No such file or directory");
}

/* The systemd credential wins over pin-file (as in pkcs11/login.c), and its files are systemd's business. */
Test(check_config, credential_pin) {
        _cleanup_free_ char *creds = NULL, *env = NULL, *conf = NULL, *out = NULL, *other = NULL;
        int st;

        cr_assert(asprintf(&creds, "%s/creds", dir) >= 0);
        cr_assert_eq(mkdir(creds, 0700), 0);
        cr_assert(asprintf(&env, "CREDENTIALS_DIRECTORY=%s", creds) >= 0);
        free(write_file("creds/pin", "1234\n", 0644));
        conf = write_config(NULL, "pkcs11:token=keyd", "/nonexistent/pin", NULL);
        out = check(env, conf, &st);
        cr_assert_eq(st, 0, "a credential 'pin' in $CREDENTIALS_DIRECTORY: %s", out);

        /* No credential "pin", but a pin-file under $CREDENTIALS_DIRECTORY: not held to the mode either. */
        cr_assert(asprintf(&other, "%s/pin", creds) >= 0);
        cr_assert_eq(unlink(other), 0);
        free(other);
        other = write_file("creds/other-pin", "1234\n", 0644);
        free(conf);
        conf = write_config(NULL, "pkcs11:token=keyd", other, NULL);
        free(out);
        out = check(env, conf, &st);
        cr_assert_eq(st, 0, "%s", out);

        /* The same file without the credentials directory is refused. */
        free(out);
        out = check("", conf, &st);
        cr_assert_eq(st, 1, "%s", out);
        ASSERT_CONTAINS(out, "has mode 0644");
}

Test(check_config, uri_pin_source_and_no_pin) {
        _cleanup_free_ char *pin = write_file("pin", "1234\n", 0640), *uri = NULL, *conf = NULL, *out = NULL;
        int st;

        cr_assert(asprintf(&uri, "pkcs11:token=keyd?pin-source=file:%s", pin) >= 0);
        conf = write_config(NULL, uri, NULL, NULL);
        out = check("", conf, &st);
        cr_assert_eq(st, 1, "%s", out);
        ASSERT_CONTAINS(out, "keyd.conf:3: uri pin-source: the PIN file");
        ASSERT_CONTAINS(out, "has mode 0640");

        free(conf);
        conf = write_config(NULL, "pkcs11:token=keyd", NULL, NULL);
        free(out);
        out = check("", conf, &st);
        cr_assert_eq(st, 1, "%s", out);
        ASSERT_CONTAINS(out, "keyd.conf: no PIN: give keyd the systemd credential \"pin\", a [token] pin-file, or a "
                             "pin-source in the uri");
}

/* dlopen and C_GetFunctionList only: a file that is no library, and a library that is no PKCS#11 module. */
Test(check_config, module) {
        _cleanup_free_ char *pin = write_file("pin", "1234\n", 0600), *junk = write_file("junk.so", "junk", 0644);
        _cleanup_free_ char *conf = write_config(junk, "pkcs11:token=keyd", pin, NULL), *out = NULL;
        const char *not_p11 = KEYD_TEST_BUILDDIR "/tests/shim/erofs.so"; /* a preloaded shim: no C_GetFunctionList */
        int st;

        out = check("", conf, &st);
        cr_assert_eq(st, 1, "%s", out);
        ASSERT_CONTAINS(out, "keyd.conf:2: module: cannot load ");
        ASSERT_CONTAINS(out, "junk.so");

        cr_assert_eq(access(not_p11, R_OK), 0, "%s: build the tests first", not_p11);
        free(conf);
        conf = write_config(not_p11, "pkcs11:token=keyd", pin, NULL);
        free(out);
        out = check("", conf, &st);
        cr_assert_eq(st, 1, "%s", out);
        ASSERT_CONTAINS(out, "keyd.conf:2: module: " KEYD_TEST_BUILDDIR
                             "/tests/shim/erofs.so is not a PKCS#11 module (no C_GetFunctionList)");
}

/* Names in admin-users, admin-groups, sign-users and sign-groups resolve; each one that does not, at its line. */
Test(check_config, users_and_groups) {
        _cleanup_free_ char *pin = write_file("pin", "1234\n", 0600), *out = NULL;
        _cleanup_free_ char *conf = write_config(NULL, "pkcs11:token=keyd", pin,
                                                 "admin-users = root, no-such-user-kconf\n"   /* 7 */
                                                 "admin-groups = no-such-group-kconf\n"       /* 8 */
                                                 "[keyring default]\n"                        /* 9 */
                                                 "sign-users = 4242\n"                        /* 10 */
                                                 "sign-groups = root no-such-group-kconf\n"); /* 11 */
        int st;

        out = check("", conf, &st);
        cr_assert_eq(st, 1, "%s", out);
        ASSERT_CONTAINS(out, "keyd.conf:7: admin-users: no user 'no-such-user-kconf' on this system\n");
        ASSERT_CONTAINS(out, "keyd.conf:8: admin-groups: no group 'no-such-group-kconf' on this system\n");
        ASSERT_CONTAINS(out, "keyd.conf:10: sign-users: no user '4242' on this system (the list takes names, not "
                             "ids)\n");
        ASSERT_CONTAINS(out, "keyd.conf:11: sign-groups: no group 'no-such-group-kconf' on this system\n");
        cr_assert_null(strstr(out, "'root'"), "%s", out);
}

/* Every problem is reported, not only the first. */
Test(check_config, all_problems_at_once) {
        _cleanup_free_ char *pin = write_file("pin", "1234\n", 0666), *junk = write_file("junk.so", "junk", 0644);
        _cleanup_free_ char *conf = write_config(junk, "pkcs11:token=keyd", pin, "admin-users = no-such-user-kconf\n");
        _cleanup_free_ char *out = NULL;
        int st;

        out = check("", conf, &st);
        cr_assert_eq(st, 1, "%s", out);
        ASSERT_CONTAINS(out, "keyd.conf:2: module:");
        ASSERT_CONTAINS(out, "keyd.conf:4: pin-file:");
        ASSERT_CONTAINS(out, "keyd.conf:7: admin-users:");
}

/* SIGHUP: a keyring whose [keyring] section is gone is kept by the engine, and the log says so by name. */
static TestToken tok;
static TestDaemon d = { .notify_fd = -1 };

static void daemon_setup(void) {
        test_token_setup(&tok);
}

static void daemon_teardown(void) {
        test_daemon_teardown(&d, &tok);
}

TestSuite(reload, .init = daemon_setup, .fini = daemon_teardown, .timeout = 120);

#define RING_A "[keyring first]\nissuer = https://a.test\n"
#define RING_B "[keyring second]\nissuer = https://b.test\n"

Test(reload, removed_keyring_is_named) {
        _cleanup_free_ char *conf = test_daemon_write_config(&tok, RING_A RING_B);
        char *log;

        test_daemon_start_ready(&d, &tok, conf);
        free(test_daemon_write_config(&tok, RING_A));
        kill(d.pid, SIGHUP);
        cr_assert(test_daemon_wait_notify(&d, "RELOADING=1", 5000, NULL, 0));
        cr_assert(test_daemon_wait_notify(&d, "READY=1", 10000, NULL, 0), "no READY=1 after the reload");
        test_daemon_stop_clean(&d);

        log = test_read_file(d.log, NULL);
        cr_assert(strstr(log, "keyring second: removed from"), "the removed keyring is named:\n%s", log);
        cr_assert(strstr(log, "'keydctl disable second' retires it"), "%s", log);
        cr_assert_null(strstr(log, "keyring first: removed"), "%s", log);
        free(log);
}

/* A [keyring] section never takes over a keyring created through the API (before, the file's policy silently
 * replaced the agent's: another owner, other signers): a reload that tries is refused and changes nothing, and so is
 * a start. A keyring the file made stays the file's. */
Test(reload, section_does_not_take_over_an_api_keyring) {
        _cleanup_free_ char *conf = test_daemon_write_config(&tok, RING_A);
        char sock[512], *log;
        long status = 0;

        test_daemon_start_ready(&d, &tok, conf);
        test_daemon_socket(&tok, sock, sizeof sock);
        json_decref(test_api(sock, "POST", "/v1/keyrings",
                             "{\"name\":\"tenant\",\"kind\":\"issuer\",\"policy\":{\"issuer\":\"https://t.test\"}}",
                             &status));
        cr_assert_eq(status, 201);

        free(test_daemon_write_config(&tok, RING_A "[keyring tenant]\nissuer = https://other.test\n"));
        kill(d.pid, SIGHUP);
        cr_assert(test_daemon_wait_notify(&d, "RELOADING=1", 5000, NULL, 0));
        cr_assert(test_daemon_wait_notify(&d, "READY=1", 10000, NULL, 0), "no READY=1 after the reload");
        json_t *ring = test_api(sock, "GET", "/v1/keyrings/tenant", NULL, &status);
        cr_assert_eq(status, 200);
        cr_assert_str_eq(json_string_value(json_object_get(json_object_get(ring, "policy"), "issuer")),
                         "https://t.test", "the API keyring keeps its own policy");
        json_decref(ring);
        /* The reload is audited, as the signal's sender's (this process), with its outcome. */
        json_t *audit = test_api(sock, "GET", "/v1/audit?action=config.reload", NULL, &status);
        cr_assert_eq(status, 200);
        json_t *records = json_object_get(audit, "records");
        cr_assert_eq(json_array_size(records), 1, "one config.reload record");
        json_t *rec = json_array_get(records, 0);
        cr_assert_str_eq(json_string_value(json_object_get(rec, "result")), "error");
        cr_assert_eq(json_integer_value(json_object_get(rec, "pid")), getpid(), "the sender of SIGHUP");
        json_decref(audit);
        test_daemon_stop_clean(&d);
        log = test_read_file(d.log, NULL);
        cr_assert(strstr(log, "keyring tenant was created through the API"), "%s", log);
        cr_assert(strstr(log, "Reload failed"), "%s", log);
        free(log);

        /* The same file at a start: refused, with the same words. */
        test_daemon_done(&d);
        test_daemon_start(&d, &tok, conf, NULL);
        int st = test_daemon_stop(&d, 0);
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) != 0, "keyd starts with a section over an API keyring");
        log = test_read_file(d.log, NULL);
        cr_assert(strstr(log, "keyring tenant was created through the API"), "%s", log);
        free(log);

        /* A keyring the file made is the file's: a changed section changes it. */
        free(test_daemon_write_config(&tok, "[keyring first]\nissuer = https://a2.test\n"));
        test_daemon_done(&d);
        test_daemon_start_ready(&d, &tok, conf);
        ring = test_api(sock, "GET", "/v1/keyrings/first", NULL, &status);
        cr_assert_str_eq(json_string_value(json_object_get(json_object_get(ring, "policy"), "issuer")),
                         "https://a2.test");
        json_decref(ring);
}
