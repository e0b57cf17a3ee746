/* SPDX-License-Identifier: MIT */
/* keydctl: the administrative commands: rotate, disable, token revoke (revoke and rekey-all: keydctl-cmd-revoke.c; the
 * audit commands: keydctl-cmd-audit.c). */
#include <inttypes.h>
#include <stdarg.h>
#include <time.h>

#include "keyd/keydctl-internal.h"
#include "rotation/lifecycle.h"

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
