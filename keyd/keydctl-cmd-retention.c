/* SPDX-License-Identifier: MIT */
/* keydctl: keeping the audit log for years. audit export writes the start of the log to a segment file sealed by a
 * signed checkpoint (keyd signs one if none covers the segment yet) and has keyd record it; audit prune removes what
 * exports sealed; audit verify --segment checks segments without keyd's database. */
#include <inttypes.h>
#include <stdio.h>

#include "keyd/keydctl-internal.h"
#include "store/store.h"

#define PAGE 1000

/* GET path: the reply, which must have a "records" list. */
static int get_page(Ctl *c, const char *path, json_t **ret) {
        int r = ctl_call(c, "GET", path, NULL, ret);
        if (r < 0)
                return r;
        if (!json_is_array(json_object_get(*ret, "records"))) {
                json_decref(*ret);
                *ret = NULL;
                return ctl_error(KEYDCTL_ERR_UNREACHABLE, "keyd's reply has no \"records\" list");
        }
        return 0;
}

static uint64_t seq_of(const json_t *rec) {
        json_int_t v = json_integer_value(json_object_get(rec, "seq"));
        return v > 0 ? (uint64_t) v : 0;
}

/* The first record kept (NULL: none) and the head, in *ret_page (the reply, which owns the record). */
static int log_start(Ctl *c, json_t **ret_page, const json_t **ret_first, uint64_t *ret_head) {
        int r = get_page(c, "/v1/audit?after=0&limit=1", ret_page);
        if (r < 0)
                return r;
        *ret_first = json_array_get(json_object_get(*ret_page, "records"), 0);
        *ret_head = (uint64_t) json_integer_value(json_object_get(*ret_page, "head"));
        return 0;
}

/* --before TIME: the seq of the first record at or after time t (keyd filters, a window at a time), or head + 1. */
static int seq_at_time(Ctl *c, int64_t t, uint64_t head, uint64_t *ret) {
        uint64_t after = 0;
        for (;;) {
                _cleanup_json_ json_t *page = NULL;
                char path[128];
                (void) snprintf(path, sizeof path, "/v1/audit?after=%" PRIu64 "&limit=1&since=%" PRId64, after, t);
                int r = get_page(c, path, &page);
                if (r < 0)
                        return r;
                json_t *rec = json_array_get(json_object_get(page, "records"), 0);
                if (rec) {
                        *ret = seq_of(rec);
                        return 0;
                }
                if (!json_is_true(json_object_get(page, "more"))) {
                        *ret = head + 1;
                        return 0;
                }
                after = (uint64_t) json_integer_value(json_object_get(page, "next"));
        }
}

/* Records first..cp (cp's checkpoint is ckpt) into the writer, each checked against the one before: the hash of
 * record last into last_hash. */
static int write_records(Ctl *c, SegmentWriter *w, uint64_t first, uint64_t last, uint64_t cp, char *prev,
                         char last_hash[65], char cp_hash[65]) {
        uint64_t after = first - 1, seq = first;
        char why[512];

        while (seq <= cp) {
                _cleanup_json_ json_t *page = NULL;
                char path[128];
                (void) snprintf(path, sizeof path, "/v1/audit?after=%" PRIu64 "&limit=%d&before=%" PRIu64, after, PAGE,
                                cp + 1);
                int r = get_page(c, path, &page);
                if (r < 0)
                        return r;
                json_t *recs = json_object_get(page, "records"), *rec;
                size_t i;
                if (json_array_size(recs) == 0)
                        return ctl_error(KEYDCTL_ERR_NEGATIVE, "record %" PRIu64 " is missing from keyd's log", seq);
                json_array_foreach(recs, i, rec) {
                        _cleanup_json_ json_t *line = NULL;
                        r = segment_record_from_api(rec, &line);
                        if (r < 0)
                                return r;
                        r = segment_record_check(line, seq, prev, prev, why, sizeof why);
                        if (r == KEYDCTL_ERR_NEGATIVE)
                                return ctl_error(r, "keyd's log does not verify: %s; nothing exported", why);
                        if (r >= 0)
                                r = segment_writer_line(w, line);
                        if (r < 0)
                                return r;
                        if (seq == last)
                                memcpy(last_hash, prev, 65);
                        seq++;
                }
                after = seq - 1;
        }
        memcpy(cp_hash, prev, 65);
        return 0;
}

int verb_audit_export(Ctl *c, const Verb *v, int argc, char **argv) {
        _cleanup_json_ json_t *start = NULL, *sealed = NULL, *header = NULL, *trailer = NULL, *body = NULL,
                              *reply = NULL;
        const char *before_arg = NULL, *path;
        const json_t *first_rec;
        char prev[65], last_hash[65] = "", cp_hash[65] = "", sha256[65], why[512], when[32];
        uint64_t head, first, before, last;
        SegmentWriter *w = NULL;
        int r;

        r = ctl_parse_value(c, v, argc, argv, "before", &before_arg, 1, 1);
        if (r != CTL_PARSED)
                return r > 0 ? 0 : r;
        path = argv[optind];
        if (!before_arg)
                return ctl_error(KEYDCTL_ERR_USAGE, "--before SEQ|TIME is required");

        r = log_start(c, &start, &first_rec, &head);
        if (r < 0)
                return r;
        first = seq_of(first_rec);
        if (*before_arg && strspn(before_arg, "0123456789") == strlen(before_arg)) {
                r = ctl_parse_number("--before", before_arg, 1, INT64_MAX, &before);
                if (r < 0)
                        return r;
        } else {
                int64_t t;
                r = parse_time_or_ago("--before", before_arg, (int64_t) (now_realtime() / USEC_PER_SEC), &t);
                if (r >= 0)
                        r = seq_at_time(c, t, head, &before);
                if (r < 0)
                        return r;
        }
        if (!first_rec || before <= first) {
                printf("Nothing to export: the log starts at record %" PRIu64 ".\n", first ?: head + 1);
                return 0;
        }
        if (before > head + 1)
                return ctl_error(KEYDCTL_ERR_USAGE, "--before %" PRIu64 ": the log ends at record %" PRIu64, before,
                                 head);
        last = before - 1;
        if (!json_str(first_rec, "prev_hash"))
                return ctl_error(KEYDCTL_ERR_UNREACHABLE, "keyd's record %" PRIu64 " has no prev_hash", first);
        (void) snprintf(prev, sizeof prev, "%s", json_str(first_rec, "prev_hash"));

        /* The checkpoint that seals the segment: at or after its last record (keyd signs the head if none is). */
        body = json_pack("{s:I}", "at_least", (json_int_t) last);
        if (!body)
                return OOM();
        r = ctl_call(c, "POST", "/v1/audit/checkpoints", body, &sealed);
        if (r < 0)
                return r;
        json_t *cp = json_object_get(sealed, "checkpoint"), *jwk = json_object_get(json_object_get(cp, "key"), "jwk");
        json_int_t cps = json_integer_value(json_object_get(cp, "seq"));
        if (!json_is_object(cp) || cps < (json_int_t) last || !json_is_object(jwk))
                return ctl_error(KEYDCTL_ERR_UNREACHABLE, "keyd's checkpoint reply is not one");

        header = json_pack("{s:s, s:i, s:I, s:I, s:s, s:I, s:s}", "format", "keyd-audit-segment", "version", 1, "first",
                           (json_int_t) first, "last", (json_int_t) last, "prev_hash", prev, "checkpoint_seq", cps,
                           "exported_at", format_time(when, sizeof when, now_realtime() / USEC_PER_SEC));
        trailer = json_pack("{s:{s:I, s:O, s:O, s:O, s:O, s:O}}", "checkpoint", "seq", cps, "hash",
                            json_object_get(cp, "hash"), "time", json_object_get(cp, "time_s"), "kid",
                            json_object_get(cp, "kid"), "jws", json_object_get(cp, "jws"), "jwk", jwk);
        if (!header || !trailer)
                return OOM();
        r = segment_writer_open(path, &w);
        if (r < 0)
                return r;
        r = segment_writer_line(w, header);
        if (r >= 0)
                r = write_records(c, w, first, last, (uint64_t) cps, prev, last_hash, cp_hash);
        /* The seal checked before anything is recorded: a segment keydctl wrote verifies. */
        if (r >= 0 && segment_checkpoint_check(json_object_get(trailer, "checkpoint"), jwk, cp_hash, why, sizeof why) < 0)
                r = ctl_error(KEYDCTL_ERR_NEGATIVE, "the checkpoint at record %" JSON_INTEGER_FORMAT
                              " does not seal the records: %s; nothing exported", cps, why);
        if (r >= 0)
                r = segment_writer_line(w, trailer);
        if (r < 0) {
                segment_writer_abort(w);
                return r;
        }
        r = segment_writer_commit(w, sha256);
        if (r < 0)
                return r;

        /* Only now does keyd learn that the range is exported: what it may prune. */
        json_decref(body);
        body = json_pack("{s:I, s:I, s:I, s:s, s:s}", "first", (json_int_t) first, "last", (json_int_t) last,
                         "checkpoint_seq", cps, "last_hash", last_hash, "sha256", sha256);
        if (!body)
                return OOM();
        r = ctl_call(c, "POST", "/v1/audit/exports", body, &reply);
        if (r < 0)
                return ctl_error(r, "%s was written, but keyd did not record the export: run the export again to a new "
                                 "file before pruning", path);
        if (c->json) {
                _cleanup_json_ json_t *o = json_pack(
                        "{s:s, s:I, s:I, s:I, s:s, s:O, s:s, s:b}", "file", path, "first", (json_int_t) first, "last",
                        (json_int_t) last, "checkpoint_seq", cps, "sha256", sha256, "kid", json_object_get(cp, "kid"),
                        "last_hash", last_hash, "signed", json_is_true(json_object_get(sealed, "signed")));
                if (!o)
                        return OOM();
                print_json(o);
                return 0;
        }
        char clean[1024];
        printf("Exported audit records %" PRIu64 " to %" PRIu64 " to %s (sha256 %s),\n"
               "sealed by the checkpoint at record %" JSON_INTEGER_FORMAT "%s, signed by key %s.\n"
               "keyd may now prune them: keydctl audit prune --before %" PRIu64 "\n",
               first, last, sanitize(path, clean, sizeof clean), sha256, cps,
               json_is_true(json_object_get(sealed, "signed")) ? " (signed now)" : "",
               json_str(cp, "kid") ?: "?", before);
        return 0;
}

int verb_audit_prune(Ctl *c, const Verb *v, int argc, char **argv) {
        _cleanup_json_ json_t *body = NULL, *reply = NULL;
        const char *before_arg = NULL;
        uint64_t before;
        int r;

        r = ctl_parse_value(c, v, argc, argv, "before", &before_arg, 0, 0);
        if (r != CTL_PARSED)
                return r > 0 ? 0 : r;
        if (!before_arg)
                return ctl_error(KEYDCTL_ERR_USAGE, "--before SEQ is required");
        r = ctl_parse_number("--before", before_arg, 1, INT64_MAX, &before);
        if (r < 0)
                return r;
        body = json_pack("{s:I}", "before", (json_int_t) before);
        if (!body)
                return OOM();
        r = ctl_call(c, "POST", "/v1/audit/prune", body, &reply);
        if (r < 0)
                return r;
        if (c->json) {
                print_json(reply);
                return 0;
        }
        json_int_t pruned = json_integer_value(json_object_get(reply, "pruned"));
        json_t *anchor = json_object_get(reply, "anchor");
        if (pruned == 0 && json_integer_value(json_object_get(reply, "record")) == 0)
                printf("Nothing to prune: the log starts at record %" JSON_INTEGER_FORMAT ".\n",
                       json_integer_value(json_object_get(reply, "first")));
        else
                printf("Pruned %" JSON_INTEGER_FORMAT " audit record(s): the log starts at record %" JSON_INTEGER_FORMAT
                       ", after record %" JSON_INTEGER_FORMAT " (hash %s); audited as record %" JSON_INTEGER_FORMAT
                       ".\n",
                       pruned, json_integer_value(json_object_get(reply, "first")),
                       json_integer_value(json_object_get(anchor, "seq")), json_str(anchor, "hash") ?: "?",
                       json_integer_value(json_object_get(reply, "record")));
        return 0;
}

/* ---- audit verify --segment ---- */

typedef struct KeySource {
        Ctl *c;
        json_t *jwks; /* --jwks FILE, or NULL: ask keyd */
} KeySource;

static json_t *lookup_key(const char *kid, void *userdata, char *why, size_t size) {
        KeySource *k = userdata;
        json_t *key;
        size_t i;

        if (k->jwks) {
                json_array_foreach(json_object_get(k->jwks, "keys"), i, key)
                        if (streq_ptr(json_str(key, "kid"), kid))
                                return json_incref(key);
                (void) snprintf(why, size, "key %s is not in the JWKS given", kid);
                return NULL;
        }
        _cleanup_free_ char *path = ctl_path("/v1/audit/keys/", kid, NULL);
        _cleanup_json_ json_t *reply = NULL;
        if (!path || ctl_call(k->c, "GET", path, NULL, &reply) < 0) {
                (void) snprintf(why, size, "keyd did not give the key of %s", kid);
                return NULL;
        }
        key = json_object_get(reply, "jwk");
        if (!json_is_object(key)) {
                (void) snprintf(why, size, "keyd has no public key for %s", kid);
                return NULL;
        }
        return json_incref(key);
}

static int by_first(const void *a, const void *b) {
        const Segment *x = a, *y = b;
        return x->first < y->first ? -1 : x->first > y->first;
}

int audit_verify_segments(Ctl *c, char **files, size_t n, const char *jwks_path, json_t **ret) {
        _cleanup_free_ Segment *segs = calloc(n, sizeof *segs);
        _cleanup_json_ json_t *out = json_array(), *joins = json_array();
        KeySource keys = { .c = c };
        bool ok = true;
        char clean[1024];
        int r = 0;

        if (!segs || !out || !joins)
                return OOM();
        if (jwks_path) {
                _cleanup_free_ char *text = NULL;
                size_t len;
                r = read_input(jwks_path, KEYDCTL_REPLY_MAX, &text, &len);
                if (r < 0)
                        return r;
                keys.jwks = json_loadb(text, len, 0, NULL);
                if (!json_is_array(json_object_get(keys.jwks, "keys"))) {
                        json_decref(keys.jwks);
                        return ctl_error(KEYDCTL_ERR_USAGE, "%s is not a JWKS ({\"keys\": [...]})", jwks_path);
                }
        }
        for (size_t i = 0; i < n; i++) {
                r = segment_check(files[i], lookup_key, &keys, &segs[i]);
                if (r < 0 && r != KEYDCTL_ERR_NEGATIVE)
                        break;
                ok &= r == 0;
                if (json_array_append_new(out, json_pack("{s:s, s:b, s:I, s:I, s:I, s:s?, s:s?}", "file", files[i],
                                                         "ok", r == 0, "first", (json_int_t) segs[i].first, "last",
                                                         (json_int_t) segs[i].last, "checkpoint_seq",
                                                         (json_int_t) segs[i].checkpoint_seq, "kid", segs[i].kid,
                                                         "message", r == 0 ? NULL : segs[i].message)) < 0)
                        r = OOM();
                if (r == 0 && !c->json)
                        printf("Segment %s verified: records %" PRIu64 " to %" PRIu64 ", sealed by the checkpoint at "
                               "record %" PRIu64 " signed by %s.\n",
                               sanitize(files[i], clean, sizeof clean), segs[i].first, segs[i].last,
                               segs[i].checkpoint_seq, segs[i].kid);
                else if (r == KEYDCTL_ERR_NEGATIVE && !c->json)
                        printf("Segment %s does NOT verify: %s\n", sanitize(files[i], clean, sizeof clean),
                               segs[i].message);
                r = 0;
        }
        json_decref(keys.jwks);

        /* How they join: a segment that starts where the one before ended must name its last record's hash. */
        qsort(segs, n, sizeof *segs, by_first);
        for (size_t i = 1; r >= 0 && i < n; i++) {
                const Segment *a = &segs[i - 1], *b = &segs[i];
                const char *what = NULL;
                if (!a->last_hash[0] || !b->prev_hash[0])
                        continue; /* one of them did not read: said above */
                if (b->first == a->last + 1)
                        what = streq(b->prev_hash, a->last_hash) ? "joins" : "does NOT join";
                else if (b->first > a->last + 1)
                        what = "leaves a gap after";
                else
                        what = "overlaps";
                ok &= !startswith(what, "does NOT");
                if (!c->json)
                        printf("Segment %s (from record %" PRIu64 ") %s %s (to record %" PRIu64 ").\n", b->path,
                               b->first, what, a->path, a->last);
                if (json_array_append_new(joins, json_pack("{s:s, s:s, s:s}", "file", b->path, "after", a->path,
                                                           "join", what)) < 0)
                        r = OOM();
        }
        /* And the last one to the log keyd keeps, when keyd is asked (no --jwks): pruned up to its last record. */
        if (r >= 0 && !jwks_path && n > 0 && segs[n - 1].last_hash[0]) {
                _cleanup_json_ json_t *page = NULL;
                const json_t *first = NULL;
                uint64_t head;
                if (log_start(c, &page, &first, &head) >= 0 && first && seq_of(first) == segs[n - 1].last + 1) {
                        bool joined = streq_ptr(json_str(first, "prev_hash"), segs[n - 1].last_hash);
                        ok &= joined;
                        if (!c->json)
                                printf("keyd's log (from record %" PRIu64 ") %s %s.\n", seq_of(first),
                                       joined ? "joins" : "does NOT join", segs[n - 1].path);
                        if (json_array_append_new(joins, json_pack("{s:s, s:s, s:s}", "file", "keyd", "after",
                                                                   segs[n - 1].path, "join",
                                                                   joined ? "joins" : "does NOT join")) < 0)
                                r = OOM();
                }
        }
        for (size_t i = 0; i < n; i++)
                segment_done(&segs[i]);
        if (r < 0)
                return r;
        *ret = json_pack("{s:b, s:O, s:O}", "ok", ok, "segments", out, "joins", joins);
        if (!*ret)
                return OOM();
        return ok ? 0 : KEYDCTL_ERR_NEGATIVE;
}

int segment_record_hash(const json_t *verified, uint64_t seq, char ret[65], const char **ret_file) {
        const json_t *seg;
        size_t i;

        /* Segments that verified hold records first..checkpoint_seq, each checked: their hashes are the chain's. */
        json_array_foreach(json_object_get(verified, "segments"), i, seg) {
                _cleanup_free_ char *buf = NULL;
                size_t size = 0;
                if (!json_is_true(json_object_get(seg, "ok")) ||
                    (uint64_t) json_integer_value(json_object_get(seg, "first")) > seq ||
                    (uint64_t) json_integer_value(json_object_get(seg, "checkpoint_seq")) < seq)
                        continue;
                FILE *f = fopen(json_str(seg, "file"), "re");
                if (!f)
                        continue;
                while (getline(&buf, &size, f) >= 0) {
                        _cleanup_json_ json_t *rec = json_loads(buf, 0, NULL);
                        if (json_is_integer(json_object_get(rec, "seq")) &&
                            (uint64_t) json_integer_value(json_object_get(rec, "seq")) == seq && json_str(rec, "hash")) {
                                (void) snprintf(ret, 65, "%s", json_str(rec, "hash"));
                                *ret_file = json_str(seg, "file");
                                fclose(f);
                                return 1;
                        }
                }
                fclose(f);
        }
        return 0;
}
