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

int engine_repair_lost(Engine *e, const char *name, const char *kid) {
        Ring *r = engine_get_ring(e, name);
        const StoreKey *live[2];
        char ids[2][STORE_KEY_ID_MAX + 1] = {"", ""};
        usec_t now = engine_now(e);
        int rc, lost = 0;

        if (!r || r->disabled)
                return 0;
        __atomic_store_n(&r->repair_pending, false, __ATOMIC_RELEASE);
        live[0] = ring_key_in_state(r, KEY_STATE_ACTIVE);
        live[1] = ring_key_in_state(r, KEY_STATE_NEXT);
        if (!live[0] || !kid || !streq(live[0]->kid, kid))
                return 0; /* already repaired, or rotated meanwhile */

        /* A fresh search of the token for each: the handles may be stale, the objects may be gone. */
        for (size_t i = 0; i < 2; i++) {
                uint8_t id[HSM_ID_MAX];
                size_t n;
                if (!live[i] || ring_key_token_id(live[i], id, &n) < 0)
                        continue;
                if (hsm_key_probe(e->hsm, id, n) == 0) {
                        memcpy(ids[i], live[i]->id, sizeof ids[i]);
                        lost++;
                }
        }
        if (lost == 0)
                return 0;
        for (size_t i = 0; i < 2; i++) {
                StoreKey *row = NULL;
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
        rc = engine_reload_ring(e, r);
        if (rc < 0)
                return rc;
        rc = engine_tick_ring(e, r, now);
        return rc < 0 ? rc : 1;
}
