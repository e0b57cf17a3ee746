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

#define LIST "GET /v1/keyrings?limit=1000"
#define REVOKED_OUT                                                                                                    \
        "Revoked key " KID_ACTIVE " of keyring default at 2026-11-23T04:00:00Z (key_compromise).\n"                    \
        "Signing key:      " KID_NEXT ", published 2026-11-22T12:00:00Z\n"                                             \
        "Verifier caches:  every JWKS cache drops the revoked key by 2026-11-23T04:30:00Z (max-age 30m)\n"            \
        "Check the keyring with: keydctl keyring show default\n"

/* The kid is looked up in the keyrings first (a prefix is resolved there), revoked, and the keyring read again to
 * say what verifiers see: the next key signs now (published 16 h before, so no warning), and verifiers that fetched
 * the JWKS just before the revocation keep it for prepublish/2 = 30 m (the earlier revocation of the keyring, two
 * days before, no longer shortens max-age). */
Test(keydctl, revoke_and_disable) {
        SERVE({ LIST, "keyrings.http" }, { "POST /v1/keys/" KID_ACTIVE "/revoke", "revoke.http" },
              { "GET /v1/keyrings/default", "keyring-default-revoked.http" },
              { "POST /v1/keyrings/agent-build-42/disable", "disable.http" });
        ASSERT_RUN(0, REVOKED_OUT, "", "revoke", KID_ACTIVE, "--reason", "key_compromise");
        cr_assert_str_eq(request(0), LIST);
        cr_assert_str_eq(request(1), "POST /v1/keys/" KID_ACTIVE "/revoke");
        assert_request_body(1, "{\"reason\":\"key_compromise\"}");
        cr_assert_str_eq(request(2), "GET /v1/keyrings/default");

        ASSERT_RUN(0, "Disabled keyring agent-build-42: 2 key(s) revoked.\n", NULL, "disable", "agent-build-42");
        cr_assert_str_eq(request(3), "POST /v1/keyrings/agent-build-42/disable");

        Run r = RUN("revoke", KID_ACTIVE, "--reason", "key_compromise", "--json");
        assert_status(&r, 0);
        json_t *o = json_loads(r.out, 0, NULL),
               *want = json_loads(
                       "{\"kid\":\"" KID_ACTIVE "\",\"keyring\":\"default\",\"state\":\"revoked\","
                       "\"revoked_at\":\"2026-11-23T04:00:00Z\",\"reason\":\"key_compromise\",\"already\":false,"
                       "\"signing\":{\"kid\":\"" KID_NEXT "\",\"publish_at\":\"2026-11-22T12:00:00Z\","
                       "\"published_recently\":false,\"verifiers_have_it_by\":null},"
                       "\"caches_clear_at\":\"2026-11-23T04:30:00Z\",\"jwks_max_age\":1800}",
                       0, NULL);
        cr_assert(json_equal(o, want), "%s", r.out);
        json_decref(o);
        json_decref(want);
        run_done(&r);
}

/* A kid as people have it: the 12 characters of keydctl keyrings, any unique prefix of 8 or more, one that starts
 * with "-" (with or without "--"); options before or after it. Ambiguous and short prefixes are usage errors; a
 * prefix of no key is refused. */
Test(keydctl, revoke_kid_prefixes) {
        SERVE({ LIST, "keyrings.http" }, { "POST /v1/keys/" KID_ACTIVE "/revoke", "revoke.http" },
              { "GET /v1/keyrings/default", "keyring-default-revoked.http" });
        ASSERT_RUN(0, REVOKED_OUT, "", "revoke", "0aWsmgFfrC73", "--reason", "key_compromise");
        cr_assert_str_eq(request(1), "POST /v1/keys/" KID_ACTIVE "/revoke");
        ASSERT_RUN(0, REVOKED_OUT, "", "revoke", "--reason", "key_compromise", "0aWsmgFf");
        cr_assert_str_eq(request(4), "POST /v1/keys/" KID_ACTIVE "/revoke");

        ASSERT_RUN(2, "",
                   "keydctl: kid prefix '0aWsmgF' is too short: give the kid, or at least its first 8 characters\n",
                   "revoke", "0aWsmgF", "--reason", "key_compromise");
        ASSERT_RUN(2, "", "keydctl: kid prefix '-8' is too short: give the kid, or at least its first 8 characters\n",
                   "revoke", "-8", "--reason", "key_compromise");
        ASSERT_RUN(2, "", "keydctl: 'a.b' is not a kid: a kid is base64url (A-Z a-z 0-9 - _)\n", "revoke", "a.b",
                   "--reason", "key_compromise");
        cr_assert_eq(srv.n, 6, "usage errors send nothing");

        /* A kid that starts with "-", revoked already: said so, from the listing alone. */
        static const char already[] =
                "Key -4SMmbmkPseGaiPqAAwZOaFo9f8XMUoLiMe-cR1-99A of keyring retired-agent was already revoked at "
                "2026-11-22T08:00:00Z (cessation).\n"
                "Signing key:      none: keyring retired-agent is disabled\n"
                "Verifier caches:  none: keyring retired-agent publishes no JWKS\n"
                "Check the keyring with: keydctl keyring show retired-agent\n";
        ASSERT_RUN(0, already, "", "revoke", "-4SMmbmkPseG", "--reason", "key_compromise");
        ASSERT_RUN(0, already, "", "revoke", "--reason", "key_compromise", "--", "-4SMmbmkPseG");
        ASSERT_RUN(0, already, "", "revoke", "--reason=key_compromise", "-4SMmbmkPseGaiPqAAwZOaFo9f8XMUoLiMe-cR1-99A");
        cr_assert_eq(srv.n, 9, "one request each: the listing");

        /* Not found (exit 5), as keyd's 404. */
        ASSERT_RUN(5, "", "keydctl: no key has a kid that starts with 'AAAAAAAAAAAA' (see keydctl keyrings)\n",
                   "revoke", "AAAAAAAAAAAA", "--reason", "key_compromise");
}

Test(keydctl, revoke_ambiguous_prefix) {
        SERVE({ LIST, "keyrings-ambiguous.http" }, { "POST /v1/keys/" KID_ACTIVE "/revoke", "revoke.http" },
              { "GET /v1/keyrings/default", "keyring-default-revoked.http" });
        ASSERT_RUN(2, "",
                   "keydctl: kid prefix '0aWsmgFfrC73' is ambiguous: " KID_ACTIVE
                   " (keyring default, active), " KID_ACTIVE "X (keyring legacy, retired); give more of the kid\n",
                   "revoke", "0aWsmgFfrC73", "--reason", "key_compromise");
        ASSERT_FAILS(2, "kid prefix '0aWsmgFf' is ambiguous: ", "revoke", "0aWsmgFf", "--reason", "key_compromise");
        cr_assert_eq(srv.n, 2, "nothing revoked");
        /* The whole kid names its key, though it is the prefix of another. */
        ASSERT_RUN(0, NULL, "", "revoke", KID_ACTIVE, "--reason", "key_compromise");
        cr_assert_str_eq(request(3), "POST /v1/keys/" KID_ACTIVE "/revoke");
}

/* Revoked meanwhile (409): keyd's state says when, and it is no failure. */
Test(keydctl, revoke_conflict_is_already_revoked) {
        SERVE({ LIST, "keyrings.http" }, { "POST /v1/keys/" KID_ACTIVE "/revoke", "error-409-revoked.http" },
              { "GET /v1/keyrings/default", "keyring-default-revoked.http" });
        Run r = RUN("revoke", KID_ACTIVE, "--reason", "key_compromise");
        assert_status(&r, 0);
        cr_assert(startswith(r.out, "Key " KID_ACTIVE " of keyring default was already revoked at 2026-11-23T04:00:00Z "
                                    "(key_compromise).\nSigning key:      " KID_NEXT),
                  "%s", r.out);
        cr_assert_str_empty(r.err);
        run_done(&r);
}

/* The reasons are keyd's own codes (rotation/lifecycle.h), each sent as named, free text after the code as the
 * comment; a reason that does not start with a code is a usage error before any request. */
Test(keydctl, revoke_reasons) {
        SERVE({ LIST, "keyrings.http" }, { "POST /v1/keys/" KID_ACTIVE "/revoke", "revoke.http" },
              { "GET /v1/keyrings/default", "keyring-default-revoked.http" });
        ASSERT_RUN(2, "",
                   "keydctl: --reason: 'oops' does not start with a reason code: " REVOKE_REASONS_TEXT
                   " (free text may follow: --reason 'key_compromise: INC-4711')\n",
                   "revoke", KID_ACTIVE, "--reason", "oops");
        ASSERT_RUN(2, "", "keydctl: revoke needs --reason " REVOKE_REASONS_TEXT "\n", "revoke", KID_ACTIVE);
        Run r = RUN("revoke", "--help");
        assert_status(&r, 0);
        cr_assert(strstr(r.out, "Codes: " REVOKE_REASONS_TEXT " (required)\n"), "%s", r.out);
        run_done(&r);
        cr_assert_eq(srv.n, 0);

        for (RevokeReason i = 0; i < _REVOKE_REASON_MAX; i++) {
                const char *reason = revoke_reason_to_string(i);
                ASSERT_RUN(0, NULL, "", "revoke", KID_ACTIVE, "--reason", reason);
                json_t *body = request_body(3 * i + 1);
                cr_assert_str_eq(json_string_value(json_object_get(body, "reason")), reason);
                cr_assert_null(json_object_get(body, "comment"));
                json_decref(body);
        }

        /* Free text: the incident reference goes to keyd as the comment, and is shown. */
        r = RUN("revoke", KID_ACTIVE, "--reason", "key_compromise: INC-4711 PIN leaked");
        assert_status(&r, 0);
        cr_assert(startswith(r.out, "Revoked key " KID_ACTIVE " of keyring default at 2026-11-23T04:00:00Z "
                                    "(key_compromise: INC-4711 PIN leaked).\n"),
                  "%s", r.out);
        assert_request_body(3 * _REVOKE_REASON_MAX + 1,
                            "{\"reason\":\"key_compromise\",\"comment\":\"INC-4711 PIN leaked\"}");
        run_done(&r);
        ASSERT_RUN(0, NULL, "", "revoke", KID_ACTIVE, "--reason", "superseded moved to the new HSM");
        assert_request_body(3 * _REVOKE_REASON_MAX + 4,
                            "{\"reason\":\"superseded\",\"comment\":\"moved to the new HSM\"}");
}

/* A denial run again: keyd's 409 says when the denial that stands was made and until when. */
Test(keydctl, token_revoke_already) {
        SERVE({ "POST /v1/tokens/revoke", "token-revoke-409.http" });
        ASSERT_RUN(0,
                   "Token Zk9oWm5Qa0x3UXJ0 was already denied at 2026-11-23T04:00:00Z, until 2038-01-01T00:00:00Z.\n",
                   "", "token", "revoke", "Zk9oWm5Qa0x3UXJ0");
        ASSERT_RUN(0, NULL, "", "token", "revoke", "Zk9oWm5Qa0x3UXJ0", "--exp", "2038-01-01T00:00:00Z");
        Run r = RUN("token", "revoke", "--json", "Zk9oWm5Qa0x3UXJ0");
        assert_status(&r, 0);
        json_t *o = json_loads(r.out, 0, NULL),
               *want = json_loads(
                       "{\"jti\":\"Zk9oWm5Qa0x3UXJ0\",\"exp\":2145916800,\"revoked_at\":\"2026-11-23T04:00:00Z\","
                       "\"already\":true}",
                       0, NULL);
        cr_assert(json_equal(o, want), "%s", r.out);
        json_decref(o);
        json_decref(want);
        run_done(&r);
        /* Longer than the denial that stands: not done, a conflict (exit 6). */
        ASSERT_FAILS(6, "keyd does not extend a denial", "token", "revoke", "Zk9oWm5Qa0x3UXJ0", "--exp",
                     "@2145916801");
}

Test(keydctl, token_revoke_other_conflict) {
        SERVE({ "POST /v1/tokens/revoke", "error-409.http" });
        ASSERT_RUN(6, "",
                   "keydctl: legacy: the next key was published less than prepublish ago (use force) (conflict)\n",
                   "token", "revoke", "-jti-that-starts-with-a-dash");
        assert_request_body(0, "{\"jti\":\"-jti-that-starts-with-a-dash\"}");
}

/* rekey-all: --reason is required, --before is a time; nothing is sent before the command line is right. */
Test(keydctl, rekey_all_usage) {
        SERVE({ LIST, "keyrings.http" });
        ASSERT_RUN(2, "", "keydctl: rekey-all needs --reason, an incident reference for the audit log\n", "rekey-all");
        ASSERT_RUN(2, "",
                   "keydctl: --before: 'yesterday' is not a time: RFC 3339 (2026-11-23T04:00:00Z), or @SECONDS\n",
                   "rekey-all", "--reason", "INC-1", "--before", "yesterday");
        ASSERT_RUN(2, "",
                   "keydctl: --before: '1795406400' is not a time: for seconds since the epoch write @1795406400\n",
                   "rekey-all", "--reason", "INC-1", "--before", "1795406400");
        ASSERT_RUN(2, "",
                   "keydctl: unexpected operand 'default' (usage: keydctl rekey-all --reason R [--before TIME])\n",
                   "rekey-all", "--reason", "INC-1", "default");
        cr_assert_eq(srv.n, 0);
}

Test(keydctl, jwks_and_token_revoke) {
        SERVE({ "GET /v1/keyrings/default/jwks", "jwks.http" }, { "POST /v1/tokens/revoke", "token-revoke.http" });
        ASSERT_RUN_JSON(0, "jwks.http", "jwks", "default");
        ASSERT_RUN(0, "Token Zk9oWm5Qa0x3UXJ0 denied until 2026-11-23T04:15:00Z.\n", NULL, "token", "revoke",
                   "Zk9oWm5Qa0x3UXJ0", "--exp", "2026-11-23T04:15:00Z", "--keyring", "default");
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
