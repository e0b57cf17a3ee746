/* SPDX-License-Identifier: MIT */
/* rotation/policy.c: the field table behind policy_set() (keyd.conf), policy_update_from_json() and policy_to_json()
 * (the JSON form), policy_copy() and policy_done(); and the name tables of common/string-table.h. */
#include <criterion/criterion.h>

#include "common/crypto-util.h"
#include "jose/jws.h"
#include "rotation/policy.h"

#define S USEC_PER_SEC

static char *dump(const Policy *p) {
        _cleanup_json_ json_t *j = NULL;
        cr_assert_eq(policy_to_json(p, &j), 0);
        char *s = json_dumps(j, JSON_COMPACT);
        cr_assert_not_null(s);
        return s;
}

/* policy_update_from_json() of the JSON text over the defaults of an issuer keyring: its return value, and in
 * *ret_error its message (NULL on success). */
static int update(Policy *p, const char *text, char **ret_error) {
        _cleanup_json_ json_t *j = json_loads(text, JSON_DECODE_ANY, NULL);
        cr_assert_not_null(j, "%s", text);
        *ret_error = NULL;
        return policy_update_from_json(p, j, ret_error);
}

static void expect_json_error(const char *text, const char *error) {
        _cleanup_free_ char *err = NULL;
        Policy p;
        policy_init(&p, RING_ISSUER);
        cr_assert_eq(update(&p, text, &err), -EINVAL, "%s", text);
        cr_assert_str_eq(err, error, "%s", text);
        policy_done(&p);
}

static void expect_set_error(const char *name, const char *value, const char *error) {
        const char *err = NULL;
        Policy p;
        policy_init(&p, RING_ISSUER);
        cr_assert_eq(policy_set(&p, name, value, &err), -EINVAL, "%s = %s", name, value);
        cr_assert_str_eq(err, error, "%s = %s", name, value);
        cr_assert_eq(policy_set(&p, name, value, NULL), -EINVAL, "no message asked for");
        policy_done(&p);
}

/* A case of a name table: a value and its name. to_string(value) is name (NULL: the value has none); from_string(name)
 * is value (the table's invalid value: not a name). */
typedef struct NameCase {
        int value;
        const char *name;
        const char *why;
} NameCase;

/* For each case: to_string(value) is name; from_string(name) is value. */
#define assert_to_string(to_string, ...)                                                                          \
        do {                                                                                                      \
                static const NameCase _cases[] = { __VA_ARGS__ };                                                 \
                for (size_t _i = 0; _i < ELEMENTSOF(_cases); _i++) {                                              \
                        const char *_got = to_string(_cases[_i].value);                                           \
                        cr_assert(streq_ptr(_got, _cases[_i].name), "%s(%d) is %s, not %s %s", #to_string,        \
                                  _cases[_i].value, _got ?: "NULL", _cases[_i].name ?: "NULL",                    \
                                  _cases[_i].why ?: "");                                                          \
                }                                                                                                 \
        } while (false)

#define assert_from_string(from_string, ...)                                                                      \
        do {                                                                                                      \
                static const NameCase _cases[] = { __VA_ARGS__ };                                                 \
                for (size_t _i = 0; _i < ELEMENTSOF(_cases); _i++)                                                \
                        cr_assert_eq((int) from_string(_cases[_i].name), _cases[_i].value, "%s(%s): %s",          \
                                     #from_string, _cases[_i].name ?: "NULL", _cases[_i].why ?: "");              \
        } while (false)

Test(names, ring_kind) {
        assert_to_string(ring_kind_to_string, { RING_ISSUER, "issuer" }, { RING_AGENT, "agent" },
                         { _RING_KIND_MAX, NULL }, { _RING_KIND_INVALID, NULL });
        assert_from_string(ring_kind_from_string, { RING_AGENT, "agent" },
                           { _RING_KIND_INVALID, "Agent", "names are case-sensitive" }, { _RING_KIND_INVALID, "" },
                           { _RING_KIND_INVALID, NULL });
}

Test(names, tables_with_holes) {
        /* The crv table has no entry for the RSA algs: neither direction finds one. */
        assert_to_string(keyd_alg_jwk_crv, { KEYD_ALG_ES384, "P-384" }, { KEYD_ALG_EDDSA, "Ed25519" },
                         { KEYD_ALG_RS256, NULL }, { _KEYD_ALG_INVALID, NULL });
        assert_from_string(keyd_alg_from_jwk_crv, { KEYD_ALG_ES256, "P-256" }, { KEYD_ALG_EDDSA, "Ed25519" },
                           { _KEYD_ALG_INVALID, "RS256" }, { _KEYD_ALG_INVALID, "P-521" }, { _KEYD_ALG_INVALID, NULL });
        assert_from_string(key_state_from_string, { KEY_STATE_REVOKED, "revoked" });
        assert_to_string(key_state_to_string, { _KEY_STATE_MAX, NULL });
        assert_to_string(jose_result_to_string, { JOSE_INTERNAL, "internal" }, { _JOSE_RESULT_MAX, NULL });
}

/* The JSON form: every field, in this order, '_' for '-'. */
Test(policy, defaults_to_json) {
        _cleanup_free_ char *issuer = NULL, *agent = NULL;
        Policy p;

        policy_init(&p, RING_ISSUER);
        issuer = dump(&p);
        policy_done(&p);
        cr_assert_str_eq(issuer, "{\"alg\":\"ES256\",\"rsa_bits\":2048,\"rotation_period\":\"1d\",\"prepublish\":\"1h\","
                                 "\"token_ttl_max\":\"1h\",\"default_ttl\":\"15m\",\"clock_skew\":\"1m\","
                                 "\"issuer\":null,\"token_type\":\"JWT\",\"sign_users\":[],\"sign_groups\":[],"
                                 "\"publish\":true,\"jwks_file\":null,\"allow_raw_sign\":false}");
        policy_init(&p, RING_AGENT);
        agent = dump(&p);
        policy_done(&p);
        cr_assert(strstr(agent, "\"publish\":false"), "%s", agent);
}

/* Every field set from keyd.conf's text shows in the JSON form, and reads back from it. */
Test(policy, set_every_field_and_round_trip) {
        static const struct {
                const char *name, *value, *json;
        } fields[] = {
                { "alg", "PS256", "\"alg\":\"PS256\"" },
                { "rsa-bits", "3072", "\"rsa_bits\":3072" },
                { "rotation-period", "36h", "\"rotation_period\":\"36h\"" },
                { "prepublish", "90m", "\"prepublish\":\"90m\"" },
                { "token-ttl-max", "2h", "\"token_ttl_max\":\"2h\"" },
                { "default-ttl", "600", "\"default_ttl\":\"10m\"" },
                { "clock-skew", "0", "\"clock_skew\":\"0s\"" },
                { "issuer", "https://issuer.test", "\"issuer\":\"https://issuer.test\"" },
                { "token-type", "at+jwt", "\"token_type\":\"at+jwt\"" },
                { "sign-users", "alice, bob", "\"sign_users\":[\"alice\",\"bob\"]" },
                { "sign-groups", "web", "\"sign_groups\":[\"web\"]" },
                { "publish", "no", "\"publish\":false" },
                { "jwks-file", "/srv/jwks.json", "\"jwks_file\":\"/srv/jwks.json\"" },
                { "allow-raw-sign", "yes", "\"allow_raw_sign\":true" },
        };
        _cleanup_free_ char *all = NULL, *again = NULL, *copied = NULL;
        _cleanup_json_ json_t *j = NULL;
        char *err = NULL;
        Policy p, q, c;

        policy_init(&p, RING_ISSUER);
        for (size_t i = 0; i < ELEMENTSOF(fields); i++) {
                _cleanup_free_ char *s = NULL;
                cr_assert_eq(policy_set(&p, fields[i].name, fields[i].value, NULL), 0, "%s", fields[i].name);
                s = dump(&p);
                cr_assert(strstr(s, fields[i].json), "%s = %s: %s", fields[i].name, fields[i].value, s);
        }
        cr_assert_eq(p.clock_skew, 0);
        cr_assert_eq(p.default_ttl, 600 * S);
        cr_assert_eq(policy_validate(&p, NULL), 0);
        all = dump(&p);

        /* Over the other kind's defaults, and in a copy that outlives the original. */
        cr_assert_eq(policy_to_json(&p, &j), 0);
        policy_init(&q, RING_AGENT);
        cr_assert_eq(policy_update_from_json(&q, j, &err), 0, "%s", err ?: "");
        again = dump(&q);
        cr_assert_str_eq(again, all);
        cr_assert_eq(policy_copy(&q, &c), 0);
        policy_done(&q);
        cr_assert_null(q.issuer, "policy_done() leaves nothing behind");
        cr_assert_null(q.sign_users);
        copied = dump(&c);
        cr_assert_str_eq(copied, all);
        cr_assert_neq(c.issuer, p.issuer);
        policy_done(&c);
        policy_done(&p);
}

Test(policy, set_unknown_names) {
        Policy p;
        policy_init(&p, RING_ISSUER);
        cr_assert_eq(policy_set(&p, "rotation_period", "1h", NULL), -ENOENT, "keyd.conf names have '-'");
        cr_assert_eq(policy_set(&p, "kind", "agent", NULL), -ENOENT, "not a policy field");
        cr_assert_eq(policy_set(&p, "alg-", "ES256", NULL), -ENOENT);
        cr_assert_eq(policy_set(&p, "", "x", NULL), -ENOENT);
        policy_done(&p);
}

/* The messages keyd.conf's errors are made of (keyd/config.c puts the key and the value in). */
Test(policy, set_errors) {
        expect_set_error("alg", "HS256", "unknown alg (ES256, ES384, RS256, PS256, EdDSA)");
        expect_set_error("rsa-bits", "1024", "rsa-bits must be 2048, 3072 or 4096");
        expect_set_error("rsa-bits", "65537", "rsa-bits must be 2048, 3072 or 4096");
        expect_set_error("rotation-period", "0",
                         "bad duration (a whole number with s, m, h or d, between 1s and 3650d)");
        expect_set_error("clock-skew", "0m", "bad duration (a whole number with s, m, h or d, between 1s and 3650d)");
        expect_set_error("issuer", "", "must be a non-empty string of at most 1024 characters");
        expect_set_error("publish", "sometimes", "expected yes or no");
        expect_set_error("token-type", "caf\xe9", "not UTF-8");

        char long_value[POLICY_STRING_MAX + 2];
        memset(long_value, 'a', sizeof long_value - 1);
        long_value[sizeof long_value - 1] = 0;
        expect_set_error("jwks-file", long_value, "must be a non-empty string of at most 1024 characters");
        long_value[POLICY_STRING_MAX] = 0;
        Policy p;
        policy_init(&p, RING_ISSUER);
        cr_assert_eq(policy_set(&p, "jwks-file", long_value, NULL), 0, "1024 characters are enough");
        policy_done(&p);
}

/* What JSON takes besides strings: numbers (durations in seconds), booleans, null for strings, arrays for lists;
 * and names with '-' as well as '_'. */
Test(policy, json_types) {
        _cleanup_free_ char *err = NULL;
        Policy p;

        policy_init(&p, RING_ISSUER);
        cr_assert_eq(update(&p,
                            "{\"rsa_bits\": 4096, \"rotation_period\": 7200, \"clock_skew\": 0, \"issuer\": \"i\","
                            " \"token-type\": 5, \"sign_users\": [\"a b\", \"\"], \"sign_groups\": \"x,y\","
                            " \"publish\": false, \"allow_raw_sign\": \"on\"}",
                            &err),
                     0, "%s", err ?: "");
        cr_assert_eq(p.rsa_bits, 4096);
        cr_assert_eq(p.rotation_period, 7200 * S);
        cr_assert_eq(p.clock_skew, 0);
        cr_assert_str_eq(p.token_type, "5");
        cr_assert_str_eq(p.sign_users[0], "a b", "array members are kept as they are");
        cr_assert_str_eq(p.sign_users[1], "");
        cr_assert_null(p.sign_users[2]);
        cr_assert_str_eq(p.sign_groups[1], "y", "a string is split as in keyd.conf");
        cr_assert_not(p.publish);
        cr_assert(p.allow_raw_sign);

        cr_assert_eq(update(&p, "{\"issuer\": null, \"token_type\": null}", &err), 0);
        cr_assert_null(p.issuer);
        cr_assert_null(p.token_type);
        _cleanup_free_ char *s = dump(&p);
        cr_assert(strstr(s, "\"issuer\":null,\"token_type\":\"JWT\""), "%s", s);
        policy_done(&p);
}

Test(policy, json_errors) {
        expect_json_error("[]", "policy must be a JSON object");
        expect_json_error("{\"kind\": \"agent\"}", "unknown policy member 'kind'");
        expect_json_error("{\"alg\": null}", "'alg' has the wrong type");
        expect_json_error("{\"alg\": true}", "'alg' has the wrong type");
        expect_json_error("{\"rsa_bits\": -1}", "'rsa_bits' has the wrong type");
        expect_json_error("{\"prepublish\": 1.5}", "'prepublish' has the wrong type");
        expect_json_error("{\"issuer\": [\"a\"]}", "'issuer' has the wrong type");
        expect_json_error("{\"sign_users\": null}", "'sign_users' has the wrong type");
        expect_json_error("{\"sign_users\": {}}", "'sign_users' has the wrong type");
        expect_json_error("{\"publish\": 1}", "'publish' has the wrong type");
        expect_json_error("{\"sign_groups\": [\"a\", 1]}", "'sign_groups' must be a list of names");
        expect_json_error("{\"alg\": 5}", "'alg': unknown alg (ES256, ES384, RS256, PS256, EdDSA)");
        expect_json_error("{\"rsa-bits\": 2047}", "'rsa-bits': rsa-bits must be 2048, 3072 or 4096");
        expect_json_error("{\"default_ttl\": 0}",
                          "'default_ttl': bad duration (a whole number with s, m, h or d, between 1s and 3650d)");
        expect_json_error("{\"jwks_file\": \"\"}",
                          "'jwks_file': must be a non-empty string of at most 1024 characters");
        expect_json_error("{\"allow_raw_sign\": \"maybe\"}", "'allow_raw_sign': expected yes or no");
}
