/* SPDX-License-Identifier: MIT */
/* Applying lifecycle transitions: crash-safe key generation and one transaction per change. */
#include <openssl/rand.h>
#include <stdio.h>

#include "common/crypto-util.h"
#include "common/fileio.h"
#include "common/log.h"
#include "jose/jwk.h"
#include "jose/jws.h"
#include "rotation/engine-internal.h"

#define KEY_ID_BYTES 16

int key_id_to_bytes(const char *hex, uint8_t *out, size_t *ret_len) {
        size_t n = strlen(hex);
        if (n == 0 || n % 2 || n / 2 > HSM_ID_MAX)
                return -EINVAL;
        for (size_t i = 0; i < n / 2; i++) {
                unsigned v;
                if (sscanf(hex + 2 * i, "%2x", &v) != 1)
                        return -EINVAL;
                out[i] = (uint8_t) v;
        }
        *ret_len = n / 2;
        return 0;
}

void key_id_to_hex(const uint8_t *id, size_t n, char out[STORE_KEY_ID_MAX + 1]) {
        out[0] = 0;
        for (size_t i = 0; i < n && 2 * i + 2 <= STORE_KEY_ID_MAX; i++)
                snprintf(out + 2 * i, 3, "%02x", id[i]);
}

/* The public JWK of a token key with kid, alg and use: the row's jwk text and kid. */
static int public_jwk(HsmKey *k, KeydAlg alg, char **ret_jwk, char kid[STORE_KID_MAX + 1]) {
        _cleanup_pkey_ EVP_PKEY *pub = NULL;
        _cleanup_json_ json_t *jwk = NULL;
        char tp[JOSE_THUMBPRINT_LEN + 1];
        int r;

        r = hsm_key_public(k, &pub);
        if (r >= 0)
                r = jose_jwk_from_pkey(pub, alg, &jwk);
        if (r >= 0)
                r = jose_jwk_thumbprint(jwk, tp);
        if (r < 0)
                return r;
        if (json_object_set_new(jwk, "kid", json_string(tp)) < 0 ||
            json_object_set_new(jwk, "alg", json_string(keyd_alg_to_string(alg))) < 0 ||
            json_object_set_new(jwk, "use", json_string("sig")) < 0)
                return -ENOMEM;
        *ret_jwk = json_dumps(jwk, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (!*ret_jwk)
                return -ENOMEM;
        memcpy(kid, tp, sizeof tp);
        return 0;
}

/* A key that was never committed is gone from the token again: its keygen record is done with. Best effort: a record
 * left behind is pruned by the next reconcile. */
static void forget_pending(Engine *e, const char *key_id) {
        if (store_begin(e->store, STORE_COMMITTED) < 0)
                return;
        if (store_pending_key_delete(e->store, key_id) < 0 || store_commit(e->store) < 0)
                store_rollback(e->store);
}

int engine_generate_key(Engine *e, Ring *r, StoreKey **ret) {
        uint8_t id[KEY_ID_BYTES];
        char label[HSM_LABEL_MAX + 1];
        HsmKey *hk = NULL;
        StoreKey *k;
        int rc;

        k = calloc(1, sizeof *k);
        if (!k)
                return -ENOMEM;
        if (RAND_bytes(id, sizeof id) != 1) {
                free(k);
                return -EIO;
        }
        key_id_to_hex(id, sizeof id, k->id);
        /* The installation's id in the label: another installation sharing the token never takes it for its own. */
        snprintf(label, sizeof label, "keyd:%s:%s:%s", e->instance_id, r->name, k->id);
        k->keyring = strdup(r->name);
        k->alg = r->policy.alg;
        k->state = KEY_STATE_NEXT;
        k->created_at = k->publish_at = engine_now(e);
        if (!k->keyring) {
                store_key_free(k);
                return -ENOMEM;
        }
        if (engine_failpoint(e, "generate:before-token")) {
                store_key_free(k);
                return -ECANCELED;
        }
        /* The id is recorded first, then the token object comes, then the row: a crash in between leaves an orphan
         * object that reconcile destroys (it can prove the object is this installation's own by the record), never a
         * row without its key. */
        rc = store_begin(e->store, STORE_COMMITTED);
        if (rc >= 0)
                rc = store_pending_key_insert(e->store, k->id, r->name, k->created_at);
        if (rc >= 0)
                rc = store_commit(e->store);
        if (rc < 0) {
                store_rollback(e->store);
                store_key_free(k);
                return rc;
        }
        rc = hsm_generate(e->hsm, k->alg, r->policy.rsa_bits, id, sizeof id, label, &hk);
        if (rc >= 0 && engine_failpoint(e, "generate:after-token"))
                rc = -ECANCELED;
        if (rc >= 0)
                rc = public_jwk(hk, k->alg, &k->jwk, k->kid);
        if (rc >= 0) {
                unsigned long priv, pub;
                hsm_key_handles(hk, &priv, &pub);
                rc = engine_index_key(e, k->id, priv, pub);
        }
        hsm_key_free(hk);
        if (rc < 0) {
                if (rc != -ECANCELED) {
                        int d = hsm_destroy(e->hsm, id, sizeof id);
                        if (d >= 0 || d == -ENOENT)
                                forget_pending(e, k->id);
                }
                store_key_free(k);
                return rc;
        }
        *ret = k;
        return 0;
}

int engine_destroy_objects(Engine *e, const char *key_id) {
        KeyHandles *h = strmap_remove(e->handles, key_id);
        uint8_t id[HSM_ID_MAX];
        size_t n;
        int r;

        if (h && h->priv) {
                r = hsm_destroy_handles(e->hsm, h->priv, h->pub);
                free(h);
                if (r == 2)
                        return 0;
                /* a handle was stale, or the public object was never indexed: make sure by id */
        } else
                free(h);
        r = key_id_to_bytes(key_id, id, &n);
        if (r < 0)
                return r;
        r = hsm_destroy(e->hsm, id, n);
        if (r < 0 && r != -ENOENT) {
                log_debug("destroying token objects of key %s: %s", key_id, hsm_last_error());
                return r;
        }
        return 0;
}

static int set_state(Engine *e, Ring *r, StoreKey *k, KeyState s, const Change *c, const char *action,
                     json_t *detail) {
        int rc;
        k->state = s;
        rc = store_key_update(e->store, k);
        if (rc < 0) {
                json_decref(detail);
                return rc;
        }
        return engine_audit(e, c->actor, action, r->name, k->kid, "ok", detail);
}

static json_t *reason_detail(const Change *c) {
        return json_pack("{s:s, s:b}", "reason", c->reason ?: "scheduled", "forced", c->forced);
}

static int apply_rows(Engine *e, Ring *r, const LifecyclePlan *plan, const Change *c, StoreKey *fresh_active,
                      StoreKey *fresh_next, StoreKey **left) {
        usec_t now = engine_now(e);
        StoreKey *active = NULL, *next = NULL;
        size_t n_left = 0;
        int rc;

        for (size_t i = 0; i < r->n_keys; i++) {
                if (r->keys[i]->state == KEY_STATE_ACTIVE)
                        active = r->keys[i];
                else if (r->keys[i]->state == KEY_STATE_NEXT)
                        next = r->keys[i];
        }

        if (c->revoke) {
                StoreKey *k = NULL;
                for (size_t i = 0; i < r->n_keys; i++)
                        if (r->keys[i] == c->revoke)
                                k = r->keys[i];
                if (!k)
                        return -ENOENT;
                k->revoked_at = now;
                free(k->reason);
                k->reason = strdup(c->revoke_reason);
                if (!k->reason)
                        return -ENOMEM;
                rc = set_state(e, r, k, KEY_STATE_REVOKED, c, "key.revoke",
                               json_pack("{s:s}", "reason", c->revoke_reason));
                if (rc < 0)
                        return rc;
                left[n_left++] = k;
        }
        if (c->disable)
                for (size_t i = 0; i < r->n_keys; i++) {
                        StoreKey *k = r->keys[i];
                        if (k->state == KEY_STATE_REVOKED || k->state == KEY_STATE_EXPIRED)
                                continue;
                        k->revoked_at = now;
                        free(k->reason);
                        k->reason = strdup("cessation");
                        if (!k->reason)
                                return -ENOMEM;
                        rc = set_state(e, r, k, KEY_STATE_REVOKED, c, "key.revoke",
                                       json_pack("{s:s}", "reason", "cessation"));
                        if (rc < 0)
                                return rc;
                        left[n_left++] = k;
                }

        for (size_t i = 0; i < plan->n_expire; i++) {
                rc = set_state(e, r, r->keys[plan->expire[i]], KEY_STATE_EXPIRED, c, "key.expire", NULL);
                if (rc < 0)
                        return rc;
        }
        if (plan->replace_next && next) {
                next->expire_at = now;
                rc = set_state(e, r, next, KEY_STATE_EXPIRED, c, "key.expire",
                               json_pack("{s:s}", "reason", "policy changed its alg"));
                if (rc < 0)
                        return rc;
                left[n_left++] = next;
                next = NULL;
        }
        if (plan->rotate && active) {
                active->retire_at = now;
                active->expire_at = now + r->policy.token_ttl_max + r->policy.clock_skew;
                rc = set_state(e, r, active, KEY_STATE_RETIRED, c, "key.retire", reason_detail(c));
                if (rc < 0)
                        return rc;
                left[n_left++] = active;
        }
        if (plan->rotate || plan->promote) {
                StoreKey *k = next ?: fresh_active;
                if (!k)
                        return -ENOKEY;
                k->activate_at = now;
                if (k == fresh_active) {
                        k->state = KEY_STATE_ACTIVE;
                        rc = store_key_insert(e->store, k);
                        if (rc >= 0)
                                rc = store_pending_key_delete(e->store, k->id);
                        if (rc >= 0)
                                rc = engine_audit(e, c->actor, "key.generate", r->name, k->kid, "ok",
                                                  json_pack("{s:s}", "alg", keyd_alg_to_string(k->alg)));
                        if (rc >= 0)
                                rc = engine_audit(e, c->actor, "key.activate", r->name, k->kid, "ok",
                                                  reason_detail(c));
                } else
                        rc = set_state(e, r, k, KEY_STATE_ACTIVE, c, "key.activate", reason_detail(c));
                if (rc < 0)
                        return rc;
        }
        if (fresh_next) {
                rc = store_key_insert(e->store, fresh_next);
                if (rc >= 0)
                        rc = store_pending_key_delete(e->store, fresh_next->id);
                if (rc >= 0)
                        rc = engine_audit(e, c->actor, "key.generate", r->name, fresh_next->kid, "ok",
                                          json_pack("{s:s}", "alg", keyd_alg_to_string(fresh_next->alg)));
                if (rc < 0)
                        return rc;
        }
        if (c->disable) {
                StoreKeyring row = { .name = r->name, .kind = (char *) ring_kind_to_string(r->kind),
                                     .owner_uid = r->owner_uid, .disabled = true };
                _cleanup_json_ json_t *pj = NULL;
                _cleanup_free_ char *text = NULL;
                rc = policy_to_json(&r->policy, &pj);
                if (rc < 0 || !(text = json_dumps(pj, JSON_COMPACT | JSON_SORT_KEYS)))
                        return rc < 0 ? rc : -ENOMEM;
                row.policy = text;
                rc = store_keyring_update(e->store, &row);
                if (rc >= 0)
                        rc = engine_audit(e, c->actor, "keyring.disable", r->name, NULL, "ok", NULL);
                if (rc < 0)
                        return rc;
        }
        return (int) n_left;
}

int engine_apply_plan(Engine *e, Ring *r, const LifecyclePlan *plan, const Change *c) {
        StoreKey *fresh_active = NULL, *fresh_next = NULL;
        StoreKey **left = NULL;
        bool has_next = false;
        int rc, n_left = 0;

        for (size_t i = 0; i < r->n_keys; i++)
                has_next |= r->keys[i]->state == KEY_STATE_NEXT;
        if (plan->replace_next)
                has_next = false;

        /* Token first. */
        if ((plan->promote || plan->rotate) && !has_next) {
                rc = engine_generate_key(e, r, &fresh_active);
                if (rc < 0)
                        return rc;
        }
        if (plan->generate_next) {
                rc = engine_generate_key(e, r, &fresh_next);
                if (rc < 0)
                        goto fail_generated;
        }
        left = calloc(r->n_keys + 1, sizeof *left);
        if (!left) {
                rc = -ENOMEM;
                goto fail_generated;
        }
        if (engine_failpoint(e, "apply:before-commit")) {
                rc = -ECANCELED;
                goto crashed;
        }

        pthread_rwlock_wrlock(&e->lock);
        rc = store_begin(e->store, STORE_SYNCED);
        if (rc >= 0) {
                rc = apply_rows(e, r, plan, c, fresh_active, fresh_next, left);
                n_left = rc;
        }
        if (rc >= 0)
                rc = engine_commit(e);
        if (rc < 0) {
                engine_rollback(e);
                (void) ring_refresh(e, r); /* the rows in memory may have been changed: take the store's */
                pthread_rwlock_unlock(&e->lock);
                goto fail_generated;
        }
        if (engine_failpoint(e, "apply:after-commit")) {
                pthread_rwlock_unlock(&e->lock);
                rc = -ECANCELED;
                goto crashed;
        }
        if (c->revoke || c->disable)
                r->last_revocation = engine_now(e);
        if (c->disable)
                r->disabled = true;
        /* Keep the ids of the keys that left next/active: their rows are replaced by the refresh below. */
        char (*gone)[STORE_KEY_ID_MAX + 1] = calloc((size_t) n_left + 1, sizeof *gone);
        for (int i = 0; gone && i < n_left; i++)
                memcpy(gone[i], left[i]->id, sizeof gone[i]);
        rc = ring_refresh(e, r);
        pthread_rwlock_unlock(&e->lock);
        store_key_free(fresh_active);
        store_key_free(fresh_next);
        free(left);

        /* A failure here (or no memory for the list) leaves private objects that reconcile destroys at start. */
        for (int i = 0; gone && i < n_left; i++)
                if (!engine_failpoint(e, "apply:before-destroy"))
                        (void) engine_destroy_objects(e, gone[i]);
        free(gone);
        if (e->stopped)
                return -ECANCELED;
        (void) ring_publish_file(e, r);
        return rc;

fail_generated:
        if (fresh_active && engine_destroy_objects(e, fresh_active->id) >= 0)
                forget_pending(e, fresh_active->id);
        if (fresh_next && engine_destroy_objects(e, fresh_next->id) >= 0)
                forget_pending(e, fresh_next->id);
crashed:
        store_key_free(fresh_active);
        store_key_free(fresh_next);
        free(left);
        return rc;
}

static int plan_ring(Engine *e, Ring *r, usec_t now, LifecyclePlan *plan, size_t **ret_expire) {
        size_t *expire = calloc(r->n_keys + 1, sizeof *expire);
        if (!expire)
                return -ENOMEM;
        plan->expire = expire;
        int rc = lifecycle_plan(r->keys, r->n_keys, &r->policy, r->disabled, now, plan);
        if (rc < 0) {
                free(expire);
                return rc;
        }
        (void) e;
        *ret_expire = expire;
        return 0;
}

int engine_tick_ring(Engine *e, Ring *r, usec_t now) {
        LifecyclePlan plan;
        _cleanup_free_ size_t *expire = NULL;
        Change c = { .actor = engine_actor_self(), .reason = "scheduled" };
        int rc;

        rc = plan_ring(e, r, now, &plan, &expire);
        if (rc < 0) {
                ring_set_schedule(e, r, now + e->opts.retry_delay, "inconsistent keys in the store", true);
                return rc;
        }
        if (lifecycle_plan_empty(&plan)) {
                ring_set_schedule(e, r, plan.next_due, NULL, false);
                return 0;
        }
        if (plan.promote)
                c.reason = ring_key_in_state(r, KEY_STATE_RETIRED) || ring_key_in_state(r, KEY_STATE_REVOKED)
                                   ? "repair"
                                   : "initial";
        rc = engine_apply_plan(e, r, &plan, &c);
        if (rc < 0) {
                char why[160];
                if (rc == -ECANCELED)
                        return rc;
                snprintf(why, sizeof why, "transition failed: %s (%s)", strerror(-rc), hsm_last_error());
                ring_set_schedule(e, r, now + e->opts.retry_delay, why, true);
                return rc;
        }
        free(expire);
        expire = NULL;
        rc = plan_ring(e, r, now, &plan, &expire);
        /* A plan is idempotent: once applied, planning at the same instant finds nothing to do. */
        ring_set_schedule(e, r, rc >= 0 && lifecycle_plan_empty(&plan) ? plan.next_due : now + e->opts.retry_delay,
                          NULL, true);
        return 1;
}

int engine_tick(Engine *e, usec_t *ret_next_due) {
        usec_t now = engine_now(e);
        int changed = 0, rc;

        engine_prune_denied(e);
        while (e->n_heap > 0 && e->heap[0]->next_due <= now) {
                Ring *r = e->heap[0];
                rc = engine_tick_ring(e, r, now);
                if (rc == -ECANCELED)
                        return rc;
                if (rc > 0)
                        changed++;
                else if (rc < 0)
                        log_debug("keyring %s: %s", r->name, r->degraded ?: "transition failed");
        }
        if (ret_next_due)
                *ret_next_due = e->n_heap > 0 ? e->heap[0]->next_due : USEC_INFINITY;
        return changed;
}

int engine_rotate(Engine *e, const char *name, bool force, const char *reason, const Actor *a) {
        Ring *r = engine_get_ring(e, name);
        LifecyclePlan plan;
        _cleanup_free_ size_t *expire = NULL;
        const StoreKey *active, *next;
        usec_t now = engine_now(e);
        int rc;

        if (!r)
                return -ENOENT;
        if (r->disabled)
                return -ESHUTDOWN;
        active = ring_key_in_state(r, KEY_STATE_ACTIVE);
        next = ring_key_in_state(r, KEY_STATE_NEXT);
        if (!active || !next)
                return -ENOKEY;
        if (!force && next->publish_at + r->policy.prepublish > now)
                return -EBUSY;
        rc = plan_ring(e, r, now, &plan, &expire);
        if (rc < 0)
                return rc;
        plan.rotate = plan.generate_next = true;
        Change c = { .actor = a, .reason = reason ?: "manual", .forced = force };
        rc = engine_apply_plan(e, r, &plan, &c);
        if (rc < 0)
                return rc;
        ring_set_schedule(e, r, now, NULL, false);
        return 0;
}
