/* SPDX-License-Identifier: MIT */
#include <criterion/criterion.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/macro.h"
#include "tests/helpers/test-util.h"

const char *test_srcdir(void) {
        const char *e = getenv("KEYD_TEST_SRCDIR");
        return e && *e ? e : KEYD_TEST_SRCDIR;
}

char *test_path(const char *rel) {
        char *p;
        cr_assert(asprintf(&p, "%s/%s", test_srcdir(), rel) >= 0);
        return p;
}

char *test_mkdtemp(void) {
        const char *tmp = getenv("TMPDIR");
        char *p;
        cr_assert(asprintf(&p, "%s/keyd-test.XXXXXX", tmp && *tmp ? tmp : "/tmp") >= 0);
        cr_assert_not_null(mkdtemp(p), "mkdtemp: %m");
        return p;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        (void) st, (void) flag, (void) ftw;
        return remove(path);
}

void test_rmrf(const char *path) {
        if (path)
                (void) nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

char *test_read_file(const char *path, size_t *ret_len) {
        FILE *f = fopen(path, "re");
        cr_assert_not_null(f, "open %s: %m", path);
        cr_assert_eq(fseek(f, 0, SEEK_END), 0);
        long n = ftell(f);
        cr_assert(n >= 0);
        rewind(f);
        char *buf = malloc((size_t) n + 1);
        cr_assert_not_null(buf);
        cr_assert_eq(fread(buf, 1, (size_t) n, f), (size_t) n);
        buf[n] = 0;
        fclose(f);
        if (ret_len)
                *ret_len = (size_t) n;
        return buf;
}

uint8_t *test_unhex(const char *hex, size_t *ret_len) {
        size_t n = strlen(hex);
        if (n % 2)
                return NULL;
        uint8_t *out = malloc(n / 2 + 1);
        cr_assert_not_null(out);
        for (size_t i = 0; i < n / 2; i++) {
                unsigned v;
                if (sscanf(hex + 2 * i, "%2x", &v) != 1) {
                        free(out);
                        return NULL;
                }
                out[i] = (uint8_t) v;
        }
        *ret_len = n / 2;
        return out;
}
