/* SPDX-License-Identifier: MIT */
#pragma once

#include <openssl/evp.h>

#include "common/strmap.h"
#include "jose/jws.h"
#include "pkcs11/hsm.h"
#include "rotation/jwks.h"
#include "rotation/policy.h"
#include "rotation/schedule.h"
#include "store/store.h"

/* A keyring in memory. Ownership (the engine's locking contract, rotation/engine-internal.h):
 *   - name, kind, owner_uid: set at creation, never changed;
 *   - policy, disabled, degraded, due, view: written by the event loop under the engine's write lock; read by the
 *     loop freely and by other threads under the read lock. degraded has one writer, engine_tick_ring();
 *   - jwks_file_failed, jwks_file_error: written by the event loop under the write lock (ring_write_jwks_file(), their
 *     one writer); read like degraded;
 *   - repair_pending, and the counters for /metrics (rotations, revocations, jwks_file_failures): atomic.
 * Everything derived from the keys is one RingView, built on the event loop outside the lock (opening the signer and
 * signing the revocation list are token operations) and swapped in whole under the write lock. */
typedef struct Ring Ring;

/* A key in memory, indexed by kid for verification: its keyring, its row, its public key prepared for verification
 * (parsed and set up once, when the view is built; NULL if its JWK is unreadable). */
typedef struct KeyRef {
        Ring *ring;
        StoreKey *key;
        JoseVerifier *verifier;
} KeyRef;

typedef struct RingView {
        StoreKey **keys;    /* every key but expired ones; NULL-terminated */
        StoreKey **expired; /* the keys left out, until the view is swapped in */
        size_t n_keys;
        KeyRef *refs;         /* one per key, in the engine's kid index once swapped in */
        HsmKey *signer;       /* the active key opened in the token, or NULL */
        bool signer_borrowed; /* signer still belongs to the view this one replaces (ring_view_swap() moves it) */
        char signer_kid[STORE_KID_MAX + 1];
        bool signer_lost;       /* the signer's object is gone from the token: nothing signs until the repair */
        char *jwks; /* NULL: not published */
        size_t jwks_len;
        char etag[JWKS_ETAG_MAX];
        char *revocations;      /* the signed revocation list (compact JWS), or NULL */
        usec_t last_revocation; /* the latest revoked_at of the keys: shortens the JWKS max-age for a while */
} RingView;

struct Ring {
        char *name;
        RingKind kind;
        int64_t owner_uid;
        Policy policy;
        bool disabled;
        bool from_api; /* created through POST /v1/keyrings: a keyd.conf section may not take it over */
        char *degraded; /* why, or NULL */
        ScheduleItem due;
        RingView *view;
        bool repair_pending; /* a signer found the active key gone; the loop's repair is queued */
        bool search_lost;    /* event loop only: the next pass searches the token for lost keys and demotes them */
        bool jwks_file_failed; /* the last write of the jwks-file failed: the keyring is degraded until one succeeds */
        char *jwks_file_error; /* why (path and error), or NULL (also when there was no memory to say it) */
        uint64_t rotations, revocations, jwks_file_failures; /* since start (RingCounters) */
};

/* A keyring with an empty view. NULL when out of memory. */
Ring *ring_new(const char *name, RingKind kind, int64_t owner_uid, const Policy *policy);
/* A keyring from its row; NULL (and *ret_error, a new string, when its policy is unreadable) on failure. */
Ring *ring_from_row(const StoreKeyring *row, char **ret_error);
Ring *ring_free(Ring *r);

/* Build the view of keys (consumed, expired ones dropped) for r at now: public keys, signer (the current one when the
 * active key did not change, else opened in the token), JWKS, and with sign the revocation list signed by the
 * signer. Token operations: call on the event loop without the engine's lock. *ret_signer_error: the errno of an
 * active key that could not be opened (0 if none). */
int ring_view_build(const Ring *r, Hsm *hsm, StoreKey **keys, size_t n, usec_t now, bool sign, RingView **ret,
                    int *ret_signer_error);
/* Put v in r's place, and its keys in the kid index; returns the old view, which the caller frees after dropping the
 * write lock. Call with the engine's write lock held. -ENOMEM only for kids that could not be indexed (the swap is
 * done regardless). */
int ring_view_swap(Ring *r, RingView *v, StrMap *kids, RingView **ret_old);
/* Take a view's keys out of the kid index (kids may be NULL). Call with the write lock held. */
void ring_view_unindex(RingView *v, StrMap *kids);
RingView *ring_view_free(RingView *v);

/* A deep copy of the keyring's keys (room for extra more, NULL-terminated), for a transition to change. */
int ring_keys_copy(const Ring *r, size_t extra, StoreKey ***ret, size_t *ret_n);
/* Write the keyring's JWKS to its jwks-file (atomic), if it has one. A failure marks the keyring degraded (ring_degraded()
 * says the path and the error), counts it, tells EngineOptions.on_event ("jwks-file.failed", once per distinct error)
 * and makes the keyring due for a pass within the retry delay, which writes the file again (rotation/tick.c); a
 * write that succeeds again clears the mark ("jwks-file.written"). Event loop only, without the engine's lock. */
int ring_write_jwks_file(Engine *e, Ring *r);
/* The token id of a stored key (its hex id as bytes). */
int ring_key_token_id(const StoreKey *k, uint8_t id[HSM_ID_MAX], size_t *ret_len);
