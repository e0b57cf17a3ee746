/* SPDX-License-Identifier: MIT */
/* The connection: open, settings, transactions, the statement cache and the mapping of SQLite errors to errno. */
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "store/schema-internal.h"
#include "store/store-internal.h"

#define STORE_BUSY_TIMEOUT_MSEC 5000

/* An I/O error by what the OS said: a full or read-only file system is a fault the operator can fix, and says so. */
static int errno_from_ioerr(int rc, int system_errno) {
        if (rc == SQLITE_IOERR_NOMEM)
                return -ENOMEM;
        switch (system_errno) {
        case ENOSPC:
        case EDQUOT:
                return -ENOSPC;
        case EROFS:
                return -EROFS;
        default:
                return -EIO;
        }
}

int store_errno_from_sqlite(int rc, int system_errno) {
        switch (rc) {
        case SQLITE_OK:
        case SQLITE_ROW:
        case SQLITE_DONE:
                return 0;
        case SQLITE_CONSTRAINT_PRIMARYKEY:
        case SQLITE_CONSTRAINT_UNIQUE:
        case SQLITE_CONSTRAINT_ROWID:
                return -EEXIST;
        case SQLITE_CONSTRAINT_FOREIGNKEY:
                return -ENOENT;
        case SQLITE_CONSTRAINT_CHECK:
        case SQLITE_CONSTRAINT_NOTNULL:
        case SQLITE_CONSTRAINT_DATATYPE:
        case SQLITE_TOOBIG:
        case SQLITE_RANGE:
                return -EINVAL;
        }
        switch (rc & 0xff) {
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
                return -ENOLCK;
        case SQLITE_NOMEM:
                return -ENOMEM;
        case SQLITE_READONLY:
                return -EROFS;
        case SQLITE_FULL:
                return -ENOSPC;
        case SQLITE_IOERR:
                return errno_from_ioerr(rc, system_errno);
        case SQLITE_CANTOPEN:
                return system_errno > 0 ? -system_errno : -EIO;
        default:
                return -EIO;
        }
}

/* The result codes that say the database cannot be written now, for a reason outside keyd (and that may pass). */
static bool is_storage_fault(int rc) {
        switch (rc & 0xff) {
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
        case SQLITE_READONLY:
        case SQLITE_FULL:
                return true;
        case SQLITE_IOERR:
                return rc != SQLITE_IOERR_NOMEM;
        default:
                return false;
        }
}

/* After an I/O error, sqlite3_system_errno() is often 0 or stale: the unix VFS keeps the errno of a failed write with
 * the file (the WAL, for a commit) and reports the global errno, which later calls have overwritten. A file system
 * that is read-only or full says so itself: ask it, so that the operator is told the cause, not "disk I/O error". */
static int ioerr_errno(Store *s, int system_errno) {
        const char *path = sqlite3_db_filename(s->db, "main");
        struct statvfs sv;

        if (system_errno == ENOSPC || system_errno == EDQUOT || system_errno == EROFS)
                return system_errno;
        if (!path || !*path || statvfs(path, &sv) < 0)
                return system_errno;
        if (sv.f_flag & ST_RDONLY)
                return EROFS;
        if (sv.f_bavail == 0)
                return ENOSPC;
        return system_errno;
}

int store_error(Store *s, int rc) {
        int sys = sqlite3_system_errno(s->db);
        if ((rc & 0xff) == SQLITE_IOERR && rc != SQLITE_IOERR_NOMEM)
                sys = ioerr_errno(s, sys);
        int r = store_errno_from_sqlite(rc, sys);
        if (r == 0) /* a caller's mistake: never report success for a failure */
                r = -EIO;
        snprintf(s->error, sizeof s->error, "%s (%s)", sqlite3_errmsg(s->db), sqlite3_errstr(rc));
        if (is_storage_fault(rc))
                store_health_set(s->health, r);
        return r;
}

int store_error_msg(Store *s, int r, const char *msg) {
        snprintf(s->error, sizeof s->error, "%s", msg);
        return r;
}

void store_set_health(Store *s, StoreHealth *h) {
        s->health = h;
}

const char *store_last_error(Store *s) {
        return s ? s->error : "";
}

int store_bind_error(Store *s) {
        return store_error(s, sqlite3_extended_errcode(s->db));
}

int store_prepare(Store *s, StoreStmt slot, const char *sql, sqlite3_stmt **ret) {
        if (!s->stmts[slot]) {
                int rc = sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s->stmts[slot], NULL);
                if (rc != SQLITE_OK)
                        return store_error(s, rc);
        }
        *ret = s->stmts[slot];
        return 0;
}

int store_prepare_page(Store *s, StoreStmt slot, const char *sql, uint64_t after, size_t limit, sqlite3_stmt **ret) {
        int r;

        if (after > INT64_MAX)
                return -EINVAL;
        r = store_prepare(s, slot, sql, ret);
        if (r < 0)
                return r;
        /* A negative LIMIT is none. */
        if (sqlite3_bind_int64(*ret, 1, (sqlite3_int64) after) != SQLITE_OK ||
            sqlite3_bind_int64(*ret, 2, limit > INT64_MAX ? -1 : (sqlite3_int64) limit) != SQLITE_OK)
                return store_bind_error(s);
        return 0;
}

int store_require_transaction(Store *s) {
        if (!s)
                return -EINVAL;
        if (sqlite3_get_autocommit(s->db))
                return store_error_msg(s, -EINVAL, "write outside a transaction");
        return 0;
}

int store_step_done(Store *s, sqlite3_stmt *st) {
        int rc = sqlite3_step(st);
        if (rc != SQLITE_DONE)
                return store_error(s, rc == SQLITE_ROW ? SQLITE_MISUSE : rc);
        return 0;
}

int store_query_row(Store *s, const char *sql, sqlite3_stmt **ret) {
        int rc = sqlite3_prepare_v2(s->db, sql, -1, ret, NULL);
        if (rc != SQLITE_OK)
                return store_error(s, rc);
        rc = sqlite3_step(*ret);
        if (rc != SQLITE_ROW)
                return store_error(s, rc);
        return 0;
}

int store_column_strdup(sqlite3_stmt *st, int col, bool nullable, char **ret) {
        if (sqlite3_column_type(st, col) == SQLITE_NULL) {
                if (!nullable)
                        return -EBADMSG;
                *ret = NULL;
                return 0;
        }
        const char *t = (const char *) sqlite3_column_text(st, col);
        if (!t)
                return -ENOMEM;
        char *c = strndup(t, (size_t) sqlite3_column_bytes(st, col));
        if (!c)
                return -ENOMEM;
        *ret = c;
        return 0;
}

int store_column_strcpy(sqlite3_stmt *st, int col, char *buf, size_t size) {
        if (sqlite3_column_type(st, col) == SQLITE_NULL)
                return -EBADMSG;
        const char *t = (const char *) sqlite3_column_text(st, col);
        if (!t)
                return -ENOMEM;
        size_t n = (size_t) sqlite3_column_bytes(st, col);
        if (n >= size || strlen(t) != n)
                return -EBADMSG;
        memcpy(buf, t, n + 1);
        return 0;
}

/* Arrays hold n items and the NULL after them in a power-of-two capacity of at least 4. */
static size_t array_capacity(size_t used) {
        size_t c = 4;
        while (c < used)
                c *= 2;
        return c;
}

/* Make room in an array of n items (NULL when n is 0) for one more and the NULL after it: the array, moved perhaps,
 * or NULL when out of memory (the old array is untouched then). */
static void **array_grow(void **array, size_t n) {
        if (array && array_capacity(n + 2) == array_capacity(n + 1))
                return array;
        return reallocarray(array, array_capacity(n + 2), sizeof(void *));
}

int store_collect_rows(Store *s, sqlite3_stmt *st, StoreRowRead read_row, StoreItemFree free_item,
                       const char *invalid_row, void ***ret, size_t *ret_n) {
        void **l = NULL;
        size_t n = 0;
        int r = 0, rc;

        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                void *item = NULL;

                r = read_row(st, &item);
                if (r < 0) {
                        if (r != -ENOMEM)
                                (void) store_error_msg(s, r, invalid_row);
                        break;
                }
                void **a = array_grow(l, n);
                if (!a) {
                        free_item(item);
                        r = -ENOMEM;
                        break;
                }
                l = a;
                l[n++] = item;
                l[n] = NULL;
        }
        if (r >= 0 && rc != SQLITE_DONE)
                r = store_error(s, rc);
        if (r >= 0 && !l) {
                l = calloc(1, sizeof(void *));
                if (!l)
                        r = -ENOMEM;
        }
        if (r < 0) {
                store_list_free(l, free_item);
                return r;
        }
        *ret = l;
        if (ret_n)
                *ret_n = n;
        return 0;
}

void store_list_free(void **l, StoreItemFree free_item) {
        for (void **i = l; i && *i; i++)
                free_item(*i);
        free(l);
}

/* SQLite creates a database file 0644 less the umask: create a new one ourselves first, private to keyd; the -wal and
 * -shm files SQLite creates later take the database file's mode. An existing file is never opened here: on Linux,
 * closing any descriptor of a file drops every POSIX lock this process holds on it, and SQLite's locks are what tell an
 * outside reader (an operator's sqlite3, a backup) that keyd is still using the WAL. Without them the reader, believing
 * itself the last connection, checkpoints and deletes the WAL that keyd goes on writing into: everything committed
 * after that is lost at the next crash. O_EXCL: a file made here is new, so no connection of ours can hold it. */
static int create_private(const char *path) {
        struct stat st;

        if (stat(path, &st) >= 0)
                return S_ISREG(st.st_mode) ? 0 : -EINVAL;
        if (errno != ENOENT)
                return negative_errno();
        _cleanup_close_ int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW, 0600);
        if (fd < 0 && errno != EEXIST)
                return negative_errno();
        return 0; /* EEXIST: another opener made it between stat() and open(); it is not ours to touch */
}

static int exec(Store *s, const char *sql) {
        int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
        return rc == SQLITE_OK ? 0 : store_error(s, rc);
}

/* PRAGMA synchronous acts when it is prepared, and SQLite refuses it inside a transaction ("Safety level may not be
 * changed inside a transaction"): so it is run with sqlite3_exec(), never cached, and only between transactions. */
static int set_sync(Store *s, StoreSync sync) {
        if (s->sync == sync)
                return 0;
        int r = exec(s, sync == STORE_SYNC_FULL ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
        if (r < 0)
                return r;
        s->sync = sync;
        return 0;
}

static int configure(Store *s) {
        int r, rc;

        rc = sqlite3_busy_timeout(s->db, STORE_BUSY_TIMEOUT_MSEC);
        if (rc != SQLITE_OK)
                return store_error(s, rc);
        r = exec(s, "PRAGMA foreign_keys=ON");
        if (r < 0)
                return r;
        if (s->flags & STORE_READ_ONLY)
                return 0;

        _cleanup_finalize_ sqlite3_stmt *st = NULL;
        r = store_query_row(s, "PRAGMA journal_mode=WAL", &st);
        if (r < 0)
                return r;
        const char *mode = (const char *) sqlite3_column_text(st, 0);
        if (!mode || strcasecmp(mode, "wal") != 0)
                return store_error_msg(s, -EIO, "the database cannot be put in WAL mode");
        return set_sync(s, STORE_SYNC_FULL); /* migrations */
}

int store_open(const char *path, StoreFlags flags, Store **ret) {
        int r, rc;

        if (!path || !ret || (flags & ~STORE_READ_ONLY))
                return -EINVAL;

        if (!(flags & STORE_READ_ONLY)) {
                r = create_private(path);
                if (r < 0)
                        return r;
        }

        Store *s = calloc(1, sizeof(Store));
        if (!s)
                return -ENOMEM;
        s->flags = flags;

        /* Every fd SQLite opens on Linux is O_CLOEXEC already (the unix VFS adds it); NOMUTEX: one thread per Store. */
        int oflags = SQLITE_OPEN_EXRESCODE | SQLITE_OPEN_NOMUTEX |
                     (flags & STORE_READ_ONLY ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE);
        rc = sqlite3_open_v2(path, &s->db, oflags, NULL);
        if (rc != SQLITE_OK) {
                r = s->db ? store_error(s, rc) : -ENOMEM;
                store_close(s);
                return r;
        }

        r = configure(s);
        if (r >= 0)
                r = store_migrate(s);
        if (r < 0) {
                store_close(s);
                return r;
        }
        *ret = s;
        return 0;
}

Store *store_close(Store *s) {
        if (!s)
                return NULL;
        for (size_t i = 0; i < _STORE_STMT_MAX; i++)
                sqlite3_finalize(s->stmts[i]);
        (void) sqlite3_close_v2(s->db); /* NULL is a harmless no-op */
        free(s);
        return NULL;
}

int store_begin(Store *s, StoreDurability durability) {
        sqlite3_stmt *st = NULL;
        int r;

        if (!s || (durability != STORE_COMMITTED && durability != STORE_SYNCED))
                return -EINVAL;
        if (s->flags & STORE_READ_ONLY)
                return store_error_msg(s, -EROFS, "the store is open read-only");
        if (!sqlite3_get_autocommit(s->db))
                return store_error_msg(s, -EINVAL, "a transaction is already open");

        /* In WAL mode, NORMAL commits without fsync (the WAL survives a crash of the process, not of the host);
         * FULL fsyncs the WAL at commit, which also makes every earlier NORMAL commit durable. */
        r = set_sync(s, durability == STORE_SYNCED ? STORE_SYNC_FULL : STORE_SYNC_NORMAL);
        if (r < 0)
                return r;

        r = store_prepare(s, STORE_STMT_BEGIN, "BEGIN IMMEDIATE", &st);
        if (r < 0)
                return r;
        r = store_step_done(s, st);
        sqlite3_reset(st);
        return r;
}

int store_commit(Store *s) {
        sqlite3_stmt *st = NULL;
        int r;

        if (!s)
                return -EINVAL;
        if (sqlite3_get_autocommit(s->db))
                return store_error_msg(s, -EINVAL, "no transaction is open");

        r = store_prepare(s, STORE_STMT_COMMIT, "COMMIT", &st);
        if (r >= 0) {
                r = store_step_done(s, st);
                sqlite3_reset(st);
        }
        if (r < 0) {
                store_rollback(s); /* keeps the error message: rollback does not touch s->error */
                return r;
        }
        store_health_clear(s->health); /* a commit went through: the database can be written */
        return 0;
}

void store_rollback(Store *s) {
        sqlite3_stmt *st = NULL;

        if (!s || sqlite3_get_autocommit(s->db))
                return;
        if (store_prepare(s, STORE_STMT_ROLLBACK, "ROLLBACK", &st) < 0) {
                (void) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
                return;
        }
        (void) sqlite3_step(st);
        (void) sqlite3_reset(st);
}

int store_probe(Store *s) {
        int r;

        if (!s || !sqlite3_get_autocommit(s->db))
                return -EINVAL;
        /* Never wait on a lock here: the caller is the daemon's event loop, and it probes again soon. */
        (void) sqlite3_busy_timeout(s->db, 0);
        r = store_begin(s, STORE_COMMITTED);
        if (r >= 0) {
                char sql[64];
                int v = store_schema_version(s);
                if (v < 0)
                        r = v;
                else {
                        snprintf(sql, sizeof sql, "PRAGMA user_version=%d", v);
                        r = exec(s, sql);
                }
        }
        if (r >= 0)
                r = store_commit(s);
        else
                store_rollback(s);
        (void) sqlite3_busy_timeout(s->db, STORE_BUSY_TIMEOUT_MSEC);
        return r;
}

int store_migrations_applied(Store *s) {
        return s->migrations_applied;
}

sqlite3 *store_sqlite(Store *s) {
        return s->db;
}
