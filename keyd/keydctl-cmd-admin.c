/* SPDX-License-Identifier: MIT */
/* keydctl: the administrative commands: rotate, disable, token revoke, audit tail, audit verify (revoke and rekey-all:
 * keydctl-cmd-revoke.c). */
#include <inttypes.h>
#include <stdarg.h>
#include <time.h>

#include "keyd/keydctl-internal.h"
#include "rotation/lifecycle.h"

#define AUDIT_PAGE 1000 /* the API's largest limit */
#define AUDIT_TAIL_MAX 100000

static const char *key_kid(const json_t *ring, const char *state) {
        return json_str(keyring_key_in_state(ring, state), "kid");
}

int verb_rotate(Ctl *c, const Verb *v, int argc, char **argv) {
        enum { OPT_FORCE = CTL_OPT_FIRST_LOCAL, OPT_REASON };
        static const struct option options[] = {
                CTL_COMMON_OPTIONS,
                { "force", no_argument, NULL, OPT_FORCE },
                { "reason", required_argument, NULL, OPT_REASON },
                {},
        };
        _cleanup_json_ json_t *body = json_object(), *reply = NULL;
        char clean[256], clean2[256];
        int opt, r;

        if (!body)
                return OOM();
        while ((r = ctl_next_option(c, v, argc, argv, ":h", options, 1, 1, &opt)) == CTL_OPTION)
                switch (opt) {
                case OPT_FORCE:
                        if (json_object_set_new(body, "force", json_true()) < 0)
                                return OOM();
                        break;
                case OPT_REASON:
                        if (json_object_set_new(body, "reason", json_string(optarg)) < 0)
                                return ctl_error(KEYDCTL_ERR_USAGE, "--reason: the value is not UTF-8");
                        break;
                }
        if (r != CTL_PARSED)
                return r > 0 ? 0 : r;
        /* A 409 says why itself: too early (keyd's message names force) or a disabled keyring. */
        r = ctl_keyring_call(c, "POST", argv[optind], "/rotate", body, &reply);
        if (r < 0)
                return r;
        if (c->json)
                print_json(reply);
        else
                printf("Rotated keyring %s: active key %s, next key %s.\n", argv[optind],
                       sanitize(key_kid(reply, "active") ?: "-", clean, sizeof clean),
                       sanitize(key_kid(reply, "next") ?: "-", clean2, sizeof clean2));
        return 0;
}

static int show_disabled(_unused_ const Ctl *c, const char *name, const json_t *reply) {
        const json_t *k;
        size_t i, revoked = 0;

        json_array_foreach(json_object_get(reply, "keys"), i, k)
                revoked += streq_ptr(json_str(k, "state"), "revoked");
        printf("Disabled keyring %s: %zu key(s) revoked.\n", name, revoked);
        return 0;
}

int verb_disable(Ctl *c, const Verb *v, int argc, char **argv) {
        return ctl_simple_keyring_call(c, v, argc, argv, "POST", "/disable", show_disabled);
}

/* A 409 to a denial: keyd holds a denial of jti already (with when and until when, keyd's reply says). Running the
 * same denial again is done when that one still stands, for as long as asked (exp, 0: not given). */
static int denied_already(Ctl *c, const char *jti, int64_t exp, json_t *reply) {
        const json_t *until = json_object_get(reply, "exp");
        const char *at = json_str(reply, "revoked_at");
        int64_t now = (int64_t) (now_realtime() / USEC_PER_SEC);
        char when[32], clean[512], clean2[64];

        if (!at || !json_is_integer(until))
                /* A 409 that is not about this jti's denial: keyd's message says what it is. */
                return ctl_fail(KEYDCTL_ERR_CONFLICT, json_str(reply, "error") ?: "conflict", c->status,
                                json_str(reply, "message") ?: "keyd refused the denial");
        format_time(when, sizeof when, json_integer_value(until));
        if (json_integer_value(until) <= now)
                return ctl_error(KEYDCTL_ERR_CONFLICT,
                                 "token %s: its earlier denial (at %s) ended at %s and keyd has not dropped it yet; "
                                 "deny it again in a minute",
                                 jti, at, when);
        if (exp > 0 && json_integer_value(until) < exp)
                return ctl_error(KEYDCTL_ERR_CONFLICT,
                                 "token %s is denied (since %s) only until %s, before the --exp given; keyd does not "
                                 "extend a denial",
                                 jti, at, when);
        if (c->json) {
                /* As a denial's reply, not keyd's error. */
                _cleanup_json_ json_t *o =
                        json_pack("{s:s, s:O, s:s, s:b}", "jti", jti, "exp", until, "revoked_at", at, "already", true);
                if (!o)
                        return OOM();
                print_json(o);
        } else
                printf("Token %s was already denied at %s, until %s.\n", sanitize(jti, clean, sizeof clean),
                       sanitize(at, clean2, sizeof clean2), when);
        return 0;
}

int verb_token_revoke(Ctl *c, const Verb *v, int argc, char **argv) {
        enum { OPT_EXP = CTL_OPT_FIRST_LOCAL, OPT_KEYRING };
        static const struct option options[] = {
                CTL_COMMON_OPTIONS,
                { "exp", required_argument, NULL, OPT_EXP },
                { "keyring", required_argument, NULL, OPT_KEYRING },
                {},
        };
        _cleanup_json_ json_t *body = NULL, *reply = NULL;
        const char *keyring = NULL;
        int64_t exp = 0; /* 0: not given */
        char when[32], clean[512];
        int opt, r;

        while ((r = ctl_next_option(c, v, argc, argv, ":h", options, 1, 1, &opt)) == CTL_OPTION)
                switch (opt) {
                case OPT_EXP:
                        r = ctl_parse_instant("--exp", optarg, &exp);
                        if (r < 0)
                                return r;
                        if (exp <= 0)
                                return ctl_error(KEYDCTL_ERR_USAGE, "--exp: '%s' is before 1970", optarg);
                        break;
                case OPT_KEYRING:
                        r = ctl_check_keyring_name(optarg);
                        if (r < 0)
                                return r;
                        keyring = optarg;
                        break;
                }
        if (r != CTL_PARSED)
                return r > 0 ? 0 : r;
        if (!*argv[optind])
                return ctl_error(KEYDCTL_ERR_USAGE, "the JTI is empty");
        body = json_pack("{s:s}", "jti", argv[optind]);
        if (!body)
                return ctl_error(KEYDCTL_ERR_USAGE, "the JTI is not UTF-8");
        if ((exp > 0 && json_object_set_new(body, "exp", json_integer((json_int_t) exp)) < 0) ||
            (keyring && json_object_set_new(body, "keyring", json_string(keyring)) < 0))
                return OOM();
        r = ctl_call_quiet(c, "POST", "/v1/tokens/revoke", body, (const long[]){ 409, 0 }, &reply);
        if (r < 0)
                return r;
        if (r > 0)
                return denied_already(c, argv[optind], exp, reply);
        if (c->json) {
                print_json(reply);
                return 0;
        }
        printf("Token %s denied until %s.\n", sanitize(json_str(reply, "jti") ?: argv[optind], clean, sizeof clean),
               json_is_integer(json_object_get(reply, "exp"))
                       ? format_time(when, sizeof when, json_integer_value(json_object_get(reply, "exp")))
                       : "its expiry");
        return 0;
}

/* One page of the audit log: records after "after", at most limit. */
static int audit_page(Ctl *c, uint64_t after, unsigned limit, json_t **ret) {
        char path[96];
        json_t *reply = NULL;
        int r;

        (void) snprintf(path, sizeof path, "/v1/audit?after=%llu&limit=%u", (unsigned long long) after, limit);
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

int verb_audit_tail(Ctl *c, const Verb *v, int argc, char **argv) {
        enum { OPT_AFTER = CTL_OPT_FIRST_LOCAL };
        static const struct option options[] = {
                CTL_COMMON_OPTIONS,
                { "lines", required_argument, NULL, 'n' },
                { "follow", no_argument, NULL, 'f' },
                { "after", required_argument, NULL, OPT_AFTER },
                {},
        };
        _cleanup_json_ json_t *all = json_array();
        uint64_t n = 20, after = UINT64_MAX /* not given: the last n records */, head = 0;
        bool follow = false;
        AuditOut out = { 0 };
        int opt, r;

        if (!all)
                return OOM();
        while ((r = ctl_next_option(c, v, argc, argv, ":hn:f", options, 0, 0, &opt)) == CTL_OPTION)
                switch (opt) {
                case 'n':
                        r = ctl_parse_number("--lines", optarg, 1, AUDIT_TAIL_MAX, &n);
                        if (r < 0)
                                return r;
                        break;
                case 'f':
                        follow = true;
                        break;
                case OPT_AFTER:
                        r = ctl_parse_number("--after", optarg, 0, INT64_MAX, &after);
                        if (r < 0)
                                return r;
                        break;
                }
        if (r != CTL_PARSED)
                return r > 0 ? 0 : r;
        if (after == UINT64_MAX) {
                r = audit_head(c, &head);
                if (r < 0)
                        return r;
                after = head > n ? head - n : 0;
        }

        /* The first n records after "after", a page at a time. */
        for (uint64_t got = 0; got < n;) {
                _cleanup_json_ json_t *page = NULL;
                json_t *records;
                r = audit_page(c, after, (unsigned) MIN(n - got, (uint64_t) AUDIT_PAGE), &page);
                if (r < 0)
                        return r;
                records = json_object_get(page, "records");
                if (json_array_size(records) == 0)
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
        }
        if (c->json && !follow) {
                _cleanup_json_ json_t *o = json_pack("{s:O, s:I}", "records", all, "next", (json_int_t) after);
                if (!o)
                        return OOM();
                print_json(o);
                return 0;
        }
        if (!c->json && !out.header_done && !follow)
                printf("No audit records.\n");

        while (follow) {
                _cleanup_json_ json_t *page = NULL;
                json_t *records;
                r = audit_page(c, after, AUDIT_PAGE, &page);
                if (r < 0)
                        return r;
                records = json_object_get(page, "records");
                if (json_array_size(records) > 0) {
                        after = (uint64_t) json_integer_value(json_object_get(page, "next"));
                        r = audit_print(c, records, &out);
                        if (r < 0)
                                return r;
                        if (json_array_size(records) == AUDIT_PAGE)
                                continue;
                }
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
 * the anchored hash. Stops at the first that does not match. 0 (see a->line), or a negative errno (reported). */
static int check_anchors(Ctl *c, const char *path, AnchorCheck *a) {
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
        _cleanup_json_ json_t *reply = NULL;
        bool ok;
        char n[32], head[32], cp[32] = "none", bad[32], clean[1024], where[1024];
        const char *anchor_file = NULL;
        AnchorCheck anchors = { 0 };
        const json_t *cps;
        int r;

        r = ctl_parse_value(c, v, argc, argv, "anchor", &anchor_file, 0, 0);
        if (r != CTL_PARSED)
                return r > 0 ? 0 : r;
        r = ctl_call_verdict(c, "/v1/audit/verify", NULL, "ok", &reply);
        if (r < 0)
                return r;
        ok = r;
        /* The chain first, then the copy kept outside the database: a cut tail or a whole rewritten chain (hashes
         * recomputed, checkpoints dropped) verifies on its own, and only the anchors show it. */
        if (anchor_file) {
                r = check_anchors(c, anchor_file, &anchors);
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
                print_json(reply);
        } else {
                if (ok)
                        printf("Audit chain verified: %s record(s), head seq %s, last signed checkpoint: %s.\n",
                               json_text(json_object_get(reply, "records"), n, sizeof n) ?: "?",
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
        return ok && anchors.line == 0 ? 0 : KEYDCTL_ERR_NEGATIVE;
}
