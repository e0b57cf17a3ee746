/* SPDX-License-Identifier: MIT */
#pragma once

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Helpers shared by keyd's tests. They abort the test (criterion) on failure of the environment, never silently. */

#define TEST_NOBODY 65534 /* uid and gid of nobody */

/* The source tree (vectors, corpus): $KEYD_TEST_SRCDIR or the build's. */
const char *test_srcdir(void);
/* A new string: test_srcdir() + "/" + rel. */
char *test_path(const char *rel);
/* The JSON file test_path(rel) (a vector), duplicate members refused. */
json_t *test_load_json(const char *rel);
/* A new private directory under $TMPDIR (mkdtemp); the caller removes it with test_rmrf(). */
char *test_mkdtemp(void);
void test_rmrf(const char *path);
/* Whole file into a new NUL-terminated buffer. */
char *test_read_file(const char *path, size_t *ret_len);
/* The end of a file (a log) into buf, so that a failing assertion can show it without leaking a heap copy. */
const char *test_file_tail(const char *path, char *buf, size_t size);
/* Hex to bytes into a new buffer; NULL on bad hex. */
uint8_t *test_unhex(const char *hex, size_t *ret_len);
/* Run a shell command (popen): its whole output as a new string, its wait status in *ret_status. */
char *test_run(const char *cmd, int *ret_status);
/* A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then closed). */
int test_free_port(void);
/* fork(): in the child, returns 0 as uid and gid nobody, without supplementary groups (the child exits 99 if it cannot
 * drop its privileges); in the parent, the child's pid. */
pid_t test_fork_as_nobody(void);
/* Wait for a child: its exit status, or 128 + the signal that killed it. */
int test_wait_child(pid_t pid);
