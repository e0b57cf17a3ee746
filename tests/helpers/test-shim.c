/* SPDX-License-Identifier: MIT */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "tests/helpers/test-shim.h"

#define STORE(s, field, v) __atomic_store_n(&(s)->ctl->field, (v), __ATOMIC_RELEASE)

const char *test_shim_module(void) {
        return KEYD_TEST_BUILDDIR "/tests/shim/p11shim.so";
}

void test_shim_setup(TestShim *s, const char *dir, const char *module) {
        *s = (TestShim){};
        cr_assert_eq(access(test_shim_module(), R_OK), 0, "%s: %m (make tests builds it)", test_shim_module());
        cr_assert(asprintf(&s->path, "%s/p11shim.ctl", dir) >= 0);
        int fd = open(s->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        cr_assert(fd >= 0, "create %s: %m", s->path);
        /* A new file reads as zeros: no latency, no hang, no fault, no counts. */
        cr_assert_eq(ftruncate(fd, sizeof(P11ShimControl)), 0);
        s->ctl = mmap(NULL, sizeof(P11ShimControl), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        close(fd);
        cr_assert(s->ctl != MAP_FAILED, "mmap %s: %m", s->path);
        s->ctl->version = P11SHIM_VERSION;
        s->ctl->size = sizeof(P11ShimControl);
        STORE(s, magic, P11SHIM_MAGIC);
        cr_assert_eq(setenv("P11SHIM_CONTROL", s->path, 1), 0);
        cr_assert_eq(setenv("P11SHIM_MODULE", module, 1), 0);
}

void test_shim_use(TestShim *s, TestToken *t) {
        test_shim_setup(s, t->dir, t->module);
        t->module = test_shim_module();
}

void test_shim_teardown(TestShim *s) {
        if (s->ctl && s->ctl != MAP_FAILED)
                munmap(s->ctl, sizeof(P11ShimControl));
        free(s->path);
        *s = (TestShim){};
}

void test_shim_fault(TestShim *s, P11ShimFunction fn, unsigned long rv, long count) {
        cr_assert(fn > P11SHIM_FN_NONE && fn < _P11SHIM_FN_MAX);
        /* fault_count is the switch (p11shim.h): off while the rest changes, set last. */
        STORE(s, fault_count, 0);
        STORE(s, fault_function, (int32_t) fn);
        STORE(s, fault_rv, (uint64_t) rv);
        STORE(s, fault_count, (int64_t) count);
}

void test_shim_clear_fault(TestShim *s) {
        STORE(s, fault_count, 0);
        STORE(s, fault_function, (int32_t) P11SHIM_FN_NONE);
}

void test_shim_set_sign_latency(TestShim *s, uint32_t us) {
        STORE(s, sign_latency_us, us);
}

void test_shim_set_keygen_latency(TestShim *s, uint32_t us) {
        STORE(s, keygen_latency_us, us);
}

void test_shim_set_hang(TestShim *s, bool on) {
        STORE(s, hang, on ? 1u : 0u);
}

uint64_t test_shim_calls(TestShim *s, P11ShimFunction fn) {
        cr_assert(fn > P11SHIM_FN_NONE && fn < _P11SHIM_FN_MAX);
        return __atomic_load_n(&s->ctl->calls[fn], __ATOMIC_ACQUIRE);
}

bool test_shim_wait_hung(TestShim *s, uint64_t n, int timeout_ms) {
        struct timespec ms = { .tv_nsec = 1000000 };
        for (int i = 0; i < timeout_ms; i++) {
                if (test_shim_get(s, hung) >= n)
                        return true;
                nanosleep(&ms, NULL);
        }
        return test_shim_get(s, hung) >= n;
}
