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
};

/* Map an SQLite (extended) result code to a negative errno and remember the connection's message. Documented
 * choices: a FOREIGN KEY violation is -ENOENT (the only references keyd writes are to a keyring or an audit record
 * that must exist), CHECK and NOT NULL violations -EINVAL, SQLITE_FULL -ENOSPC, SQLITE_CANTOPEN the OS errno. */
int store_error(Store *s, int rc);
/* Remember msg as the last error and return r (negative errno), for failures the store finds itself. */
int store_error_msg(Store *s, int r, const char *msg);
/* The errno store_error() gives rc, without a Store. */
int store_errno_from_sqlite(int rc, int system_errno);

/* The cached statement for slot, prepared from sql on first use. */
int store_prepare(Store *s, StoreStmt slot, const char *sql, sqlite3_stmt **ret);
/* After a failed sqlite3_bind_*(): its error, from the connection. */
int store_bind_error(Store *s);
/* -EINVAL unless a transaction is open: every write goes through this. */
int store_require_transaction(Store *s);
/* Step a statement that returns no rows (INSERT, UPDATE, DELETE); 0 or negative errno. */
int store_step_done(Store *s, sqlite3_stmt *st);

/* Column readers. A NULL column gives NULL for nullable, -EBADMSG otherwise; -ENOMEM when out of memory. */
int store_column_strdup(sqlite3_stmt *st, int col, bool nullable, char **ret);
/* Copy a text column into a fixed buffer of size (including the NUL); -EBADMSG if NULL or too long. */
int store_column_strcpy(sqlite3_stmt *st, int col, char *buf, size_t size);

/* Make room in a NULL-terminated array of n pointers (NULL when n is 0) for one more and the NULL after it: returns
 * the array, moved perhaps, or NULL when out of memory (the old array is untouched then). */
void *store_array_grow(void *array, size_t n);
/* Append item to a NULL-terminated array of n pointers; 0 or -ENOMEM. */
#define STORE_ARRAY_PUSH(array, n, item)                                                                               \
        ({                                                                                                             \
                __typeof__(array) _a_ = store_array_grow((array), (n));                                                \
                int _r_ = -ENOMEM;                                                                                     \
                if (_a_) {                                                                                             \
                        (array) = _a_;                                                                                 \
                        (array)[(n)++] = (item);                                                                       \
                        (array)[(n)] = NULL;                                                                           \
                        _r_ = 0;                                                                                       \
                }                                                                                                      \
                _r_;                                                                                                   \
        })
/* An empty list is an array holding only NULL, never NULL itself. */
#define STORE_ARRAY_FINISH(array) ((array) || ((array) = calloc(1, sizeof(*(array)))) ? 0 : -ENOMEM)

/* The audit hash as 32 bytes from its 64 lowercase hex digits; -EBADMSG if it is not that. */
#define STORE_HASH_LEN 32
int store_hash_parse(const char *hex, uint8_t ret[STORE_HASH_LEN]);

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
