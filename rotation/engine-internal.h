/* SPDX-License-Identifier: MIT */
#pragma once

#include <pthread.h>

#include "common/strmap.h"

#include "rotation/engine.h"
#include "rotation/jwks.h"
#include "rotation/lifecycle.h"

/* A key in memory, indexed by kid for verification: its keyring, its row, its public key ready for EVP. */
typedef struct KeyRef {
        Ring *ring;
        StoreKey *key;
        EVP_PKEY *pkey;
} KeyRef;

/* A key's object handles in the token (event loop only). */
typedef struct KeyHandles {
        unsigned long priv, pub;
} KeyHandles;

struct Ring {
        char *name;
        RingKind kind;
        int64_t owner_uid;
        Policy policy;
        bool disabled;
        char *degraded;         /* why, or NULL */
        usec_t next_due;
        usec_t last_revocation; /* shortens the JWKS max-age for a while */

        StoreKey **keys;        /* every key but expired ones; NULL-terminated */
        size_t n_keys;
        KeyRef *refs;           /* one per key, in the engine's kid index */
        HsmKey *signer;         /* the active key in the token, or NULL */
        char signer_kid[STORE_KID_MAX + 1];

        char *jwks;
        size_t jwks_len;
        char etag[JWKS_ETAG_MAX];
        char *revocations;

        size_t heap_idx;        /* position in the engine's schedule */
        bool repair_pending;    /* atomic: a signer found the active key gone; the loop's repair is queued */
};

typedef struct PendingEvent {
        char action_buf[48];
        char ring_buf[KEYRING_NAME_MAX + 1];
        char kid_buf[STORE_KID_MAX + 1];
        char detail_buf[160];
} PendingEvent;

struct Engine {
        Hsm *hsm;
        Store *store;
        EngineOptions opts;
        char instance_id[STORE_INSTANCE_ID_MAX + 1]; /* the installation's, from the store */
        uint64_t keys_lost;     /* atomic: written by the loop, read by /metrics */

        Ring **rings;           /* sorted by name */
        size_t n_rings;
        Ring **heap;            /* min-heap by next_due */
        size_t n_heap;
        StrMap *kids;           /* kid → KeyRef, every key in memory */
        StrMap *denied;         /* jti → usec_t* (exp) of denied tokens */
        StrMap *handles;        /* key id (hex) → KeyHandles*: the token's objects, so that nothing searches it */

        /* Held for reading by signers and readers on other threads; for writing by the event loop around every
         * change it makes to the keyrings in memory (and around the commit of a revocation, so that no signature is
         * made with a key that is revoked in the store). */
        pthread_rwlock_t lock;
        bool stopped;           /* a failpoint fired */

        PendingEvent pending[16]; /* audit records of the open transaction, told once it commits */
        size_t n_pending;
};

/* engine.c */
bool engine_failpoint(Engine *e, const char *where);
/* store_commit()/store_rollback() for the engine's transactions: also tell (or drop) their events. */
int engine_commit(Engine *e);
void engine_rollback(Engine *e);
/* Tell the daemon about the records of the transaction that just ended (or drop them if it rolled back). */
void engine_flush_events(Engine *e, bool committed);
int engine_audit(Engine *e, const Actor *a, const char *action, const char *ring, const char *kid,
                 const char *result, json_t *detail /* consumed, may be NULL */);
int engine_insert_ring(Engine *e, Ring *r);
Ring *ring_free(Ring *r);
/* Take a keyring's keys out of the kid index and free their public keys (e may be NULL at teardown). */
void ring_drop_refs(Engine *e, Ring *r);
/* Reload a keyring's keys from the store, reopen its signer, rebuild its JWKS and revocation list, write its
 * jwks-file. Call with the write lock held. */
int ring_refresh(Engine *e, Ring *r);
/* Write the keyring's JWKS to its jwks-file (atomic). Call without the lock. */
int ring_publish_file(Engine *e, Ring *r);
void schedule_update(Engine *e, Ring *r);
/* Set when the keyring is next due (and, with set_degraded, why it is degraded, NULL: healthy) under the write lock. */
void ring_set_schedule(Engine *e, Ring *r, usec_t due, const char *degraded, bool set_degraded);

/* revoke.c */
int engine_load_denied(Engine *e);
void engine_prune_denied(Engine *e);

/* reconcile.c */
/* Move a key that must not sign out of next/active in one transaction with its audit record: lost (active → retired,
 * still published; next → expired) or refused (revoked). */
int engine_demote_key(Engine *e, StoreKey *k, const Policy *p, bool lost, const char *action, const char *why);

/* transition.c */
/* Plan and apply one keyring's due transitions at now; sets its next due time (and clears degraded on success). */
int engine_tick_ring(Engine *e, Ring *r, usec_t now);
/* Generate a key pair in the token and fill a row for it (state next, published now); not inserted. */
int engine_generate_key(Engine *e, Ring *r, StoreKey **ret);
/* What goes with a plan into its transaction, and who asked. */
typedef struct Change {
        const Actor *actor;
        const char *reason;        /* recorded with the transition ("scheduled", "manual", ...) */
        bool forced;
        const StoreKey *revoke;    /* revoke this key (its state is already set to revoked in memory) */
        const char *revoke_reason;
        bool disable;              /* revoke every key and mark the keyring disabled */
} Change;

/* Apply a plan (and a change) to a keyring: new key objects first, then one transaction with every row and audit
 * record, then the keyring in memory, then the token objects of keys that left next/active. */
int engine_apply_plan(Engine *e, Ring *r, const LifecyclePlan *plan, const Change *c);
/* Destroy a key's objects in the token by its hex id (after it left next/active). 0, or negative errno if the token
 * refused (none there is 0). A failure is not fatal: reconcile destroys what is left at the next start. */
int engine_destroy_objects(Engine *e, const char *key_id);
int key_id_to_bytes(const char *hex, uint8_t *out, size_t *ret_len);
/* A token object's CKA_ID as the key id of its row (lowercase hex). */
void key_id_to_hex(const uint8_t *id, size_t n, char out[STORE_KEY_ID_MAX + 1]);

/* handles.c: the index of keyd's objects in the token, built from one listing (a search of a SoftHSM2 token checks
 * every object, so opening keys one search at a time is quadratic in the number of keys). */
/* Rebuild the index from a listing of the token's keyd objects. */
int engine_index_objects(Engine *e, const HsmObject *objs, size_t n);
/* List the token once and index it. */
int engine_index_token(Engine *e);
/* Remember (or, with priv 0, forget) a key's handles. */
int engine_index_key(Engine *e, const char *key_id, unsigned long priv, unsigned long pub);
/* Open a stored key in the token, by its indexed handles, else by a search. -ENOENT if it is not there. */
int engine_open_key(Engine *e, const StoreKey *k, HsmKey **ret);
