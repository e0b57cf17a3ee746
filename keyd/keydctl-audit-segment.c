/* SPDX-License-Identifier: MIT */
/* keydctl: audit segment files, written by keydctl audit export and checked by keydctl audit verify --segment without
 * keyd's database: every record's hash recomputed over the chain, and the checkpoint that seals the segment verified
 * with the public key of the kid it names.
 *
 * A segment is JSON Lines: a header {"format": "keyd-audit-segment", "version": 1, "first", "last", "prev_hash",
 * "checkpoint_seq", "exported_at"}; the records first..checkpoint_seq, each {"seq", "time" (µs, as hashed), "uid",
 * "pid", "comm", "action", "keyring", "kid", "result", "detail", "prev_hash", "hash"} (the records after last are only
 * the path to the checkpoint: the next segment has them too); and {"checkpoint": {"seq", "hash", "time" (seconds, as
 * signed), "kid", "jws", "jwk"}}. hash = SHA-256(prev_hash as 32 bytes ‖ the record without prev_hash and hash as
 * compact JSON with sorted keys, detail included as JSON): store_audit_canonical(). */
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/hex.h"
#include "jose/jwk.h"
#include "jose/jws.h"
#include "keyd/keydctl-internal.h"
#include "rotation/policy.h"
#include "store/store.h"

#define SEGMENT_LINE_MAX ((size_t) 1 << 20)

_printf_(3, 4) static int fail(char *why, size_t size, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        (void) vsnprintf(why, size, fmt, ap);
        va_end(ap);
        return KEYDCTL_ERR_NEGATIVE;
}

static bool hash_hex(const char *s) {
        return s && strlen(s) == STORE_HASH_HEX && strspn(s, "0123456789abcdef") == STORE_HASH_HEX;
}

int segment_record_from_api(const json_t *api, json_t **ret) {
        json_t *t = json_object_get(api, "time_us");
        if (!json_is_integer(t))
                return ctl_error(KEYDCTL_ERR_UNREACHABLE,
                                 "keyd's audit records have no \"time_us\" (a keyd before audit export?)");
        *ret = json_pack("{s:O, s:O, s:O, s:O, s:O, s:O, s:O, s:O, s:O, s:O, s:O, s:O}", "seq",
                         json_object_get(api, "seq") ?: json_null(), "time", t, "uid",
                         json_object_get(api, "uid") ?: json_null(), "pid", json_object_get(api, "pid") ?: json_null(),
                         "comm", json_object_get(api, "comm") ?: json_null(), "action",
                         json_object_get(api, "action") ?: json_null(), "keyring",
                         json_object_get(api, "keyring") ?: json_null(), "kid",
                         json_object_get(api, "kid") ?: json_null(), "result",
                         json_object_get(api, "result") ?: json_null(), "detail",
                         json_object_get(api, "detail") ?: json_null(), "prev_hash",
                         json_object_get(api, "prev_hash") ?: json_null(), "hash",
                         json_object_get(api, "hash") ?: json_null());
        return *ret ? 0 : OOM();
}

/* A string member that may be null: -1 when it is neither. */
static int opt_string(const json_t *o, const char *key, char **ret) {
        json_t *v = json_object_get(o, key);
        *ret = (char *) json_string_value(v);
        return v && !json_is_null(v) && !json_is_string(v) ? -1 : 0;
}

int segment_record_check(const json_t *rec, uint64_t seq, const char *prev, char ret_hash[STORE_HASH_HEX + 1],
                         char *why, size_t size) {
        _cleanup_free_ char *detail = NULL, *canonical = NULL;
        json_t *jd = json_object_get(rec, "detail");
        const char *stored_prev = json_str(rec, "prev_hash"), *hash = json_str(rec, "hash");
        StoreAudit a = { .seq = seq };
        uint8_t prev_raw[32], md[EVP_MAX_MD_SIZE];
        unsigned md_len = 0;
        size_t n;
        char got[STORE_HASH_HEX + 1];

        if (!json_is_object(rec) || json_integer_value(json_object_get(rec, "seq")) != (json_int_t) seq ||
            !json_is_integer(json_object_get(rec, "seq")))
                return fail(why, size, "record %" PRIu64 " is missing (a gap, or records out of order)", seq);
        if (!json_is_integer(json_object_get(rec, "time")) || !json_is_integer(json_object_get(rec, "uid")) ||
            !json_is_integer(json_object_get(rec, "pid")) || opt_string(rec, "comm", &a.comm) < 0 ||
            opt_string(rec, "action", &a.action) < 0 || opt_string(rec, "keyring", &a.keyring) < 0 ||
            opt_string(rec, "kid", &a.kid) < 0 || opt_string(rec, "result", &a.result) < 0 || !a.action ||
            !a.result || (jd && !json_is_null(jd) && !json_is_object(jd)) || !hash_hex(stored_prev) || !hash_hex(hash))
                return fail(why, size, "record %" PRIu64 " is not an audit record", seq);
        a.time = json_integer_value(json_object_get(rec, "time"));
        a.uid = json_integer_value(json_object_get(rec, "uid"));
        a.pid = json_integer_value(json_object_get(rec, "pid"));
        if (json_is_object(jd)) {
                detail = json_dumps(jd, JSON_COMPACT | JSON_SORT_KEYS);
                if (!detail)
                        return OOM();
                a.detail = detail;
        }
        if (!streq(stored_prev, prev))
                return fail(why, size, "record %" PRIu64 " does not follow record %" PRIu64 " (prev_hash %s, not %s)",
                            seq, seq - 1, stored_prev, prev);
        if (store_audit_canonical(&a, &canonical) < 0 || hex_decode(prev, prev_raw, sizeof prev_raw, &n) < 0 ||
            n != sizeof prev_raw)
                return fail(why, size, "record %" PRIu64 " cannot be read as keyd hashes it", seq);
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        bool ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
                  EVP_DigestUpdate(ctx, prev_raw, sizeof prev_raw) == 1 &&
                  EVP_DigestUpdate(ctx, canonical, strlen(canonical)) == 1 &&
                  EVP_DigestFinal_ex(ctx, md, &md_len) == 1 && md_len == 32;
        EVP_MD_CTX_free(ctx);
        if (!ok)
                return ctl_error(-EIO, "SHA-256 failed");
        hex_encode(md, 32, got, sizeof got);
        if (!streq(got, hash))
                return fail(why, size, "record %" PRIu64 " does not match its hash: it was changed", seq);
        memcpy(ret_hash, got, STORE_HASH_HEX + 1);
        return 0;
}

int segment_checkpoint_check(const json_t *cp, const json_t *jwk, const char *record_hash, char *why, size_t size) {
        _cleanup_json_ json_t *claims = NULL;
        const char *kid = json_str(cp, "kid"), *compact = json_str(cp, "jws"), *alg_name = json_str(jwk, "alg");
        json_t *seq = json_object_get(cp, "seq");
        char tp[JOSE_THUMBPRINT_LEN + 1];
        EVP_PKEY *pkey = NULL;
        JoseJws *jws = NULL;
        KeydAlg alg = alg_name ? keyd_alg_from_string(alg_name) : _KEYD_ALG_INVALID;
        int r = 0;

        if (!kid || !compact || !json_is_integer(seq))
                return fail(why, size, "the checkpoint has no kid, jws or seq");
        if (!streq_ptr(json_str(cp, "hash"), record_hash))
                return fail(why, size, "record %" JSON_INTEGER_FORMAT " does not match the checkpoint",
                            json_integer_value(seq));
        if (jose_jwk_thumbprint(jwk, tp) < 0 || !streq(tp, kid))
                return fail(why, size, "the public key given for %s has another thumbprint", kid);
        if (alg < 0 || jose_jwk_to_pkey(jwk, &pkey) < 0)
                return fail(why, size, "the public key of %s cannot be read (or names no alg keyd uses)", kid);
        if (jose_jws_parse(compact, strlen(compact), &jws) != JOSE_OK)
                r = fail(why, size, "the checkpoint is not a JWS keyd signs");
        else if (!streq_ptr(json_string_value(json_object_get(jws->header, "typ")), KEYD_TYP_AUDIT_CHECKPOINT))
                r = fail(why, size, "the checkpoint's typ is not " KEYD_TYP_AUDIT_CHECKPOINT);
        else if (!streq_ptr(jws->kid, kid))
                r = fail(why, size, "the checkpoint is signed by %s, not %s", jws->kid ?: "(none)", kid);
        else if (jose_jws_verify(jws, pkey, alg) != JOSE_OK || jose_jws_claims(jws, &claims) != JOSE_OK)
                r = fail(why, size, "the checkpoint's signature does not verify with the key of %s", kid);
        else if (!json_equal(json_object_get(claims, "seq"), seq) ||
                 !streq_ptr(json_string_value(json_object_get(claims, "hash")), record_hash) ||
                 !json_equal(json_object_get(claims, "time"), json_object_get(cp, "time")))
                r = fail(why, size, "the checkpoint's signed content is not its seq, hash and time");
        jose_jws_free(jws);
        EVP_PKEY_free(pkey);
        return r;
}

void segment_done(Segment *s) {
        free(s->kid);
        json_decref(s->jwk);
        *s = (Segment){ 0 };
}

/* Read the next line of f into *line (a JSON object, parsed): 1, 0 at the end, or a failure in s->message. */
static int next_line(FILE *f, char **buf, size_t *size, unsigned long *n, json_t **line, Segment *s) {
        for (;;) {
                errno = 0;
                ssize_t len = getline(buf, size, f);
                if (len < 0)
                        return errno ? ctl_error(negative_errno(), "cannot read %s: %m", s->path) : 0;
                ++*n;
                if (strspn(*buf, " \t\r\n") == (size_t) len)
                        continue;
                if ((size_t) len > SEGMENT_LINE_MAX)
                        return fail(s->message, sizeof s->message, "line %lu is longer than 1 MiB", *n);
                *line = json_loadb(*buf, (size_t) len, JSON_REJECT_DUPLICATES, NULL);
                if (!json_is_object(*line)) {
                        json_decref(*line);
                        *line = NULL;
                        return fail(s->message, sizeof s->message, "line %lu is not a JSON object", *n);
                }
                return 1;
        }
}

int segment_check(const char *path, SegmentKeyLookup lookup, void *userdata, Segment *s) {
        _cleanup_free_ char *buf = NULL;
        _cleanup_json_ json_t *header = NULL, *cp = NULL, *jwk = NULL;
        char prev[STORE_HASH_HEX + 1], cp_hash[STORE_HASH_HEX + 1] = "";
        unsigned long n = 0;
        size_t size = 0;
        uint64_t seq;
        FILE *f;
        int r;

        *s = (Segment){ .path = path };
        f = fopen(path, "re");
        if (!f)
                return ctl_error(negative_errno(), "cannot open %s: %m", path);
        r = next_line(f, &buf, &size, &n, &header, s);
        if (r == 0)
                r = fail(s->message, sizeof s->message, "empty: not a segment");
        json_t *first = json_object_get(header, "first"), *last = json_object_get(header, "last"),
               *cps = json_object_get(header, "checkpoint_seq");
        if (r > 0 && (!streq_ptr(json_str(header, "format"), "keyd-audit-segment") ||
                      json_integer_value(json_object_get(header, "version")) != 1 || !json_is_integer(first) ||
                      !json_is_integer(last) || !json_is_integer(cps) || json_integer_value(first) < 1 ||
                      json_integer_value(last) < json_integer_value(first) ||
                      json_integer_value(cps) < json_integer_value(last) ||
                      !hash_hex(json_str(header, "prev_hash"))))
                r = fail(s->message, sizeof s->message, "line 1 is not the header of a keyd audit segment (version 1)");
        if (r > 0) {
                s->first = (uint64_t) json_integer_value(first);
                s->last = (uint64_t) json_integer_value(last);
                s->checkpoint_seq = (uint64_t) json_integer_value(cps);
                memcpy(prev, json_str(header, "prev_hash"), sizeof prev);
                memcpy(s->prev_hash, prev, sizeof prev);
        }
        /* The records first..checkpoint_seq, each following the one before. */
        for (seq = s->first; r > 0 && seq <= s->checkpoint_seq; seq++) {
                _cleanup_json_ json_t *rec = NULL;
                r = next_line(f, &buf, &size, &n, &rec, s);
                if (r == 0)
                        r = fail(s->message, sizeof s->message, "it ends before record %" PRIu64, seq);
                if (r > 0)
                        r = segment_record_check(rec, seq, prev, prev, s->message, sizeof s->message);
                if (r == 0) {
                        r = 1;
                        if (seq == s->last)
                                memcpy(s->last_hash, prev, sizeof prev);
                }
        }
        if (r > 0) {
                memcpy(cp_hash, prev, sizeof cp_hash);
                r = next_line(f, &buf, &size, &n, &cp, s);
                if (r == 0)
                        r = fail(s->message, sizeof s->message, "it ends without the checkpoint that seals it");
        }
        json_t *c = json_object_get(cp, "checkpoint");
        if (r > 0 && (!json_is_object(c) || json_integer_value(json_object_get(c, "seq")) !=
                                                    (json_int_t) s->checkpoint_seq))
                r = fail(s->message, sizeof s->message, "line %lu is not the checkpoint of record %" PRIu64, n,
                         s->checkpoint_seq);
        if (r > 0) {
                _cleanup_json_ json_t *extra = NULL;
                r = next_line(f, &buf, &size, &n, &extra, s);
                if (r > 0)
                        r = fail(s->message, sizeof s->message, "line %lu follows the checkpoint", n);
                else if (r == 0)
                        r = 1;
        }
        fclose(f);
        if (r <= 0)
                return r < 0 ? r : 0;

        /* The checkpoint, with the key its kid names where the caller trusts keys (a JWKS, keyd): never only with
         * the one the segment carries itself. */
        s->kid = strdup(json_str(c, "kid") ?: "");
        s->jwk = json_incref(json_object_get(c, "jwk"));
        if (!s->kid)
                return OOM();
        jwk = lookup(s->kid, userdata, s->message, sizeof s->message);
        if (!jwk)
                return KEYDCTL_ERR_NEGATIVE;
        if (s->jwk) {
                char a[JOSE_THUMBPRINT_LEN + 1], b[JOSE_THUMBPRINT_LEN + 1];
                if (jose_jwk_thumbprint(s->jwk, a) < 0 || jose_jwk_thumbprint(jwk, b) < 0 || !streq(a, b))
                        return fail(s->message, sizeof s->message,
                                    "the key the segment carries is not the key of %s", s->kid);
        }
        return segment_checkpoint_check(c, jwk, cp_hash, s->message, sizeof s->message);
}

/* ---- writing ---- */

struct SegmentWriter {
        char *path, *tmp;
        FILE *f;
        EVP_MD_CTX *sha;
};

int segment_writer_open(const char *path, SegmentWriter **ret) {
        SegmentWriter *w = calloc(1, sizeof *w);
        struct stat st;
        int fd;

        if (!w)
                return OOM();
        if (lstat(path, &st) >= 0) {
                free(w);
                return ctl_error(-EEXIST, "%s exists: keydctl does not overwrite a segment", path);
        }
        w->path = strdup(path);
        w->sha = EVP_MD_CTX_new();
        if (!w->path || !w->sha || asprintf(&w->tmp, "%s.tmp-%d", path, (int) getpid()) < 0 ||
            EVP_DigestInit_ex(w->sha, EVP_sha256(), NULL) != 1) {
                segment_writer_abort(w);
                return OOM();
        }
        fd = open(w->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0 || !(w->f = fdopen(fd, "w"))) {
                int r = ctl_error(negative_errno(), "cannot create %s: %m", w->tmp);
                if (fd >= 0)
                        close(fd);
                free(w->tmp);
                w->tmp = NULL;
                segment_writer_abort(w);
                return r;
        }
        *ret = w;
        return 0;
}

int segment_writer_line(SegmentWriter *w, const json_t *o) {
        _cleanup_free_ char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (!text)
                return OOM();
        size_t n = strlen(text);
        if (fwrite(text, 1, n, w->f) != n || fputc('\n', w->f) == EOF)
                return ctl_error(-EIO, "cannot write %s", w->tmp);
        if (EVP_DigestUpdate(w->sha, text, n) != 1 || EVP_DigestUpdate(w->sha, "\n", 1) != 1)
                return ctl_error(-EIO, "SHA-256 failed");
        return 0;
}

int segment_writer_commit(SegmentWriter *w, char sha256[STORE_HASH_HEX + 1]) {
        uint8_t md[EVP_MAX_MD_SIZE];
        unsigned md_len = 0;
        int r = 0, dfd;

        if (EVP_DigestFinal_ex(w->sha, md, &md_len) != 1 || md_len != 32)
                r = ctl_error(-EIO, "SHA-256 failed");
        if (r >= 0 && (fflush(w->f) != 0 || fsync(fileno(w->f)) < 0))
                r = ctl_error(negative_errno(), "cannot write %s: %m", w->tmp);
        if (w->f && fclose(w->f) != 0 && r >= 0)
                r = ctl_error(negative_errno(), "cannot write %s: %m", w->tmp);
        w->f = NULL;
        /* link(): never over a file that appeared meanwhile. */
        if (r >= 0 && link(w->tmp, w->path) < 0)
                r = ctl_error(negative_errno(), "cannot create %s: %m", w->path);
        if (r >= 0) {
                char *dir = strdup(w->path);
                dfd = dir ? open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
                if (dfd >= 0) {
                        (void) fsync(dfd);
                        close(dfd);
                }
                free(dir);
                hex_encode(md, 32, sha256, STORE_HASH_HEX + 1);
        }
        segment_writer_abort(w);
        return r;
}

void segment_writer_abort(SegmentWriter *w) {
        if (!w)
                return;
        if (w->f)
                fclose(w->f);
        if (w->tmp)
                (void) unlink(w->tmp);
        EVP_MD_CTX_free(w->sha);
        free(w->tmp);
        free(w->path);
        free(w);
}
