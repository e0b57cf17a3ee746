/* SPDX-License-Identifier: MIT */
/* Reading the audit log from the real daemon: GET /v1/audit filters records inside keyd (keyring, kid, sub, action,
 * uid, time), pages through them newest or oldest first, and refuses parameters it does not know; keydctl audit tail
 * asks keyd for the filtered records instead of reading the log itself. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <sys/wait.h>
#include <time.h>

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

TestSuite(audit_query, .init = setup, .fini = teardown, .timeout = 180);

#define RING(name)                                                                                                  \
        "[keyring " name "]\nkind = issuer\nalg = ES256\nsign-users = root\nrotation-period = 1h\nprepublish = 10m\n" \
        "token-ttl-max = 10m\ndefault-ttl = 5m\n\n"

static void start(void) {
        test_daemon_start_rings(&d, &tok, RING("default") RING("other"));
}

static void mint(const char *ring, const char *sub, int n) {
        char path[128], body[256];
        snprintf(path, sizeof path, "/v1/keyrings/%s/tokens", ring);
        snprintf(body, sizeof body, "{\"sub\":\"%s\"}", sub);
        for (int i = 0; i < n; i++)
                json_decref(test_api_expect(sock, "POST", path, body, 201));
}

/* GET /v1/audit?QUERY, asserting 200: the reply. */
static json_t *query(const char *q) {
        char path[2048];
        snprintf(path, sizeof path, "/v1/audit?%s", q);
        return test_api_expect(sock, "GET", path, NULL, 200);
}

static size_t count(const char *q) {
        json_t *j = query(q);
        size_t n = json_array_size(json_object_get(j, "records"));
        json_decref(j);
        return n;
}

/* Every record of the reply has member equal to want (a string, or an integer when want_int is set). */
static void assert_all(json_t *reply, const char *member, const char *want, json_int_t want_int) {
        json_t *rec;
        size_t i;
        json_array_foreach(json_object_get(reply, "records"), i, rec) {
                json_t *v = json_object_get(rec, member);
                if (want)
                        cr_assert(json_is_string(v) && streq(json_string_value(v), want),
                                  "record %zu: %s is not %s", i, member, want);
                else
                        cr_assert(json_is_integer(v) && json_integer_value(v) == want_int, "record %zu: %s", i,
                                  member);
        }
}

/* keydctl ARGS against the daemon: the exit status, the output (stdout and stderr) in out. */
static int keydctl(char *out, size_t size, const char *args) {
        char cmd[2048];
        int status;
        snprintf(cmd, sizeof cmd, "%s --socket %s %s 2>&1",
                 getenv("KEYD_TEST_KEYDCTL") ?: KEYD_TEST_BUILDDIR "/keydctl", sock, args);
        char *text = test_run(cmd, &status);
        snprintf(out, size, "%s", text);
        free(text);
        cr_assert(WIFEXITED(status), "%s", cmd);
        return WEXITSTATUS(status);
}

Test(audit_query, filters_are_applied_by_keyd) {
        start();
        mint("default", "agent-7", 3);
        mint("other", "agent-8", 2);
        mint("default", "spiffe://example.org/a b", 1);

        /* By keyring: every record of the page is that keyring's, and the mints are all there. */
        json_t *j = query("keyring=other&limit=1000");
        assert_all(j, "keyring", "other", 0);
        cr_assert_geq(json_array_size(json_object_get(j, "records")), 2 + 2, "two mints and two key.generate");
        json_decref(j);
        cr_assert_eq(count("keyring=other&action=token.mint"), 2);

        /* By sub (the mint's detail.sub), percent-decoded: a sub with '/', ':' and a blank. */
        j = query("action=token.mint&sub=agent-7");
        cr_assert_eq(json_array_size(json_object_get(j, "records")), 3);
        assert_all(j, "keyring", "default", 0);
        json_decref(j);
        cr_assert_eq(count("sub=spiffe%3A%2F%2Fexample.org%2Fa%20b"), 1);
        cr_assert_eq(count("sub=agent-9"), 0);

        /* By kid: default's active key signed the four mints of default. */
        char *kid = test_api_active_kid(sock, "default"), q[512];
        snprintf(q, sizeof q, "kid=%s&action=token.mint", kid);
        j = query(q);
        cr_assert_eq(json_array_size(json_object_get(j, "records")), 4);
        assert_all(j, "kid", kid, 0);
        json_decref(j);
        free(kid);

        /* By uid: the mints are root's; keyd's own records (key generation) are -1. */
        j = query("uid=0&action=token.mint");
        cr_assert_eq(json_array_size(json_object_get(j, "records")), 6);
        assert_all(j, "uid", NULL, 0);
        json_decref(j);
        j = query("uid=-1&action=key.generate");
        cr_assert_eq(json_array_size(json_object_get(j, "records")), 4, "two keys for each keyring");
        assert_all(j, "uid", NULL, -1);
        json_decref(j);

        /* By time: seconds since the epoch or RFC 3339; since <= time < until. */
        time_t now = time(NULL);
        char iso[64];
        strftime(iso, sizeof iso, "%Y-%m-%dT%H:%M:%SZ", gmtime(&(time_t){ now - 3600 }));
        snprintf(q, sizeof q, "since=%s&action=token.mint", iso);
        cr_assert_eq(count(q), 6);
        snprintf(q, sizeof q, "since=%lld&action=token.mint", (long long) now + 3600);
        cr_assert_eq(count(q), 0, "nothing in the future");
        snprintf(q, sizeof q, "until=%lld&action=token.mint", (long long) now - 3600);
        cr_assert_eq(count(q), 0, "nothing an hour ago");
        snprintf(q, sizeof q, "until=%lld&since=%lld&action=token.mint", (long long) now + 60, (long long) now - 3600);
        cr_assert_eq(count(q), 6);
        strftime(iso, sizeof iso, "%Y-%m-%dT%H:%M:%S%%2B01:00", gmtime(&(time_t){ now + 3600 + 60 }));
        snprintf(q, sizeof q, "until=%s&action=token.mint", iso);
        cr_assert_eq(count(q), 6, "an RFC 3339 offset, escaped");
        test_api_audit_verify(sock);
}

Test(audit_query, pages_forward_and_backward) {
        start();
        mint("default", "agent-7", 5);
        mint("other", "agent-7", 1);

        /* Oldest first, a record a page: next is the last record's seq, and more says whether to go on. */
        uint64_t after = 0, seqs[8];
        size_t n = 0;
        for (;;) {
                char q[256];
                snprintf(q, sizeof q, "after=%" PRIu64 "&limit=2&action=token.mint&keyring=default", after);
                json_t *j = query(q);
                json_t *recs = json_object_get(j, "records");
                for (size_t i = 0; i < json_array_size(recs); i++) {
                        cr_assert_lt(n, ELEMENTSOF(seqs));
                        seqs[n++] = (uint64_t) json_integer_value(json_object_get(json_array_get(recs, i), "seq"));
                }
                cr_assert(json_is_integer(json_object_get(j, "head")));
                after = (uint64_t) json_integer_value(json_object_get(j, "next"));
                bool more = json_is_true(json_object_get(j, "more"));
                json_decref(j);
                if (!more)
                        break;
        }
        cr_assert_eq(n, 5);
        for (size_t i = 1; i < n; i++)
                cr_assert_gt(seqs[i], seqs[i - 1], "oldest first");

        /* Newest first: the last three of them, and before= continues below the last one. */
        json_t *j = query("order=desc&limit=3&action=token.mint&keyring=default");
        json_t *recs = json_object_get(j, "records");
        cr_assert_eq(json_array_size(recs), 3);
        for (size_t i = 0; i < 3; i++)
                cr_assert_eq((uint64_t) json_integer_value(json_object_get(json_array_get(recs, i), "seq")),
                             seqs[4 - i]);
        cr_assert(json_is_true(json_object_get(j, "more")));
        char q[256];
        snprintf(q, sizeof q, "order=desc&limit=3&action=token.mint&keyring=default&before=%" JSON_INTEGER_FORMAT,
                 json_integer_value(json_object_get(j, "next")));
        json_decref(j);
        j = query(q);
        recs = json_object_get(j, "records");
        cr_assert_eq(json_array_size(recs), 2);
        cr_assert_eq((uint64_t) json_integer_value(json_object_get(json_array_get(recs, 1), "seq")), seqs[0]);
        cr_assert(json_is_false(json_object_get(j, "more")));
        json_decref(j);

        /* Without filters, as before: after/limit/next. */
        j = query("after=1&limit=2");
        recs = json_object_get(j, "records");
        cr_assert_eq(json_array_size(recs), 2);
        cr_assert_eq(json_integer_value(json_object_get(json_array_get(recs, 0), "seq")), 2);
        cr_assert_eq(json_integer_value(json_object_get(j, "next")), 3);
        cr_assert(json_is_integer(json_object_get(json_array_get(recs, 0), "time_us")), "the time as hashed");
        json_decref(j);
}

Test(audit_query, bad_parameters_are_refused) {
        static const char *const bad[] = {
                "color=red",                  /* unknown */
                "keyring=default&keyring=other", /* repeated */
                "keyring",                    /* no value */
                "keyring=.hidden",            /* not a keyring name */
                "keyring=",                   /* empty */
                "action=Token.Mint",          /* not an action */
                "uid=-2",
                "uid=4294967295",
                "uid=root",
                "since=yesterday",
                "until=2026-13-01T00:00:00Z",
                "since=0",
                "order=up",
                "sub=%00",                    /* a control byte */
                "sub=%zz",                    /* a malformed escape */
                "sub=%ff",                    /* not UTF-8 */
                "limit=0",
                "before=-1",
        };
        start();
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                char path[256];
                snprintf(path, sizeof path, "/v1/audit?%s", bad[i]);
                test_api_expect_error(sock, "GET", path, NULL, 400, "bad_request", NULL);
        }
}

Test(audit_query, keydctl_tail_filters) {
        char out[16384];
        start();
        mint("default", "agent-7", 3);
        mint("other", "agent-8", 2);
        mint("default", "agent-7", 1);

        /* The last two mints for agent-7, oldest first. */
        int rc = keydctl(out, sizeof out, "--json audit tail -n 2 --sub agent-7 --action token.mint");
        cr_assert_eq(rc, 0, "%s", out);
        json_t *o = json_loads(out, 0, NULL), *recs = json_object_get(o, "records");
        cr_assert_eq(json_array_size(recs), 2, "%s", out);
        json_t *all = query("action=token.mint&sub=agent-7");
        json_t *every = json_object_get(all, "records");
        cr_assert_eq(json_array_size(every), 4);
        for (size_t i = 0; i < 2; i++)
                cr_assert(json_equal(json_object_get(json_array_get(recs, i), "seq"),
                                     json_object_get(json_array_get(every, 2 + i), "seq")));
        json_decref(o);

        /* Keyring, uid (a user name), since as a duration ago; a table for people. */
        rc = keydctl(out, sizeof out, "audit tail --keyring other --uid root --since 10m --action token.mint");
        cr_assert_eq(rc, 0, "%s", out);
        cr_assert(strstr(out, "ACTION") && strstr(out, "token.mint"), "%s", out);
        size_t lines = 0;
        for (const char *p = out; (p = strchr(p, '\n')); p++)
                lines++;
        cr_assert_eq(lines, 3, "a header and two records:\n%s", out);

        /* --after with filters: the first matching records after a seq. */
        char args[256];
        snprintf(args, sizeof args, "--json audit tail --after %" JSON_INTEGER_FORMAT " -n 10 --sub agent-7",
                 json_integer_value(json_object_get(json_array_get(every, 1), "seq")));
        rc = keydctl(out, sizeof out, args);
        cr_assert_eq(rc, 0, "%s", out);
        o = json_loads(out, 0, NULL);
        cr_assert_eq(json_array_size(json_object_get(o, "records")), 2, "%s", out);
        json_decref(o);
        json_decref(all);

        rc = keydctl(out, sizeof out, "audit tail --since 'next tuesday'");
        cr_assert_eq(rc, 2, "a usage error: %s", out);
        rc = keydctl(out, sizeof out, "audit tail --sub nobody-at-all");
        cr_assert_eq(rc, 0, "%s", out);
        cr_assert(strstr(out, "No audit records."), "%s", out);
}
