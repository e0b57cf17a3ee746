/* SPDX-License-Identifier: MIT */
/* keydctl: mint, sign, verify, jwks. */
#include <ctype.h>

#include "common/time-util.h"
#include "jose/b64.h"
#include "keyd/keydctl-internal.h"

/* --claim K=V: V as JSON when it parses as JSON (42, true, {"a":1}, "quoted"), else as a string. */
static int add_claim(json_t *claims, const char *arg) {
        const char *eq = strchr(arg, '=');
        _cleanup_free_ char *key = NULL;
        json_t *value;

        if (!eq || eq == arg)
                return ctl_error(KEYDCTL_ERR_USAGE, "--claim: '%s' is not NAME=VALUE", arg);
        key = strndup(arg, (size_t) (eq - arg));
        if (!key)
                return OOM();
        if (json_object_get(claims, key))
                return ctl_error(KEYDCTL_ERR_USAGE, "--claim: '%s' is given twice", key);
        value = json_loads(eq + 1, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);
        if (!value)
                value = json_string(eq + 1);
        if (!value)
                return ctl_error(KEYDCTL_ERR_USAGE, "--claim: the value of '%s' is not UTF-8", key);
        if (json_object_set_new(claims, key, value) < 0)
                return ctl_error(KEYDCTL_ERR_USAGE, "--claim: '%s' is not a UTF-8 name", key);
        return 0;
}

/* --ttl: a duration (keydctl's syntax, which keyd reads too), passed as typed; bare seconds as an integer. */
static int ttl_value(const char *s, json_t **ret) {
        uint64_t d;
        int r = ctl_parse_duration("--ttl", s, 1, 3650ULL * 86400, &d);
        if (r < 0)
                return r;
        *ret = strspn(s, "0123456789") == strlen(s) ? json_integer((json_int_t) d) : json_string(s);
        return *ret ? 0 : OOM();
}

/* An option's value as the request's member field; val NULL: the option's value was not UTF-8. */
static int set_member(json_t *body, const char *field, json_t *val) {
        if (!val)
                return ctl_error(KEYDCTL_ERR_USAGE, "--%s: the value is not UTF-8", field);
        if (json_object_set_new(body, field, val) < 0)
                return OOM();
        return 0;
}

/* The reply: all of it with --json, else its string member key alone on a line. */
static int print_member(Ctl *c, const json_t *reply, const char *key) {
        if (c->json) {
                print_json(reply);
                return 0;
        }
        if (!json_str(reply, key))
                return ctl_error(KEYDCTL_ERR_UNREACHABLE, "keyd's reply has no \"%s\"", key);
        printf("%s\n", json_str(reply, key));
        return 0;
}

int verb_mint(Ctl *c, const Verb *v, int argc, char **argv) {
        enum { OPT_SUB = CTL_OPT_FIRST_LOCAL, OPT_AUD, OPT_TTL, OPT_SCOPE, OPT_CLAIM, OPT_ACT, OPT_BIND };
        static const struct option options[] = {
                CTL_COMMON_OPTIONS,
                { "sub", required_argument, NULL, OPT_SUB },
                { "aud", required_argument, NULL, OPT_AUD },
                { "ttl", required_argument, NULL, OPT_TTL },
                { "scope", required_argument, NULL, OPT_SCOPE },
                { "claim", required_argument, NULL, OPT_CLAIM },
                { "act", required_argument, NULL, OPT_ACT },
                { "bind-agent", required_argument, NULL, OPT_BIND },
                {},
        };
        _cleanup_json_ json_t *body = json_object(), *aud = json_array(), *claims = json_object(), *reply = NULL;
        json_t *val = NULL;
        json_error_t jerr;
        int opt, r;

        if (!body || !aud || !claims)
                return OOM();
        while ((r = ctl_next_option(c, v, argc, argv, ":h", options, 1, 1, &opt)) == CTL_OPTION) {
                switch (opt) {
                case OPT_SUB:
                        r = set_member(body, "sub", json_string(optarg));
                        break;
                case OPT_SCOPE:
                        r = set_member(body, "scope", json_string(optarg));
                        break;
                case OPT_AUD:
                        if (json_array_append_new(aud, json_string(optarg)) < 0)
                                r = ctl_error(KEYDCTL_ERR_USAGE, "--aud: the value is not UTF-8");
                        break;
                case OPT_TTL:
                        r = ttl_value(optarg, &val);
                        if (r >= 0)
                                r = set_member(body, "ttl", val);
                        break;
                case OPT_CLAIM:
                        r = add_claim(claims, optarg);
                        break;
                case OPT_ACT:
                        val = json_loads(optarg, JSON_REJECT_DUPLICATES, &jerr);
                        if (!json_is_object(val)) {
                                json_decref(val);
                                return ctl_error(KEYDCTL_ERR_USAGE, "--act: not a JSON object: %s",
                                                 val ? "another JSON value" : jerr.text);
                        }
                        r = set_member(body, "act", val);
                        break;
                case OPT_BIND:
                        r = ctl_check_keyring_name(optarg);
                        if (r >= 0)
                                r = set_member(body, "bind_agent", json_string(optarg));
                        break;
                }
                if (r < 0)
                        return r;
        }
        if (r != CTL_PARSED)
                return r > 0 ? 0 : r;
        if (!json_object_get(body, "sub"))
                return ctl_error(KEYDCTL_ERR_USAGE, "mint needs --sub");
        if (json_array_size(aud) == 1)
                r = json_object_set(body, "aud", json_array_get(aud, 0));
        else if (json_array_size(aud) > 1)
                r = json_object_set(body, "aud", aud);
        if (r < 0 || (json_object_size(claims) > 0 && json_object_set(body, "claims", claims) < 0))
                return OOM();

        r = ctl_keyring_call(c, "POST", argv[optind], "/tokens", body, &reply);
        if (r < 0)
                return r;
        return print_member(c, reply, "token");
}

int verb_sign(Ctl *c, const Verb *v, int argc, char **argv) {
        _cleanup_json_ json_t *body = NULL, *reply = NULL;
        _cleanup_free_ char *data = NULL, *b64 = NULL;
        size_t len;
        int r;

        r = ctl_parse_plain(c, v, argc, argv, 2, 2);
        if (r != CTL_PARSED)
                return r > 0 ? 0 : r;
        r = read_input(argv[optind + 1], KEYDCTL_INPUT_MAX, &data, &len);
        if (r < 0)
                return r;
        if (jose_b64url_encode(data, len, &b64) < 0)
                return OOM();
        body = json_pack("{s:s}", "data", b64);
        if (!body)
                return OOM();
        r = ctl_keyring_call(c, "POST", argv[optind], "/sign", body, &reply);
        if (r < 0)
                return r;
        return print_member(c, reply, "signature");
}

static void print_verdict(const json_t *reply) {
        const json_t *claims = json_object_get(reply, "claims"), *val;
        char clean[3][256];
        const char *key;
        size_t width = 0;

        printf("valid: keyring %s, kid %s, alg %s\n",
               sanitize(json_str(reply, "keyring") ?: "?", clean[0], sizeof clean[0]),
               sanitize(json_str(reply, "kid") ?: "?", clean[1], sizeof clean[1]),
               sanitize(json_str(reply, "alg") ?: "?", clean[2], sizeof clean[2]));
        json_object_foreach((json_t *) claims, key, val)
                width = MAX(width, strlen(key));
        json_object_foreach((json_t *) claims, key, val) {
                char buf[4096], out[4096], when[32];
                const char *text = json_text(val, buf, sizeof buf) ?: "null";
                if ((streq(key, "exp") || streq(key, "iat") || streq(key, "nbf")) && json_is_integer(val))
                        printf("  %-*s  %s (%s)\n", (int) width, sanitize(key, clean[0], sizeof clean[0]), text,
                               format_time(when, sizeof when, json_integer_value(val)));
                else
                        printf("  %-*s  %s\n", (int) width, sanitize(key, clean[0], sizeof clean[0]),
                               sanitize(text, out, sizeof out));
        }
}

/* The token of verify and token inspect: the operand, else standard input without the blanks around it (a trailing
 * newline, surely). *ret points into argv or into *ret_input (which the caller frees). */
static int token_operand(int argc, char **argv, char **ret_input, const char **ret) {
        const char *token;
        char *end;
        size_t len;
        int r;

        if (optind < argc)
                token = argv[optind];
        else {
                r = read_input("-", KEYDCTL_INPUT_MAX, ret_input, &len);
                if (r < 0)
                        return r;
                if (strlen(*ret_input) != len)
                        return ctl_error(KEYDCTL_ERR_USAGE, "the token on standard input holds a NUL byte");
                for (end = *ret_input + len; end > *ret_input && isspace((unsigned char) end[-1]); end--)
                        ;
                *end = 0;
                token = *ret_input + strspn(*ret_input, " \t\r\n");
        }
        if (!*token)
                return ctl_error(KEYDCTL_ERR_USAGE, "no token: give it as TOKEN or on standard input");
        *ret = token;
        return 0;
}

int verb_verify(Ctl *c, const Verb *v, int argc, char **argv) {
        enum { OPT_AUDIENCE = CTL_OPT_FIRST_LOCAL, OPT_ISSUER, OPT_KEYRING, OPT_LEEWAY };
        static const struct option options[] = {
                CTL_COMMON_OPTIONS,
                { "aud", required_argument, NULL, OPT_AUDIENCE }, /* as mint's */
                { "audience", required_argument, NULL, OPT_AUDIENCE },
                { "issuer", required_argument, NULL, OPT_ISSUER },
                { "keyring", required_argument, NULL, OPT_KEYRING },
                { "leeway", required_argument, NULL, OPT_LEEWAY },
                {},
        };
        _cleanup_json_ json_t *body = json_object(), *rings = json_array(), *reply = NULL;
        _cleanup_free_ char *input = NULL;
        const char *token;
        bool valid;
        char clean[2][1024];
        uint64_t leeway;
        int opt, r;

        if (!body || !rings)
                return OOM();
        while ((r = ctl_next_option(c, v, argc, argv, ":h", options, 0, 1, &opt)) == CTL_OPTION) {
                switch (opt) {
                case OPT_AUDIENCE:
                case OPT_ISSUER:
                        r = set_member(body, opt == OPT_AUDIENCE ? "audience" : "issuer", json_string(optarg));
                        break;
                case OPT_KEYRING:
                        r = ctl_check_keyring_name(optarg);
                        if (r >= 0 && json_array_append_new(rings, json_string(optarg)) < 0)
                                r = OOM();
                        break;
                case OPT_LEEWAY:
                        r = ctl_parse_duration("--leeway", optarg, 0, 300, &leeway);
                        if (r >= 0)
                                r = set_member(body, "leeway", json_integer((json_int_t) leeway));
                        break;
                }
                if (r < 0)
                        return r;
        }
        if (r != CTL_PARSED)
                return r > 0 ? 0 : r;
        r = token_operand(argc, argv, &input, &token);
        if (r < 0)
                return r;
        if (json_object_set_new(body, "token", json_string(token)) < 0)
                return ctl_error(KEYDCTL_ERR_USAGE, "the token is not UTF-8 text");
        if (json_array_size(rings) > 0 && json_object_set(body, "keyrings", rings) < 0)
                return OOM();

        r = ctl_call_verdict(c, "/v1/verify", body, "valid", &reply);
        if (r < 0)
                return r;
        valid = r;
        if (c->json)
                print_json(reply);
        else if (valid)
                print_verdict(reply);
        else
                printf("invalid: %s: %s\n", sanitize(json_str(reply, "error") ?: "?", clean[0], sizeof clean[0]),
                       sanitize(json_str(reply, "message") ?: "no message", clean[1], sizeof clean[1]));
        return valid ? 0 : KEYDCTL_ERR_NEGATIVE;
}

/* JSON with or without --json. */
static int show_jwks(_unused_ const Ctl *c, _unused_ const char *name, const json_t *reply) {
        print_json(reply);
        return 0;
}

int verb_jwks(Ctl *c, const Verb *v, int argc, char **argv) {
        return ctl_simple_keyring_call(c, v, argc, argv, "GET", "/jwks", show_jwks);
}

/* One part of a compact JWS, base64url-decoded and parsed as a JSON object into *ret (NULL when the part is not
 * JSON: a payload may be any bytes). 0, or -EINVAL when it is not base64url. */
static int decode_part(const char *s, size_t len, json_t **ret, size_t *ret_len) {
        _cleanup_free_ void *data = NULL;
        size_t n;
        json_t *j;

        if (jose_b64url_decode(s, len, &data, &n) < 0)
                return -EINVAL;
        j = json_loadb(data, n, JSON_REJECT_DUPLICATES, NULL);
        if (j && !json_is_object(j)) {
                json_decref(j);
                j = NULL;
        }
        *ret = j;
        *ret_len = n;
        return 0;
}

/* Claims for people: times also in RFC 3339 and relative to now. */
static void print_members(const json_t *o, int64_t now) {
        char clean[256], buf[4096], out[4096], when[32], span[32];
        const json_t *val;
        const char *key;
        size_t width = 0;

        json_object_foreach((json_t *) o, key, val)
                width = MAX(width, strlen(key));
        json_object_foreach((json_t *) o, key, val) {
                const char *text = json_text(val, buf, sizeof buf) ?: "null";
                if ((streq(key, "exp") || streq(key, "iat") || streq(key, "nbf")) && json_is_integer(val)) {
                        int64_t t = json_integer_value(val);
                        printf("  %-*s  %s (%s, %s%s%s)\n", (int) width, sanitize(key, clean, sizeof clean), text,
                               format_time(when, sizeof when, t), t > now ? "in " : "",
                               format_span(span, sizeof span, t > now ? t - now : now - t), t > now ? "" : " ago");
                } else
                        printf("  %-*s  %s\n", (int) width, sanitize(key, clean, sizeof clean),
                               sanitize(text, out, sizeof out));
        }
}

/* token inspect: what a token says of itself, decoded here and verified nowhere, and what keyd knows of its kid. */
int verb_token_inspect(Ctl *c, const Verb *v, int argc, char **argv) {
        _cleanup_json_ json_t *header = NULL, *claims = NULL, *key = NULL, *out = NULL;
        _cleanup_free_ char *input = NULL, *path = NULL;
        const char *token, *dot1, *dot2, *kid;
        size_t header_len, payload_len, sig_len;
        _cleanup_free_ void *sig = NULL;
        char clean[3][256];
        int64_t now = (int64_t) (now_realtime() / USEC_PER_SEC);
        int r;

        r = ctl_parse_plain(c, v, argc, argv, 0, 1);
        if (r != CTL_PARSED)
                return r > 0 ? 0 : r;
        r = token_operand(argc, argv, &input, &token);
        if (r < 0)
                return r;
        dot1 = strchr(token, '.');
        dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
        if (!dot2 || strchr(dot2 + 1, '.'))
                return ctl_error(KEYDCTL_ERR_NEGATIVE, "not a compact JWS: it has %s three parts separated by dots",
                                 dot2 ? "more than" : "fewer than");
        if (decode_part(token, (size_t) (dot1 - token), &header, &header_len) < 0 || !header)
                return ctl_error(KEYDCTL_ERR_NEGATIVE, "not a compact JWS: its header is not base64url JSON");
        if (decode_part(dot1 + 1, (size_t) (dot2 - dot1 - 1), &claims, &payload_len) < 0)
                return ctl_error(KEYDCTL_ERR_NEGATIVE, "not a compact JWS: its payload is not base64url");
        if (jose_b64url_decode(dot2 + 1, strlen(dot2 + 1), &sig, &sig_len) < 0)
                return ctl_error(KEYDCTL_ERR_NEGATIVE, "not a compact JWS: its signature is not base64url");

        /* What keyd knows of the kid: nothing is verified by asking. */
        kid = json_str(header, "kid");
        if (kid && *kid && base64url_text(kid) && strlen(kid) <= KID_MAX) {
                if (!(path = ctl_path("/v1/keys/", kid, NULL)))
                        return OOM();
                r = ctl_call_quiet(c, "GET", path, NULL, (const long[]){ 404, 0 }, &key);
                if (r < 0)
                        return r;
                if (r > 0) { /* 404: keyd has no key of that kid (or it expired) */
                        json_decref(key);
                        key = NULL;
                }
        }
        out = json_pack("{s:b, s:O, s:O?, s:I, s:I, s:O?}", "verified", false, "header", header, "claims", claims,
                        "payload_bytes", (json_int_t) payload_len, "signature_bytes", (json_int_t) sig_len, "key", key);
        if (!out)
                return OOM();
        if (c->json) {
                print_json(out);
                return 0;
        }
        printf("NOT VERIFIED: decoded only; keydctl verify checks the signature and the claims.\n");
        printf("Header:\n");
        print_members(header, now);
        if (claims) {
                printf("Claims:\n");
                print_members(claims, now);
        } else
                printf("Payload:    %zu bytes, not a JSON object\n", payload_len);
        printf("Signature:  %zu bytes\n", sig_len);
        if (key)
                printf("Key:        keyring %s, %s, state %s\n",
                       sanitize(json_str(key, "keyring") ?: "?", clean[0], sizeof clean[0]),
                       sanitize(json_str(key, "alg") ?: "?", clean[1], sizeof clean[1]),
                       sanitize(json_str(key, "state") ?: "?", clean[2], sizeof clean[2]));
        else
                printf("Key:        %s\n", kid ? "keyd has no key of this kid" : "no kid in the header");
        return 0;
}
