/* SPDX-License-Identifier: MIT */
#pragma once

#include "rotation/policy.h"
#include "store/store.h"

/* JWKS bytes for a keyring (SPEC §5): the public JWKs of its active, next and retired keys, in that order (revoked
 * and expired keys never). The keys' stored JWKs already carry kid, alg and use. *ret is a new string. */
int jwks_build(StoreKey *const *keys, size_t n, char **ret, size_t *ret_len);

#define JWKS_ETAG_MAX 32
/* A strong ETag of the bytes: a quoted base64url prefix of their SHA-256. */
void jwks_etag(const char *body, size_t len, char etag[JWKS_ETAG_MAX]);

/* Cache-Control max-age in seconds: at most prepublish/2 (the timing invariant), at most a day; and at
 * most 60 during the ten minutes after a revocation. */
unsigned jwks_max_age(const Policy *p, usec_t last_revocation, usec_t now);

#define JWKS_REVOCATION_WINDOW (600 * USEC_PER_SEC)
#define JWKS_REVOCATION_MAX_AGE 60

/* The revocation list payload: {"keyring", "iss", "iat", "revoked": [{"kid", "revoked_at", "reason"}]}, revoked_at
 * in RFC 3339. */
int jwks_revocations_payload(const char *ring, const char *issuer, StoreKey *const *keys, size_t n, usec_t now,
                             char **ret);
