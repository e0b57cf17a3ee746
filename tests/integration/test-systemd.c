/* SPDX-License-Identifier: MIT */
/* systemd integration without systemd as PID 1: the units verify and rate 2.0 or lower, keyd starts from sockets
 * passed by systemd-socket-activate (named "api" and "public") with its PIN from a credential directory, and the
 * sysusers.d and tmpfiles.d files apply. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/helpers/test-api.h"
#include "tests/helpers/test-daemon.h"
#include "tests/helpers/test-util.h"

/* Run a shell command: its exit status (-1 if it did not exit), its output in out (cut to size). */
static int run(const char *cmd, char *out, size_t size) {
        int status;
        char *text = test_run(cmd, &status);
        snprintf(out, size, "%s", text);
        free(text);
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The units with ExecStart pointing at the built keyd, in a fresh directory. */
static char *stage_units(void) {
        char *dir = test_mkdtemp(), cmd[2048], out[4096];
        snprintf(cmd, sizeof cmd,
                 "sed 's|/usr/sbin/keyd|%s/keyd|' %s/systemd/keyd.service > %s/keyd.service && "
                 "cp %s/systemd/keyd.socket %s/systemd/keyd-public.socket %s/ 2>&1",
                 KEYD_TEST_BUILDDIR, test_srcdir(), dir, test_srcdir(), test_srcdir(), dir);
        cr_assert_eq(run(cmd, out, sizeof out), 0, "%s", out);
        return dir;
}

Test(systemd, units_verify_and_rate_safe) {
        char *dir = stage_units(), cmd[2048], out[16384];
        snprintf(cmd, sizeof cmd, "systemd-analyze verify --man=no %s/keyd.service %s/keyd.socket %s/keyd-public.socket 2>&1",
                 dir, dir, dir);
        cr_assert_eq(run(cmd, out, sizeof out), 0, "systemd-analyze verify:\n%s", out);

        snprintf(cmd, sizeof cmd, "systemd-analyze security --offline=true %s/keyd.service 2>&1", dir);
        run(cmd, out, sizeof out);
        const char *e = strstr(out, "Overall exposure level for keyd.service: ");
        cr_assert_not_null(e, "%s", out);
        double level = atof(e + strlen("Overall exposure level for keyd.service: "));
        cr_assert_leq(level, 2.0, "exposure %.1f > 2.0", level);
        cr_log_info("systemd-analyze security: exposure %.1f", level);

        /* Type=notify, the named sockets, the credential: what the daemon relies on. */
        snprintf(cmd, sizeof cmd, "%s/keyd.service", dir);
        char *unit = test_read_file(cmd, NULL);
        cr_assert(strstr(unit, "Type=notify") && strstr(unit, "LoadCredential=pin:") && strstr(unit, "WatchdogSec="));
        free(unit);
        test_rmrf(dir);
        free(dir);
}

static TestDaemon d = { .notify_fd = -1 };

/* Whatever happens in the test, its daemon does not outlive it. */
static void kill_daemon(void) {
        test_daemon_done(&d);
}

Test(systemd, socket_activation_and_credential, .timeout = 90, .fini = kill_daemon) {
        TestToken tok;
        char cfg[4096], sock[512], listen_pub[64], creds[512], url[128];
        long st;

        test_token_setup(&tok);
        /* The PIN only as a credential: no pin-file in the configuration. */
        snprintf(creds, sizeof creds, "%s/creds", tok.dir);
        cr_assert_eq(mkdir(creds, 0700), 0);
        char *pin = test_read_file(tok.pin_file, NULL);
        char *cred_pin;
        cr_assert(asprintf(&cred_pin, "%s/pin", creds) >= 0);
        FILE *f = fopen(cred_pin, "we");
        fputs(pin, f);
        fclose(f);
        unlink(tok.pin_file);

        snprintf(sock, sizeof sock, "%s/activated.sock", tok.dir);
        int port = test_free_port();
        snprintf(listen_pub, sizeof listen_pub, "127.0.0.1:%d", port);
        snprintf(cfg, sizeof cfg,
                 "[token]\nmodule = %s\nuri = %s\nsofthsm2-conf = %s\n[store]\npath = %s/keyd.db\n"
                 "[api]\nsocket = %s/unused.sock\n"
                 "[keyring default]\nkind = issuer\nalg = ES256\nissuer = https://issuer.test\n",
                 tok.module, tok.uri, tok.conf, tok.dir, tok.dir);
        char *conf = test_token_write_file(&tok, "keyd.conf", cfg);

        /* Start keyd under systemd-socket-activate, which binds both sockets and passes them by name. */
        test_daemon_start(&d, &tok, conf, NULL); /* only to get a notify socket and a log file */
        test_daemon_stop(&d, SIGKILL);
        pid_t pid = fork();
        cr_assert(pid >= 0);
        if (pid == 0) {
                char e_notify[600], e_creds[600];
                int fd = open(d.log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
                if (fd >= 0) {
                        dup2(fd, STDOUT_FILENO);
                        dup2(fd, STDERR_FILENO);
                }
                snprintf(e_notify, sizeof e_notify, "NOTIFY_SOCKET=%s", d.notify_path);
                snprintf(e_creds, sizeof e_creds, "CREDENTIALS_DIRECTORY=%s", creds);
                execlp("systemd-socket-activate", "systemd-socket-activate", "-l", sock, "-l", listen_pub,
                       "--fdname=api:public", "-E", e_notify, "-E", e_creds, KEYD_TEST_BUILDDIR "/keyd", "--config",
                       conf, (char *) NULL);
                _exit(127);
        }
        d.pid = pid;
        /* systemd-socket-activate starts keyd at the first connection: make one. */
        for (int i = 0; i < 100 && access(sock, F_OK) < 0; i++)
                usleep(20000);
        json_t *h = test_api(sock, "GET", "/healthz", NULL, &st);
        cr_assert_eq(st, 200, "the first request through the passed socket");
        json_decref(h);
        cr_assert(test_daemon_wait_notify(&d, "READY=1", 30000, NULL, 0));
        cr_assert(access(tok.pin_file, F_OK) < 0, "no PIN file was used");

        json_t *t = test_api(sock, "POST", "/v1/keyrings/default/tokens", "{\"sub\":\"a\"}", &st);
        cr_assert_eq(st, 403, "root is admin but not in default's sign-users: the API works and authorises");
        json_decref(t);
        snprintf(url, sizeof url, "http://%s/.well-known/jwks.json", listen_pub);
        char *body = test_http_get(url, NULL, &st, NULL);
        cr_assert_eq(st, 200, "the public listener is the passed socket named public");
        cr_assert(strstr(body, "\"keys\"") != NULL);
        free(body);
        char *log = test_read_file(d.log, NULL);
        cr_assert(strstr(log, "the socket passed by systemd") != NULL, "%s", log);
        free(log);
        test_daemon_stop_clean(&d);
        test_daemon_done(&d);
        free(pin), free(cred_pin), free(conf);
        test_token_teardown(&tok);
}

Test(systemd, sysusers_and_tmpfiles_apply) {
        char *root = test_mkdtemp(), cmd[2048], out[8192];
        snprintf(cmd, sizeof cmd,
                 "mkdir -p %s/etc && touch %s/etc/passwd %s/etc/group && echo softhsm:x:995: > %s/etc/group && "
                 "systemd-sysusers --root=%s %s/systemd/keyd.sysusers 2>&1 && "
                 "systemd-tmpfiles --root=%s --create %s/systemd/keyd.tmpfiles 2>&1",
                 root, root, root, root, root, test_srcdir(), root, test_srcdir());
        cr_assert_eq(run(cmd, out, sizeof out), 0, "%s", out);
        snprintf(cmd, sizeof cmd, "%s/etc/passwd", root);
        char *pw = test_read_file(cmd, NULL);
        cr_assert(strstr(pw, "keyd:") != NULL);
        free(pw);
        snprintf(cmd, sizeof cmd, "%s/etc/group", root);
        char *gr = test_read_file(cmd, NULL);
        cr_assert(strstr(gr, "keyd-admin:") && strstr(gr, "keyd-sign:") && strstr(gr, "softhsm:x:995:keyd"), "%s", gr);
        free(gr);
        snprintf(cmd, sizeof cmd, "%s/var/lib/keyd/jwks", root);
        struct stat s;
        cr_assert_eq(stat(cmd, &s), 0);
        cr_assert_eq(s.st_mode & 07777, 0755);
        test_rmrf(root);
        free(root);
}
