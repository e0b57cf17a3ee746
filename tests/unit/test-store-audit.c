/* SPDX-License-Identifier: MIT */
/* The store: the audit chain, checkpoints, revoked tokens, and concurrent readers. */
#include "tests/unit/store-fixture.h"

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
        cr_assert_eq(store_checkpoint_insert(s, 3, l[2]->hash, 1, "kid", "a.b.c"), 0);
        cr_assert_eq(store_checkpoint_insert(s, 5, l[4]->hash, 2, "kid2", "d.e.f"), 0);
        cr_assert_eq(store_checkpoint_insert(s, 2, l[1]->hash, 3, "kid", "g.h.i"), 0);
        cr_assert_eq(store_checkpoint_insert(s, 5, l[4]->hash, 4, "kid", "a.b.c"), -EEXIST);
        cr_assert_eq(store_commit(s), 0);
        char *kid;
        cr_assert_eq(store_checkpoint_latest(s, &seq, &hash, &kid, NULL), 0);
        cr_assert_eq(seq, 5);
        cr_assert_str_eq(hash, l[4]->hash);
        cr_assert_str_eq(kid, "kid2");
        free(hash);
        free(kid);
        store_audit_list_free(l);
        store_close(s);
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
