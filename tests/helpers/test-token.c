/* SPDX-License-Identifier: MIT */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/hex.h"
#include "tests/helpers/test-token.h"
#include "tests/helpers/test-util.h"

static const char *module_path(void) {
        const char *m = getenv("SOFTHSM_MODULE");
        return m && *m ? m : KEYD_DEFAULT_MODULE;
}

char *test_token_write_file(TestToken *t, const char *name, const char *s) {
        char *p;
        cr_assert(asprintf(&p, "%s/%s", t->dir, name) >= 0);
        int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        cr_assert(fd >= 0, "create %s: %m", p);
        cr_assert_eq(write(fd, s, strlen(s)), (ssize_t) strlen(s));
        close(fd);
        return p;
}

void test_token_setup(TestToken *t) {
        char conf[1024], pin[33];
        unsigned char rnd[16];

        memset(t, 0, sizeof *t);
        t->module = module_path();
        t->dir = test_mkdtemp();
        cr_assert(asprintf(&t->conf, "%s/softhsm2.conf", t->dir) >= 0);
        char *tokens;
        cr_assert(asprintf(&tokens, "%s/tokens", t->dir) >= 0);
        cr_assert_eq(mkdir(tokens, 0700), 0);
        snprintf(conf, sizeof conf,
                 "directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
                 tokens);
        free(tokens);
        free(test_token_write_file(t, "softhsm2.conf", conf));
        cr_assert_eq(setenv("SOFTHSM2_CONF", t->conf, 1), 0);

        FILE *f = fopen("/dev/urandom", "re");
        cr_assert_not_null(f);
        cr_assert_eq(fread(rnd, 1, sizeof rnd, f), sizeof rnd);
        fclose(f);
        hex_encode(rnd, sizeof rnd, pin, sizeof pin);

        cr_assert_eq(hsm_token_init(t->module, TEST_TOKEN_LABEL, TEST_SO_PIN, pin), 0, "token init: %s",
                     hsm_last_error());
        t->pin_file = test_token_write_file(t, "pin", pin);
        t->uri = strdup("pkcs11:token=" TEST_TOKEN_LABEL);
}

void test_token_teardown(TestToken *t) {
        test_rmrf(t->dir);
        free(t->dir);
        free(t->conf);
        free(t->pin_file);
        free(t->uri);
        memset(t, 0, sizeof *t);
}

Hsm *test_token_open(TestToken *t, unsigned sessions) {
        Hsm *h = NULL;
        HsmConfig cfg = { .module = t->module, .uri = t->uri, .pin_file = t->pin_file, .sessions = sessions };
        int r = hsm_open(&cfg, &h);
        cr_assert_eq(r, 0, "hsm_open: %s (%s)", strerror(-r), hsm_last_error());
        return h;
}
