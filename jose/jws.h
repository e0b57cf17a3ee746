/* SPDX-License-Identifier: MIT */
#pragma once

#include <jansson.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/alg.h"

/* JWS compact serialization (RFC 7515) and verification by keyd's rules (SPEC §4): refuse, never guess. */

#define JOSE_JWS_MAX 16384 /* a compact JWS longer than this is malformed */

/* Outcome of parsing or verifying. JOSE_OK is 0; the others name why a token was refused and map to the error codes of
 * the API (SPEC §4) by jose_result_to_string(). */
typedef enum JoseResult {
        JOSE_OK = 0,
        JOSE_MALFORMED,         /* not a compact JWS, bad base64url, bad JSON, duplicate members, too long */
        JOSE_UNSUPPORTED_ALG,   /* none, HS*, an alg keyd does not know, or one that differs from the key's */
        JOSE_UNKNOWN_KID,       /* (used by callers that look keys up) */
        JOSE_KEY_REVOKED,       /* (used by callers) */
        JOSE_BAD_SIGNATURE,     /* wrong length, r or s out of range, or the signature does not verify */
        JOSE_EXPIRED,           /* exp + leeway <= now */
        JOSE_NOT_YET_VALID,     /* nbf - leeway > now, or iat - leeway > now */
        JOSE_AUDIENCE_MISMATCH, /* an audience was asked for and aud does not contain it */
        JOSE_ISSUER_MISMATCH,   /* an issuer was asked for and iss differs */
        JOSE_TOKEN_REVOKED,     /* (used by callers) */
        JOSE_INTERNAL,          /* out of memory or an OpenSSL failure: not the token's fault */
        _JOSE_RESULT_MAX,
} JoseResult;

/* "malformed", "unsupported_alg", ... (the API's names); "internal" for JOSE_INTERNAL. */
const char *jose_result_to_string(JoseResult r);

/* A parsed compact JWS. Every pointer is owned by the struct. */
typedef struct JoseJws {
        json_t *header;            /* the protected header, a JSON object */
        KeydAlg alg;               /* header "alg", or _KEYD_ALG_INVALID if keyd does not support it */
        const char *kid;           /* header "kid" (points into header), or NULL */
        uint8_t *payload;          /* decoded payload, NUL-terminated (the NUL not counted) */
        size_t payload_len;
        uint8_t *signature;        /* decoded signature */
        size_t signature_len;
        char *signing_input;       /* "BASE64URL(header).BASE64URL(payload)", NUL-terminated */
        size_t signing_input_len;
} JoseJws;

/* Parse a compact JWS of len bytes. Refuses (JOSE_MALFORMED): more than JOSE_JWS_MAX bytes, not exactly three
 * parts, any part not strict base64url, a header that is not a JSON object or has duplicate members, no string "alg".
 * Refuses (JOSE_UNSUPPORTED_ALG): alg "none" or "HS*" or anything keyd does not support, any "crit" (keyd understands
 * no extension), "b64" present with any value other than true, "jku", "x5u", "jwk", "x5c" (keyd never trusts a key
 * named by the token). On success *ret is a new JoseJws; on refusal *ret is untouched. */
JoseResult jose_jws_parse(const char *compact, size_t len, JoseJws **ret);
JoseJws *jose_jws_free(JoseJws *jws);

/* Verify a raw JOSE signature over msg with pkey: the algorithm comes from the key (alg is the key's alg). ECDSA
 * signatures must be exactly R‖S of the curve's size with 0 < r, s < n; RSA signatures exactly the modulus size;
 * PS256 uses MGF1-SHA256 and a 32-byte salt; EdDSA is Ed25519. JOSE_OK or JOSE_BAD_SIGNATURE (JOSE_UNSUPPORTED_ALG
 * if pkey does not fit alg, JOSE_INTERNAL on OpenSSL failure). */
JoseResult jose_verify_signature(KeydAlg alg, EVP_PKEY *pkey, const void *msg, size_t msg_len, const void *sig,
                                 size_t sig_len);

/* Verify a parsed JWS with the key it names: the header alg must equal key_alg (else JOSE_UNSUPPORTED_ALG), then
 * jose_verify_signature() over the signing input. */
JoseResult jose_jws_verify(const JoseJws *jws, EVP_PKEY *pkey, KeydAlg key_alg);

/* A public key prepared once for many verifications (the digest fetched, an EVP_PKEY_CTX set up for alg, the key
 * checked against alg once): the same results as jose_verify_signature() and jose_jws_verify(), without their
 * per-call set-up. Reference-counted; safe to use from many threads at once. jose_verifier_new() takes a reference
 * to pkey; -ENOMEM or -EINVAL. A key that does not fit alg still gives a verifier, whose every answer is
 * JOSE_UNSUPPORTED_ALG (as jose_verify_signature() answers). */
typedef struct JoseVerifier JoseVerifier;
int jose_verifier_new(EVP_PKEY *pkey, KeydAlg alg, JoseVerifier **ret);
JoseVerifier *jose_verifier_ref(JoseVerifier *v);
JoseVerifier *jose_verifier_unref(JoseVerifier *v);
EVP_PKEY *jose_verifier_pkey(const JoseVerifier *v);
/* jose_verify_signature() with the verifier's key and alg. */
JoseResult jose_verifier_verify(JoseVerifier *v, const void *msg, size_t msg_len, const void *sig, size_t sig_len);
/* jose_jws_verify() with the verifier's key and alg. */
JoseResult jose_jws_verify_with(const JoseJws *jws, JoseVerifier *v);

/* Checks of a JWT claims set (RFC 7519 §4.1) after the signature verified. */
typedef struct JoseClaimsCheck {
        int64_t now;            /* seconds since the epoch */
        int64_t leeway;         /* seconds, 0..300 */
        const char *audience;   /* NULL: not checked; else "aud" (string or array of strings) must contain it */
        const char *issuer;     /* NULL: not checked; else "iss" must equal it */
        bool require_exp;       /* a token without "exp" is JOSE_MALFORMED */
} JoseClaimsCheck;

/* The payload of jws as a JSON object (duplicate members refused) in *ret: JOSE_OK or JOSE_MALFORMED. */
JoseResult jose_jws_claims(const JoseJws *jws, json_t **ret);
/* Check exp, nbf, iat (numbers; anything else is JOSE_MALFORMED), aud, iss. */
JoseResult jose_claims_check(const json_t *claims, const JoseClaimsCheck *check);

/* Build "BASE64URL(header).BASE64URL(payload)" from a header object (serialized compact, keys in insertion order) and
 * a payload; *ret is a new NUL-terminated string with room for the signature part to be appended by
 * jose_jws_append_signature() without another allocation. 0 or -ENOMEM / -EINVAL. */
int jose_jws_signing_input(const json_t *header, const void *payload, size_t payload_len, char **ret,
                           size_t *ret_len);
/* Append ".BASE64URL(sig)" to a string made by jose_jws_signing_input() (len is its length); returns the new
 * length or -ENOBUFS if sig is longer than the room reserved (512 bytes). */
int jose_jws_append_signature(char *signing_input, size_t len, const void *sig, size_t sig_len);

/* ECDSA signature form conversions: DER (OpenSSL) ↔ R‖S of n bytes each (JOSE). 0, -EINVAL, -ENOBUFS. */
int jose_ecdsa_der_to_raw(const uint8_t *der, size_t der_len, size_t n, uint8_t *out);
int jose_ecdsa_raw_to_der(const uint8_t *raw, size_t raw_len, uint8_t **ret, size_t *ret_len);
