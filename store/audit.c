/* SPDX-License-Identifier: MIT */
/* The audit chain: every record carries the hash of the one before it, so that a changed, removed or inserted record
 * breaks the chain at that point; checkpoints sign the head so that a cut tail is found too. */
#include <inttypes.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>

#include "common/crypto-util.h"
#include "common/hex.h"
#include "common/utf8.h"
#include "store/store-internal.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(StoreAudit *, store_audit_free);

#define AUDIT_COLUMNS STORE_AUDIT_COLUMNS

int store_hash_parse(const char *hex, uint8_t ret[STORE_HASH_LEN]) {
        size_t n;

        /* hex_decode() takes upper case digits too: the chain's hashes are lower case only. */
        if (!hex || strlen(hex) != STORE_HASH_HEX || strspn(hex, "0123456789abcdef") != STORE_HASH_HEX ||
            hex_decode(hex, ret, STORE_HASH_LEN, &n) < 0)
                return -EBADMSG;
        return 0;
}

static json_t *string_or_null(const char *s) {
        return s ? json_string(s) : json_null(); /* NULL: not UTF-8, or out of memory */
}

/* json_dumps() into a buffer of our own: jansson (2.14) ignores a failure to write an object's key and goes on, so
 * its json_dumps() can return a text with a key missing when memory runs out. A hash over such a text would be
 * committed and never verify. Here any failure to append sticks and fails the whole text. */
typedef struct DumpBuffer {
        char *text;
        size_t len, size;
        bool failed;
} DumpBuffer;

static int dump_append(const char *buf, size_t n, void *userdata) {
        DumpBuffer *b = userdata;

        if (b->failed)
                return -1;
        if (n > b->size - b->len) {
                size_t size = MAX(b->size * 2, b->len + n + 256);
                char *t = realloc(b->text, size);
                if (!t) {
                        b->failed = true;
                        return -1;
                }
                b->text = t;
                b->size = size;
        }
        memcpy(b->text + b->len, buf, n);
        b->len += n;
        return 0;
}

int store_audit_detail_dump(const json_t *detail, char **ret) {
        DumpBuffer b = { 0 };

        if (!json_is_object(detail) || !ret)
                return -EINVAL;
        if (json_dump_callback(detail, dump_append, &b, JSON_COMPACT | JSON_SORT_KEYS) < 0 || b.failed ||
            dump_append("", 1, &b) < 0) {
                free(b.text);
                return -ENOMEM;
        }
        *ret = b.text;
        return 0;
}

/* A string as jansson's json_dump_callback() writes it (without JSON_ENSURE_ASCII or JSON_ESCAPE_SLASH): '"', '\\' and
 * the control characters escaped, all else (valid UTF-8) as it is; null for NULL. -EINVAL if s is not UTF-8 (jansson
 * refuses it too). */
static int put_string(DumpBuffer *b, const char *s) {
        const char *run;
        size_t n;

        if (!s)
                return dump_append("null", 4, b);
        n = strlen(s);
        if (!utf8_valid(s, n))
                return -EINVAL;
        (void) dump_append("\"", 1, b);
        run = s;
        for (const char *p = s; *p; p++) {
                unsigned char c = (unsigned char) *p;
                char esc[8];
                const char *t = esc;

                if (c != '"' && c != '\\' && c >= 0x20)
                        continue;
                (void) dump_append(run, (size_t) (p - run), b);
                switch (c) {
                case '"':
                        t = "\\\"";
                        break;
                case '\\':
                        t = "\\\\";
                        break;
                case '\b':
                        t = "\\b";
                        break;
                case '\f':
                        t = "\\f";
                        break;
                case '\n':
                        t = "\\n";
                        break;
                case '\r':
                        t = "\\r";
                        break;
                case '\t':
                        t = "\\t";
                        break;
                default:
                        snprintf(esc, sizeof esc, "\\u%04X", c); /* as jansson writes it: upper case */
                }
                (void) dump_append(t, strlen(t), b);
                run = p + 1;
        }
        (void) dump_append(run, (size_t) (s + n - run), b);
        return dump_append("\"", 1, b);
}

static int put_member(DumpBuffer *b, const char *name_and_colon, const char *s) {
        int r = dump_append(name_and_colon, strlen(name_and_colon), b);
        return r < 0 ? r : put_string(b, s);
}

static int put_integer(DumpBuffer *b, const char *name_and_colon, int64_t v) {
        char buf[64];
        int n = snprintf(buf, sizeof buf, "%s%" PRId64, name_and_colon, v);
        return dump_append(buf, (size_t) n, b);
}

/* store_audit_canonical() of a record whose detail is canonical already (detail_canonical): the same text, written
 * directly (members in sorted order, as JSON_SORT_KEYS has them) with the detail as it is. */
static int canonical_direct(const StoreAudit *rec, char **ret) {
        DumpBuffer b = { 0 };
        int r;

        if ((r = put_member(&b, "{\"action\":", rec->action)) < 0 ||
            (r = put_member(&b, ",\"comm\":", rec->comm)) < 0 || (r = dump_append(",\"detail\":", 10, &b)) < 0 ||
            (r = dump_append(rec->detail, strlen(rec->detail), &b)) < 0 ||
            (r = put_member(&b, ",\"keyring\":", rec->keyring)) < 0 ||
            (r = put_member(&b, ",\"kid\":", rec->kid)) < 0 || (r = put_integer(&b, ",\"pid\":", rec->pid)) < 0 ||
            (r = put_member(&b, ",\"result\":", rec->result)) < 0 ||
            (r = put_integer(&b, ",\"seq\":", (int64_t) rec->seq)) < 0 ||
            (r = put_integer(&b, ",\"time\":", (int64_t) rec->time)) < 0 ||
            (r = put_integer(&b, ",\"uid\":", rec->uid)) < 0 || (r = dump_append("}", 2, &b)) < 0) {
                free(b.text);
                return r == -EINVAL ? -EINVAL : -ENOMEM;
        }
        *ret = b.text;
        return 0;
}

int store_audit_canonical(const StoreAudit *rec, char **ret) {
        _cleanup_json_ json_t *o = NULL;
        json_t *detail;

        if (!rec || !ret || rec->seq > INT64_MAX)
                return -EINVAL;
        if (rec->detail && rec->detail_canonical && rec->detail[0] == '{')
                return canonical_direct(rec, ret);
        if (rec->detail) {
                detail = json_loads(rec->detail, JSON_REJECT_DUPLICATES, NULL);
                if (!json_is_object(detail)) {
                        json_decref(detail);
                        return -EINVAL;
                }
        } else
                detail = json_null();

        /* json_object_set_new() takes the value's reference even when it fails, and fails on a NULL value. */
        o = json_object();
        if (!o || json_object_set_new(o, "detail", detail) < 0 ||
            json_object_set_new(o, "seq", json_integer((json_int_t) rec->seq)) < 0 ||
            json_object_set_new(o, "time", json_integer(rec->time)) < 0 ||
            json_object_set_new(o, "uid", json_integer(rec->uid)) < 0 ||
            json_object_set_new(o, "pid", json_integer(rec->pid)) < 0 ||
            json_object_set_new(o, "comm", string_or_null(rec->comm)) < 0 ||
            json_object_set_new(o, "action", string_or_null(rec->action)) < 0 ||
            json_object_set_new(o, "keyring", string_or_null(rec->keyring)) < 0 ||
            json_object_set_new(o, "kid", string_or_null(rec->kid)) < 0 ||
            json_object_set_new(o, "result", string_or_null(rec->result)) < 0) {
                if (!o)
                        json_decref(detail);
                return -EINVAL;
        }

        DumpBuffer b = { 0 };
        if (json_dump_callback(o, dump_append, &b, JSON_COMPACT | JSON_SORT_KEYS) < 0 || b.failed ||
            dump_append("", 1, &b) < 0) {
                free(b.text);
                return -ENOMEM;
        }
        *ret = b.text;
        return 0;
}

/* hash = hex(SHA-256(prev_hash as 32 bytes ‖ canonical)). */
static int audit_hash(const StoreAudit *rec, const char *prev_hash, char ret[STORE_HASH_HEX + 1]) {
        _cleanup_free_ char *canonical = NULL;
        uint8_t prev[STORE_HASH_LEN], md[EVP_MAX_MD_SIZE];
        unsigned md_len = 0;
        int r;

        r = store_hash_parse(prev_hash, prev);
        if (r < 0)
                return r;
        r = store_audit_canonical(rec, &canonical);
        if (r < 0)
                return r;

        _cleanup_(EVP_MD_CTX_freep) EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1 || EVP_DigestUpdate(ctx, prev, sizeof prev) != 1 ||
            EVP_DigestUpdate(ctx, canonical, strlen(canonical)) != 1 || EVP_DigestFinal_ex(ctx, md, &md_len) != 1 ||
            md_len != STORE_HASH_LEN)
                return -EIO;
        hex_encode(md, STORE_HASH_LEN, ret, STORE_HASH_HEX + 1);
        return 0;
}

/* Hand a chain head to the caller: either output may be NULL. */
static int head_return(uint64_t seq, const char hash[STORE_HASH_HEX + 1], uint64_t *ret_seq,
                       char ret_hash[STORE_HASH_HEX + 1]) {
        if (ret_seq)
                *ret_seq = seq;
        if (ret_hash)
                memcpy(ret_hash, hash, STORE_HASH_HEX + 1);
        return 0;
}

int store_audit_head(Store *s, uint64_t *ret_seq, char ret_hash[STORE_HASH_HEX + 1]) {
        _cleanup_reset_ sqlite3_stmt *st = NULL;
        char hash[STORE_HASH_HEX + 1];
        uint64_t seq = 0;
        int r, rc;

        if (!s)
                return -EINVAL;
        r = store_prepare(s, STORE_STMT_AUDIT_HEAD, "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", &st);
        if (r < 0)
                return r;
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
                if (store_column_strcpy(st, 1, hash, sizeof hash) < 0 || sqlite3_column_int64(st, 0) <= 0)
                        return store_error_msg(s, -EBADMSG, "audit: invalid head record");
                seq = (uint64_t) sqlite3_column_int64(st, 0);
        } else if (rc == SQLITE_DONE) {
                /* No record: the head is where the chain was pruned to (the empty chain's without a prune). */
                StoreAuditAnchor anchor;
                r = store_audit_anchor(s, &anchor);
                if (r < 0)
                        return r;
                seq = anchor.seq;
                memcpy(hash, anchor.hash, sizeof hash);
                store_audit_anchor_done(&anchor);
        } else
                return store_error(s, rc);
        return head_return(seq, hash, ret_seq, ret_hash);
}

int store_audit_append(Store *s, StoreAudit *rec) {
        _cleanup_reset_ sqlite3_stmt *st = NULL;
        StoreAudit a;
        int r;

        r = store_require_transaction(s);
        if (r < 0)
                return r;
        if (!rec || !rec->action || !rec->result)
                return store_error_msg(s, -EINVAL, "audit: missing action or result");

        a = *rec;
        r = store_audit_head(s, &a.seq, a.prev_hash);
        if (r < 0)
                return r;
        a.seq++;
        r = audit_hash(&a, a.prev_hash, a.hash);
        if (r < 0)
                return store_error_msg(s, r, "audit: detail is not a JSON object, or a field is not UTF-8");

        r = store_prepare(s, STORE_STMT_AUDIT_INSERT,
                          "INSERT INTO audit (" AUDIT_COLUMNS
                          ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                          &st);
        if (r < 0)
                return r;
        if (sqlite3_bind_int64(st, 1, (sqlite3_int64) a.seq) != SQLITE_OK ||
            sqlite3_bind_int64(st, 2, a.time) != SQLITE_OK || sqlite3_bind_int64(st, 3, a.uid) != SQLITE_OK ||
            sqlite3_bind_int64(st, 4, a.pid) != SQLITE_OK ||
            sqlite3_bind_text(st, 5, a.comm, -1, SQLITE_STATIC) != SQLITE_OK ||
            sqlite3_bind_text(st, 6, a.action, -1, SQLITE_STATIC) != SQLITE_OK ||
            sqlite3_bind_text(st, 7, a.keyring, -1, SQLITE_STATIC) != SQLITE_OK ||
            sqlite3_bind_text(st, 8, a.kid, -1, SQLITE_STATIC) != SQLITE_OK ||
            sqlite3_bind_text(st, 9, a.result, -1, SQLITE_STATIC) != SQLITE_OK ||
            sqlite3_bind_text(st, 10, a.detail, -1, SQLITE_STATIC) != SQLITE_OK ||
            sqlite3_bind_text(st, 11, a.prev_hash, -1, SQLITE_STATIC) != SQLITE_OK ||
            sqlite3_bind_text(st, 12, a.hash, -1, SQLITE_STATIC) != SQLITE_OK)
                return store_bind_error(s);
        r = store_step_done(s, st);
        if (r < 0)
                return r;

        rec->seq = a.seq;
        memcpy(rec->prev_hash, a.prev_hash, sizeof rec->prev_hash);
        memcpy(rec->hash, a.hash, sizeof rec->hash);
        return 0;
}

int store_audit_from_row(sqlite3_stmt *st, void **ret) {
        _cleanup_(store_audit_freep) StoreAudit *a = calloc(1, sizeof(StoreAudit));
        int r;

        if (!a)
                return -ENOMEM;
        if ((r = store_column_strdup(st, 4, true, &a->comm)) < 0 ||
            (r = store_column_strdup(st, 5, false, &a->action)) < 0 ||
            (r = store_column_strdup(st, 6, true, &a->keyring)) < 0 ||
            (r = store_column_strdup(st, 7, true, &a->kid)) < 0 ||
            (r = store_column_strdup(st, 8, false, &a->result)) < 0 ||
            (r = store_column_strdup(st, 9, true, &a->detail)) < 0 ||
            (r = store_column_strcpy(st, 10, a->prev_hash, sizeof a->prev_hash)) < 0 ||
            (r = store_column_strcpy(st, 11, a->hash, sizeof a->hash)) < 0)
                return r;
        a->seq = (uint64_t) sqlite3_column_int64(st, 0);
        a->time = sqlite3_column_int64(st, 1);
        a->uid = sqlite3_column_int64(st, 2);
        a->pid = sqlite3_column_int64(st, 3);
        *ret = TAKE_PTR(a);
        return 0;
}

void store_audit_free_item(void *a) {
        store_audit_free(a);
}

int store_audit_list(Store *s, uint64_t after, size_t limit, StoreAudit ***ret, size_t *ret_n) {
        _cleanup_reset_ sqlite3_stmt *st = NULL;
        int r;

        if (!s || !ret)
                return -EINVAL;
        r = store_prepare_page(s, STORE_STMT_AUDIT_LIST,
                               "SELECT " AUDIT_COLUMNS " FROM audit WHERE seq > ?1 ORDER BY seq LIMIT ?2", after, limit,
                               &st);
        if (r < 0)
                return r;
        void **l = NULL;
        r = store_collect_rows(s, st, store_audit_from_row, store_audit_free_item, "audit: invalid row", &l, ret_n);
        if (r >= 0)
                *ret = (StoreAudit **) l;
        return r;
}

/* A text column without a copy, valid until the next step: NULL for NULL. */
static int column_text(sqlite3_stmt *st, int col, char **ret) {
        const unsigned char *t = sqlite3_column_text(st, col);
        if (!t && sqlite3_column_type(st, col) != SQLITE_NULL)
                return -ENOMEM;
        *ret = (char *) t;
        return 0;
}

/* Whether the current row of the walk follows a record with seq expected - 1 and hash prev: 1 yes, 0 no. */
static int audit_row_matches(sqlite3_stmt *st, uint64_t expected, const char *prev) {
        char hash[STORE_HASH_HEX + 1], *stored_prev, *stored_hash;
        StoreAudit a = {
                .seq = (uint64_t) sqlite3_column_int64(st, 0),
                .time = sqlite3_column_int64(st, 1),
                .uid = sqlite3_column_int64(st, 2),
                .pid = sqlite3_column_int64(st, 3),
        };
        int r;

        if ((r = column_text(st, 4, &a.comm)) < 0 || (r = column_text(st, 5, &a.action)) < 0 ||
            (r = column_text(st, 6, &a.keyring)) < 0 || (r = column_text(st, 7, &a.kid)) < 0 ||
            (r = column_text(st, 8, &a.result)) < 0 || (r = column_text(st, 9, &a.detail)) < 0 ||
            (r = column_text(st, 10, &stored_prev)) < 0 || (r = column_text(st, 11, &stored_hash)) < 0)
                return r;
        if (a.seq != expected || !a.action || !a.result || !stored_prev || !stored_hash || !streq(stored_prev, prev))
                return 0;
        r = audit_hash(&a, prev, hash);
        if (r == -ENOMEM || r == -EIO)
                return r;
        return r >= 0 && streq(stored_hash, hash);
}

/* The walk from the anchor (seq after, hash prev), within the caller's snapshot. */
static int walk(Store *s, uint64_t after, char prev[STORE_HASH_HEX + 1], uint64_t until, StoreAuditVisit visit,
                void *userdata, uint64_t *ret_head_seq, char ret_head_hash[STORE_HASH_HEX + 1], uint64_t *ret_bad_seq) {
        _cleanup_reset_ sqlite3_stmt *st = NULL;
        uint64_t expected = after + 1;
        int r, rc;

        /* One statement is one read transaction: the walk sees one snapshot, however long it takes. */
        r = store_prepare(s, STORE_STMT_AUDIT_WALK,
                          "SELECT " AUDIT_COLUMNS " FROM audit WHERE seq <= ?1 ORDER BY seq", &st);
        if (r < 0)
                return r;
        if (sqlite3_bind_int64(st, 1, until > INT64_MAX ? INT64_MAX : (sqlite3_int64) until) != SQLITE_OK)
                return store_bind_error(s);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                r = audit_row_matches(st, expected, prev);
                if (r < 0)
                        return store_error_msg(s, r, "audit: out of memory or digest failure");
                if (r == 0) {
                        if (ret_bad_seq)
                                *ret_bad_seq = (uint64_t) sqlite3_column_int64(st, 0);
                        return store_error_msg(s, -EBADMSG, "audit: the chain is broken");
                }
                /* audit_row_matches() compared this hash with a computed one of exactly 64 characters. */
                memcpy(prev, sqlite3_column_text(st, 11), STORE_HASH_HEX + 1);
                if (visit) {
                        /* The texts stay valid until the next step. */
                        StoreAudit a = {
                                .seq = expected,
                                .time = sqlite3_column_int64(st, 1),
                                .uid = sqlite3_column_int64(st, 2),
                                .pid = sqlite3_column_int64(st, 3),
                        };
                        if ((r = column_text(st, 4, &a.comm)) < 0 || (r = column_text(st, 5, &a.action)) < 0 ||
                            (r = column_text(st, 6, &a.keyring)) < 0 || (r = column_text(st, 7, &a.kid)) < 0 ||
                            (r = column_text(st, 8, &a.result)) < 0 || (r = column_text(st, 9, &a.detail)) < 0)
                                return store_error_msg(s, r, "audit: out of memory");
                        memcpy(a.prev_hash, sqlite3_column_text(st, 10), sizeof a.prev_hash);
                        memcpy(a.hash, prev, sizeof a.hash);
                        r = visit(&a, userdata);
                        if (r < 0)
                                return r;
                }
                expected++;
        }
        if (rc != SQLITE_DONE)
                return store_error(s, rc);
        return head_return(expected - 1, prev, ret_head_seq, ret_head_hash);
}

int store_audit_walk_until(Store *s, uint64_t until, StoreAuditVisit visit, void *userdata, uint64_t *ret_head_seq,
                           char ret_head_hash[STORE_HASH_HEX + 1], uint64_t *ret_bad_seq) {
        StoreAuditAnchor anchor;
        int begun, r;

        if (!s)
                return -EINVAL;
        /* The anchor and the records in one snapshot: a prune in between would look like a gap. */
        begun = store_snapshot_begin(s);
        if (begun < 0)
                return begun;
        r = store_audit_anchor(s, &anchor);
        if (r >= 0) {
                /* A first record that does not follow the anchor is named as the one that does not match. */
                r = walk(s, anchor.seq, anchor.hash, until, visit, userdata, ret_head_seq, ret_head_hash, ret_bad_seq);
                store_audit_anchor_done(&anchor);
        }
        store_snapshot_end(s, begun);
        return r;
}

int store_audit_walk(Store *s, StoreAuditVisit visit, void *userdata, uint64_t *ret_head_seq,
                     char ret_head_hash[STORE_HASH_HEX + 1], uint64_t *ret_bad_seq) {
        return store_audit_walk_until(s, UINT64_MAX, visit, userdata, ret_head_seq, ret_head_hash, ret_bad_seq);
}

int store_audit_verify(Store *s, uint64_t *ret_bad_seq) {
        return store_audit_walk(s, NULL, NULL, NULL, NULL, ret_bad_seq);
}

StoreAudit *store_audit_free(StoreAudit *a) {
        if (!a)
                return NULL;
        free(a->comm);
        free(a->action);
        free(a->keyring);
        free(a->kid);
        free(a->result);
        free(a->detail);
        free(a);
        return NULL;
}

void store_audit_list_free(StoreAudit **l) {
        store_list_free((void **) l, store_audit_free_item);
}
