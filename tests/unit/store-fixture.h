/* SPDX-License-Identifier: MIT */
#pragma once

/* The store tests' fixture: a fresh database under mkdtemp for each test, and record builders. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/stat.h>

#include "store/store-internal.h"
#include "store/store.h"
#include "tests/helpers/test-util.h"

static char *dir, *dbpath;

static inline void setup(void) {
        dir = test_mkdtemp();
        cr_assert(asprintf(&dbpath, "%s/keyd.db", dir) >= 0);
}

static inline void teardown(void) {
        test_rmrf(dir);
        free(dir);
        free(dbpath);
}



static inline Store *open_rw(void) {
        Store *s = NULL;
        int r = store_open(dbpath, 0, &s);
        cr_assert_eq(r, 0, "store_open: %s", strerror(-r));
        cr_assert_not_null(s);
        return s;
}

/* Run SQL on the database file through a connection of our own, as an operator (or an attacker) would. */
static inline void raw_exec(const char *sql) {
        sqlite3 *db = NULL;
        cr_assert_eq(sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
        sqlite3_busy_timeout(db, 5000);
        int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
        cr_assert_eq(rc, SQLITE_OK, "%s: %s", sql, sqlite3_errmsg(db));
        sqlite3_close(db);
}

static inline int64_t raw_int(sqlite3 *db, const char *sql) {
        sqlite3_stmt *st = NULL;
        cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
        cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
        int64_t v = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        return v;
}

static inline StoreKeyring keyring(const char *name, const char *kind) {
        return (StoreKeyring){.name = (char *) name,
                              .kind = (char *) kind,
                              .policy = (char *) "{\"alg\":\"ES256\"}",
                              .owner_uid = -1,
                              .created_at = 1000};
}

static inline StoreKey key(const char *id, const char *kid, const char *ring, usec_t created_at) {
        StoreKey k = {.keyring = (char *) ring,
                      .alg = KEYD_ALG_ES256,
                      .state = KEY_STATE_RETIRED,
                      .jwk = (char *) "{\"kty\":\"EC\"}",
                      .created_at = created_at};
        snprintf(k.id, sizeof k.id, "%s", id);
        snprintf(k.kid, sizeof k.kid, "%s", kid);
        return k;
}

static inline StoreAudit audit(const char *action, const char *detail) {
        return (StoreAudit){.time = 1700000000000000,
                            .uid = 1000,
                            .pid = 42,
                            .comm = (char *) "gateway",
                            .action = (char *) action,
                            .keyring = (char *) "default",
                            .result = (char *) "ok",
                            .detail = (char *) detail};
}

static inline void append_n(Store *s, unsigned n) {
        char detail[64];
        for (unsigned i = 0; i < n; i++) {
                if (i % 10 == 0)
                        cr_assert_eq(store_begin(s, STORE_COMMITTED), 0);
                snprintf(detail, sizeof detail, "{\"i\":%u,\"note\":\"r\\u00e9cord\"}", i);
                StoreAudit a = audit(i % 2 ? "token.mint" : "key.sign", detail);
                a.kid = i % 3 ? (char *) "kid-1" : NULL;
                cr_assert_eq(store_audit_append(s, &a), 0);
                if (i % 10 == 9 || i == n - 1)
                        cr_assert_eq(store_commit(s), 0);
        }
}

/* ---- schema and connection ---- */
