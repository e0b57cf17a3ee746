/* SPDX-License-Identifier: MIT */
/* The store: schema and migrations, transactions and durability, keyrings and keys. */
#include "tests/unit/store-fixture.h"

TestSuite(store, .init = setup, .fini = teardown);

Test(store, migrations_from_empty_and_not_rerun) {
        cr_assert_geq(store_schema_version_latest(), 2);
        Store *s = open_rw();
        cr_assert_eq(store_schema_version(s), store_schema_version_latest());
        cr_assert_eq(store_migrations_applied(s), store_schema_version_latest());
        store_close(s);

        s = open_rw();
        cr_assert_eq(store_migrations_applied(s), 0, "reopening re-ran migrations");
        cr_assert_eq(store_schema_version(s), store_schema_version_latest());
        store_close(s);
}

Test(store, migrations_from_an_older_version) {
        store_close(open_rw());
        raw_exec("DROP TABLE audit_checkpoints; DROP TABLE installation; DROP TABLE pending_keys; "
                 "DROP TABLE audit_exports; DROP TABLE audit_anchor; ALTER TABLE keyrings DROP COLUMN origin; "
                 "PRAGMA user_version=1;");
        Store *s = open_rw();
        cr_assert_eq(store_migrations_applied(s), store_schema_version_latest() - 1);
        cr_assert_eq(store_schema_version(s), store_schema_version_latest());
        cr_assert_eq(store_checkpoint_latest(s, NULL, NULL, NULL, NULL), -ENOENT, "the table is back");
        uint64_t sealed;
        cr_assert_eq(store_audit_sealed_end(s, 1, &sealed), 0, "and the retention tables (version 4)");
        cr_assert_eq(sealed, 0);
        /* Version 5: where a keyring came from. */
        StoreKeyring k = { .name = "r", .kind = "issuer", .policy = "{}", .owner_uid = -1, .origin = "api" };
        StoreKeyring *got = NULL;
        cr_assert_eq(store_begin(s, STORE_COMMITTED), 0);
        cr_assert_eq(store_keyring_insert(s, &k), 0);
        cr_assert_eq(store_commit(s), 0);
        cr_assert_eq(store_keyring_get(s, "r", &got), 0);
        cr_assert_str_eq(got->origin, "api");
        store_keyring_free(got);
        char id[STORE_INSTANCE_ID_MAX + 1], again[STORE_INSTANCE_ID_MAX + 1];
        cr_assert_eq(store_instance_id(s, id), 0, "an upgraded database gets an installation id");
        store_close(s);
        s = open_rw();
        cr_assert_eq(store_instance_id(s, again), 0);
        cr_assert_str_eq(id, again, "made once, kept");
        store_close(s);
}

Test(store, newer_database_refused) {
        char sql[64];
        Store *s = NULL;

        store_close(open_rw());
        snprintf(sql, sizeof sql, "PRAGMA user_version=%d", store_schema_version_latest() + 1);
        raw_exec(sql);
        cr_assert_eq(store_open(dbpath, 0, &s), -EPROTONOSUPPORT);
        cr_assert_null(s, "output written on failure");
        cr_assert_eq(store_open(dbpath, STORE_READ_ONLY, &s), -EPROTONOSUPPORT);
        cr_assert_null(s);
}

Test(store, read_only_missing_file) {
        Store *s = NULL;
        cr_assert_eq(store_open(dbpath, STORE_READ_ONLY, &s), -ENOENT);
        cr_assert_null(s);
        DIR *d = opendir(dir);
        cr_assert_not_null(d);
        struct dirent *e;
        while ((e = readdir(d)))
                cr_assert(streq(e->d_name, ".") || streq(e->d_name, ".."), "created %s", e->d_name);
        closedir(d);
}

Test(store, read_only_refuses_writes) {
        store_close(open_rw());
        Store *s = NULL;
        cr_assert_eq(store_open(dbpath, STORE_READ_ONLY, &s), 0);
        cr_assert_eq(store_schema_version(s), store_schema_version_latest());
        cr_assert_eq(store_begin(s, STORE_SYNCED), -EROFS);
        StoreKeyring r = keyring("a", "issuer");
        cr_assert_eq(store_keyring_insert(s, &r), -EINVAL);
        store_close(s);
}

Test(store, file_mode_wal_foreign_keys_cloexec) {
        struct stat st;
        umask(0); /* the mode must be keyd's doing, not the umask's */
        Store *s = open_rw();
        cr_assert_eq(stat(dbpath, &st), 0);
        cr_assert_eq(st.st_mode & 07777, 0600, "mode %o", st.st_mode & 07777);

        cr_assert_eq(store_begin(s, STORE_SYNCED), 0);
        StoreKeyring r = keyring("a", "issuer");
        cr_assert_eq(store_keyring_insert(s, &r), 0);
        cr_assert_eq(store_commit(s), 0);
        char *wal;
        cr_assert(asprintf(&wal, "%s-wal", dbpath) >= 0);
        cr_assert_eq(stat(wal, &st), 0, "WAL mode writes a -wal file");
        cr_assert_eq(st.st_mode & 07777, 0600, "-wal mode %o", st.st_mode & 07777);
        free(wal);
        char *shm;
        cr_assert(asprintf(&shm, "%s-shm", dbpath) >= 0);
        cr_assert_eq(stat(shm, &st), 0);
        cr_assert_eq(st.st_mode & 07777, 0600, "-shm mode %o", st.st_mode & 07777);
        free(shm);

        sqlite3 *db = store_sqlite(s);
        sqlite3_stmt *q = NULL;
        cr_assert_eq(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &q, NULL), SQLITE_OK);
        cr_assert_eq(sqlite3_step(q), SQLITE_ROW);
        cr_assert_str_eq((const char *) sqlite3_column_text(q, 0), "wal");
        sqlite3_finalize(q);
        cr_assert_eq(raw_int(db, "PRAGMA foreign_keys"), 1);

        /* Every fd open on the database's files is close-on-exec. */
        int found = 0;
        DIR *d = opendir("/proc/self/fd");
        cr_assert_not_null(d);
        struct dirent *e;
        while ((e = readdir(d))) {
                char link[PATH_MAX + 1], target[PATH_MAX + 1];
                snprintf(link, sizeof link, "/proc/self/fd/%s", e->d_name);
                ssize_t n = readlink(link, target, PATH_MAX);
                if (n <= 0)
                        continue;
                target[n] = 0;
                if (!startswith(target, dbpath))
                        continue;
                found++;
                int flags = fcntl(atoi(e->d_name), F_GETFD);
                cr_assert(flags >= 0 && (flags & FD_CLOEXEC), "%s is not O_CLOEXEC", target);
        }
        closedir(d);
        cr_assert_geq(found, 3, "db, -wal and -shm");
        store_close(s);
}

Test(store, begin_twice_and_commit_without_begin) {
        Store *s = open_rw();
        cr_assert_eq(store_commit(s), -EINVAL);
        cr_assert_eq(store_begin(s, STORE_COMMITTED), 0);
        cr_assert_eq(store_begin(s, STORE_COMMITTED), -EINVAL);
        cr_assert_eq(store_begin(s, STORE_SYNCED), -EINVAL);
        cr_assert_eq(store_commit(s), 0);
        cr_assert_eq(store_commit(s), -EINVAL);
        store_rollback(s); /* none open: harmless */
        cr_assert_eq(store_begin(s, STORE_SYNCED), 0);
        store_rollback(s);
        cr_assert_eq(store_commit(s), -EINVAL, "rollback closed the transaction");
        cr_assert_eq(store_begin(s, 7), -EINVAL);
        store_close(s);
}

/* ---- synchronous per transaction ---- */

/* A VFS that is the default one but counts xSync calls: the proof that a commit did (not) fsync. The unix VFS gives
 * the database and its other files different method tables (locking or not): each gets its counting copy. */
static sqlite3_vfs count_vfs;
static struct {
        const sqlite3_io_methods *real;
        sqlite3_io_methods copy;
} count_io[4];
static int (*real_sync)(sqlite3_file *, int);
static int (*real_open)(sqlite3_vfs *, sqlite3_filename, sqlite3_file *, int, int *);
static atomic_int syncs;

static int count_sync(sqlite3_file *f, int flags) {
        syncs++;
        return real_sync(f, flags);
}

static int count_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *f, int flags, int *out) {
        int rc = real_open(vfs, name, f, flags, out);
        if (rc != SQLITE_OK || !f->pMethods)
                return rc;
        size_t i = 0;
        while (i < ELEMENTSOF(count_io) && count_io[i].real && count_io[i].real != f->pMethods)
                i++;
        cr_assert_lt(i, ELEMENTSOF(count_io));
        if (!count_io[i].real) {
                if (!real_sync)
                        real_sync = f->pMethods->xSync;
                cr_assert_eq(f->pMethods->xSync, real_sync, "one xSync for every kind of file");
                count_io[i].real = f->pMethods;
                count_io[i].copy = *f->pMethods;
                count_io[i].copy.xSync = count_sync;
        }
        f->pMethods = &count_io[i].copy;
        return rc;
}

static void count_syncs_in_default_vfs(void) {
        sqlite3_vfs *def = sqlite3_vfs_find(NULL);
        cr_assert_not_null(def);
        count_vfs = *def;
        count_vfs.zName = "keyd-test-count-sync";
        real_open = def->xOpen;
        count_vfs.xOpen = count_open;
        cr_assert_eq(sqlite3_vfs_register(&count_vfs, 1), SQLITE_OK);
}

static int commit_one(Store *s, StoreDurability d, const char *name) {
        StoreKeyring r = keyring(name, "agent");
        int before = syncs;
        cr_assert_eq(store_begin(s, d), 0);
        cr_assert_eq(raw_int(store_sqlite(s), "PRAGMA synchronous"), d == STORE_SYNCED ? 2 : 1, "FULL or NORMAL");
        cr_assert_eq(store_keyring_insert(s, &r), 0);
        cr_assert_eq(store_commit(s), 0);
        return syncs - before;
}

Test(store, durability_decides_fsync) {
        count_syncs_in_default_vfs();
        Store *s = open_rw();
        commit_one(s, STORE_COMMITTED, "warm-up"); /* the first frame of a new WAL syncs its header */
        cr_assert_eq(commit_one(s, STORE_COMMITTED, "a"), 0, "a COMMITTED commit does not fsync");
        cr_assert_geq(commit_one(s, STORE_SYNCED, "b"), 1, "a SYNCED commit fsyncs the WAL");
        cr_assert_eq(commit_one(s, STORE_COMMITTED, "c"), 0, "and the next COMMITTED one is back to NORMAL");
        cr_assert_geq(commit_one(s, STORE_SYNCED, "d"), 1);
        store_close(s);
}

Test(store, synchronous_cannot_change_inside_a_transaction) {
        Store *s = open_rw();
        cr_assert_eq(store_begin(s, STORE_COMMITTED), 0);
        cr_assert_eq(sqlite3_exec(store_sqlite(s), "PRAGMA synchronous=FULL", NULL, NULL, NULL), SQLITE_ERROR);
        cr_assert_str_eq(sqlite3_errmsg(store_sqlite(s)), "Safety level may not be changed inside a transaction");
        cr_assert_eq(raw_int(store_sqlite(s), "PRAGMA synchronous"), 1, "still NORMAL");
        store_rollback(s);
        store_close(s);
}

/* ---- errors ---- */

Test(store, errno_mapping) {
        cr_assert_eq(store_errno_from_sqlite(SQLITE_CONSTRAINT_PRIMARYKEY, 0), -EEXIST);
        cr_assert_eq(store_errno_from_sqlite(SQLITE_CONSTRAINT_UNIQUE, 0), -EEXIST);
        cr_assert_eq(store_errno_from_sqlite(SQLITE_CONSTRAINT_FOREIGNKEY, 0), -ENOENT);
        cr_assert_eq(store_errno_from_sqlite(SQLITE_CONSTRAINT_CHECK, 0), -EINVAL);
        /* Never -EBUSY: the API answers that 409 "published less than prepublish ago" for a rotation. */
        cr_assert_eq(store_errno_from_sqlite(SQLITE_BUSY, 0), -ENOLCK);
        cr_assert_eq(store_errno_from_sqlite(SQLITE_BUSY_SNAPSHOT, 0), -ENOLCK);
        cr_assert_eq(store_errno_from_sqlite(SQLITE_FULL, 0), -ENOSPC);
        cr_assert_eq(store_errno_from_sqlite(SQLITE_IOERR_WRITE, EROFS), -EROFS);
        cr_assert_eq(store_errno_from_sqlite(SQLITE_IOERR_WRITE, ENOSPC), -ENOSPC);
        cr_assert_eq(store_errno_from_sqlite(SQLITE_IOERR_NOMEM, 0), -ENOMEM);
        cr_assert_eq(store_errno_from_sqlite(SQLITE_NOMEM, 0), -ENOMEM);
        cr_assert_eq(store_errno_from_sqlite(SQLITE_READONLY_DBMOVED, 0), -EROFS);
        cr_assert_eq(store_errno_from_sqlite(SQLITE_IOERR_FSYNC, 0), -EIO);
        cr_assert_eq(store_errno_from_sqlite(SQLITE_CANTOPEN, EACCES), -EACCES);
        cr_assert_eq(store_errno_from_sqlite(SQLITE_CORRUPT, 0), -EIO);
}

Test(store, last_error_names_the_cause) {
        Store *s = open_rw();
        cr_assert_str_eq(store_last_error(s), "");
        StoreKeyring r = keyring("a", "issuer");
        cr_assert_eq(store_begin(s, STORE_SYNCED), 0);
        cr_assert_eq(store_keyring_insert(s, &r), 0);
        cr_assert_eq(store_keyring_insert(s, &r), -EEXIST);
        cr_assert_not_null(strstr(store_last_error(s), "UNIQUE constraint failed: keyrings.name"), "%s",
                           store_last_error(s));
        store_rollback(s);
        cr_assert_str_eq(store_last_error(NULL), "");
        store_close(s);
}

/* ---- keyrings and keys ---- */

/* Begin a synced transaction and insert the keyrings, then the keys (NULL-terminated lists, or NULL). The caller
 * commits or rolls back. */
static void begin_with(Store *s, StoreKeyring *const *rings, StoreKey *const *keys) {
        cr_assert_eq(store_begin(s, STORE_SYNCED), 0);
        for (size_t i = 0; rings && rings[i]; i++)
                cr_assert_eq(store_keyring_insert(s, rings[i]), 0, "keyring %s", rings[i]->name);
        for (size_t i = 0; keys && keys[i]; i++)
                cr_assert_eq(store_key_insert(s, keys[i]), 0, "key %s", keys[i]->id);
}
#define RINGS(...) ((StoreKeyring *const[]){ __VA_ARGS__, NULL })
#define KEYS(...) ((StoreKey *const[]){ __VA_ARGS__, NULL })

Test(store, keyring_crud) {
        Store *s = open_rw();
        StoreKeyring a = keyring("zeta", "issuer"), b = keyring("alpha", "agent"), c = keyring("mid", "issuer");
        StoreKeyring **l = NULL, *got = (StoreKeyring *) 1;
        size_t n = 99;

        cr_assert_eq(store_keyring_list(s, &l, &n), 0);
        cr_assert_eq(n, 0);
        cr_assert_not_null(l, "an empty list is an array");
        cr_assert_null(l[0]);
        store_keyring_list_free(l);

        b.owner_uid = 1001;
        begin_with(s, RINGS(&a, &b, &c), NULL);
        cr_assert_eq(store_keyring_insert(s, &a), -EEXIST);
        StoreKeyring bad = keyring("x", "robot");
        cr_assert_eq(store_keyring_insert(s, &bad), -EINVAL, "kind is issuer or agent");
        bad = keyring("x", "issuer");
        bad.policy = (char *) "[1]";
        cr_assert_eq(store_keyring_insert(s, &bad), -EINVAL, "policy is a JSON object");
        bad.name = (char *) "";
        bad.policy = (char *) "{}";
        cr_assert_eq(store_keyring_insert(s, &bad), -EINVAL, "a name is not empty");
        cr_assert_eq(store_commit(s), 0);

        cr_assert_eq(store_keyring_list(s, &l, &n), 0);
        cr_assert_eq(n, 3);
        cr_assert_str_eq(l[0]->name, "alpha");
        cr_assert_str_eq(l[1]->name, "mid");
        cr_assert_str_eq(l[2]->name, "zeta");
        cr_assert_null(l[3]);
        cr_assert_str_eq(l[0]->kind, "agent");
        cr_assert_eq(l[0]->owner_uid, 1001);
        store_keyring_list_free(l);

        cr_assert_eq(store_keyring_get(s, "nope", &got), -ENOENT);
        cr_assert_eq(got, (StoreKeyring *) 1, "output written on failure");

        a.policy = (char *) "{\"alg\":\"ES384\",\"rotation_period\":\"1h\"}";
        a.owner_uid = 7;
        a.disabled = true;
        a.kind = (char *) "agent"; /* not an updated field */
        a.created_at = 5;          /* nor this */
        cr_assert_eq(store_begin(s, STORE_SYNCED), 0);
        cr_assert_eq(store_keyring_update(s, &a), 0);
        StoreKeyring ghost = keyring("ghost", "issuer");
        cr_assert_eq(store_keyring_update(s, &ghost), -ENOENT);
        cr_assert_eq(store_commit(s), 0);

        cr_assert_eq(store_keyring_get(s, "zeta", &got), 0);
        cr_assert_str_eq(got->policy, a.policy);
        cr_assert_eq(got->owner_uid, 7);
        cr_assert(got->disabled);
        cr_assert_str_eq(got->kind, "issuer");
        cr_assert_eq(got->created_at, 1000);
        store_keyring_free(got);
        store_close(s);
}

Test(store, key_crud) {
        Store *s = open_rw();
        StoreKeyring r1 = keyring("r1", "issuer"), r2 = keyring("r2", "issuer");
        StoreKey k1 = key("0b", "kid-b", "r1", 100), k2 = key("0a", "kid-a", "r1", 100),
                 k3 = key("01", "kid-c", "r1", 50), k4 = key("ff", "kid-d", "r2", 10);
        StoreKey **l = NULL, *got = NULL;
        size_t n;

        begin_with(s, RINGS(&r1, &r2), KEYS(&k1, &k2, &k3, &k4));
        StoreKey dup = key("0b", "kid-new", "r1", 1);
        cr_assert_eq(store_key_insert(s, &dup), -EEXIST, "duplicate id");
        dup = key("new", "kid-a", "r1", 1);
        cr_assert_eq(store_key_insert(s, &dup), -EEXIST, "duplicate kid");
        StoreKey orphan = key("99", "kid-o", "no-such-ring", 1);
        cr_assert_eq(store_key_insert(s, &orphan), -ENOENT, "a key's keyring must exist");
        orphan = key("99", "kid-o", "r1", 1);
        orphan.alg = _KEYD_ALG_MAX;
        cr_assert_eq(store_key_insert(s, &orphan), -EINVAL);
        orphan.alg = KEYD_ALG_EDDSA;
        orphan.state = 17;
        cr_assert_eq(store_key_insert(s, &orphan), -EINVAL);
        cr_assert_eq(store_commit(s), 0);

        cr_assert_eq(store_key_list(s, "r1", &l, &n), 0);
        cr_assert_eq(n, 3);
        cr_assert_str_eq(l[0]->id, "01", "created_at first");
        cr_assert_str_eq(l[1]->id, "0a", "then id");
        cr_assert_str_eq(l[2]->id, "0b");
        cr_assert_null(l[3]);
        store_key_list_free(l);
        cr_assert_eq(store_key_list(s, NULL, &l, &n), 0);
        cr_assert_eq(n, 4);
        cr_assert_str_eq(l[0]->id, "ff");
        store_key_list_free(l);
        cr_assert_eq(store_key_list(s, "none", &l, &n), 0);
        cr_assert_eq(n, 0);
        cr_assert_null(l[0]);
        store_key_list_free(l);

        cr_assert_eq(store_key_get(s, "0a", &got), 0);
        cr_assert_str_eq(got->kid, "kid-a");
        store_key_free(got);
        cr_assert_eq(store_key_get_by_kid(s, "kid-d", &got), 0);
        cr_assert_str_eq(got->id, "ff");
        cr_assert_str_eq(got->keyring, "r2");
        store_key_free(got);
        got = NULL;
        cr_assert_eq(store_key_get(s, "nope", &got), -ENOENT);
        cr_assert_eq(store_key_get_by_kid(s, "nope", &got), -ENOENT);
        cr_assert_null(got);

        k1.state = KEY_STATE_REVOKED;
        k1.revoked_at = 777;
        k1.activate_at = 200;
        k1.reason = (char *) "compromised";
        k1.lost = true;
        cr_assert_eq(store_begin(s, STORE_SYNCED), 0);
        cr_assert_eq(store_key_update(s, &k1), 0);
        StoreKey ghost = key("aa", "kid-g", "r1", 1);
        cr_assert_eq(store_key_update(s, &ghost), -ENOENT);
        cr_assert_eq(store_commit(s), 0);
        cr_assert_eq(store_key_get(s, "0b", &got), 0);
        cr_assert_eq(got->state, KEY_STATE_REVOKED);
        cr_assert_eq(got->revoked_at, 777);
        cr_assert_eq(got->activate_at, 200);
        cr_assert_str_eq(got->reason, "compromised");
        cr_assert(got->lost);
        store_key_free(got);
        store_close(s);
}

Test(store, free_takes_null) {
        cr_assert_null(store_keyring_free(NULL));
        store_keyring_list_free(NULL);
        cr_assert_null(store_key_free(NULL));
        store_key_list_free(NULL);
}

Test(store, list_with_an_unreadable_row_fails) {
        Store *s = open_rw();
        StoreKeyring r = keyring("r", "issuer");
        StoreKey k1 = key("01", "kid-1", "r", 1), k2 = key("02", "kid-2", "r", 2);
        StoreKey **l = NULL;
        size_t n = 99;

        begin_with(s, RINGS(&r), KEYS(&k1, &k2));
        cr_assert_eq(store_commit(s), 0);
        /* The second row: the first, already read, is freed with the list. */
        raw_exec("UPDATE keys SET alg = 'XS999' WHERE id = '02'");
        cr_assert_eq(store_key_list(s, "r", &l, &n), -EBADMSG);
        cr_assert_null(l, "output written on failure");
        cr_assert_eq(n, 99);
        cr_assert_str_eq(store_last_error(s), "key: invalid row");
        store_close(s);
}

/* A row for each table, in the keyring "r" (an audit record with detail). */
typedef struct Rows {
        StoreKeyring r;
        StoreKey k;
        StoreRevokedToken t;
        StoreAudit a;
} Rows;

static Rows rows_new(const char *detail) {
        return (Rows){ .r = keyring("r", "issuer"),
                       .k = key("01", "kid", "r", 1),
                       .t = { .jti = (char *) "j", .exp = 10 },
                       .a = audit("key.generate", detail) };
}

Test(store, writes_outside_a_transaction_refused) {
        Store *s = open_rw();
        Rows w = rows_new(NULL);
        char zeros[STORE_HASH_HEX + 1];

        memset(zeros, '0', STORE_HASH_HEX);
        zeros[STORE_HASH_HEX] = 0;
        cr_assert_eq(store_keyring_insert(s, &w.r), -EINVAL);
        cr_assert_eq(store_keyring_update(s, &w.r), -EINVAL);
        cr_assert_eq(store_key_insert(s, &w.k), -EINVAL);
        cr_assert_eq(store_key_update(s, &w.k), -EINVAL);
        cr_assert_eq(store_revoked_token_insert(s, &w.t), -EINVAL);
        cr_assert_eq(store_revoked_token_prune(s, 100), -EINVAL);
        cr_assert_eq(store_audit_append(s, &w.a), -EINVAL);
        cr_assert_eq(w.a.seq, 0, "output written on failure");
        cr_assert_eq(store_checkpoint_insert(s, 1, zeros, 1, "kid", "a.b.c"), -EINVAL);
        StoreKeyring *got = NULL;
        cr_assert_eq(store_keyring_get(s, "r", &got), -ENOENT, "nothing was written");
        store_close(s);
}

Test(store, rollback_leaves_nothing) {
        Store *s = open_rw();
        Rows w = rows_new("{}");
        uint64_t seq = 99;
        char hash[STORE_HASH_HEX + 1];

        begin_with(s, RINGS(&w.r), KEYS(&w.k));
        cr_assert_eq(store_revoked_token_insert(s, &w.t), 0);
        cr_assert_eq(store_audit_append(s, &w.a), 0);
        cr_assert_eq(w.a.seq, 1);
        store_rollback(s);

        StoreKeyring *gr = NULL;
        StoreKey *gk = NULL;
        cr_assert_eq(store_keyring_get(s, "r", &gr), -ENOENT);
        cr_assert_eq(store_key_get(s, "01", &gk), -ENOENT);
        cr_assert_eq(store_revoked_token_check(s, "j", 0), 0);
        cr_assert_eq(store_audit_head(s, &seq, hash), 0);
        cr_assert_eq(seq, 0);
        cr_assert_eq(strspn(hash, "0"), STORE_HASH_HEX);
        store_close(s);
}

/* ---- round trip through close and reopen ---- */

/* A field of a record: its name, where it is, and its type (I64: int64_t, usec_t or uint64_t). */
typedef enum FieldType { FIELD_STR, FIELD_CHARS, FIELD_INT, FIELD_I64, FIELD_BOOL } FieldType;

typedef struct Field {
        const char *name;
        size_t offset;
        FieldType type;
} Field;

#define FIELD(type, record, field) { #field, offsetof(record, field), FIELD_##type }

static const Field keyring_fields[] = {
        FIELD(STR, StoreKeyring, name),      FIELD(STR, StoreKeyring, kind),      FIELD(STR, StoreKeyring, policy),
        FIELD(I64, StoreKeyring, owner_uid), FIELD(BOOL, StoreKeyring, disabled), FIELD(I64, StoreKeyring, created_at),
};

static const Field key_fields[] = {
        FIELD(CHARS, StoreKey, id),       FIELD(CHARS, StoreKey, kid),      FIELD(STR, StoreKey, keyring),
        FIELD(INT, StoreKey, alg),        FIELD(INT, StoreKey, state),      FIELD(STR, StoreKey, jwk),
        FIELD(I64, StoreKey, created_at), FIELD(I64, StoreKey, publish_at), FIELD(I64, StoreKey, activate_at),
        FIELD(I64, StoreKey, retire_at),  FIELD(I64, StoreKey, expire_at),  FIELD(I64, StoreKey, revoked_at),
        FIELD(STR, StoreKey, reason),     FIELD(BOOL, StoreKey, lost),
};

static const Field audit_fields[] = {
        FIELD(I64, StoreAudit, seq),     FIELD(I64, StoreAudit, time),        FIELD(I64, StoreAudit, uid),
        FIELD(I64, StoreAudit, pid),     FIELD(STR, StoreAudit, comm),        FIELD(STR, StoreAudit, action),
        FIELD(STR, StoreAudit, keyring), FIELD(STR, StoreAudit, kid),         FIELD(STR, StoreAudit, result),
        FIELD(STR, StoreAudit, detail),  FIELD(CHARS, StoreAudit, prev_hash), FIELD(CHARS, StoreAudit, hash),
};

static const Field revoked_token_fields[] = {
        FIELD(STR, StoreRevokedToken, jti),    FIELD(STR, StoreRevokedToken, keyring),
        FIELD(I64, StoreRevokedToken, exp),    FIELD(I64, StoreRevokedToken, revoked_at),
        FIELD(STR, StoreRevokedToken, reason),
};

/* A number field's value in the record. */
static int64_t field_number(const Field *f, const void *record) {
        const uint8_t *p = (const uint8_t *) record + f->offset;

        switch (f->type) {
        case FIELD_INT:
                return *(const int *) p;
        case FIELD_BOOL:
                return *(const bool *) p;
        default:
                return *(const int64_t *) p;
        }
}

/* Every field of the record read back (got) is the one of the record written (want). */
static void assert_fields_eq(const char *what, const void *got, const void *want, const Field *fields, size_t n) {
        for (size_t i = 0; i < n; i++) {
                const Field *f = &fields[i];
                const char *g = (const char *) got + f->offset, *w = (const char *) want + f->offset;

                if (f->type == FIELD_STR)
                        cr_assert(streq_ptr(*(char *const *) g, *(char *const *) w), "%s.%s", what, f->name);
                else if (f->type == FIELD_CHARS)
                        cr_assert_str_eq(g, w, "%s.%s", what, f->name);
                else
                        cr_assert_eq(field_number(f, got), field_number(f, want), "%s.%s", what, f->name);
        }
}

Test(store, records_survive_reopen) {
        Store *s = open_rw();
        StoreKeyring r = keyring("agent-1001", "agent");
        r.owner_uid = 1001;
        r.disabled = true;
        r.created_at = 1700000000123456;
        StoreKey k = key("a1b2c3", "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs", "agent-1001", 1700000000000001);
        k.alg = KEYD_ALG_PS256;
        k.state = KEY_STATE_REVOKED;
        k.publish_at = 1700000000000002;
        k.activate_at = 1700000000000003;
        k.retire_at = 1700000000000004;
        k.expire_at = 1700000000000005;
        k.revoked_at = 1700000000000006;
        k.reason = (char *) "key compromise";
        k.lost = true;
        StoreAudit a1 = audit("key.revoke", "{\"reason\":\"key compromise\",\"n\":[1,2.5,null,true]}");
        StoreAudit a2 = {.time = 5, .uid = -1, .pid = -1, .action = (char *) "keyd.start", .result = (char *) "ok"};
        StoreRevokedToken t = {.jti = (char *) "jti-1",
                               .keyring = (char *) "agent-1001",
                               .exp = 1800000000000000,
                               .revoked_at = 1700000000000007,
                               .reason = (char *) "logout"};

        begin_with(s, RINGS(&r), KEYS(&k));
        cr_assert_eq(store_audit_append(s, &a1), 0);
        cr_assert_eq(store_audit_append(s, &a2), 0);
        cr_assert_eq(store_revoked_token_insert(s, &t), 0);
        cr_assert_eq(store_checkpoint_insert(s, a2.seq, a2.hash, 99, "kid-x", "e30.e30.sig"), 0);
        cr_assert_eq(store_commit(s), 0);
        store_close(s);

        for (int ro = 0; ro <= 1; ro++) {
                cr_assert_eq(store_open(dbpath, ro ? STORE_READ_ONLY : 0, &s), 0);
                StoreKeyring *gr;
                cr_assert_eq(store_keyring_get(s, "agent-1001", &gr), 0);
                assert_fields_eq("keyring", gr, &r, keyring_fields, ELEMENTSOF(keyring_fields));
                store_keyring_free(gr);

                StoreKey *gk;
                cr_assert_eq(store_key_get(s, "a1b2c3", &gk), 0);
                assert_fields_eq("key", gk, &k, key_fields, ELEMENTSOF(key_fields));
                store_key_free(gk);

                StoreAudit **l;
                size_t n;
                cr_assert_eq(store_audit_list(s, 0, 10, &l, &n), 0);
                cr_assert_eq(n, 2);
                const StoreAudit *want[] = {&a1, &a2};
                for (size_t i = 0; i < 2; i++)
                        assert_fields_eq("audit", l[i], want[i], audit_fields, ELEMENTSOF(audit_fields));
                cr_assert_str_eq(l[1]->prev_hash, l[0]->hash);
                store_audit_list_free(l);
                cr_assert_eq(store_audit_verify(s, NULL), 0);

                StoreRevokedToken **tl;
                cr_assert_eq(store_revoked_token_list(s, &tl, &n), 0);
                cr_assert_eq(n, 1);
                assert_fields_eq("revoked token", tl[0], &t, revoked_token_fields, ELEMENTSOF(revoked_token_fields));
                store_revoked_token_list_free(tl);

                uint64_t seq;
                char *hash, *kid, *jws;
                cr_assert_eq(store_checkpoint_latest(s, &seq, &hash, &kid, &jws), 0);
                cr_assert_eq(seq, 2);
                cr_assert_str_eq(hash, a2.hash);
                cr_assert_str_eq(kid, "kid-x");
                cr_assert_str_eq(jws, "e30.e30.sig");
                free(hash);
                free(kid);
                free(jws);
                store_close(s);
        }
}

/* ---- the audit chain ---- */

Test(store, one_active_one_next_per_keyring) {
        Store *s = open_rw();
        StoreKeyring r1 = keyring("r1", "issuer"), r2 = keyring("r2", "issuer");
        StoreKey a1 = key("01", "kid-1", "r1", 1), a2 = key("02", "kid-2", "r1", 2), a3 = key("03", "kid-3", "r2", 3);
        StoreKey n1 = key("04", "kid-4", "r1", 4), n2 = key("05", "kid-5", "r1", 5);

        a1.state = a2.state = a3.state = KEY_STATE_ACTIVE;
        n1.state = n2.state = KEY_STATE_NEXT;
        begin_with(s, RINGS(&r1, &r2), KEYS(&a1, &n1));
        cr_assert_eq(store_key_insert(s, &a2), -EEXIST, "a second active key in one keyring is refused");
        cr_assert_eq(store_key_insert(s, &a3), 0, "another keyring has its own active key");
        cr_assert_eq(store_key_insert(s, &n2), -EEXIST, "a second next key in one keyring is refused");
        /* Promoting next while the old active is still active is refused too: order matters in a rotation. */
        n1.state = KEY_STATE_ACTIVE;
        cr_assert_eq(store_key_update(s, &n1), -EEXIST);
        a1.state = KEY_STATE_RETIRED;
        cr_assert_eq(store_key_update(s, &a1), 0);
        cr_assert_eq(store_key_update(s, &n1), 0);
        cr_assert_eq(store_commit(s), 0);
        store_close(s);
}

/* A lock held by another connection is a storage fault: reported to the health, which the probe clears once the lock
 * is gone. The probe never waits on the lock and leaves no transaction open, the schema version as it was. */
Test(store, health_follows_a_lock_and_the_probe) {
        Store *s = open_rw(), *other = open_rw();
        StoreHealth *h = store_health_new();
        char reason[64];
        int fault = 0;

        store_set_health(s, h);
        cr_assert_not(store_health_fault(h, NULL, NULL, 0));
        cr_assert_eq(store_begin(other, STORE_COMMITTED), 0);
        sqlite3_busy_timeout(store_sqlite(s), 10);
        cr_assert_eq(store_begin(s, STORE_COMMITTED), -ENOLCK);
        cr_assert(store_health_fault(h, &fault, reason, sizeof reason));
        cr_assert_eq(fault, -ENOLCK);
        cr_assert_str_eq(reason, "database is locked by another process");
        cr_assert_eq(store_probe(s), -ENOLCK);
        cr_assert(store_health_fault(h, NULL, NULL, 0));
        cr_assert(sqlite3_get_autocommit(store_sqlite(s)), "no transaction left open");

        store_rollback(other);
        cr_assert_eq(store_probe(s), 0);
        cr_assert_not(store_health_fault(h, NULL, NULL, 0));
        cr_assert(sqlite3_get_autocommit(store_sqlite(s)));
        cr_assert_eq(store_schema_version(s), store_schema_version_latest());
        /* The connection works again, and a commit clears a fault too. */
        store_health_set(h, -ENOSPC);
        cr_assert_eq(store_begin(s, STORE_COMMITTED), 0);
        cr_assert_eq(store_commit(s), 0);
        cr_assert_not(store_health_fault(h, NULL, NULL, 0));
        store_close(other);
        store_close(s);
        store_health_free(h);
}
