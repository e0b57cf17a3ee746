/* SPDX-License-Identifier: MIT */
/* keydctl's administrative commands against the fake keyd of keydctl-fixture.h: rotate, revoke, disable, token revoke,
 * jwks, audit tail and audit verify (with an anchor file). */
#include "rotation/lifecycle.h"
#include "tests/unit/keydctl-fixture.h"

Test(keydctl, rotate) {
        SERVE({ "POST /v1/keyrings/legacy/rotate", "rotate.http" });
        ASSERT_RUN(0,
                   "Rotated keyring legacy: active key " KID_NEXT
                   ", next key HZKtS2mH-gNHzF0vts-eR8g_T2yus7Xvb2KXMFKJIcM.\n",
                   NULL, "rotate", "legacy", "--force", "--reason", "drill");
        assert_request_body(0, "{\"force\":true,\"reason\":\"drill\"}");
}

Test(keydctl, revoke_and_disable) {
        SERVE({ "POST /v1/keys/" KID_ACTIVE "/revoke", "revoke.http" },
              { "POST /v1/keyrings/agent-build-42/disable", "disable.http" });
        ASSERT_RUN(0,
                   "Revoked key " KID_ACTIVE " of keyring default at 2026-11-23T04:00:00Z (key_compromise).\n"
                   "Check the keyring with: keydctl keyring show default\n",
                   NULL, "revoke", KID_ACTIVE, "--reason", "key_compromise");
        assert_request_body(0, "{\"reason\":\"key_compromise\"}");

        ASSERT_RUN(0, "Disabled keyring agent-build-42: 2 key(s) revoked.\n", NULL, "disable", "agent-build-42");
        cr_assert_str_eq(request(1), "POST /v1/keyrings/agent-build-42/disable");
}

/* The reasons are keyd's own (rotation/lifecycle.h), each sent as named; any other is a usage error before any
 * request. */
Test(keydctl, revoke_reasons) {
        SERVE({ "POST /v1/keys/" KID_ACTIVE "/revoke", "revoke.http" });
        ASSERT_RUN(2, "", "keydctl: --reason: 'oops' is not " REVOKE_REASONS_TEXT "\n", "revoke", KID_ACTIVE,
                   "--reason", "oops");
        ASSERT_RUN(2, "", "keydctl: revoke needs --reason " REVOKE_REASONS_TEXT "\n", "revoke", KID_ACTIVE);
        Run r = RUN("revoke", "--help");
        assert_status(&r, 0);
        cr_assert(strstr(r.out, "--reason R                " REVOKE_REASONS_TEXT " (required)\n"), "%s", r.out);
        run_done(&r);
        cr_assert_eq(srv.n, 0);

        for (RevokeReason i = 0; i < _REVOKE_REASON_MAX; i++) {
                const char *reason = revoke_reason_to_string(i);
                ASSERT_RUN(0, NULL, "", "revoke", KID_ACTIVE, "--reason", reason);
                json_t *body = request_body(i);
                cr_assert_str_eq(json_string_value(json_object_get(body, "reason")), reason);
                json_decref(body);
        }
}

Test(keydctl, jwks_and_token_revoke) {
        SERVE({ "GET /v1/keyrings/default/jwks", "jwks.http" }, { "POST /v1/tokens/revoke", "token-revoke.http" });
        ASSERT_RUN_JSON(0, "jwks.http", "jwks", "default");
        ASSERT_RUN(0, "Token Zk9oWm5Qa0x3UXJ0 denied until 2026-11-23T04:15:00Z.\n", NULL, "token", "revoke",
                   "Zk9oWm5Qa0x3UXJ0", "--exp", "1795407300", "--keyring", "default");
        assert_request_body(1, "{\"jti\":\"Zk9oWm5Qa0x3UXJ0\",\"exp\":1795407300,\"keyring\":\"default\"}");
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
        ASSERT_RUN(0, "Audit chain verified: 5 record(s), head seq 5, last signed checkpoint: seq 4.\n", NULL, "audit",
                   "verify");
        cr_assert_str_eq(request(0), "POST /v1/audit/verify");
}

Test(keydctl, audit_verify_broken_exits_1) {
        SERVE({ "POST /v1/audit/verify", "audit-verify-bad.http" });
        ASSERT_RUN(1,
                   "Audit chain does NOT verify: first bad record seq 3: record 3: hash does not match its contents\n",
                   NULL, "audit", "verify");
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
