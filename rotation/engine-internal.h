/* SPDX-License-Identifier: MIT */
#pragma once

/* The engine's locking contract.
 *
 * Threads: the daemon's event loop runs every engine function that changes anything (load, reconcile, tick, rotate,
 * revoke, disable, deny, config, checkpoint). Signers (engine_sign, engine_sign_compact) and readers
 * (engine_lookup_key, engine_token_denied, the ring_* readers under engine_read_lock) run on the API's threads.
 *
 * Locks, in the only order they may nest:  engine (Engine.lock, a rwlock)  →  the token layer's own (Hsm pool_lock;
 * module_lock → admin_lock → health_lock: pkcs11/hsm-internal.h). A signer holds the engine's read lock while it
 * waits for a signing worker and the token's answer (bounded: HsmConfig session_wait_ms and sign_timeout_ms, then
 * -ETIMEDOUT). The denylist has a lock of its own and nests in none.
 *
 * The event loop takes the write lock only to swap prepared state in: no token operation (sign, keygen, open,
 * destroy) and no wait for one ever runs under it. A keyring's new view (its keys, signer, JWKS, signed revocation
 * list) is built before the write lock is taken; the store transaction that changes its keys commits under the
 * write lock together with the swap, so that no signature is made with a key the store says is revoked.
 *
 * Who owns what is said on every field below and on Ring's (rotation/ring.h). */
#include <pthread.h>

#include "common/strmap.h"
#include "rotation/audit.h"
#include "rotation/denylist.h"
#include "rotation/engine.h"
#include "rotation/lifecycle.h"
#include "rotation/ring.h"
#include "rotation/schedule.h"

/* A committed change, kept for on_event until its transaction commits. */
typedef struct PendingEvent {
        char *action, *keyring, *kid, *detail;
} PendingEvent;

struct Engine {
        Hsm *hsm;                                    /* thread-safe itself */
        Store *store;                                /* event loop only: its own connection */
        EngineOptions opts;                          /* immutable */
        char instance_id[STORE_INSTANCE_ID_MAX + 1]; /* immutable: the installation's, from the store */
        uint64_t keys_lost;                          /* atomic: written by the loop, read by /metrics */

        pthread_rwlock_t lock; /* the engine lock: see above */
        Ring **rings;          /* write lock (insert); sorted by name */
        size_t n_rings;        /* write lock */
        StrMap *kids;          /* write lock: kid → KeyRef of every key in memory */
        Schedule schedule;     /* event loop only (the items' due times: write lock) */
        Denylist *denied;      /* its own lock */

        bool stopped;         /* event loop only: a failpoint fired */
        PendingEvent *events; /* event loop only: records of the open transaction, told once it commits */
        size_t n_events, cap_events;
        uint64_t events_dropped; /* atomic: records whose event could not be kept (out of memory), never silent */
};

/* engine.c */
bool engine_failpoint(Engine *e, const char *where);
/* store_commit()/store_rollback() for the engine's transactions: also tell (or drop) their events. */
int engine_commit(Engine *e);
void engine_rollback(Engine *e);
/* Append an audit record to the open transaction (audit_record_build(): detail_fmt and its arguments as json_pack(),
 * NULL for none). A record that cannot be built fails the change. a: NULL for keyd itself. */
int engine_audit(Engine *e, const Actor *a, const char *action, const char *ring, const char *kid, const char *result,
                 const char *detail_fmt, ...);
int engine_insert_ring(Engine *e, Ring *r);
/* The write lock, for a few stores into memory (never around a token operation). */
void engine_write_lock(Engine *e);
void engine_write_unlock(Engine *e);
/* Put a view built by ring_view_build() in r's place under the write lock; with SWAP_COMMIT, commit the open
 * transaction first under the same lock (a failed commit rolls it back and swaps nothing: v is freed). The old view is
 * freed after the lock is dropped. */
enum {
        SWAP_COMMIT = 1 << 0,  /* commit the open transaction under the same lock first */
        SWAP_DISABLE = 1 << 1, /* and mark the keyring disabled */
};
int engine_swap_view(Engine *e, Ring *r, RingView *v, unsigned flags);
/* Reload r's keys from the store and install them. */
int engine_reload_ring(Engine *e, Ring *r);
/* When r is next due, under the write lock. */
void engine_schedule(Engine *e, Ring *r, usec_t due);

/* tokens.c */
void engine_prune_denied(Engine *e);

/* keygen.c */
/* Generate a key pair in the token and fill a row for it (state next, published now); not inserted. Its id is
 * recorded in the store first (pending_keys), so that a crash leaves an object reconcile can prove is its own. */
int engine_generate_key(Engine *e, Ring *r, StoreKey **ret);
/* A key generated but never committed: destroy its objects and, once they are gone, its pending record. */
void engine_discard_key(Engine *e, const char *key_id);
/* Destroy a key's objects in the token by its hex id (after it left next/active). 0, or negative errno if the token
 * refused (none there is 0). A failure is not fatal: reconcile destroys what is left at the next start. */
int engine_destroy_objects(Engine *e, const char *key_id);

/* transition.c */
/* What goes with a plan into its transaction, and who asked. */
typedef struct Change {
        const Actor *actor;
        const char *reason; /* recorded with the transition ("scheduled", "manual", "revocation", ...) */
        bool forced;
        bool rotate;            /* rotate now, whatever the schedule says (engine_rotate()) */
        const char *revoke_kid; /* revoke this key */
        RevokeReason revoke_reason;
        const char *revoke_comment; /* free text for the key.revoke record, or NULL */
        bool disable; /* revoke every key and mark the keyring disabled */
} Change;

/* What a scheduled pass of r at now would do, doing nothing (plan->expire is not kept). */
int engine_plan(const Ring *r, usec_t now, LifecyclePlan *plan);
/* Plan c on r at now (the one planner, ring_plan()) and apply the plan: 1 if anything changed, 0 if there was nothing
 * to do, or a negative errno (nothing committed). plan->next_due says when r is next due. */
int engine_plan_and_apply(Engine *e, Ring *r, const Change *c, usec_t now, LifecyclePlan *plan);

/* tick.c */
/* Plan and apply one keyring's due transitions at now; sets its next due time and whether it is degraded (the one
 * writer of Ring.degraded). */
int engine_tick_ring(Engine *e, Ring *r, usec_t now);

/* repair.c */
/* The keyring's active and next keys that a fresh search of the token does not find: their ids in ids[] ("" for
 * one that is there), and how many. */
int engine_find_lost(Engine *e, Ring *r, char ids[2][STORE_KEY_ID_MAX + 1]);
/* A keyring with keys reported lost (Ring.search_lost, RingView.signer_lost): its active and next keys searched afresh
 * in the token, each one gone demoted (audited "key.lost"), and its view reloaded. The number of keys found lost, or a negative errno. */
int engine_demote_lost_keys(Engine *e, Ring *r);
/* Move a key that must not sign out of next/active in one transaction with its audit record: lost (active → retired,
 * still published; next → expired) or refused (revoked). */
int engine_demote_key(Engine *e, StoreKey *k, const Policy *p, bool lost, const char *action, const char *why);
