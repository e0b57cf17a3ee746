/* SPDX-License-Identifier: MIT */
/* keyd.conf: the SPEC §2 example, a richer good file, and one data file per kind of error with its exact messages. */
#include <criterion/criterion.h>
#include <stdio.h>

#include "common/macro.h"
#include "common/strv.h"
#include "keyd/config.h"
#include "pkcs11/hsm.h"
#include "tests/helpers/test-util.h"

#define H (3600 * USEC_PER_SEC)
#define M (60 * USEC_PER_SEC)
#define S USEC_PER_SEC

/* Criterion runs each test in its own process: chdir so that messages name the file as given ("bad-x.conf:3: "). */
static void enter_data_dir(void) {
        _cleanup_free_ char *dir = test_path("tests/data/config");
        cr_assert_eq(chdir(dir), 0, "chdir %s: %m", dir);
}

TestSuite(config, .init = enter_data_dir);

static void assert_strv(char **l, const char *const *expected) {
        size_t n = 0;
        for (; l && l[n]; n++) {
                cr_assert_not_null(expected[n], "unexpected extra entry '%s'", l[n]);
                cr_assert_str_eq(l[n], expected[n]);
        }
        cr_assert_null(expected[n], "missing entry '%s'", expected[n]);
}
#define ASSERT_STRV(l, ...) assert_strv((l), (const char *const[]){ __VA_ARGS__, NULL })

static const ConfigKeyring *find_ring(const Config *c, const char *name) {
        for (size_t i = 0; i < c->n_keyrings; i++)
                if (streq(c->keyrings[i].name, name))
                        return &c->keyrings[i];
        cr_assert_fail("no [keyring %s]", name);
        return NULL;
}

/* Load a file that must be refused with exactly these messages, in this order. */
static void expect_errors(const char *file, const char *const *expected) {
        Config c;
        char **errors = NULL;

        cr_assert_eq(config_init(&c), 0);
        cr_assert_eq(config_load(file, &c, &errors), -EINVAL, "%s was accepted", file);
        cr_assert_not_null(errors);
        assert_strv(errors, expected);
        strv_free(errors);
        config_done(&c);
}
#define EXPECT_ERRORS(file, ...) expect_errors((file), (const char *const[]){ __VA_ARGS__, NULL })

static void load_good(const char *file, Config *c) {
        char **errors = NULL;
        int r;

        cr_assert_eq(config_init(c), 0);
        r = config_load(file, c, &errors);
        cr_assert_eq(r, 0, "%s: %d, first error: %s", file, r, errors && errors[0] ? errors[0] : "(none)");
        cr_assert_null(errors);
}

/* [store], [api] and [audit] as config_init() sets them. */
static void assert_default_store_api_audit(const Config *c) {
        cr_assert_str_eq(c->store_path, "/var/lib/keyd/keyd.db");
        cr_assert_str_eq(c->socket, "/run/keyd/keyd.sock");
        cr_assert_eq(c->workers, 0);
        ASSERT_STRV(c->admin_users, "root");
        ASSERT_STRV(c->admin_groups, "keyd-admin");
        cr_assert_eq(c->max_connections, 256);
        cr_assert_eq(c->max_connections_per_uid, 32);
        cr_assert_eq(c->idle_timeout, 30 * S);
        cr_assert_eq(c->checkpoint_interval, 1 * H);
        cr_assert_null(c->anchor_file);
}

/* The five durations of a policy. */
static void assert_policy_times(const Policy *p, usec_t rotation_period, usec_t prepublish, usec_t token_ttl_max,
                                usec_t default_ttl, usec_t clock_skew) {
        cr_assert_eq(p->rotation_period, rotation_period);
        cr_assert_eq(p->prepublish, prepublish);
        cr_assert_eq(p->token_ttl_max, token_ttl_max);
        cr_assert_eq(p->default_ttl, default_ttl);
        cr_assert_eq(p->clock_skew, clock_skew);
}

Test(config, defaults) {
        Config c;
        cr_assert_eq(config_init(&c), 0);
        cr_assert_str_eq(c.module, KEYD_DEFAULT_MODULE);
        cr_assert_null(c.uri);
        cr_assert_null(c.pin_file);
        cr_assert_null(c.softhsm2_conf);
        cr_assert_eq(c.session_wait, 5 * USEC_PER_SEC);
        cr_assert_eq(c.max_sessions, 64);
        cr_assert_eq(c.sign_timeout, 5 * USEC_PER_SEC);
        cr_assert_eq(c.sign_in, HSM_SIGN_IN_AUTO);
        assert_default_store_api_audit(&c);
        cr_assert_null(c.public_listen);
        cr_assert_null(c.metrics_listen, "no metrics listener unless asked for");
        cr_assert_eq(c.n_keyrings, 0);
        config_done(&c);
        cr_assert_null(c.module, "config_done() leaves a clean Config");
}

Test(config, spec_example) {
        Config c;
        load_good("spec-example.conf", &c);
        cr_assert_str_eq(c.module, "/usr/lib/softhsm/libsofthsm2.so");
        cr_assert_str_eq(c.uri, "pkcs11:token=keyd");
        cr_assert_str_eq(c.pin_file, "/etc/keyd/pin", "the inline comment after the value is not part of it");
        cr_assert_null(c.softhsm2_conf);
        assert_default_store_api_audit(&c);
        cr_assert_str_eq(c.public_listen, "127.0.0.1:8080");

        cr_assert_eq(c.n_keyrings, 1);
        const ConfigKeyring *k = &c.keyrings[0];
        cr_assert_str_eq(k->name, "default");
        cr_assert_eq(k->kind, RING_ISSUER);
        cr_assert_eq(k->owner_uid, -1);
        cr_assert_eq(k->line, 18);
        cr_assert_eq(k->policy.alg, KEYD_ALG_ES256);
        cr_assert_str_eq(k->policy.issuer, "https://issuer.example.com");
        assert_policy_times(&k->policy, 24 * H, 1 * H, 1 * H, 15 * M, 60 * S);
        cr_assert_null(k->policy.token_type);
        ASSERT_STRV(k->policy.sign_users, "gateway");
        ASSERT_STRV(k->policy.sign_groups, "keyd-sign");
        cr_assert(k->policy.publish);
        cr_assert_str_eq(k->policy.jwks_file, "/var/lib/keyd/jwks/default.json");
        config_done(&c);
}

Test(config, good_several_keyrings) {
        Config c;
        load_good("good-several.conf", &c);
        cr_assert_str_eq(c.module, "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so");
        cr_assert_str_eq(c.uri, "pkcs11:token=keyd;manufacturer=SoftHSM%20project", "';' without a blank before it");
        cr_assert_str_eq(c.pin_file, "/run/keyd/pin");
        cr_assert_str_eq(c.softhsm2_conf, "/etc/softhsm/softhsm2.conf");
        cr_assert_eq(c.max_sessions, 16);
        cr_assert_eq(c.sign_timeout, 2 * USEC_PER_SEC);
        cr_assert_eq(c.sign_in, HSM_SIGN_IN_WORKERS);
        cr_assert_str_eq(c.store_path, "/srv/keyd/keyd.db", "an indented key is a key, not a continuation");
        cr_assert_str_eq(c.socket, "/run/keyd/api.sock");
        cr_assert_eq(c.workers, 8);
        ASSERT_STRV(c.admin_users, "root", "alice", "bob");
        ASSERT_STRV(c.admin_groups, "wheel", "keyd-admin");
        cr_assert_eq(c.max_connections, 1024);
        cr_assert_eq(c.max_connections_per_uid, 16);
        cr_assert_eq(c.idle_timeout, 2 * M);
        cr_assert_str_eq(c.public_listen, "[::1]:8443");
        cr_assert_str_eq(c.metrics_listen, "127.0.0.1:9102");
        cr_assert_eq(c.checkpoint_interval, 24 * H);
        cr_assert_eq(c.n_keyrings, 4);

        const ConfigKeyring *k = find_ring(&c, "default");
        cr_assert_eq(k->kind, RING_ISSUER);
        cr_assert_eq(k->policy.alg, KEYD_ALG_ES384);
        assert_policy_times(&k->policy, 7 * 24 * H, 12 * H, 90 * M, 300 * S, 0);
        cr_assert_str_eq(k->policy.token_type, "at+jwt;v=1");
        ASSERT_STRV(k->policy.sign_groups, "keyd-sign", "web");
        cr_assert(k->policy.publish);

        k = find_ring(&c, "legacy.rsa");
        cr_assert_eq(k->kind, RING_ISSUER);
        cr_assert_eq(k->policy.alg, KEYD_ALG_RS256);
        cr_assert_eq(k->policy.rsa_bits, 4096);
        cr_assert_eq(k->policy.rotation_period, 30 * 24 * H);
        cr_assert_eq(k->policy.prepublish, 24 * H);
        cr_assert_not(k->policy.publish);
        cr_assert_null(k->policy.jwks_file);

        k = find_ring(&c, "agent-7");
        cr_assert_eq(k->kind, RING_AGENT, "kind after the other keys still counts");
        cr_assert_eq(k->owner_uid, 1007);
        cr_assert_eq(k->policy.alg, KEYD_ALG_EDDSA);
        assert_policy_times(&k->policy, 1 * H, 10 * M, 5 * M, 1 * M, 30 * S);
        cr_assert_null(k->policy.issuer);
        cr_assert_not(k->policy.publish, "agent keyrings default to publish = no, whatever the order of keys");

        k = find_ring(&c, "agent-8");
        cr_assert_eq(k->kind, RING_AGENT);
        cr_assert_eq(k->owner_uid, 0);
        cr_assert(k->policy.publish, "an explicit publish = yes wins over the agent default");
        cr_assert_eq(k->policy.rotation_period, 24 * H, "the defaults of policy_init()");
        config_done(&c);
}

/* allow-raw-sign: off by default, a boolean, in the policy's JSON. */
Test(config, allow_raw_sign) {
        Config c;
        json_t *j = NULL;
        load_good("raw-sign.conf", &c);
        cr_assert_not(find_ring(&c, "default")->policy.allow_raw_sign, "off by default");
        cr_assert(find_ring(&c, "raw")->policy.allow_raw_sign);
        cr_assert_not(find_ring(&c, "no")->policy.allow_raw_sign);

        Policy copy;
        cr_assert_eq(policy_copy(&find_ring(&c, "raw")->policy, &copy), 0);
        cr_assert(copy.allow_raw_sign);
        cr_assert_eq(policy_to_json(&copy, &j), 0);
        cr_assert(json_is_true(json_object_get(j, "allow_raw_sign")));
        policy_done(&copy);

        Policy p;
        char *err = NULL;
        policy_init(&p, RING_ISSUER);
        cr_assert_eq(policy_update_from_json(&p, j, &err), 0, "%s", err ?: "");
        cr_assert(p.allow_raw_sign, "the JSON form reads back");
        json_decref(j);
        j = json_pack("{s:b}", "allow_raw_sign", 0);
        cr_assert_eq(policy_update_from_json(&p, j, &err), 0);
        cr_assert_not(p.allow_raw_sign);
        json_decref(j);
        j = json_pack("{s:i}", "allow_raw_sign", 1);
        cr_assert_eq(policy_update_from_json(&p, j, &err), -EINVAL, "a number is not a boolean");
        free(err);
        json_decref(j);
        policy_done(&p);
        config_done(&c);
}

Test(config, bad_raw_sign_and_keyd_token_types) {
        EXPECT_ERRORS("bad-raw-sign.conf",
                      "bad-raw-sign.conf:5: allow-raw-sign: bad value 'sometimes' (expected yes or no)",
                      "bad-raw-sign.conf:7: [keyring b]: token-type must not be one of keyd's own document types "
                      "(keyd-revocations+jwt, keyd-audit-checkpoint+jwt)",
                      "bad-raw-sign.conf:10: [keyring c]: token-type must not be one of keyd's own document types "
                      "(keyd-revocations+jwt, keyd-audit-checkpoint+jwt)");
}

/* Line ends, a BOM, blank prefixes and repeated keys (the last one wins, nothing leaks: see the ASan run). */
Test(config, crlf_bom_and_repeats) {
        _cleanup_free_ char *dir = test_mkdtemp(), *path = NULL;
        char **errors = NULL;
        Config c;
        FILE *f;

        cr_assert(asprintf(&path, "%s/keyd.conf", dir) >= 0);
        f = fopen(path, "we");
        cr_assert_not_null(f);
        fputs("\xEF\xBB\xBF[token]\r\n"
              "uri = pkcs11:token=first\r\n"
              "uri = pkcs11:token=second\r\n"
              "\t module = /a.so\r\n"
              "module = /b.so\r\n"
              "[api]\r\n"
              "admin-users = a b\r\n"
              "admin-users = c\r\n"
              "[keyring k]\r\n"
              "issuer = https://one\r\n"
              "issuer = https://two\r\n"
              "[keyring j]\r\n"
              "alg = nope",
              f);
        cr_assert_eq(fclose(f), 0);

        cr_assert_eq(config_init(&c), 0);
        cr_assert_eq(config_load(path, &c, &errors), -EINVAL);
        cr_assert_not_null(errors);
        cr_assert_not_null(errors[0]);
        _cleanup_free_ char *expected = NULL;
        cr_assert(asprintf(&expected, "%s:13: alg: unknown alg 'nope' (ES256, ES384, RS256, PS256, EdDSA)", path) >=
                  0);
        cr_assert_str_eq(errors[0], expected, "the last line has no newline and still counts");
        cr_assert_null(errors[1]);
        cr_assert_str_eq(c.uri, "pkcs11:token=second");
        cr_assert_str_eq(c.module, "/b.so");
        ASSERT_STRV(c.admin_users, "c");
        cr_assert_str_eq(find_ring(&c, "k")->policy.issuer, "https://two");
        strv_free(errors);
        config_done(&c);
        test_rmrf(dir);
}

Test(config, missing_file) {
        char **errors = (char **) 1;
        Config c;
        cr_assert_eq(config_init(&c), 0);
        cr_assert_eq(config_load("does-not-exist.conf", &c, &errors), -ENOENT);
        cr_assert_null(errors, "no error list when the file cannot be read");
        config_done(&c);
}

Test(config, directory) {
        char **errors = NULL;
        Config c;
        cr_assert_eq(config_init(&c), 0);
        cr_assert_lt(config_load(".", &c, &errors), 0);
        cr_assert_neq(config_load(".", &c, &errors), -EINVAL, "a read error is not a list of errors");
        cr_assert_null(errors);
        config_done(&c);
}

Test(config, errors_without_list) {
        Config c;
        cr_assert_eq(config_init(&c), 0);
        cr_assert_eq(config_load("bad-many.conf", &c, NULL), -EINVAL);
        config_done(&c);
}

Test(config, malformed_lines) {
        EXPECT_ERRORS("bad-malformed.conf",
                      "bad-malformed.conf:3: malformed line (expected 'key = value', [SECTION] or a comment)",
                      "bad-malformed.conf:4: malformed line (expected 'key = value', [SECTION] or a comment)",
                      "bad-malformed.conf:5: malformed line (expected 'key = value', [SECTION] or a comment)",
                      "bad-malformed.conf:7: malformed section header (expected [NAME])",
                      "bad-malformed.conf:9: malformed section header (expected [NAME])");
}

Test(config, unknown_section) {
#define EXPECTED_SECTIONS "(expected [token], [store], [api], [public], [metrics], [audit] or [keyring NAME])"
        EXPECT_ERRORS(
                "bad-unknown-section.conf",
                "bad-unknown-section.conf:4: unknown section [tokens] (did you mean [token]?)",
                "bad-unknown-section.conf:8: unknown section [keyrings default] (did you mean [keyring default]?)",
                "bad-unknown-section.conf:9: unknown section [API] (did you mean [api]?)");
}

Test(config, unknown_key) {
        EXPECT_ERRORS("bad-unknown-key.conf",
                      "bad-unknown-key.conf:5: unknown key 'sokcet' in [api] (did you mean 'socket'?)",
                      "bad-unknown-key.conf:8: unknown key 'rotation' in [keyring default] (did you mean "
                      "'rotation-period'?)",
                      "bad-unknown-key.conf:9: unknown key 'path' in [keyring default]");
}

/* The nearest known name for a slip (a letter missing, swapped or wrong, '_' for '-', case, a name cut short), and
 * none for what is not close to any: still an error, the file is refused. */
Test(config, did_you_mean) {
        EXPECT_ERRORS("bad-did-you-mean.conf",
                      "bad-did-you-mean.conf:3: unknown key 'pin_file' in [token] (did you mean 'pin-file'?)",
                      "bad-did-you-mean.conf:4: unknown key 'modul' in [token] (did you mean 'module'?)",
                      "bad-did-you-mean.conf:6: unknown section [stroe] (did you mean [store]?)",
                      "bad-did-you-mean.conf:8: unknown section [Audit] (did you mean [audit]?)",
                      "bad-did-you-mean.conf:10: unknown key 'rotaton-period' in [keyring default] (did you mean "
                      "'rotation-period'?)",
                      "bad-did-you-mean.conf:11: unknown key 'prepublsh' in [keyring default] (did you mean "
                      "'prepublish'?)",
                      "bad-did-you-mean.conf:12: unknown key 'Alg' in [keyring default] (did you mean 'alg'?)",
                      "bad-did-you-mean.conf:13: unknown key 'sign-user' in [keyring default] (did you mean "
                      "'sign-users'?)",
                      "bad-did-you-mean.conf:14: unknown key 'colour' in [keyring default]",
                      "bad-did-you-mean.conf:15: unknown key 'owner_uid' in [keyring default] (did you mean "
                      "'owner-uid'?)",
                      "bad-did-you-mean.conf:16: unknown section [keyrnig second] (did you mean [keyring second]?)",
                      "bad-did-you-mean.conf:18: unknown key 'admin-user' in [api] (did you mean 'admin-users'?)",
                      "bad-did-you-mean.conf:19: unknown key 'max-connection' in [api] (did you mean "
                      "'max-connections'?)",
                      "bad-did-you-mean.conf:20: unknown key 'socekt' in [api] (did you mean 'socket'?)",
                      "bad-did-you-mean.conf:22: unknown key 'listen-address' in [public]",
                      "bad-did-you-mean.conf:23: unknown section [tokens] (did you mean [token]?)",
                      "bad-did-you-mean.conf:25: unknown key 'checkpoint' in [audit] (did you mean "
                      "'checkpoint-interval'?)");
}

Test(config, key_before_any_section) {
        EXPECT_ERRORS("bad-no-section.conf",
                      "bad-no-section.conf:2: key 'module' before any section (put it under [token])",
                      "bad-no-section.conf:3: key 'uri' before any section (put it under [token])");
}

Test(config, bad_token_limits) {
        EXPECT_ERRORS("bad-token.conf",
                      "bad-token.conf:3: max-sessions: bad number '2000' (a whole number between 1 and 1024)",
                      "bad-token.conf:4: sign-timeout: bad duration '11m' (between 1s and 600s)",
                      "bad-token.conf:5: sign-in: bad value 'sideways' (auto, caller or workers)");
}

/* Each bad duration says what is wrong with it, in [token], [api], [audit] and [keyring] sections alike; the ranges
 * of the keys that have one are as they were. */
Test(config, bad_duration) {
#define UNKNOWN_UNIT "(unknown unit: w, d, h, m or s, in lower case)"
#define NOT_A_NUMBER "(only whole numbers and units: no sign, fraction or blank)"
        EXPECT_ERRORS("bad-duration.conf",
                      "bad-duration.conf:3: session-wait: bad duration '11m' (between 1s and 600s)",
                      "bad-duration.conf:6: idle-timeout: bad duration '10x' " UNKNOWN_UNIT,
                      "bad-duration.conf:9: rotation-period: bad duration '10x' " UNKNOWN_UNIT,
                      "bad-duration.conf:10: prepublish: bad duration '0s' (zero: at least 1s)",
                      "bad-duration.conf:11: token-ttl-max: bad duration '-1s' " NOT_A_NUMBER,
                      "bad-duration.conf:12: default-ttl: bad duration '1.5h' " NOT_A_NUMBER,
                      "bad-duration.conf:13: clock-skew: bad duration '' (empty: write a duration such as 90s, 1h30m "
                      "or 2d12h)",
                      "bad-duration.conf:16: checkpoint-interval: bad duration '1h30' (the last number has no unit: "
                      "write 1h30m, not 1h30)",
                      "bad-duration.conf:19: rotation-period: bad duration 'h' (a unit without a number before it: "
                      "write 1h, not h)",
                      "bad-duration.conf:20: prepublish: bad duration '99999999999999999999d' (longer than 3650d)",
                      "bad-duration.conf:21: token-ttl-max: bad duration '30m1h' (units go from the largest to the "
                      "smallest, each once: w, d, h, m, s)",
                      "bad-duration.conf:22: default-ttl: bad duration '3651d' (longer than 3650d)",
                      "bad-duration.conf:25: sign-timeout: bad duration '10m1s' (between 1s and 600s)");
}

/* 1h30m, 2d12h, 1w: several units, and weeks, wherever keyd.conf takes a duration. */
Test(config, compound_durations) {
        Config c;
        load_good("good-durations.conf", &c);
        cr_assert_eq(c.session_wait, 90 * S);
        cr_assert_eq(c.sign_timeout, 600 * S, "10m is the top of sign-timeout's range");
        cr_assert_eq(c.idle_timeout, 90 * M);
        cr_assert_eq(c.checkpoint_interval, 7 * 24 * H);
        assert_policy_times(&find_ring(&c, "default")->policy, 60 * H, 90 * M, 90 * M, 45 * M + 30 * S, 90 * S);
        assert_policy_times(&find_ring(&c, "weekly")->policy, 14 * 24 * H, 8 * 24 * H, 24 * H, 300 * S, 60 * S);
        config_done(&c);
}

Test(config, bad_alg) {
#define EXPECTED_ALGS "(ES256, ES384, RS256, PS256, EdDSA)"
        EXPECT_ERRORS("bad-alg.conf", "bad-alg.conf:5: alg: unknown alg 'HS256' " EXPECTED_ALGS,
                      "bad-alg.conf:8: alg: unknown alg 'none' " EXPECTED_ALGS,
                      "bad-alg.conf:11: alg: unknown alg 'es256' " EXPECTED_ALGS);
}

Test(config, bad_rsa_bits) {
        EXPECT_ERRORS("bad-rsa-bits.conf",
                      "bad-rsa-bits.conf:6: rsa-bits: bad value '1024' (rsa-bits must be 2048, 3072 or 4096)",
                      "bad-rsa-bits.conf:10: rsa-bits: bad value '4096bits' (rsa-bits must be 2048, 3072 or 4096)");
}

Test(config, bad_boolean) {
        EXPECT_ERRORS("bad-boolean.conf", "bad-boolean.conf:5: publish: bad value 'maybe' (expected yes or no)");
}

Test(config, bad_number) {
        EXPECT_ERRORS("bad-number.conf",
                      "bad-number.conf:5: workers: bad number '300' (a whole number between 0 and 256)",
                      "bad-number.conf:6: workers: bad number '-1' (a whole number between 0 and 256)",
                      "bad-number.conf:7: workers: bad number 'four' (a whole number between 0 and 256)",
                      "bad-number.conf:8: max-connections: bad number '0' (a whole number between 1 and 65536)",
                      "bad-number.conf:9: max-connections-per-uid: bad number '99999999999999999999999' (a whole "
                      "number between 1 and 65536)");
}

Test(config, bad_path) {
        EXPECT_ERRORS("bad-path.conf", "bad-path.conf:3: module: bad path 'libsofthsm2.so' (an absolute path)",
                      "bad-path.conf:4: pin-file: bad path '' (an absolute path)",
                      "bad-path.conf:6: path: bad path './keyd.db' (an absolute path)",
                      "bad-path.conf:8: socket: bad path '/run/keyd/a-socket-path-much-longer-than-what-a-sockaddr_"
                      "un-can-hold-which-is-107-bytes-plus-the-terminating-nul.sock' (an absolute path of at most "
                      "107 bytes)",
                      "bad-path.conf:10: jwks-file: bad path 'jwks/default.json' (an absolute path)");
}

Test(config, bad_listen) {
#define EXPECTED_LISTEN "(IPV4:PORT or [IPV6]:PORT with an address literal and a port between 1 and 65535)"
        EXPECT_ERRORS("bad-listen.conf", "bad-listen.conf:5: listen: bad address '127.0.0.1' " EXPECTED_LISTEN,
                      "bad-listen.conf:6: listen: bad address '127.0.0.1:0' " EXPECTED_LISTEN,
                      "bad-listen.conf:7: listen: bad address '127.0.0.1:70000' " EXPECTED_LISTEN,
                      "bad-listen.conf:8: listen: bad address 'localhost:8080' " EXPECTED_LISTEN,
                      "bad-listen.conf:9: listen: bad address '::1:8080' " EXPECTED_LISTEN,
                      "bad-listen.conf:10: listen: bad address '[::1]8080' " EXPECTED_LISTEN,
                      "bad-listen.conf:11: listen: bad address '[localhost]:8080' " EXPECTED_LISTEN,
                      "bad-listen.conf:12: listen: bad address '127.1:8080' " EXPECTED_LISTEN,
                      "bad-listen.conf:15: listen: bad address 'localhost:9102' " EXPECTED_LISTEN);
}

Test(config, bad_keyring_names) {
#define EXPECTED_NAME "(1-64 of A-Z a-z 0-9 . _ -, not starting with '.' or '-')"
#define K16 "kkkkkkkkkkkkkkkk"
        Config c;
        char **errors = NULL;

        EXPECT_ERRORS("bad-keyring-name.conf", "bad-keyring-name.conf:4: invalid keyring name 'a/b' " EXPECTED_NAME,
                      "bad-keyring-name.conf:6: invalid keyring name '..' " EXPECTED_NAME,
                      "bad-keyring-name.conf:7: invalid keyring name '' " EXPECTED_NAME,
                      "bad-keyring-name.conf:8: invalid keyring name '' " EXPECTED_NAME,
                      "bad-keyring-name.conf:9: invalid keyring name '-x' " EXPECTED_NAME,
                      "bad-keyring-name.conf:10: invalid keyring name '" K16 K16 K16 K16 "k' " EXPECTED_NAME);
        /* Only the 64-character name on line 11 made a keyring. */
        cr_assert_eq(config_init(&c), 0);
        cr_assert_eq(config_load("bad-keyring-name.conf", &c, &errors), -EINVAL);
        cr_assert_eq(c.n_keyrings, 1);
        cr_assert_str_eq(c.keyrings[0].name, K16 K16 K16 K16);
        cr_assert_eq(c.keyrings[0].line, 11);
        strv_free(errors);
        config_done(&c);
}

Test(config, duplicate_keyring) {
        EXPECT_ERRORS("bad-duplicate-keyring.conf",
                      "bad-duplicate-keyring.conf:9: duplicate [keyring default] (first at line 4)");
}

Test(config, prepublish_exceeds_rotation) {
        EXPECT_ERRORS("bad-prepublish.conf",
                      "bad-prepublish.conf:17: [keyring default]: prepublish exceeds rotation-period");
}

Test(config, default_ttl_exceeds_max) {
        EXPECT_ERRORS("bad-default-ttl.conf",
                      "bad-default-ttl.conf:4: [keyring default]: default-ttl exceeds token-ttl-max");
}

Test(config, owner_uid) {
        EXPECT_ERRORS("bad-owner.conf", "bad-owner.conf:4: [keyring agent-1]: an agent keyring needs owner-uid",
                      "bad-owner.conf:8: owner-uid: only agent keyrings have an owner ([keyring issuer-1] is an "
                      "issuer)",
                      "bad-owner.conf:12: owner-uid: bad uid '-1' (a whole number between 0 and 4294967294)",
                      "bad-owner.conf:15: kind: bad value 'robot' (issuer or agent)");
}

Test(config, missing_uri) {
        EXPECT_ERRORS("bad-missing-uri.conf", "bad-missing-uri.conf: [token] uri is required");
}

Test(config, bad_uri) {
        EXPECT_ERRORS("bad-uri.conf",
                      "bad-uri.conf:2: uri: bad URI 'token=keyd' (an RFC 7512 PKCS#11 URI, e.g. pkcs11:token=keyd)",
                      "bad-uri.conf:3: uri: a pin-value in the URI is refused (use pin-file, the systemd credential "
                      "\"pin\" or the URI's pin-source)");
}

Test(config, line_too_long) {
        EXPECT_ERRORS("bad-long-line.conf", "bad-long-line.conf:4: line too long (at most 199 characters)");
}

/* Every error of the file, sorted by line even when found later (a keyring's values are read at its end). */
Test(config, several_errors_in_line_order) {
        EXPECT_ERRORS("bad-many.conf", "bad-many.conf:2: module: bad path 'softhsm.so' (an absolute path)",
                      "bad-many.conf:6: unknown key 'sokcet' in [api] (did you mean 'socket'?)",
                      "bad-many.conf:7: workers: bad number 'many' (a whole number between 0 and 256)",
                      "bad-many.conf:10: alg: unknown alg 'HS256' " EXPECTED_ALGS,
                      "bad-many.conf:11: rotation-period: bad duration '10x' " UNKNOWN_UNIT,
                      "bad-many.conf:12: kind: bad value 'robot' (issuer or agent)",
                      "bad-many.conf:13: owner-uid: only agent keyrings have an owner ([keyring default] is an "
                      "issuer)",
                      "bad-many.conf:15: [keyring ok]: prepublish exceeds rotation-period",
                      "bad-many.conf:19: listen: bad address 'localhost:80' " EXPECTED_LISTEN,
                      "bad-many.conf:20: malformed line (expected 'key = value', [SECTION] or a comment)",
                      "bad-many.conf:21: unknown section [nope] " EXPECTED_SECTIONS);
}

/* The example of keyd.conf(5) is tests/data/config/man-example.conf, and it loads. */
Test(config, man_page_example) {
        _cleanup_free_ char *man_path = test_path("docs/man/keyd.conf.5");
        _cleanup_free_ char *man = test_read_file(man_path, NULL), *data = test_read_file("man-example.conf", NULL);
        char *start, *end, *w;
        Config c;

        start = strstr(man, "\n.SH EXAMPLE\n");
        cr_assert_not_null(start);
        start = strstr(start, "\n.EX\n");
        cr_assert_not_null(start);
        start += strlen("\n.EX\n");
        end = strstr(start, ".EE\n");
        cr_assert_not_null(end);
        *end = 0;
        w = start;
        for (const char *r = start; *r; r++) /* roff "\-" is "-" */
                if (!(r[0] == '\\' && r[1] == '-'))
                        *w++ = *r;
        *w = 0;
        cr_assert_str_eq(start, data, "docs/man/keyd.conf.5 EXAMPLE and man-example.conf differ");

        load_good("man-example.conf", &c);
        ASSERT_STRV(c.admin_users, "root", "me");
        cr_assert_str_eq(c.pin_file, "/home/me/keyd/var/pin");
        cr_assert_eq(c.n_keyrings, 2);
        cr_assert_eq(find_ring(&c, "default")->policy.rotation_period, 10 * M);
        cr_assert_eq(find_ring(&c, "agent-build-42")->owner_uid, 1042);
        cr_assert_not(find_ring(&c, "agent-build-42")->policy.publish);
        config_done(&c);
}

/* Where each key was set, for --check-config's messages; 0 for a default. */
Test(config, key_lines) {
        Config c;
        load_good("spec-example.conf", &c);
        cr_assert_eq(config_line(&c, "token", "uri"), 3);
        cr_assert_eq(config_line(&c, "token", "pin-file"), 4);
        cr_assert_eq(config_line(&c, "api", "admin-users"), 12);
        cr_assert_eq(config_line(&c, "api", "max-connections"), 0, "not in the file: the default");
        cr_assert_eq(config_line(&c, "store", "uri"), 0, "uri is in [token]");
        const ConfigKeyring *k = find_ring(&c, "default");
        cr_assert_eq(config_keyring_line(k, "kind"), 19);
        cr_assert_eq(config_keyring_line(k, "sign-users"), 27);
        cr_assert_eq(config_keyring_line(k, "sign-groups"), 28);
        cr_assert_eq(config_keyring_line(k, "owner-uid"), 0);
        config_done(&c);

        load_good("good-several.conf", &c);
        k = find_ring(&c, "agent-7");
        cr_assert_gt(config_keyring_line(k, "owner-uid"), k->line);
        config_done(&c);
}

/* SIGHUP names the keyrings whose section is gone (the engine keeps them). */
Test(config, removed_keyrings) {
        Config before, after;
        char **removed = (char **) 1;

        load_good("good-several.conf", &before);
        load_good("spec-example.conf", &after);
        cr_assert_eq(config_removed_keyrings(&before, &after, &removed), 0);
        ASSERT_STRV(removed, "legacy.rsa", "agent-7", "agent-8");
        strv_free(removed);

        cr_assert_eq(config_removed_keyrings(&after, &before, &removed), 0);
        cr_assert_null(removed, "nothing removed: default is in both");
        cr_assert_eq(config_removed_keyrings(&before, &before, &removed), 0);
        cr_assert_null(removed);
        config_done(&before);
        config_done(&after);
}
