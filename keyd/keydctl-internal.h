/* SPDX-License-Identifier: MIT */
#pragma once

/* keydctl: the operator CLI of keyd. Shared between keydctl.c (options, dispatch), keydctl-http.c (the API client),
 * keydctl-output.c (tables, times, JSON), keydctl-plan.c (the transition plan) and the keydctl-cmd-*.c commands. */
#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "common/crypto-util.h"
#include "common/macro.h"
#include "common/time-util.h"

#define KEYDCTL_DEFAULT_SOCKET "/run/keyd/keyd.sock"
#define KEYDCTL_DEFAULT_TIMEOUT 30u
#define KEYDCTL_TIMEOUT_MAX 86400u
#define KEYDCTL_REPLY_MAX ((size_t) 16 << 20) /* bytes of one reply */
#define KEYDCTL_INPUT_MAX ((size_t) 64 << 10) /* bytes read for sign FILE or verify from stdin */

/* Errors decide the exit status (keydctl(1) EXIT STATUS). A command reports its error once, on stderr (and, with
 * --json, as a JSON object on stdout: ctl_fail()), and returns:
 *   KEYDCTL_ERR_USAGE          exit 2: bad command line;
 *   KEYDCTL_ERR_UNREACHABLE    exit 3: keyd cannot be reached or gave no usable answer (connect error, timeout, a
 *                              reply that is not HTTP or not JSON, 5xx other than 503);
 *   KEYDCTL_ERR_FORBIDDEN      exit 4: keyd answered 403: the caller lacks the role;
 *   KEYDCTL_ERR_NOT_FOUND      exit 5: keyd answered 404, or no key has the kid given;
 *   KEYDCTL_ERR_CONFLICT       exit 6: keyd answered 409: the state does not allow it (too early to rotate, a
 *                              disabled keyring, a denial that ends before the --exp asked for);
 *   KEYDCTL_ERR_UNPROCESSABLE  exit 7: keyd answered 422: it understood the request and refuses it (an incoherent
 *                              policy, an issuer that is not https);
 *   any other negative errno   exit 1: keyd refused otherwise (400, 413, 429, 503), the answer is negative (invalid
 *                              token, audit chain broken, keyd degraded), or a local failure (cannot read FILE).
 * The four refusals use errnos that no local failure of keydctl returns (open() and read() never give these), so
 * that a FILE that is missing is exit 1, not 5. */
#define KEYDCTL_ERR_USAGE (-EINVAL)
#define KEYDCTL_ERR_UNREACHABLE (-EHOSTUNREACH)
#define KEYDCTL_ERR_REFUSED (-EPERM)
#define KEYDCTL_ERR_NEGATIVE (-EBADMSG)
#define KEYDCTL_ERR_FORBIDDEN (-EKEYREJECTED)
#define KEYDCTL_ERR_NOT_FOUND (-ENODATA)
#define KEYDCTL_ERR_CONFLICT (-EALREADY)
#define KEYDCTL_ERR_UNPROCESSABLE (-EDOM)

enum {
        KEYDCTL_EXIT_OK = 0,
        KEYDCTL_EXIT_REFUSED = 1,
        KEYDCTL_EXIT_USAGE = 2,
        KEYDCTL_EXIT_UNREACHABLE = 3,
        KEYDCTL_EXIT_FORBIDDEN = 4,
        KEYDCTL_EXIT_NOT_FOUND = 5,
        KEYDCTL_EXIT_CONFLICT = 6,
        KEYDCTL_EXIT_UNPROCESSABLE = 7,
};

typedef struct Ctl {
        const char *socket;
        unsigned timeout; /* seconds, per request */
        bool json;
        void *curl;                /* CURL *, made on first use */
        long status;               /* HTTP status of the last answered request, 0 if none */
        int n_opts;                /* the arguments of the command that getopt_long() reads (ctl_next_option()) */
} Ctl;

void ctl_done(Ctl *c);

/* Errors on stderr as "keydctl: ...". Returns error, so that "return ctl_error(r, ...)" reports and propagates. An
 * error of 0 is a warning. The first error (not warning) is kept for --json: when the command fails without having
 * printed JSON of its own, keydctl prints {"error": CODE, "message": ..., "exit": N} on stdout (main()). */
int ctl_error(int error, const char *format, ...) _printf_(2, 3);
/* ctl_error() with the error code and HTTP status keyd sent (code may be NULL, status 0), and its message alone. */
int ctl_fail(int error, const char *code, long status, const char *message);
/* Whether errors go to stdout as JSON too (--json, KEYDCTL_FORMAT=json); print_json() notes that a command printed
 * its own JSON. */
void ctl_set_json_errors(bool on);

/* One request. body may be NULL (a GET; a POST without body sends "{}"). A 2xx reply is parsed (it must be JSON) into
 * *ret_reply; anything else is reported on stderr and returns one of the KEYDCTL_ERR_* above. path must be escaped
 * already (ctl_path()). */
int ctl_call(Ctl *c, const char *method, const char *path, const json_t *body, json_t **ret_reply);
/* ctl_call(), except that a reply whose HTTP status is in quiet (a list ending in 0) is not reported: the caller
 * makes sense of it ("already revoked" is a 409). Returns 0 (2xx), the status (quiet) with keyd's error body in
 * *ret_reply (an empty object if it had none), or a negative errno (reported). */
int ctl_call_quiet(Ctl *c, const char *method, const char *path, const json_t *body, const long *quiet,
                   json_t **ret_reply);
/* "/v1/keyrings/<name>/<suffix>" with each segment percent-escaped; a new string or NULL (out of memory). */
#define OOM() ctl_error(-ENOMEM, "out of memory")

char *ctl_path(const char *prefix, const char *segment, const char *suffix);
/* ctl_call() on "/v1/keyrings/NAME" + suffix (suffix may be NULL); the name was checked by the caller. */
int ctl_keyring_call(Ctl *c, const char *method, const char *name, const char *suffix, const json_t *body,
                     json_t **ret_reply);

/* A command. run() gets argv with argv[0] the command's last word; it parses its own options with getopt_long() (optind
 * already reset, opterr off; the optstring starts with ":"), accepting the global ones too (CTL_COMMON_OPTIONS, handled
 * by ctl_common_option()): ctl_next_option() or, without options of its own, ctl_parse_plain(). */
typedef struct Verb Verb;
struct Verb {
        const char *name; /* "keyrings", "keyring show" */
        const char *args;    /* synopsis after the name; a first operand NAME is a keyring's (ctl_operands()) */
        const char *summary; /* one line for keydctl --help */
        const char *help; /* option lines for "keydctl NAME --help" */
        int (*run)(Ctl *c, const Verb *v, int argc, char **argv);
};

enum {
        CTL_OPT_JSON = 0x1000,
        CTL_OPT_SOCKET,
        CTL_OPT_TIMEOUT,
        CTL_OPT_VERSION,
        CTL_OPT_FIRST_LOCAL, /* commands number their own long options from here */
};

#define CTL_COMMON_OPTIONS                                                                                     \
        { "help", no_argument, NULL, 'h' }, { "json", no_argument, NULL, CTL_OPT_JSON },                       \
                { "socket", required_argument, NULL, CTL_OPT_SOCKET },                                         \
                { "timeout", required_argument, NULL, CTL_OPT_TIMEOUT }

/* What the option parsing of a command found, besides KEYDCTL_ERR_USAGE. */
enum {
        CTL_PARSED = 0, /* options and operands are fine: the operands start at optind */
        CTL_DONE = 1,   /* --help was shown: the command returns 0 */
        CTL_OPTION = 2, /* ctl_next_option(): one of the command's own options, optarg its value */
};

/* For getopt_long()'s results that a command does not handle itself: the global options, --help, and the errors
 * ('?', ':'). Returns CTL_PARSED when handled, CTL_DONE when help was shown, or KEYDCTL_ERR_USAGE. */
int ctl_common_option(Ctl *c, const Verb *v, int opt, int argc, char **argv);
/* The option loop of a command, one own option at a time: getopt_long() over options (CTL_COMMON_OPTIONS and the
 * command's own), the rest left to ctl_common_option(), and at the end ctl_operands(). Returns CTL_OPTION with
 * *ret_opt, or, once the loop is over, CTL_PARSED, CTL_DONE or KEYDCTL_ERR_USAGE:
 *         while ((r = ctl_next_option(c, v, argc, argv, ":h", options, 1, 1, &opt)) == CTL_OPTION)
 *                 switch (opt) { ... }
 *         if (r != CTL_PARSED)
 *                 return r > 0 ? 0 : r; */
int ctl_next_option(Ctl *c, const Verb *v, int argc, char **argv, const char *optstring,
                    const struct option *options, int n_min, int n_max, int *ret_opt);
/* The whole option loop of a command whose only option of its own is "--name VALUE" (name NULL: none), then
 * ctl_operands(). *ret_value is set to the last VALUE given, if any. Returns CTL_PARSED, CTL_DONE or
 * KEYDCTL_ERR_USAGE. */
int ctl_parse_value(Ctl *c, const Verb *v, int argc, char **argv, const char *name, const char **ret_value, int n_min,
                    int n_max);
/* The same for a command that has no options of its own. */
int ctl_parse_plain(Ctl *c, const Verb *v, int argc, char **argv, int n_min, int n_max);
/* Shows the reply of a command for people (without --json): name is the command's keyring operand, NULL if none.
 * Returns 0 or a negative errno (reported). */
typedef int (*CtlShow)(const Ctl *c, const char *name, const json_t *reply);
/* The whole of a command that has no options of its own and no operand (ctl_simple_call(), a request on path), or a
 * keyring NAME as its only operand (ctl_simple_keyring_call(), on "/v1/keyrings/NAME" + suffix, which may be NULL):
 * the command line, the request without a body, and the reply, printed as JSON with --json, else by show. Returns
 * what the command returns. */
int ctl_simple_call(Ctl *c, const Verb *v, int argc, char **argv, const char *method, const char *path, CtlShow show);
int ctl_simple_keyring_call(Ctl *c, const Verb *v, int argc, char **argv, const char *method, const char *suffix,
                            CtlShow show);
/* A request whose answer is a verdict, the boolean member key of the reply (verify, audit verify): 1 (true) or 0
 * (false) with *ret_reply, or a negative errno (reported; a reply without the verdict is KEYDCTL_ERR_UNREACHABLE). */
int ctl_call_verdict(Ctl *c, const char *path, const json_t *body, const char *key, json_t **ret_reply);
/* After the options: exactly n_min..n_max operands, else a usage error naming the command. A first operand that the
 * synopsis calls NAME must be a keyring name (ctl_check_keyring_name()). */
int ctl_operands(const Verb *v, int argc, char **argv, int n_min, int n_max);
void ctl_verb_help(const Verb *v);
/* A keyring name operand as keyd accepts it (keyd.conf(5)), else a usage error. */
int ctl_check_keyring_name(const char *name);
/* Parse a whole decimal number in [min, max] for option name, else a usage error. */
int ctl_parse_number(const char *name, const char *s, uint64_t min, uint64_t max, uint64_t *ret);
/* keydctl's one time syntax (keydctl(1), TIMES). A duration for option name: numbers with units, largest first
 * ("15m", "1h30m", "2d12h", "1w"), a bare number being seconds; in [min, max] seconds (min 0 allows "0"). An instant:
 * RFC 3339 ("2026-11-23T04:00:00Z", with a fraction or an offset), or "@N" for N seconds since the epoch (as a token's
 * exp). Else a usage error naming the option. */
int ctl_parse_duration(const char *name, const char *s, uint64_t min, uint64_t max, uint64_t *ret);
int ctl_parse_instant(const char *name, const char *s, int64_t *ret);

/* Output. A table: columns separated by two blanks, each as wide as its widest cell; control characters in cells are
 * shown as '?'; the last column is not padded. */
typedef struct Table Table;
Table *table_new(size_t n_columns, const char *const *headers);
Table *table_free(Table *t);
DEFINE_TRIVIAL_CLEANUP_FUNC(Table *, table_free);
#define _cleanup_table_ _cleanup_(table_freep)
/* Add a row of n_columns cells; NULL cells print as "-". 0 or -ENOMEM. */
int table_add_row(Table *t, const char *const *cells);
#define TABLE_ROW(t, ...) table_add_row((t), (const char *const[]){ __VA_ARGS__ })
size_t table_n_rows(const Table *t);
/* Align a column (of the first 32) to the right, header too: spans and counts that people compare. */
void table_align_right(Table *t, size_t column);
/* Print the header (unless skip_header) and the rows. widths (n_columns entries) may carry widths from an earlier
 * part of the same table (audit tail --follow): they are raised to fit and kept. */
void table_print(const Table *t, FILE *f, bool skip_header, size_t *widths);
/* The whole table on stdout, or, when it has no rows, the text of format instead. */
void table_show(const Table *t, const char *format, ...) _printf_(2, 3);

/* The JSON as keyd sent it, indented by two, and a newline. */
void print_json(const json_t *j);
/* Whether print_json() was called: the command's output is JSON already, and an error is not added to it. */
bool json_printed(void);
/* A string member, or NULL when absent, null or not a string. */
const char *json_str(const json_t *o, const char *key);
/* A text for a member of any type: strings as they are, null/absent as NULL, numbers and booleans and the rest as
 * compact JSON in buf (truncated to size). */
const char *json_text(const json_t *v, char *buf, size_t size);
/* Text with control characters replaced by '?', for a terminal; returns buf. */
char *sanitize(const char *s, char *buf, size_t size);

/* "2026-11-23T04:16:38Z" (also with a fraction, or an offset "+01:00") to seconds since the epoch. 0 or -EINVAL. */
int parse_rfc3339(const char *s, int64_t *ret);
/* RFC 3339 UTC with second precision into buf; returns buf. */
char *format_time(char *buf, size_t size, int64_t t);
/* A policy duration as keyd sends it: an integer of seconds or a string ("1d", "1h30m"); 0 allowed. 0 or -EINVAL. */
int parse_policy_duration(const json_t *v, int64_t *ret);
/* A signed span for people: "2h13m", "45s", "3d4h" (two units at most). Returns buf. */
char *format_span(char *buf, size_t size, int64_t seconds);

/* The plan (keydctl plan): every transition due between now and until, computed from the reply of GET /v1/keyrings
 * (an object with "keyrings", or an array of keyrings). *ret is {"now", "until", "transitions": [{"time", "at",
 * "keyring", "event", "kid", "overdue"}], "truncated"}; event is "activate", "retire", "expire" or "publish"; kid is
 * null for a key that does not exist yet. Keyrings whose reply lacks what the plan needs are named on stderr and
 * skipped. 0 or -ENOMEM. */
#define PLAN_ROTATIONS_MAX 100 /* projected rotations per keyring */
int plan_compute(const json_t *reply, int64_t now, int64_t until, json_t **ret);
int plan_print(const json_t *plan, int64_t now);

/* Read a whole file ("-": stdin) of at most max bytes into a new buffer (NUL-terminated, not counted). 0, -EFBIG, or
 * a negative errno; reported on stderr. */
int read_input(const char *path, size_t max, char **ret, size_t *ret_len);

/* The commands (keydctl-cmd-*.c). */
int verb_status(Ctl *c, const Verb *v, int argc, char **argv);
int verb_keyrings(Ctl *c, const Verb *v, int argc, char **argv);
int verb_keyring_show(Ctl *c, const Verb *v, int argc, char **argv);
int verb_keyring_create(Ctl *c, const Verb *v, int argc, char **argv);
int verb_plan(Ctl *c, const Verb *v, int argc, char **argv);
int verb_rotate(Ctl *c, const Verb *v, int argc, char **argv);
int verb_revoke(Ctl *c, const Verb *v, int argc, char **argv);
int verb_disable(Ctl *c, const Verb *v, int argc, char **argv);
int verb_rekey_all(Ctl *c, const Verb *v, int argc, char **argv);
int verb_mint(Ctl *c, const Verb *v, int argc, char **argv);
int verb_sign(Ctl *c, const Verb *v, int argc, char **argv);
int verb_verify(Ctl *c, const Verb *v, int argc, char **argv);
int verb_jwks(Ctl *c, const Verb *v, int argc, char **argv);
int verb_token_revoke(Ctl *c, const Verb *v, int argc, char **argv);
int verb_token_inspect(Ctl *c, const Verb *v, int argc, char **argv);
int verb_key_show(Ctl *c, const Verb *v, int argc, char **argv);
int verb_audit_tail(Ctl *c, const Verb *v, int argc, char **argv);
int verb_audit_verify(Ctl *c, const Verb *v, int argc, char **argv);
int verb_audit_export(Ctl *c, const Verb *v, int argc, char **argv);
/* A time given to an option name (--since, --before): seconds since the epoch (digits), RFC 3339, or a duration ago
 * ("15m", "2h30m", "7d") from now. Seconds since the epoch into *ret, else a usage error (reported). */
int parse_time_or_ago(const char *name, const char *s, int64_t now, int64_t *ret);
/* keydctl audit verify --segment FILE...: each segment checked (keys from the JWKS file jwks, or else from keyd), and
 * how they join each other and keyd's kept chain; a line each on stdout (not with --json). *ret is
 * {"ok", "segments": [{file, ok, first, last, checkpoint_seq, kid, message}], "joins": [{file, after, join}]}. 0 when
 * every one verifies and joins, KEYDCTL_ERR_NEGATIVE when not, another negative errno (reported). */
int audit_verify_segments(Ctl *c, char **files, size_t n, const char *jwks, json_t **ret);
/* The hash of record seq from the segments of audit_verify_segments()'s *ret that verified: 1 and the file, or 0. */
int segment_record_hash(const json_t *verified, uint64_t seq, char ret[65], const char **ret_file);
int verb_audit_prune(Ctl *c, const Verb *v, int argc, char **argv);

/* Audit segment files (keydctl-audit-segment.c, which says their format). Checking one: its range, where it joins
 * the segments before and after it, its checkpoint's kid, and why it does not verify. */
typedef struct Segment {
        const char *path;
        uint64_t first, last, checkpoint_seq;
        char prev_hash[65]; /* record first - 1's hash (64 '0' before record 1) */
        char last_hash[65]; /* record last's */
        char *kid;          /* of the checkpoint */
        json_t *jwk;        /* the key the segment carries (informative: never trusted alone) */
        char message[512];  /* why it does not verify */
} Segment;

/* The public JWK of kid from where the caller trusts keys (a JWKS file, keyd): a new reference, or NULL with why. */
typedef json_t *(*SegmentKeyLookup)(const char *kid, void *userdata, char *why, size_t size);
/* 0 when the segment verifies: every record's hash, the chain from prev_hash, and the checkpoint's signature with
 * the key lookup() gives for its kid. KEYDCTL_ERR_NEGATIVE with s->message saying why not; another negative errno
 * for a local failure (reported). */
int segment_check(const char *path, SegmentKeyLookup lookup, void *userdata, Segment *s);
void segment_done(Segment *s);
/* A record as GET /v1/audit gives it, as a segment holds it (time in µs). */
int segment_record_from_api(const json_t *api, json_t **ret);
/* A segment's record seq that follows prev_hash: 0 and its hash, or KEYDCTL_ERR_NEGATIVE and why. */
int segment_record_check(const json_t *rec, uint64_t seq, const char *prev_hash, char ret_hash[65], char *why,
                         size_t size);
/* A checkpoint {seq, hash, time, kid, jws} of a record whose hash is record_hash, against jwk: 0, or
 * KEYDCTL_ERR_NEGATIVE and why. */
int segment_checkpoint_check(const json_t *cp, const json_t *jwk, const char *record_hash, char *why, size_t size);
/* A new segment file: written to a temporary file beside path, then linked to path (never over a file), synced. */
typedef struct SegmentWriter SegmentWriter;
int segment_writer_open(const char *path, SegmentWriter **ret);
/* One line: o as compact JSON. */
int segment_writer_line(SegmentWriter *w, const json_t *o);
/* Sync, put in place, and free w: the file's SHA-256 in hex. */
int segment_writer_commit(SegmentWriter *w, char sha256[65]);
void segment_writer_abort(SegmentWriter *w);

/* Every keyring, page after page of GET /v1/keyrings?after=&limit= (keydctl-cmd-keyrings.c): *ret is
 * {"keyrings": [...]}, as one reply. 0 or a negative errno (reported). */
int ctl_fetch_keyrings(Ctl *c, json_t **ret);

/* Kids as operators give them (keydctl-keys.c): the whole kid, or a prefix of it of at least KID_PREFIX_MIN
 * characters (keydctl keyrings shows 12), unique among every keyring's keys. */
#define KID_PREFIX_MIN 8
#define KID_MAX 64
/* Whether s is made of base64url characters only (A-Z a-z 0-9 - _), as kids are. */
bool base64url_text(const char *s);
/* A kid or kid prefix as keydctl accepts one: base64url, KID_PREFIX_MIN to KID_MAX characters; else a usage error. */
int ctl_check_kid(const char *kid);
/* The key that kid (ctl_check_kid()) names: a key whose kid is kid, else the only one whose kid starts with it,
 * among the keys of every keyring (ctl_fetch_keyrings(), into *ret_keyrings, which the other two point into).
 * No such key: KEYDCTL_ERR_NOT_FOUND; several: KEYDCTL_ERR_USAGE naming them (reported). */
int ctl_resolve_kid(Ctl *c, const char *kid, json_t **ret_keyrings, const json_t **ret_ring, const json_t **ret_key);

/* Shared by the commands (keydctl-cmd-keyrings.c): one keyring in full, and the first of a keyring's keys (as keyd
 * sends a keyring) in a state, or NULL. */
void print_keyring(const json_t *ring);
const json_t *keyring_key_in_state(const json_t *ring, const char *state);
