/* SPDX-License-Identifier: MIT */
/* keydctl: the operator CLI of keyd. Global options, the command table and dispatch; the only place that exits. */
#include <stdarg.h>
#include <stdio.h>

#include "common/time-util.h"
#include "keyd/keydctl-internal.h"
#include "rotation/lifecycle.h"
#include "rotation/policy.h"

#define KEYRING_POLICY_HELP                                                                                    \
        "      --kind issuer|agent       Kind (default issuer)\n"                                              \
        "      --owner-uid N             Owner of an agent keyring (required for agent keyrings)\n"            \
        "      --alg A                   ES256 (default), ES384, RS256, PS256, EdDSA\n"                        \
        "      --rsa-bits N              2048, 3072 or 4096 (RS256 and PS256 only)\n"                          \
        "      --rotation-period D       Durations: 15m, 1h30m, 2d12h, 1w (a bare number is seconds)\n"        \
        "      --prepublish D\n"                                                                               \
        "      --token-ttl-max D\n"                                                                            \
        "      --default-ttl D\n"                                                                              \
        "      --clock-skew D\n"                                                                               \
        "      --issuer URL              The iss claim of minted tokens: an https URL for issuer keyrings\n"   \
        "                                (http only for 127.0.0.1, [::1] or localhost)\n"                      \
        "      --token-type T            The typ header of minted tokens (default JWT)\n"                      \
        "      --sign-users LIST         Users who may sign (names separated by commas or blanks; repeatable)\n" \
        "      --sign-groups LIST        Groups whose members may sign (repeatable)\n"                         \
        "      --publish yes|no          Serve the public keys in the JWKS\n"                                  \
        "      --allow-raw-sign yes|no   Issuer keyrings: let the sign role use sign and JWS with the key\n"   \
        "A keyring's JWKS file (jwks-file) is set in keyd.conf only.\n"

static const Verb verbs[] = {
        { "status", "", "Health of keyd; exit 1 unless ok",
          "Health of keyd: ok, degraded or unavailable, the number of keyrings, the degraded ones, the token,\n"
          "the version. Exit status 1 when keyd is not ok (a degraded keyring, the token down, the database\n"
          "not writable).\n",
          verb_status },
        { "keyrings", "", "List the keyrings",
          "The keyrings: NAME KIND ALG STATE ACTIVE-KID NEXT-TRANSITION.\n", verb_keyrings },
        { "keyring show", "NAME", "One keyring: policy, keys and their times",
          "One keyring: its policy, and its keys with their times.\n", verb_keyring_show },
        { "keyring create", "NAME [OPTIONS]", "Create a keyring (admin)",
          "Create a keyring (admin). Unset policy fields take keyd's defaults.\n" KEYRING_POLICY_HELP,
          verb_keyring_create },
        { "plan", "[--within D]", "Every key transition due within D",
          "Every key transition due within D (1s to 365d, default 24h), computed from the keyrings' keys and\n"
          "policies: rotations (activate, retire, publish) and expirations.\n"
          "      --within D                How far to look ahead: 2h, 1d12h, 1w\n",
          verb_plan },
        { "rotate", "NAME [--force] [--reason R]", "Rotate a keyring now (admin)",
          "Rotate a keyring now (admin): its next key becomes active, the active key retires, a new next key\n"
          "is published. Refused (exit 1) when the next key was published less than prepublish ago.\n"
          "      --force                   Rotate even so (verifiers may not have the new key yet)\n"
          "      --reason R                Recorded in the audit log\n",
          verb_rotate },
        { "revoke", "KID --reason R", "Emergency revocation of a key (admin)",
          "Emergency revocation of a key (admin): out of the JWKS at once, refused by verify. Revoking the\n"
          "active key promotes the next key and keyd publishes a new next key; revoking the next key publishes\n"
          "a new one. KID is the whole kid or a unique prefix of at least 8 characters (keydctl keyrings shows\n"
          "12), also one that starts with \"-\" (or give it after --). A key revoked already is no error: keydctl\n"
          "says when it was. Then it shows the key that signs now, when that key was published, and when the\n"
          "verifiers' JWKS caches have dropped the revoked key; a warning when the signing key was published\n"
          "less than the keyring's prepublish ago (verifiers may not have it yet).\n"
          "      --reason R                A reason code, then free text for the audit log if you like (an\n"
          "                                incident reference): \"key_compromise: INC-4711 PIN leaked\".\n"
          "                                Codes: " REVOKE_REASONS_TEXT " (required)\n",
          verb_revoke },
        { "disable", "NAME", "Revoke every key of a keyring (admin)",
          "Revoke every key of a keyring (admin): retire an agent.\n", verb_disable },
        { "rekey-all", "--reason R [--before TIME]", "Replace every key of every keyring (admin)",
          "Replace every key of every keyring (admin), when the token's PIN or its keys leaked. In each keyring:\n"
          "revoke the next key (keyd publishes a new one), then the active key (the new next key signs from then\n"
          "on, and another is published), then the retired keys that still verify; so no key created before the\n"
          "run signs or verifies any more. Disabled keyrings have no key left to replace. Prints what happened\n"
          "in each keyring; exit status 1 if any keyring failed, and how to complete the run: running it again\n"
          "does, and with --before TIME (as printed) it leaves the keys made since alone.\n"
          "      --reason R                Free text for the audit log, an incident reference (required). The\n"
          "                                reason code is key_compromise, unless R starts with another code\n"
          "      --before TIME             Replace the keys created before TIME (RFC 3339, or @SECONDS since\n"
          "                                the epoch; default: when the run starts)\n",
          verb_rekey_all },
        { "mint", "NAME --sub S [OPTIONS]", "Mint a JWT; prints the token alone",
          "Mint a JWT with the keyring's active key; prints the token alone (--json: the whole reply).\n"
          "      --sub S                   Subject (required)\n"
          "      --aud A                   Audience (repeatable)\n"
          "      --ttl D                   Lifetime: 15m, 1h30m (a bare number is seconds); at most\n"
          "                                token-ttl-max\n"
          "      --scope S                 The scope claim\n"
          "      --claim K=V               A custom claim; V is JSON if it parses, else a string (repeatable)\n"
          "      --act JSON                RFC 8693 actor claim, a JSON object\n"
          "      --bind-agent NAME         Bind the token to an agent keyring's active key (cnf.jkt)\n",
          verb_mint },
        { "sign", "NAME FILE", "Sign FILE (\"-\": stdin); prints the signature",
          "Sign the bytes of FILE (\"-\": standard input, at most 64 KiB) with the keyring's active key;\n"
          "prints the base64url signature (--json: the whole reply with kid and alg).\n",
          verb_sign },
        { "verify", "[TOKEN] [OPTIONS]", "Verify a token; exit 1 if invalid",
          "Verify a compact JWS/JWT given as TOKEN or on standard input; prints the verdict and the claims.\n"
          "Exit status 1 when the token is invalid.\n"
          "      --aud A                   Require this aud (also --audience A)\n"
          "      --issuer I                Require this iss\n"
          "      --keyring NAME            Accept only keys of this keyring (repeatable)\n"
          "      --leeway D                Clock leeway, 0 to 5m: 30s, 2m (a bare number is seconds)\n",
          verb_verify },
        { "token inspect", "[TOKEN]", "Decode a token WITHOUT verifying it",
          "Decode a compact JWS/JWT given as TOKEN or on standard input and show its header and claims,\n"
          "WITHOUT verifying anything (keydctl verify does), and what keyd knows of its kid: the keyring and\n"
          "the key's state. Exit status 1 when it is not a compact JWS.\n",
          verb_token_inspect },
        { "jwks", "NAME", "The keyring's JWKS (JSON)",
          "The keyring's JWKS, as JSON (with or without --json).\n", verb_jwks },
        { "key show", "KID", "One key: state, times, JWK, PKCS#11 URI",
          "One key: its keyring, alg, state and times, its public JWK, and the RFC 7512 PKCS#11 URI of its\n"
          "private key object in the token (for standard PKCS#11 tools). KID is the whole kid or a unique\n"
          "prefix of at least 8 characters.\n",
          verb_key_show },
        { "token revoke", "JTI [--exp TIME] [--keyring K]", "Deny one token until its exp (admin)",
          "Deny one token by its jti until its exp (admin).\n"
          "      --exp TIME                The token's exp: RFC 3339, or @SECONDS since the epoch as in the\n"
          "                                token (default: keyd's longest token-ttl-max plus clock-skew from\n"
          "                                now)\n"
          "      --keyring K               The keyring that minted it\n",
          verb_token_revoke },
        { "audit tail", "[-n N] [-f] [OPTIONS]", "The last audit records (admin)",
          "The last audit records (admin), those that match every filter given (keyd filters them).\n"
          "  -n, --lines N                 How many (1 to 100000, default 20)\n"
          "      --after SEQ               The records after SEQ instead of the last ones\n"
          "  -f, --follow                  Keep printing new records (once a second) until interrupted;\n"
          "                                with --json one record per line\n"
          "      --keyring NAME            Filters: the keyring,\n"
          "      --kid KID                 the whole kid,\n"
          "      --sub S                   the subject of a mint (detail.sub),\n"
          "      --action A                the action (token.mint, authz.denied, api.refused, ...),\n"
          "      --uid UID                 the caller's uid or user name (-1: keyd itself),\n"
          "      --since TIME              at or after TIME, and before TIME: RFC 3339, seconds since the\n"
          "      --until TIME              epoch, or a duration ago (15m, 2h, 7d)\n",
          verb_audit_tail },
        { "audit verify", "[--anchor FILE] [--segment FILE...]", "Verify the audit chain (admin); exit 1 if broken",
          "Walk the audit chain and its signed checkpoints (admin); exit status 1 when it does not verify,\n"
          "naming the first record that does not match.\n"
          "      --anchor FILE             Also check the chain against keyd's anchor file ([audit] anchor-file):\n"
          "                                every anchored seq must be in the chain with the anchored hash, in\n"
          "                                increasing order; names the first anchor that does not match. Anchors\n"
          "                                of pruned records are checked against the segments given\n"
          "      --segment                 The operands are exported segment files: check each one (every\n"
          "                                record's hash, the checkpoint that seals it, with the key of its kid)\n"
          "                                and how they join each other and keyd's log, without keyd's database\n"
          "      --jwks FILE               Take the checkpoints' keys from this JWKS, not from keyd (offline)\n",
          verb_audit_verify },
        { "audit export", "--before SEQ|TIME FILE", "Export the start of the audit log to a segment (admin)",
          "Write the audit records from the first one keyd keeps up to (not including) --before to FILE, a new\n"
          "segment (JSON Lines) with the signed checkpoint that seals it (keyd signs one now if none covers\n"
          "its last record yet), check it, and have keyd record the range as exported: what audit prune may\n"
          "remove. FILE must not exist.\n"
          "      --before SEQ|TIME         A sequence number (digits), or a time: RFC 3339 or a duration ago\n"
          "                                (90d); the segment ends before the first record at or after it\n",
          verb_audit_export },
        { "audit prune", "--before SEQ", "Remove exported audit records from keyd (admin)",
          "Remove the audit records before SEQ from keyd's database (admin), which audit export must have\n"
          "exported (keyd refuses otherwise). The kept chain starts after the last removed record, which keyd\n"
          "keeps as its anchor; audit verify checks it from there. Audited (audit.prune).\n"
          "      --before SEQ              The first record to keep\n",
          verb_audit_prune },
};

static void help(void) {
        printf("Usage: keydctl [OPTIONS] COMMAND [ARGS...]\n"
               "\n"
               "Operate keyd, the key-management and rotation daemon, through its local API socket.\n"
               "\n"
               "Commands:\n");
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++) {
                char line[80];
                (void) snprintf(line, sizeof line, "%s%s%s", verbs[i].name, *verbs[i].args ? " " : "",
                                verbs[i].args);
                printf("  %-41s  %s\n", line, verbs[i].summary);
        }
        printf("\n"
               "Options (also accepted after COMMAND):\n"
               "      --socket PATH   keyd's API socket (default: $KEYD_SOCKET, else " KEYDCTL_DEFAULT_SOCKET ")\n"
               "      --json          Print keyd's JSON replies (indented) instead of tables, and errors as\n"
               "                      JSON on standard output (the default with KEYDCTL_FORMAT=json)\n"
               "      --timeout D     Give up on a request after D (30s, 2m; default 30s)\n"
               "  -h, --help          Show this help; keydctl COMMAND --help shows a command's\n"
               "      --version       Show the version\n"
               "\n"
               "Times: durations as 15m, 1h30m, 2d12h, 1w (a bare number is seconds); instants in RFC 3339\n"
               "(2026-11-23T04:00:00Z), or @SECONDS since the epoch.\n"
               "\n"
               "Exit status:\n"
               "  0  success\n"
               "  1  refused by keyd (400, 413, 429, 503), keyd not ok (status), token invalid, audit chain\n"
               "     broken, or a local error\n"
               "  2  usage error\n"
               "  3  keyd cannot be reached: no socket, connection refused, timeout, another 5xx, a malformed reply\n"
               "  4  forbidden (403): the caller lacks the role\n"
               "  5  not found (404), or no key has the kid given\n"
               "  6  conflict (409): the state does not allow it\n"
               "  7  unprocessable (422): keyd refuses what it was asked (a policy, a signing input)\n"
               "\n"
               "See keydctl(1).\n");
}

/* "keydctl GROUP --help", "keydctl help GROUP": the commands of a group ("audit", "keyring", "token"). 0 if shown,
 * -ENOENT if word is no group. */
static int group_help(const char *word) {
        bool found = false;

        for (size_t i = 0; i < ELEMENTSOF(verbs); i++) {
                const char *rest = startswith(verbs[i].name, word);
                char line[80];
                if (!rest || *rest != ' ')
                        continue;
                if (!found)
                        printf("Usage: keydctl [OPTIONS] %s COMMAND [ARGS...]\n\nCommands:\n", word);
                found = true;
                (void) snprintf(line, sizeof line, "%s%s%s", verbs[i].name, *verbs[i].args ? " " : "", verbs[i].args);
                printf("  %-41s  %s\n", line, verbs[i].summary);
        }
        if (!found)
                return -ENOENT;
        printf("\nkeydctl %s COMMAND --help shows a command's options; see keydctl --help.\n", word);
        return 0;
}

void ctl_verb_help(const Verb *v) {
        printf("Usage: keydctl [OPTIONS] %s%s%s\n\n%s", v->name, *v->args ? " " : "", v->args, v->help);
        printf("\nGlobal options --socket PATH, --json, --timeout D: see keydctl --help.\n");
}

/* The first error of the run, for --json (main()). */
static struct {
        bool json;
        int error; /* 0: none yet */
        long status;
        char code[64];
        char message[2048];
} failure;

void ctl_set_json_errors(bool on) {
        failure.json = on;
}

int ctl_fail(int error, const char *code, long status, const char *message) {
        char clean[2048], clean_code[64];

        if (code)
                fprintf(stderr, "keydctl: %s (%s)\n", sanitize(message, clean, sizeof clean),
                        sanitize(code, clean_code, sizeof clean_code));
        else
                fprintf(stderr, "keydctl: %s\n", sanitize(message, clean, sizeof clean));
        if (error != 0 && failure.error == 0) {
                failure.error = error;
                failure.status = status;
                (void) snprintf(failure.code, sizeof failure.code, "%s", code ?: "");
                (void) snprintf(failure.message, sizeof failure.message, "%s", message);
        }
        return error;
}

int ctl_error(int error, const char *format, ...) {
        char msg[2048];
        va_list ap;

        va_start(ap, format);
        (void) vsnprintf(msg, sizeof msg, format, ap);
        va_end(ap);
        return ctl_fail(error, NULL, 0, msg);
}

int ctl_parse_duration(const char *name, const char *s, uint64_t min, uint64_t max, uint64_t *ret) {
        char lo[32], hi[32];
        const char *why = NULL;
        usec_t d = 0;

        if (!(min == 0 && (streq(s, "0") || streq(s, "0s"))) &&
            (parse_duration_explain(s, &d, &why) < 0 || (uint64_t) (d / USEC_PER_SEC) < min ||
             (uint64_t) (d / USEC_PER_SEC) > max))
                return ctl_error(KEYDCTL_ERR_USAGE,
                                 "%s: '%s' is not a duration from %s to %s%s%s (write 15m, 1h30m, 2d12h; a bare number "
                                 "is seconds)",
                                 name, s, format_span(lo, sizeof lo, (int64_t) min),
                                 format_span(hi, sizeof hi, (int64_t) max), why ? ": " : "", why ?: "");
        *ret = (uint64_t) (d / USEC_PER_SEC);
        return 0;
}

int ctl_parse_instant(const char *name, const char *s, int64_t *ret) {
        uint64_t n;

        if (parse_rfc3339(s, ret) >= 0)
                return 0;
        if (s[0] == '@' && parse_uint64(s + 1, 253402300799ULL /* 9999-12-31 */, &n) >= 0) {
                *ret = (int64_t) n;
                return 0;
        }
        /* A bare number is a duration everywhere else: seconds since the epoch say so with '@'. */
        if (*s && !s[strspn(s, "0123456789")])
                return ctl_error(KEYDCTL_ERR_USAGE, "%s: '%s' is not a time: for seconds since the epoch write @%s",
                                 name, s, s);
        return ctl_error(KEYDCTL_ERR_USAGE, "%s: '%s' is not a time: RFC 3339 (2026-11-23T04:00:00Z), or @SECONDS",
                         name, s);
}

int ctl_parse_number(const char *name, const char *s, uint64_t min, uint64_t max, uint64_t *ret) {
        uint64_t v;
        if (parse_uint64(s, max, &v) < 0 || v < min)
                return ctl_error(KEYDCTL_ERR_USAGE, "%s: '%s' is not a whole number from %llu to %llu", name, s,
                                 (unsigned long long) min, (unsigned long long) max);
        *ret = v;
        return 0;
}

int ctl_check_keyring_name(const char *name) {
        if (!keyring_name_valid(name))
                return ctl_error(KEYDCTL_ERR_USAGE,
                                 "'%s' is not a keyring name (1 to 64 of A-Z a-z 0-9 . _ -, not starting with . or -)",
                                 name);
        return 0;
}

int ctl_common_option(Ctl *c, const Verb *v, int opt, int argc, char **argv) {
        const char *word = v ? v->name : NULL;
        const char *given = optind > 0 && optind <= argc ? argv[optind - 1] : "?";
        uint64_t t = 0;
        int r;

        switch (opt) {
        case 'h':
                if (v)
                        ctl_verb_help(v);
                else
                        help();
                return CTL_DONE;
        case CTL_OPT_JSON:
                c->json = true;
                ctl_set_json_errors(true);
                return CTL_PARSED;
        case CTL_OPT_SOCKET:
                if (!*optarg)
                        return ctl_error(KEYDCTL_ERR_USAGE, "--socket needs a path");
                c->socket = optarg;
                return CTL_PARSED;
        case CTL_OPT_TIMEOUT:
                r = ctl_parse_duration("--timeout", optarg, 1, KEYDCTL_TIMEOUT_MAX, &t);
                if (r < 0)
                        return r;
                c->timeout = (unsigned) t;
                return CTL_PARSED;
        case ':':
                return ctl_error(KEYDCTL_ERR_USAGE, "option '%s' needs a value (see keydctl %s%s--help)", given,
                                 word ?: "", word ? " " : "");
        default:
                if (optopt > 0 && optopt < 0x100 && optopt != '?')
                        return ctl_error(KEYDCTL_ERR_USAGE, "unknown option '-%c' (see keydctl %s%s--help)", optopt,
                                         word ?: "", word ? " " : "");
                return ctl_error(KEYDCTL_ERR_USAGE, "unknown option '%s' (see keydctl %s%s--help)", given,
                                 word ?: "", word ? " " : "");
        }
}

int ctl_operands(const Verb *v, int argc, char **argv, int n_min, int n_max) {
        int n = argc - optind;
        if (n < n_min)
                return ctl_error(KEYDCTL_ERR_USAGE, "missing operand: keydctl %s %s", v->name, v->args);
        if (n > n_max)
                return ctl_error(KEYDCTL_ERR_USAGE, "unexpected operand '%s' (usage: keydctl %s %s)",
                                 argv[optind + n_max], v->name, v->args);
        if (n > 0 && startswith(v->args, "NAME"))
                return ctl_check_keyring_name(argv[optind]);
        return 0;
}

/* The long option that "--name" or "--name=value" (arg without its dashes) names as getopt_long() reads it: the
 * option of that exact name, else the one it abbreviates; NULL for none, or for an abbreviation of several. */
static const struct option *long_option(const struct option *options, const char *arg) {
        size_t len = strcspn(arg, "=");
        const struct option *found = NULL;
        unsigned n = 0;

        for (const struct option *o = options; o->name; o++) {
                if (strncmp(o->name, arg, len) != 0)
                        continue;
                if (strlen(o->name) == len)
                        return o;
                found = o;
                n++;
        }
        return n == 1 ? found : NULL;
}

/* Whether every character of a cluster "-abc" is one of the command's short options. */
static bool short_cluster(const char *cluster, const char *optstring) {
        for (const char *p = cluster; *p; p++) {
                const char *o = *p == ':' ? NULL : strchr(optstring, *p);
                if (!o)
                        return false;
                if (o[1] == ':')
                        return true; /* the rest is its value */
        }
        return true;
}

/* Whether arg, which starts with "-", is an operand of a command whose operand is a KID or a JTI: kids are base64url
 * and may start with "-" (and so may keyd's jtis), and getopt_long() would take them for options ("unknown option
 * '-8'"). It is one when it is base64url and no option of the command: a cluster of the command's short options is
 * an option ("-h"), and so is "--x" that names or abbreviates a long option, or that is shorter than a kid prefix
 * (then getopt_long() reports it: "--jsn" is a typo, not a kid). */
static bool dash_operand(const Verb *v, const char *arg, const char *optstring, const struct option *options) {
        if (!startswith(v->args, "KID") && !startswith(v->args, "JTI"))
                return false;
        if (!base64url_text(arg) || streq(arg, "-") || streq(arg, "--"))
                return false;
        if (arg[1] != '-')
                return !short_cluster(arg + 1, optstring);
        return !long_option(options, arg + 2) && strlen(arg) >= KID_PREFIX_MIN;
}

/* Before getopt_long() reads a command's line: its options (with their values) first and its operands after them,
 * and getopt_long() is given the options only. So options may follow operands whatever POSIXLY_CORRECT says, an
 * operand that looks like an option is not taken for one where it is a kid or jti (dash_operand()), and "--" ends
 * the options (it stays as the last argument getopt_long() sees, which skips it). The order of the operands among
 * themselves is kept. Returns how many arguments getopt_long() is to see: argv[0], the options, "--" if given. */
static int sort_arguments(const Verb *v, int argc, char **argv, const char *optstring, const struct option *options) {
        _cleanup_free_ char **opts = calloc((size_t) argc + 1, sizeof *opts),
                            **operands = calloc((size_t) argc + 1, sizeof *operands);
        int n_opts = 0, n_operands = 0;
        char *end = NULL;

        if (!opts || !operands)
                return argc; /* getopt_long() as it is: still right, for all but a kid that starts with "-" */
        opts[n_opts++] = argv[0];
        for (int i = 1; i < argc; i++) {
                const char *a = argv[i];
                const struct option *o;
                bool value_follows = false;

                if (end || a[0] != '-' || streq(a, "-") || dash_operand(v, a, optstring, options)) {
                        operands[n_operands++] = argv[i];
                        continue;
                }
                if (streq(a, "--")) {
                        end = argv[i];
                        continue;
                }
                opts[n_opts++] = argv[i];
                if (a[1] == '-') {
                        o = long_option(options, a + 2);
                        value_follows = o && o->has_arg == required_argument && !strchr(a, '=');
                } else
                        for (const char *p = a + 1; *p; p++) {
                                const char *so = *p == ':' ? NULL : strchr(optstring, *p);
                                if (so && so[1] == ':') {
                                        value_follows = p[1] == 0;
                                        break;
                                }
                        }
                if (value_follows && i + 1 < argc)
                        opts[n_opts++] = argv[++i];
        }
        if (end)
                opts[n_opts++] = end;
        memcpy(argv, opts, (size_t) n_opts * sizeof *argv);
        memcpy(argv + n_opts, operands, (size_t) n_operands * sizeof *argv);
        return n_opts;
}

int ctl_next_option(Ctl *c, const Verb *v, int argc, char **argv, const char *optstring,
                    const struct option *options, int n_min, int n_max, int *ret_opt) {
        int opt, r;

        /* optind 0: the first call for this command (run() re-initialises getopt for it). */
        if (optind == 0)
                c->n_opts = sort_arguments(v, argc, argv, optstring, options);
        while ((opt = getopt_long(c->n_opts, argv, optstring, options, NULL)) >= 0) {
                if (opt != 'h' && opt != '?' && opt != ':' && (opt < CTL_OPT_JSON || opt >= CTL_OPT_FIRST_LOCAL)) {
                        *ret_opt = opt;
                        return CTL_OPTION;
                }
                r = ctl_common_option(c, v, opt, argc, argv);
                if (r != CTL_PARSED)
                        return r;
        }
        return ctl_operands(v, argc, argv, n_min, n_max);
}

int ctl_parse_value(Ctl *c, const Verb *v, int argc, char **argv, const char *name, const char **ret_value, int n_min,
                    int n_max) {
        /* Without a name, its entry ends the table. */
        const struct option options[] = {
                CTL_COMMON_OPTIONS,
                { name, required_argument, NULL, CTL_OPT_FIRST_LOCAL },
                {},
        };
        int opt, r;

        while ((r = ctl_next_option(c, v, argc, argv, ":h", options, n_min, n_max, &opt)) == CTL_OPTION)
                *ret_value = optarg;
        return r;
}

int ctl_parse_plain(Ctl *c, const Verb *v, int argc, char **argv, int n_min, int n_max) {
        return ctl_parse_value(c, v, argc, argv, NULL, NULL, n_min, n_max);
}

/* ctl_simple_call() and ctl_simple_keyring_call() once the command line is read: name is the keyring, or NULL. */
static int simple_call(Ctl *c, const char *method, const char *path, const char *name, CtlShow show) {
        _cleanup_json_ json_t *reply = NULL;
        int r;

        r = name ? ctl_keyring_call(c, method, name, path, NULL, &reply) : ctl_call(c, method, path, NULL, &reply);
        if (r < 0)
                return r;
        if (c->json) {
                print_json(reply);
                return 0;
        }
        return show(c, name, reply);
}

int ctl_simple_call(Ctl *c, const Verb *v, int argc, char **argv, const char *method, const char *path, CtlShow show) {
        int r = ctl_parse_plain(c, v, argc, argv, 0, 0);
        if (r != CTL_PARSED)
                return r > 0 ? 0 : r;
        return simple_call(c, method, path, NULL, show);
}

int ctl_simple_keyring_call(Ctl *c, const Verb *v, int argc, char **argv, const char *method, const char *suffix,
                            CtlShow show) {
        int r = ctl_parse_plain(c, v, argc, argv, 1, 1);
        if (r != CTL_PARSED)
                return r > 0 ? 0 : r;
        return simple_call(c, method, suffix, argv[optind], show);
}

static const Verb *find_verb(int *argc, char ***argv) {
        char **a = *argv;
        bool group = false;

        for (size_t i = 0; i < ELEMENTSOF(verbs); i++) {
                const char *rest = startswith(verbs[i].name, a[0]);
                if (!rest)
                        continue;
                if (*rest == 0)
                        return &verbs[i];
                if (*rest == ' ') {
                        group = true;
                        if (*argc > 1 && streq(rest + 1, a[1])) {
                                (*argc)--;
                                (*argv)++;
                                return &verbs[i];
                        }
                }
        }
        if (group) {
                char subs[128] = "";
                for (size_t i = 0; i < ELEMENTSOF(verbs); i++) {
                        const char *rest = startswith(verbs[i].name, a[0]);
                        if (rest && *rest == ' ')
                                (void) snprintf(subs + strlen(subs), sizeof subs - strlen(subs), "%s%s",
                                                *subs ? ", " : "", rest + 1);
                }
                if (*argc > 1 && a[1][0] != '-')
                        ctl_error(KEYDCTL_ERR_USAGE, "unknown command '%s %s'; '%s' takes: %s", a[0], a[1], a[0], subs);
                else
                        ctl_error(KEYDCTL_ERR_USAGE, "'%s' needs a subcommand: %s", a[0], subs);
        } else
                ctl_error(KEYDCTL_ERR_USAGE, "unknown command '%s' (see keydctl --help)", a[0]);
        return NULL;
}

/* KEYDCTL_FORMAT=json makes --json the default; and --json anywhere on the command line makes errors JSON from the
 * start, before the option itself is read (a usage error may come first). */
static int output_format(Ctl *c, int argc, char **argv) {
        const char *f = getenv("KEYDCTL_FORMAT");

        for (int i = 1; i < argc && !streq(argv[i], "--"); i++)
                if (streq(argv[i], "--json"))
                        ctl_set_json_errors(true);
        if (!f || !*f || streq(f, "table"))
                return 0;
        if (!streq(f, "json"))
                return ctl_error(KEYDCTL_ERR_USAGE, "KEYDCTL_FORMAT: '%s' is not json or table", f);
        c->json = true;
        ctl_set_json_errors(true);
        return 0;
}

static int run(int argc, char **argv) {
        static const struct option options[] = {
                CTL_COMMON_OPTIONS,
                { "version", no_argument, NULL, CTL_OPT_VERSION },
                {},
        };
        _cleanup_(ctl_done) Ctl c = { .timeout = KEYDCTL_DEFAULT_TIMEOUT };
        const char *env = getenv("KEYD_SOCKET");
        const Verb *v;
        int opt, r;

        c.socket = env && *env ? env : KEYDCTL_DEFAULT_SOCKET;
        r = output_format(&c, argc, argv);
        if (r < 0)
                return r;
        opterr = 0;
        while ((opt = getopt_long(argc, argv, "+:h", options, NULL)) >= 0) {
                if (opt == CTL_OPT_VERSION) {
                        printf("keydctl " KEYD_VERSION "\n");
                        return 0;
                }
                r = ctl_common_option(&c, NULL, opt, argc, argv);
                if (r != CTL_PARSED)
                        return r > 0 ? 0 : r;
        }
        argc -= optind;
        argv += optind;
        if (argc == 0)
                return ctl_error(KEYDCTL_ERR_USAGE, "no command given (see keydctl --help)");
        if (streq(argv[0], "help")) {
                if (argc == 1) {
                        help();
                        return 0;
                }
                argc--;
                argv++;
                if (argc == 1 && group_help(argv[0]) >= 0)
                        return 0;
                v = find_verb(&argc, &argv);
                if (!v)
                        return KEYDCTL_ERR_USAGE;
                ctl_verb_help(v);
                return 0;
        }
        /* "keydctl audit --help": a group's commands (a command's own --help is the command's to show). */
        if (argc > 1 && (streq(argv[1], "--help") || streq(argv[1], "-h")) && group_help(argv[0]) >= 0)
                return 0;
        v = find_verb(&argc, &argv);
        if (!v)
                return KEYDCTL_ERR_USAGE;
        optind = 0; /* re-initialise getopt for the command's own options */
        return v->run(&c, v, argc, argv);
}

/* Each error that has an exit status of its own (keydctl-internal.h), and its code in a JSON error. */
static const struct {
        int error, exit;
        const char *code;
} exits[] = {
        { KEYDCTL_ERR_USAGE, KEYDCTL_EXIT_USAGE, "usage" },
        { KEYDCTL_ERR_UNREACHABLE, KEYDCTL_EXIT_UNREACHABLE, "unreachable" },
        { KEYDCTL_ERR_FORBIDDEN, KEYDCTL_EXIT_FORBIDDEN, "forbidden" },
        { KEYDCTL_ERR_NOT_FOUND, KEYDCTL_EXIT_NOT_FOUND, "not_found" },
        { KEYDCTL_ERR_CONFLICT, KEYDCTL_EXIT_CONFLICT, "conflict" },
        { KEYDCTL_ERR_UNPROCESSABLE, KEYDCTL_EXIT_UNPROCESSABLE, "unprocessable" },
        { KEYDCTL_ERR_REFUSED, KEYDCTL_EXIT_REFUSED, "refused" },
        { KEYDCTL_ERR_NEGATIVE, KEYDCTL_EXIT_REFUSED, "invalid" },
};

/* With --json, a command that failed without printing JSON of its own prints its error as JSON on stdout, where a
 * script reads its output: {"error": CODE, "message": TEXT, "exit": N}, with keyd's HTTP "status" when keyd sent
 * the error. CODE is keyd's own error code, else the kind of failure (exits[], or "failed" for a local one). */
static void print_json_error(int r, int exit_status) {
        const char *code = failure.code[0] ? failure.code : "failed";
        _cleanup_json_ json_t *o = NULL;

        for (size_t i = 0; !failure.code[0] && i < ELEMENTSOF(exits); i++)
                if (exits[i].error == r)
                        code = exits[i].code;
        o = json_pack("{s:s, s:s, s:i}", "error", code, "message", failure.message[0] ? failure.message : strerror(-r),
                      "exit", exit_status);
        if (o && failure.status > 0)
                (void) json_object_set_new(o, "status", json_integer(failure.status));
        if (o)
                print_json(o);
}

int main(int argc, char **argv) {
        int r = run(argc, argv), status = KEYDCTL_EXIT_REFUSED;

        if (fflush(stdout) != 0 && r >= 0)
                r = ctl_error(-EIO, "cannot write the output: %m");
        if (r >= 0)
                return KEYDCTL_EXIT_OK;
        for (size_t i = 0; i < ELEMENTSOF(exits); i++)
                if (exits[i].error == r)
                        status = exits[i].exit;
        if (failure.json && !json_printed()) {
                print_json_error(r, status);
                (void) fflush(stdout);
        }
        return status;
}
