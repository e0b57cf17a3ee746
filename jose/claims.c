/* SPDX-License-Identifier: MIT */
#include "common/macro.h"
#include "jose/jws.h"

JoseResult jose_jws_claims(const JoseJws *jws, json_t **ret) {
        json_error_t error;
        json_t *claims;

        if (!jws || !ret)
                return JOSE_INTERNAL;
        if (!jws->payload)
                return JOSE_MALFORMED;
        claims = json_loadb((const char *) jws->payload, jws->payload_len, JSON_REJECT_DUPLICATES, &error);
        if (!claims)
                return json_error_code(&error) == json_error_out_of_memory ? JOSE_INTERNAL : JOSE_MALFORMED;
        if (!json_is_object(claims)) {
                json_decref(claims);
                return JOSE_MALFORMED;
        }
        *ret = claims;
        return JOSE_OK;
}

/* A NumericDate claim (RFC 7519 §2): absent (false), or a JSON number (integer or real) in *ret. Compared as doubles:
 * every time keyd meets (seconds since 1970, ± 300 s) is exact in a double. */
static JoseResult claim_time(const json_t *claims, const char *name, bool *present, double *ret) {
        const json_t *v = json_object_get(claims, name);

        *present = v != NULL;
        if (!v)
                return JOSE_OK;
        if (!json_is_number(v))
                return JOSE_MALFORMED;
        *ret = json_number_value(v);
        return JOSE_OK;
}

static bool json_string_eq(const json_t *v, const char *s) {
        return json_is_string(v) && json_string_length(v) == strlen(s) && streq(json_string_value(v), s);
}

/* "aud" (RFC 7519 §4.1.3): a string or an array of strings; anything else is malformed. */
static JoseResult check_audience(const json_t *aud, const char *audience) {
        const json_t *v;
        size_t i;
        bool found = false;

        if (!aud)
                return audience ? JOSE_AUDIENCE_MISMATCH : JOSE_OK;
        if (json_is_string(aud))
                found = audience && json_string_eq(aud, audience);
        else if (json_is_array(aud)) {
                json_array_foreach(aud, i, v) {
                        if (!json_is_string(v))
                                return JOSE_MALFORMED;
                        if (audience && json_string_eq(v, audience))
                                found = true;
                }
        } else
                return JOSE_MALFORMED;
        return !audience || found ? JOSE_OK : JOSE_AUDIENCE_MISMATCH;
}

JoseResult jose_claims_check(const json_t *claims, const JoseClaimsCheck *check) {
        const json_t *iss;
        bool has_exp, has_nbf, has_iat;
        double exp = 0, nbf = 0, iat = 0, now, leeway;
        JoseResult r;

        if (!json_is_object(claims) || !check || check->leeway < 0 || check->leeway > 300)
                return JOSE_INTERNAL;
        now = (double) check->now;
        leeway = (double) check->leeway;

        /* First the form of every checked claim, then their values: a malformed token is malformed even when it
         * is also expired. */
        r = claim_time(claims, "exp", &has_exp, &exp);
        if (r == JOSE_OK)
                r = claim_time(claims, "nbf", &has_nbf, &nbf);
        if (r == JOSE_OK)
                r = claim_time(claims, "iat", &has_iat, &iat);
        if (r != JOSE_OK)
                return r;
        iss = json_object_get(claims, "iss");
        if (iss && !json_is_string(iss))
                return JOSE_MALFORMED;
        if (!has_exp && check->require_exp)
                return JOSE_MALFORMED;
        r = check_audience(json_object_get(claims, "aud"), NULL);
        if (r != JOSE_OK)
                return r;

        if (has_exp && exp + leeway <= now)
                return JOSE_EXPIRED;
        if (has_nbf && nbf - leeway > now)
                return JOSE_NOT_YET_VALID;
        if (has_iat && iat - leeway > now)
                return JOSE_NOT_YET_VALID;
        r = check_audience(json_object_get(claims, "aud"), check->audience);
        if (r != JOSE_OK)
                return r;
        if (check->issuer && !(iss && json_string_eq(iss, check->issuer)))
                return JOSE_ISSUER_MISMATCH;
        return JOSE_OK;
}
