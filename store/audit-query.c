/* SPDX-License-Identifier: MIT */
/* Reading the audit log with filters, a bounded window of seqs at a time: the filters run inside SQLite, so that a big
 * table is never shipped to the caller, and no page reads more than scan_max rows, whatever the filter. The seqs of
 * the kept chain have no gaps (store_audit_walk() refuses one), so a window of seqs is a window of rows. */
#include <stdio.h>

#include "store/store-internal.h"

int store_audit_range(Store *s, uint64_t *ret_first, uint64_t *ret_last) {
        _cleanup_finalize_ sqlite3_stmt *st = NULL;
        int r;

        if (!s)
                return -EINVAL;
        /* Both from the rowid b-tree's two ends: constant time whatever the table's size. */
        r = store_query_row(s, "SELECT (SELECT min(seq) FROM audit), (SELECT max(seq) FROM audit)", &st);
        if (r < 0)
                return r;
        sqlite3_int64 first = sqlite3_column_int64(st, 0), last = sqlite3_column_int64(st, 1);
        if (first < 0 || last < first)
                return store_error_msg(s, -EBADMSG, "audit: invalid seqs");
        if (ret_first)
                *ret_first = (uint64_t) first;
        if (ret_last)
                *ret_last = (uint64_t) last;
        return 0;
}

/* The window [*lo, *hi] a page examines, and the bounds [*start, *end] of the whole query within the table. false
 * when the window is empty. */
static bool query_window(const StoreAuditQuery *q, uint64_t first, uint64_t last, uint64_t *lo, uint64_t *hi,
                         uint64_t *start, uint64_t *end) {
        *start = MAX(q->after + 1, MAX(first, (uint64_t) 1));
        *end = q->before > 0 ? MIN(q->before - 1, last) : last;
        if (last == 0 || *start > *end)
                return false;
        *lo = *start;
        *hi = *end;
        if (q->scan_max > 0 && *hi - *lo >= q->scan_max) {
                if (q->descending)
                        *lo = *hi - (q->scan_max - 1);
                else
                        *hi = *lo + (q->scan_max - 1);
        }
        return true;
}

/* "SELECT ... WHERE seq BETWEEN ?1 AND ?2 AND <each filter given> ORDER BY seq LIMIT ?3": the filters are numbered
 * in this order from ?4 on (query_bind()). */
static int query_sql(const StoreAuditQuery *q, char *buf, size_t size) {
        const char *clauses[] = {
                q->keyring ? "keyring = " : NULL,
                q->kid ? "kid = " : NULL,
                q->action ? "action = " : NULL,
                q->has_uid ? "uid = " : NULL,
                q->since > 0 ? "time >= " : NULL,
                q->until > 0 ? "time < " : NULL,
                /* A detail that is not JSON (a tampered row) matches nothing rather than failing the page. */
                q->sub ? "CASE WHEN json_valid(detail) THEN json_extract(detail, '$.sub') END = " : NULL,
        };
        size_t off = 0;
        int n, param = 4;

        n = snprintf(buf, size, "SELECT " STORE_AUDIT_COLUMNS " FROM audit WHERE seq BETWEEN ?1 AND ?2");
        for (size_t i = 0; n >= 0 && (size_t) n < size - off && i < ELEMENTSOF(clauses); i++) {
                off += (size_t) n;
                n = clauses[i] ? snprintf(buf + off, size - off, " AND %s?%d", clauses[i], param++) : 0;
        }
        if (n >= 0 && (size_t) n < size - off) {
                off += (size_t) n;
                n = snprintf(buf + off, size - off, " ORDER BY seq%s LIMIT ?3", q->descending ? " DESC" : "");
        }
        return n < 0 || (size_t) n >= size - off ? -ENOBUFS : 0;
}

static int query_bind(sqlite3_stmt *st, const StoreAuditQuery *q, uint64_t lo, uint64_t hi) {
        int i = 4;

        if (sqlite3_bind_int64(st, 1, (sqlite3_int64) lo) != SQLITE_OK ||
            sqlite3_bind_int64(st, 2, (sqlite3_int64) hi) != SQLITE_OK ||
            sqlite3_bind_int64(st, 3, q->limit > INT64_MAX ? -1 : (sqlite3_int64) q->limit) != SQLITE_OK)
                return -1;
        if ((q->keyring && sqlite3_bind_text(st, i++, q->keyring, -1, SQLITE_STATIC) != SQLITE_OK) ||
            (q->kid && sqlite3_bind_text(st, i++, q->kid, -1, SQLITE_STATIC) != SQLITE_OK) ||
            (q->action && sqlite3_bind_text(st, i++, q->action, -1, SQLITE_STATIC) != SQLITE_OK) ||
            (q->has_uid && sqlite3_bind_int64(st, i++, q->uid) != SQLITE_OK) ||
            (q->since > 0 && sqlite3_bind_int64(st, i++, q->since) != SQLITE_OK) ||
            (q->until > 0 && sqlite3_bind_int64(st, i++, q->until) != SQLITE_OK) ||
            (q->sub && sqlite3_bind_text(st, i++, q->sub, -1, SQLITE_STATIC) != SQLITE_OK))
                return -1;
        return 0;
}

int store_audit_query(Store *s, const StoreAuditQuery *q, StoreAudit ***ret, size_t *ret_n, uint64_t *ret_next,
                      bool *ret_more) {
        _cleanup_finalize_ sqlite3_stmt *st = NULL;
        uint64_t first, last, lo = 0, hi = 0, start = 0, end = 0, next;
        char sql[1024];
        void **l = NULL;
        size_t n = 0;
        int r;

        if (!s || !q || !ret || q->limit == 0 || q->after > INT64_MAX || q->before > INT64_MAX)
                return -EINVAL;
        r = store_audit_range(s, &first, &last);
        if (r < 0)
                return r;
        if (!query_window(q, first, last, &lo, &hi, &start, &end)) {
                l = calloc(1, sizeof(void *));
                if (!l)
                        return -ENOMEM;
                *ret = (StoreAudit **) l;
                if (ret_n)
                        *ret_n = 0;
                if (ret_next)
                        *ret_next = q->descending ? (q->before ?: last + 1) : MAX(q->after, MIN(last, end));
                if (ret_more)
                        *ret_more = false;
                return 0;
        }
        r = query_sql(q, sql, sizeof sql);
        if (r < 0)
                return r;
        int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
        if (rc != SQLITE_OK)
                return store_error(s, rc);
        if (query_bind(st, q, lo, hi) < 0)
                return store_bind_error(s);
        r = store_collect_rows(s, st, store_audit_from_row, store_audit_free_item, "audit: invalid row", &l, &n);
        if (r < 0)
                return r;

        /* A full page ends at its last record; else the whole window was examined. */
        if (n == q->limit)
                next = ((StoreAudit *) l[n - 1])->seq;
        else
                next = q->descending ? lo : hi;
        *ret = (StoreAudit **) l;
        if (ret_n)
                *ret_n = n;
        if (ret_next)
                *ret_next = next;
        if (ret_more)
                *ret_more = q->descending ? next > start : next < end;
        return 0;
}
