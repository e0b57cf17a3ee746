/* SPDX-License-Identifier: MIT */
/* Reconciling the token with the store at start (SPEC §3). The store is the truth about which keys exist; the token
 * may hold objects the store never recorded (a crash between keygen and commit), miss objects the store has (SoftHSM2
 * does not fsync its object files), or still hold private objects of keys that left next/active (a crash before the
 * destroy). Each finding is one transaction with its audit record; the lifecycle then repairs each keyring. */
#include <stdio.h>

#include "common/crypto-util.h"
#include "common/log.h"
#include "rotation/engine-internal.h"

typedef struct Found {
        char id[STORE_KEY_ID_MAX + 1];
        bool has_private;
} Found;

static int found_cmp(const void *a, const void *b) {
        return strcmp(((const Found *) a)->id, ((const Found *) b)->id);
}

static int key_id_cmp(const void *a, const void *b) {
        return strcmp((*(StoreKey *const *) a)->id, (*(StoreKey *const *) b)->id);
}

static int audit_one(Engine *e, const char *action, const char *ring, const char *kid, json_t *detail) {
        int r = store_begin(e->store, STORE_SYNCED);
        if (r < 0) {
                json_decref(detail);
                return r;
        }
        r = engine_audit(e, NULL, action, ring, kid, "ok", detail);
        if (r >= 0)
                r = engine_commit(e);
        if (r < 0)
                engine_rollback(e);
        return r;
}

/* Move a key that must not sign (lost, or unprotected) out of next/active in one transaction. */
static int demote(Engine *e, StoreKey *k, const Policy *p, bool lost, const char *action, const char *why) {
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
                k->reason = strdup("key_compromise");
                if (!k->reason)
                        return -ENOMEM;
        }
        r = store_begin(e->store, STORE_SYNCED);
        if (r >= 0)
                r = store_key_update(e->store, k);
        if (r >= 0)
                r = engine_audit(e, NULL, action, k->keyring, k->kid, "ok",
                                 json_pack("{s:s, s:s}", "reason", why, "state", key_state_to_string(k->state)));
        if (r >= 0)
                r = engine_commit(e);
        if (r < 0)
                engine_rollback(e);
        return r;
}

static const Policy *policy_of(Engine *e, const char *ring) {
        Ring *r = engine_get_ring(e, ring);
        return r ? &r->policy : NULL;
}

static int check_key(Engine *e, StoreKey *k, Found *f, ReconcileReport *rep) {
        const Policy *p = policy_of(e, k->keyring);
        bool live = k->state == KEY_STATE_NEXT || k->state == KEY_STATE_ACTIVE;
        int r;

        if (!p)
                return 0;
        if (!live) {
                if (f && f->has_private) {
                        engine_destroy_objects(e, k->id);
                        rep->privates_destroyed++;
                        return audit_one(e, "reconcile.private_destroyed", k->keyring, k->kid,
                                         json_pack("{s:s}", "state", key_state_to_string(k->state)));
                }
                return 0;
        }
        if (!f || !f->has_private) {
                rep->keys_lost++;
                log_debug("keyring %s: the private key of %s key %s is missing from the token", k->keyring,
                            key_state_to_string(k->state), k->kid);
                if (f)
                        engine_destroy_objects(e, k->id); /* a public object alone is of no use */
                return demote(e, k, p, true, "reconcile.key_lost", "private object missing from the token");
        }

        HsmKey *hk = NULL;
        r = engine_open_key(e, k, &hk);
        if (r >= 0)
                r = hsm_key_check_protection(hk);
        hsm_key_free(hk);
        if (r == -EPERM || r == -EMEDIUMTYPE) {
                rep->keys_refused++;
                log_debug("keyring %s: key %s is not protected as keyd requires (sensitive, never extractable, "
                            "generated in the token): revoked",
                            k->keyring, k->kid);
                r = demote(e, k, p, false, "reconcile.key_refused",
                           r == -EPERM ? "protection attributes" : "key type does not match");
                if (r >= 0)
                        engine_destroy_objects(e, k->id);
                return r;
        }
        return r;
}

int engine_reconcile(Engine *e, ReconcileReport *ret) {
        ReconcileReport rep = { 0 };
        HsmObject *objs = NULL;
        StoreKey **keys = NULL, **by_id = NULL;
        Found *found = NULL;
        size_t n_objs = 0, n_keys = 0, n_found = 0;
        int r;

        r = hsm_list(e->hsm, "keyd:", &objs, &n_objs);
        if (r >= 0)
                r = engine_index_objects(e, objs, n_objs);
        if (r < 0) {
                free(objs);
                return r;
        }
        found = calloc(n_objs + 1, sizeof *found);
        if (!found) {
                r = -ENOMEM;
                goto finish;
        }
        for (size_t i = 0; i < n_objs; i++) {
                Found f = { 0 };
                for (size_t j = 0; j < objs[i].id_len; j++)
                        snprintf(f.id + 2 * j, 3, "%02x", objs[i].id[j]);
                f.has_private = objs[i].is_private;
                found[n_found++] = f;
        }
        /* One entry per id: sort, then merge the private and public object of each key. */
        qsort(found, n_found, sizeof *found, found_cmp);
        size_t m = 0;
        for (size_t i = 0; i < n_found; i++) {
                if (m > 0 && streq(found[m - 1].id, found[i].id))
                        found[m - 1].has_private |= found[i].has_private;
                else
                        found[m++] = found[i];
        }
        n_found = m;

        r = store_key_list(e->store, NULL, &keys, &n_keys);
        if (r < 0)
                goto finish;
        by_id = calloc(n_keys + 1, sizeof *by_id);
        if (!by_id) {
                r = -ENOMEM;
                goto finish;
        }
        memcpy(by_id, keys, n_keys * sizeof *by_id);
        qsort(by_id, n_keys, sizeof *by_id, key_id_cmp);

        /* Objects without a row: never used, never published; destroyed. */
        for (size_t i = 0; i < n_found; i++) {
                StoreKey probe = { 0 }, *pp = &probe;
                memcpy(probe.id, found[i].id, sizeof probe.id);
                if (bsearch(&pp, by_id, n_keys, sizeof *by_id, key_id_cmp))
                        continue;
                engine_destroy_objects(e, found[i].id);
                rep.orphans_destroyed++;
                r = audit_one(e, "reconcile.orphan_destroyed", NULL, NULL, json_pack("{s:s}", "id", found[i].id));
                if (r < 0)
                        goto finish;
        }

        for (size_t j = 0; j < n_keys; j++) {
                Found key = { 0 }, *f;
                snprintf(key.id, sizeof key.id, "%s", keys[j]->id);
                f = bsearch(&key, found, n_found, sizeof *found, found_cmp);
                r = check_key(e, keys[j], f, &rep);
                if (r < 0)
                        goto finish;
        }

        /* The keyrings in memory now follow the store again; each is due for a lifecycle pass. */
        pthread_rwlock_wrlock(&e->lock);
        for (size_t i = 0; i < e->n_rings; i++) {
                (void) ring_refresh(e, e->rings[i]);
                e->rings[i]->next_due = engine_now(e);
                schedule_update(e, e->rings[i]);
        }
        pthread_rwlock_unlock(&e->lock);
        r = 0;
finish:
        free(by_id);
        store_key_list_free(keys);
        free(found);
        free(objs);
        if (r >= 0 && ret)
                *ret = rep;
        return r;
}
