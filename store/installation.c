/* SPDX-License-Identifier: MIT */
/* The installation's identity, and the key ids recorded before their token objects are generated (the proof that an
 * object without a key row is a crash leftover of this database's own history). Rare calls: statements are not
 * cached. */
#include "store/store-internal.h"

int store_instance_id(Store *s, char ret[STORE_INSTANCE_ID_MAX + 1]) {
        _cleanup_finalize_ sqlite3_stmt *st = NULL;
        int rc;

        if (!s || !ret)
                return -EINVAL;
        rc = sqlite3_prepare_v2(s->db, "SELECT instance_id FROM installation WHERE one = 1", -1, &st, NULL);
        if (rc != SQLITE_OK)
                return store_error(s, rc);
        rc = sqlite3_step(st);
        if (rc == SQLITE_DONE)
                return store_error_msg(s, -EBADMSG, "the database has no installation id");
        if (rc != SQLITE_ROW)
                return store_error(s, rc);
        if (store_column_strcpy(st, 0, ret, STORE_INSTANCE_ID_MAX + 1) < 0 ||
            strlen(ret) != STORE_INSTANCE_ID_MAX || strspn(ret, "0123456789abcdef") != STORE_INSTANCE_ID_MAX)
                return store_error_msg(s, -EBADMSG, "the database's installation id is not 16 hex digits");
        return 0;
}

static int exec_id(Store *s, const char *sql, const char *id, const char *keyring, usec_t time) {
        _cleanup_finalize_ sqlite3_stmt *st = NULL;
        int r, rc;

        r = store_require_transaction(s);
        if (r < 0)
                return r;
        if (!id || !*id || strlen(id) > STORE_KEY_ID_MAX)
                return store_error_msg(s, -EINVAL, "pending key: invalid id");
        rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
        if (rc != SQLITE_OK)
                return store_error(s, rc);
        if (sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC) != SQLITE_OK ||
            (keyring && sqlite3_bind_text(st, 2, keyring, -1, SQLITE_STATIC) != SQLITE_OK) ||
            (keyring && sqlite3_bind_int64(st, 3, time) != SQLITE_OK))
                return store_bind_error(s);
        return store_step_done(s, st);
}

int store_pending_key_insert(Store *s, const char *id, const char *keyring, usec_t time) {
        if (!keyring)
                return -EINVAL;
        return exec_id(s, "INSERT INTO pending_keys (id, keyring, created_at) VALUES (?1, ?2, ?3)", id, keyring, time);
}

int store_pending_key_delete(Store *s, const char *id) {
        return exec_id(s, "DELETE FROM pending_keys WHERE id = ?1", id, NULL, 0);
}

static int pending_key_from_row(sqlite3_stmt *st, void **ret) {
        char *id = NULL;
        int r;

        r = store_column_strdup(st, 0, false, &id);
        if (r < 0)
                return r;
        *ret = id;
        return 0;
}

int store_pending_key_list(Store *s, char ***ret, size_t *ret_n) {
        _cleanup_finalize_ sqlite3_stmt *st = NULL;
        int r, rc;

        if (!s || !ret)
                return -EINVAL;
        rc = sqlite3_prepare_v2(s->db, "SELECT id FROM pending_keys ORDER BY id", -1, &st, NULL);
        if (rc != SQLITE_OK)
                return store_error(s, rc);
        void **l = NULL;
        r = store_collect_rows(s, st, pending_key_from_row, free, "pending key: invalid row", &l, ret_n);
        if (r >= 0)
                *ret = (char **) l;
        return r;
}

void store_pending_key_list_free(char **l) {
        store_list_free((void **) l, free);
}
