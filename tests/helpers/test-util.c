/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <ftw.h>
#include <grp.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

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

json_t *test_load_json(const char *rel) {
        char *path = test_path(rel);
        json_error_t error;
        json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &error);
        cr_assert_not_null(j, "%s:%d: %s", path, error.line, error.text);
        free(path);
        return j;
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

const char *test_file_tail(const char *path, char *buf, size_t size) {
        size_t len;
        char *text = test_read_file(path, &len);
        snprintf(buf, size, "%s", len >= size ? text + len - (size - 1) : text);
        free(text);
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

char *test_run(const char *cmd, int *ret_status) {
        char buf[4096], *out = NULL;
        size_t len = 0, n;
        FILE *p = popen(cmd, "re");

        cr_assert_not_null(p, "popen %s: %m", cmd);
        do {
                n = fread(buf, 1, sizeof buf, p);
                char *more = realloc(out, len + n + 1);
                cr_assert_not_null(more);
                out = more;
                memcpy(out + len, buf, n);
                len += n;
                out[len] = 0;
        } while (n > 0);
        *ret_status = pclose(p);
        return out;
}

int test_free_port(void) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof sa;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        cr_assert(fd >= 0, "socket: %m");
        cr_assert_eq(bind(fd, (struct sockaddr *) &sa, sizeof sa), 0, "bind 127.0.0.1:0: %m");
        cr_assert_eq(getsockname(fd, (struct sockaddr *) &sa, &len), 0);
        close(fd);
        return ntohs(sa.sin_port);
}

pid_t test_fork_as_nobody(void) {
        pid_t pid = fork();
        cr_assert(pid >= 0, "fork: %m");
        if (pid == 0 && (setgroups(0, NULL) < 0 || setresgid(TEST_NOBODY, TEST_NOBODY, TEST_NOBODY) < 0 ||
                         setresuid(TEST_NOBODY, TEST_NOBODY, TEST_NOBODY) < 0))
                _exit(99);
        return pid;
}

int test_wait_child(pid_t pid) {
        int status;
        cr_assert_eq(waitpid(pid, &status, 0), pid, "waitpid %d: %m", (int) pid);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
