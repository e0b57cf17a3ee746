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

/* Write a keyd.conf in the token's directory: the token, a database and JWKS files there, and the [keyring] sections
 * given in rings (text appended as is). Returns the path. */
char *test_daemon_write_config(TestToken *t, const char *rings);
/* Start build/keyd --config CONFIG with extra environment ("WATCHDOG_USEC=100000", may be NULL). */
void test_daemon_start(TestDaemon *d, TestToken *t, const char *config, const char *extra_env);
/* Wait for a notify message containing text, up to timeout_ms; returns true if it came. The message is copied to
 * out (if given). */
bool test_daemon_wait_notify(TestDaemon *d, const char *text, int timeout_ms, char *out, size_t size);
/* Send sig and wait for the process; returns its wait status. */
int test_daemon_stop(TestDaemon *d, int sig);
void test_daemon_done(TestDaemon *d);
