/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stdio.h>
#include <strings.h>

#include "common/crypto-util.h"
#include "common/parse-util.h"
#include "common/strv.h"
#include "common/utf8.h"
#include "rotation/policy.h"

static const char *const kind_table[_RING_KIND_MAX] = {
        [RING_ISSUER] = "issuer",
        [RING_AGENT] = "agent",
};

const char *ring_kind_to_string(RingKind k) {
        return k >= 0 && k < _RING_KIND_MAX ? kind_table[k] : NULL;
}

RingKind ring_kind_from_string(const char *s) {
        for (int i = 0; s && i < _RING_KIND_MAX; i++)
                if (streq(kind_table[i], s))
                        return i;
        return _RING_KIND_INVALID;
}

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

void policy_done(Policy *p) {
        free(p->issuer);
        free(p->token_type);
        free(p->jwks_file);
        strv_free(p->sign_users);
        strv_free(p->sign_groups);
        memset(p, 0, sizeof *p);
}

static int dup_opt(const char *s, char **ret) {
        *ret = NULL;
        return s && !(*ret = strdup(s)) ? -ENOMEM : 0;
}

int policy_copy(const Policy *src, Policy *dst) {
        Policy p = *src;
        p.issuer = p.token_type = p.jwks_file = NULL;
        p.sign_users = p.sign_groups = NULL;
        if (dup_opt(src->issuer, &p.issuer) < 0 || dup_opt(src->token_type, &p.token_type) < 0 ||
            dup_opt(src->jwks_file, &p.jwks_file) < 0 || strv_copy(src->sign_users, &p.sign_users) < 0 ||
            strv_copy(src->sign_groups, &p.sign_groups) < 0) {
                policy_done(&p);
                return -ENOMEM;
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

/* Names as in the configuration file; JSON uses '_' for '-'. */
enum { F_ALG, F_RSA_BITS, F_ROTATION, F_PREPUBLISH, F_TTL_MAX, F_DEFAULT_TTL, F_SKEW, F_ISSUER, F_TYPE, F_USERS,
       F_GROUPS, F_PUBLISH, F_JWKS_FILE, F_RAW_SIGN, _F_MAX };
static const char *const field_names[_F_MAX] = {
        [F_ALG] = "alg",
        [F_RSA_BITS] = "rsa-bits",
        [F_ROTATION] = "rotation-period",
        [F_PREPUBLISH] = "prepublish",
        [F_TTL_MAX] = "token-ttl-max",
        [F_DEFAULT_TTL] = "default-ttl",
        [F_SKEW] = "clock-skew",
        [F_ISSUER] = "issuer",
        [F_TYPE] = "token-type",
        [F_USERS] = "sign-users",
        [F_GROUPS] = "sign-groups",
        [F_PUBLISH] = "publish",
        [F_JWKS_FILE] = "jwks-file",
        [F_RAW_SIGN] = "allow-raw-sign",
};

static usec_t *duration_field(Policy *p, int f) {
        switch (f) {
        case F_ROTATION:
                return &p->rotation_period;
        case F_PREPUBLISH:
                return &p->prepublish;
        case F_TTL_MAX:
                return &p->token_ttl_max;
        case F_DEFAULT_TTL:
                return &p->default_ttl;
        case F_SKEW:
                return &p->clock_skew;
        default:
                return NULL;
        }
}

static char **string_field(Policy *p, int f) {
        return f == F_ISSUER ? &p->issuer : f == F_TYPE ? &p->token_type : f == F_JWKS_FILE ? &p->jwks_file : NULL;
}

static int field_lookup(const char *name, char sep) {
        for (int f = 0; f < _F_MAX; f++) {
                const char *a = field_names[f], *b = name;
                while (*a && *b && (*a == *b || (*a == '-' && *b == sep)))
                        a++, b++;
                if (!*a && !*b)
                        return f;
        }
        return -ENOENT;
}

static int set_field(Policy *p, int f, const char *value, const char **ret_error) {
        usec_t *d = duration_field(p, f);
        char **s = string_field(p, f);
        int r;

        /* The policy's JSON form (stored, shown, audited) holds nothing but UTF-8. */
        if (!utf8_valid(value, strlen(value))) {
                *ret_error = "not UTF-8";
                return -EINVAL;
        }

        if (d) {
                /* clock-skew may be zero; every other duration is at least a second. */
                if (f == F_SKEW && (streq(value, "0") || streq(value, "0s"))) {
                        *d = 0;
                        return 0;
                }
                r = parse_duration(value, d);
                if (r < 0)
                        *ret_error = "bad duration (a whole number with s, m, h or d, between 1s and 3650d)";
                return r < 0 ? -EINVAL : 0;
        }
        if (s) {
                if (!*value || strlen(value) > POLICY_STRING_MAX) {
                        *ret_error = "must be a non-empty string of at most 1024 characters";
                        return -EINVAL;
                }
                char *c = strdup(value);
                if (!c)
                        return -ENOMEM;
                free(*s);
                *s = c;
                return 0;
        }
        switch (f) {
        case F_ALG:
                if (keyd_alg_from_string(value) < 0) {
                        *ret_error = "unknown alg (ES256, ES384, RS256, PS256, EdDSA)";
                        return -EINVAL;
                }
                p->alg = keyd_alg_from_string(value);
                return 0;
        case F_RSA_BITS: {
                uint64_t v;
                if (parse_uint64(value, 65536, &v) < 0 || !keyd_rsa_bits_valid((unsigned) v)) {
                        *ret_error = "rsa-bits must be 2048, 3072 or 4096";
                        return -EINVAL;
                }
                p->rsa_bits = (unsigned) v;
                return 0;
        }
        case F_PUBLISH:
        case F_RAW_SIGN:
                r = parse_boolean(value);
                if (r < 0) {
                        *ret_error = "expected yes or no";
                        return -EINVAL;
                }
                *(f == F_PUBLISH ? &p->publish : &p->allow_raw_sign) = r;
                return 0;
        case F_USERS:
        case F_GROUPS: {
                char **l = NULL, ***dst = f == F_USERS ? &p->sign_users : &p->sign_groups;
                r = strv_split(value, &l);
                if (r < 0)
                        return r;
                strv_free(*dst);
                *dst = l;
                return 0;
        }
        default:
                return -ENOENT;
        }
}

int policy_set(Policy *p, const char *name, const char *value, const char **ret_error) {
        int f = field_lookup(name, '-');
        const char *dummy;
        if (f < 0)
                return -ENOENT;
        return set_field(p, f, value, ret_error ?: &dummy);
}

int policy_to_json(const Policy *p, json_t **ret) {
        char buf[5][32];
        _cleanup_json_ json_t *users = json_array(), *groups = json_array();
        json_t *o;

        if (!users || !groups)
                return -ENOMEM;
        for (char **u = p->sign_users; u && *u; u++)
                json_array_append_new(users, json_string(*u));
        for (char **g = p->sign_groups; g && *g; g++)
                json_array_append_new(groups, json_string(*g));
        o = json_pack("{s:s, s:i, s:s, s:s, s:s, s:s, s:s, s:s?, s:s, s:O, s:O, s:b, s:s?, s:b}", "alg",
                      keyd_alg_to_string(p->alg), "rsa_bits", (json_int_t) p->rsa_bits, "rotation_period",
                      format_duration(buf[0], sizeof buf[0], p->rotation_period), "prepublish",
                      format_duration(buf[1], sizeof buf[1], p->prepublish), "token_ttl_max",
                      format_duration(buf[2], sizeof buf[2], p->token_ttl_max), "default_ttl",
                      format_duration(buf[3], sizeof buf[3], p->default_ttl), "clock_skew",
                      p->clock_skew ? format_duration(buf[4], sizeof buf[4], p->clock_skew) : "0s", "issuer",
                      p->issuer, "token_type", p->token_type ?: "JWT", "sign_users", users, "sign_groups", groups,
                      "publish", p->publish, "jwks_file", p->jwks_file, "allow_raw_sign", p->allow_raw_sign);
        if (!o)
                return -ENOMEM;
        *ret = o;
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

static int set_list_from_json(Policy *p, int f, const json_t *v) {
        char **l = calloc(json_array_size(v) + 1, sizeof(char *));
        size_t i;
        json_t *e;

        if (!l)
                return -ENOMEM;
        json_array_foreach(v, i, e) {
                if (!json_is_string(e)) {
                        strv_free(l);
                        return -EINVAL;
                }
                if (!(l[i] = strdup(json_string_value(e)))) {
                        strv_free(l);
                        return -ENOMEM;
                }
        }
        char ***dst = f == F_USERS ? &p->sign_users : &p->sign_groups;
        strv_free(*dst);
        *dst = l;
        return 0;
}

int policy_update_from_json(Policy *p, const json_t *o, char **ret_error) {
        const char *key, *err = NULL;
        json_t *v;
        int r;

        if (!json_is_object(o))
                return fail(ret_error, "policy must be a JSON object");
        json_object_foreach((json_t *) o, key, v) {
                char text[64];
                const char *value = NULL;
                int f = field_lookup(key, '_');

                if (f < 0)
                        return fail(ret_error, "unknown policy member '%s'", key);
                if (json_is_null(v) && string_field(p, f)) {
                        /* null: not set */
                        char **sp = string_field(p, f);
                        free(*sp);
                        *sp = NULL;
                        continue;
                }
                if ((f == F_USERS || f == F_GROUPS) && json_is_array(v)) {
                        r = set_list_from_json(p, f, v);
                        if (r == -EINVAL)
                                return fail(ret_error, "'%s' must be a list of names", key);
                        if (r < 0)
                                return r;
                        continue;
                }
                if (json_is_string(v))
                        value = json_string_value(v);
                else if (json_is_integer(v) && json_integer_value(v) >= 0 && f != F_PUBLISH && f != F_RAW_SIGN) {
                        snprintf(text, sizeof text, duration_field(p, f) ? "%llds" : "%lld",
                                 (long long) json_integer_value(v));
                        value = text;
                } else if (json_is_boolean(v) && (f == F_PUBLISH || f == F_RAW_SIGN))
                        value = json_is_true(v) ? "yes" : "no";
                if (!value)
                        return fail(ret_error, "'%s' has the wrong type", key);
                r = set_field(p, f, value, &err);
                if (r == -EINVAL)
                        return fail(ret_error, "'%s': %s", key, err);
                if (r < 0)
                        return r;
        }
        return 0;
}
