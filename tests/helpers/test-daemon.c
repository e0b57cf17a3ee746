/* SPDX-License-Identifier: MIT */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/macro.h"
#include "tests/helpers/test-daemon.h"
#include "tests/helpers/test-util.h"

const char *test_daemon_socket(TestToken *t, char *ret, size_t size) {
        snprintf(ret, size, "%s/keyd.sock", t->dir);
        return ret;
}

char *test_daemon_write_config(TestToken *t, const char *rings) {
        char *text;
        cr_assert(asprintf(&text,
                           "[token]\nmodule = %s\nuri = %s\npin-file = %s\nsofthsm2-conf = %s\n\n"
                           "[store]\npath = %s/keyd.db\n\n[api]\nsocket = %s/keyd.sock\nworkers = 2\n\n%s",
                           t->module, t->uri, t->pin_file, t->conf, t->dir, t->dir, rings) >= 0);
        char *path = test_token_write_file(t, "keyd.conf", text);
        free(text);
        return path;
}

void test_daemon_start(TestDaemon *d, TestToken *t, const char *config, const char *extra_env) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        static int counter;

        memset(d, 0, sizeof *d);
        d->config = strdup(config);
        cr_assert(asprintf(&d->notify_path, "%s/notify-%d", t->dir, counter++) >= 0);
        cr_assert(asprintf(&d->log, "%s/keyd.log", t->dir) >= 0);
        d->notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        cr_assert(d->notify_fd >= 0);
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", d->notify_path);
        unlink(d->notify_path);
        cr_assert_eq(bind(d->notify_fd, (struct sockaddr *) &sa, sizeof sa), 0, "bind %s: %m", d->notify_path);

        d->pid = fork();
        cr_assert(d->pid >= 0);
        if (d->pid == 0) {
                int fd = open(d->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
                if (fd >= 0) {
                        dup2(fd, STDERR_FILENO);
                        dup2(fd, STDOUT_FILENO);
                }
                setenv("NOTIFY_SOCKET", d->notify_path, 1);
                unsetenv("JOURNAL_STREAM");
                if (extra_env)
                        putenv((char *) extra_env);
                /* KEYD_TEST_KEYD runs another build of keyd (to show that a regression test fails on it). */
                const char *bin = getenv("KEYD_TEST_KEYD") ?: KEYD_TEST_BUILDDIR "/keyd";
                execl(bin, "keyd", "--config", config, (char *) NULL);
                _exit(127);
        }
}

static void wait_ready(TestDaemon *d) {
        char log[4096];
        if (!test_daemon_wait_notify(d, "READY=1", 30000, NULL, 0))
                cr_assert_fail("keyd did not become ready:\n%s", test_file_tail(d->log, log, sizeof log));
}

void test_daemon_start_ready(TestDaemon *d, TestToken *t, const char *config) {
        test_daemon_start(d, t, config, NULL);
        wait_ready(d);
}

void test_daemon_start_rings(TestDaemon *d, TestToken *t, const char *rings) {
        char *conf = test_daemon_write_config(t, rings);
        test_daemon_start(d, t, conf, NULL);
        free(conf);
        wait_ready(d);
}

int test_daemon_start_public(TestDaemon *d, TestToken *t, const char *rings, int timeout_ms) {
        char log[8192] = "";

        for (int attempt = 0; attempt < 4; attempt++) {
                int port = test_free_port();
                char *text, *conf;
                cr_assert(asprintf(&text, "[public]\nlisten = 127.0.0.1:%d\n\n%s", port, rings) >= 0);
                conf = test_daemon_write_config(t, text);
                free(text);
                test_daemon_start(d, t, conf, NULL);
                free(conf);
                if (test_daemon_wait_notify(d, "READY=1", timeout_ms, NULL, 0))
                        return port;
                test_file_tail(d->log, log, sizeof log);
                cr_assert_eq(d->pid, 0, "keyd not ready within %d s:\n%s", timeout_ms / 1000, log);
                /* Only a port taken meanwhile is worth another try. */
                cr_assert(strstr(log, "Address already in use"), "keyd exited before READY=1:\n%s", log);
                unlink(d->log); /* the next attempt's log is its own */
                test_daemon_done(d);
        }
        cr_assert_fail("keyd found its public port taken four times, the last with:\n%s", log);
        return -1;
}

static long now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool test_daemon_wait_notify(TestDaemon *d, const char *text, int timeout_ms, char *out, size_t size) {
        long end = now_ms() + timeout_ms;
        char buf[4096];

        for (;;) {
                long left = end - now_ms();
                if (left <= 0)
                        return false;
                struct pollfd p = { d->notify_fd, POLLIN, 0 };
                if (poll(&p, 1, (int) MIN(left, 100)) <= 0) {
                        /* A daemon that has exited will say nothing more: do not wait out the timeout. */
                        int status;
                        if (d->pid > 0 && waitpid(d->pid, &status, WNOHANG) == d->pid) {
                                d->pid = 0;
                                return false;
                        }
                        continue;
                }
                ssize_t n = recv(d->notify_fd, buf, sizeof buf - 1, 0);
                if (n <= 0)
                        continue;
                buf[n] = 0;
                if (strstr(buf, text)) {
                        if (out)
                                snprintf(out, size, "%s", buf);
                        return true;
                }
        }
}

int test_daemon_stop(TestDaemon *d, int sig) {
        int status = 0;
        if (d->pid <= 0)
                return 0;
        kill(d->pid, sig);
        /* Bounded: a daemon that does not stop within 30 s fails the test, and is killed. */
        for (int i = 0; i < 3000; i++) {
                /* What the test did not wait for: a service manager reads every message, and keyd's loop blocks
                 * in sd_notify() while the socket's queue (net.unix.max_dgram_qlen, often 10) is full. */
                char buf[1024];
                while (d->notify_fd >= 0 && recv(d->notify_fd, buf, sizeof buf, MSG_DONTWAIT) >= 0)
                        ;
                pid_t r = waitpid(d->pid, &status, WNOHANG);
                if (r == d->pid) {
                        d->pid = 0;
                        return status;
                }
                usleep(10000);
        }
        kill(d->pid, SIGKILL);
        waitpid(d->pid, &status, 0);
        d->pid = 0;
        cr_assert_fail("keyd did not stop within 30 s of signal %d", sig);
        return status;
}

void test_daemon_stop_clean(TestDaemon *d) {
        char log[4096];
        int status = test_daemon_stop(d, SIGTERM);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                cr_assert_fail("keyd did not stop cleanly on SIGTERM (wait status %d):\n%s", status,
                               test_file_tail(d->log, log, sizeof log));
}

const char *test_daemon_open_socket(TestToken *t, char *ret, size_t size) {
        test_daemon_socket(t, ret, size);
        cr_assert_eq(chmod(t->dir, 0755), 0, "chmod %s: %m", t->dir);
        cr_assert_eq(chmod(ret, 0666), 0, "chmod %s: %m", ret);
        return ret;
}

void test_daemon_done(TestDaemon *d) {
        if (d->pid > 0) {
                kill(d->pid, SIGKILL);
                waitpid(d->pid, NULL, 0);
        }
        if (d->notify_fd >= 0)
                close(d->notify_fd);
        if (d->notify_path)
                unlink(d->notify_path);
        free(d->notify_path);
        free(d->config);
        free(d->log);
        memset(d, 0, sizeof *d);
        d->notify_fd = -1;
}

void test_daemon_teardown(TestDaemon *d, TestToken *t) {
        test_daemon_done(d);
        test_token_teardown(t);
}
