/* SPDX-License-Identifier: MIT */
/* keydctl against the fake keyd of keydctl-fixture.h: help and usage errors, an unreachable or failing keyd, and the
 * commands that read (status, keyrings, keyring show, plan) or use keys (keyring create, mint, sign, verify). The
 * administrative commands are in test-keydctl-admin.c. */
#include "jose/b64.h"
#include "tests/unit/keydctl-fixture.h"

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

        ASSERT_RUN(0, "keydctl " KEYD_VERSION "\n", NULL, "--version");
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
                { "keyring", "create", "a1", "--rotation-period", "1x" },
                { "keyring", "create", "a1", "--rotation-period", "1h30" },
                { "keyring", "create", "a1", "--clock-skew", "-1s" },
                /* Options that do not apply, and an issuer that is not https (keyd refuses them too). */
                { "keyring", "create", "a1", "--rsa-bits", "3072" },
                { "keyring", "create", "a1", "--alg", "EdDSA", "--rsa-bits", "2048" },
                { "keyring", "create", "a1", "--kind", "agent", "--owner-uid", "7", "--allow-raw-sign", "yes" },
                { "keyring", "create", "a1", "--issuer", "http://issuer.example.com" },
                { "keyring", "create", "a1", "--issuer", "issuer.example.com" },
                { "keyring", "create", "a1", "--issuer", "https://u:p@issuer.example.com" },
                { "keyring", "create", "a1", "--jwks-file", "/tmp/x.json" },
                { "keyring", "create", "a1", "--publish", "maybe" },
                { "keyring", "create", "a1", "--owner-uid", "7" },
                { "plan", "--within", "0" },
                { "plan", "--within", "366d" },
                { "plan", "--within", "24" /* seconds: fine */, "--now", "1795406400" },
                { "plan", "--hours", "0" },
                { "rotate" },
                { "revoke", KID_ACTIVE },
                { "revoke", KID_ACTIVE, "--reason", "oops" },
                { "mint", "default" },
                { "mint", "default", "--sub" },
                { "mint", "default", "--sub", "a", "--claim", "novalue" },
                { "mint", "default", "--sub", "a", "--claim", "=1" },
                { "mint", "default", "--sub", "a", "--claim", "k=1", "--claim", "k=2" },
                { "mint", "default", "--sub", "a", "--ttl", "10x" },
                { "mint", "default", "--sub", "a", "--ttl", "1h30" },
                { "mint", "default", "--sub", "a", "--ttl", "0" },
                { "mint", "default", "--sub", "a", "--act", "[1]" },
                { "sign", "default" },
                { "verify", "a", "b" },
                { "verify", "t", "--leeway", "301" },
                { "verify", "t", "--leeway", "5m1s" },
                { "token", "inspect", "a", "b" },
                { "token", "revoke" },
                { "token", "revoke", "j", "--exp", "-1" },
                { "token", "revoke", "j", "--exp", "1795406400" },
                { "token", "revoke", "j", "--exp", "2026-11-23" },
                { "key", "show" },
                { "key", "show", "0aWsmgF" },
                { "audit", "tail", "-n", "0" },
                { "--timeout", "0", "status" },
                { "--timeout", "x", "status" },
                { "--timeout", "25h", "status" },
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
        ASSERT_FAILS(3, "did not answer within 1 s", "--timeout", "1", "status");
}

Test(keydctl, reply_size_cap) {
        SERVE({ "GET /v1/keyrings?limit=1000", "@big" });
        ASSERT_FAILS(3, "larger than 16 MiB", "keyrings");
}

/* status shows keyd's health whatever it is, and exits 1 unless it is ok: degraded keyrings, or (503) the token down.
 */
Test(keydctl, status) {
        SERVE({ "GET /healthz", "healthz.http" });
        Run r = RUN("status");
        assert_status(&r, 1);
        cr_assert(startswith(r.out, "status:    degraded\nkeyrings:  4\ndegraded:  agent-build-42\nversion:   0.1.0\n"),
                  "%s", r.out);
        cr_assert_str_empty(r.err);
        run_done(&r);
        ASSERT_RUN_JSON(1, "healthz.http", "status", "--json");
}

Test(keydctl, status_ok) {
        SERVE({ "GET /healthz", "healthz-ok.http" });
        Run r = RUN("status");
        assert_status(&r, 0);
        cr_assert(startswith(r.out, "status:    ok\nkeyrings:  4\ndegraded:  none\ntoken:     up\nversion:   0.1.0\n"),
                  "%s", r.out);
        run_done(&r);
        ASSERT_RUN_JSON(0, "healthz-ok.http", "status", "--json");
}

Test(keydctl, status_token_down) {
        SERVE({ "GET /healthz", "healthz-down.http" });
        Run r = RUN("status");
        assert_status(&r, 1);
        cr_assert(startswith(r.out, "status:    unavailable\nkeyrings:  4\ndegraded:  none\n"
                                    "token:     DOWN: CKR_DEVICE_ERROR\n"),
                  "%s", r.out);
        cr_assert_str_empty(r.err, "an answer, not a refusal");
        run_done(&r);
        ASSERT_RUN_JSON(1, "healthz-down.http", "--json", "status");
}

/* A 503 that is no health report (too many connections) is keyd's refusal. */
Test(keydctl, status_refused) {
        SERVE({ "GET /healthz", "error-busy.http" });
        ASSERT_RUN(1, "", "keydctl: too many connections (unavailable)\n", "status");
}

Test(keydctl, keyrings_table_and_json) {
        /* A reply without "next" (a keyd that does not page) is every keyring. */
        SERVE({ "GET /v1/keyrings?limit=1000", "keyrings.http" });
        Run r = RUN("keyrings");
        assert_status(&r, 0);
        assert_output(&r, "keyrings.out");
        cr_assert_str_empty(r.err);
        cr_assert_str_eq(request(0), "GET /v1/keyrings?limit=1000");
        run_done(&r);

        ASSERT_RUN_JSON(0, "keyrings.http", "--json", "keyrings");
}

/* keydctl keyrings and plan follow "next" from page to page: the same table, the same JSON and the same plan as from
 * one reply with every keyring. */
Test(keydctl, keyrings_pages) {
        SERVE({ "GET /v1/keyrings?limit=1000", "keyrings-page1.http" },
              { "GET /v1/keyrings?after=agent-build-42&limit=1000", "keyrings-page2.http" });
        Run r = RUN("keyrings");
        assert_status(&r, 0);
        assert_output(&r, "keyrings.out");
        cr_assert_str_empty(r.err);
        cr_assert_str_eq(request(0), "GET /v1/keyrings?limit=1000");
        cr_assert_str_eq(request(1), "GET /v1/keyrings?after=agent-build-42&limit=1000");
        cr_assert_eq(srv.n, 2, "one request per page, no more");
        run_done(&r);

        ASSERT_RUN_JSON(0, "keyrings.http", "--json", "keyrings");

        r = RUN("plan", "--now", NOW);
        assert_status(&r, 0);
        assert_output(&r, "plan-24h.out");
        run_done(&r);
}

/* A "next" that does not move forward would page for ever: keydctl stops with exit 3. */
Test(keydctl, keyrings_pages_must_advance) {
        SERVE({ "GET /v1/keyrings?limit=1000", "keyrings-page1.http" },
              { "GET /v1/keyrings?after=agent-build-42&limit=1000", "keyrings-page1.http" });
        ASSERT_FAILS(3, "invalid \"next\"", "keyrings");
}

Test(keydctl, keyring_show) {
        SERVE({ "GET /v1/keyrings/default", "keyring-default.http" });
        Run r = RUN("keyring", "show", "default");
        assert_status(&r, 0);
        assert_output(&r, "keyring-show.out");
        run_done(&r);

        ASSERT_RUN(5, NULL, "keydctl: no such route in the fake keyd (not_found)\n", "keyring", "show", "nope");
}

Test(keydctl, keyring_create) {
        SERVE({ "POST /v1/keyrings", "keyring-create.http" });
        Run r = RUN("keyring", "create", "agent-7", "--kind", "agent", "--owner-uid", "1007", "--alg", "EdDSA",
                    "--rotation-period", "6h", "--prepublish", "600", "--clock-skew", "0", "--sign-users", "a, b",
                    "--sign-users", "c", "--publish", "no", "--issuer", "https://agents.example.com");
        assert_status(&r, 0);
        cr_assert(startswith(r.out, "Created keyring agent-7.\n"), "%s", r.out);
        assert_request_body(0,
                            "{\"name\":\"agent-7\",\"kind\":\"agent\",\"owner_uid\":1007,\"policy\":{\"alg\":\"EdDSA\","
                            "\"rotation_period\":\"6h\",\"prepublish\":600,\"clock_skew\":0,"
                            "\"sign_users\":[\"a\",\"b\",\"c\"],\"publish\":false,"
                            "\"issuer\":\"https://agents.example.com\"}}");
        run_done(&r);
}

Test(keydctl, plan) {
        SERVE({ "GET /v1/keyrings?limit=1000", "keyrings.http" });
        Run r = RUN("plan", "--now", NOW);
        assert_status(&r, 0);
        assert_output(&r, "plan-24h.out");
        cr_assert_str_empty(r.err);
        run_done(&r);

        r = RUN("plan", "--now", NOW, "--within", "3h");
        assert_status(&r, 0);
        assert_output(&r, "plan-3h.out");
        run_done(&r);
        /* The old form, kept for scripts; and "now" as seconds since the epoch. */
        r = RUN("plan", "--now", "@1795406400", "--hours", "3");
        assert_status(&r, 0);
        assert_output(&r, "plan-3h.out");
        run_done(&r);

        r = RUN("plan", "--now", NOW, "--json", "--within", "1h");
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
        assert_request_body(0, "{\"sub\":\"agent-7\",\"aud\":[\"api\",\"billing\"],\"ttl\":\"15m\",\"scope\":\"read\","
                               "\"claims\":{\"n\":42,\"s\":\"hello\",\"o\":{\"a\":[1,true]},\"q\":\"42\"},"
                               "\"act\":{\"sub\":\"gateway\"},\"bind_agent\":\"agent-build-42\"}");
        run_done(&r);

        /* One --aud is a string; --ttl in seconds an integer; --json prints the whole reply. */
        ASSERT_RUN_JSON(0, "mint.http", "mint", "default", "--sub", "a", "--aud", "api", "--ttl", "300", "--json");
        assert_request_body(1, "{\"sub\":\"a\",\"aud\":\"api\",\"ttl\":300}");
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

Test(keydctl, verify) {
        SERVE({ "POST /v1/verify", "verify-valid.http" });
        Run r = RUN("verify", "aaa.bbb.ccc", "--audience", "api", "--issuer", "https://issuer.example.com",
                    "--keyring", "default", "--leeway", "30");
        assert_status(&r, 0);
        cr_assert(startswith(r.out, "valid: keyring default, kid " KID_NEXT ", alg ES256\n"), "%s", r.out);
        cr_assert(strstr(r.out, "  exp    1795407300 (2026-11-23T04:15:00Z)\n"), "%s", r.out);
        assert_request_body(0, "{\"token\":\"aaa.bbb.ccc\",\"audience\":\"api\","
                               "\"issuer\":\"https://issuer.example.com\",\"keyrings\":[\"default\"],\"leeway\":30}");
        run_done(&r);

        /* From standard input, blanks around it dropped. */
        r = RUN_IN("  aaa.bbb.ccc\n", "verify");
        assert_status(&r, 0);
        json_t *got = request_body(1);
        cr_assert_str_eq(json_string_value(json_object_get(got, "token")), "aaa.bbb.ccc");
        json_decref(got);
        run_done(&r);
}

Test(keydctl, verify_invalid_exits_1) {
        SERVE({ "POST /v1/verify", "verify-invalid.http" });
        ASSERT_RUN(1, "invalid: expired: the token expired at 2026-11-23T04:15:00Z (leeway 60s)\n", "", "verify",
                   "aaa.bbb.ccc");
        ASSERT_RUN_JSON(1, "verify-invalid.http", "verify", "--json", "aaa.bbb.ccc");
}

/* 403, 404, 409 and 422 have exit statuses of their own (4 to 7); another refusal is 1. */
Test(keydctl, refusals_exit_statuses) {
        SERVE({ "POST /v1/keyrings/default/rotate", "error-403.http" },
              { "POST /v1/keyrings/legacy/rotate", "error-409.http" },
              { "POST /v1/keyrings/default/tokens", "error-503.http" }, { "GET /v1/keyrings/red", "error-ansi.http" },
              { "GET /v1/keyrings/nope", "error-404.http" }, { "POST /v1/keyrings", "error-422.http" });
        ASSERT_RUN(4, "", "keydctl: uid 1000 may not rotate keyring default (admin only) (forbidden)\n", "rotate",
                   "default");
        ASSERT_RUN(5, "", "keydctl: nope: not found (not_found)\n", "keyring", "show", "nope");
        ASSERT_RUN(6, NULL,
                   "keydctl: legacy: the next key was published less than prepublish ago (use force) (conflict)\n",
                   "rotate", "legacy", "--reason", "drill");
        ASSERT_RUN(7, "", "keydctl: policy: prepublish exceeds rotation-period (unprocessable)\n", "keyring", "create",
                   "x", "--prepublish", "2d");
        ASSERT_RUN(1, "", "keydctl: keyring default has no active key (unavailable)\n", "mint", "default", "--sub",
                   "a");
        /* Control characters from the server never reach the terminal. */
        ASSERT_RUN(5, NULL, "keydctl: no keyring ?[31mred?[0m (not_found)\n", "keyring", "show", "red");
}

Test(keydctl, server_failures_exit_3) {
        SERVE({ "GET /v1/keyrings?limit=1000", "not-json.http" },
              { "POST /v1/keyrings/default/tokens", "error-500.http" });
        ASSERT_FAILS(3, "is not JSON", "keyrings");
        ASSERT_RUN(3, NULL, "keydctl: cannot write the audit record (internal)\n", "mint", "default", "--sub", "a");
}

/* ---- errors as JSON, KEYDCTL_FORMAT ---- */

/* stdout as the JSON error object of keydctl(1): {"error": code, "message": ..., "exit": N[, "status": HTTP]}. */
static void assert_json_error(const Run *r, int exit_status, const char *code, const char *in_message, long http) {
        json_t *o = json_loads(r->out, 0, NULL);
        cr_assert(json_is_object(o), "stdout is not a JSON object:\n%s", r->out);
        cr_assert_eq(r->status, exit_status, "exit %d:\n%s%s", r->status, r->out, r->err);
        cr_assert_str_eq(json_string_value(json_object_get(o, "error")), code, "%s", r->out);
        cr_assert(strstr(json_string_value(json_object_get(o, "message")) ?: "", in_message), "%s", r->out);
        cr_assert_eq(json_integer_value(json_object_get(o, "exit")), exit_status, "%s", r->out);
        if (http)
                cr_assert_eq(json_integer_value(json_object_get(o, "status")), http, "%s", r->out);
        else
                cr_assert_null(json_object_get(o, "status"), "%s", r->out);
        /* The line for people stays on stderr. */
        cr_assert(startswith(r->err, "keydctl: "), "stderr: %s", r->err);
        json_decref(o);
}

/* With --json (before or after the command, or before the option that is wrong) every failure is a JSON object on
 * stdout, with the exit status it has without --json. */
Test(keydctl, errors_as_json) {
        Run r = RUN("--json", "plan", "--within", "1x");
        assert_json_error(&r, 2, "usage", "--within: '1x' is not a duration", 0);
        run_done(&r);
        r = RUN("keyring", "create", "a1", "--rsa-bits", "3072", "--json");
        assert_json_error(&r, 2, "usage", "--rsa-bits applies to RS256 and PS256 only", 0);
        run_done(&r);
        r = RUN("--json", "frobnicate");
        assert_json_error(&r, 2, "usage", "unknown command 'frobnicate'", 0);
        run_done(&r);
        r = RUN("keyrings", "--json");
        assert_json_error(&r, 3, "unreachable", "cannot connect to keyd", 0);
        run_done(&r);

        SERVE({ "POST /v1/keyrings/default/rotate", "error-403.http" },
              { "POST /v1/keyrings/legacy/rotate", "error-409.http" }, { "GET /v1/keyrings/nope", "error-404.http" },
              { "POST /v1/keyrings", "error-422.http" }, { "POST /v1/keyrings/default/tokens", "error-503.http" },
              { "GET /v1/keyrings?limit=1000", "keyrings.http" });
        r = RUN("rotate", "default", "--json");
        assert_json_error(&r, 4, "forbidden", "may not rotate keyring default", 403);
        run_done(&r);
        r = RUN("--json", "keyring", "show", "nope");
        assert_json_error(&r, 5, "not_found", "nope: not found", 404);
        run_done(&r);
        r = RUN("--json", "rotate", "legacy");
        assert_json_error(&r, 6, "conflict", "less than prepublish ago", 409);
        run_done(&r);
        r = RUN("--json", "keyring", "create", "x", "--prepublish", "2d");
        assert_json_error(&r, 7, "unprocessable", "prepublish exceeds rotation-period", 422);
        run_done(&r);
        r = RUN("--json", "mint", "default", "--sub", "a");
        assert_json_error(&r, 1, "unavailable", "no active key", 503);
        run_done(&r);
        /* A kid no key has: not found, found by keydctl itself. */
        r = RUN("--json", "key", "show", "AAAAAAAAAAAA");
        assert_json_error(&r, 5, "not_found", "no key has a kid that starts with", 0);
        run_done(&r);

        /* Without --json: nothing on stdout. */
        r = RUN("rotate", "default");
        assert_status(&r, 4);
        cr_assert_str_empty(r.out);
        run_done(&r);
}

/* KEYDCTL_FORMAT=json is --json by default; table (or empty) is the default; anything else is a usage error. */
Test(keydctl, format_from_environment) {
        SERVE({ "GET /v1/keyrings?limit=1000", "keyrings.http" }, { "GET /v1/keyrings/nope", "error-404.http" });
        cr_assert_eq(setenv("KEYDCTL_FORMAT", "json", 1), 0);
        ASSERT_RUN_JSON(0, "keyrings.http", "keyrings");
        Run r = RUN("keyring", "show", "nope");
        assert_json_error(&r, 5, "not_found", "nope: not found", 404);
        run_done(&r);

        cr_assert_eq(setenv("KEYDCTL_FORMAT", "table", 1), 0);
        r = RUN("keyrings");
        assert_status(&r, 0);
        assert_output(&r, "keyrings.out");
        run_done(&r);
        ASSERT_RUN_JSON(0, "keyrings.http", "keyrings", "--json");

        cr_assert_eq(setenv("KEYDCTL_FORMAT", "xml", 1), 0);
        ASSERT_RUN(2, "", "keydctl: KEYDCTL_FORMAT: 'xml' is not json or table\n", "keyrings");
        unsetenv("KEYDCTL_FORMAT");
}

/* ---- one time syntax ---- */

/* Durations with units (1h30m) wherever a duration goes, bare numbers being seconds; instants in RFC 3339 or @N. */
Test(keydctl, time_syntax) {
        SERVE({ "POST /v1/keyrings/default/tokens", "mint.http" }, { "POST /v1/verify", "verify-valid.http" },
              { "POST /v1/tokens/revoke", "token-revoke.http" }, { "POST /v1/keyrings", "keyring-create.http" });
        ASSERT_RUN(0, NULL, "", "mint", "default", "--sub", "a", "--ttl", "1h30m", "--timeout", "1m");
        assert_request_body(0, "{\"sub\":\"a\",\"ttl\":\"1h30m\"}");
        ASSERT_RUN(0, NULL, "", "verify", "a.b.c", "--leeway", "1m30s");
        assert_request_body(1, "{\"token\":\"a.b.c\",\"leeway\":90}");
        ASSERT_RUN(0, NULL, "", "verify", "a.b.c", "--leeway", "0");
        assert_request_body(2, "{\"token\":\"a.b.c\",\"leeway\":0}");
        ASSERT_RUN(0, NULL, "", "token", "revoke", "j1", "--exp", "2026-11-23T04:15:00Z");
        assert_request_body(3, "{\"jti\":\"j1\",\"exp\":1795407300}");
        ASSERT_RUN(0, NULL, "", "token", "revoke", "j1", "--exp", "2026-11-23T05:15:00+01:00");
        assert_request_body(4, "{\"jti\":\"j1\",\"exp\":1795407300}");
        ASSERT_RUN(0, NULL, "", "token", "revoke", "j1", "--exp", "@1795407300");
        assert_request_body(5, "{\"jti\":\"j1\",\"exp\":1795407300}");
        ASSERT_RUN(0, NULL, "", "keyring", "create", "a1", "--rotation-period", "1w", "--prepublish", "1h30m",
                   "--clock-skew", "0", "--default-ttl", "90");
        assert_request_body(6, "{\"name\":\"a1\",\"kind\":\"issuer\",\"policy\":{\"rotation_period\":\"1w\","
                               "\"prepublish\":\"1h30m\",\"clock_skew\":0,\"default_ttl\":90}}");
        /* A bare number is no instant: the message says how to write one. */
        ASSERT_RUN(2, "", "keydctl: --exp: '1795407300' is not a time: for seconds since the epoch write @1795407300\n",
                   "token", "revoke", "j1", "--exp", "1795407300");
}

/* --aud on verify as on mint (--audience still works). */
Test(keydctl, verify_aud) {
        SERVE({ "POST /v1/verify", "verify-valid.http" });
        ASSERT_RUN(0, NULL, "", "verify", "a.b.c", "--aud", "api");
        assert_request_body(0, "{\"token\":\"a.b.c\",\"audience\":\"api\"}");
        ASSERT_RUN(0, NULL, "", "verify", "--audience", "api", "a.b.c");
        assert_request_body(1, "{\"token\":\"a.b.c\",\"audience\":\"api\"}");
}

/* What keyd would refuse is refused before anything is sent; what applies goes through. */
Test(keydctl, keyring_create_options_that_apply) {
        SERVE({ "POST /v1/keyrings", "keyring-create.http" });
        ASSERT_RUN(0, NULL, "", "keyring", "create", "r1", "--alg", "PS256", "--rsa-bits", "3072", "--issuer",
                   "http://127.0.0.1:8080");
        assert_request_body(0, "{\"name\":\"r1\",\"kind\":\"issuer\",\"policy\":{\"alg\":\"PS256\",\"rsa_bits\":3072,"
                               "\"issuer\":\"http://127.0.0.1:8080\"}}");
        /* An agent's issuer is not a URL verifiers fetch: not checked. */
        ASSERT_RUN(0, NULL, "", "keyring", "create", "a1", "--kind", "agent", "--owner-uid", "7", "--issuer",
                   "agent-7");
        ASSERT_RUN(2, "",
                   "keydctl: --issuer: 'http://issuer.example.com' must be an https URL (http only for a loopback "
                   "host: 127.0.0.1, [::1] or localhost)\n",
                   "keyring", "create", "i1", "--issuer", "http://issuer.example.com");
        ASSERT_RUN(2, "", "keydctl: --rsa-bits applies to RS256 and PS256 only, not to ES256 (--alg)\n", "keyring",
                   "create", "i1", "--rsa-bits", "4096");
        cr_assert_eq(srv.n, 2, "usage errors send nothing");
        /* --jwks-file is not offered: keyd sets it in keyd.conf only. */
        Run r = RUN("keyring", "create", "--help");
        cr_assert_null(strstr(r.out, "--jwks-file PATH"), "%s", r.out);
        cr_assert(strstr(r.out, "--allow-raw-sign"), "%s", r.out);
        run_done(&r);
}

/* ---- key show, token inspect ---- */

Test(keydctl, key_show) {
        SERVE({ "GET /v1/keyrings?limit=1000", "keyrings.http" }, { "GET /v1/keys/" KID_ACTIVE, "key.http" });
        ASSERT_RUN(
                0,
                "Key:          " KID_ACTIVE "\n"
                "Keyring:      default (issuer)\n"
                "Alg:          ES256\n"
                "State:        active\n"
                "Created:      2026-11-21T11:00:00Z\n"
                "Published:    2026-11-21T11:00:00Z\n"
                "Activated:    2026-11-22T12:00:00Z\n"
                "PKCS#11 URI:  pkcs11:token=keyd;object=keyd:33190e8aa4e7ae47:default:"
                "dc513244b465edbacb916575609be192;id=%DC%51%32%44%B4%65%ED%BA%CB%91%65%75%60%9B%E1%92;type=private\n"
                "              (the private key object is in token keyd)\n"
                "JWK:          {\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"1qqFT5FIui2Ku4WhCr_CmNNbgArNSchuHJHkrDAgrSg\","
                "\"y\":\"mWmS-2o4WzmpIvf_hT3m76QoS1O1U2oqZIPZMobf_n4\",\"kid\":\"" KID_ACTIVE
                "\",\"alg\":\"ES256\",\"use\":\"sig\"}\n",
                "", "key", "show", "0aWsmgFfrC73");
        cr_assert_str_eq(request(1), "GET /v1/keys/" KID_ACTIVE);
        ASSERT_RUN_JSON(0, "key.http", "key", "show", KID_ACTIVE, "--json");
}

static char *b64(const char *s) {
        char *out;
        cr_assert_eq(jose_b64url_encode(s, strlen(s), &out), 0);
        return out;
}

/* A token "signed" by kid: header and claims as given, a signature of 64 zero bytes (nothing is verified). */
static char *fake_token(const char *header, const char *claims) {
        static const char zero64[] =
                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        _cleanup_free_ char *h = b64(header), *c = b64(claims);
        char *t;
        cr_assert(asprintf(&t, "%s.%s.%s", h, c, zero64) > 0);
        return t;
}

Test(keydctl, token_inspect) {
        SERVE({ "GET /v1/keys/" KID_ACTIVE, "key.http" });
        _cleanup_free_ char *t = fake_token("{\"alg\":\"ES256\",\"kid\":\"" KID_ACTIVE "\",\"typ\":\"JWT\"}",
                                            "{\"sub\":\"agent-7\",\"scope\":\"read\",\"exp\":1795407300}"),
                            *unknown =
                                    fake_token("{\"alg\":\"ES256\",\"kid\":\"AAAAAAAAAAAAAAAA\"}", "{\"sub\":\"x\"}"),
                            *raw = fake_token("{\"alg\":\"EdDSA\"}", "not json");
        Run r = RUN("token", "inspect", t);
        assert_status(&r, 0);
        cr_assert(startswith(r.out,
                             "NOT VERIFIED: decoded only; keydctl verify checks the signature and the claims.\n"
                             "Header:\n  alg  ES256\n  kid  " KID_ACTIVE "\n  typ  JWT\n"
                             "Claims:\n  sub    agent-7\n  scope  read\n  exp    1795407300 (2026-11-23T04:15:00Z, "),
                  "%s", r.out);
        cr_assert(strstr(r.out, "\nSignature:  64 bytes\nKey:        keyring default, ES256, state active\n"), "%s",
                  r.out);
        cr_assert_str_eq(request(0), "GET /v1/keys/" KID_ACTIVE);
        run_done(&r);

        /* From standard input; --json: what was decoded, "verified": false, and keyd's key. */
        r = RUN_IN(t, "--json", "token", "inspect");
        assert_status(&r, 0);
        json_t *o = json_loads(r.out, 0, NULL);
        cr_assert(json_is_false(json_object_get(o, "verified")), "%s", r.out);
        cr_assert_str_eq(json_string_value(json_object_get(json_object_get(o, "claims"), "sub")), "agent-7");
        cr_assert_str_eq(json_string_value(json_object_get(json_object_get(o, "key"), "state")), "active");
        cr_assert_eq(json_integer_value(json_object_get(o, "signature_bytes")), 64);
        json_decref(o);
        run_done(&r);

        r = RUN("token", "inspect", unknown);
        assert_status(&r, 0);
        cr_assert(strstr(r.out, "Key:        keyd has no key of this kid\n"), "%s", r.out);
        run_done(&r);
        r = RUN("token", "inspect", raw);
        assert_status(&r, 0);
        cr_assert(strstr(r.out, "Payload:    8 bytes, not a JSON object\n") &&
                          strstr(r.out, "Key:        no kid in the header\n"),
                  "%s", r.out);
        run_done(&r);

        ASSERT_RUN(1, "", "keydctl: not a compact JWS: it has fewer than three parts separated by dots\n", "token",
                   "inspect", "abc.def");
        ASSERT_RUN(1, "", "keydctl: not a compact JWS: its header is not base64url JSON\n", "token", "inspect",
                   "a!.b.c");
}
