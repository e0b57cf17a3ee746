/* SPDX-License-Identifier: MIT */
#pragma once

/* What verifying checkpoints needs to know from the chain, shared by audit_verify() (checkpoint.c) and the prune
 * (audit-prune.c), which hands it on to the kept chain as the anchor's carry. Not thread-safe. */
#include <jansson.h>

#include "common/alg.h"
#include "common/strmap.h"
#include "store/store.h"

/* The key.generate record of a key in an issuer keyring (seq 0: not found yet). */
typedef struct Generated {
        uint64_t seq;
        KeydAlg alg; /* from the record's detail; _KEYD_ALG_INVALID if it names none */
} Generated;

typedef struct AuditKeys {
        StrMap *issuers;   /* keyring → non-NULL while its last keyring.create made it an issuer */
        StrMap *generated; /* kid → Generated, for the kids asked about only (audit_keys_want()) */
} AuditKeys;

int audit_keys_init(AuditKeys *k);
void audit_keys_done(AuditKeys *k);
/* Follow the key.generate record of kid. 0 or -ENOMEM. */
int audit_keys_want(AuditKeys *k, const char *kid);
/* One verified record, in seq order (a StoreAuditVisit's work). 0 or -ENOMEM. */
int audit_keys_visit(AuditKeys *k, const StoreAudit *rec);
/* What a carry (the anchor's, an audit.prune record's) says: its issuers, and the keys wanted. -EBADMSG if it is not
 * a carry. */
int audit_keys_load(AuditKeys *k, const char *carry);
/* The carry of what is known: {"issuers": [names, sorted], "keys": {kid: {"seq": N, "alg": "ES256"}}} of the wanted
 * kids whose record was found. */
int audit_keys_dump(const AuditKeys *k, json_t **ret);
/* The key.generate record of a wanted kid, or NULL. */
const Generated *audit_keys_generated(const AuditKeys *k, const char *kid);
