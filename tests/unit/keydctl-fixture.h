/* SPDX-License-Identifier: MIT */
#pragma once

/* The keydctl tests' fixture: keydctl run as a process (build/keydctl) against a fake keyd, a Unix socket in a
 * private directory that answers canned HTTP replies from tests/data/keydctl/NAME.http and records what it was asked.
 * The tests check the output (tables against tests/data/keydctl/NAME.out, --json against the canned bodies), the
 * requests' bodies, and the exit statuses of keydctl(1): 0 ok, 1 refused or invalid, 2 usage, 3 cannot reach keyd,
 * 4 forbidden, 5 not found, 6 conflict, 7 unprocessable. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>

#include "common/macro.h"
#include "tests/helpers/test-util.h"

#define KEYDCTL KEYD_TEST_BUILDDIR "/keydctl"
#define NOW "2026-11-23T04:00:00Z" /* the "now" of the canned keyrings, @1795406400 */
#define KID_ACTIVE "0aWsmgFfrC73s0FnNjVRKhUR9B_jfREbJn8DnuxdT1g"
#define KID_NEXT "arnx6499M4j0-dWG9m6Z_VQIDfLERvDlhmiwnAihbdA"
#define MAX_REQUESTS 64

extern char **environ;

/* A route: "METHOD PATH" (with the query, if any) → a file under tests/data/keydctl, or a special answer:
 * "@audit" serves audit-records.json by after/limit, "@slow" answers after 3 s, "@big" announces a 17 MiB body. */
typedef struct Route {
        const char *request, *file;
} Route;

static struct {
        char *dir, *socket;
        int fd;
        bool running;
        pthread_t thread;
        const Route *routes;
        atomic_bool stop;
        pthread_mutex_t lock;
        size_t n;
        char *request[MAX_REQUESTS], *body[MAX_REQUESTS];
} srv = { .fd = -1, .lock = PTHREAD_MUTEX_INITIALIZER };

static inline void send_all(int fd, const void *p, size_t n) {
        while (n > 0) {
                ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
                if (w <= 0)
                        return; /* the client gave up (a cap, a timeout): not the server's problem */
                p = (const char *) p + w;
                n -= (size_t) w;
        }
}

static inline void reply(int fd, const char *status, const char *body) {
        char head[512];
        int n = snprintf(head, sizeof head,
                         "HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                         "Connection: close\r\n\r\n",
                         status, strlen(body));
        send_all(fd, head, (size_t) n);
        send_all(fd, body, strlen(body));
}

/* A canned reply: a status line, header lines, a blank line, the body; LF line ends, made CRLF here. */
static inline void reply_file(int fd, const char *name) {
        _cleanup_free_ char *rel = NULL, *path = NULL, *text = NULL, *head = NULL;
        char *sep, *p;
        size_t len = 0;

        /* In the server's thread: no cr_assert here (it cannot end the test from this thread). */
        if (asprintf(&rel, "tests/data/keydctl/%s", name) < 0)
                return;
        path = test_path(rel);
        text = test_read_file(path, NULL);
        sep = strstr(text, "\n\n");
        head = sep ? malloc(strlen(text) * 2 + 128) : NULL;
        if (!head) {
                reply(fd, "500 Internal Server Error", "{\"error\":\"internal\",\"message\":\"bad canned reply\"}");
                return;
        }
        *sep = 0;
        for (p = text; *p; p++) {
                if (*p == '\n')
                        head[len++] = '\r';
                head[len++] = *p;
        }
        len += (size_t) sprintf(head + len, "\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n", strlen(sep + 2));
        send_all(fd, head, len);
        send_all(fd, sep + 2, strlen(sep + 2));
}

static inline void reply_audit(int fd, const char *query) {
        _cleanup_free_ char *path = test_path("tests/data/keydctl/audit-records.json"), *out = NULL;
        json_t *all = json_load_file(path, 0, NULL), *records = json_array(), *r;
        unsigned long long after = 0, limit = 100, next;
        const char *a = strstr(query, "after="), *l = strstr(query, "limit=");
        size_t i;

        if (!all || !records)
                return;
        if (a)
                after = strtoull(a + 6, NULL, 10);
        if (l)
                limit = strtoull(l + 6, NULL, 10);
        next = after;
        json_array_foreach(all, i, r) {
                json_int_t seq = json_integer_value(json_object_get(r, "seq"));
                if ((unsigned long long) seq > after && json_array_size(records) < limit) {
                        json_array_append(records, r);
                        next = (unsigned long long) seq;
                }
        }
        json_t *page = json_pack("{s:o, s:I}", "records", records, "next", (json_int_t) next);
        out = json_dumps(page, JSON_COMPACT);
        reply(fd, "200 OK", out ?: "{}");
        json_decref(page);
        json_decref(all);
}

static inline void serve_one(int fd) {
        char buf[128 * 1024], method[16], target[1024], *end, *cl;
        size_t len = 0, body_len = 0, head_len;
        const Route *route = NULL;

        for (;;) {
                ssize_t n = recv(fd, buf + len, sizeof buf - 1 - len, 0);
                if (n <= 0)
                        return;
                len += (size_t) n;
                buf[len] = 0;
                if ((end = strstr(buf, "\r\n\r\n")))
                        break;
        }
        head_len = (size_t) (end - buf) + 4;
        cl = strcasestr(buf, "\r\nContent-Length:");
        if (cl && cl < end)
                body_len = strtoul(cl + 17, NULL, 10);
        while (len < head_len + body_len && len < sizeof buf - 1) {
                ssize_t n = recv(fd, buf + len, sizeof buf - 1 - len, 0);
                if (n <= 0)
                        return;
                len += (size_t) n;
        }
        buf[head_len + body_len] = 0;
        if (sscanf(buf, "%15s %1023s", method, target) != 2)
                return;

        pthread_mutex_lock(&srv.lock);
        if (srv.n < MAX_REQUESTS) {
                if (asprintf(&srv.request[srv.n], "%s %s", method, target) > 0) {
                        srv.body[srv.n] = strdup(buf + head_len);
                        srv.n++;
                }
        }
        pthread_mutex_unlock(&srv.lock);

        for (const Route *r = srv.routes; r && r->request; r++) {
                char want[1100];
                (void) snprintf(want, sizeof want, "%s %s", method, target);
                if (streq(r->request, want) || (streq(r->file, "@audit") && startswith(want, r->request))) {
                        route = r;
                        break;
                }
        }
        if (!route)
                reply(fd, "404 Not Found", "{\"error\":\"not_found\",\"message\":\"no such route in the fake keyd\"}");
        else if (streq(route->file, "@audit"))
                reply_audit(fd, target);
        else if (streq(route->file, "@slow")) {
                (void) nanosleep(&(struct timespec){ .tv_sec = 3 }, NULL);
                reply(fd, "200 OK", "{}");
        } else if (streq(route->file, "@big")) {
                const char *h =
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 17825792\r\n\r\n[";
                send_all(fd, h, strlen(h));
        } else
                reply_file(fd, route->file);
}

static inline void *server_main(void *arg) {
        (void) arg;
        while (!atomic_load(&srv.stop)) {
                struct pollfd p = { .fd = srv.fd, .events = POLLIN };
                if (poll(&p, 1, 50) <= 0)
                        continue;
                int c = accept4(srv.fd, NULL, NULL, SOCK_CLOEXEC);
                if (c < 0)
                        continue;
                serve_one(c);
                close(c);
        }
        return NULL;
}

static inline void setup(void) {
        srv.dir = test_mkdtemp();
        cr_assert(asprintf(&srv.socket, "%s/keyd.sock", srv.dir) > 0);
        /* Nothing listens until a test calls serve(): keydctl must fail to connect. */
        cr_assert_eq(setenv("KEYD_SOCKET", srv.socket, 1), 0);
}

static inline void teardown(void) {
        if (srv.running) {
                atomic_store(&srv.stop, true);
                pthread_join(srv.thread, NULL);
                close(srv.fd);
        }
        for (size_t i = 0; i < srv.n; i++) {
                free(srv.request[i]);
                free(srv.body[i]);
        }
        test_rmrf(srv.dir);
        free(srv.dir);
        free(srv.socket);
}

TestSuite(keydctl, .init = setup, .fini = teardown);

static inline void serve(const Route *routes) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };

        srv.routes = routes;
        srv.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        cr_assert(srv.fd >= 0);
        cr_assert(strlen(srv.socket) < sizeof sa.sun_path);
        strcpy(sa.sun_path, srv.socket);
        cr_assert_eq(bind(srv.fd, (struct sockaddr *) &sa, sizeof sa), 0, "bind %s: %m", srv.socket);
        cr_assert_eq(listen(srv.fd, 16), 0);
        cr_assert_eq(pthread_create(&srv.thread, NULL, server_main, NULL), 0);
        srv.running = true;
}
#define SERVE(...) serve((const Route[]){ __VA_ARGS__, { NULL, NULL } })

/* The i-th request the fake keyd saw ("METHOD PATH") and its body parsed as JSON (NULL if none). */
static inline const char *request(size_t i) {
        pthread_mutex_lock(&srv.lock);
        const char *r = i < srv.n ? srv.request[i] : NULL;
        pthread_mutex_unlock(&srv.lock);
        cr_assert_not_null(r, "keydctl made fewer than %zu request(s)", i + 1);
        return r;
}

static inline json_t *request_body(size_t i) {
        (void) request(i);
        return json_loads(srv.body[i], 0, NULL);
}

/* The body of the i-th request is this JSON (members in any order). */
static inline void assert_request_body(size_t i, const char *json) {
        json_t *got = request_body(i), *want = json_loads(json, 0, NULL);
        cr_assert_not_null(want, "not JSON: %s", json);
        cr_assert(json_equal(got, want), "body: %s", srv.body[i]);
        json_decref(got);
        json_decref(want);
}

typedef struct Run {
        int status;
        char *out, *err;
} Run;

static inline void run_done(Run *r) {
        free(r->out);
        free(r->err);
}

/* Run keydctl with argv and stdin_text (NULL: /dev/null); at most 20 s. KEYD_TEST_KEYDCTL runs another build of
 * keydctl (to show that a test fails on it). */
static inline Run run_ctl(const char *stdin_text, const char *const *args) {
        _cleanup_free_ char *in = NULL, *out = NULL, *err = NULL;
        const char *bin = getenv("KEYD_TEST_KEYDCTL") ?: KEYDCTL;
        const char *argv[64] = { bin };
        posix_spawn_file_actions_t fa;
        Run r = { .status = -1 };
        int status, n = 1;
        pid_t pid;

        cr_assert(asprintf(&in, "%s/stdin", srv.dir) > 0 && asprintf(&out, "%s/stdout", srv.dir) > 0 &&
                  asprintf(&err, "%s/stderr", srv.dir) > 0);
        FILE *f = fopen(in, "we");
        cr_assert_not_null(f);
        fputs(stdin_text ?: "", f);
        fclose(f);
        for (; args[n - 1] && n < 63; n++)
                argv[n] = args[n - 1];
        argv[n] = NULL;

        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 0, stdin_text ? in : "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_addopen(&fa, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        posix_spawn_file_actions_addopen(&fa, 2, err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        cr_assert_eq(posix_spawn(&pid, bin, &fa, NULL, (char *const *) argv, environ), 0, "spawn %s: %m", bin);
        posix_spawn_file_actions_destroy(&fa);
        for (int i = 0;; i++) {
                pid_t w = waitpid(pid, &status, WNOHANG);
                cr_assert(w >= 0);
                if (w == pid)
                        break;
                if (i == 2000) {
                        kill(pid, SIGKILL);
                        waitpid(pid, &status, 0);
                        cr_assert_fail("keydctl did not finish within 20 s");
                }
                (void) nanosleep(&(struct timespec){ .tv_nsec = 10 * 1000 * 1000 }, NULL);
        }
        cr_assert(WIFEXITED(status), "keydctl was killed by signal %d", WTERMSIG(status));
        r.status = WEXITSTATUS(status);
        r.out = test_read_file(out, NULL);
        r.err = test_read_file(err, NULL);
        return r;
}
#define RUN_IN(in, ...) run_ctl((in), (const char *const[]){ __VA_ARGS__, NULL })
#define RUN(...) RUN_IN(NULL, __VA_ARGS__)

static inline void assert_status(const Run *r, int status) {
        cr_assert_eq(r->status, status, "exit status %d, expected %d\nstdout:\n%s\nstderr:\n%s", r->status, status,
                     r->out, r->err);
}

static inline void assert_output(const Run *r, const char *expected_file) {
        _cleanup_free_ char *rel = NULL, *path = NULL, *expected = NULL;
        cr_assert(asprintf(&rel, "tests/data/keydctl/%s", expected_file) > 0);
        path = test_path(rel);
        expected = test_read_file(path, NULL);
        cr_assert_str_eq(r->out, expected, "stdout differs from %s:\n%s", expected_file, r->out);
}

/* stdout as JSON equals the body of a canned reply. */
static inline void assert_json_output(const Run *r, const char *http_file) {
        _cleanup_free_ char *rel = NULL, *path = NULL, *text = NULL;
        json_t *got, *want;
        cr_assert(asprintf(&rel, "tests/data/keydctl/%s", http_file) > 0);
        path = test_path(rel);
        text = test_read_file(path, NULL);
        got = json_loads(r->out, 0, NULL);
        want = json_loads(strstr(text, "\n\n") + 2, 0, NULL);
        cr_assert_not_null(got, "stdout is not JSON:\n%s", r->out);
        cr_assert_not_null(want);
        cr_assert(json_equal(got, want), "stdout is not the reply of %s:\n%s", http_file, r->out);
        cr_assert(strstr(r->out, "\n  \""), "not indented by two:\n%s", r->out);
        json_decref(got);
        json_decref(want);
}

/* Run keydctl (RUN's arguments): it exits with status, printing exactly out on stdout and err on stderr (NULL: not
 * checked). */
static inline void assert_run(int status, const char *out, const char *err, const char *const *args) {
        Run r = run_ctl(NULL, args);
        assert_status(&r, status);
        if (out)
                cr_assert_str_eq(r.out, out, "stdout differs:\n%s", r.out);
        if (err)
                cr_assert_str_eq(r.err, err, "stderr differs:\n%s", r.err);
        run_done(&r);
}
#define ASSERT_RUN(status, out, err, ...) assert_run((status), (out), (err), (const char *const[]){ __VA_ARGS__, NULL })

/* Run keydctl (RUN's arguments): it fails with status, and its stderr says err (among other things). */
static inline void assert_fails(int status, const char *err, const char *const *args) {
        Run r = run_ctl(NULL, args);
        assert_status(&r, status);
        cr_assert(strstr(r.err, err), "stderr: %s", r.err);
        run_done(&r);
}
#define ASSERT_FAILS(status, err, ...) assert_fails((status), (err), (const char *const[]){ __VA_ARGS__, NULL })

/* Run keydctl (RUN's arguments): it exits with status, printing the body of the canned reply http_file (JSON). */
static inline void assert_run_json(int status, const char *http_file, const char *const *args) {
        Run r = run_ctl(NULL, args);
        assert_status(&r, status);
        assert_json_output(&r, http_file);
        run_done(&r);
}
#define ASSERT_RUN_JSON(status, http_file, ...)                                                                \
        assert_run_json((status), (http_file), (const char *const[]){ __VA_ARGS__, NULL })
