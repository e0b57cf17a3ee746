/* SPDX-License-Identifier: MIT */
/* libFuzzer target for the verifier's input side: jose_jws_parse(), jose_jws_claims(), jose_claims_check(),
 * jose_jws_verify(); and, when the input is a JSON object, jose_jwk_to_pkey() and jose_jwk_thumbprint(). Also built
 * as a replay program (replay.c) that runs the committed corpus inside "make check". */
#include <stddef.h>
#include <stdint.h>

#include "common/crypto-util.h"
#include "jose/jwk.h"
#include "jose/jws.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Fixed public keys, built once: the ES256 key of RFC 7515 A.3 (so that the corpus's valid tokens reach a
 * successful verification), and the RS256 key of A.2 and the Ed25519 key of RFC 8037 for tokens of those algs. */
static const char *const fixed_jwks[] = {
        [KEYD_ALG_ES256] = "{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU\","
                           "\"y\":\"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0\"}",
        [KEYD_ALG_RS256] =
                "{\"kty\":\"RSA\",\"e\":\"AQAB\",\"n\":\"ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W"
                "26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47"
                "soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMT"
                "BQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW"
                "9gb54h4FRWyuXpoQ\"}",
        [KEYD_ALG_EDDSA] =
                "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\"}",
};
static EVP_PKEY *keys[_KEYD_ALG_MAX];

static void keys_init(void) {
        static bool done;
        if (done)
                return;
        done = true;
        for (size_t a = 0; a < _KEYD_ALG_MAX; a++) {
                if (!fixed_jwks[a])
                        continue;
                _cleanup_json_ json_t *jwk = json_loads(fixed_jwks[a], 0, NULL);
                if (!jwk || jose_jwk_to_pkey(jwk, &keys[a]) < 0)
                        abort();
        }
        keys[KEYD_ALG_PS256] = keys[KEYD_ALG_RS256];
}

static void fuzz_token(const uint8_t *data, size_t size) {
        JoseJws *jws = NULL;
        json_t *claims = NULL;

        if (jose_jws_parse((const char *) data, size, &jws) != JOSE_OK)
                return;
        if (jws->alg < 0 || jws->alg >= _KEYD_ALG_MAX || !jws->signing_input || !jws->signature)
                abort(); /* a parsed JWS always has a known alg and all its parts */
        /* With the key of its alg, with the ES256 key, and with the ES256 key claimed as another alg. */
        (void) jose_jws_verify(jws, keys[jws->alg] ?: keys[KEYD_ALG_ES256], jws->alg);
        if (jose_jws_verify(jws, keys[KEYD_ALG_ES256], KEYD_ALG_ES256) == JOSE_OK && jws->alg != KEYD_ALG_ES256)
                abort(); /* the header's alg must equal the key's */
        (void) jose_jws_verify(jws, keys[KEYD_ALG_ES256], KEYD_ALG_RS256);

        if (jose_jws_claims(jws, &claims) == JOSE_OK) {
                JoseClaimsCheck check = {.now = 1300819370, .leeway = 60, .audience = "a", .issuer = "joe"};
                (void) jose_claims_check(claims, &check);
                check.audience = check.issuer = NULL;
                check.require_exp = true;
                (void) jose_claims_check(claims, &check);
                json_decref(claims);
        }
        jose_jws_free(jws);
}

static void fuzz_jwk(const uint8_t *data, size_t size) {
        _cleanup_json_ json_t *jwk = json_loadb((const char *) data, size, JSON_REJECT_DUPLICATES, NULL);
        char tp[JOSE_THUMBPRINT_LEN + 1];
        EVP_PKEY *pkey = NULL;

        if (!json_is_object(jwk))
                return;
        (void) jose_jwk_thumbprint(jwk, tp);
        if (jose_jwk_to_pkey(jwk, &pkey) == 0)
                EVP_PKEY_free(pkey);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        keys_init();
        fuzz_token(data, size);
        if (size > 0 && data[0] == '{')
                fuzz_jwk(data, size);
        return 0;
}
