/* SPDX-License-Identifier: MIT */
/* A keyring's policy. One table, policy_table, maps each field's name in keyd.conf to its type and its place in
 * Policy; the type says how the field's text is parsed, what its JSON form is, which other JSON values it takes, and
 * whether it owns memory. policy_set() (keyd.conf), policy_update_from_json() and policy_to_json() (the JSON form:
 * the same names with '_' for '-'), policy_copy() and policy_done() all go through it. */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <strings.h>

#include "common/crypto-util.h"
#include "common/parse-util.h"
#include "common/string-table.h"
#include "common/strv.h"
#include "common/utf8.h"
#include "rotation/policy.h"

static const char *const ring_kind_table[_RING_KIND_MAX] = {
        [RING_ISSUER] = "issuer",
        [RING_AGENT] = "agent",
};

DEFINE_STRING_TABLE_LOOKUP(ring_kind, RingKind);

bool keyring_name_valid(const char *s) {
        size_t n;
        if (!s || s[0] == '.' || s[0] == '-')
                return false;
        n = strlen(s);
        if (n == 0 || n > KEYRING_NAME_MAX)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-", s[i]))
                        return false;
        return true;
}

bool keyd_typ_reserved(const char *typ) {
        static const char *const own[] = { KEYD_TYP_REVOCATIONS, KEYD_TYP_AUDIT_CHECKPOINT };
        if (!typ)
                return false;
        if (strncasecmp(typ, "application/", strlen("application/")) == 0)
                typ += strlen("application/");
        for (size_t i = 0; i < ELEMENTSOF(own); i++)
                if (strcasecmp(typ, own[i]) == 0)
                        return true;
        return false;
}

void policy_init(Policy *p, RingKind kind) {
        *p = (Policy){
                .alg = KEYD_ALG_ES256,
                .rsa_bits = 2048,
                .rotation_period = 24 * 3600 * USEC_PER_SEC,
                .prepublish = 3600 * USEC_PER_SEC,
                .token_ttl_max = 3600 * USEC_PER_SEC,
                .default_ttl = 15 * 60 * USEC_PER_SEC,
                .clock_skew = 60 * USEC_PER_SEC,
                .publish = kind == RING_ISSUER,
        };
}

typedef struct PolicyField PolicyField;

/* What a field holds, by the C type of its member in Policy. */
typedef struct PolicyType {
        /* The text form (keyd.conf, or a JSON string), valid UTF-8: 0, -EINVAL with *ret_error pointing at a static
         * message, or -ENOMEM. */
        int (*parse)(const PolicyField *f, const char *value, void *field, const char **ret_error);
        /* The JSON form: a new value, or NULL when out of memory. */
        json_t *(*print)(const PolicyField *f, const void *field);
        /* Owned memory (strings, lists): clear() frees it and leaves the field unset; copy() sets dst to a copy of
         * src, or to unset and returns -ENOMEM. NULL for plain values. */
        void (*clear)(void *field);
        int (*copy)(const void *src, void *dst);
        /* JSON values taken besides a string (read as text): a whole number ≥ 0, as text with this unit after it
         * (NULL: refused); true and false, as yes and no; null, as unset; an array (read by from_array(): 0,
         * -EINVAL if it is not all strings, -ENOMEM). */
        const char *number_unit;
        bool boolean;
        bool null;
        int (*from_array)(const json_t *a, void *field);
} PolicyType;

struct PolicyField {
        const char *name; /* in keyd.conf; the JSON member is the same with '_' for '-' */
        const PolicyType *type;
        size_t offset;
        bool zero;         /* durations: 0 ("0", "0s") is allowed too */
        const char *unset; /* strings: what the JSON form shows when not set (NULL: null) */
};

static int bad(const char **ret_error, const char *msg) {
        *ret_error = msg;
        return -EINVAL;
}

static int parse_alg(const PolicyField *f, const char *value, void *field, const char **ret_error) {
        KeydAlg a = keyd_alg_from_string(value);
        (void) f;
        if (a < 0)
                return bad(ret_error, "unknown alg (ES256, ES384, RS256, PS256, EdDSA)");
        *(KeydAlg *) field = a;
        return 0;
}

static json_t *print_alg(const PolicyField *f, const void *field) {
        (void) f;
        return json_string(keyd_alg_to_string(*(const KeydAlg *) field));
}

static int parse_rsa_bits(const PolicyField *f, const char *value, void *field, const char **ret_error) {
        uint64_t v;
        (void) f;
        if (parse_uint64(value, 65536, &v) < 0 || !keyd_rsa_bits_valid((unsigned) v))
                return bad(ret_error, "rsa-bits must be 2048, 3072 or 4096");
        *(unsigned *) field = (unsigned) v;
        return 0;
}

static json_t *print_unsigned(const PolicyField *f, const void *field) {
        (void) f;
        return json_integer((json_int_t) *(const unsigned *) field);
}

static int parse_duration_field(const PolicyField *f, const char *value, void *field, const char **ret_error) {
        if (f->zero && (streq(value, "0") || streq(value, "0s"))) {
                *(usec_t *) field = 0;
                return 0;
        }
        if (parse_duration(value, field) < 0)
                return bad(ret_error, "bad duration (a whole number with s, m, h or d, between 1s and 3650d)");
        return 0;
}

static json_t *print_duration(const PolicyField *f, const void *field) {
        char buf[32];
        (void) f;
        return json_string(format_duration(buf, sizeof buf, *(const usec_t *) field));
}

static int parse_string(const PolicyField *f, const char *value, void *field, const char **ret_error) {
        char *c, **s = field;
        (void) f;
        if (!*value || strlen(value) > POLICY_STRING_MAX)
                return bad(ret_error, "must be a non-empty string of at most 1024 characters");
        c = strdup(value);
        if (!c)
                return -ENOMEM;
        free(*s);
        *s = c;
        return 0;
}

static json_t *print_string(const PolicyField *f, const void *field) {
        const char *s = *(char *const *) field ?: f->unset;
        return s ? json_string(s) : json_null();
}

static void clear_string(void *field) {
        char **s = field;
        free(*s);
        *s = NULL;
}

static int copy_string(const void *src, void *dst) {
        const char *s = *(char *const *) src;
        char **d = dst;
        *d = s ? strdup(s) : NULL;
        return s && !*d ? -ENOMEM : 0;
}

static int parse_list(const PolicyField *f, const char *value, void *field, const char **ret_error) {
        char **l, ***dst = field;
        int r;
        (void) f, (void) ret_error;
        r = strv_split(value, &l);
        if (r < 0)
                return r;
        strv_free(*dst);
        *dst = l;
        return 0;
}

static json_t *print_list(const PolicyField *f, const void *field) {
        _cleanup_json_ json_t *a = json_array();
        (void) f;
        if (!a)
                return NULL;
        for (char *const *i = *(char **const *) field; i && *i; i++)
                if (json_array_append_new(a, json_string(*i)) < 0)
                        return NULL;
        return TAKE_PTR(a);
}

static void clear_list(void *field) {
        char ***l = field;
        strv_free(*l);
        *l = NULL;
}

static int copy_list(const void *src, void *dst) {
        char ***d = dst;
        *d = NULL;
        return strv_copy(*(char **const *) src, d);
}

/* JSON's own form of a list: an array of strings (kept as they are). */
static int list_from_array(const json_t *a, void *field) {
        char **l = calloc(json_array_size(a) + 1, sizeof(char *)), ***dst = field;
        size_t i;
        json_t *e;

        if (!l)
                return -ENOMEM;
        json_array_foreach(a, i, e) {
                if (!json_is_string(e)) {
                        strv_free(l);
                        return -EINVAL;
                }
                if (!(l[i] = strdup(json_string_value(e)))) {
                        strv_free(l);
                        return -ENOMEM;
                }
        }
        strv_free(*dst);
        *dst = l;
        return 0;
}

static int parse_boolean_field(const PolicyField *f, const char *value, void *field, const char **ret_error) {
        int r = parse_boolean(value);
        (void) f;
        if (r < 0)
                return bad(ret_error, "expected yes or no");
        *(bool *) field = r;
        return 0;
}

static json_t *print_boolean(const PolicyField *f, const void *field) {
        (void) f;
        return json_boolean(*(const bool *) field);
}

static const PolicyType alg_type = { parse_alg, print_alg, .number_unit = "" };
static const PolicyType rsa_bits_type = { parse_rsa_bits, print_unsigned, .number_unit = "" };
static const PolicyType duration_type = { parse_duration_field, print_duration, .number_unit = "s" };
static const PolicyType string_type = { parse_string, print_string, clear_string, copy_string, .number_unit = "",
                                        .null = true };
static const PolicyType list_type = { parse_list, print_list, clear_list, copy_list, .number_unit = "",
                                      .from_array = list_from_array };
static const PolicyType boolean_type = { parse_boolean_field, print_boolean, .boolean = true };

/* In the order of the JSON form. */
static const PolicyField policy_table[] = {
        { "alg", &alg_type, offsetof(Policy, alg) },
        { "rsa-bits", &rsa_bits_type, offsetof(Policy, rsa_bits) },
        { "rotation-period", &duration_type, offsetof(Policy, rotation_period) },
        { "prepublish", &duration_type, offsetof(Policy, prepublish) },
        { "token-ttl-max", &duration_type, offsetof(Policy, token_ttl_max) },
        { "default-ttl", &duration_type, offsetof(Policy, default_ttl) },
        { "clock-skew", &duration_type, offsetof(Policy, clock_skew), .zero = true },
        { "issuer", &string_type, offsetof(Policy, issuer) },
        { "token-type", &string_type, offsetof(Policy, token_type), .unset = "JWT" },
        { "sign-users", &list_type, offsetof(Policy, sign_users) },
        { "sign-groups", &list_type, offsetof(Policy, sign_groups) },
        { "publish", &boolean_type, offsetof(Policy, publish) },
        { "jwks-file", &string_type, offsetof(Policy, jwks_file) },
        { "allow-raw-sign", &boolean_type, offsetof(Policy, allow_raw_sign) },
};

#define POLICY_NAME_MAX 32 /* the longest name in policy_table, and its NUL, fit */

#define FOREACH_POLICY_FIELD(f) \
        for (const PolicyField *f = policy_table; f < policy_table + ELEMENTSOF(policy_table); f++)

static void *field_of(Policy *p, const PolicyField *f) {
        return (uint8_t *) p + f->offset;
}

static const void *const_field_of(const Policy *p, const PolicyField *f) {
        return (const uint8_t *) p + f->offset;
}

void policy_done(Policy *p) {
        FOREACH_POLICY_FIELD(f)
                if (f->type->clear)
                        f->type->clear(field_of(p, f));
        memset(p, 0, sizeof *p);
}

int policy_copy(const Policy *src, Policy *dst) {
        Policy p = *src;
        int r = 0;

        /* Every owned field of the copy gets its own memory (or is unset), so that policy_done() can undo it. */
        FOREACH_POLICY_FIELD(f)
                if (f->type->copy && f->type->copy(const_field_of(src, f), field_of(&p, f)) < 0)
                        r = -ENOMEM;
        if (r < 0) {
                policy_done(&p);
                return r;
        }
        *dst = p;
        return 0;
}

int policy_validate(const Policy *p, const char **ret_error) {
        const char *e = NULL;

        if (p->alg < 0 || p->alg >= _KEYD_ALG_MAX)
                e = "alg must be one of ES256, ES384, RS256, PS256, EdDSA";
        else if (keyd_alg_is_rsa(p->alg) && !keyd_rsa_bits_valid(p->rsa_bits))
                e = "rsa-bits must be 2048, 3072 or 4096";
        else if (p->rotation_period < USEC_PER_SEC || p->prepublish < USEC_PER_SEC ||
                 p->token_ttl_max < USEC_PER_SEC || p->default_ttl < USEC_PER_SEC || p->clock_skew < 0)
                e = "durations must be at least one second";
        else if (p->prepublish > p->rotation_period)
                e = "prepublish exceeds rotation-period";
        else if (p->default_ttl > p->token_ttl_max)
                e = "default-ttl exceeds token-ttl-max";
        else if (keyd_typ_reserved(p->token_type))
                e = "token-type must not be one of keyd's own document types (" KEYD_TYP_REVOCATIONS ", "
                    KEYD_TYP_AUDIT_CHECKPOINT ")";
        if (e) {
                if (ret_error)
                        *ret_error = e;
                return -EINVAL;
        }
        return 0;
}

/* The host of an issuer URL: a name or an IPv4 address (letters, digits, '.', '-'), or an IPv6 literal in brackets. */
static bool issuer_host_valid(const char *host, size_t len) {
        if (len == 0)
                return false;
        if (host[0] == '[')
                return len > 2 && host[len - 1] == ']' && strspn(host + 1, "0123456789abcdefABCDEF:.") == len - 2;
        for (size_t i = 0; i < len; i++)
                if (!isalnum((unsigned char) host[i]) && host[i] != '.' && host[i] != '-')
                        return false;
        return host[0] != '.' && host[0] != '-';
}

static bool host_is(const char *host, size_t len, const char *name) {
        return strlen(name) == len && strncasecmp(host, name, len) == 0;
}

int policy_issuer_check(const char *issuer, const char **ret_error) {
        const char *dummy, *rest, *host, *port = NULL;
        size_t authority, host_len;
        bool https = false;
        uint64_t n;

        if (!ret_error)
                ret_error = &dummy;
        if (!issuer)
                return bad(ret_error, "an https URL is required");
        if (strncasecmp(issuer, "https://", 8) == 0) {
                rest = issuer + 8;
                https = true;
        } else if (strncasecmp(issuer, "http://", 7) == 0)
                rest = issuer + 7;
        else
                return bad(ret_error, "must be an https URL (https://HOST[:PORT][/PATH])");
        for (const char *p = issuer; *p; p++)
                if ((unsigned char) *p <= ' ' || *p == 0x7f)
                        return bad(ret_error, "must be a URL without blanks or control characters");
        if (strpbrk(issuer, "?#"))
                return bad(ret_error, "must be a URL without a query or a fragment (OpenID Connect Discovery 1.0)");
        authority = strcspn(rest, "/");
        if (memchr(rest, '@', authority))
                return bad(ret_error, "must be a URL without a user name or password");
        host = rest;
        if (host[0] == '[') {
                const char *close = memchr(host, ']', authority);
                host_len = close ? (size_t) (close - host) + 1 : authority;
        } else
                host_len = strcspn(host, ":/");
        if (host_len < authority) {
                if (host[host_len] != ':')
                        return bad(ret_error, "must be a URL with a valid host");
                port = host + host_len + 1;
        }
        if (!issuer_host_valid(host, host_len))
                return bad(ret_error, "must be a URL with a valid host");
        if (port) {
                char digits[8];
                size_t len = authority - host_len - 1;
                if (len == 0 || len >= sizeof digits)
                        return bad(ret_error, "must be a URL with a port from 1 to 65535");
                memcpy(digits, port, len);
                digits[len] = 0;
                if (parse_uint64(digits, 65535, &n) < 0 || n == 0)
                        return bad(ret_error, "must be a URL with a port from 1 to 65535");
        }
        /* Verifiers fetch the JWKS and the discovery document from the issuer's URL: over http, anyone on the path
         * could hand them keys of their own. Only a loopback host never leaves the machine. */
        if (!https && !host_is(host, host_len, "127.0.0.1") && !host_is(host, host_len, "[::1]") &&
            !host_is(host, host_len, "localhost"))
                return bad(ret_error,
                           "must be an https URL (http only for a loopback host: 127.0.0.1, [::1] or localhost)");
        return 0;
}

/* The field named name, where sep stands for a '-' ('-' in keyd.conf, '_' in JSON); NULL if there is none. */
static const PolicyField *field_lookup(const char *name, char sep) {
        FOREACH_POLICY_FIELD(f) {
                const char *a = f->name, *b = name;
                while (*a && *b && (*a == *b || (*a == '-' && *b == sep)))
                        a++, b++;
                if (!*a && !*b)
                        return f;
        }
        return NULL;
}

/* The JSON member name of a field: its name with '_' for '-'. */
static const char *json_name(const PolicyField *f, char buf[static POLICY_NAME_MAX]) {
        size_t i;
        for (i = 0; f->name[i] && i < POLICY_NAME_MAX - 1; i++)
                buf[i] = f->name[i] == '-' ? '_' : f->name[i];
        buf[i] = 0;
        return buf;
}

static int field_set(Policy *p, const PolicyField *f, const char *value, const char **ret_error) {
        /* The policy's JSON form (stored, shown, audited) holds nothing but UTF-8. */
        if (!utf8_valid(value, strlen(value)))
                return bad(ret_error, "not UTF-8");
        return f->type->parse(f, value, field_of(p, f), ret_error);
}

int policy_set(Policy *p, const char *name, const char *value, const char **ret_error) {
        const PolicyField *f = field_lookup(name, '-');
        const char *dummy;
        if (!f)
                return -ENOENT;
        return field_set(p, f, value, ret_error ?: &dummy);
}

int policy_to_json(const Policy *p, json_t **ret) {
        _cleanup_json_ json_t *o = json_object();

        if (!o)
                return -ENOMEM;
        FOREACH_POLICY_FIELD(f) {
                char name[POLICY_NAME_MAX];
                if (json_object_set_new(o, json_name(f, name), f->type->print(f, const_field_of(p, f))) < 0)
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(o);
        return 0;
}

_printf_(2, 3) static int fail(char **ret_error, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        if (vasprintf(ret_error, fmt, ap) < 0)
                *ret_error = NULL;
        va_end(ap);
        return -EINVAL;
}

int policy_update_from_json(Policy *p, const json_t *o, char **ret_error) {
        const char *key, *err = NULL;
        json_t *v;
        int r;

        if (!json_is_object(o))
                return fail(ret_error, "policy must be a JSON object");
        json_object_foreach((json_t *) o, key, v) {
                const PolicyField *f = field_lookup(key, '_');
                const PolicyType *t;
                const char *value = NULL;
                char text[64];

                if (!f)
                        return fail(ret_error, "unknown policy member '%s'", key);
                t = f->type;
                if (json_is_null(v) && t->null) {
                        t->clear(field_of(p, f));
                        continue;
                }
                if (json_is_array(v) && t->from_array) {
                        r = t->from_array(v, field_of(p, f));
                        if (r == -EINVAL)
                                return fail(ret_error, "'%s' must be a list of names", key);
                        if (r < 0)
                                return r;
                        continue;
                }
                if (json_is_string(v))
                        value = json_string_value(v);
                else if (json_is_integer(v) && json_integer_value(v) >= 0 && t->number_unit) {
                        snprintf(text, sizeof text, "%lld%s", (long long) json_integer_value(v), t->number_unit);
                        value = text;
                } else if (json_is_boolean(v) && t->boolean)
                        value = json_is_true(v) ? "yes" : "no";
                if (!value)
                        return fail(ret_error, "'%s' has the wrong type", key);
                r = field_set(p, f, value, &err);
                if (r == -EINVAL)
                        return fail(ret_error, "'%s': %s", key, err);
                if (r < 0)
                        return r;
        }
        return 0;
}
