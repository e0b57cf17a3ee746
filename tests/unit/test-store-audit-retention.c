/* SPDX-License-Identifier: MIT */
/* The audit log kept for years: reading it with filters a window at a time, sealing exported ranges, pruning only
 * what was sealed, and verifying the kept chain from its anchor, checkpoints signed by keys whose records were
 * pruned included; and what tampering with the anchor looks like. */
#include "tests/unit/store-fixture.h"

#include "tests/unit/audit-fixture.h"

TestSuite(retention, .init = setup, .fini = teardown);

static const Actor operator_actor = { 0, 0, 4242, "keydctl" };

#define HASH_ONES "1111111111111111111111111111111111111111111111111111111111111111"

/* ---- filters, a window at a time ---- */

static size_t query(Store *s, StoreAuditQuery q, uint64_t *ret_next, bool *ret_more, uint64_t *ret_first_seq) {
        StoreAudit **l = NULL;
        size_t n = 0;
        cr_assert_eq(store_audit_query(s, &q, &l, &n, ret_next, ret_more), 0);
        if (ret_first_seq)
                *ret_first_seq = n > 0 ? l[0]->seq : 0;
        store_audit_list_free(l);
        return n;
}

Test(retention, query_examines_a_window_at_a_time) {
        Store *s = open_rw();
        uint64_t next, first;
        bool more;

        append_n(s, 100); /* token.mint on odd i (seqs 2, 4, ...), key.sign on even */
        /* Unfiltered: limit records, next the last one. */
        cr_assert_eq(query(s, (StoreAuditQuery){ .after = 10, .limit = 5, .scan_max = 1000 }, &next, &more, &first), 5);
        cr_assert_eq(first, 11);
        cr_assert_eq(next, 15);
        cr_assert(more);
        /* A window of 10 seqs with 5 matches in it: a short page that is not the last. */
        StoreAuditQuery q = { .after = 0, .limit = 100, .scan_max = 10, .action = "token.mint" };
        cr_assert_eq(query(s, q, &next, &more, &first), 5);
        cr_assert_eq(first, 2);
        cr_assert_eq(next, 10, "the window's end");
        cr_assert(more);
        /* No match in the window: an empty page that moves on. */
        q.action = "nothing.such";
        cr_assert_eq(query(s, q, &next, &more, NULL), 0);
        cr_assert_eq(next, 10);
        cr_assert(more);
        q.after = 95;
        cr_assert_eq(query(s, q, &next, &more, NULL), 0);
        cr_assert_eq(next, 100);
        cr_assert(!more, "the end of the log");
        /* Newest first, down from before. */
        q = (StoreAuditQuery){ .before = 50, .descending = true, .limit = 3, .scan_max = 1000, .action = "token.mint" };
        cr_assert_eq(query(s, q, &next, &more, &first), 3);
        cr_assert_eq(first, 48);
        cr_assert_eq(next, 44, "the last (lowest) record of a full page");
        cr_assert(more);
        q.before = 5;
        cr_assert_eq(query(s, q, &next, &more, &first), 2);
        cr_assert_eq(first, 4);
        cr_assert(!more);
        /* uid, kid, time, sub. */
        q = (StoreAuditQuery){ .limit = 1000, .has_uid = true, .uid = 1000 };
        cr_assert_eq(query(s, q, NULL, NULL, NULL), 100);
        q.uid = 0;
        cr_assert_eq(query(s, q, NULL, NULL, NULL), 0);
        q = (StoreAuditQuery){ .limit = 1000, .kid = "kid-1" };
        cr_assert_eq(query(s, q, NULL, NULL, NULL), 66);
        q = (StoreAuditQuery){ .limit = 1000, .since = 1700000000000000 };
        cr_assert_eq(query(s, q, NULL, NULL, NULL), 100);
        q = (StoreAuditQuery){ .limit = 1000, .until = 1700000000000000 };
        cr_assert_eq(query(s, q, NULL, NULL, NULL), 0);
        StoreAudit a = audit("token.mint", "{\"sub\":\"agent-7\"}");
        cr_assert_eq(store_begin(s, STORE_COMMITTED), 0);
        cr_assert_eq(store_audit_append(s, &a), 0);
        cr_assert_eq(store_commit(s), 0);
        q = (StoreAuditQuery){ .limit = 1000, .sub = "agent-7" };
        cr_assert_eq(query(s, q, NULL, NULL, &first), 1);
        cr_assert_eq(first, 101);
        /* A detail that is not JSON matches nothing and fails nothing. */
        raw_exec("UPDATE audit SET detail = 'not json' WHERE seq = 3");
        cr_assert_eq(query(s, q, NULL, NULL, NULL), 1);
        StoreAuditQuery zero = { 0 };
        StoreAudit **l;
        cr_assert_eq(store_audit_query(s, &zero, &l, NULL, NULL, NULL), -EINVAL, "limit 0");
        store_close(s);
}

/* ---- export, seal, prune ---- */

static StoreAudit *record(Store *s, uint64_t seq) {
        StoreAudit **l;
        size_t n;
        cr_assert_eq(store_audit_list(s, seq - 1, 1, &l, &n), 0);
        cr_assert_eq(n, 1);
        StoreAudit *a = l[0];
        l[0] = NULL;
        store_audit_list_free(l);
        return a;
}

/* Seal first..last as exported, with the checkpoint at cp. */
static int seal(Store *s, uint64_t first, uint64_t last, uint64_t cp) {
        StoreAudit *a = record(s, last);
        StoreAuditExport e = { .first = first, .last = last, .checkpoint_seq = cp, .time = 1 };
        char message[AUDIT_MESSAGE_MAX];
        memcpy(e.last_hash, a->hash, sizeof e.last_hash);
        memset(e.sha256, 'a', STORE_HASH_HEX);
        store_audit_free(a);
        return audit_export_seal(s, &e, &operator_actor, 2000, message);
}

static int prune(Store *s, uint64_t before, AuditPruneResult *res) {
        return audit_prune(s, before, &operator_actor, 3000, res);
}

/* The history, a checkpoint by a at cp1, more records and a checkpoint by a at the head: its seq. */
static uint64_t two_checkpoints(History *h, uint64_t *ret_cp1) {
        *ret_cp1 = h->head;
        checkpoint(h->s, &h->a, *ret_cp1, 100);
        append_n(h->s, 10);
        uint64_t cp2 = head(h->s);
        checkpoint(h->s, &h->a, cp2, 200);
        return cp2;
}

Test(retention, prune_only_what_was_sealed) {
        History h = history_new(KEYD_ALG_ES256);
        AuditPruneResult res;
        uint64_t cp1, cp2 = two_checkpoints(&h, &cp1);

        /* Nothing sealed: refused, and nothing changes. */
        cr_assert_eq(prune(h.s, cp1 + 1, &res), -EPERM);
        cr_assert(strstr(res.message, "records 1 to"), "%s", res.message);
        /* Sealing checks what it is told. */
        cr_assert_eq(seal(h.s, 1, cp1, cp1 + 1), -ENOENT, "no checkpoint there");
        cr_assert_eq(seal(h.s, 2, 1, cp1), -EINVAL);
        /* Sealed up to cp1 - 2 only: the prune up to cp1 is refused, naming the first record not sealed. */
        cr_assert_eq(seal(h.s, 1, cp1 - 2, cp1), 0);
        cr_assert_eq(prune(h.s, cp1 + 1, &res), -EPERM);
        char want[64];
        snprintf(want, sizeof want, "records %" PRIu64 " to %" PRIu64, cp1 - 1, cp1);
        cr_assert(strstr(res.message, want), "%s", res.message);
        /* An export that seals the rest, overlapping: then it prunes. */
        cr_assert_eq(seal(h.s, cp1 - 3, cp1, cp1), 0);
        cr_assert_eq(prune(h.s, cp1 + 1, &res), 0, "%s", res.message);
        cr_assert_eq(res.pruned, cp1);
        cr_assert_eq(res.anchor_seq, cp1);
        cr_assert_eq(res.first, cp1 + 1);

        uint64_t first, last;
        cr_assert_eq(store_audit_range(h.s, &first, &last), 0);
        cr_assert_eq(first, cp1 + 1);
        cr_assert_eq(last, res.record_seq, "the audit.prune record is the head");
        StoreAudit *p = record(h.s, res.record_seq);
        cr_assert_str_eq(p->action, "audit.prune");
        cr_assert_eq(p->uid, 0);
        cr_assert_str_eq(p->comm, "keydctl");
        json_t *detail = json_loads(p->detail, 0, NULL);
        cr_assert_eq(json_integer_value(json_object_get(detail, "anchor_seq")), (json_int_t) cp1);
        cr_assert_str_eq(json_string_value(json_object_get(detail, "anchor_hash")), res.anchor_hash);
        cr_assert(json_is_object(json_object_get(json_object_get(json_object_get(detail, "carry"), "keys"), h.a.kid)),
                  "the key that signed the kept checkpoint is carried: %s", p->detail);
        json_decref(detail);
        store_audit_free(p);
        StoreCheckpoint **cps;
        size_t n;
        cr_assert_eq(store_checkpoint_list(h.s, 0, SIZE_MAX, &cps, &n), 0);
        cr_assert_eq(n, 1, "the pruned record's checkpoint went with it");
        cr_assert_eq(cps[0]->seq, cp2);
        store_checkpoint_list_free(cps);

        /* The kept chain verifies from the anchor, its checkpoint signed by a key whose key.generate was pruned. */
        AuditVerifyResult v;
        cr_assert_eq(audit_verify(h.s, &v), 0, "%s", v.message);
        cr_assert_eq(v.anchor_seq, cp1);
        cr_assert_eq(v.checkpoint_seq, cp2);
        cr_assert_eq(v.records, res.record_seq - cp1);
        cr_assert(strstr(v.message, "those before were pruned"), "%s", v.message);
        /* And goes on: a new record, a checkpoint of the new head by the same key. */
        append_n(h.s, 2);
        checkpoint(h.s, &h.a, head(h.s), 300);
        assert_verifies(h.s, head(h.s));

        /* Again: nothing left before cp1 + 1. */
        cr_assert_eq(prune(h.s, cp1 + 1, &res), 0);
        cr_assert_eq(res.pruned, 0);
        cr_assert_eq(res.record_seq, 0, "no record for nothing");
        /* The last record is kept. */
        cr_assert_eq(prune(h.s, head(h.s) + 1, &res), -EINVAL);
        history_done(&h);
}

Test(retention, prune_everything_sealed_then_append) {
        History h = history_new(KEYD_ALG_ES256);
        AuditPruneResult res;
        uint64_t cp1, cp2 = two_checkpoints(&h, &cp1);
        cr_assert_eq(seal(h.s, 1, cp2, cp2), 0);
        /* The export's record is the head now; prune all but it. */
        uint64_t exported = head(h.s);
        cr_assert_eq(prune(h.s, exported, &res), 0, "%s", res.message);
        cr_assert_eq(res.pruned, exported - 1);
        /* Twice more: two prune records, the later carries on what the first carried. */
        cr_assert_eq(seal(h.s, exported, head(h.s), head(h.s)) == -ENOENT, true, "no checkpoint at the head yet");
        checkpoint(h.s, &h.a, head(h.s), 300);
        cr_assert_eq(seal(h.s, exported, head(h.s), head(h.s)), 0);
        cr_assert_eq(prune(h.s, head(h.s), &res), 0, "%s", res.message);
        append_n(h.s, 3);
        checkpoint(h.s, &h.a, head(h.s), 400);
        assert_verifies(h.s, head(h.s));
        uint64_t seq;
        char hash[STORE_HASH_HEX + 1];
        cr_assert_eq(store_audit_head(h.s, &seq, hash), 0);
        history_done(&h);
}

Test(retention, prune_refuses_a_chain_that_changed_since_its_export) {
        History h = history_new(KEYD_ALG_ES256);
        AuditPruneResult res;
        uint64_t cp1;
        (void) two_checkpoints(&h, &cp1);
        cr_assert_eq(seal(h.s, 1, cp1, cp1), 0);
        /* The exported last record rewritten (with a hash that matches its new contents and links on). */
        raw_exec("UPDATE audit_exports SET last_hash = '" HASH_ONES "'");
        cr_assert_eq(prune(h.s, cp1 + 1, &res), -EBADMSG);
        cr_assert(strstr(res.message, "exported"), "%s", res.message);
        raw_exec("DELETE FROM audit_exports");
        cr_assert_eq(seal(h.s, 1, cp1, cp1), 0);
        /* A record to prune that does not match its chain: nothing is pruned. */
        raw_exec("UPDATE audit SET comm = 'forged' WHERE seq = 3");
        cr_assert_eq(prune(h.s, cp1 + 1, &res), -EBADMSG);
        cr_assert(strstr(res.message, "record 3"), "%s", res.message);
        uint64_t first;
        cr_assert_eq(store_audit_range(h.s, &first, NULL), 0);
        cr_assert_eq(first, 1);
        history_done(&h);
}

/* A pruned history: records up to cp1 pruned, a kept checkpoint at cp2; saved into table "saved_anchor". */
static History pruned_history(uint64_t *ret_cp1) {
        History h = history_new(KEYD_ALG_ES256);
        AuditPruneResult res;
        uint64_t cp2 = two_checkpoints(&h, ret_cp1);
        cr_assert_eq(seal(h.s, 1, *ret_cp1, *ret_cp1), 0);
        cr_assert_eq(prune(h.s, *ret_cp1 + 1, &res), 0, "%s", res.message);
        assert_verifies(h.s, cp2);
        raw_exec("CREATE TABLE saved_anchor AS SELECT * FROM audit_anchor");
        return h;
}

static void anchor_refused_until_restored(Store *s, const char *sql, const char *what) {
        raw_exec(sql);
        assert_refused(s, what);
        raw_exec("DELETE FROM audit_anchor; INSERT INTO audit_anchor SELECT * FROM saved_anchor");
        AuditVerifyResult v;
        cr_assert_eq(audit_verify(s, &v), 0, "%s", v.message);
}

Test(retention, verify_catches_a_forged_anchor) {
        uint64_t cp1;
        History h = pruned_history(&cp1);
        char sql[512];

        /* Another hash: the first kept record does not follow it. */
        anchor_refused_until_restored(h.s, "UPDATE audit_anchor SET hash = '" HASH_ONES "'", "does not match");
        /* A carry that makes an outsider's key one of keyd's. */
        snprintf(sql, sizeof sql,
                 "UPDATE audit_anchor SET carry = json_set(carry, '$.keys.%s', json('{\"seq\":1,\"alg\":\"ES256\"}'))",
                 h.b.kid);
        anchor_refused_until_restored(h.s, sql, "carry");
        anchor_refused_until_restored(h.s, "UPDATE audit_anchor SET carry = 'not json'", "carry");
        /* Records cut past the prune, the anchor moved to hide it. */
        snprintf(sql, sizeof sql,
                 "UPDATE audit_anchor SET seq = %" PRIu64 ", hash = (SELECT hash FROM audit WHERE seq = %" PRIu64
                 "); DELETE FROM audit_checkpoints WHERE seq <= %" PRIu64 "; DELETE FROM audit WHERE seq <= %" PRIu64,
                 cp1 + 2, cp1 + 2, cp1 + 2, cp1 + 2);
        raw_exec("CREATE TABLE saved_audit AS SELECT * FROM audit");
        raw_exec(sql);
        assert_refused(h.s, "pruned up to");
        history_done(&h);
}

Test(retention, verify_catches_a_prune_without_its_record) {
        History h = history_new(KEYD_ALG_ES256);
        uint64_t cp1;
        (void) two_checkpoints(&h, &cp1);
        /* The start of the log cut by hand, with an anchor that the first kept record follows: no audit.prune. */
        char sql[512];
        snprintf(sql, sizeof sql,
                 "INSERT INTO audit_anchor (one, seq, hash, time, pruned_at, carry) SELECT 1, seq, hash, time, 0, "
                 "'{}' FROM audit WHERE seq = %" PRIu64 "; DELETE FROM audit_checkpoints WHERE seq <= %" PRIu64
                 "; DELETE FROM audit WHERE seq <= %" PRIu64,
                 cp1, cp1, cp1);
        raw_exec(sql);
        assert_refused(h.s, "no audit.prune record");
        history_done(&h);
}
