/* SPDX-License-Identifier: MIT */
#pragma once

#include "pkcs11/hsm.h"

/* A private SoftHSM2 token for one test: its own config and token directory under mkdtemp, SOFTHSM2_CONF pointing
 * at it (set in this process only: criterion runs every test in its own process), a random user PIN in a 0600 file. */
typedef struct TestToken {
        char *dir;
        char *conf;
        char *pin_file;
        char *uri;
        const char *module;
} TestToken;

#define TEST_TOKEN_LABEL "keyd-test"
#define TEST_SO_PIN "so-pin-for-tests"

void test_token_setup(TestToken *t);
void test_token_teardown(TestToken *t);
/* hsm_open() on the test token; asserts success. */
Hsm *test_token_open(TestToken *t, unsigned sessions);
/* Write s to a new file in the test dir (mode 0600); returns its path. */
char *test_token_write_file(TestToken *t, const char *name, const char *s);
