/* SPDX-License-Identifier: MIT */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <sys/types.h>

#include "common/alg.h"
#include "common/string-table.h"
#include "common/time-util.h"

/* A keyring's kind (SPEC §2). */
typedef enum RingKind {
        RING_ISSUER,
        RING_AGENT,
        _RING_KIND_MAX,
        _RING_KIND_INVALID = -EINVAL,
} RingKind;

DECLARE_STRING_TABLE_LOOKUP(ring_kind, RingKind);

#define KEYRING_NAME_MAX 64
/* A keyring name: 1-64 of [A-Za-z0-9._-], not starting with '.' or '-' (so never "..", "/" or an option). */
bool keyring_name_valid(const char *s);

/* The "typ" of the documents keyd signs for itself with a keyring's key. No token, JWS or raw signature a caller
 * obtains may carry one of them, and /v1/verify never accepts them as tokens. */
#define KEYD_TYP_REVOCATIONS "keyd-revocations+jwt"
#define KEYD_TYP_AUDIT_CHECKPOINT "keyd-audit-checkpoint+jwt"

/* Whether a "typ" value names one of keyd's own documents, compared as a media type (RFC 7515 §4.1.9):
 * case-insensitive, with or without "application/". */
bool keyd_typ_reserved(const char *typ);

#define POLICY_STRING_MAX 1024 /* issuer, token-type, jwks-file */

/* A keyring's policy (SPEC §2). Strings and lists are owned. */
typedef struct Policy {
        KeydAlg alg;
        unsigned rsa_bits;
        usec_t rotation_period;
        usec_t prepublish;
        usec_t token_ttl_max;
        usec_t default_ttl;
        usec_t clock_skew;
        char *issuer;      /* "iss"; may be NULL for agent keyrings */
        char *token_type;  /* "typ"; NULL means "JWT" */
        char **sign_users; /* NULL-terminated, may be NULL */
        char **sign_groups;
        bool publish;
        char *jwks_file;   /* NULL: not written to a file */
        bool allow_raw_sign; /* issuer keyrings: /jws and /sign allowed (agent keyrings always allow them) */
} Policy;

/* The defaults of SPEC §2 for a kind: ES256, rotation 24h, prepublish 1h, ttl max 1h, default ttl 15m, skew 60s;
 * issuer keyrings publish, agent keyrings do not; raw signing not allowed on issuer keyrings. */
void policy_init(Policy *p, RingKind kind);
void policy_done(Policy *p);
int policy_copy(const Policy *src, Policy *dst);

/* Whether the policy is coherent: prepublish ≤ rotation-period, default-ttl ≤ token-ttl-max, rsa-bits valid for RSA,
 * every duration ≥ 1 s, token-type not one of keyd's own typs. On failure returns -EINVAL and points *ret_error at
 * a static message naming the field. */
int policy_validate(const Policy *p, const char **ret_error);

/* Whether issuer is an issuer URL as verifiers and OIDC discovery take it: https://HOST[:PORT][/PATH], with no user,
 * query or fragment; http:// only for a loopback host (127.0.0.1, [::1] or localhost), for development. 0, or
 * -EINVAL with *ret_error pointing at a static message. keyring create requires it of issuer keyrings (keydctl checks
 * the same before it sends). */
int policy_issuer_check(const char *issuer, const char **ret_error);

/* The JSON form (SPEC §2: '_' for '-', durations as strings with a unit). */
int policy_to_json(const Policy *p, json_t **ret);
/* Read the fields present in o over *p (so defaults stay for absent ones); durations as a string with a unit or an
 * integer of seconds. Unknown members are refused. On failure returns -EINVAL and *ret_error names the member. */
int policy_update_from_json(Policy *p, const json_t *o, char **ret_error);

/* Set one field from its configuration name ("rotation-period", "alg", ...) and text value: 0, -EINVAL (bad value,
 * *ret_error says why), or -ENOENT (no such field). */
int policy_set(Policy *p, const char *name, const char *value, const char **ret_error);

