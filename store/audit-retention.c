/* SPDX-License-Identifier: MIT */
/* Retention of the audit log: the ranges exported to sealed segments, pruning the start of the log, and the anchor
 * the kept chain starts from. */
#include <stdio.h>

#include "store/store-internal.h"

static const char zero_hash[STORE_HASH_HEX + 1] = "0000000000000000000000000000000000000000000000000000000000000000";

int store_snapshot_begin(Store *s) {
        if (!sqlite3_get_autocommit(s->db))
                return 0;
        int rc = sqlite3_exec(s->db, "BEGIN", NULL, NULL, NULL);
        return rc == SQLITE_OK ? 1 : store_error(s, rc);
}

void store_snapshot_end(Store *s, int begun) {
        /* A read transaction: nothing to commit. */
        if (begun > 0)
                (void) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

int store_audit_anchor(Store *s, StoreAuditAnchor *ret) {
        _cleanup_finalize_ sqlite3_stmt *st = NULL;
        StoreAuditAnchor a = { 0 };
        int rc;

        if (!s || !ret)
                return -EINVAL;
        rc = sqlite3_prepare_v2(s->db, "SELECT seq, hash, time, pruned_at, carry FROM audit_anchor WHERE one = 1", -1,
                                &st, NULL);
        if (rc != SQLITE_OK)
                return store_error(s, rc);
        rc = sqlite3_step(st);
        if (rc == SQLITE_DONE) {
                memcpy(a.hash, zero_hash, sizeof a.hash);
                a.carry = strdup("{}");
                if (!a.carry)
                        return -ENOMEM;
        } else if (rc == SQLITE_ROW) {
                int r;
                if (sqlite3_column_int64(st, 0) < 0 || store_column_strcpy(st, 1, a.hash, sizeof a.hash) < 0 ||
                    strspn(a.hash, "0123456789abcdef") != STORE_HASH_HEX)
                        return store_error_msg(s, -EBADMSG, "audit: invalid anchor");
                r = store_column_strdup(st, 4, false, &a.carry);
                if (r < 0)
                        return store_error_msg(s, r, "audit: invalid anchor");
                a.seq = (uint64_t) sqlite3_column_int64(st, 0);
                a.time = sqlite3_column_int64(st, 2);
                a.pruned_at = sqlite3_column_int64(st, 3);
        } else
                return store_error(s, rc);
        *ret = a;
        return 0;
}

void store_audit_anchor_done(StoreAuditAnchor *a) {
        if (a)
                free(a->carry);
}

int store_audit_anchor_set_carry(Store *s, const char *carry) {
        _cleanup_finalize_ sqlite3_stmt *st = NULL;
        int r, rc;

        r = store_require_transaction(s);
        if (r < 0)
                return r;
        if (!carry)
                return -EINVAL;
        rc = sqlite3_prepare_v2(
                s->db,
                "INSERT INTO audit_anchor (one, seq, hash, time, pruned_at, carry) VALUES (1, 0, ?1, 0, 0, "
                "?2) ON CONFLICT (one) DO UPDATE SET carry = excluded.carry",
                -1, &st, NULL);
        if (rc != SQLITE_OK)
                return store_error(s, rc);
        if (sqlite3_bind_text(st, 1, zero_hash, -1, SQLITE_STATIC) != SQLITE_OK ||
            sqlite3_bind_text(st, 2, carry, -1, SQLITE_STATIC) != SQLITE_OK)
                return store_bind_error(s);
        return store_step_done(s, st);
}

/* Run sql (no rows) with ?1 bound to v. */
static int exec_int(Store *s, const char *sql, int64_t v) {
        _cleanup_finalize_ sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
        if (rc != SQLITE_OK)
                return store_error(s, rc);
        if (sqlite3_bind_int64(st, 1, v) != SQLITE_OK)
                return store_bind_error(s);
        return store_step_done(s, st);
}

int store_audit_prune_step(Store *s, uint64_t before, size_t max, usec_t now, uint64_t *ret_n) {
        _cleanup_finalize_ sqlite3_stmt *st = NULL, *up = NULL;
        char hash[STORE_HASH_HEX + 1];
        uint64_t first, last;
        int r, rc;

        r = store_require_transaction(s);
        if (r < 0)
                return r;
        if (before > INT64_MAX || max == 0)
                return -EINVAL;
        r = store_audit_range(s, &first, &last);
        if (r < 0)
                return r;
        if (ret_n)
                *ret_n = 0;
        /* The last record stays: the chain's head, which the next record is appended after. */
        if (last == 0 || before <= 1)
                return 0;
        uint64_t upto = MIN(before - 1, last - 1);
        if (first > upto)
                return 0;
        if (upto - first >= max)
                upto = first + max - 1;

        rc = sqlite3_prepare_v2(s->db, "SELECT hash, time FROM audit WHERE seq = ?1", -1, &st, NULL);
        if (rc != SQLITE_OK)
                return store_error(s, rc);
        if (sqlite3_bind_int64(st, 1, (sqlite3_int64) upto) != SQLITE_OK)
                return store_bind_error(s);
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW)
                return rc == SQLITE_DONE ? store_error_msg(s, -EBADMSG, "audit: a gap in the records to prune")
                                         : store_error(s, rc);
        if (store_column_strcpy(st, 0, hash, sizeof hash) < 0)
                return store_error_msg(s, -EBADMSG, "audit: invalid record");
        usec_t time = sqlite3_column_int64(st, 1);

        /* Checkpoints first: they reference their records. */
        if ((r = exec_int(s, "DELETE FROM audit_checkpoints WHERE seq <= ?1", (int64_t) upto)) < 0 ||
            (r = exec_int(s, "DELETE FROM audit WHERE seq <= ?1", (int64_t) upto)) < 0)
                return r;
        int deleted = sqlite3_changes(s->db);

        rc = sqlite3_prepare_v2(
                s->db,
                "INSERT INTO audit_anchor (one, seq, hash, time, pruned_at, carry) VALUES (1, ?1, ?2, ?3, "
                "?4, '{}') ON CONFLICT (one) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, "
                "time = excluded.time, pruned_at = excluded.pruned_at",
                -1, &up, NULL);
        if (rc != SQLITE_OK)
                return store_error(s, rc);
        if (sqlite3_bind_int64(up, 1, (sqlite3_int64) upto) != SQLITE_OK ||
            sqlite3_bind_text(up, 2, hash, -1, SQLITE_STATIC) != SQLITE_OK ||
            sqlite3_bind_int64(up, 3, time) != SQLITE_OK || sqlite3_bind_int64(up, 4, now) != SQLITE_OK)
                return store_bind_error(s);
        r = store_step_done(s, up);
        if (r < 0)
                return r;
        if (ret_n)
                *ret_n = (uint64_t) MAX(deleted, 0);
        return 0;
}

int store_audit_export_insert(Store *s, const StoreAuditExport *e) {
        _cleanup_finalize_ sqlite3_stmt *st = NULL;
        uint8_t raw[STORE_HASH_LEN];
        int r, rc;

        r = store_require_transaction(s);
        if (r < 0)
                return r;
        if (!e || e->first == 0 || e->last < e->first || e->checkpoint_seq < e->last || e->checkpoint_seq > INT64_MAX ||
            store_hash_parse(e->last_hash, raw) < 0 || store_hash_parse(e->sha256, raw) < 0)
                return store_error_msg(s, -EINVAL, "audit: invalid export");
        rc = sqlite3_prepare_v2(
                s->db,
                "INSERT INTO audit_exports (first, last, last_hash, checkpoint_seq, sha256, exported_at) "
                "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                -1, &st, NULL);
        if (rc != SQLITE_OK)
                return store_error(s, rc);
        if (sqlite3_bind_int64(st, 1, (sqlite3_int64) e->first) != SQLITE_OK ||
            sqlite3_bind_int64(st, 2, (sqlite3_int64) e->last) != SQLITE_OK ||
            sqlite3_bind_text(st, 3, e->last_hash, -1, SQLITE_STATIC) != SQLITE_OK ||
            sqlite3_bind_int64(st, 4, (sqlite3_int64) e->checkpoint_seq) != SQLITE_OK ||
            sqlite3_bind_text(st, 5, e->sha256, -1, SQLITE_STATIC) != SQLITE_OK ||
            sqlite3_bind_int64(st, 6, e->time) != SQLITE_OK)
                return store_bind_error(s);
        return store_step_done(s, st);
}

int store_audit_export_list(Store *s, uint64_t from, StoreAuditExport **ret, size_t *ret_n) {
        _cleanup_finalize_ sqlite3_stmt *st = NULL;
        _cleanup_free_ StoreAuditExport *l = NULL;
        size_t n = 0, cap = 0;
        int rc;

        if (!s || !ret || !ret_n || from > INT64_MAX)
                return -EINVAL;
        rc = sqlite3_prepare_v2(s->db,
                                "SELECT first, last, last_hash, checkpoint_seq, sha256, exported_at FROM audit_exports "
                                "WHERE last >= ?1 ORDER BY first, last",
                                -1, &st, NULL);
        if (rc != SQLITE_OK)
                return store_error(s, rc);
        if (sqlite3_bind_int64(st, 1, (sqlite3_int64) from) != SQLITE_OK)
                return store_bind_error(s);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                if (n == cap) {
                        cap = cap ? cap * 2 : 8;
                        StoreAuditExport *m = reallocarray(l, cap, sizeof *l);
                        if (!m)
                                return -ENOMEM;
                        l = m;
                }
                StoreAuditExport *e = &l[n];
                *e = (StoreAuditExport){
                        .first = (uint64_t) sqlite3_column_int64(st, 0),
                        .last = (uint64_t) sqlite3_column_int64(st, 1),
                        .checkpoint_seq = (uint64_t) sqlite3_column_int64(st, 3),
                        .time = sqlite3_column_int64(st, 5),
                };
                if (store_column_strcpy(st, 2, e->last_hash, sizeof e->last_hash) < 0 ||
                    store_column_strcpy(st, 4, e->sha256, sizeof e->sha256) < 0)
                        return store_error_msg(s, -EBADMSG, "audit: invalid export row");
                n++;
        }
        if (rc != SQLITE_DONE)
                return store_error(s, rc);
        *ret = TAKE_PTR(l);
        *ret_n = n;
        return 0;
}

int store_audit_sealed_end(Store *s, uint64_t from, uint64_t *ret_end) {
        StoreAuditExport *l = NULL;
        size_t n = 0;
        uint64_t end = from - 1;
        int r;

        if (from == 0 || !ret_end)
                return -EINVAL;
        r = store_audit_export_list(s, from, &l, &n);
        if (r < 0)
                return r;
        /* By first: each export that starts within what is covered so far extends it. */
        for (size_t i = 0; i < n; i++)
                if (l[i].first <= end + 1)
                        end = MAX(end, l[i].last);
        free(l);
        *ret_end = end;
        return 0;
}
