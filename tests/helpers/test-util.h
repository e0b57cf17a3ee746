/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* Helpers shared by keyd's tests. They abort the test (criterion) on failure of the environment, never silently. */

/* The source tree (vectors, corpus): $KEYD_TEST_SRCDIR or the build's. */
const char *test_srcdir(void);
/* A new string: test_srcdir() + "/" + rel. */
char *test_path(const char *rel);
/* A new private directory under $TMPDIR (mkdtemp); the caller removes it with test_rmrf(). */
char *test_mkdtemp(void);
void test_rmrf(const char *path);
/* Whole file into a new NUL-terminated buffer. */
char *test_read_file(const char *path, size_t *ret_len);
/* Hex to bytes into a new buffer; NULL on bad hex. */
uint8_t *test_unhex(const char *hex, size_t *ret_len);
