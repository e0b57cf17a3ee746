/* SPDX-License-Identifier: MIT */
#pragma once

#include <jansson.h>
#include <openssl/evp.h>

#include "common/alg.h"

/* JWK (RFC 7517, RFC 7518 §6, RFC 8037 §2) for the public keys keyd issues. */

/* The public JWK of pkey: EC {kty, crv, x, y} (coordinates padded to the curve size), RSA {kty, n, e},
 * Ed25519 {kty: OKP, crv, x}. alg tells which family pkey must be; a mismatch is -EINVAL. Nothing else is added:
 * the caller adds kid, alg, use. */
int jose_jwk_from_pkey(EVP_PKEY *pkey, KeydAlg alg, json_t **ret);

/* The public key of a JWK (private members, if any, are ignored). -EINVAL for anything malformed: unknown kty/crv,
 * bad base64url, coordinates of the wrong length, a point not on the curve, an RSA modulus under 2048 or over 4096
 * bits or with a leading zero octet, an even or unit e; and for a key marked for something other than verifying
 * ("use" other than "sig", "key_ops" without "verify"). */
int jose_jwk_to_pkey(const json_t *jwk, EVP_PKEY **ret);

/* Whether pkey can be used with alg (EC curve matches, RSA 2048..4096 bits, Ed25519 for EdDSA): 1 or 0. */
int jose_pkey_matches_alg(EVP_PKEY *pkey, KeydAlg alg);

#define JOSE_THUMBPRINT_LEN 43 /* base64url of a SHA-256 digest */

/* RFC 7638 thumbprint (SHA-256, base64url) of a public JWK: the required members only, in lexicographic order,
 * no white space. ret has room for JOSE_THUMBPRINT_LEN + 1 bytes. 0 or -EINVAL. */
int jose_jwk_thumbprint(const json_t *jwk, char ret[JOSE_THUMBPRINT_LEN + 1]);
