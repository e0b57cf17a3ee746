/* SPDX-License-Identifier: MIT */
/* Keyrings: a named series of keys with one purpose and one policy. */
#include <jansson.h>

#include "common/crypto-util.h"
#include "store/store-internal.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(StoreKeyring *, store_keyring_free);

#define KEYRING_COLUMNS "name, kind, policy, owner_uid, disabled, created_at, origin"

static bool is_json_object(const char *text) {
        _cleanup_json_ json_t *j = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
        return json_is_object(j);
}

/* Start a write of k (inside a transaction): prepare the statement for slot and bind what an update writes: ?1 name,
 * ?2 policy, ?3 owner_uid, ?4 disabled. */
static int keyring_prepare_write(Store *s, StoreStmt slot, const char *sql, const StoreKeyring *k, sqlite3_stmt **ret) {
        int r;

        r = store_require_transaction(s);
        if (r < 0)
                return r;
        r = store_prepare(s, slot, sql, ret);
        if (r < 0)
                return r;
        sqlite3_stmt *st = *ret;
        if (!k || !k->name || !k->policy || !is_json_object(k->policy))
                return store_error_msg(s, -EINVAL, "keyring: missing name, or policy not a JSON object");
        if (sqlite3_bind_text(st, 1, k->name, -1, SQLITE_STATIC) != SQLITE_OK ||
            sqlite3_bind_text(st, 2, k->policy, -1, SQLITE_STATIC) != SQLITE_OK ||
            sqlite3_bind_int64(st, 3, k->owner_uid) != SQLITE_OK || sqlite3_bind_int(st, 4, k->disabled) != SQLITE_OK)
                return store_bind_error(s);
        return 0;
}

int store_keyring_insert(Store *s, const StoreKeyring *k) {
        _cleanup_reset_ sqlite3_stmt *st = NULL;
        int r;

        r = keyring_prepare_write(s, STORE_STMT_KEYRING_INSERT,
                                  "INSERT INTO keyrings (name, policy, owner_uid, disabled, kind, created_at, origin) "
                                  "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                                  k, &st);
        if (r < 0)
                return r;
        if (sqlite3_bind_text(st, 5, k->kind, -1, SQLITE_STATIC) != SQLITE_OK ||
            sqlite3_bind_int64(st, 6, k->created_at) != SQLITE_OK ||
            (k->origin ? sqlite3_bind_text(st, 7, k->origin, -1, SQLITE_STATIC) : sqlite3_bind_null(st, 7)) != SQLITE_OK)
                return store_bind_error(s);
        return store_step_done(s, st);
}

int store_keyring_update(Store *s, const StoreKeyring *k) {
        _cleanup_reset_ sqlite3_stmt *st = NULL;
        int r;

        r = keyring_prepare_write(s, STORE_STMT_KEYRING_UPDATE,
                                  "UPDATE keyrings SET policy = ?2, owner_uid = ?3, disabled = ?4 WHERE name = ?1", k,
                                  &st);
        if (r < 0)
                return r;
        r = store_step_done(s, st);
        if (r < 0)
                return r;
        return sqlite3_changes(s->db) > 0 ? 0 : store_error_msg(s, -ENOENT, "no such keyring");
}

static int keyring_from_row(sqlite3_stmt *st, void **ret) {
        _cleanup_(store_keyring_freep) StoreKeyring *k = calloc(1, sizeof(StoreKeyring));
        int r;

        if (!k)
                return -ENOMEM;
        if ((r = store_column_strdup(st, 0, false, &k->name)) < 0 ||
            (r = store_column_strdup(st, 1, false, &k->kind)) < 0 ||
            (r = store_column_strdup(st, 2, false, &k->policy)) < 0)
                return r;
        k->owner_uid = sqlite3_column_int64(st, 3);
        k->disabled = sqlite3_column_int(st, 4) != 0;
        k->created_at = sqlite3_column_int64(st, 5);
        r = store_column_strdup(st, 6, true, &k->origin);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(k);
        return 0;
}

int store_keyring_get(Store *s, const char *name, StoreKeyring **ret) {
        _cleanup_reset_ sqlite3_stmt *st = NULL;
        int r, rc;

        if (!s || !name || !ret)
                return -EINVAL;
        r = store_prepare(s, STORE_STMT_KEYRING_GET, "SELECT " KEYRING_COLUMNS " FROM keyrings WHERE name = ?1", &st);
        if (r < 0)
                return r;
        if (sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC) != SQLITE_OK)
                return store_bind_error(s);
        rc = sqlite3_step(st);
        if (rc == SQLITE_DONE)
                return store_error_msg(s, -ENOENT, "no such keyring");
        if (rc != SQLITE_ROW)
                return store_error(s, rc);
        void *k = NULL;
        r = keyring_from_row(st, &k);
        if (r < 0)
                return r;
        *ret = k;
        return 0;
}

/* store_keyring_free() for a list. */
static void keyring_free(void *k) {
        store_keyring_free(k);
}

int store_keyring_list(Store *s, StoreKeyring ***ret, size_t *ret_n) {
        _cleanup_reset_ sqlite3_stmt *st = NULL;
        int r;

        if (!s || !ret)
                return -EINVAL;
        r = store_prepare(s, STORE_STMT_KEYRING_LIST, "SELECT " KEYRING_COLUMNS " FROM keyrings ORDER BY name", &st);
        if (r < 0)
                return r;
        void **l = NULL;
        r = store_collect_rows(s, st, keyring_from_row, keyring_free, "keyring: invalid row", &l, ret_n);
        if (r >= 0)
                *ret = (StoreKeyring **) l;
        return r;
}

StoreKeyring *store_keyring_free(StoreKeyring *k) {
        if (!k)
                return NULL;
        free(k->name);
        free(k->kind);
        free(k->policy);
        free(k->origin);
        free(k);
        return NULL;
}

void store_keyring_list_free(StoreKeyring **l) {
        store_list_free((void **) l, keyring_free);
}
