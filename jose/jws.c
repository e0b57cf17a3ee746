/* SPDX-License-Identifier: MIT */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>

#include "common/crypto-util.h"
#include "common/macro.h"
#include "common/string-table.h"
#include "jose/b64.h"
#include "jose/jose-internal.h"
#include "jose/jws.h"

/* Room jose_jws_signing_input() leaves for ".BASE64URL(signature)" and the NUL. */
#define SIGNATURE_ROOM (1 + 684 + 1)

static const char *const jose_result_table[_JOSE_RESULT_MAX] = {
        [JOSE_OK] = "ok",
        [JOSE_MALFORMED] = "malformed",
        [JOSE_UNSUPPORTED_ALG] = "unsupported_alg",
        [JOSE_UNKNOWN_KID] = "unknown_kid",
        [JOSE_KEY_REVOKED] = "key_revoked",
        [JOSE_BAD_SIGNATURE] = "bad_signature",
        [JOSE_EXPIRED] = "expired",
        [JOSE_NOT_YET_VALID] = "not_yet_valid",
        [JOSE_AUDIENCE_MISMATCH] = "audience_mismatch",
        [JOSE_ISSUER_MISMATCH] = "issuer_mismatch",
        [JOSE_TOKEN_REVOKED] = "token_revoked",
        [JOSE_INTERNAL] = "internal",
};

DEFINE_STRING_TABLE_LOOKUP_TO_STRING(jose_result, JoseResult);

JoseJws *jose_jws_free(JoseJws *jws) {
        if (!jws)
                return NULL;
        json_decref(jws->header);
        free(jws->payload);
        free(jws->signature);
        free(jws->signing_input);
        free(jws);
        return NULL;
}

/* Header members that would have keyd trust a key, a URL or an extension the token names itself. */
static const char *const refused_members[] = {"crit", "jku", "x5u", "jwk", "x5c"};

static JoseResult check_header(JoseJws *jws) {
        const json_t *alg = json_object_get(jws->header, "alg"), *kid = json_object_get(jws->header, "kid"),
                     *b64 = json_object_get(jws->header, "b64");

        if (!json_is_string(alg) || (kid && !json_is_string(kid)))
                return JOSE_MALFORMED;
        for (size_t i = 0; i < ELEMENTSOF(refused_members); i++)
                if (json_object_get(jws->header, refused_members[i]))
                        return JOSE_UNSUPPORTED_ALG;
        if (b64 && !json_is_true(b64))
                return JOSE_UNSUPPORTED_ALG;
        /* "none", "HS256", ... are not in keyd's table, and names are case-sensitive ("NONE" too is unknown). */
        jws->alg = keyd_alg_from_string(json_string_value(alg));
        if (jws->alg < 0)
                return JOSE_UNSUPPORTED_ALG;
        jws->kid = kid ? json_string_value(kid) : NULL;
        return JOSE_OK;
}

static JoseResult decode_part(const char *s, size_t len, uint8_t **ret, size_t *ret_len) {
        void *buf;
        int r = jose_b64url_decode(s, len, &buf, ret_len);

        if (r == -ENOMEM)
                return JOSE_INTERNAL;
        if (r < 0)
                return JOSE_MALFORMED;
        *ret = buf;
        return JOSE_OK;
}

/* Whether a (strict base64url) header is a JSON object whose "alg" is "none". */
static bool header_says_none(const char *b64, size_t len) {
        _cleanup_free_ void *text = NULL;
        size_t n;
        if (jose_b64url_decode(b64, len, &text, &n) < 0)
                return false;
        _cleanup_json_ json_t *h = json_loadb(text, n, JSON_REJECT_DUPLICATES, NULL);
        return json_is_object(h) && json_is_string(json_object_get(h, "alg")) &&
               streq(json_string_value(json_object_get(h, "alg")), "none");
}

JoseResult jose_jws_parse(const char *compact, size_t len, JoseJws **ret) {
        _cleanup_(jose_jws_freep) JoseJws *jws = NULL;
        _cleanup_free_ uint8_t *header = NULL;
        const char *end, *dot1, *dot2;
        size_t header_len;
        json_error_t error;
        JoseResult r;

        if (!ret)
                return JOSE_INTERNAL;
        if (!compact || len == 0 || len > JOSE_JWS_MAX)
                return JOSE_MALFORMED;

        /* Exactly three parts; the header and the signature are never empty (the payload may be). */
        end = compact + len;
        dot1 = memchr(compact, '.', len);
        if (!dot1)
                return JOSE_MALFORMED;
        dot2 = memchr(dot1 + 1, '.', (size_t) (end - dot1 - 1));
        if (!dot2 || memchr(dot2 + 1, '.', (size_t) (end - dot2 - 1)))
                return JOSE_MALFORMED;
        if (dot1 == compact)
                return JOSE_MALFORMED;
        if (dot2 + 1 == end)
                /* An unsecured JWS (RFC 7515 §A.5) has an empty signature: name it for what it is. */
                return header_says_none(compact, (size_t) (dot1 - compact)) ? JOSE_UNSUPPORTED_ALG : JOSE_MALFORMED;

        jws = calloc(1, sizeof *jws);
        if (!jws)
                return JOSE_INTERNAL;
        jws->alg = _KEYD_ALG_INVALID;

        /* Every part must be strict base64url before anything is read from any of them. */
        r = decode_part(compact, (size_t) (dot1 - compact), &header, &header_len);
        if (r == JOSE_OK)
                r = decode_part(dot1 + 1, (size_t) (dot2 - dot1 - 1), &jws->payload, &jws->payload_len);
        if (r == JOSE_OK)
                r = decode_part(dot2 + 1, (size_t) (end - dot2 - 1), &jws->signature, &jws->signature_len);
        if (r != JOSE_OK)
                return r;

        jws->header = json_loadb((const char *) header, header_len, JSON_REJECT_DUPLICATES, &error);
        if (!jws->header)
                return json_error_code(&error) == json_error_out_of_memory ? JOSE_INTERNAL : JOSE_MALFORMED;
        if (!json_is_object(jws->header))
                return JOSE_MALFORMED;
        r = check_header(jws);
        if (r != JOSE_OK)
                return r;

        jws->signing_input_len = (size_t) (dot2 - compact);
        jws->signing_input = strndup(compact, jws->signing_input_len);
        if (!jws->signing_input)
                return JOSE_INTERNAL;

        *ret = TAKE_PTR(jws);
        return JOSE_OK;
}

int jose_jws_signing_input(const json_t *header, const void *payload, size_t payload_len, char **ret, size_t *ret_len) {
        _cleanup_free_ char *h = NULL;
        size_t h_len, total, o;
        char *s;

        if (!json_is_object(header) || !ret || (!payload && payload_len > 0))
                return -EINVAL;
        if (payload_len > SIZE_MAX / 2)
                return -ENOMEM;
        h = json_dumps(header, JSON_COMPACT);
        if (!h)
                return -ENOMEM;
        h_len = strlen(h);

        total = jose_b64url_encoded_len(h_len) + 1 + jose_b64url_encoded_len(payload_len) + SIGNATURE_ROOM;
        s = malloc(total);
        if (!s)
                return -ENOMEM;
        o = jose_b64url_encode_to(h, h_len, s);
        s[o++] = '.';
        o += jose_b64url_encode_to(payload, payload_len, s + o);
        s[o] = 0;

        *ret = s;
        if (ret_len)
                *ret_len = o;
        return 0;
}

int jose_jws_append_signature(char *signing_input, size_t len, const void *sig, size_t sig_len) {
        size_t o;

        if (!signing_input || !sig || sig_len == 0 || len > (size_t) INT_MAX - SIGNATURE_ROOM)
                return -EINVAL;
        if (sig_len > JOSE_SIGNATURE_MAX)
                return -ENOBUFS;
        signing_input[len] = '.';
        o = jose_b64url_encode_to(sig, sig_len, signing_input + len + 1);
        signing_input[len + 1 + o] = 0;
        return (int) (len + 1 + o);
}
