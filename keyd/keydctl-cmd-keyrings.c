/* SPDX-License-Identifier: MIT */
/* keydctl: status, keyrings, keyring show, keyring create, plan. */
#include "common/alg.h"
#include "common/parse-util.h"
#include "common/strv.h"
#include "common/time-util.h"
#include "keyd/keydctl-internal.h"
#include "rotation/policy.h"

static void show_status(const Ctl *c, const json_t *reply) {
        const json_t *e, *token = json_object_get(reply, "token");
        char buf[64], list[1024] = "", clean[1024];
        size_t i;

        json_array_foreach(json_object_get(reply, "degraded"), i, e)
                (void) snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "",
                                json_string_value(e) ?: "?");
        printf("status:    %s\n", sanitize(json_str(reply, "status") ?: "?", clean, sizeof clean));
        printf("keyrings:  %s\n", json_text(json_object_get(reply, "keyrings"), buf, sizeof buf) ?: "?");
        printf("degraded:  %s\n", *list ? sanitize(list, clean, sizeof clean) : "none");
        if (json_is_true(json_object_get(token, "up")))
                printf("token:     up\n");
        else if (token)
                printf("token:     DOWN: %s\n",
                       sanitize(json_str(token, "reason") ?: "no reason given", clean, sizeof clean));
        if (json_str(reply, "storage"))
                printf("storage:   %s\n", sanitize(json_str(reply, "storage"), clean, sizeof clean));
        printf("version:   %s\n", sanitize(json_str(reply, "version") ?: "?", clean, sizeof clean));
        printf("socket:    %s\n", sanitize(c->socket, clean, sizeof clean));
}

/* keyd's health, shown whatever it is; the exit status says whether it is ok, for scripts and monitoring. */
int verb_status(Ctl *c, const Verb *v, int argc, char **argv) {
        _cleanup_json_ json_t *reply = NULL;
        int r = ctl_parse_plain(c, v, argc, argv, 0, 0);

        if (r != CTL_PARSED)
                return r > 0 ? 0 : r;
        /* keyd answers 503 while it cannot sign or write: an answer about its health, not a refusal. */
        r = ctl_call_quiet(c, "GET", "/healthz", NULL, (const long[]){ 503, 0 }, &reply);
        if (r < 0)
                return r;
        if (!json_str(reply, "status"))
                /* A 503 that is no health report: too many connections, keyd stopping. */
                return ctl_fail(KEYDCTL_ERR_REFUSED, json_str(reply, "error"), c->status,
                                json_str(reply, "message") ?: "keyd answered 503 without its health");
        if (c->json)
                print_json(reply);
        else
                show_status(c, reply);
        return streq(json_str(reply, "status"), "ok") ? 0 : KEYDCTL_ERR_NEGATIVE;
}

const json_t *keyring_key_in_state(const json_t *ring, const char *state) {
        const json_t *keys = json_object_get(ring, "keys"), *k;
        size_t i;
        json_array_foreach(keys, i, k)
                if (streq_ptr(json_str(k, "state"), state))
                        return k;
        return NULL;
}

static const char *ring_state(const json_t *ring) {
        if (json_is_true(json_object_get(ring, "disabled")))
                return "disabled";
        if (json_str(ring, "degraded"))
                return "degraded";
        return "ok";
}

static int show_keyrings(_unused_ const Ctl *c, _unused_ const char *name, const json_t *reply) {
        static const char *const headers[] = { "NAME", "KIND", "ALG", "STATE", "ACTIVE-KID", "NEXT-TRANSITION" };
        _cleanup_table_ Table *t = NULL;
        const json_t *rings = json_object_get(reply, "keyrings"), *ring;
        size_t i;

        if (!json_is_array(rings))
                return ctl_error(KEYDCTL_ERR_UNREACHABLE, "keyd's reply has no \"keyrings\" list");
        t = table_new(ELEMENTSOF(headers), headers);
        if (!t)
                return OOM();
        json_array_foreach(rings, i, ring) {
                const json_t *active = keyring_key_in_state(ring, "active");
                char kid12[13] = "-";
                if (active && json_str(active, "kid"))
                        (void) snprintf(kid12, sizeof kid12, "%s", json_str(active, "kid"));
                if (TABLE_ROW(t, json_str(ring, "name"), json_str(ring, "kind"),
                              json_str(json_object_get(ring, "policy"), "alg"), ring_state(ring), kid12,
                              json_str(ring, "next_transition")) < 0)
                        return OOM();
        }
        table_show(t, "No keyrings.\n");
        return 0;
}

/* KEYRINGS_PAGE at a time, following "next" until it is null or absent: a keyd that does not page sends them all with
 * no "next". */
#define KEYRINGS_PAGE 1000

int ctl_fetch_keyrings(Ctl *c, json_t **ret) {
        _cleanup_json_ json_t *all = json_array();
        _cleanup_free_ char *after = NULL;
        char path[128];
        int r;

        if (!all)
                return OOM();
        for (;;) {
                _cleanup_json_ json_t *reply = NULL;
                const json_t *rings, *next;
                if (after)
                        (void) snprintf(path, sizeof path, "/v1/keyrings?after=%s&limit=%u", after, KEYRINGS_PAGE);
                else
                        (void) snprintf(path, sizeof path, "/v1/keyrings?limit=%u", KEYRINGS_PAGE);
                r = ctl_call(c, "GET", path, NULL, &reply);
                if (r < 0)
                        return r;
                rings = json_object_get(reply, "keyrings");
                next = json_object_get(reply, "next");
                if (!json_is_array(rings))
                        return ctl_error(KEYDCTL_ERR_UNREACHABLE, "keyd's reply has no \"keyrings\" list");
                if (json_array_extend(all, (json_t *) rings) < 0)
                        return OOM();
                if (!next || json_is_null(next))
                        break;
                /* A name that does not move forward (or is not one) would page for ever. */
                if (!json_is_string(next) || !keyring_name_valid(json_string_value(next)) ||
                    json_array_size(rings) == 0 || (after && strcmp(json_string_value(next), after) <= 0))
                        return ctl_error(KEYDCTL_ERR_UNREACHABLE, "keyd's reply has an invalid \"next\"");
                free(after);
                if (!(after = strdup(json_string_value(next))))
                        return OOM();
        }
        *ret = json_pack("{s:O}", "keyrings", all);
        return *ret ? 0 : OOM();
}

int verb_keyrings(Ctl *c, const Verb *v, int argc, char **argv) {
        _cleanup_json_ json_t *reply = NULL;
        int r = ctl_parse_plain(c, v, argc, argv, 0, 0);
        if (r != CTL_PARSED)
                return r > 0 ? 0 : r;
        r = ctl_fetch_keyrings(c, &reply);
        if (r < 0)
                return r;
        if (c->json) {
                print_json(reply);
                return 0;
        }
        return show_keyrings(c, NULL, reply);
}

static void print_policy(const json_t *policy) {
        const char *key;
        const json_t *val;
        size_t width = 0;

        json_object_foreach((json_t *) policy, key, val)
                width = MAX(width, strlen(key));
        json_object_foreach((json_t *) policy, key, val) {
                char buf[1024] = "", clean[1024];
                const char *text;
                if (json_is_array(val)) {
                        const json_t *e;
                        size_t i;
                        json_array_foreach(val, i, e) {
                                char one[256];
                                (void) snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%s%s", i ? ", " : "",
                                                json_text(e, one, sizeof one) ?: "null");
                        }
                        text = *buf ? buf : "-";
                } else if (json_is_boolean(val))
                        text = json_is_true(val) ? "yes" : "no";
                else
                        text = json_text(val, buf, sizeof buf) ?: "-";
                printf("  %-*s  %s\n", (int) width, key, sanitize(text, clean, sizeof clean));
        }
}

static int print_keys(const json_t *ring) {
        static const char *const headers[] = { "KID",       "STATE",     "PUBLISH-AT", "ACTIVATE-AT",
                                               "RETIRE-AT", "EXPIRE-AT", "NOTE" };
        const char *policy_alg = json_str(json_object_get(ring, "policy"), "alg");
        _cleanup_table_ Table *t = table_new(ELEMENTSOF(headers), headers);
        const json_t *k;
        size_t i;

        if (!t)
                return OOM();
        json_array_foreach(json_object_get(ring, "keys"), i, k) {
                char note[256] = "";
                const char *alg = json_str(k, "alg");
                if (streq_ptr(json_str(k, "state"), "revoked"))
                        (void) snprintf(note, sizeof note, "revoked %s (%s)", json_str(k, "revoked_at") ?: "?",
                                        json_str(k, "reason") ?: "no reason");
                if (json_is_true(json_object_get(k, "lost")))
                        (void) snprintf(note + strlen(note), sizeof note - strlen(note), "%slost from the token",
                                        *note ? "; " : "");
                if (alg && policy_alg && !streq(alg, policy_alg))
                        (void) snprintf(note + strlen(note), sizeof note - strlen(note), "%s%s", *note ? "; " : "",
                                        alg);
                if (TABLE_ROW(t, json_str(k, "kid"), json_str(k, "state"), json_str(k, "publish_at"),
                              json_str(k, "activate_at"), json_str(k, "retire_at"), json_str(k, "expire_at"),
                              *note ? note : "") < 0)
                        return OOM();
        }
        table_show(t, "  (no keys)\n");
        return 0;
}

void print_keyring(const json_t *ring) {
        char buf[64], clean[1024];
        const char *degraded = json_str(ring, "degraded");

        printf("Keyring:          %s\n", sanitize(json_str(ring, "name") ?: "?", clean, sizeof clean));
        printf("Kind:             %s\n", sanitize(json_str(ring, "kind") ?: "?", clean, sizeof clean));
        printf("Owner uid:        %s\n", json_text(json_object_get(ring, "owner_uid"), buf, sizeof buf) ?: "-");
        if (degraded)
                printf("State:            degraded: %s\n", sanitize(degraded, clean, sizeof clean));
        else
                printf("State:            %s\n", ring_state(ring));
        printf("Next transition:  %s\n", sanitize(json_str(ring, "next_transition") ?: "-", clean, sizeof clean));
        printf("Policy:\n");
        print_policy(json_object_get(ring, "policy"));
        printf("Keys:\n");
        (void) print_keys(ring);
}

static int show_keyring(_unused_ const Ctl *c, _unused_ const char *name, const json_t *reply) {
        print_keyring(reply);
        return 0;
}

int verb_keyring_show(Ctl *c, const Verb *v, int argc, char **argv) {
        return ctl_simple_keyring_call(c, v, argc, argv, "GET", NULL, show_keyring);
}

/* keyring create: every policy field as an option named as in keyd.conf(5). */
typedef enum FieldType { FIELD_STRING, FIELD_DURATION, FIELD_RSA_BITS, FIELD_BOOL, FIELD_LIST, FIELD_ALG } FieldType;

static const struct {
        const char *option, *field;
        FieldType type;
} policy_options[] = {
        { "alg", "alg", FIELD_ALG },
        { "rsa-bits", "rsa_bits", FIELD_RSA_BITS },
        { "rotation-period", "rotation_period", FIELD_DURATION },
        { "prepublish", "prepublish", FIELD_DURATION },
        { "token-ttl-max", "token_ttl_max", FIELD_DURATION },
        { "default-ttl", "default_ttl", FIELD_DURATION },
        { "clock-skew", "clock_skew", FIELD_DURATION },
        { "issuer", "issuer", FIELD_STRING },
        { "token-type", "token_type", FIELD_STRING },
        { "sign-users", "sign_users", FIELD_LIST },
        { "sign-groups", "sign_groups", FIELD_LIST },
        { "publish", "publish", FIELD_BOOL },
        { "allow-raw-sign", "allow_raw_sign", FIELD_BOOL },
};

static int policy_option(json_t *policy, size_t i, const char *value) {
        const char *field = policy_options[i].field, *option = policy_options[i].option;
        json_t *v = NULL, *list;
        char **names = NULL;
        int b;

        switch (policy_options[i].type) {
        case FIELD_ALG:
                if (keyd_alg_from_string(value) < 0)
                        return ctl_error(KEYDCTL_ERR_USAGE, "--alg: '%s' is not ES256, ES384, RS256, PS256 or EdDSA",
                                         value);
                v = json_string(value);
                break;
        case FIELD_RSA_BITS: {
                uint64_t n;
                if (parse_uint64(value, 65536, &n) < 0 || !keyd_rsa_bits_valid((unsigned) n))
                        return ctl_error(KEYDCTL_ERR_USAGE, "--rsa-bits: '%s' is not 2048, 3072 or 4096", value);
                v = json_integer((json_int_t) n);
                break;
        }
        case FIELD_DURATION: {
                char name[40];
                uint64_t d;
                int r;

                (void) snprintf(name, sizeof name, "--%s", option);
                r = ctl_parse_duration(name, value, streq(option, "clock-skew") ? 0 : 1, 3650ULL * 86400, &d);
                if (r < 0)
                        return r;
                /* As given, so that keyd sees what the operator typed: "1h30m", or an integer of seconds. */
                v = strspn(value, "0123456789") == strlen(value) ? json_integer((json_int_t) d) : json_string(value);
                break;
        }
        case FIELD_BOOL:
                b = parse_boolean(value);
                if (b < 0)
                        return ctl_error(KEYDCTL_ERR_USAGE, "--%s: '%s' is not yes or no", option, value);
                v = json_boolean(b);
                break;
        case FIELD_LIST:
                list = json_object_get(policy, field);
                if (!list) {
                        list = json_array();
                        if (!list || json_object_set_new(policy, field, list) < 0)
                                return OOM();
                }
                if (strv_split(value, &names) < 0)
                        return OOM();
                for (char **n = names; *n; n++)
                        if (json_array_append_new(list, json_string(*n)) < 0) {
                                strv_free(names);
                                return OOM();
                        }
                strv_free(names);
                return 0;
        case FIELD_STRING:
                v = json_string(value);
                if (!v)
                        return ctl_error(KEYDCTL_ERR_USAGE, "--%s: the value is not UTF-8", option);
                break;
        }
        if (!v || json_object_set_new(policy, field, v) < 0)
                return OOM();
        return 0;
}

/* Options that do not apply to the keyring are refused rather than ignored, and the issuer is checked as keyd checks
 * it (policy_issuer_check()): nothing is sent that keyd would refuse. */
static int check_create_options(const char *kind, const json_t *policy) {
        const char *alg = json_str(policy, "alg") ?: "ES256", *issuer = json_str(policy, "issuer"), *why;

        if (json_object_get(policy, "rsa_bits") && !keyd_alg_is_rsa(keyd_alg_from_string(alg)))
                return ctl_error(KEYDCTL_ERR_USAGE, "--rsa-bits applies to RS256 and PS256 only, not to %s (--alg)",
                                 alg);
        if (streq(kind, "agent") && json_object_get(policy, "allow_raw_sign"))
                return ctl_error(KEYDCTL_ERR_USAGE,
                                 "--allow-raw-sign is for issuer keyrings: agent keyrings always allow raw signing");
        if (streq(kind, "issuer") && issuer && policy_issuer_check(issuer, &why) < 0)
                return ctl_error(KEYDCTL_ERR_USAGE, "--issuer: '%s' %s", issuer, why);
        return 0;
}

int verb_keyring_create(Ctl *c, const Verb *v, int argc, char **argv) {
        enum { OPT_KIND = CTL_OPT_FIRST_LOCAL, OPT_OWNER, OPT_POLICY };
        struct option options[4 + 2 + ELEMENTSOF(policy_options) + 1] = {
                CTL_COMMON_OPTIONS,
                { "kind", required_argument, NULL, OPT_KIND },
                { "owner-uid", required_argument, NULL, OPT_OWNER },
        };
        _cleanup_json_ json_t *policy = json_object(), *body = NULL, *reply = NULL;
        const char *kind = "issuer";
        uint64_t owner = 0;
        bool have_owner = false;
        int opt, r;

        if (!policy)
                return OOM();
        for (size_t i = 0; i < ELEMENTSOF(policy_options); i++)
                options[6 + i] = (struct option){ policy_options[i].option, required_argument, NULL,
                                                  OPT_POLICY + (int) i };
        while ((r = ctl_next_option(c, v, argc, argv, ":h", options, 1, 1, &opt)) == CTL_OPTION)
                switch (opt) {
                case OPT_KIND:
                        if (!streq(optarg, "issuer") && !streq(optarg, "agent"))
                                return ctl_error(KEYDCTL_ERR_USAGE, "--kind: '%s' is not issuer or agent", optarg);
                        kind = optarg;
                        break;
                case OPT_OWNER:
                        r = ctl_parse_number("--owner-uid", optarg, 0, UINT32_MAX - 1, &owner);
                        if (r < 0)
                                return r;
                        have_owner = true;
                        break;
                default: /* OPT_POLICY + i: policy_options[i] */
                        r = policy_option(policy, (size_t) (opt - OPT_POLICY), optarg);
                        if (r < 0)
                                return r;
                }
        if (r != CTL_PARSED)
                return r > 0 ? 0 : r;
        if (streq(kind, "agent") && !have_owner)
                return ctl_error(KEYDCTL_ERR_USAGE, "an agent keyring needs --owner-uid");
        if (streq(kind, "issuer") && have_owner)
                return ctl_error(KEYDCTL_ERR_USAGE, "--owner-uid is for agent keyrings only");
        r = check_create_options(kind, policy);
        if (r < 0)
                return r;

        body = json_pack("{s:s, s:s}", "name", argv[optind], "kind", kind);
        if (!body || (have_owner && json_object_set_new(body, "owner_uid", json_integer((json_int_t) owner)) < 0) ||
            (json_object_size(policy) > 0 && json_object_set(body, "policy", policy) < 0))
                return OOM();
        r = ctl_call(c, "POST", "/v1/keyrings", body, &reply);
        if (r < 0)
                return r;
        if (c->json)
                print_json(reply);
        else {
                printf("Created keyring %s.\n\n", argv[optind]);
                print_keyring(reply);
        }
        return 0;
}

int verb_plan(Ctl *c, const Verb *v, int argc, char **argv) {
        enum { OPT_WITHIN = CTL_OPT_FIRST_LOCAL, OPT_HOURS, OPT_NOW };
        static const struct option options[] = {
                CTL_COMMON_OPTIONS,
                { "within", required_argument, NULL, OPT_WITHIN },
                { "hours", required_argument, NULL, OPT_HOURS }, /* the old form of --within Nh, for scripts */
                { "now", required_argument, NULL, OPT_NOW },     /* hidden: a fixed "now" (a time), for tests */
                {},
        };
        _cleanup_json_ json_t *reply = NULL, *plan = NULL;
        uint64_t within = 24 * 3600, hours;
        int64_t now = 0;
        int opt, r;

        while ((r = ctl_next_option(c, v, argc, argv, ":h", options, 0, 0, &opt)) == CTL_OPTION) {
                switch (opt) {
                case OPT_WITHIN:
                        r = ctl_parse_duration("--within", optarg, 1, 365 * 86400, &within);
                        break;
                case OPT_HOURS:
                        r = ctl_parse_number("--hours", optarg, 1, 8760, &hours);
                        within = hours * 3600;
                        break;
                case OPT_NOW:
                        r = ctl_parse_instant("--now", optarg, &now);
                        break;
                }
                if (r < 0)
                        return r;
        }
        if (r != CTL_PARSED)
                return r > 0 ? 0 : r;
        r = ctl_fetch_keyrings(c, &reply);
        if (r < 0)
                return r;
        if (now == 0)
                now = now_realtime() / USEC_PER_SEC;
        r = plan_compute(reply, now, now + (int64_t) within, &plan);
        if (r < 0)
                return OOM();
        if (c->json) {
                print_json(plan);
                return 0;
        }
        return plan_print(plan, now);
}
