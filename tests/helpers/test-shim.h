/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "tests/helpers/test-token.h"
#include "tests/shim/p11shim.h"

/* The PKCS#11 shim (tests/shim/p11shim.h) for one test: a control file in the test's directory, mapped here, and
 * this process's environment pointing at it, so that hsm_open() in the test and a keyd the test starts (which
 * inherits the environment) both load the shim under the test's control:
 *
 *         TestShim shim;
 *         test_token_setup(&t);
 *         test_shim_use(&shim, &t);                   t.module is the shim from now on
 *         Hsm *h = test_token_open(&t, 2);            or test_daemon_start_rings(&d, &t, rings)
 *         test_shim_fault(&shim, P11SHIM_FN_SIGN, CKR_DEVICE_ERROR, 1);
 *         ... test_shim_calls(&shim, P11SHIM_FN_SIGN), test_shim_get(&shim, faults_injected) ...
 *         test_shim_teardown(&shim);                  before test_token_teardown() */
typedef struct TestShim {
        char *path;          /* the control file */
        P11ShimControl *ctl; /* mapped MAP_SHARED: what keyd's shim sees */
} TestShim;

/* The built shim: KEYD_TEST_BUILDDIR/tests/shim/p11shim.so. */
const char *test_shim_module(void);
/* Make and map the control file dir/p11shim.ctl, everything off, and set P11SHIM_CONTROL to it and P11SHIM_MODULE
 * to module (the real module the shim forwards to) in this process. */
void test_shim_setup(TestShim *s, const char *dir, const char *module);
/* test_shim_setup() in the token's directory, forwarding to the token's module, and t->module = the shim: the test's
 * hsm_open() (test_token_open()) and the [token] module of test_daemon_write_config() load the shim. */
void test_shim_use(TestShim *s, TestToken *t);
/* Unmap (the file goes with the test's directory). */
void test_shim_teardown(TestShim *s);

/* Arm a fault: count > 0 that many calls of fn fail with rv, < 0 every call until cleared. fn may be P11SHIM_FN_ALL. */
void test_shim_fault(TestShim *s, P11ShimFunction fn, unsigned long rv, long count);
void test_shim_clear_fault(TestShim *s);
void test_shim_set_sign_latency(TestShim *s, uint32_t us);
void test_shim_set_keygen_latency(TestShim *s, uint32_t us);
/* While on, every C_Sign blocks (test_shim_get(s, hung) counts the blocked threads); off releases them. */
void test_shim_set_hang(TestShim *s, bool on);

/* A field of the control, read atomically: test_shim_get(&shim, faults_injected). */
#define test_shim_get(s, field) __atomic_load_n(&(s)->ctl->field, __ATOMIC_ACQUIRE)
/* Calls of fn the shim received (faulted ones too). */
uint64_t test_shim_calls(TestShim *s, P11ShimFunction fn);
/* Wait until at least n threads are blocked by the hang, polling every millisecond for at most timeout_ms: whether
 * they came. */
bool test_shim_wait_hung(TestShim *s, uint64_t n, int timeout_ms);
