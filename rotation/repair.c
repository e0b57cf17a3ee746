/* SPDX-License-Identifier: MIT */
/* Keys that must not sign any more leave next/active: lost from the token (found at start by reconcile, or while
 * signing) or refused (not protected as keyd requires). */
#include "common/crypto-util.h"
#include "common/log.h"
#include "rotation/engine-internal.h"

int engine_demote_key(Engine *e, StoreKey *k, const Policy *p, bool lost, const char *action, const char *why) {
        usec_t now = engine_now(e);
        int r;

        if (lost) {
                k->lost = true;
                if (k->state == KEY_STATE_ACTIVE) {
                        /* Its tokens are still good: keep it published as a retired key. */
                        k->state = KEY_STATE_RETIRED;
                        k->retire_at = now;
                        k->expire_at = now + p->token_ttl_max + p->clock_skew;
                } else {
                        /* A standby never signed: it simply goes. */
                        k->state = KEY_STATE_EXPIRED;
                        k->expire_at = now;
                }
        } else {
                k->state = KEY_STATE_REVOKED;
                k->revoked_at = now;
                free(k->reason);
                k->reason = strdup(revoke_reason_to_string(REVOKE_KEY_COMPROMISE));
                if (!k->reason)
                        return -ENOMEM;
        }
        r = store_begin(e->store, STORE_SYNCED);
        if (r >= 0)
                r = store_key_update(e->store, k);
        if (r >= 0)
                r = engine_audit(e, NULL, action, k->keyring, k->kid, "ok", "{s:s, s:s}", "reason", why, "state",
                                 key_state_to_string(k->state));
        if (r >= 0)
                r = engine_commit(e);
        if (r < 0)
                engine_rollback(e);
        return r;
}

/* Each key found lost (ids[i] not empty) demoted in its own audited transaction, its public object destroyed. */
static int demote_lost(Engine *e, Ring *r, char ids[2][STORE_KEY_ID_MAX + 1]) {
        for (size_t i = 0; i < 2; i++) {
                StoreKey *row = NULL;
                int rc;
                if (!ids[i][0])
                        continue;
                __atomic_add_fetch(&e->keys_lost, 1, __ATOMIC_RELAXED);
                rc = store_key_get(e->store, ids[i], &row);
                if (rc >= 0)
                        rc = engine_demote_key(e, row, &r->policy, true, "key.lost",
                                               "private object missing from the token (found while signing)");
                store_key_free(row);
                if (rc < 0)
                        return rc;
                (void) engine_destroy_objects(e, ids[i]); /* a public object alone is of no use */
        }
        return 0;
}

int engine_find_lost(Engine *e, Ring *r, char ids[2][STORE_KEY_ID_MAX + 1]) {
        const StoreKey *live[2] = { ring_key_in_state(r, KEY_STATE_ACTIVE), ring_key_in_state(r, KEY_STATE_NEXT) };
        int lost = 0;

        for (size_t i = 0; i < 2; i++) {
                uint8_t id[HSM_ID_MAX];
                size_t n;
                ids[i][0] = 0;
                if (!live[i] || ring_key_token_id(live[i], id, &n) < 0)
                        continue;
                if (hsm_key_probe(e->hsm, id, n) == 0) {
                        memcpy(ids[i], live[i]->id, sizeof ids[i]);
                        lost++;
                }
        }
        return lost;
}

int engine_demote_lost_keys(Engine *e, Ring *r) {
        char ids[2][STORE_KEY_ID_MAX + 1];
        int lost = engine_find_lost(e, r, ids), rc;

        rc = lost > 0 ? demote_lost(e, r, ids) : 0;
        if (rc >= 0)
                r->search_lost = false;
        /* The view again, from the store (its signer opened afresh): the keyring is no longer marked lost. */
        if (rc >= 0)
                rc = engine_reload_ring(e, r);
        return rc < 0 ? rc : lost;
}
