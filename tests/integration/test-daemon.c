/* SPDX-License-Identifier: MIT */
/* The real daemon as a process: readiness, status, watchdog, reload, stop, and refusals at start. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/helpers/test-api.h"
#include "tests/helpers/test-daemon.h"
#include "tests/helpers/test-util.h"

static TestToken tok;
static TestDaemon d = { .notify_fd = -1 };

static void setup(void) {
        test_token_setup(&tok);
}
static void teardown(void) {
        test_daemon_teardown(&d, &tok);
}

TestSuite(daemon, .init = setup, .fini = teardown, .timeout = 120);

static const char *RING = "[keyring default]\nkind = issuer\nalg = ES256\nissuer = https://issuer.test\n"
                          "rotation-period = 1h\nprepublish = 10m\ntoken-ttl-max = 10m\ndefault-ttl = 5m\n";

Test(daemon, ready_status_watchdog_reload_stop) {
        char msg[4096];
        char *conf = test_daemon_write_config(&tok, RING);
        test_daemon_start(&d, &tok, conf, "WATCHDOG_USEC=200000");
        cr_assert(test_daemon_wait_notify(&d, "READY=1", 20000, msg, sizeof msg), "no READY=1");
        cr_assert(test_daemon_wait_notify(&d, "WATCHDOG=1", 2000, NULL, 0), "no WATCHDOG=1 within 2 s");
        cr_assert(test_daemon_wait_notify(&d, "WATCHDOG=1", 2000, NULL, 0), "the watchdog keeps coming");


        /* SIGHUP re-reads policies: a second keyring appears without a restart. */
        char *both;
        cr_assert(asprintf(&both, "%s\n[keyring second]\nkind = issuer\nalg = EdDSA\nissuer = https://b.test\n",
                           RING) >= 0);
        free(test_daemon_write_config(&tok, both));
        kill(d.pid, SIGHUP);
        cr_assert(test_daemon_wait_notify(&d, "RELOADING=1", 5000, NULL, 0));
        cr_assert(test_daemon_wait_notify(&d, "STATUS=2 keyring(s)", 10000, msg, sizeof msg), "status after reload");
        cr_assert(strstr(msg, "second: active") != NULL, "%s", msg);
        /* The API keeps working after a reload (it must not hold on to the old configuration's strings). */
        char sock[512];
        long st;
        test_daemon_socket(&tok, sock, sizeof sock);
        json_decref(test_api(sock, "GET", "/v1/audit?limit=5", NULL, &st));
        cr_assert_eq(st, 200, "the audit log is readable after a reload");

        /* A broken file on SIGHUP is refused and the daemon keeps running. */
        free(test_daemon_write_config(&tok, "[keyring bad]\nalg = HS256\n"));
        kill(d.pid, SIGHUP);
        cr_assert(test_daemon_wait_notify(&d, "RELOADING=1", 5000, NULL, 0));
        cr_assert(test_daemon_wait_notify(&d, "READY=1", 5000, NULL, 0));
        cr_assert_eq(kill(d.pid, 0), 0, "still running after a bad reload");
        char *log = test_read_file(d.log, NULL);
        cr_assert(strstr(log, "keyd.conf:15: alg:") != NULL, "the reload error names the line:\n%s", log);
        free(log);

        test_daemon_stop_clean(&d);
        free(both);
        free(conf);
}

Test(daemon, bad_config_refused_with_line) {
        char *conf = test_daemon_write_config(&tok, "[keyring x]\nrotation-period = 10x\nprepublish = 2h\n");
        test_daemon_start(&d, &tok, conf, NULL);
        int status = test_daemon_stop(&d, 0);
        (void) status;
        /* kill(pid, 0) does nothing: wait for it to exit on its own. */
        cr_assert(!test_daemon_wait_notify(&d, "READY=1", 200, NULL, 0), "must not become ready");
        char *log = test_read_file(d.log, NULL);
        cr_assert(strstr(log, "keyd.conf:15: rotation-period") != NULL, "line of the bad duration:\n%s", log);
        free(log);
        free(conf);
}

Test(daemon, wrong_pin_refused_once) {
        char *bad = test_token_write_file(&tok, "pin", "wrong-pin");
        char *conf = test_daemon_write_config(&tok, RING);
        test_daemon_start(&d, &tok, conf, NULL);
        int status = test_daemon_stop(&d, 0);
        (void) status;
        char *log = test_read_file(d.log, NULL);
        cr_assert(strstr(log, "wrong PIN") != NULL, "%s", log);
        cr_assert(strstr(log, "wrong-pin") == NULL, "the PIN never reaches the log");
        free(log);
        free(conf);
        free(bad);
}

Test(daemon, check_config_lists_every_error) {
        char *conf = test_daemon_write_config(&tok, "[keyring a]\nalg = none\nprepublish = 0s\n[bogus]\n");
        char cmd[1024];
        int status;
        snprintf(cmd, sizeof cmd, "%s/keyd --check-config --config %s 2>&1", KEYD_TEST_BUILDDIR, conf);
        char *out = test_run(cmd, &status);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) != 0, "%s", out);
        cr_assert(strstr(out, "keyd.conf:15:") && strstr(out, "keyd.conf:16:") && strstr(out, "keyd.conf:17:"),
                  "every error with its line:\n%s", out);
        free(out);
        free(conf);
}
