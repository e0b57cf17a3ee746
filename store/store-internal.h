/* SPDX-License-Identifier: MIT */
#pragma once

/* What the store's .c files share, and what its tests reach: the Store itself, the prepared-statement cache and
 * the SQLite helpers. Nothing outside store/ and tests/ includes this. */
#include <sqlite3.h>

#include "common/macro.h"
#include "store/store.h"

/* One slot per cached statement: prepared on first use, reset and rebound on every later one. */
typedef enum StoreStmt {
        STORE_STMT_BEGIN,
        STORE_STMT_COMMIT,
        STORE_STMT_ROLLBACK,
        STORE_STMT_KEYRING_INSERT,
        STORE_STMT_KEYRING_UPDATE,
        STORE_STMT_KEYRING_GET,
        STORE_STMT_KEYRING_LIST,
        STORE_STMT_KEY_INSERT,
        STORE_STMT_KEY_UPDATE,
        STORE_STMT_KEY_GET,
        STORE_STMT_KEY_GET_BY_KID,
        STORE_STMT_KEY_LIST,
        STORE_STMT_KEY_LIST_ALL,
        STORE_STMT_REVOKED_INSERT,
        STORE_STMT_REVOKED_CHECK,
        STORE_STMT_REVOKED_LIST,
        STORE_STMT_REVOKED_PRUNE,
        STORE_STMT_AUDIT_HEAD,
        STORE_STMT_AUDIT_INSERT,
        STORE_STMT_AUDIT_LIST,
        STORE_STMT_AUDIT_WALK,
        STORE_STMT_CHECKPOINT_INSERT,
        STORE_STMT_CHECKPOINT_LATEST,
        STORE_STMT_CHECKPOINT_LIST,
        _STORE_STMT_MAX,
        _STORE_STMT_INVALID = -EINVAL,
} StoreStmt;

typedef enum StoreSync {
        STORE_SYNC_UNSET,
        STORE_SYNC_NORMAL,
        STORE_SYNC_FULL,
        _STORE_SYNC_MAX,
        _STORE_SYNC_INVALID = -EINVAL,
} StoreSync;

struct Store {
        sqlite3 *db;
        StoreFlags flags;
        StoreSync sync;         /* the connection's PRAGMA synchronous, as last set */
        int migrations_applied; /* by store_open(), for tests */
        sqlite3_stmt *stmts[_STORE_STMT_MAX];
        char error[256];
        StoreHealth *health; /* told of storage faults, or NULL */
};

/* Map an SQLite (extended) result code to a negative errno and remember the connection's message; a storage fault is
 * reported to the Store's health. Documented choices: a FOREIGN KEY violation is -ENOENT (the only references keyd
 * writes are to a keyring or an audit record that must exist), CHECK and NOT NULL violations -EINVAL, SQLITE_FULL
 * -ENOSPC, SQLITE_READONLY_* -EROFS, SQLITE_BUSY/LOCKED -ENOLCK, an SQLITE_IOERR_* by the OS errno behind it (a file
 * system full or remounted read-only by the kernel fails a write with ENOSPC or EROFS, which SQLite reports as
 * SQLITE_IOERR_WRITE), SQLITE_CANTOPEN the OS errno. */
int store_error(Store *s, int rc);
/* Remember msg as the last error and return r (negative errno), for failures the store finds itself. */
int store_error_msg(Store *s, int r, const char *msg);
/* The errno store_error() gives rc, without a Store. */
int store_errno_from_sqlite(int rc, int system_errno);
/* store/health.c: record a fault (r: its errno) or clear it. NULL h is fine. */
void store_health_set(StoreHealth *h, int r);
void store_health_clear(StoreHealth *h);

/* The cached statement for slot, prepared from sql on first use. */
int store_prepare(Store *s, StoreStmt slot, const char *sql, sqlite3_stmt **ret);
/* The cached statement for slot with ?1 bound to after and ?2 to limit: a page of a list by seq (a limit past INT64_MAX
 * is none). -EINVAL if after is past INT64_MAX. */
int store_prepare_page(Store *s, StoreStmt slot, const char *sql, uint64_t after, size_t limit, sqlite3_stmt **ret);
/* After a failed sqlite3_bind_*(): its error, from the connection. */
int store_bind_error(Store *s);
/* -EINVAL unless a transaction is open: every write goes through this. */
int store_require_transaction(Store *s);
/* Step a statement that returns no rows (INSERT, UPDATE, DELETE); 0 or negative errno. */
int store_step_done(Store *s, sqlite3_stmt *st);
/* Prepare sql without caching it (rare statements) and step it to its first row: 0, or a negative errno (no row is
 * an error too). *ret is set once prepared, also on failure: the caller finalizes it. */
int store_query_row(Store *s, const char *sql, sqlite3_stmt **ret);

/* Column readers. A NULL column gives NULL for nullable, -EBADMSG otherwise; -ENOMEM when out of memory. */
int store_column_strdup(sqlite3_stmt *st, int col, bool nullable, char **ret);
/* Copy a text column into a fixed buffer of size (including the NUL); -EBADMSG if NULL or too long. */
int store_column_strcpy(sqlite3_stmt *st, int col, char *buf, size_t size);

/* Read the current row of a statement into a new item *ret: 0, or a negative errno (-EBADMSG: a row the store
 * cannot read, -ENOMEM). */
typedef int (*StoreRowRead)(sqlite3_stmt *st, void **ret);
/* Free one item of a list. */
typedef void (*StoreItemFree)(void *item);

/* Step st (prepared and bound) to its end, reading each row with read_row into a NULL-terminated array: 0 with *ret
 * (an empty list is an array holding only NULL, never NULL itself) and, unless ret_n is NULL, the count in *ret_n; or
 * a negative errno with nothing left allocated. A row read_row refuses (but for -ENOMEM) is remembered as invalid_row,
 * the last error. */
int store_collect_rows(Store *s, sqlite3_stmt *st, StoreRowRead read_row, StoreItemFree free_item,
                       const char *invalid_row, void ***ret, size_t *ret_n);
/* Free every item of a NULL-terminated array with free_item, then the array; NULL is fine. */
void store_list_free(void **l, StoreItemFree free_item);

/* The audit hash as 32 bytes from its 64 lowercase hex digits; -EBADMSG if it is not that. */
#define STORE_HASH_LEN 32
int store_hash_parse(const char *hex, uint8_t ret[STORE_HASH_LEN]);

/* The columns of an audit row, in the order store_audit_from_row() reads them. */
#define STORE_AUDIT_COLUMNS "seq, time, uid, pid, comm, action, keyring, kid, result, detail, prev_hash, hash"
/* A row of STORE_AUDIT_COLUMNS as a new StoreAudit (a StoreRowRead), and store_audit_free() as a StoreItemFree. */
int store_audit_from_row(sqlite3_stmt *st, void **ret);
void store_audit_free_item(void *a);

/* Test hooks. */
int store_migrations_applied(Store *s);
sqlite3 *store_sqlite(Store *s);

/* Reset and clear a cached statement when it goes out of scope (never finalize: the Store owns it). */
static inline void store_stmt_resetp(sqlite3_stmt **st) {
        if (*st) {
                (void) sqlite3_reset(*st);
                (void) sqlite3_clear_bindings(*st);
        }
}
#define _cleanup_reset_ _cleanup_(store_stmt_resetp)

DEFINE_TRIVIAL_CLEANUP_FUNC(sqlite3_stmt *, sqlite3_finalize);
#define _cleanup_finalize_ _cleanup_(sqlite3_finalizep)
