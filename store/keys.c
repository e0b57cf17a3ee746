/* SPDX-License-Identifier: MIT */
/* Keys: one row per key pair in the token, with its lifecycle state and timestamps. */
#include "store/store-internal.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(StoreKey *, store_key_free);

#define KEY_COLUMNS                                                                                                    \
        "id, kid, keyring, alg, state, jwk, created_at, publish_at, activate_at, retire_at, expire_at, revoked_at, "   \
        "reason, lost"

/* Prepare the statement for slot and bind what an update writes: ?1 id, ?2 state, ?3..?7 the timestamps but
 * created_at, ?8 reason, ?9 lost. */
static int key_prepare_mutable(Store *s, StoreStmt slot, const char *sql, const StoreKey *k, sqlite3_stmt **ret) {
        const char *state = key_state_to_string(k->state);
        int r;

        r = store_prepare(s, slot, sql, ret);
        if (r < 0)
                return r;
        sqlite3_stmt *st = *ret;
        if (!state || k->id[0] == 0 || strnlen(k->id, sizeof k->id) == sizeof k->id)
                return store_error_msg(s, -EINVAL, "key: missing or unterminated id, or invalid state");
        if (sqlite3_bind_text(st, 1, k->id, -1, SQLITE_STATIC) != SQLITE_OK ||
            sqlite3_bind_text(st, 2, state, -1, SQLITE_STATIC) != SQLITE_OK ||
            sqlite3_bind_int64(st, 3, k->publish_at) != SQLITE_OK ||
            sqlite3_bind_int64(st, 4, k->activate_at) != SQLITE_OK ||
            sqlite3_bind_int64(st, 5, k->retire_at) != SQLITE_OK ||
            sqlite3_bind_int64(st, 6, k->expire_at) != SQLITE_OK ||
            sqlite3_bind_int64(st, 7, k->revoked_at) != SQLITE_OK ||
            sqlite3_bind_text(st, 8, k->reason, -1, SQLITE_STATIC) != SQLITE_OK ||
            sqlite3_bind_int(st, 9, k->lost) != SQLITE_OK)
                return store_bind_error(s);
        return 0;
}

int store_key_insert(Store *s, const StoreKey *k) {
        _cleanup_reset_ sqlite3_stmt *st = NULL;
        int r;

        r = store_require_transaction(s);
        if (r < 0)
                return r;
        if (!k || !k->keyring || !k->jwk || k->kid[0] == 0 || strnlen(k->kid, sizeof k->kid) == sizeof k->kid ||
            !keyd_alg_to_string(k->alg))
                return store_error_msg(s, -EINVAL, "key: missing kid, keyring or jwk, or invalid alg");
        r = key_prepare_mutable(s, STORE_STMT_KEY_INSERT,
                                "INSERT INTO keys (id, state, publish_at, activate_at, retire_at, expire_at, "
                                "revoked_at, reason, lost, created_at, kid, keyring, alg, jwk) "
                                "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                                k, &st);
        if (r < 0)
                return r;
        if (sqlite3_bind_int64(st, 10, k->created_at) != SQLITE_OK ||
            sqlite3_bind_text(st, 11, k->kid, -1, SQLITE_STATIC) != SQLITE_OK ||
            sqlite3_bind_text(st, 12, k->keyring, -1, SQLITE_STATIC) != SQLITE_OK ||
            sqlite3_bind_text(st, 13, keyd_alg_to_string(k->alg), -1, SQLITE_STATIC) != SQLITE_OK ||
            sqlite3_bind_text(st, 14, k->jwk, -1, SQLITE_STATIC) != SQLITE_OK)
                return store_bind_error(s);
        return store_step_done(s, st);
}

int store_key_update(Store *s, const StoreKey *k) {
        _cleanup_reset_ sqlite3_stmt *st = NULL;
        int r;

        r = store_require_transaction(s);
        if (r < 0)
                return r;
        if (!k)
                return -EINVAL;
        r = key_prepare_mutable(s, STORE_STMT_KEY_UPDATE,
                                "UPDATE keys SET state = ?2, publish_at = ?3, activate_at = ?4, retire_at = ?5, "
                                "expire_at = ?6, revoked_at = ?7, reason = ?8, lost = ?9 WHERE id = ?1",
                                k, &st);
        if (r < 0)
                return r;
        r = store_step_done(s, st);
        if (r < 0)
                return r;
        return sqlite3_changes(s->db) > 0 ? 0 : store_error_msg(s, -ENOENT, "no such key");
}

static int key_from_row(sqlite3_stmt *st, void **ret) {
        _cleanup_(store_key_freep) StoreKey *k = calloc(1, sizeof(StoreKey));
        _cleanup_free_ char *alg = NULL, *state = NULL;
        int r;

        if (!k)
                return -ENOMEM;
        if ((r = store_column_strcpy(st, 0, k->id, sizeof k->id)) < 0 ||
            (r = store_column_strcpy(st, 1, k->kid, sizeof k->kid)) < 0 ||
            (r = store_column_strdup(st, 2, false, &k->keyring)) < 0 ||
            (r = store_column_strdup(st, 3, false, &alg)) < 0 || (r = store_column_strdup(st, 4, false, &state)) < 0 ||
            (r = store_column_strdup(st, 5, false, &k->jwk)) < 0 ||
            (r = store_column_strdup(st, 12, true, &k->reason)) < 0)
                return r;
        k->alg = keyd_alg_from_string(alg);
        k->state = key_state_from_string(state);
        if (k->alg < 0 || k->state < 0)
                return -EBADMSG;
        k->created_at = sqlite3_column_int64(st, 6);
        k->publish_at = sqlite3_column_int64(st, 7);
        k->activate_at = sqlite3_column_int64(st, 8);
        k->retire_at = sqlite3_column_int64(st, 9);
        k->expire_at = sqlite3_column_int64(st, 10);
        k->revoked_at = sqlite3_column_int64(st, 11);
        k->lost = sqlite3_column_int(st, 13) != 0;
        *ret = TAKE_PTR(k);
        return 0;
}

static int key_get(Store *s, StoreStmt slot, const char *sql, const char *value, StoreKey **ret) {
        _cleanup_reset_ sqlite3_stmt *st = NULL;
        int r, rc;

        if (!s || !value || !ret)
                return -EINVAL;
        r = store_prepare(s, slot, sql, &st);
        if (r < 0)
                return r;
        if (sqlite3_bind_text(st, 1, value, -1, SQLITE_STATIC) != SQLITE_OK)
                return store_bind_error(s);
        rc = sqlite3_step(st);
        if (rc == SQLITE_DONE)
                return store_error_msg(s, -ENOENT, "no such key");
        if (rc != SQLITE_ROW)
                return store_error(s, rc);
        void *k = NULL;
        r = key_from_row(st, &k);
        if (r < 0)
                return store_error_msg(s, r, "key: invalid row");
        *ret = k;
        return 0;
}

int store_key_get(Store *s, const char *id, StoreKey **ret) {
        return key_get(s, STORE_STMT_KEY_GET, "SELECT " KEY_COLUMNS " FROM keys WHERE id = ?1", id, ret);
}

int store_key_get_by_kid(Store *s, const char *kid, StoreKey **ret) {
        return key_get(s, STORE_STMT_KEY_GET_BY_KID, "SELECT " KEY_COLUMNS " FROM keys WHERE kid = ?1", kid, ret);
}

/* store_key_free() for a list. */
static void key_free(void *k) {
        store_key_free(k);
}

int store_key_list(Store *s, const char *keyring, StoreKey ***ret, size_t *ret_n) {
        _cleanup_reset_ sqlite3_stmt *st = NULL;
        int r;

        if (!s || !ret)
                return -EINVAL;
        if (keyring)
                r = store_prepare(s, STORE_STMT_KEY_LIST,
                                  "SELECT " KEY_COLUMNS " FROM keys WHERE keyring = ?1 ORDER BY created_at, id", &st);
        else
                r = store_prepare(s, STORE_STMT_KEY_LIST_ALL,
                                  "SELECT " KEY_COLUMNS " FROM keys ORDER BY created_at, id", &st);
        if (r < 0)
                return r;
        if (keyring && sqlite3_bind_text(st, 1, keyring, -1, SQLITE_STATIC) != SQLITE_OK)
                return store_bind_error(s);
        void **l = NULL;
        r = store_collect_rows(s, st, key_from_row, key_free, "key: invalid row", &l, ret_n);
        if (r >= 0)
                *ret = (StoreKey **) l;
        return r;
}

StoreKey *store_key_free(StoreKey *k) {
        if (!k)
                return NULL;
        free(k->keyring);
        free(k->jwk);
        free(k->reason);
        free(k);
        return NULL;
}

void store_key_list_free(StoreKey **l) {
        store_list_free((void **) l, key_free);
}
