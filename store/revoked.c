/* SPDX-License-Identifier: MIT */
/* Revoked tokens: the deny list of token ids, kept until the token would have expired anyway. */
#include "store/store-internal.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(StoreRevokedToken *, store_revoked_token_free);

int store_revoked_token_insert(Store *s, const StoreRevokedToken *t) {
        _cleanup_reset_ sqlite3_stmt *st = NULL;
        int r;

        r = store_require_transaction(s);
        if (r < 0)
                return r;
        if (!t || !t->jti || t->jti[0] == 0)
                return store_error_msg(s, -EINVAL, "revoked token: missing jti");
        r = store_prepare(
                s, STORE_STMT_REVOKED_INSERT,
                "INSERT INTO revoked_tokens (jti, keyring, exp, revoked_at, reason) VALUES (?1, ?2, ?3, ?4, ?5)", &st);
        if (r < 0)
                return r;
        if (sqlite3_bind_text(st, 1, t->jti, -1, SQLITE_STATIC) != SQLITE_OK ||
            sqlite3_bind_text(st, 2, t->keyring, -1, SQLITE_STATIC) != SQLITE_OK ||
            sqlite3_bind_int64(st, 3, t->exp) != SQLITE_OK || sqlite3_bind_int64(st, 4, t->revoked_at) != SQLITE_OK ||
            sqlite3_bind_text(st, 5, t->reason, -1, SQLITE_STATIC) != SQLITE_OK)
                return store_bind_error(s);
        return store_step_done(s, st);
}

int store_revoked_token_check(Store *s, const char *jti, usec_t now) {
        _cleanup_reset_ sqlite3_stmt *st = NULL;
        int r, rc;

        if (!s || !jti)
                return -EINVAL;
        r = store_prepare(s, STORE_STMT_REVOKED_CHECK, "SELECT 1 FROM revoked_tokens WHERE jti = ?1 AND exp > ?2", &st);
        if (r < 0)
                return r;
        if (sqlite3_bind_text(st, 1, jti, -1, SQLITE_STATIC) != SQLITE_OK ||
            sqlite3_bind_int64(st, 2, now) != SQLITE_OK)
                return store_bind_error(s);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
                return 1;
        if (rc == SQLITE_DONE)
                return 0;
        return store_error(s, rc);
}

static int revoked_from_row(sqlite3_stmt *st, void **ret) {
        _cleanup_(store_revoked_token_freep) StoreRevokedToken *t = calloc(1, sizeof(StoreRevokedToken));
        int r;

        if (!t)
                return -ENOMEM;
        if ((r = store_column_strdup(st, 0, false, &t->jti)) < 0 ||
            (r = store_column_strdup(st, 1, true, &t->keyring)) < 0 ||
            (r = store_column_strdup(st, 4, true, &t->reason)) < 0)
                return r;
        t->exp = sqlite3_column_int64(st, 2);
        t->revoked_at = sqlite3_column_int64(st, 3);
        *ret = TAKE_PTR(t);
        return 0;
}

/* store_revoked_token_free() for a list. */
static void revoked_free(void *t) {
        store_revoked_token_free(t);
}

int store_revoked_token_list(Store *s, StoreRevokedToken ***ret, size_t *ret_n) {
        _cleanup_reset_ sqlite3_stmt *st = NULL;
        int r;

        if (!s || !ret)
                return -EINVAL;
        r = store_prepare(s, STORE_STMT_REVOKED_LIST,
                          "SELECT jti, keyring, exp, revoked_at, reason FROM revoked_tokens ORDER BY revoked_at, jti",
                          &st);
        if (r < 0)
                return r;
        void **l = NULL;
        r = store_collect_rows(s, st, revoked_from_row, revoked_free, "revoked token: invalid row", &l, ret_n);
        if (r >= 0)
                *ret = (StoreRevokedToken **) l;
        return r;
}

int store_revoked_token_prune(Store *s, usec_t now) {
        _cleanup_reset_ sqlite3_stmt *st = NULL;
        int r;

        r = store_require_transaction(s);
        if (r < 0)
                return r;
        r = store_prepare(s, STORE_STMT_REVOKED_PRUNE, "DELETE FROM revoked_tokens WHERE exp <= ?1", &st);
        if (r < 0)
                return r;
        if (sqlite3_bind_int64(st, 1, now) != SQLITE_OK)
                return store_bind_error(s);
        r = store_step_done(s, st);
        if (r < 0)
                return r;
        return sqlite3_changes(s->db);
}

StoreRevokedToken *store_revoked_token_free(StoreRevokedToken *t) {
        if (!t)
                return NULL;
        free(t->jti);
        free(t->keyring);
        free(t->reason);
        free(t);
        return NULL;
}

void store_revoked_token_list_free(StoreRevokedToken **l) {
        store_list_free((void **) l, revoked_free);
}
