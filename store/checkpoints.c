/* SPDX-License-Identifier: MIT */
/* Audit checkpoints: the chain head, signed by the caller with an issuer key, so that a cut tail is found. */
#include "store/store-internal.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(StoreCheckpoint *, store_checkpoint_free);

int store_checkpoint_insert(Store *s, uint64_t seq, const char *hash, usec_t time, const char *kid, const char *jws) {
        _cleanup_reset_ sqlite3_stmt *st = NULL;
        uint8_t raw[STORE_HASH_LEN];
        int r;

        r = store_require_transaction(s);
        if (r < 0)
                return r;
        if (seq == 0 || seq > INT64_MAX || store_hash_parse(hash, raw) < 0 || !kid || !jws)
                return store_error_msg(s, -EINVAL, "checkpoint: invalid seq or hash, or missing kid or jws");
        /* Checkpoints never go backwards: not to an earlier record, not to an earlier time. */
        uint64_t last = 0;
        r = store_checkpoint_latest(s, &last, NULL, NULL, NULL);
        if (r < 0 && r != -ENOENT)
                return r;
        if (r >= 0 && seq < last)
                return store_error_msg(s, -ERANGE, "checkpoint: before the latest checkpoint's record");
        if (r >= 0) {
                StoreCheckpoint **l = NULL;
                size_t n = 0;
                r = store_checkpoint_list(s, last - 1, 1, &l, &n);
                if (r < 0)
                        return r;
                bool earlier = n == 1 && time < l[0]->time;
                store_checkpoint_list_free(l);
                if (earlier)
                        return store_error_msg(s, -ERANGE, "checkpoint: before the latest checkpoint's time");
        }
        r = store_prepare(s, STORE_STMT_CHECKPOINT_INSERT,
                          "INSERT INTO audit_checkpoints (seq, hash, time, kid, signature) VALUES (?1, ?2, ?3, ?4, ?5)",
                          &st);
        if (r < 0)
                return r;
        if (sqlite3_bind_int64(st, 1, (sqlite3_int64) seq) != SQLITE_OK ||
            sqlite3_bind_text(st, 2, hash, -1, SQLITE_STATIC) != SQLITE_OK ||
            sqlite3_bind_int64(st, 3, time) != SQLITE_OK ||
            sqlite3_bind_text(st, 4, kid, -1, SQLITE_STATIC) != SQLITE_OK ||
            sqlite3_bind_text(st, 5, jws, -1, SQLITE_STATIC) != SQLITE_OK)
                return store_bind_error(s);
        return store_step_done(s, st);
}

int store_checkpoint_latest(Store *s, uint64_t *ret_seq, char **ret_hash, char **ret_kid, char **ret_jws) {
        _cleanup_reset_ sqlite3_stmt *st = NULL;
        _cleanup_free_ char *hash = NULL, *kid = NULL, *jws = NULL;
        int r, rc;

        if (!s)
                return -EINVAL;
        r = store_prepare(s, STORE_STMT_CHECKPOINT_LATEST,
                          "SELECT seq, hash, kid, signature FROM audit_checkpoints ORDER BY seq DESC LIMIT 1", &st);
        if (r < 0)
                return r;
        rc = sqlite3_step(st);
        if (rc == SQLITE_DONE)
                return store_error_msg(s, -ENOENT, "no checkpoint");
        if (rc != SQLITE_ROW)
                return store_error(s, rc);
        if ((r = store_column_strdup(st, 1, false, &hash)) < 0 || (r = store_column_strdup(st, 2, false, &kid)) < 0 ||
            (r = store_column_strdup(st, 3, false, &jws)) < 0)
                return store_error_msg(s, r, "checkpoint: invalid row");

        if (ret_seq)
                *ret_seq = (uint64_t) sqlite3_column_int64(st, 0);
        if (ret_hash)
                *ret_hash = TAKE_PTR(hash);
        if (ret_kid)
                *ret_kid = TAKE_PTR(kid);
        if (ret_jws)
                *ret_jws = TAKE_PTR(jws);
        return 0;
}

static int checkpoint_from_row(sqlite3_stmt *st, void **ret) {
        _cleanup_(store_checkpoint_freep) StoreCheckpoint *c = calloc(1, sizeof(StoreCheckpoint));
        int r;

        if (!c)
                return -ENOMEM;
        if ((r = store_column_strcpy(st, 1, c->hash, sizeof c->hash)) < 0 ||
            (r = store_column_strdup(st, 3, false, &c->kid)) < 0 ||
            (r = store_column_strdup(st, 4, false, &c->jws)) < 0)
                return r;
        c->seq = (uint64_t) sqlite3_column_int64(st, 0);
        c->time = sqlite3_column_int64(st, 2);
        *ret = TAKE_PTR(c);
        return 0;
}

/* store_checkpoint_free() for a list. */
static void checkpoint_free(void *c) {
        store_checkpoint_free(c);
}

int store_checkpoint_list(Store *s, uint64_t after, size_t limit, StoreCheckpoint ***ret, size_t *ret_n) {
        _cleanup_reset_ sqlite3_stmt *st = NULL;
        int r;

        if (!s || !ret)
                return -EINVAL;
        r = store_prepare_page(s, STORE_STMT_CHECKPOINT_LIST,
                               "SELECT seq, hash, time, kid, signature FROM audit_checkpoints WHERE seq > ?1 "
                               "ORDER BY seq LIMIT ?2",
                               after, limit, &st);
        if (r < 0)
                return r;
        void **l = NULL;
        r = store_collect_rows(s, st, checkpoint_from_row, checkpoint_free, "checkpoint: invalid row", &l, ret_n);
        if (r >= 0)
                *ret = (StoreCheckpoint **) l;
        return r;
}

StoreCheckpoint *store_checkpoint_free(StoreCheckpoint *c) {
        if (!c)
                return NULL;
        free(c->kid);
        free(c->jws);
        free(c);
        return NULL;
}

void store_checkpoint_list_free(StoreCheckpoint **l) {
        store_list_free((void **) l, checkpoint_free);
}
