/* SPDX-License-Identifier: MIT */
/* Refusals of the local API are in the audit log, the real daemon's: every 403, 404, 409, 422 and 429, with the route,
 * the caller's uid, pid and comm, and the error code; one record per refused request, and connections refused at
 * accept (429) counted per uid so that they cannot write faster than once a second a uid, however fast a client
 * connects. And keyd's log lines that carry an audit record's detail are never cut in the middle of its JSON. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/macro.h"
#include "tests/helpers/test-api.h"
#include "tests/helpers/test-daemon.h"
#include "tests/helpers/test-util.h"

static TestToken tok;
static TestDaemon d = { .notify_fd = -1 };
static char sock[512];

static void setup(void) {
        test_token_setup(&tok);
        test_daemon_socket(&tok, sock, sizeof sock);
}

static void teardown(void) {
        test_daemon_teardown(&d, &tok);
}

TestSuite(audit_refusals, .init = setup, .fini = teardown, .timeout = 180);

#define RING_DEFAULT                                                                                         \
        "[keyring default]\nkind = issuer\nalg = ES256\nsign-users = root\nrotation-period = 1h\nprepublish = " \
        "10m\ntoken-ttl-max = 10m\ndefault-ttl = 5m\n\n"

static void start(const char *extra) {
        char rings[2048];
        snprintf(rings, sizeof rings, "%s%s", extra ?: "", RING_DEFAULT);
        test_daemon_start_rings(&d, &tok, rings);
        test_daemon_open_socket(&tok, sock, sizeof sock); /* for nobody too */
}

/* Every audit record; a connection refused while the test's own connections are still being closed is tried again. */
static json_t *all_records(void) {
        for (int tries = 0;; tries++) {
                long st;
                json_t *j = test_api(sock, "GET", "/v1/audit?after=0&limit=1000", NULL, &st);
                if (st == 200) {
                        json_t *r = json_incref(json_object_get(j, "records"));
                        json_decref(j);
                        return r;
                }
                json_decref(j);
                cr_assert(st == 429 && tries < 100, "GET /v1/audit: %ld", st);
                (void) nanosleep(&(struct timespec){ .tv_nsec = 50 * 1000 * 1000 }, NULL);
        }
}

/* The api.refused records (and authz.denied, with denied), in seq order. */
static json_t *refusals(bool denied) {
        json_t *all = all_records(), *out = json_array(), *rec;
        size_t i;
        json_array_foreach(all, i, rec) {
                const char *action = json_string_value(json_object_get(rec, "action"));
                if (streq(action, "api.refused") || (denied && streq(action, "authz.denied")))
                        json_array_append(out, rec);
        }
        json_decref(all);
        return out;
}

/* The refusal record whose detail.status is status and detail.route is route (NULL: none); asserted to be there. */
static json_t *find(json_t *recs, int status, const char *route) {
        json_t *rec;
        size_t i;
        json_array_foreach(recs, i, rec) {
                json_t *detail = json_object_get(rec, "detail");
                json_t *r = json_object_get(detail, "route");
                if (json_integer_value(json_object_get(detail, "status")) == status &&
                    (route ? json_is_string(r) && streq(json_string_value(r), route) : json_is_null(r)))
                        return rec;
        }
        char *text = json_dumps(recs, JSON_INDENT(1));
        cr_assert_fail("no api.refused record of %d on %s in:\n%s", status, route ?: "(no route)", text);
        return NULL;
}

static void assert_me(json_t *rec, const char *error) {
        char comm[32] = "";
        int fd = open("/proc/self/comm", O_RDONLY | O_CLOEXEC);
        cr_assert_geq(fd, 0);
        ssize_t n = read(fd, comm, sizeof comm - 1);
        close(fd);
        cr_assert_gt(n, 0);
        comm[strcspn(comm, "\n")] = 0;
        cr_assert_eq(json_integer_value(json_object_get(rec, "uid")), (json_int_t) getuid());
        cr_assert_eq(json_integer_value(json_object_get(rec, "pid")), (json_int_t) getpid());
        cr_assert_str_eq(json_string_value(json_object_get(rec, "comm")), comm);
        cr_assert_str_eq(json_string_value(json_object_get(rec, "result")), "denied");
        cr_assert_str_eq(json_string_value(json_object_get(json_object_get(rec, "detail"), "error")), error);
}

static void nobody_mints(void) {
        long st;
        json_decref(test_api(sock, "POST", "/v1/keyrings/default/tokens", "{\"sub\":\"a\"}", &st));
        _exit(st == 403 ? 0 : 1);
}

Test(audit_refusals, every_refusal_is_audited_once) {
        start(NULL);
        char kid[44];
        memset(kid, 'A', sizeof kid - 1);
        kid[sizeof kid - 1] = 0;
        char revoke[128];
        snprintf(revoke, sizeof revoke, "/v1/keys/%s/revoke", kid);

        test_api_expect_error(sock, "GET", "/v1/no/such/thing", NULL, 404, "not_found", NULL);
        test_api_expect_error(sock, "GET", "/v1/keyrings/nosuch", NULL, 404, "not_found", NULL);
        test_api_expect_error(sock, "POST", revoke, "{\"reason\":\"superseded\"}", 404, "not_found", NULL);
        test_api_expect_error(sock, "POST", "/v1/keyrings/default/rotate", NULL, 409, "conflict", NULL);
        test_api_expect_error(sock, "POST", "/v1/keyrings", "{\"name\":\"default\"}", 409, "conflict", NULL);
        test_api_expect_error(sock, "POST", "/v1/keyrings/default/tokens", "{\"sub\":\"a\",\"ttl\":\"2h\"}", 422,
                              "unprocessable", NULL);
        /* Not refusals: a malformed request, and one that succeeds. */
        test_api_expect_error(sock, "POST", "/v1/keyrings/default/tokens", "{\"sub\":", 400, "bad_request", NULL);
        pid_t pid = test_fork_as_nobody();
        if (pid == 0)
                nobody_mints();
        cr_assert_eq(test_wait_child(pid), 0, "nobody may not mint");

        json_t *recs = refusals(true);
        json_t *r = find(recs, 404, NULL);
        assert_me(r, "not_found");
        cr_assert_str_eq(json_string_value(json_object_get(json_object_get(r, "detail"), "path")), "/v1/no/such/thing");
        cr_assert_str_eq(json_string_value(json_object_get(json_object_get(r, "detail"), "method")), "GET");

        r = find(recs, 404, "GET /v1/keyrings/{}");
        assert_me(r, "not_found");
        cr_assert_str_eq(json_string_value(json_object_get(r, "keyring")), "nosuch");

        r = find(recs, 404, "POST /v1/keys/{}/revoke");
        assert_me(r, "not_found");
        cr_assert_str_eq(json_string_value(json_object_get(r, "kid")), kid);
        cr_assert(json_is_null(json_object_get(r, "keyring")));

        r = find(recs, 409, "POST /v1/keyrings/{}/rotate");
        assert_me(r, "conflict");
        cr_assert_str_eq(json_string_value(json_object_get(r, "keyring")), "default");
        cr_assert(strstr(json_string_value(json_object_get(json_object_get(r, "detail"), "message")), "prepublish"));

        assert_me(find(recs, 409, "POST /v1/keyrings"), "conflict");
        r = find(recs, 422, "POST /v1/keyrings/{}/tokens");
        assert_me(r, "unprocessable");

        /* The 403 of a role is authz.denied, as before, and only that: one record per refused request. */
        size_t denied = 0, refused = 0;
        json_t *rec;
        size_t i;
        json_array_foreach(recs, i, rec) {
                if (json_integer_value(json_object_get(rec, "uid")) == TEST_NOBODY) {
                        cr_assert_str_eq(json_string_value(json_object_get(rec, "action")), "authz.denied");
                        denied++;
                }
                refused += streq(json_string_value(json_object_get(rec, "action")), "api.refused");
        }
        cr_assert_eq(denied, 1);
        cr_assert_eq(refused, 6, "one record per refusal, none for the 400");
        json_decref(recs);
        test_api_audit_verify(sock);
}

static int extra_refused; /* connections of the test's own refused while keyd still counted one just closed */

/* A connection, one request served on it (so it counts), kept open. */
static int connect_served(void) {
        for (;;) {
                int fd = test_api_connect(sock);
                const char *req = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
                char out[4096];
                cr_assert_eq(write(fd, req, strlen(req)), (ssize_t) strlen(req));
                struct pollfd p = { fd, POLLIN, 0 };
                cr_assert_eq(poll(&p, 1, 10000), 1);
                ssize_t n = read(fd, out, sizeof out - 1);
                cr_assert_gt(n, 0);
                out[n] = 0;
                if (startswith(out, "HTTP/1.1 200"))
                        return fd;
                cr_assert(startswith(out, "HTTP/1.1 429"), "%s", out);
                extra_refused++;
                close(fd);
                (void) nanosleep(&(struct timespec){ .tv_nsec = 50 * 1000 * 1000 }, NULL);
        }
}

static json_int_t refused_429(size_t *ret_records) {
        json_t *recs = refusals(false), *rec;
        json_int_t sum = 0;
        size_t i, n = 0;
        json_array_foreach(recs, i, rec) {
                json_t *detail = json_object_get(rec, "detail");
                if (json_integer_value(json_object_get(detail, "status")) != 429)
                        continue;
                cr_assert_eq(json_integer_value(json_object_get(rec, "uid")), 0);
                cr_assert_str_eq(json_string_value(json_object_get(detail, "error")), "too_many_requests");
                sum += json_integer_value(json_object_get(detail, "refused"));
                n++;
        }
        json_decref(recs);
        *ret_records = n;
        return sum;
}

Test(audit_refusals, refused_connections_are_counted_not_a_record_each) {
        enum { FLOOD = 300 };
        start("[api]\nmax-connections-per-uid = 2\n\n");
        int held[2] = { connect_served(), connect_served() };

        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (int i = 0; i < FLOOD; i++) {
                char out[512];
                int fd = test_api_connect(sock);
                struct pollfd p = { fd, POLLIN, 0 };
                cr_assert_eq(poll(&p, 1, 10000), 1);
                ssize_t n = read(fd, out, sizeof out - 1);
                cr_assert_gt(n, 0);
                out[n] = 0;
                cr_assert(startswith(out, "HTTP/1.1 429"), "%s", out);
                close(fd);
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        close(held[0]);
        close(held[1]);

        /* Every refused connection is counted, in a record a second at most. */
        size_t records = 0;
        json_int_t sum = 0;
        for (int tries = 0; tries < 50 && sum < FLOOD + extra_refused; tries++) {
                (void) nanosleep(&(struct timespec){ .tv_nsec = 100 * 1000 * 1000 }, NULL);
                sum = refused_429(&records);
        }
        cr_assert_eq(sum, FLOOD + extra_refused, "every refused connection is counted");
        double secs = (double) (t1.tv_sec - t0.tv_sec) + (double) (t1.tv_nsec - t0.tv_nsec) / 1e9;
        cr_assert_leq(records, (size_t) secs + 2, "%zu records for %d refusals in %.1f s", records, FLOOD, secs);

        /* What is counted when keyd stops is written before it stops. */
        int again[2] = { connect_served(), connect_served() };
        int fd = test_api_connect(sock);
        char out[512];
        struct pollfd p = { fd, POLLIN, 0 };
        cr_assert_eq(poll(&p, 1, 10000), 1);
        cr_assert_gt(read(fd, out, sizeof out), 0);
        close(fd);
        close(again[0]);
        close(again[1]);
        test_daemon_stop_clean(&d);
        test_daemon_done(&d);
        start(NULL);
        sum = refused_429(&records);
        cr_assert_eq(sum, FLOOD + extra_refused + 1, "the last refusal was written at stop");
        test_api_audit_verify(sock);
}

/* The line of keyd's log (its stderr) that has text in it, as a new string; asserted to be there. */
static char *log_line_with(const char *text) {
        char *log = test_read_file(d.log, NULL), *save = NULL, *found = NULL;
        for (char *line = strtok_r(log, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
                if (strstr(line, text))
                        found = strdup(line);
        cr_assert_not_null(found, "no line with %s in keyd's log", text);
        free(log);
        return found;
}

/* POST /v1/keyrings for an issuer keyring name whose keyring.create detail (its policy) is about size bytes. */
static void create_with_big_policy(const char *name, size_t size) {
        size_t users = size / 40;
        size_t cap = size + 1024;
        char *body = malloc(cap);
        int n = snprintf(body, cap, "{\"name\":\"%s\",\"kind\":\"issuer\",\"policy\":{\"sign_users\":[", name);
        for (size_t i = 0; i < users; i++)
                n += snprintf(body + n, cap - (size_t) n, "%s\"user-%030zu\"", i ? "," : "", i);
        snprintf(body + n, cap - (size_t) n, "]}}");
        json_decref(test_api_expect(sock, "POST", "/v1/keyrings", body, 201));
        free(body);
}

Test(audit_refusals, log_lines_never_cut_mid_json) {
        start(NULL);
        /* Longer than the 2 KiB keyd's log lines were cut at: logged whole, the JSON parses. */
        create_with_big_policy("wide", 6000);
        char *line = log_line_with("keyring wide: keyring.create");
        char *json = strchr(line, '{');
        cr_assert_not_null(json, "%s", line);
        json_error_t err;
        json_t *detail = json_loads(json, JSON_REJECT_DUPLICATES, &err);
        cr_assert_not_null(detail, "the detail in the log line is cut: %s (%.200s...)", err.text, line);
        cr_assert_eq(json_array_size(json_object_get(json_object_get(detail, "policy"), "sign_users")), 150);
        json_decref(detail);
        free(line);

        /* Longer than a line may be: cut before the JSON, saying how much was left out. */
        create_with_big_policy("wider", 40000);
        line = log_line_with("keyring wider: keyring.create");
        cr_assert_null(strpbrk(line, "{["), "no half JSON: %.300s", line);
        cr_assert(strstr(line, "bytes left out)"), "%.300s", line);
        cr_assert_lt(strlen(line), 20000);
        free(line);
}
