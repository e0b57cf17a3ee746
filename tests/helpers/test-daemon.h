/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

#include "tests/helpers/test-token.h"

/* The real keyd binary started by a test, with a NOTIFY_SOCKET the test listens on (sd_notify without systemd). */
typedef struct TestDaemon {
        pid_t pid;
        int notify_fd;
        char *notify_path;
        char *config;
        char *log;         /* its stderr */
} TestDaemon;

/* The path of the socket test_daemon_write_config() configures (keyd.sock in the token's directory), into ret. */
const char *test_daemon_socket(TestToken *t, char *ret, size_t size);
/* Write a keyd.conf in the token's directory: the token, a database and JWKS files there, and the [keyring] sections
 * given in rings (text appended as is). Returns the path. */
char *test_daemon_write_config(TestToken *t, const char *rings);
/* Start build/keyd --config CONFIG with extra environment ("WATCHDOG_USEC=100000", may be NULL). */
void test_daemon_start(TestDaemon *d, TestToken *t, const char *config, const char *extra_env);
/* test_daemon_start() without extra environment, and wait up to 30 s for READY=1 (failing with the end of its log). */
void test_daemon_start_ready(TestDaemon *d, TestToken *t, const char *config);
/* test_daemon_write_config(t, rings) and test_daemon_start_ready() on it. */
void test_daemon_start_rings(TestDaemon *d, TestToken *t, const char *rings);
/* test_daemon_start_rings() with a public listener on a free port of 127.0.0.1 ("[public]" before rings), waiting
 * timeout_ms for READY=1; returns the port. The port may be taken by another process before keyd binds it: a keyd
 * that exits for that reason is started again on another port, up to four times. */
int test_daemon_start_public(TestDaemon *d, TestToken *t, const char *rings, int timeout_ms);
/* Wait for a notify message containing text, up to timeout_ms; returns true if it came. The message is copied to
 * out (if given). */
bool test_daemon_wait_notify(TestDaemon *d, const char *text, int timeout_ms, char *out, size_t size);
/* Send sig and wait for the process; returns its wait status. */
int test_daemon_stop(TestDaemon *d, int sig);
/* SIGTERM, asserting a clean exit (status 0: under ASan, no leak and no error on the way out). */
void test_daemon_stop_clean(TestDaemon *d);
/* test_daemon_socket(), and let every uid (nobody's children in the authorisation tests) reach that socket. */
const char *test_daemon_open_socket(TestToken *t, char *ret, size_t size);
void test_daemon_done(TestDaemon *d);
/* test_daemon_done() and test_token_teardown(): what a test leaves behind, whatever happened in it. */
void test_daemon_teardown(TestDaemon *d, TestToken *t);
