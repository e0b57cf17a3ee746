/* SPDX-License-Identifier: MIT */
#include "common/alg.h"
#include "common/macro.h"

static const char *const alg_table[_KEYD_ALG_MAX] = {
        [KEYD_ALG_ES256] = "ES256",
        [KEYD_ALG_ES384] = "ES384",
        [KEYD_ALG_RS256] = "RS256",
        [KEYD_ALG_PS256] = "PS256",
        [KEYD_ALG_EDDSA] = "EdDSA",
};

static const char *const key_state_table[_KEY_STATE_MAX] = {
        [KEY_STATE_NEXT] = "next",
        [KEY_STATE_ACTIVE] = "active",
        [KEY_STATE_RETIRED] = "retired",
        [KEY_STATE_EXPIRED] = "expired",
        [KEY_STATE_REVOKED] = "revoked",
};

static int table_lookup(const char *const *table, size_t n, const char *s) {
        if (!s)
                return -EINVAL;
        for (size_t i = 0; i < n; i++)
                if (table[i] && streq(table[i], s))
                        return (int) i;
        return -EINVAL;
}

const char *keyd_alg_to_string(KeydAlg a) {
        return a >= 0 && a < _KEYD_ALG_MAX ? alg_table[a] : NULL;
}

KeydAlg keyd_alg_from_string(const char *s) {
        return table_lookup(alg_table, ELEMENTSOF(alg_table), s);
}

const char *key_state_to_string(KeyState s) {
        return s >= 0 && s < _KEY_STATE_MAX ? key_state_table[s] : NULL;
}

KeyState key_state_from_string(const char *s) {
        return table_lookup(key_state_table, ELEMENTSOF(key_state_table), s);
}

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

const char *keyd_alg_jwk_crv(KeydAlg a) {
        switch (a) {
        case KEYD_ALG_ES256:
                return "P-256";
        case KEYD_ALG_ES384:
                return "P-384";
        case KEYD_ALG_EDDSA:
                return "Ed25519";
        default:
                return NULL;
        }
}

int keyd_rsa_bits_valid(unsigned bits) {
        return bits == 2048 || bits == 3072 || bits == 4096;
}
