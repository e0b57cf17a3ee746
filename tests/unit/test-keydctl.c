/* SPDX-License-Identifier: MIT */
/* keydctl against the fake keyd of keydctl-fixture.h: help and usage errors, an unreachable or failing keyd, and the
 * commands that read (status, keyrings, keyring show, plan) or use keys (keyring create, mint, sign, verify). The
 * administrative commands are in test-keydctl-admin.c. */
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
        ASSERT_FAILS(3, "did not answer within 1 s", "--timeout", "1", "status");
}

Test(keydctl, reply_size_cap) {
        SERVE({ "GET /v1/keyrings?limit=1000", "@big" });
        ASSERT_FAILS(3, "larger than 16 MiB", "keyrings");
}

Test(keydctl, status) {
        SERVE({ "GET /healthz", "healthz.http" });
        Run r = RUN("status");
        assert_status(&r, 0);
        cr_assert(startswith(r.out, "status:    degraded\nkeyrings:  4\ndegraded:  agent-build-42\nversion:   0.1.0\n"),
                  "%s", r.out);
        run_done(&r);
        ASSERT_RUN_JSON(0, "healthz.http", "status", "--json");
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

        ASSERT_RUN(1, NULL, "keydctl: no such route in the fake keyd (not_found)\n", "keyring", "show", "nope");
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

Test(keydctl, refusals_exit_1) {
        SERVE({ "POST /v1/keyrings/default/rotate", "error-403.http" },
              { "POST /v1/keyrings/legacy/rotate", "error-409.http" },
              { "POST /v1/keyrings/default/tokens", "error-503.http" }, { "GET /v1/keyrings/red", "error-ansi.http" });
        ASSERT_RUN(1, "", "keydctl: uid 1000 may not rotate keyring default (admin only) (forbidden)\n", "rotate",
                   "default");
        ASSERT_RUN(1, NULL,
                   "keydctl: legacy: the next key was published less than prepublish ago (use force) (conflict)\n",
                   "rotate", "legacy", "--reason", "drill");
        ASSERT_RUN(1, "", "keydctl: keyring default has no active key (unavailable)\n", "mint", "default", "--sub",
                   "a");
        /* Control characters from the server never reach the terminal. */
        ASSERT_RUN(1, NULL, "keydctl: no keyring ?[31mred?[0m (not_found)\n", "keyring", "show", "red");
}

Test(keydctl, server_failures_exit_3) {
        SERVE({ "GET /v1/keyrings?limit=1000", "not-json.http" },
              { "POST /v1/keyrings/default/tokens", "error-500.http" });
        ASSERT_FAILS(3, "is not JSON", "keyrings");
        ASSERT_RUN(3, NULL, "keydctl: cannot write the audit record (internal)\n", "mint", "default", "--sub", "a");
}
