/* SPDX-License-Identifier: MIT */
/* The store: the audit chain, checkpoints, revoked tokens, and concurrent readers. */
#include "tests/unit/store-fixture.h"

#include <ctype.h>
#include <dlfcn.h>
#include <execinfo.h>

#include "tests/unit/audit-fixture.h"

TestSuite(store, .init = setup, .fini = teardown);

static void assert_broken_at(Store *s, uint64_t want) {
        uint64_t bad = 0;
        cr_assert_eq(store_audit_verify(s, &bad), -EBADMSG);
        cr_assert_eq(bad, want, "verify named %" PRIu64 ", not %" PRIu64, bad, want);
}

Test(store, audit_chain_of_100_verifies) {
        Store *s = open_rw();
        uint64_t seq, bad = 12345;
        char hash[STORE_HASH_HEX + 1];

        cr_assert_eq(store_audit_verify(s, &bad), 0, "an empty chain verifies");
        append_n(s, 100);
        cr_assert_eq(store_audit_verify(s, &bad), 0);
        cr_assert_eq(bad, 12345, "output written on success of nothing to name");
        cr_assert_eq(store_audit_head(s, &seq, hash), 0);
        cr_assert_eq(seq, 100);

        StoreAudit **l;
        size_t n;
        cr_assert_eq(store_audit_list(s, 10, 5, &l, &n), 0);
        cr_assert_eq(n, 5);
        for (size_t i = 0; i < n; i++)
                cr_assert_eq(l[i]->seq, 11 + i);
        cr_assert_null(l[5]);
        store_audit_list_free(l);
        cr_assert_eq(store_audit_list(s, 99, SIZE_MAX, &l, &n), 0);
        cr_assert_eq(n, 1);
        cr_assert_str_eq(l[0]->hash, hash, "the head is the last record");
        store_audit_list_free(l);
        store_close(s);
}

Test(store, audit_changed_field_named) {
        /* Change one byte (or one unit of a number) of each stored field of record 38 in turn: verify names 38. */
        static const char *const tamper[] = {
                "UPDATE audit SET time = time + 1 WHERE seq = 38",
                "UPDATE audit SET uid = uid + 1 WHERE seq = 38",
                "UPDATE audit SET pid = pid - 1 WHERE seq = 38",
                "UPDATE audit SET comm = 'G' || substr(comm, 2) WHERE seq = 38",
                "UPDATE audit SET action = substr(action, 1, 3) || 'X' || substr(action, 5) WHERE seq = 38",
                "UPDATE audit SET keyring = 'D' || substr(keyring, 2) WHERE seq = 38",
                "UPDATE audit SET kid = 'K' || substr(kid, 2) WHERE seq = 38",
                "UPDATE audit SET result = 'OK' WHERE seq = 38",
                "UPDATE audit SET detail = replace(detail, '37', '36') WHERE seq = 38",
                "UPDATE audit SET detail = NULL WHERE seq = 38",
                "UPDATE audit SET detail = 'not json' WHERE seq = 38",
                "UPDATE audit SET hash = (CASE WHEN hash LIKE 'f%' THEN 'e' ELSE 'f' END) || substr(hash, 2) "
                "WHERE seq = 38",
        };
        Store *s = open_rw();
        append_n(s, 100);
        raw_exec("CREATE TABLE saved AS SELECT * FROM audit WHERE seq = 38");
        sqlite3 *db = store_sqlite(s);
        cr_assert_eq(raw_int(db, "SELECT count(*) FROM saved WHERE comm IS NOT NULL AND keyring IS NOT NULL AND kid IS "
                                 "NOT NULL AND detail LIKE '%37%'"),
                     1, "every field of record 38 has something to change");
        for (size_t i = 0; i < ELEMENTSOF(tamper); i++) {
                raw_exec(tamper[i]);
                cr_assert_eq(raw_int(db, "SELECT count(*) FROM audit a JOIN saved b USING (seq) WHERE a.time IS b.time "
                                         "AND a.uid IS b.uid AND a.pid IS b.pid AND a.comm IS b.comm AND a.action IS "
                                         "b.action AND a.keyring IS b.keyring AND a.kid IS b.kid AND a.result IS "
                                         "b.result AND a.detail IS b.detail AND a.prev_hash IS b.prev_hash AND a.hash "
                                         "IS b.hash"),
                             0, "the tampering changed nothing: %s", tamper[i]);
                assert_broken_at(s, 38);
                raw_exec("DELETE FROM audit WHERE seq = 38; INSERT INTO audit SELECT * FROM saved");
                cr_assert_eq(store_audit_verify(s, NULL), 0, "restored after: %s", tamper[i]);
        }
        store_close(s);
}

Test(store, audit_gap_named) {
        Store *s = open_rw();
        append_n(s, 100);
        raw_exec("DELETE FROM audit WHERE seq = 50");
        assert_broken_at(s, 51);
        store_close(s);
}

Test(store, audit_missing_first_record_named) {
        Store *s = open_rw();
        append_n(s, 10);
        raw_exec("DELETE FROM audit WHERE seq = 1");
        assert_broken_at(s, 2);
        store_close(s);
}

Test(store, audit_prev_hash_named) {
        Store *s = open_rw();
        append_n(s, 100);
        raw_exec("UPDATE audit SET prev_hash = (SELECT hash FROM audit WHERE seq = 10) WHERE seq = 64");
        assert_broken_at(s, 64);
        store_close(s);
}

Test(store, audit_renumbered_record_named) {
        /* Move the last record up one seq: its hash covers seq, so the gap before it and its hash both fail. */
        Store *s = open_rw();
        append_n(s, 20);
        raw_exec("UPDATE audit SET seq = 21 WHERE seq = 20; "
                 "UPDATE audit SET prev_hash = (SELECT hash FROM audit WHERE seq = 19) WHERE seq = 21");
        assert_broken_at(s, 21);
        store_close(s);
}

static void sha256_hex(const uint8_t *a, size_t na, const char *b, char out[65]) {
        uint8_t md[32];
        unsigned n = 0;
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        cr_assert_not_null(ctx);
        cr_assert_eq(EVP_DigestInit_ex(ctx, EVP_sha256(), NULL), 1);
        cr_assert_eq(EVP_DigestUpdate(ctx, a, na), 1);
        cr_assert_eq(EVP_DigestUpdate(ctx, b, strlen(b)), 1);
        cr_assert_eq(EVP_DigestFinal_ex(ctx, md, &n), 1);
        cr_assert_eq(n, 32);
        EVP_MD_CTX_free(ctx);
        for (size_t i = 0; i < 32; i++)
                sprintf(out + 2 * i, "%02x", md[i]);
}

Test(store, audit_canonical_form_and_hash) {
        StoreAudit a = {.seq = 1,
                        .time = 1700000000123456,
                        .uid = 1000,
                        .pid = 4242,
                        .comm = (char *) "gateway",
                        .action = (char *) "token.mint",
                        .keyring = (char *) "default",
                        .result = (char *) "ok",
                        .detail = (char *) "{ \"ttl\": 900, \"aud\": \"https://api.example/x\", \"b\": [1, {\"z\": 1, "
                                           "\"a\": \"\\u00e9\"}] }"};
        const char *want =
                "{\"action\":\"token.mint\",\"comm\":\"gateway\",\"detail\":{\"aud\":\"https://api.example/x\","
                "\"b\":[1,{\"a\":\"\xc3\xa9\",\"z\":1}],\"ttl\":900},\"keyring\":\"default\",\"kid\":null,"
                "\"pid\":4242,\"result\":\"ok\",\"seq\":1,\"time\":1700000000123456,\"uid\":1000}";
        char *c = NULL;
        cr_assert_eq(store_audit_canonical(&a, &c), 0);
        cr_assert_str_eq(c, want);
        free(c);

        /* The hash, computed here with OpenSSL alone: SHA-256 of 32 zero bytes, then the canonical text. */
        uint8_t zeros[32] = {0};
        char first[65], second[65];
        sha256_hex(zeros, sizeof zeros, want, first);

        Store *s = open_rw();
        StoreAudit rec = a;
        rec.seq = 0; /* assigned by append */
        cr_assert_eq(store_begin(s, STORE_SYNCED), 0);
        cr_assert_eq(store_audit_append(s, &rec), 0);
        cr_assert_eq(rec.seq, 1);
        cr_assert_eq(strspn(rec.prev_hash, "0"), 64);
        cr_assert_str_eq(rec.hash, first);

        /* The second links to the first: prev_hash is the first hash as 32 raw bytes. */
        StoreAudit rec2 = {.time = 2, .uid = -1, .pid = -1, .action = (char *) "keyd.stop", .result = (char *) "ok"};
        cr_assert_eq(store_audit_append(s, &rec2), 0);
        cr_assert_eq(store_commit(s), 0);
        size_t n;
        uint8_t *prev = test_unhex(first, &n);
        cr_assert_eq(n, 32);
        sha256_hex(prev, n,
                   "{\"action\":\"keyd.stop\",\"comm\":null,\"detail\":null,\"keyring\":null,\"kid\":null,\"pid\":-1,"
                   "\"result\":\"ok\",\"seq\":2,\"time\":2,\"uid\":-1}",
                   second);
        free(prev);
        cr_assert_str_eq(rec2.prev_hash, first);
        cr_assert_str_eq(rec2.hash, second);
        store_close(s);
}

/* jansson's allocator, failing the nth allocation once armed; never inside json_load*(), whose parser corrupts its
 * heap when an allocation fails (jansson 2.14). */
static unsigned long json_allocs, json_fail_at;

static void *failing_malloc(size_t size) {
        void *frames[32];
        int n = json_fail_at ? backtrace(frames, (int) ELEMENTSOF(frames)) : 0;
        for (int i = 0; i < n; i++) {
                Dl_info info;
                if (dladdr(frames[i], &info) && info.dli_sname && startswith(info.dli_sname, "json_load"))
                        return malloc(size);
        }
        if (json_fail_at && ++json_allocs == json_fail_at)
                return NULL;
        return malloc(size);
}

Test(store, audit_append_out_of_memory_never_breaks_the_chain) {
        /* jansson's serializer drops an object key it cannot write and still succeeds: a record hashed from such a
         * canonical text would be committed with a hash that never verifies. Each allocation fails in turn: the
         * append fails, or the record it committed verifies. */
        Store *s = open_rw();
        void *frame;
        (void) backtrace(&frame, 1); /* loads what backtrace() needs now, not inside the allocator */
        json_set_alloc_funcs(failing_malloc, free);
        bool fired = true;
        for (unsigned long nth = 1; fired && nth < 10000; nth++) {
                StoreAudit a = audit("keyring.create", "{\"kind\":\"issuer\",\"policy\":{\"alg\":\"ES256\","
                                                       "\"rotation_period\":\"1d\",\"sign_users\":[\"root\"]}}");
                cr_assert_eq(store_begin(s, STORE_SYNCED), 0);
                json_allocs = 0;
                json_fail_at = nth;
                int r = store_audit_append(s, &a);
                fired = json_allocs >= nth;
                json_fail_at = 0;
                if (r >= 0)
                        cr_assert_eq(store_commit(s), 0);
                else
                        store_rollback(s);
                uint64_t bad = 0;
                cr_assert_eq(store_audit_verify(s, &bad), 0, "allocation %lu: append returned %d and record %" PRIu64
                             " does not verify", nth, r, bad);
        }
        json_set_alloc_funcs(malloc, free);
        store_close(s);
}

Test(store, audit_append_out_of_memory_never_breaks_the_chain_canonical_detail) {
        /* The same with a detail made by store_audit_detail_dump(), which the canonical form takes as it is. */
        Store *s = open_rw();
        void *frame;
        (void) backtrace(&frame, 1);
        json_set_alloc_funcs(failing_malloc, free);
        bool fired = true;
        for (unsigned long nth = 1; fired && nth < 10000; nth++) {
                StoreAudit a = audit("keyring.create", "{\"kind\":\"issuer\",\"policy\":{\"alg\":\"ES256\","
                                                       "\"rotation_period\":\"1d\",\"sign_users\":[\"root\"]}}");
                a.detail_canonical = true;
                cr_assert_eq(store_begin(s, STORE_SYNCED), 0);
                json_allocs = 0;
                json_fail_at = nth;
                int r = store_audit_append(s, &a);
                fired = json_allocs >= nth;
                json_fail_at = 0;
                if (r >= 0)
                        cr_assert_eq(store_commit(s), 0);
                else
                        store_rollback(s);
                uint64_t bad = 0;
                cr_assert_eq(store_audit_verify(s, &bad), 0,
                             "allocation %lu: append returned %d and record %" PRIu64 " does not verify", nth, r, bad);
        }
        json_set_alloc_funcs(malloc, free);
        store_close(s);
}

Test(store, audit_canonical_detail_taken_as_it_is_is_the_same_text) {
        /* A detail written by store_audit_detail_dump() is spliced into the canonical form without being parsed
         * again: the text must be the one the parsing path (verification's) makes from the stored row. */
        static const char *const details[] = {
                "{}",
                "{\"jti\":\"AbC-_x\",\"sub\":\"agent-1\",\"exp\":1700000900}",
                "{\"z\":1,\"a\":{\"y\":[1,2,{\"b\":null,\"a\":true}],\"x\":false},\"m\":"
                "\"\\u00e9\\u2028\\ud83d\\ude00\"}",
                "{\"ctl\":\"\\u0001\\b\\f\\n\\r\\t\\u001f\\u007f \\\" \\\\ /\",\"neg\":-9223372036854775807}",
                "{\"r\":0.1,\"big\":1e300,\"small\":-2.5e-300,\"i\":0}",
        };
        static const char *const comms[] = { NULL, "gateway", "a\"b\\c\n",
                                             "\x01\x1f\x7f\b\f\r\t/\xc3\xa9\xf0\x9f\x98\x80" };
        for (size_t i = 0; i < ELEMENTSOF(details); i++)
                for (size_t j = 0; j < ELEMENTSOF(comms); j++) {
                        json_t *o = json_loads(details[i], JSON_REJECT_DUPLICATES, NULL);
                        char *d = NULL, *fast = NULL, *slow = NULL;
                        cr_assert_not_null(o, "%s", details[i]);
                        cr_assert_eq(store_audit_detail_dump(o, &d), 0);
                        json_decref(o);
                        StoreAudit a = { .seq = 7 + i,
                                         .time = 1700000000123456,
                                         .uid = (int64_t) j - 1,
                                         .pid = 42,
                                         .comm = (char *) comms[j],
                                         .action = (char *) "token.mint",
                                         .keyring = j ? (char *) comms[j] : NULL,
                                         .kid = (char *) "k\u00e9",
                                         .result = (char *) "ok",
                                         .detail = d };
                        cr_assert_eq(store_audit_canonical(&a, &slow), 0);
                        a.detail_canonical = true;
                        cr_assert_eq(store_audit_canonical(&a, &fast), 0);
                        cr_assert_str_eq(fast, slow, "%s", details[i]);
                        free(d);
                        free(fast);
                        free(slow);
                }
        StoreAudit bad = { .seq = 1,
                           .action = (char *) "x",
                           .result = (char *) "ok",
                           .comm = (char *) "bad\xff",
                           .detail = (char *) "{}",
                           .detail_canonical = true };
        char *c = NULL;
        cr_assert_eq(store_audit_canonical(&bad, &c), -EINVAL, "not UTF-8");
        cr_assert_null(c);
        json_t *arr = json_array();
        char *d = NULL;
        cr_assert_eq(store_audit_detail_dump(arr, &d), -EINVAL, "only an object");
        cr_assert_null(d);
        json_decref(arr);
}

Test(store, audit_detail_must_be_an_object) {
        static const char *const bad[] = {"[1]", "3", "\"x\"", "null", "not json", "{\"a\":1,\"a\":2}", "{\"a\":"};
        Store *s = open_rw();
        cr_assert_eq(store_begin(s, STORE_COMMITTED), 0);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                StoreAudit a = audit("key.sign", bad[i]);
                char *c = NULL;
                cr_assert_eq(store_audit_canonical(&a, &c), -EINVAL, "%s", bad[i]);
                cr_assert_null(c);
                cr_assert_eq(store_audit_append(s, &a), -EINVAL, "%s", bad[i]);
                cr_assert_eq(a.seq, 0);
        }
        StoreAudit a = audit("key.sign", NULL);
        a.comm = (char *) "bad\xff";
        cr_assert_eq(store_audit_append(s, &a), -EINVAL, "not UTF-8");
        a = audit("key.sign", NULL);
        a.action = NULL;
        cr_assert_eq(store_audit_append(s, &a), -EINVAL, "an action is required");
        a = audit("key.sign", "{}");
        cr_assert_eq(store_audit_append(s, &a), 0);
        cr_assert_eq(a.seq, 1, "the refused records took no seq");
        cr_assert_eq(store_commit(s), 0);
        store_close(s);
}

Test(store, checkpoints) {
        Store *s = open_rw();
        uint64_t seq = 0;
        char *hash = NULL;

        cr_assert_eq(store_checkpoint_latest(s, &seq, &hash, NULL, NULL), -ENOENT);
        cr_assert_null(hash);
        append_n(s, 5);
        StoreAudit **l;
        cr_assert_eq(store_audit_list(s, 0, 10, &l, NULL), 0);
        cr_assert_eq(store_begin(s, STORE_SYNCED), 0);
        cr_assert_eq(store_checkpoint_insert(s, 6, l[4]->hash, 1, "kid", "a.b.c"), -ENOENT, "no record 6");
        cr_assert_eq(store_checkpoint_insert(s, 2, "xyz", 1, "kid", "a.b.c"), -EINVAL);
        char upper[STORE_HASH_HEX + 1];
        for (size_t i = 0; i <= STORE_HASH_HEX; i++)
                upper[i] = (char) toupper((unsigned char) l[1]->hash[i]);
        cr_assert_eq(store_checkpoint_insert(s, 2, upper, 1, "kid", "a.b.c"), -EINVAL, "the hash is lower case hex");
        cr_assert_eq(store_checkpoint_insert(s, 3, l[2]->hash, 1, "kid", "a.b.c"), 0);
        cr_assert_eq(store_checkpoint_insert(s, 5, l[4]->hash, 2, "kid2", "d.e.f"), 0);
        cr_assert_eq(store_checkpoint_insert(s, 5, l[4]->hash, 4, "kid", "a.b.c"), -EEXIST);
        /* Checkpoints never go backwards: not to an earlier record, not to an earlier time. */
        cr_assert_eq(store_checkpoint_insert(s, 2, l[1]->hash, 3, "kid", "g.h.i"), -ERANGE);
        cr_assert_eq(store_commit(s), 0);
        append_n(s, 1);
        StoreAudit **l6;
        cr_assert_eq(store_audit_list(s, 5, 1, &l6, NULL), 0);
        cr_assert_eq(store_begin(s, STORE_SYNCED), 0);
        cr_assert_eq(store_checkpoint_insert(s, 6, l6[0]->hash, 1, "kid", "g.h.i"), -ERANGE, "time went back");
        cr_assert_eq(store_checkpoint_insert(s, 6, l6[0]->hash, 2, "kid", "g.h.i"), 0, "the same time is fine");
        cr_assert_eq(store_commit(s), 0);
        store_audit_list_free(l6);

        StoreCheckpoint **cps;
        size_t n_cps;
        cr_assert_eq(store_checkpoint_list(s, 0, SIZE_MAX, &cps, &n_cps), 0);
        cr_assert_eq(n_cps, 3);
        cr_assert_eq(cps[0]->seq, 3);
        cr_assert_eq(cps[1]->seq, 5);
        cr_assert_eq(cps[2]->seq, 6);
        cr_assert_null(cps[3]);
        cr_assert_str_eq(cps[1]->hash, l[4]->hash);
        cr_assert_eq(cps[1]->time, 2);
        cr_assert_str_eq(cps[1]->kid, "kid2");
        cr_assert_str_eq(cps[1]->jws, "d.e.f");
        store_checkpoint_list_free(cps);
        cr_assert_eq(store_checkpoint_list(s, 3, 1, &cps, &n_cps), 0);
        cr_assert_eq(n_cps, 1);
        cr_assert_eq(cps[0]->seq, 5);
        store_checkpoint_list_free(cps);
        char *kid;
        cr_assert_eq(store_checkpoint_latest(s, &seq, &hash, &kid, NULL), 0);
        cr_assert_eq(seq, 6);
        cr_assert_str_eq(kid, "kid");
        free(hash);
        free(kid);
        raw_exec("DELETE FROM audit_checkpoints WHERE seq = 6");
        cr_assert_eq(store_checkpoint_latest(s, &seq, &hash, &kid, NULL), 0);
        cr_assert_eq(seq, 5);
        cr_assert_str_eq(hash, l[4]->hash);
        cr_assert_str_eq(kid, "kid2");
        free(hash);
        free(kid);
        store_audit_list_free(l);
        store_close(s);
}

/* ---- audit_verify: every checkpoint, in order, signed by a key keyd generated in an issuer keyring ---- */

/* Run SQL on the checkpoints: audit_verify() refuses them, naming what, until they are restored from the table
 * "saved"; then it verifies up to want_checkpoint again. */
static void checkpoints_refused_until_restored(Store *s, const char *sql, const char *what, uint64_t want_checkpoint) {
        raw_exec(sql);
        assert_refused(s, what);
        raw_exec("DELETE FROM audit_checkpoints; INSERT INTO audit_checkpoints SELECT * FROM saved");
        assert_verifies(s, want_checkpoint);
}

Test(store, audit_verify_checks_every_checkpoint) {
        History h = history_new(KEYD_ALG_ES256);
        uint64_t cp1 = h.head;
        checkpoint(h.s, &h.a, cp1, 100);
        append_n(h.s, 3);
        uint64_t cp2 = head(h.s);
        checkpoint(h.s, &h.a, cp2, 200);
        key_added(h.s, "default", &h.b, true); /* a rotation: the next checkpoints are signed by the new key */
        append_n(h.s, 3);
        uint64_t cp3 = head(h.s);
        checkpoint(h.s, &h.b, cp3, 200);
        assert_verifies(h.s, cp3);
        raw_exec("CREATE TABLE saved AS SELECT * FROM audit_checkpoints");

        /* A bad signature on a checkpoint that is not the latest. */
        char sql[512];
        snprintf(sql, sizeof sql,
                 "UPDATE audit_checkpoints SET signature = substr(signature, 1, length(signature) - 3) || "
                 "(CASE WHEN substr(signature, -3, 1) = 'A' THEN 'B' ELSE 'A' END) || substr(signature, -2) "
                 "WHERE seq = %" PRIu64,
                 cp2);
        checkpoints_refused_until_restored(h.s, sql, "bad signature", cp3);

        /* The first checkpoint names a hash its record does not have. */
        snprintf(sql, sizeof sql,
                 "UPDATE audit_checkpoints SET hash = (SELECT hash FROM audit WHERE seq = %" PRIu64 ") WHERE seq = "
                 "%" PRIu64,
                 cp2, cp1);
        checkpoints_refused_until_restored(h.s, sql, "does not match the checkpoint", cp3);

        /* An old checkpoint whose signed content is another record's. */
        snprintf(sql, sizeof sql,
                 "UPDATE audit_checkpoints SET signature = (SELECT signature FROM audit_checkpoints WHERE seq = "
                 "%" PRIu64 ") WHERE seq = %" PRIu64,
                 cp2, cp1);
        checkpoints_refused_until_restored(h.s, sql, "signed content", cp3);
        history_done(&h);
}

Test(store, audit_verify_checkpoints_never_go_backwards) {
        History h = history_new(KEYD_ALG_ES256);
        checkpoint(h.s, &h.a, h.head, 300);
        append_n(h.s, 2);
        /* Written by an outsider past the store's own refusal: a later record signed at an earlier time. */
        checkpoint(h.s, &h.a, head(h.s), 200, .raw = true);
        history_refused(&h, "went backwards");
}

/* b's row in the keyring (with the key.generate record keyd writes with it, if audited), then a checkpoint signed
 * by b: of a record after it, or (early) of the head before it. audit_verify() refuses: keyd did not generate b
 * for signing checkpoints. */
static void b_signs_a_checkpoint(History *h, const char *ring, bool audited, bool early) {
        key_added(h->s, ring, &h->b, audited);
        if (!early)
                append_n(h->s, 1);
        checkpoint(h->s, &h->b, early ? h->head : head(h->s), 100);
        history_refused(h, "did not generate");
}

Test(store, audit_verify_refuses_a_key_keyd_did_not_generate) {
        History h = history_new(KEYD_ALG_ES256);
        /* In the keys table of an issuer keyring, but never generated by keyd: no key.generate record. */
        b_signs_a_checkpoint(&h, "default", false, false);
}

Test(store, audit_verify_refuses_an_agent_key) {
        History h = history_new(KEYD_ALG_ES256);
        /* Generated by keyd, but in an agent keyring: its owner asks keyd to sign anything with it. */
        keyring_created(h.s, "agent-1000", "agent");
        b_signs_a_checkpoint(&h, "agent-1000", true, false);
}

Test(store, audit_verify_refuses_a_key_generated_after_the_checkpoint) {
        History h = history_new(KEYD_ALG_ES256);
        b_signs_a_checkpoint(&h, "default", true, true);
}

/* Set a column of the key kid's row, as an outsider would. */
static void key_row_set(const char *kid, const char *column, const char *value) {
        char *sql;
        cr_assert(asprintf(&sql, "UPDATE keys SET %s = '%s' WHERE kid = '%s'", column, value, kid) >= 0);
        raw_exec(sql);
        free(sql);
}

Test(store, audit_verify_refuses_a_swapped_jwk) {
        History h = history_new(KEYD_ALG_ES256);
        /* The row of keyd's key now holds the outsider's public key, which signs under keyd's kid. */
        key_row_set(h.a.kid, "jwk", h.b.jwk);
        checkpoint(h.s, &h.b, head(h.s), 100, .kid = h.a.kid);
        history_refused(&h, "thumbprint");
}

Test(store, audit_verify_refuses_another_typ) {
        History h = history_new(KEYD_ALG_ES256);
        /* A token keyd signed with the same key is not a checkpoint. */
        checkpoint(h.s, &h.a, h.head, 100, .typ = "JWT");
        history_refused(&h, "typ");
}

Test(store, audit_verify_refuses_another_alg) {
        History h = history_new(KEYD_ALG_RS256);
        /* keyd generated it for RS256; the row now says PS256, and so does the checkpoint. */
        key_row_set(h.a.kid, "alg", "PS256");
        checkpoint(h.s, &h.a, h.head, 100, .alg = "PS256");
        history_refused(&h, "alg");
}

/* ---- revoked tokens ---- */

Test(store, revoked_tokens) {
        Store *s = open_rw();
        StoreRevokedToken t1 = {.jti = (char *) "j1", .keyring = (char *) "default", .exp = 1000, .revoked_at = 10};
        StoreRevokedToken t2 = {.jti = (char *) "j2", .exp = 2000, .revoked_at = 20, .reason = (char *) "r"};
        StoreRevokedToken **l;
        size_t n;

        cr_assert_eq(store_begin(s, STORE_SYNCED), 0);
        cr_assert_eq(store_revoked_token_insert(s, &t1), 0);
        cr_assert_eq(store_revoked_token_insert(s, &t2), 0);
        cr_assert_eq(store_revoked_token_insert(s, &t1), -EEXIST);
        cr_assert_eq(store_commit(s), 0);

        cr_assert_eq(store_revoked_token_check(s, "j1", 999), 1, "denied before exp");
        cr_assert_eq(store_revoked_token_check(s, "j1", 1000), 0, "not after exp");
        cr_assert_eq(store_revoked_token_check(s, "j1", 5000), 0);
        cr_assert_eq(store_revoked_token_check(s, "j2", 1500), 1);
        cr_assert_eq(store_revoked_token_check(s, "j3", 0), 0, "never revoked");

        cr_assert_eq(store_revoked_token_list(s, &l, &n), 0);
        cr_assert_eq(n, 2);
        cr_assert_str_eq(l[0]->jti, "j1");
        cr_assert_null(l[0]->reason);
        cr_assert_null(l[1]->keyring);
        store_revoked_token_list_free(l);

        cr_assert_eq(store_begin(s, STORE_SYNCED), 0);
        cr_assert_eq(store_revoked_token_prune(s, 999), 0);
        cr_assert_eq(store_revoked_token_prune(s, 1000), 1);
        cr_assert_eq(store_commit(s), 0);
        cr_assert_eq(store_revoked_token_check(s, "j2", 1500), 1, "j2 kept");
        cr_assert_eq(store_begin(s, STORE_SYNCED), 0);
        cr_assert_eq(store_revoked_token_prune(s, 3000), 1);
        cr_assert_eq(store_commit(s), 0);
        cr_assert_eq(store_revoked_token_list(s, &l, &n), 0);
        cr_assert_eq(n, 0);
        cr_assert_null(l[0]);
        store_revoked_token_list_free(l);
        cr_assert_null(store_revoked_token_free(NULL));
        store_close(s);
}

/* ---- one writer, four readers ---- */

#define WRITER_ROUNDS 300
#define READERS 4

typedef struct Shared {
        atomic_bool done;
        atomic_int errors;
        int first_error;
        atomic_int reads;
} Shared;

static void fail(Shared *sh, int r) {
        if (atomic_fetch_add(&sh->errors, 1) == 0)
                sh->first_error = r;
}

static void *writer(void *p) {
        Shared *sh = p;
        Store *s = NULL;
        int r = store_open(dbpath, 0, &s);
        if (r < 0) {
                fail(sh, r);
                goto out;
        }
        for (int i = 0; i < WRITER_ROUNDS; i++) {
                char id[32], kid[32];
                snprintf(id, sizeof id, "%04x", i);
                snprintf(kid, sizeof kid, "kid-%d", i);
                StoreKey k = key(id, kid, "ring", i);
                StoreAudit a = audit("key.generate", "{}");
                a.kid = kid;
                if ((r = store_begin(s, i % 10 ? STORE_COMMITTED : STORE_SYNCED)) < 0 ||
                    (r = store_audit_append(s, &a)) < 0 || (i % 3 == 0 && (r = store_key_insert(s, &k)) < 0) ||
                    (r = store_audit_append(s, &a)) < 0 || (r = store_commit(s)) < 0) {
                        store_rollback(s);
                        fail(sh, r);
                        break;
                }
        }
out:
        store_close(s);
        sh->done = true;
        return NULL;
}

static void *reader(void *p) {
        Shared *sh = p;
        Store *s = NULL;
        size_t last_keys = 0;
        uint64_t last_seq = 0;
        int r = store_open(dbpath, STORE_READ_ONLY, &s);
        if (r < 0) {
                fail(sh, r);
                return NULL;
        }
        do {
                StoreKey **l = NULL;
                size_t n = 0;
                uint64_t seq = 0, bad = 0;
                char hash[STORE_HASH_HEX + 1];
                if ((r = store_key_list(s, "ring", &l, &n)) < 0 || (r = store_audit_verify(s, &bad)) < 0 ||
                    (r = store_audit_head(s, &seq, hash)) < 0) {
                        fail(sh, r);
                        break;
                }
                store_key_list_free(l);
                if (n < last_keys || seq < last_seq || seq % 2) { /* two records per transaction */
                        fail(sh, -ERANGE);
                        break;
                }
                last_keys = n;
                last_seq = seq;
                sh->reads++;
        } while (!sh->done);
        store_close(s);
        return NULL;
}

Test(store, one_writer_four_readers) {
        Shared sh = {};
        pthread_t w, rd[READERS];

        Store *s = open_rw();
        StoreKeyring ring = keyring("ring", "issuer");
        cr_assert_eq(store_begin(s, STORE_SYNCED), 0);
        cr_assert_eq(store_keyring_insert(s, &ring), 0);
        cr_assert_eq(store_commit(s), 0);

        for (int i = 0; i < READERS; i++)
                cr_assert_eq(pthread_create(&rd[i], NULL, reader, &sh), 0);
        cr_assert_eq(pthread_create(&w, NULL, writer, &sh), 0);
        cr_assert_eq(pthread_join(w, NULL), 0);
        for (int i = 0; i < READERS; i++)
                cr_assert_eq(pthread_join(rd[i], NULL), 0);

        cr_assert_eq(sh.errors, 0, "%d errors, the first %s", (int) sh.errors, strerror(-sh.first_error));
        cr_assert_geq(sh.reads, READERS, "the readers read");
        uint64_t seq;
        cr_assert_eq(store_audit_head(s, &seq, NULL), 0);
        cr_assert_eq(seq, 2 * WRITER_ROUNDS);
        cr_assert_eq(store_audit_verify(s, NULL), 0);
        StoreKey **l;
        size_t n;
        cr_assert_eq(store_key_list(s, "ring", &l, &n), 0);
        cr_assert_eq(n, (WRITER_ROUNDS + 2) / 3);
        store_key_list_free(l);
        store_close(s);
}
