/* SPDX-License-Identifier: MIT */
#pragma once

#include "rotation/policy.h"
#include "store/store.h"

/* The key lifecycle of SPEC §3 as a pure function of (the keyring's keys, its policy, now): what is due, and when
 * the next thing will be. Applying a plan and planning again at the same instant yields an empty plan.
 *
 *  next ──(activate)──▶ active ──(retire)──▶ retired ──(expire_at)──▶ expired;  any ──(revoke)──▶ revoked
 *
 * Rotation is due when the active key has been active for rotation-period AND the next key has been published for at
 * least prepublish: it promotes next, retires active (expire_at = now + token-ttl-max + clock-skew), and generates a
 * new next. A keyring without an active key promotes its next key at once (repair, or emergency after revocation);
 * one without a next key generates one at once. */

typedef struct LifecyclePlan {
        bool promote;       /* no active key: the next key (or, if there is none, a new one) becomes active now */
        bool rotate;        /* scheduled rotation is due */
        bool generate_next; /* a new next key is needed (none, rotated away, promoted, or replaced) */
        bool replace_next;  /* the next key no longer fits the policy (alg changed): expire it unused */
        size_t n_expire;    /* retired keys whose expire_at has come: their indices in expire[] */
        size_t *expire;     /* caller-provided, room for n keys */
        usec_t next_due;    /* when planning again will find something to do (USEC_INFINITY: never) */
} LifecyclePlan;

static inline bool lifecycle_plan_empty(const LifecyclePlan *p) {
        return !p->promote && !p->rotate && !p->generate_next && !p->replace_next && p->n_expire == 0;
}

/* keys: the keyring's keys in any order (expired and revoked ones are ignored). At most one active and one next key
 * is assumed (the store enforces it); more is -EUCLEAN. */
int lifecycle_plan(StoreKey *const *keys, size_t n, const Policy *p, bool disabled, usec_t now, LifecyclePlan *plan);

/* The first of keys[0..n) in state s, or NULL. */
StoreKey *keys_in_state(StoreKey *const *keys, size_t n, KeyState s);

/* When the next scheduled rotation of a keyring with these active and next keys is due. */
usec_t lifecycle_rotation_due(const StoreKey *active, const StoreKey *next, const Policy *p);

/* Why a key was revoked (RFC 5280 reason names, as stored and as the API and keydctl take them). */
typedef enum RevokeReason {
        REVOKE_KEY_COMPROMISE,
        REVOKE_SUPERSEDED,
        REVOKE_CESSATION,
        REVOKE_UNSPECIFIED,
        _REVOKE_REASON_MAX,
        _REVOKE_REASON_INVALID = -EINVAL,
} RevokeReason;

/* Every reason, for messages and help text: "key_compromise, superseded, cessation or unspecified". */
#define REVOKE_REASONS_TEXT "key_compromise, superseded, cessation or unspecified"

const char *revoke_reason_to_string(RevokeReason r);
/* _REVOKE_REASON_INVALID for NULL or a name that is none of them. */
RevokeReason revoke_reason_from_string(const char *s);
