/* SPDX-License-Identifier: MIT */
#include "common/alg.h"
#include "common/macro.h"

static const char *const keyd_alg_table[_KEYD_ALG_MAX] = {
        [KEYD_ALG_ES256] = "ES256",
        [KEYD_ALG_ES384] = "ES384",
        [KEYD_ALG_RS256] = "RS256",
        [KEYD_ALG_PS256] = "PS256",
        [KEYD_ALG_EDDSA] = "EdDSA",
};

DEFINE_STRING_TABLE_LOOKUP(keyd_alg, KeydAlg);

static const char *const jwk_crv_table[_KEYD_ALG_MAX] = {
        [KEYD_ALG_ES256] = "P-256",
        [KEYD_ALG_ES384] = "P-384",
        [KEYD_ALG_EDDSA] = "Ed25519",
};

const char *keyd_alg_jwk_crv(KeydAlg a) {
        return string_table_get(jwk_crv_table, ELEMENTSOF(jwk_crv_table), a);
}

KeydAlg keyd_alg_from_jwk_crv(const char *crv) {
        return string_table_lookup(jwk_crv_table, ELEMENTSOF(jwk_crv_table), crv);
}

static const char *const key_state_table[_KEY_STATE_MAX] = {
        [KEY_STATE_NEXT] = "next",
        [KEY_STATE_ACTIVE] = "active",
        [KEY_STATE_RETIRED] = "retired",
        [KEY_STATE_EXPIRED] = "expired",
        [KEY_STATE_REVOKED] = "revoked",
};

DEFINE_STRING_TABLE_LOOKUP(key_state, KeyState);

size_t keyd_alg_ec_size(KeydAlg a) {
        switch (a) {
        case KEYD_ALG_ES256:
                return 32;
        case KEYD_ALG_ES384:
                return 48;
        default:
                return 0;
        }
}

const char *keyd_alg_ec_group(KeydAlg a) {
        switch (a) {
        case KEYD_ALG_ES256:
                return "prime256v1";
        case KEYD_ALG_ES384:
                return "secp384r1";
        default:
                return NULL;
        }
}

int keyd_rsa_bits_valid(unsigned bits) {
        return bits == 2048 || bits == 3072 || bits == 4096;
}
