/* SPDX-License-Identifier: MIT */
/* keydctl: the audit commands: tail (with filters), verify (the chain, its anchors, exported segments), export and
 * prune (keydctl-audit-segment.c reads and checks segment files). */
#include <curl/curl.h>
#include <inttypes.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <time.h>

#include "common/time-util.h"
#include "keyd/keydctl-internal.h"

#define AUDIT_PAGE 1000 /* the API's largest limit */
#define AUDIT_TAIL_MAX 100000

/* One page of the audit log: records after "after", at most limit, matching filters (a query suffix, "&keyring=..."
 * escaped, or ""). */
static int audit_page_filtered(Ctl *c, uint64_t after, unsigned limit, const char *filters, json_t **ret) {
        _cleanup_free_ char *path = NULL;
        json_t *reply = NULL;
        int r;

        if (asprintf(&path, "/v1/audit?after=%llu&limit=%u%s", (unsigned long long) after, limit, filters) < 0)
                return OOM();
        r = ctl_call(c, "GET", path, NULL, &reply);
        if (r < 0)
                return r;
        if (!json_is_array(json_object_get(reply, "records"))) {
                json_decref(reply);
                return ctl_error(KEYDCTL_ERR_UNREACHABLE, "keyd's reply has no \"records\" list");
        }
        *ret = reply;
        return 0;
}

static int audit_page(Ctl *c, uint64_t after, unsigned limit, json_t **ret) {
        return audit_page_filtered(c, after, limit, "", ret);
}

/* Whether records may follow a page: its "more" (a keyd before filters sent none: a full page may have more). */
static bool page_more(const json_t *page, unsigned limit) {
        const json_t *more = json_object_get(page, "more");
        if (json_is_boolean(more))
                return json_is_true(more);
        return json_array_size(json_object_get(page, "records")) == limit;
}

/* The seq of the last record, in O(log n) requests: "after=X&limit=1" is not empty exactly when the last seq is
 * greater than X, so the last seq is the smallest X for which it is empty (seqs need not be contiguous). */
static int audit_head(Ctl *c, uint64_t *ret) {
        uint64_t lo = 0, hi = 0;
        bool have_hi = false;
        int r;

        for (;;) {
                uint64_t x = have_hi ? lo + (hi - lo) / 2 : hi;
                _cleanup_json_ json_t *page = NULL;
                if (have_hi && hi - lo <= 1)
                        break;
                r = audit_page(c, x, 1, &page);
                if (r < 0)
                        return r;
                if (json_array_size(json_object_get(page, "records")) > 0) {
                        json_int_t seq = json_integer_value(
                                json_object_get(json_array_get(json_object_get(page, "records"), 0), "seq"));
                        /* A record with seq s > x exists, so the last seq is at least s: s - 1 is not empty. */
                        lo = seq > 0 && (uint64_t) seq - 1 > x ? (uint64_t) seq - 1 : x;
                        if (!have_hi) {
                                if (hi > UINT64_MAX / 4)
                                        return ctl_error(KEYDCTL_ERR_UNREACHABLE, "keyd's audit seqs do not end");
                                hi = MAX(hi * 2, lo + 1);
                        }
                } else {
                        hi = x;
                        have_hi = true;
                }
        }
        *ret = hi;
        return 0;
}

typedef struct AuditOut {
        size_t widths[10];
        bool header_done;
} AuditOut;

/* uid and pid of a record; keyd's own records carry -1 (or null): "-". */
static const char *actor_id(const json_t *v, char *buf, size_t size) {
        if (json_is_integer(v) && json_integer_value(v) < 0)
                return NULL;
        return json_text(v, buf, size);
}

static int audit_print(Ctl *c, const json_t *records, AuditOut *o) {
        static const char *const headers[] = { "SEQ",     "TIME",    "UID", "PID",    "COMM",
                                               "ACTION",  "KEYRING", "KID", "RESULT", "DETAIL" };
        _cleanup_table_ Table *t = NULL;
        const json_t *rec;
        size_t i;

        if (c->json) {
                /* audit tail --follow --json: JSON Lines, one record per line. */
                json_array_foreach(records, i, rec) {
                        (void) json_dumpf(rec, stdout, JSON_COMPACT);
                        putchar('\n');
                }
                (void) fflush(stdout);
                return 0;
        }
        t = table_new(ELEMENTSOF(headers), headers);
        if (!t)
                return OOM();
        json_array_foreach(records, i, rec) {
                char seq[32], uid[32], pid[32], detail[512], kid12[13] = "";
                const char *kid = json_str(rec, "kid");
                if (kid)
                        (void) snprintf(kid12, sizeof kid12, "%s", kid);
                if (TABLE_ROW(t, json_text(json_object_get(rec, "seq"), seq, sizeof seq), json_str(rec, "time"),
                              actor_id(json_object_get(rec, "uid"), uid, sizeof uid),
                              actor_id(json_object_get(rec, "pid"), pid, sizeof pid), json_str(rec, "comm"),
                              json_str(rec, "action"), json_str(rec, "keyring"), kid ? kid12 : NULL,
                              json_str(rec, "result"),
                              json_text(json_object_get(rec, "detail"), detail, sizeof detail) ?: "") < 0)
                        return OOM();
        }
        if (table_n_rows(t) > 0) {
                table_print(t, stdout, o->header_done, o->widths);
                o->header_done = true;
        }
        (void) fflush(stdout);
        return 0;
}

int parse_time_or_ago(const char *name, const char *s, int64_t now, int64_t *ret) {
        uint64_t secs;
        usec_t ago;

        if (*s && strspn(s, "0123456789") == strlen(s))
                return ctl_parse_number(name, s, 1, 253402300799ULL, &secs) < 0 ? KEYDCTL_ERR_USAGE
                                                                                : (*ret = (int64_t) secs, 0);
        if (parse_rfc3339(s, ret) >= 0 && *ret > 0)
                return 0;
        if (parse_duration(s, &ago) >= 0 && ago / USEC_PER_SEC < now) {
                *ret = now - ago / USEC_PER_SEC;
                return 0;
        }
        return ctl_error(KEYDCTL_ERR_USAGE,
                         "%s: '%s' is not a time: give RFC 3339 (2026-11-23T04:00:00Z), seconds since the epoch, or "
                         "a duration ago (15m, 2h, 7d)",
                         name, s);
}

/* "&name=value" appended to the query q, value percent-escaped. */
static int query_add(char **q, const char *name, const char *value) {
        char *esc = curl_easy_escape(NULL, value, 0), *n = NULL;
        if (!esc || asprintf(&n, "%s&%s=%s", *q, name, esc) < 0) {
                curl_free(esc);
                return OOM();
        }
        curl_free(esc);
        free(*q);
        *q = n;
        return 0;
}

/* --uid: a number, -1 (keyd itself) or a user name, as the number keyd records. */
static int parse_uid(const char *s, char ret[24]) {
        uint64_t u;
        if (streq(s, "-1") || parse_uint64(s, UINT32_MAX - 1, &u) >= 0) {
                (void) snprintf(ret, 24, "%s", s);
                return 0;
        }
        struct passwd *pw = getpwnam(s);
        if (!pw)
                return ctl_error(KEYDCTL_ERR_USAGE, "--uid: '%s' is neither a uid nor a user", s);
        (void) snprintf(ret, 24, "%u", (unsigned) pw->pw_uid);
        return 0;
}

/* The last n records that match filters (not empty), oldest first, into all: pages read newest first from the head
 * (order=desc), each examining a bounded window of the log, until n are found or the log's start is reached. *ret_next
 * is the head when the search began (what --follow continues after). */
static int tail_filtered(Ctl *c, uint64_t n, const char *filters, json_t *all, uint64_t *ret_next) {
        uint64_t before = 0; /* 0: from the head */
        bool first = true;
        int r;

        for (;;) {
                _cleanup_free_ char *path = NULL;
                _cleanup_json_ json_t *page = NULL;
                unsigned limit = (unsigned) MIN(n - json_array_size(all), (uint64_t) AUDIT_PAGE);
                char b[48] = "";

                if (before > 0)
                        (void) snprintf(b, sizeof b, "&before=%" PRIu64, before);
                if (asprintf(&path, "/v1/audit?order=desc&limit=%u%s%s", limit, b, filters) < 0)
                        return OOM();
                r = ctl_call(c, "GET", path, NULL, &page);
                if (r < 0)
                        return r;
                json_t *records = json_object_get(page, "records"), *next = json_object_get(page, "next");
                if (!json_is_array(records) || !json_is_integer(next) ||
                    !json_is_boolean(json_object_get(page, "more")))
                        return ctl_error(KEYDCTL_ERR_UNREACHABLE,
                                         "keyd's reply has no \"records\", \"next\" or \"more\" (a keyd without audit "
                                         "filters?)");
                if (first) {
                        json_t *head = json_object_get(page, "head");
                        *ret_next = json_is_integer(head) ? (uint64_t) json_integer_value(head) : 0;
                        first = false;
                }
                /* Newest first: each page goes before what was found so far. */
                for (size_t i = 0; i < json_array_size(records); i++)
                        if (json_array_insert(all, 0, json_array_get(records, i)) < 0)
                                return OOM();
                if (json_array_size(all) >= n || !json_is_true(json_object_get(page, "more")))
                        return 0;
                before = (uint64_t) json_integer_value(next);
        }
}

int verb_audit_tail(Ctl *c, const Verb *v, int argc, char **argv) {
        enum {
                OPT_AFTER = CTL_OPT_FIRST_LOCAL,
                OPT_KEYRING,
                OPT_KID,
                OPT_SUB,
                OPT_ACTION,
                OPT_UID,
                OPT_SINCE,
                OPT_UNTIL,
        };
        static const struct option options[] = {
                CTL_COMMON_OPTIONS,
                { "lines", required_argument, NULL, 'n' },
                { "follow", no_argument, NULL, 'f' },
                { "after", required_argument, NULL, OPT_AFTER },
                { "keyring", required_argument, NULL, OPT_KEYRING },
                { "kid", required_argument, NULL, OPT_KID },
                { "sub", required_argument, NULL, OPT_SUB },
                { "action", required_argument, NULL, OPT_ACTION },
                { "uid", required_argument, NULL, OPT_UID },
                { "since", required_argument, NULL, OPT_SINCE },
                { "until", required_argument, NULL, OPT_UNTIL },
                {},
        };
        _cleanup_json_ json_t *all = json_array();
        _cleanup_free_ char *filters = strdup("");
        uint64_t n = 20, after = UINT64_MAX /* not given: the last n records */, head = 0;
        int64_t now = (int64_t) (now_realtime() / USEC_PER_SEC), t;
        bool follow = false;
        AuditOut out = { 0 };
        char num[24];
        int opt, r;

        if (!all || !filters)
                return OOM();
        while ((r = ctl_next_option(c, v, argc, argv, ":hn:f", options, 0, 0, &opt)) == CTL_OPTION) {
                switch (opt) {
                case 'n':
                        r = ctl_parse_number("--lines", optarg, 1, AUDIT_TAIL_MAX, &n);
                        break;
                case 'f':
                        follow = true;
                        break;
                case OPT_AFTER:
                        r = ctl_parse_number("--after", optarg, 0, INT64_MAX, &after);
                        break;
                case OPT_KEYRING:
                        r = ctl_check_keyring_name(optarg);
                        if (r >= 0)
                                r = query_add(&filters, "keyring", optarg);
                        break;
                case OPT_KID:
                        r = *optarg && strlen(optarg) <= KID_MAX ? query_add(&filters, "kid", optarg)
                                                                 : ctl_error(KEYDCTL_ERR_USAGE,
                                                                             "--kid: a whole kid (1 to %d characters)",
                                                                             KID_MAX);
                        break;
                case OPT_SUB:
                        r = *optarg && strlen(optarg) <= 1024
                                    ? query_add(&filters, "sub", optarg)
                                    : ctl_error(KEYDCTL_ERR_USAGE, "--sub: 1 to 1024 characters");
                        break;
                case OPT_ACTION:
                        r = query_add(&filters, "action", optarg);
                        break;
                case OPT_UID:
                        r = parse_uid(optarg, num);
                        if (r >= 0)
                                r = query_add(&filters, "uid", num);
                        break;
                case OPT_SINCE:
                case OPT_UNTIL:
                        r = parse_time_or_ago(opt == OPT_SINCE ? "--since" : "--until", optarg, now, &t);
                        if (r >= 0) {
                                (void) snprintf(num, sizeof num, "%" PRId64, t);
                                r = query_add(&filters, opt == OPT_SINCE ? "since" : "until", num);
                        }
                        break;
                }
                if (r < 0)
                        return r;
        }
        if (r != CTL_PARSED)
                return r > 0 ? 0 : r;

        if (after == UINT64_MAX && *filters) {
                /* The last n matching records, found by keyd newest first. */
                r = tail_filtered(c, n, filters, all, &after);
                if (r < 0)
                        return r;
                if (c->json && !follow) {
                        _cleanup_json_ json_t *o = json_pack("{s:O, s:I}", "records", all, "next", (json_int_t) after);
                        if (!o)
                                return OOM();
                        print_json(o);
                        return 0;
                }
                r = audit_print(c, all, &out);
                if (r < 0)
                        return r;
                if (!c->json && !out.header_done && !follow)
                        printf("No audit records.\n");
                n = 0; /* printed: only --follow is left */
        } else if (after == UINT64_MAX) {
                r = audit_head(c, &head);
                if (r < 0)
                        return r;
                after = head > n ? head - n : 0;
        }

        /* The first n records after "after", a page at a time (with filters: until n match, or the log ends). */
        for (uint64_t got = 0; got < n;) {
                _cleanup_json_ json_t *page = NULL;
                json_t *records;
                unsigned limit = (unsigned) MIN(n - got, (uint64_t) AUDIT_PAGE);
                r = audit_page_filtered(c, after, limit, filters, &page);
                if (r < 0)
                        return r;
                records = json_object_get(page, "records");
                if (json_array_size(records) == 0 && !(*filters && page_more(page, limit)))
                        break;
                got += json_array_size(records);
                after = (uint64_t) json_integer_value(json_object_get(page, "next"));
                if (c->json && !follow)
                        (void) json_array_extend(all, records);
                else {
                        r = audit_print(c, records, &out);
                        if (r < 0)
                                return r;
                }
                if (*filters && !page_more(page, limit))
                        break;
        }
        if (n > 0 && c->json && !follow) {
                _cleanup_json_ json_t *o = json_pack("{s:O, s:I}", "records", all, "next", (json_int_t) after);
                if (!o)
                        return OOM();
                print_json(o);
                return 0;
        }
        if (n > 0 && !c->json && !out.header_done && !follow)
                printf("No audit records.\n");

        while (follow) {
                _cleanup_json_ json_t *page = NULL;
                json_t *records;
                r = audit_page_filtered(c, after, AUDIT_PAGE, filters, &page);
                if (r < 0)
                        return r;
                records = json_object_get(page, "records");
                /* With filters, a page without a match still moves on: next is as far as keyd looked. */
                if (json_is_integer(json_object_get(page, "next")) &&
                    (json_array_size(records) > 0 || *filters))
                        after = MAX(after, (uint64_t) json_integer_value(json_object_get(page, "next")));
                if (json_array_size(records) > 0) {
                        r = audit_print(c, records, &out);
                        if (r < 0)
                                return r;
                }
                if (page_more(page, AUDIT_PAGE))
                        continue;
                (void) nanosleep(&(struct timespec){ .tv_sec = 1 }, NULL);
        }
        return 0;
}

#define ANCHOR_LINE_MAX ((size_t) 64 << 10)

/* What the check of an anchor file found: every anchor matches (line 0), or the first that does not. */
typedef struct AnchorCheck {
        uint64_t anchors, last_seq;
        unsigned long line; /* of the first anchor that does not match, 0 if none */
        uint64_t seq;       /* its seq, 0 if it has none */
        char message[512];
} AnchorCheck;

_printf_(4, 5) static void anchor_bad(AnchorCheck *a, unsigned long line, uint64_t seq, const char *fmt, ...) {
        va_list ap;
        a->line = line;
        a->seq = seq;
        va_start(ap, fmt);
        (void) vsnprintf(a->message, sizeof a->message, fmt, ap);
        va_end(ap);
}

static bool is_hash(const char *s) {
        return s && strlen(s) == 64 && strspn(s, "0123456789abcdef") == 64;
}

/* Each line of the anchor file (keyd.conf(5) [audit] anchor-file: {"seq", "hash", "time", "kid", "jws"}) against the
 * chain as keyd serves it: the anchors come in increasing seq order, and the record of each anchored seq exists with
 * the anchored hash. An anchor before first (the first record keyd keeps: those before were pruned) is checked against
 * the exported segments that verified (segments: audit_verify_segments()'s reply, or NULL), and is not one that
 * matches without them. Stops at the first that does not match. 0 (see a->line), or a negative errno (reported). */
static int check_anchors(Ctl *c, const char *path, uint64_t first, const json_t *segments, AnchorCheck *a) {
        _cleanup_free_ char *buf = NULL;
        size_t size = 0;
        unsigned long line = 0;
        FILE *f;
        int r = 0;

        f = fopen(path, "re");
        if (!f)
                return ctl_error(negative_errno(), "cannot open %s: %m", path);
        for (;;) {
                _cleanup_json_ json_t *anchor = NULL, *page = NULL;
                errno = 0;
                ssize_t n = getline(&buf, &size, f);
                if (n < 0) {
                        if (errno != 0)
                                r = ctl_error(negative_errno(), "cannot read %s: %m", path);
                        break;
                }
                line++;
                if ((size_t) n > ANCHOR_LINE_MAX) {
                        anchor_bad(a, line, 0, "longer than %zu KiB: not an anchor", ANCHOR_LINE_MAX >> 10);
                        break;
                }
                if (strspn(buf, " \t\r\n") == (size_t) n)
                        continue;
                anchor = json_loadb(buf, (size_t) n, JSON_REJECT_DUPLICATES, NULL);
                json_t *jseq = json_object_get(anchor, "seq");
                const char *hash = json_str(anchor, "hash");
                if (!json_is_integer(jseq) || json_integer_value(jseq) <= 0 || !is_hash(hash)) {
                        anchor_bad(a, line, 0,
                                   "not an anchor (a JSON object with a positive integer \"seq\" and a \"hash\" of 64 "
                                   "hex digits)");
                        break;
                }
                uint64_t seq = (uint64_t) json_integer_value(jseq);
                if (a->anchors > 0 && seq <= a->last_seq) {
                        anchor_bad(a, line, seq, "anchors go backwards: seq %" PRIu64 " after seq %" PRIu64, seq,
                                   a->last_seq);
                        break;
                }
                if (seq < first) {
                        /* Pruned from keyd: the record is in a segment, or this anchor cannot be checked here. */
                        char hash2[65];
                        const char *file = NULL;
                        if (!segments || !segment_record_hash(segments, seq, hash2, &file)) {
                                anchor_bad(a, line, seq,
                                           "record %" PRIu64 " was pruned from keyd (its log starts at %" PRIu64
                                           "): give the segment that holds it with --segment",
                                           seq, first);
                                break;
                        }
                        if (!streq(hash2, hash)) {
                                anchor_bad(a, line, seq, "record %" PRIu64 " has hash %s in %s, the anchor %s", seq,
                                           hash2, file, hash);
                                break;
                        }
                        a->anchors++;
                        a->last_seq = seq;
                        continue;
                }
                r = audit_page(c, seq - 1, 1, &page);
                if (r < 0)
                        break;
                json_t *rec = json_array_get(json_object_get(page, "records"), 0);
                json_t *rseq = json_object_get(rec, "seq");
                const char *rhash = json_str(rec, "hash");
                if (!json_is_integer(rseq) || (uint64_t) json_integer_value(rseq) != seq) {
                        anchor_bad(a, line, seq, "record %" PRIu64 " is not in the chain: records were removed", seq);
                        break;
                }
                if (!rhash || !streq(rhash, hash)) {
                        char clean[80];
                        anchor_bad(a, line, seq,
                                   "record %" PRIu64 " has hash %s, the anchor %s: the chain was rewritten", seq,
                                   sanitize(rhash ?: "(none)", clean, sizeof clean), hash);
                        break;
                }
                a->anchors++;
                a->last_seq = seq;
        }
        fclose(f);
        return r;
}

int verb_audit_verify(Ctl *c, const Verb *v, int argc, char **argv) {
        enum { OPT_ANCHOR = CTL_OPT_FIRST_LOCAL, OPT_SEGMENT, OPT_JWKS };
        static const struct option options[] = {
                CTL_COMMON_OPTIONS,
                { "anchor", required_argument, NULL, OPT_ANCHOR },
                { "segment", no_argument, NULL, OPT_SEGMENT },
                { "jwks", required_argument, NULL, OPT_JWKS },
                {},
        };
        _cleanup_json_ json_t *reply = NULL, *segments = NULL;
        bool ok, segment = false;
        char n[32], head[32], cp[32] = "none", bad[32], clean[1024], where[1024];
        const char *anchor_file = NULL, *jwks = NULL;
        AnchorCheck anchors = { 0 };
        const json_t *cps;
        int opt, r, rs = 0;

        while ((r = ctl_next_option(c, v, argc, argv, ":h", options, 0, INT_MAX, &opt)) == CTL_OPTION)
                switch (opt) {
                case OPT_ANCHOR:
                        anchor_file = optarg;
                        break;
                case OPT_SEGMENT:
                        segment = true;
                        break;
                case OPT_JWKS:
                        jwks = optarg;
                        break;
                }
        if (r != CTL_PARSED)
                return r > 0 ? 0 : r;
        if (segment != (optind < argc))
                return ctl_error(KEYDCTL_ERR_USAGE, segment ? "--segment: give the segment files"
                                                            : "files to check are given with --segment");
        if (jwks && !segment)
                return ctl_error(KEYDCTL_ERR_USAGE, "--jwks goes with --segment");

        /* Exported segments, checked without keyd's database (keyd gives the keys unless --jwks does). */
        if (segment) {
                rs = audit_verify_segments(c, argv + optind, (size_t) (argc - optind), jwks, &segments);
                if (rs < 0 && rs != KEYDCTL_ERR_NEGATIVE)
                        return rs;
                if (!anchor_file) {
                        if (c->json)
                                print_json(segments);
                        return rs;
                }
        }
        r = ctl_call_verdict(c, "/v1/audit/verify", NULL, "ok", &reply);
        if (r < 0)
                return r;
        ok = r;
        /* The chain first, then the copy kept outside the database: a cut tail or a whole rewritten chain (hashes
         * recomputed, checkpoints dropped) verifies on its own, and only the anchors show it. */
        if (anchor_file) {
                json_t *first = json_object_get(reply, "first_seq");
                r = check_anchors(c, anchor_file, json_is_integer(first) ? (uint64_t) json_integer_value(first) : 1,
                                  segments, &anchors);
                if (r < 0)
                        return r;
        }
        /* checkpoint_seq 0 (or null): no checkpoint signed yet. */
        cps = json_object_get(reply, "checkpoint_seq");
        if (json_is_integer(cps) && json_integer_value(cps) > 0)
                (void) snprintf(cp, sizeof cp, "seq %" JSON_INTEGER_FORMAT, json_integer_value(cps));
        if (c->json) {
                if (anchor_file &&
                    json_object_set_new(reply, "anchor",
                                        json_pack("{s:s, s:b, s:I, s:I, s:I, s:I, s:s?}", "file", anchor_file, "ok",
                                                  anchors.line == 0, "anchors", (json_int_t) anchors.anchors,
                                                  "last_seq", (json_int_t) anchors.last_seq, "line",
                                                  (json_int_t) anchors.line, "seq", (json_int_t) anchors.seq,
                                                  "message", anchors.line ? anchors.message : NULL)) < 0)
                        return OOM();
                if (segments && json_object_set(reply, "segments", segments) < 0)
                        return OOM();
                print_json(reply);
        } else {
                json_t *first = json_object_get(reply, "first_seq");
                char from[64] = "";
                if (json_is_integer(first) && json_integer_value(first) > 1)
                        (void) snprintf(from, sizeof from, " from seq %" JSON_INTEGER_FORMAT " (pruned before)",
                                        json_integer_value(first));
                if (ok)
                        printf("Audit chain verified: %s record(s)%s, head seq %s, last signed checkpoint: %s.\n",
                               json_text(json_object_get(reply, "records"), n, sizeof n) ?: "?", from,
                               json_text(json_object_get(reply, "head_seq"), head, sizeof head) ?: "?", cp);
                else
                        printf("Audit chain does NOT verify: first bad record seq %s: %s\n",
                               json_text(json_object_get(reply, "bad_seq"), bad, sizeof bad) ?: "?",
                               sanitize(json_str(reply, "message") ?: "no message", clean, sizeof clean));
                if (anchor_file && anchors.line == 0)
                        printf("Anchors verified: %" PRIu64 " anchor(s) in %s, the last at seq %" PRIu64 ".\n",
                               anchors.anchors, sanitize(anchor_file, where, sizeof where), anchors.last_seq);
                else if (anchor_file) {
                        char seq[48] = "";
                        if (anchors.seq > 0)
                                (void) snprintf(seq, sizeof seq, " (seq %" PRIu64 ")", anchors.seq);
                        printf("Audit chain does NOT match the anchor at %s:%lu%s: %s\n",
                               sanitize(anchor_file, where, sizeof where), anchors.line, seq, anchors.message);
                }
        }
        return ok && anchors.line == 0 && rs == 0 ? 0 : KEYDCTL_ERR_NEGATIVE;
}
