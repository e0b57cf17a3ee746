/* SPDX-License-Identifier: MIT */
/* keydctl, run as a process (build/keydctl) against a fake keyd: a Unix socket in a private directory that answers
 * canned HTTP replies from tests/data/keydctl/NAME.http and records what it was asked. Checks the output (tables against
 * tests/data/keydctl/NAME.out, --json against the canned bodies), the requests' bodies, and the exit statuses of
 * keydctl(1): 0 ok, 1 refused or invalid, 2 usage, 3 cannot reach keyd. */
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
#define NOW "1795406400" /* 2026-11-23T04:00:00Z, the "now" of the canned keyrings */
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

static void send_all(int fd, const void *p, size_t n) {
        while (n > 0) {
                ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
                if (w <= 0)
                        return; /* the client gave up (a cap, a timeout): not the server's problem */
                p = (const char *) p + w;
                n -= (size_t) w;
        }
}

static void reply(int fd, const char *status, const char *body) {
        char head[512];
        int n = snprintf(head, sizeof head,
                         "HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
                         status, strlen(body));
        send_all(fd, head, (size_t) n);
        send_all(fd, body, strlen(body));
}

/* A canned reply: a status line, header lines, a blank line, the body; LF line ends, made CRLF here. */
static void reply_file(int fd, const char *name) {
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

static void reply_audit(int fd, const char *query) {
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

static void serve_one(int fd) {
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
                const char *h = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 17825792\r\n\r\n[";
                send_all(fd, h, strlen(h));
        } else
                reply_file(fd, route->file);
}

static void *server_main(void *arg) {
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

static void setup(void) {
        srv.dir = test_mkdtemp();
        cr_assert(asprintf(&srv.socket, "%s/keyd.sock", srv.dir) > 0);
        /* Nothing listens until a test calls serve(): keydctl must fail to connect. */
        cr_assert_eq(setenv("KEYD_SOCKET", srv.socket, 1), 0);
}

static void teardown(void) {
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

static void serve(const Route *routes) {
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
static const char *request(size_t i) {
        pthread_mutex_lock(&srv.lock);
        const char *r = i < srv.n ? srv.request[i] : NULL;
        pthread_mutex_unlock(&srv.lock);
        cr_assert_not_null(r, "keydctl made fewer than %zu request(s)", i + 1);
        return r;
}

static json_t *request_body(size_t i) {
        (void) request(i);
        return json_loads(srv.body[i], 0, NULL);
}

typedef struct Run {
        int status;
        char *out, *err;
} Run;

static void run_done(Run *r) {
        free(r->out);
        free(r->err);
}

/* Run keydctl with argv and stdin_text (NULL: /dev/null); at most 20 s. */
static Run run_ctl(const char *stdin_text, const char *const *args) {
        _cleanup_free_ char *in = NULL, *out = NULL, *err = NULL;
        const char *argv[64] = { KEYDCTL };
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
        cr_assert_eq(posix_spawn(&pid, KEYDCTL, &fa, NULL, (char *const *) argv, environ), 0, "spawn %s: %m",
                     KEYDCTL);
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

static void assert_status(const Run *r, int status) {
        cr_assert_eq(r->status, status, "exit status %d, expected %d\nstdout:\n%s\nstderr:\n%s", r->status, status,
                     r->out, r->err);
}

static void assert_output(const Run *r, const char *expected_file) {
        _cleanup_free_ char *rel = NULL, *path = NULL, *expected = NULL;
        cr_assert(asprintf(&rel, "tests/data/keydctl/%s", expected_file) > 0);
        path = test_path(rel);
        expected = test_read_file(path, NULL);
        cr_assert_str_eq(r->out, expected, "stdout differs from %s:\n%s", expected_file, r->out);
}

/* stdout as JSON equals the body of a canned reply. */
static void assert_json_output(const Run *r, const char *http_file) {
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

/* ---- no keyd needed ---- */

Test(keydctl, help_and_version) {
        Run r = RUN("--help");
        assert_status(&r, 0);
        cr_assert(strstr(r.out, "Usage: keydctl [OPTIONS] COMMAND"));
        for (const char *const *w = (const char *const[]){ "status", "keyrings", "keyring show", "keyring create",
                                                           "plan", "rotate", "revoke", "disable", "mint", "sign",
                                                           "verify", "jwks", "token revoke", "audit tail",
                                                           "audit verify", "Exit status", "KEYD_SOCKET", NULL };
             *w; w++)
                cr_assert(strstr(r.out, *w), "--help does not mention '%s'", *w);
        cr_assert_str_empty(r.err);
        run_done(&r);

        r = RUN("mint", "--help");
        assert_status(&r, 0);
        cr_assert(strstr(r.out, "--claim K=V") && strstr(r.out, "--bind-agent"));
        run_done(&r);

        r = RUN("help", "audit", "tail");
        assert_status(&r, 0);
        cr_assert(strstr(r.out, "--follow"));
        run_done(&r);

        r = RUN("--version");
        assert_status(&r, 0);
        cr_assert_str_eq(r.out, "keydctl " KEYD_VERSION "\n");
        run_done(&r);
}

/* Every usage error exits 2 with one "keydctl: " line, before any request: nothing listens, so a request would be
 * exit 3. */
Test(keydctl, usage_errors) {
        static const char *const cases[][10] = {
                { NULL },
                { "frobnicate" },
                { "--bogus", "status" },
                { "status", "--bogus" },
                { "status", "extra" },
                { "keyring" },
                { "keyring", "delete", "x" },
                { "keyring", "show" },
                { "keyring", "show", "../etc" },
                { "keyring", "create", "a1", "--kind", "agent" },
                { "keyring", "create", "a1", "--alg", "HS256" },
                { "keyring", "create", "a1", "--rotation-period", "1w" },
                { "keyring", "create", "a1", "--publish", "maybe" },
                { "keyring", "create", "a1", "--owner-uid", "7" },
                { "plan", "--hours", "0" },
                { "plan", "--hours", "8761" },
                { "rotate" },
                { "revoke", KID_ACTIVE },
                { "revoke", KID_ACTIVE, "--reason", "oops" },
                { "mint", "default" },
                { "mint", "default", "--sub" },
                { "mint", "default", "--sub", "a", "--claim", "novalue" },
                { "mint", "default", "--sub", "a", "--claim", "=1" },
                { "mint", "default", "--sub", "a", "--claim", "k=1", "--claim", "k=2" },
                { "mint", "default", "--sub", "a", "--ttl", "10x" },
                { "mint", "default", "--sub", "a", "--act", "[1]" },
                { "sign", "default" },
                { "verify", "a", "b" },
                { "verify", "t", "--leeway", "301" },
                { "token", "revoke" },
                { "token", "revoke", "j", "--exp", "-1" },
                { "audit", "tail", "-n", "0" },
                { "--timeout", "0", "status" },
                { "--timeout", "x", "status" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                Run r = run_ctl(NULL, cases[i]);
                char line[256] = "";
                for (size_t j = 0; cases[i][j]; j++)
                        (void) snprintf(line + strlen(line), sizeof line - strlen(line), " %s", cases[i][j]);
                cr_assert_eq(r.status, 2, "keydctl%s: exit %d, expected 2; stderr: %s", line, r.status, r.err);
                cr_assert(startswith(r.err, "keydctl: "), "keydctl%s: stderr '%s'", line, r.err);
                cr_assert_eq(strchr(r.err, '\n'), r.err + strlen(r.err) - 1, "keydctl%s: not one line: %s", line,
                             r.err);
                cr_assert_str_empty(r.out, "keydctl%s: stdout '%s'", line, r.out);
                run_done(&r);
        }
        cr_assert_eq(srv.n, 0);
}

Test(keydctl, unreachable) {
        _cleanup_free_ char *expected = NULL;
        Run r = RUN("keyrings");
        assert_status(&r, 3);
        cr_assert(asprintf(&expected, "keydctl: cannot connect to keyd at %s: No such file or directory", srv.socket) >
                  0);
        cr_assert(startswith(r.err, expected), "stderr: %s", r.err);
        cr_assert_str_empty(r.out);
        run_done(&r);

        /* --socket wins over $KEYD_SOCKET; a socket nobody listens on is refused. */
        _cleanup_free_ char *dead = NULL;
        cr_assert(asprintf(&dead, "%s/dead.sock", srv.dir) > 0);
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        strcpy(sa.sun_path, dead);
        cr_assert_eq(bind(fd, (struct sockaddr *) &sa, sizeof sa), 0);
        close(fd);
        r = RUN("--socket", dead, "status");
        assert_status(&r, 3);
        cr_assert(strstr(r.err, dead) && strstr(r.err, "Connection refused"), "stderr: %s", r.err);
        run_done(&r);
}

/* ---- against the fake keyd ---- */

Test(keydctl, timeout) {
        SERVE({ "GET /healthz", "@slow" });
        Run r = RUN("--timeout", "1", "status");
        assert_status(&r, 3);
        cr_assert(strstr(r.err, "did not answer within 1 s"), "stderr: %s", r.err);
        run_done(&r);
}

Test(keydctl, reply_size_cap) {
        SERVE({ "GET /v1/keyrings", "@big" });
        Run r = RUN("keyrings");
        assert_status(&r, 3);
        cr_assert(strstr(r.err, "larger than 16 MiB"), "stderr: %s", r.err);
        run_done(&r);
}

Test(keydctl, status) {
        SERVE({ "GET /healthz", "healthz.http" });
        Run r = RUN("status");
        assert_status(&r, 0);
        cr_assert(startswith(r.out, "status:    degraded\nkeyrings:  4\ndegraded:  agent-build-42\nversion:   0.1.0\n"),
                  "%s", r.out);
        run_done(&r);
        r = RUN("status", "--json");
        assert_status(&r, 0);
        assert_json_output(&r, "healthz.http");
        run_done(&r);
}

Test(keydctl, keyrings_table_and_json) {
        SERVE({ "GET /v1/keyrings", "keyrings.http" });
        Run r = RUN("keyrings");
        assert_status(&r, 0);
        assert_output(&r, "keyrings.out");
        cr_assert_str_empty(r.err);
        cr_assert_str_eq(request(0), "GET /v1/keyrings");
        run_done(&r);

        r = RUN("--json", "keyrings");
        assert_status(&r, 0);
        assert_json_output(&r, "keyrings.http");
        run_done(&r);
}

Test(keydctl, keyring_show) {
        SERVE({ "GET /v1/keyrings/default", "keyring-default.http" });
        Run r = RUN("keyring", "show", "default");
        assert_status(&r, 0);
        assert_output(&r, "keyring-show.out");
        run_done(&r);

        r = RUN("keyring", "show", "nope");
        assert_status(&r, 1);
        cr_assert_str_eq(r.err, "keydctl: no such route in the fake keyd (not_found)\n");
        run_done(&r);
}

Test(keydctl, keyring_create) {
        SERVE({ "POST /v1/keyrings", "keyring-create.http" });
        Run r = RUN("keyring", "create", "agent-7", "--kind", "agent", "--owner-uid", "1007", "--alg", "EdDSA",
                    "--rotation-period", "6h", "--prepublish", "600", "--clock-skew", "0", "--sign-users", "a, b",
                    "--sign-users", "c", "--publish", "no", "--issuer", "https://agents.example.com");
        assert_status(&r, 0);
        cr_assert(startswith(r.out, "Created keyring agent-7.\n"), "%s", r.out);
        json_t *got = request_body(0), *want = json_loads(
                "{\"name\":\"agent-7\",\"kind\":\"agent\",\"owner_uid\":1007,\"policy\":{\"alg\":\"EdDSA\","
                "\"rotation_period\":\"6h\",\"prepublish\":600,\"clock_skew\":0,\"sign_users\":[\"a\",\"b\",\"c\"],"
                "\"publish\":false,\"issuer\":\"https://agents.example.com\"}}",
                0, NULL);
        cr_assert(json_equal(got, want), "body: %s", srv.body[0]);
        json_decref(got);
        json_decref(want);
        run_done(&r);
}

Test(keydctl, plan) {
        SERVE({ "GET /v1/keyrings", "keyrings.http" });
        Run r = RUN("plan", "--now", NOW);
        assert_status(&r, 0);
        assert_output(&r, "plan-24h.out");
        cr_assert_str_empty(r.err);
        run_done(&r);

        r = RUN("plan", "--now", NOW, "--hours", "3");
        assert_status(&r, 0);
        assert_output(&r, "plan-3h.out");
        run_done(&r);

        r = RUN("plan", "--now", NOW, "--json", "--hours", "1");
        assert_status(&r, 0);
        json_t *plan = json_loads(r.out, 0, NULL), *want = json_loads(
                "{\"now\":\"2026-11-23T04:00:00Z\",\"until\":\"2026-11-23T05:00:00Z\",\"transitions\":["
                "{\"time\":\"2026-11-21T10:00:00Z\",\"at\":1795255200,\"keyring\":\"legacy\",\"event\":\"activate\","
                "\"kid\":\"HZKtS2mH-gNHzF0vts-eR8g_T2yus7Xvb2KXMFKJIcM\",\"overdue\":true},"
                "{\"time\":\"2026-11-21T10:00:00Z\",\"at\":1795255200,\"keyring\":\"legacy\",\"event\":\"retire\","
                "\"kid\":\"iNv2EpcsWUosL23eST7xxM0nrbqMNubr0AuJ_xQ6umE\",\"overdue\":true},"
                "{\"time\":\"2026-11-21T10:00:00Z\",\"at\":1795255200,\"keyring\":\"legacy\",\"event\":\"publish\","
                "\"kid\":null,\"overdue\":true},"
                "{\"time\":\"2026-11-23T04:00:00Z\",\"at\":1795406400,\"keyring\":\"agent-build-42\","
                "\"event\":\"publish\",\"kid\":null,\"overdue\":false},"
                "{\"time\":\"2026-11-23T04:31:00Z\",\"at\":1795408260,\"keyring\":\"legacy\",\"event\":\"expire\","
                "\"kid\":\"iNv2EpcsWUosL23eST7xxM0nrbqMNubr0AuJ_xQ6umE\",\"overdue\":false}],"
                "\"truncated\":false}",
                0, NULL);
        cr_assert_not_null(plan, "not JSON: %s", r.out);
        cr_assert(json_equal(plan, want), "plan: %s", r.out);
        json_decref(plan);
        json_decref(want);
        run_done(&r);
}

Test(keydctl, mint_prints_the_token_alone) {
        SERVE({ "POST /v1/keyrings/default/tokens", "mint.http" });
        Run r = RUN("mint", "default", "--sub", "agent-7", "--aud", "api", "--aud", "billing", "--ttl", "15m",
                    "--scope", "read", "--claim", "n=42", "--claim", "s=hello", "--claim", "o={\"a\":[1,true]}",
                    "--claim", "q=\"42\"", "--act", "{\"sub\":\"gateway\"}", "--bind-agent", "agent-build-42");
        assert_status(&r, 0);
        cr_assert_eq(strchr(r.out, '\n'), r.out + strlen(r.out) - 1, "more than one line: %s", r.out);
        cr_assert(startswith(r.out, "eyJhbGciOiJFUzI1NiIs") && strchr(r.out, '.'), "%s", r.out);
        cr_assert_str_empty(r.err);
        cr_assert_str_eq(request(0), "POST /v1/keyrings/default/tokens");
        json_t *got = request_body(0), *want = json_loads(
                "{\"sub\":\"agent-7\",\"aud\":[\"api\",\"billing\"],\"ttl\":\"15m\",\"scope\":\"read\","
                "\"claims\":{\"n\":42,\"s\":\"hello\",\"o\":{\"a\":[1,true]},\"q\":\"42\"},"
                "\"act\":{\"sub\":\"gateway\"},\"bind_agent\":\"agent-build-42\"}",
                0, NULL);
        cr_assert(json_equal(got, want), "body: %s", srv.body[0]);
        json_decref(got);
        json_decref(want);
        run_done(&r);

        /* One --aud is a string; --ttl in seconds an integer; --json prints the whole reply. */
        r = RUN("mint", "default", "--sub", "a", "--aud", "api", "--ttl", "300", "--json");
        assert_status(&r, 0);
        assert_json_output(&r, "mint.http");
        got = request_body(1);
        want = json_loads("{\"sub\":\"a\",\"aud\":\"api\",\"ttl\":300}", 0, NULL);
        cr_assert(json_equal(got, want), "body: %s", srv.body[1]);
        json_decref(got);
        json_decref(want);
        run_done(&r);
}

Test(keydctl, refusals_exit_1) {
        SERVE({ "POST /v1/keyrings/default/rotate", "error-403.http" }, { "POST /v1/keyrings/legacy/rotate", "error-409.http" },
              { "POST /v1/keyrings/default/tokens", "error-503.http" }, { "GET /v1/keyrings/red", "error-ansi.http" });
        Run r = RUN("rotate", "default");
        assert_status(&r, 1);
        cr_assert_str_eq(r.err, "keydctl: uid 1000 may not rotate keyring default (admin only) (forbidden)\n");
        cr_assert_str_empty(r.out);
        run_done(&r);

        r = RUN("rotate", "legacy", "--reason", "drill");
        assert_status(&r, 1);
        cr_assert_str_eq(r.err, "keydctl: legacy: the next key was published less than prepublish ago (use force) "
                                "(conflict)\n");
        run_done(&r);

        r = RUN("mint", "default", "--sub", "a");
        assert_status(&r, 1);
        cr_assert_str_eq(r.err, "keydctl: keyring default has no active key (unavailable)\n");
        cr_assert_str_empty(r.out);
        run_done(&r);

        /* Control characters from the server never reach the terminal. */
        r = RUN("keyring", "show", "red");
        assert_status(&r, 1);
        cr_assert_str_eq(r.err, "keydctl: no keyring ?[31mred?[0m (not_found)\n");
        run_done(&r);
}

Test(keydctl, server_failures_exit_3) {
        SERVE({ "GET /v1/keyrings", "not-json.http" }, { "POST /v1/keyrings/default/tokens", "error-500.http" });
        Run r = RUN("keyrings");
        assert_status(&r, 3);
        cr_assert(strstr(r.err, "is not JSON"), "%s", r.err);
        run_done(&r);
        r = RUN("mint", "default", "--sub", "a");
        assert_status(&r, 3);
        cr_assert_str_eq(r.err, "keydctl: cannot write the audit record (internal)\n");
        run_done(&r);
}

Test(keydctl, rotate) {
        SERVE({ "POST /v1/keyrings/legacy/rotate", "rotate.http" });
        Run r = RUN("rotate", "legacy", "--force", "--reason", "drill");
        assert_status(&r, 0);
        cr_assert_str_eq(r.out, "Rotated keyring legacy: active key " KID_NEXT
                                ", next key HZKtS2mH-gNHzF0vts-eR8g_T2yus7Xvb2KXMFKJIcM.\n");
        json_t *got = request_body(0), *want = json_loads("{\"force\":true,\"reason\":\"drill\"}", 0, NULL);
        cr_assert(json_equal(got, want), "body: %s", srv.body[0]);
        json_decref(got);
        json_decref(want);
        run_done(&r);
}

Test(keydctl, revoke_and_disable) {
        SERVE({ "POST /v1/keys/" KID_ACTIVE "/revoke", "revoke.http" },
              { "POST /v1/keyrings/agent-build-42/disable", "disable.http" });
        Run r = RUN("revoke", KID_ACTIVE, "--reason", "key_compromise");
        assert_status(&r, 0);
        cr_assert_str_eq(r.out, "Revoked key " KID_ACTIVE " of keyring default at 2026-11-23T04:00:00Z "
                                "(key_compromise).\nCheck the keyring with: keydctl keyring show default\n");
        json_t *got = request_body(0), *want = json_loads("{\"reason\":\"key_compromise\"}", 0, NULL);
        cr_assert(json_equal(got, want), "body: %s", srv.body[0]);
        json_decref(got);
        json_decref(want);
        run_done(&r);

        r = RUN("disable", "agent-build-42");
        assert_status(&r, 0);
        cr_assert_str_eq(r.out, "Disabled keyring agent-build-42: 2 key(s) revoked.\n");
        cr_assert_str_eq(request(1), "POST /v1/keyrings/agent-build-42/disable");
        run_done(&r);
}

Test(keydctl, verify) {
        SERVE({ "POST /v1/verify", "verify-valid.http" });
        Run r = RUN("verify", "aaa.bbb.ccc", "--audience", "api", "--issuer", "https://issuer.example.com",
                    "--keyring", "default", "--leeway", "30");
        assert_status(&r, 0);
        cr_assert(startswith(r.out, "valid: keyring default, kid " KID_NEXT ", alg ES256\n"), "%s", r.out);
        cr_assert(strstr(r.out, "  exp    1795407300 (2026-11-23T04:15:00Z)\n"), "%s", r.out);
        json_t *got = request_body(0), *want = json_loads(
                "{\"token\":\"aaa.bbb.ccc\",\"audience\":\"api\",\"issuer\":\"https://issuer.example.com\","
                "\"keyrings\":[\"default\"],\"leeway\":30}",
                0, NULL);
        cr_assert(json_equal(got, want), "body: %s", srv.body[0]);
        json_decref(got);
        json_decref(want);
        run_done(&r);

        /* From standard input, blanks around it dropped. */
        r = RUN_IN("  aaa.bbb.ccc\n", "verify");
        assert_status(&r, 0);
        got = request_body(1);
        cr_assert_str_eq(json_string_value(json_object_get(got, "token")), "aaa.bbb.ccc");
        json_decref(got);
        run_done(&r);
}

Test(keydctl, verify_invalid_exits_1) {
        SERVE({ "POST /v1/verify", "verify-invalid.http" });
        Run r = RUN("verify", "aaa.bbb.ccc");
        assert_status(&r, 1);
        cr_assert_str_eq(r.out, "invalid: expired: the token expired at 2026-11-23T04:15:00Z (leeway 60s)\n");
        cr_assert_str_empty(r.err);
        run_done(&r);
        r = RUN("verify", "--json", "aaa.bbb.ccc");
        assert_status(&r, 1);
        assert_json_output(&r, "verify-invalid.http");
        run_done(&r);
}

Test(keydctl, sign) {
        SERVE({ "POST /v1/keyrings/default/sign", "sign.http" });
        Run r = RUN_IN("hello?>", "sign", "default", "-");
        assert_status(&r, 0);
        cr_assert_str_eq(r.out, "MEUCIQDk3mWZpV2pZ3cb5nAi5V1oY2F0dGxlLW5vdC1yZWFs\n");
        json_t *got = request_body(0);
        /* base64url, not base64: "hello?>" is aGVsbG8_Pg (with + and / it would be aGVsbG8/Pg==). */
        cr_assert_str_eq(json_string_value(json_object_get(got, "data")), "aGVsbG8_Pg");
        json_decref(got);
        run_done(&r);

        r = RUN("sign", "default", "/nonexistent/file");
        assert_status(&r, 1);
        cr_assert(startswith(r.err, "keydctl: cannot open /nonexistent/file: "), "%s", r.err);
        run_done(&r);
}

Test(keydctl, jwks_and_token_revoke) {
        SERVE({ "GET /v1/keyrings/default/jwks", "jwks.http" }, { "POST /v1/tokens/revoke", "token-revoke.http" });
        Run r = RUN("jwks", "default");
        assert_status(&r, 0);
        assert_json_output(&r, "jwks.http");
        run_done(&r);

        r = RUN("token", "revoke", "Zk9oWm5Qa0x3UXJ0", "--exp", "1795407300", "--keyring", "default");
        assert_status(&r, 0);
        cr_assert_str_eq(r.out, "Token Zk9oWm5Qa0x3UXJ0 denied until 2026-11-23T04:15:00Z.\n");
        json_t *got = request_body(1), *want = json_loads(
                "{\"jti\":\"Zk9oWm5Qa0x3UXJ0\",\"exp\":1795407300,\"keyring\":\"default\"}", 0, NULL);
        cr_assert(json_equal(got, want), "body: %s", srv.body[1]);
        json_decref(got);
        json_decref(want);
        run_done(&r);
}

Test(keydctl, audit_tail) {
        SERVE({ "GET /v1/audit?", "@audit" });
        Run r = RUN("audit", "tail", "-n", "3");
        assert_status(&r, 0);
        assert_output(&r, "audit-tail.out");
        run_done(&r);

        r = RUN("audit", "tail", "--json", "--after", "1", "-n", "2");
        assert_status(&r, 0);
        json_t *o = json_loads(r.out, 0, NULL), *recs = json_object_get(o, "records");
        cr_assert_eq(json_array_size(recs), 2, "%s", r.out);
        cr_assert_eq(json_integer_value(json_object_get(json_array_get(recs, 0), "seq")), 2);
        cr_assert_eq(json_integer_value(json_object_get(o, "next")), 3);
        json_decref(o);
        run_done(&r);
}

Test(keydctl, audit_verify) {
        SERVE({ "POST /v1/audit/verify", "audit-verify-ok.http" });
        Run r = RUN("audit", "verify");
        assert_status(&r, 0);
        cr_assert_str_eq(r.out, "Audit chain verified: 5 record(s), head seq 5, last signed checkpoint: seq 4.\n");
        cr_assert_str_eq(request(0), "POST /v1/audit/verify");
        run_done(&r);
}

Test(keydctl, audit_verify_broken_exits_1) {
        SERVE({ "POST /v1/audit/verify", "audit-verify-bad.http" });
        Run r = RUN("audit", "verify");
        assert_status(&r, 1);
        cr_assert_str_eq(r.out,
                         "Audit chain does NOT verify: first bad record seq 3: record 3: hash does not match its contents\n");
        run_done(&r);
}

/* An anchor file in the test's directory with these lines; returns its path. */
static char *anchor_file(const char *lines) {
        char *path;
        cr_assert(asprintf(&path, "%s/anchor.jsonl", srv.dir) > 0);
        FILE *f = fopen(path, "we");
        cr_assert_not_null(f);
        fputs(lines, f);
        fclose(f);
        return path;
}

#define HASH(c) c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c /* 32 times a 2-digit byte */
#define ANCHOR(seq, hash) "{\"seq\":" #seq ",\"hash\":\"" hash "\",\"time\":1795406400,\"kid\":\"" KID_ACTIVE \
                          "\",\"jws\":\"a.b.c\"}\n"

Test(keydctl, audit_verify_anchor) {
        SERVE({ "POST /v1/audit/verify", "audit-verify-ok.http" }, { "GET /v1/audit?", "@audit" });
        char *path = anchor_file(ANCHOR(2, HASH("02")) "\n" ANCHOR(4, HASH("04")));
        Run r = RUN("audit", "verify", "--anchor", path);
        assert_status(&r, 0);
        char *want;
        cr_assert(asprintf(&want,
                           "Audit chain verified: 5 record(s), head seq 5, last signed checkpoint: seq 4.\n"
                           "Anchors verified: 2 anchor(s) in %s, the last at seq 4.\n",
                           path) > 0);
        cr_assert_str_eq(r.out, want);
        free(want);
        /* Each anchored record fetched alone, by seq. */
        cr_assert_str_eq(request(1), "GET /v1/audit?after=1&limit=1");
        cr_assert_str_eq(request(2), "GET /v1/audit?after=3&limit=1");
        run_done(&r);

        r = RUN("audit", "verify", "--json", "--anchor", path);
        assert_status(&r, 0);
        json_t *o = json_loads(r.out, 0, NULL), *a = json_object_get(o, "anchor");
        cr_assert(json_is_true(json_object_get(a, "ok")), "%s", r.out);
        cr_assert_eq(json_integer_value(json_object_get(a, "anchors")), 2);
        json_decref(o);
        run_done(&r);
        free(path);
}

Test(keydctl, audit_verify_anchor_names_the_first_mismatch) {
        static const struct {
                const char *lines, *want;
        } cases[] = {
                /* A rewritten record: another hash. */
                { ANCHOR(2, HASH("02")) ANCHOR(3, HASH("0f")) ANCHOR(4, HASH("0e")),
                  ":2 (seq 3): record 3 has hash " HASH("03") ", the anchor " HASH("0f") ": the chain was rewritten" },
                /* A cut tail: the anchored record is gone. */
                { ANCHOR(2, HASH("02")) ANCHOR(9, HASH("09")), ":2 (seq 9): record 9 is not in the chain" },
                /* Anchors in increasing order only. */
                { ANCHOR(4, HASH("04")) ANCHOR(2, HASH("02")), ":2 (seq 2): anchors go backwards" },
                { ANCHOR(4, HASH("04")) ANCHOR(4, HASH("04")), ":2 (seq 4): anchors go backwards" },
                /* Not an anchor. */
                { ANCHOR(2, HASH("02")) "{\"seq\":3}\n", ":2: not an anchor" },
                { "not json\n", ":1: not an anchor" },
                { ANCHOR(0, HASH("02")), ":1: not an anchor" },
        };
        SERVE({ "POST /v1/audit/verify", "audit-verify-ok.http" }, { "GET /v1/audit?", "@audit" });
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char *path = anchor_file(cases[i].lines), *want;
                Run r = RUN("audit", "verify", "--anchor", path);
                assert_status(&r, 1);
                cr_assert(asprintf(&want, "Audit chain does NOT match the anchor at %s%s", path, cases[i].want) > 0);
                cr_assert(strstr(r.out, want) != NULL, "case %zu: %s\nwanted: %s", i, r.out, want);
                free(want);
                run_done(&r);
                free(path);
        }

        Run r = RUN("audit", "verify", "--anchor", "/nonexistent/anchor");
        assert_status(&r, 1);
        cr_assert(startswith(r.err, "keydctl: cannot open /nonexistent/anchor: "), "%s", r.err);
        run_done(&r);
}
