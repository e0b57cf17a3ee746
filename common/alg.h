/* SPDX-License-Identifier: MIT */
#pragma once

#include <errno.h>
#include <stddef.h>

#include "common/string-table.h"

/* The JOSE signature algorithms keyd issues keys for (RFC 7518, RFC 8037). */
typedef enum KeydAlg {
        KEYD_ALG_ES256,
        KEYD_ALG_ES384,
        KEYD_ALG_RS256,
        KEYD_ALG_PS256,
        KEYD_ALG_EDDSA,
        _KEYD_ALG_MAX,
        _KEYD_ALG_INVALID = -EINVAL,
} KeydAlg;

DECLARE_STRING_TABLE_LOOKUP(keyd_alg, KeydAlg);

static inline int keyd_alg_is_ec(KeydAlg a) {
        return a == KEYD_ALG_ES256 || a == KEYD_ALG_ES384;
}
static inline int keyd_alg_is_rsa(KeydAlg a) {
        return a == KEYD_ALG_RS256 || a == KEYD_ALG_PS256;
}
/* Size in bytes of one ECDSA coordinate (r or s) for an EC alg, else 0. */
size_t keyd_alg_ec_size(KeydAlg a);
/* OpenSSL group name of an EC alg ("prime256v1", "secp384r1"), else NULL. */
const char *keyd_alg_ec_group(KeydAlg a);
/* JWK "crv" of an EC or OKP alg ("P-256", "P-384", "Ed25519"), else NULL; and the alg of a "crv" (-EINVAL if none). */
const char *keyd_alg_jwk_crv(KeydAlg a);
KeydAlg keyd_alg_from_jwk_crv(const char *crv);
/* Whether an RSA modulus size is one keyd accepts: 2048, 3072, 4096. */
int keyd_rsa_bits_valid(unsigned bits);

/* Lifecycle state of a key (SPEC §3). */
typedef enum KeyState {
        KEY_STATE_NEXT,
        KEY_STATE_ACTIVE,
        KEY_STATE_RETIRED,
        KEY_STATE_EXPIRED,
        KEY_STATE_REVOKED,
        _KEY_STATE_MAX,
        _KEY_STATE_INVALID = -EINVAL,
} KeyState;

DECLARE_STRING_TABLE_LOOKUP(key_state, KeyState);
