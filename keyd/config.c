/* SPDX-License-Identifier: MIT */
/* keyd.conf: libinih splits the lines, one table maps [section] key to a parser and a field of Config, and
 * [keyring NAME] sections fill a Policy through policy_set(). Every error is collected, with its line. */
#include <arpa/inet.h>
#include <ctype.h>
#include <inttypes.h>
#include <ini.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <strings.h>
#include <sys/un.h>

#include "common/macro.h"
#include "common/strv.h"
#include "keyd/config.h"
#include "pkcs11/hsm.h"

#define UID_MAX_VALID ((uint64_t) UINT32_MAX - 1) /* (uid_t) -1 is "no uid" */

typedef struct ConfigItem ConfigItem;
/* 0, -EINVAL with *ret_error set to an allocated "key: what is wrong (what is expected)", or -ENOMEM. */
typedef int (*ConfigParser)(const ConfigItem *i, const char *value, void *field, char **ret_error);

struct ConfigItem {
        const char *section;
        const char *key;
        ConfigParser parse;
        size_t offset;
        uint64_t min, max; /* numbers: the range; paths: the longest length */
        bool required;
};

typedef struct ConfigError {
        unsigned line;
        size_t seq;
        char *text;
} ConfigError;

typedef struct PendingKey {
        char *key, *value;
        unsigned line;
} PendingKey;

typedef enum SectionKind { SECTION_NONE, SECTION_FIXED, SECTION_KEYRING, SECTION_IGNORED } SectionKind;

typedef struct Parser {
        const char *path;
        FILE *f;
        Config *config;
        int r;         /* -ENOMEM or a read error: stops everything */
        unsigned line; /* of the line the reader handed to inih last */
        char *buf;     /* getline() */
        size_t size;
        SectionKind kind;
        const char *section; /* fixed sections: the table's name */
        size_t ring;         /* [keyring]: index into config->keyrings */
        size_t ring_errors;  /* n_errors when the [keyring] section began */
        unsigned owner_line; /* where owner-uid was set, 0 if not */
        PendingKey *pending; /* [keyring] keys, applied once the section's kind is known */
        size_t n_pending;
        ConfigError *errors;
        size_t n_errors;
} Parser;

/* vasprintf() into *ret (NULL when out of memory): -EINVAL, the error a parser returns with its message, or -ENOMEM. */
_printf_(2, 0) static int verrorf(char **ret, const char *fmt, va_list ap) {
        if (vasprintf(ret, fmt, ap) < 0) {
                *ret = NULL;
                return -ENOMEM;
        }
        return -EINVAL;
}

_printf_(2, 3) static int errorf(char **ret, const char *fmt, ...) {
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = verrorf(ret, fmt, ap);
        va_end(ap);
        return r;
}

_printf_(3, 4) static void add_error(Parser *p, unsigned line, const char *fmt, ...) {
        _cleanup_free_ char *msg = NULL;
        ConfigError *e;
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = verrorf(&msg, fmt, ap);
        va_end(ap);
        if (r == -ENOMEM) {
                p->r = r;
                return;
        }
        e = realloc(p->errors, (p->n_errors + 1) * sizeof(ConfigError));
        if (!e) {
                p->r = -ENOMEM;
                return;
        }
        p->errors = e;
        e += p->n_errors;
        *e = (ConfigError){ .line = line, .seq = p->n_errors };
        if (line > 0 ? errorf(&e->text, "%s:%u: %s", p->path, line, msg) == -ENOMEM
                     : errorf(&e->text, "%s: %s", p->path, msg) == -ENOMEM) {
                p->r = -ENOMEM;
                return;
        }
        p->n_errors++;
}

/* "KEY: bad WHAT 'VALUE' (EXPECTED)" */
static int bad_value(char **ret_error, const char *key, const char *what, const char *value, const char *expected) {
        return errorf(ret_error, "%s: bad %s '%s' (%s)", key, what, value, expected);
}

static int set_string(char **field, const char *value) {
        char *s = strdup(value);
        if (!s)
                return -ENOMEM;
        free(*field);
        *field = s;
        return 0;
}

static int config_parse_uri(const ConfigItem *i, const char *value, void *field, char **ret_error) {
        if (!startswith(value, "pkcs11:") || !value[strlen("pkcs11:")])
                return bad_value(ret_error, i->key, "URI", value, "an RFC 7512 PKCS#11 URI, e.g. pkcs11:token=keyd");
        if (strcasestr(value, "pin-value="))
                return errorf(ret_error,
                              "%s: a pin-value in the URI is refused (use pin-file, the systemd credential \"pin\" "
                              "or the URI's pin-source)",
                              i->key);
        return set_string(field, value);
}

static int config_parse_path(const ConfigItem *i, const char *value, void *field, char **ret_error) {
        if (value[0] != '/')
                return bad_value(ret_error, i->key, "path", value, "an absolute path");
        if (strlen(value) > i->max) {
                char expected[64];
                (void) snprintf(expected, sizeof expected, "an absolute path of at most %" PRIu64 " bytes", i->max);
                return bad_value(ret_error, i->key, "path", value, expected);
        }
        return set_string(field, value);
}

static int config_parse_unsigned(const ConfigItem *i, const char *value, void *field, char **ret_error) {
        uint64_t v;
        if (parse_uint64(value, i->max, &v) < 0 || v < i->min) {
                char expected[80];
                (void) snprintf(expected, sizeof expected, "a whole number between %" PRIu64 " and %" PRIu64, i->min,
                                i->max);
                return bad_value(ret_error, i->key, "number", value, expected);
        }
        *(unsigned *) field = (unsigned) v;
        return 0;
}

/* Where signatures are made (HsmSignIn). */
static int config_parse_sign_in(const ConfigItem *i, const char *value, void *field, char **ret_error) {
        static const char *const names[] = { [HSM_SIGN_IN_AUTO] = "auto", [HSM_SIGN_IN_WORKERS] = "workers",
                                             [HSM_SIGN_IN_CALLER] = "caller" };
        for (unsigned n = 0; n < ELEMENTSOF(names); n++)
                if (streq(value, names[n])) {
                        *(unsigned *) field = n;
                        return 0;
                }
        return bad_value(ret_error, i->key, "value", value, "auto, caller or workers");
}

/* A duration; with max, between min and max seconds. */
static int config_parse_duration(const ConfigItem *i, const char *value, void *field, char **ret_error) {
        const char *why;
        usec_t *u = field;
        if (parse_duration_explain(value, u, &why) < 0)
                return bad_value(ret_error, i->key, "duration", value, why);
        if (i->max > 0 && (*u < (usec_t) i->min * USEC_PER_SEC || *u > (usec_t) i->max * USEC_PER_SEC))
                return errorf(ret_error, "%s: bad duration '%s' (between %llus and %llus)", i->key, value,
                              (unsigned long long) i->min, (unsigned long long) i->max);
        return 0;
}

static int config_parse_strv(const ConfigItem *i, const char *value, void *field, char **ret_error) {
        char **l, ***dst = field;
        (void) i, (void) ret_error;
        if (strv_split(value, &l) < 0)
                return -ENOMEM;
        strv_free(*dst);
        *dst = l;
        return 0;
}

/* HOST:PORT with an IPv4 literal, or [IPV6]:PORT; no names (nothing is resolved). */
static int config_parse_listen(const ConfigItem *i, const char *value, void *field, char **ret_error) {
        char host[INET6_ADDRSTRLEN];
        unsigned char addr[sizeof(struct in6_addr)];
        const char *h = value, *colon;
        int family = AF_INET;
        uint64_t port;
        size_t n;

        if (value[0] == '[') {
                h = value + 1;
                colon = strchr(h, ']');
                if (colon && *++colon != ':')
                        colon = NULL;
                family = AF_INET6;
        } else
                colon = strchr(value, ':');
        if (!colon)
                goto bad;
        n = (size_t) (colon - h) - (family == AF_INET6);
        if (n == 0 || n >= sizeof host)
                goto bad;
        memcpy(host, h, n);
        host[n] = 0;
        if (inet_pton(family, host, addr) == 1 && parse_uint64(colon + 1, 65535, &port) == 0 && port > 0)
                return set_string(field, value);
bad:
        return bad_value(ret_error, i->key, "address", value,
                         "IPV4:PORT or [IPV6]:PORT with an address literal and a port between 1 and 65535");
}

#define PATH_LEN (PATH_MAX - 1)
#define SOCKET_LEN (sizeof(((struct sockaddr_un *) NULL)->sun_path) - 1)
static const ConfigItem config_table[] = {
        { "token", "module", config_parse_path, offsetof(Config, module), 0, PATH_LEN },
        { "token", "uri", config_parse_uri, offsetof(Config, uri), 0, 0, .required = true },
        { "token", "pin-file", config_parse_path, offsetof(Config, pin_file), 0, PATH_LEN },
        { "token", "softhsm2-conf", config_parse_path, offsetof(Config, softhsm2_conf), 0, PATH_LEN },
        { "token", "reconcile-max-destroy", config_parse_unsigned, offsetof(Config, reconcile_max_destroy), 1,
          100000 },
        { "token", "session-wait", config_parse_duration, offsetof(Config, session_wait), 1, 600 },
        { "token", "max-sessions", config_parse_unsigned, offsetof(Config, max_sessions), 1, 1024 },
        { "token", "sign-timeout", config_parse_duration, offsetof(Config, sign_timeout), 1, 600 },
        { "token", "sign-in", config_parse_sign_in, offsetof(Config, sign_in), 0, 0 },
        { "store", "path", config_parse_path, offsetof(Config, store_path), 0, PATH_LEN },
        { "api", "socket", config_parse_path, offsetof(Config, socket), 0, SOCKET_LEN },
        { "api", "workers", config_parse_unsigned, offsetof(Config, workers), 0, 256 },
        { "api", "admin-users", config_parse_strv, offsetof(Config, admin_users), 0, 0 },
        { "api", "admin-groups", config_parse_strv, offsetof(Config, admin_groups), 0, 0 },
        { "api", "max-connections", config_parse_unsigned, offsetof(Config, max_connections), 1, 65536 },
        { "api", "max-connections-per-uid", config_parse_unsigned, offsetof(Config, max_connections_per_uid), 1,
          65536 },
        { "api", "idle-timeout", config_parse_duration, offsetof(Config, idle_timeout), 0, 0 },
        { "public", "listen", config_parse_listen, offsetof(Config, public_listen), 0, 0 },
        { "metrics", "listen", config_parse_listen, offsetof(Config, metrics_listen), 0, 0 },
        { "audit", "checkpoint-interval", config_parse_duration, offsetof(Config, checkpoint_interval), 0, 0 },
        { "audit", "anchor-file", config_parse_path, offsetof(Config, anchor_file), 0, PATH_LEN },
};

_Static_assert(ELEMENTSOF(config_table) <= CONFIG_FIXED_KEYS_MAX, "Config.key_lines has a line for each key");

int config_init(Config *c) {
        *c = (Config){
                .workers = 0,
                .max_connections = 256,
                .max_connections_per_uid = 32,
                .idle_timeout = 30 * USEC_PER_SEC,
                .checkpoint_interval = 3600 * USEC_PER_SEC,
                .reconcile_max_destroy = 8,
                .session_wait = 5 * USEC_PER_SEC,
                .max_sessions = 64,
                .sign_timeout = 5 * USEC_PER_SEC,
        };
        if (!(c->module = strdup(KEYD_DEFAULT_MODULE)) || !(c->store_path = strdup("/var/lib/keyd/keyd.db")) ||
            !(c->socket = strdup("/run/keyd/keyd.sock")) || strv_split("root", &c->admin_users) < 0 ||
            strv_split("keyd-admin", &c->admin_groups) < 0)
                return -ENOMEM;
        return 0;
}

void config_done(Config *c) {
        /* Every allocated field of Config is in the table: a string, or a list from config_parse_strv(). */
        for (size_t i = 0; i < ELEMENTSOF(config_table); i++) {
                const ConfigItem *it = &config_table[i];
                void *field = (uint8_t *) c + it->offset;

                if (it->parse == config_parse_strv)
                        strv_free(*(char ***) field);
                else if (it->parse == config_parse_uri || it->parse == config_parse_path ||
                         it->parse == config_parse_listen)
                        free(*(char **) field);
        }
        for (size_t i = 0; i < c->n_keyrings; i++) {
                ConfigKeyring *k = &c->keyrings[i];
                free(k->name);
                policy_done(&k->policy);
                for (size_t j = 0; j < k->n_key_lines; j++)
                        free(k->key_lines[j].key);
                free(k->key_lines);
        }
        free(c->keyrings);
        *c = (Config){};
}

static void pending_clear(Parser *p) {
        for (size_t i = 0; i < p->n_pending; i++) {
                free(p->pending[i].key);
                free(p->pending[i].value);
        }
        free(p->pending);
        p->pending = NULL;
        p->n_pending = 0;
}

#define NAME_LEN_MAX 64 /* keyd's own section and key names are shorter */

/* Optimal string alignment distance (Levenshtein with swaps of neighbours) between what the file says, a, and one of
 * keyd's names, b, ignoring case: "sokcet" is one edit from "socket", "API" none from "api". */
static size_t edit_distance(const char *a, const char *b) {
        size_t rows[3][NAME_LEN_MAX + 1], *before = rows[0], *prev = rows[1], *cur = rows[2];
        size_t n = strlen(a), m = strlen(b);

        if (m > NAME_LEN_MAX)
                return SIZE_MAX;
        for (size_t j = 0; j <= m; j++)
                prev[j] = j;
        for (size_t i = 1; i <= n; i++) {
                int x = tolower((unsigned char) a[i - 1]);
                cur[0] = i;
                for (size_t j = 1; j <= m; j++) {
                        int y = tolower((unsigned char) b[j - 1]);
                        size_t d = MIN(MIN(prev[j] + 1, cur[j - 1] + 1), prev[j - 1] + (x != y));
                        if (i > 1 && j > 1 && x == tolower((unsigned char) b[j - 2]) &&
                            tolower((unsigned char) a[i - 2]) == y)
                                d = MIN(d, before[j - 2] + 1);
                        cur[j] = d;
                }
                size_t *t = before;
                before = prev;
                prev = cur;
                cur = t;
        }
        return prev[m];
}

/* The one of names that typed is most likely a slip for: the nearest within a few edits (fewer for short words, so
 * that one is not "corrected" into an unrelated name), else the only name it is the start of ("rotation" for
 * "rotation-period"). NULL when none is close: then the message suggests nothing rather than something wrong. */
static const char *nearest_name(const char *typed, const char *const *names, size_t n) {
        size_t len = strlen(typed), limit = len < 3 ? 0 : len < 5 ? 1 : len < 9 ? 2 : 3;
        size_t best = SIZE_MAX, n_prefixed = 0;
        const char *found = NULL, *prefixed = NULL;

        for (size_t i = 0; i < n; i++) {
                size_t d = edit_distance(typed, names[i]);
                if (d < best) {
                        best = d;
                        found = names[i];
                }
                if (len >= 4 && strncasecmp(names[i], typed, len) == 0) {
                        prefixed = names[i];
                        n_prefixed++;
                }
        }
        if (best <= limit)
                return found;
        return n_prefixed == 1 ? prefixed : NULL;
}

/* The section of a fixed key ("token" for "module"), NULL if no fixed section has it. */
static const char *fixed_section_of(const char *key) {
        for (size_t i = 0; i < ELEMENTSOF(config_table); i++)
                if (streq(config_table[i].key, key))
                        return config_table[i].section;
        return NULL;
}

static void unknown_fixed_key(Parser *p, const char *key) {
        const char *names[CONFIG_FIXED_KEYS_MAX], *near;
        size_t n = 0;

        for (size_t i = 0; i < ELEMENTSOF(config_table); i++)
                if (streq(config_table[i].section, p->section))
                        names[n++] = config_table[i].key;
        near = nearest_name(key, names, n);
        if (near)
                add_error(p, p->line, "unknown key '%s' in [%s] (did you mean '%s'?)", key, p->section, near);
        else
                add_error(p, p->line, "unknown key '%s' in [%s]", key, p->section);
}

/* The keys of a [keyring] section are kind, owner-uid and the policy's: its JSON names with '-' for '_' (the policy
 * has no list of its names, and its JSON form is made from its table). */
#define KEYRING_KEYS_MAX 48
static void unknown_keyring_key(Parser *p, unsigned line, const char *key, const char *ring) {
        char buf[KEYRING_KEYS_MAX][NAME_LEN_MAX + 1];
        const char *names[KEYRING_KEYS_MAX] = { "kind", "owner-uid" }, *name, *near;
        _cleanup_(json_decrefp) json_t *o = NULL;
        size_t n = 2;
        Policy pol;
        json_t *v;
        int r;

        policy_init(&pol, RING_ISSUER);
        r = policy_to_json(&pol, &o);
        policy_done(&pol);
        if (r >= 0) /* else out of memory: the message goes without a suggestion */
                json_object_foreach(o, name, v) {
                        if (n == KEYRING_KEYS_MAX)
                                break;
                        snprintf(buf[n], sizeof buf[n], "%s", name);
                        for (char *c = buf[n]; *c; c++)
                                if (*c == '_')
                                        *c = '-';
                        names[n] = buf[n];
                        n++;
                }
        near = nearest_name(key, names, n);
        if (near)
                add_error(p, line, "unknown key '%s' in [keyring %s] (did you mean '%s'?)", key, ring, near);
        else
                add_error(p, line, "unknown key '%s' in [keyring %s]", key, ring);
}

static void unknown_section(Parser *p, const char *name) {
        static const char *const sections[] = { "token", "store", "api", "public", "metrics", "audit", "keyring" };
        size_t n = strcspn(name, " \t");
        const char *rest = name + n + strspn(name + n, " \t"), *near;
        _cleanup_free_ char *word = strndup(name, n);

        if (!word) {
                p->r = -ENOMEM;
                return;
        }
        near = nearest_name(word, sections, ELEMENTSOF(sections));
        if (near && streq(near, "keyring"))
                add_error(p, p->line, "unknown section [%s] (did you mean [keyring %s]?)", name, *rest ? rest : "NAME");
        else if (near && !*rest)
                add_error(p, p->line, "unknown section [%s] (did you mean [%s]?)", name, near);
        else
                add_error(p, p->line,
                          "unknown section [%s] (expected [token], [store], [api], [public], [metrics], [audit] "
                          "or [keyring NAME])",
                          name);
}

/* policy_set()'s messages are "what (expected)" or "expected": put the key and the value in. */
static void policy_error(Parser *p, unsigned line, const char *key, const char *value, const char *msg) {
        const char *paren = strstr(msg, " (");
        if (paren)
                add_error(p, line, "%s: %.*s '%s'%s", key, (int) (paren - msg), msg, value, paren);
        else
                add_error(p, line, "%s: bad value '%s' (%s)", key, value, msg);
}

/* The end of a [keyring] section: its kind is known now, so its policy starts from that kind's defaults. */
static void keyring_finish(Parser *p) {
        ConfigKeyring *k = &p->config->keyrings[p->ring];
        const char *err = NULL;

        policy_init(&k->policy, k->kind);
        for (size_t i = 0; i < p->n_pending && p->r >= 0; i++) {
                const PendingKey *e = &p->pending[i];
                int r;

                if (streq(e->key, "jwks-file") && e->value[0] != '/') {
                        add_error(p, e->line, "jwks-file: bad path '%s' (an absolute path)", e->value);
                        continue;
                }
                r = policy_set(&k->policy, e->key, e->value, &err);
                if (r == -ENOENT)
                        unknown_keyring_key(p, e->line, e->key, k->name);
                else if (r == -EINVAL && startswith(err, "bad duration")) {
                        /* policy_set() read it with parse_duration() and says only what a duration is: say what is
                         * wrong with this one. */
                        const char *why = err;
                        usec_t ignored;
                        (void) parse_duration_explain(e->value, &ignored, &why);
                        add_error(p, e->line, "%s: bad duration '%s' (%s)", e->key, e->value, why);
                } else if (r == -EINVAL)
                        policy_error(p, e->line, e->key, e->value, err);
                else if (r < 0)
                        p->r = r;
        }
        pending_clear(p);

        if (k->kind == RING_AGENT && k->owner_uid < 0 && p->owner_line == 0)
                add_error(p, k->line, "[keyring %s]: an agent keyring needs owner-uid", k->name);
        if (k->kind == RING_ISSUER && p->owner_line > 0)
                add_error(p, p->owner_line, "owner-uid: only agent keyrings have an owner ([keyring %s] is an issuer)",
                          k->name);
        /* Coherence only when every value was read: otherwise a default left in place would be blamed. */
        if (p->n_errors == p->ring_errors && policy_validate(&k->policy, &err) < 0)
                add_error(p, k->line, "[keyring %s]: %s", k->name, err);
}

static void section_begin(Parser *p, const char *name) {
        Config *c = p->config;
        const char *rest = startswith(name, "keyring");

        if (p->kind == SECTION_KEYRING)
                keyring_finish(p);
        p->kind = SECTION_IGNORED;

        if (rest && (!*rest || *rest == ' ' || *rest == '\t')) {
                rest += strspn(rest, " \t");
                if (!keyring_name_valid(rest)) {
                        add_error(p, p->line,
                                  "invalid keyring name '%s' (1-%d of A-Z a-z 0-9 . _ -, not starting with '.' or "
                                  "'-')",
                                  rest, KEYRING_NAME_MAX);
                        return;
                }
                for (size_t i = 0; i < c->n_keyrings; i++)
                        if (streq(c->keyrings[i].name, rest)) {
                                add_error(p, p->line, "duplicate [keyring %s] (first at line %u)", rest,
                                          c->keyrings[i].line);
                                return;
                        }
                ConfigKeyring *l = realloc(c->keyrings, (c->n_keyrings + 1) * sizeof(ConfigKeyring));
                if (!l) {
                        p->r = -ENOMEM;
                        return;
                }
                c->keyrings = l;
                l += c->n_keyrings;
                *l = (ConfigKeyring){ .kind = RING_ISSUER, .owner_uid = -1, .line = p->line };
                policy_init(&l->policy, RING_ISSUER);
                if (!(l->name = strdup(rest))) {
                        p->r = -ENOMEM;
                        return;
                }
                p->ring = c->n_keyrings++;
                p->ring_errors = p->n_errors;
                p->owner_line = 0;
                p->kind = SECTION_KEYRING;
                return;
        }
        for (size_t i = 0; i < ELEMENTSOF(config_table); i++)
                if (streq(config_table[i].section, name)) {
                        p->section = config_table[i].section;
                        p->kind = SECTION_FIXED;
                        return;
                }
        unknown_section(p, name);
}

/* "[NAME]" with only a comment after it: begins the section and returns true; false if malformed. */
static bool section_line(Parser *p, char *s) {
        char *end = strchr(s, ']'), *name = s + 1, *after;
        size_t n;

        if (!end)
                return false;
        after = end + 1 + strspn(end + 1, " \t");
        if (*after && !strchr(";#", *after))
                return false;
        name += strspn(name, " \t");
        n = (size_t) (end - name);
        while (n > 0 && (name[n - 1] == ' ' || name[n - 1] == '\t'))
                n--;
        _cleanup_free_ char *copy = strndup(name, n);
        if (!copy)
                p->r = -ENOMEM;
        else
                section_begin(p, copy);
        return true;
}

/* inih's reader: one line per call, counted, with leading blanks removed (so that inih never takes a line for the
 * continuation of the one before). Section headers and malformed lines are handled here, where the line number is
 * known; what reaches inih is blank, a comment, or "key = value". */
static char *config_reader(char *str, int num, void *stream) {
        Parser *p = stream;
        ssize_t n;
        char *s;

        if (p->r < 0)
                return NULL;
        n = getline(&p->buf, &p->size, p->f);
        if (n < 0) {
                if (ferror(p->f))
                        p->r = negative_errno();
                return NULL;
        }
        p->line++;
        s = p->buf;
        str[0] = 0;
        if (strlen(s) != (size_t) n) {
                add_error(p, p->line, "malformed line (a NUL byte)");
                return str;
        }
        while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r'))
                s[--n] = 0;
        if (p->line == 1 && startswith(s, "\xEF\xBB\xBF"))
                s += 3;
        s += strspn(s, " \t\f\v");
        if (strlen(s) >= (size_t) num) {
                add_error(p, p->line, "line too long (at most %d characters)", num - 1);
                return str;
        }
        if (*s == '[') {
                if (!section_line(p, s)) {
                        add_error(p, p->line, "malformed section header (expected [NAME])");
                        if (p->kind == SECTION_KEYRING)
                                keyring_finish(p);
                        p->kind = SECTION_IGNORED;
                }
                return str;
        }
        if (*s && !strchr(";#", *s)) {
                /* Like inih: the first '=' or ':' not in a comment; only '=' is keyd's syntax. */
                char *d = s;
                while (*d && *d != '=' && *d != ':' && !(*d == ';' && d > s && strchr(" \t", d[-1])))
                        d++;
                if (*d != '=' || d == s) {
                        add_error(p, p->line, "malformed line (expected 'key = value', [SECTION] or a comment)");
                        return str;
                }
        }
        memcpy(str, s, strlen(s) + 1);
        return str;
}

/* Remember where key was set in the keyring's section (the last time, as its value is the last one). */
static int keyring_key_line_set(ConfigKeyring *k, const char *key, unsigned line) {
        ConfigKeyLine *l;

        for (size_t i = 0; i < k->n_key_lines; i++)
                if (streq(k->key_lines[i].key, key)) {
                        k->key_lines[i].line = line;
                        return 0;
                }
        l = realloc(k->key_lines, (k->n_key_lines + 1) * sizeof(ConfigKeyLine));
        if (!l)
                return -ENOMEM;
        k->key_lines = l;
        l += k->n_key_lines;
        *l = (ConfigKeyLine){ .key = strdup(key), .line = line };
        if (!l->key)
                return -ENOMEM;
        k->n_key_lines++;
        return 0;
}

static int config_handler(void *user, const char *section, const char *name, const char *value) {
        Parser *p = user;
        (void) section; /* ours: the reader saw the header */

        if (p->r < 0)
                return 1;
        switch (p->kind) {
        case SECTION_NONE: {
                const char *home = fixed_section_of(name);
                if (home)
                        add_error(p, p->line, "key '%s' before any section (put it under [%s])", name, home);
                else
                        add_error(p, p->line, "key '%s' before any section (put it under its [section])", name);
                return 1;
        }
        case SECTION_IGNORED:
                return 1;
        case SECTION_FIXED:
                for (size_t i = 0; i < ELEMENTSOF(config_table); i++) {
                        const ConfigItem *it = &config_table[i];
                        _cleanup_free_ char *err = NULL;
                        int r;

                        if (!streq(it->section, p->section) || !streq(it->key, name))
                                continue;
                        p->config->key_lines[i] = p->line;
                        r = it->parse(it, value, (uint8_t *) p->config + it->offset, &err);
                        if (r == -EINVAL)
                                add_error(p, p->line, "%s", err);
                        else if (r < 0)
                                p->r = r;
                        return 1;
                }
                unknown_fixed_key(p, name);
                return 1;
        case SECTION_KEYRING:
                break;
        }

        ConfigKeyring *k = &p->config->keyrings[p->ring];
        if (keyring_key_line_set(k, name, p->line) < 0) {
                p->r = -ENOMEM;
                return 1;
        }
        if (streq(name, "kind")) {
                RingKind kind = ring_kind_from_string(value);
                if (kind < 0)
                        add_error(p, p->line, "kind: bad value '%s' (issuer or agent)", value);
                else
                        k->kind = kind;
        } else if (streq(name, "owner-uid")) {
                uint64_t uid;
                p->owner_line = p->line;
                if (parse_uint64(value, UID_MAX_VALID, &uid) < 0)
                        add_error(p, p->line, "owner-uid: bad uid '%s' (a whole number between 0 and %" PRIu64 ")",
                                  value, UID_MAX_VALID);
                else
                        k->owner_uid = (int64_t) uid;
        } else {
                PendingKey *l = realloc(p->pending, (p->n_pending + 1) * sizeof(PendingKey));
                if (!l) {
                        p->r = -ENOMEM;
                        return 1;
                }
                p->pending = l;
                l += p->n_pending;
                *l = (PendingKey){ .key = strdup(name), .value = strdup(value), .line = p->line };
                p->n_pending++;
                if (!l->key || !l->value)
                        p->r = -ENOMEM;
        }
        return 1;
}

static int error_compare(const void *a, const void *b) {
        const ConfigError *x = a, *y = b;
        if (x->line != y->line)
                return x->line < y->line ? -1 : 1;
        return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void parser_done(Parser *p) {
        pending_clear(p);
        for (size_t i = 0; i < p->n_errors; i++)
                free(p->errors[i].text);
        free(p->errors);
        free(p->buf);
        if (p->f)
                fclose(p->f);
}

int config_load(const char *path, Config *c, char ***ret_errors) {
        _cleanup_(parser_done) Parser p = { .path = path, .config = c };
        char **list;
        int r;

        if (ret_errors)
                *ret_errors = NULL;
        p.f = fopen(path, "re");
        if (!p.f)
                return negative_errno();

        r = ini_parse_stream(config_reader, &p, config_handler, &p);
        if (p.r >= 0 && p.kind == SECTION_KEYRING)
                keyring_finish(&p);
        if (p.r >= 0 && r == -2)
                p.r = -ENOMEM;
        if (p.r >= 0 && r > 0) {
                /* inih found an error the reader let through: report it all the same. */
                bool known = false;
                for (size_t i = 0; i < p.n_errors; i++)
                        known = known || p.errors[i].line == (unsigned) r;
                if (!known)
                        add_error(&p, (unsigned) r, "syntax error");
        }
        for (size_t i = 0; i < ELEMENTSOF(config_table) && p.r >= 0; i++)
                if (config_table[i].required && c->key_lines[i] == 0)
                        add_error(&p, 0, "[%s] %s is required", config_table[i].section, config_table[i].key);
        if (p.r < 0)
                return p.r;
        if (p.n_errors == 0)
                return 0;

        qsort(p.errors, p.n_errors, sizeof(ConfigError), error_compare);
        if (!ret_errors)
                return -EINVAL;
        list = calloc(p.n_errors + 1, sizeof(char *));
        if (!list)
                return -ENOMEM;
        for (size_t i = 0; i < p.n_errors; i++)
                list[i] = TAKE_PTR(p.errors[i].text);
        *ret_errors = list;
        return -EINVAL;
}

unsigned config_line(const Config *c, const char *section, const char *key) {
        for (size_t i = 0; i < ELEMENTSOF(config_table); i++)
                if (streq(config_table[i].section, section) && streq(config_table[i].key, key))
                        return c->key_lines[i];
        return 0;
}

unsigned config_keyring_line(const ConfigKeyring *k, const char *key) {
        for (size_t i = 0; i < k->n_key_lines; i++)
                if (streq(k->key_lines[i].key, key))
                        return k->key_lines[i].line;
        return 0;
}

int config_removed_keyrings(const Config *old, const Config *fresh, char ***ret) {
        char **l = NULL;
        size_t n = 0;

        for (size_t i = 0; i < old->n_keyrings; i++) {
                bool kept = false;
                for (size_t j = 0; j < fresh->n_keyrings && !kept; j++)
                        kept = streq(old->keyrings[i].name, fresh->keyrings[j].name);
                if (kept)
                        continue;
                char **m = realloc(l, (n + 2) * sizeof(char *));
                if (!m) {
                        strv_free(l);
                        return -ENOMEM;
                }
                l = m;
                l[n + 1] = NULL;
                if (!(l[n] = strdup(old->keyrings[i].name))) {
                        strv_free(l);
                        return -ENOMEM;
                }
                n++;
        }
        *ret = l;
        return 0;
}
