/* SPDX-License-Identifier: MIT */
/* Lifecycle transitions, planned then applied: where rotation timing is decided (ring_plan(), from
 * rotation/lifecycle.c) and where a keyring's keys change. One transition is: new keys in the token first; then the
 * steps (revoke, expire, promote, disable) on copies of the keyring's keys; the new view built from them (token
 * operations, no lock); then one transaction with every row and audit record, committed under the engine's write lock
 * together with the swap of the view; last, the token objects of keys that left next/active are destroyed. */
#include <stdio.h>

#include "common/crypto-util.h"
#include "common/log.h"
#include "rotation/engine-internal.h"

/* What an audit record of a step says besides its action. */
typedef enum StepDetail {
        DETAIL_NONE,
        DETAIL_REASON,   /* {"reason": Step.reason} */
        DETAIL_SCHEDULE, /* {"reason": Change.reason, "forced": Change.forced} */
        DETAIL_ALG,      /* {"alg": the key's alg} */
} StepDetail;

/* One row change and its audit record. */
typedef struct Step {
        StoreKey *key; /* NULL: the keyring's own row (disable) */
        bool insert;   /* a new key: its row is inserted and its keygen record goes */
        const char *action;
        StepDetail detail;
        const char *reason;
        const char *comment; /* DETAIL_REASON: the operator's comment (key.revoke), or NULL */
} Step;

/* A transition in the making, on copies of the keyring's keys. */
typedef struct Transition {
        Ring *r;
        const Change *c;
        usec_t now;
        StoreKey **keys; /* the copies, then the fresh keys (room for two); NULL-terminated */
        size_t n_keys;
        Step *steps; /* room for two per key and three more */
        size_t n_steps;
        char (*gone)[STORE_KEY_ID_MAX + 1]; /* keys that left next/active: their objects go after the commit */
        size_t n_gone;
} Transition;

/* The one planner: the keyring's keys as the change leaves them (a key to revoke counts as revoked already, a keyring
 * to disable as disabled), planned at now by the lifecycle; with c->rotate, a rotation is planned regardless.
 * plan->expire must have room for the keyring's keys. */
static int ring_plan(const Ring *r, const Change *c, usec_t now, LifecyclePlan *plan) {
        _cleanup_free_ StoreKey **view = calloc(r->view->n_keys + 1, sizeof *view);
        StoreKey gone;
        int rc;

        if (!view)
                return -ENOMEM;
        for (size_t i = 0; i < r->view->n_keys; i++) {
                view[i] = r->view->keys[i];
                if (c->revoke_kid && streq(view[i]->kid, c->revoke_kid)) {
                        gone = *view[i];
                        gone.state = KEY_STATE_REVOKED;
                        view[i] = &gone;
                }
        }
        rc = lifecycle_plan(view, r->view->n_keys, &r->policy, r->disabled || c->disable, now, plan);
        if (rc >= 0 && c->rotate)
                plan->rotate = plan->generate_next = true;
        return rc;
}

static void add_step(Transition *t, StoreKey *k, bool insert, const char *action, StepDetail d, const char *reason) {
        t->steps[t->n_steps++] = (Step){ k, insert, action, d, reason };
}

static void add_gone(Transition *t, const StoreKey *k) {
        memcpy(t->gone[t->n_gone++], k->id, sizeof t->gone[0]);
}

static int revoke_one(Transition *t, StoreKey *k, const char *reason, const char *comment) {
        char *copy = strdup(reason);
        if (!copy)
                return -ENOMEM;
        free(k->reason);
        k->reason = copy;
        k->revoked_at = t->now;
        k->state = KEY_STATE_REVOKED;
        add_step(t, k, false, "key.revoke", DETAIL_REASON, k->reason);
        t->steps[t->n_steps - 1].comment = comment;
        add_gone(t, k);
        return 0;
}

/* Revoke: the key asked for, or with disable every key not revoked or expired yet. */
static int step_revoke(Transition *t) {
        const Change *c = t->c;
        int rc;

        if (c->revoke_kid) {
                StoreKey *k = NULL;
                for (size_t i = 0; i < t->n_keys; i++)
                        if (streq(t->keys[i]->kid, c->revoke_kid))
                                k = t->keys[i];
                if (!k)
                        return -ENOENT;
                rc = revoke_one(t, k, revoke_reason_to_string(c->revoke_reason), c->revoke_comment);
                if (rc < 0)
                        return rc;
        }
        for (size_t i = 0; c->disable && i < t->n_keys; i++) {
                StoreKey *k = t->keys[i];
                if (k->state == KEY_STATE_REVOKED || k->state == KEY_STATE_EXPIRED)
                        continue;
                rc = revoke_one(t, k, revoke_reason_to_string(REVOKE_CESSATION), NULL);
                if (rc < 0)
                        return rc;
        }
        return 0;
}

/* Expire: retired keys whose time has come, and a next key the policy no longer fits. */
static void step_expire(Transition *t, const LifecyclePlan *plan) {
        StoreKey *next = keys_in_state(t->keys, t->n_keys, KEY_STATE_NEXT);

        for (size_t i = 0; i < plan->n_expire; i++) {
                t->keys[plan->expire[i]]->state = KEY_STATE_EXPIRED;
                add_step(t, t->keys[plan->expire[i]], false, "key.expire", DETAIL_NONE, NULL);
        }
        if (plan->replace_next && next) {
                next->expire_at = t->now;
                next->state = KEY_STATE_EXPIRED;
                add_step(t, next, false, "key.expire", DETAIL_REASON, "policy changed its alg");
                add_gone(t, next);
        }
}

static void add_fresh(Transition *t, StoreKey *k) {
        t->keys[t->n_keys++] = k;
        add_step(t, k, true, "key.generate", DETAIL_ALG, NULL);
}

/* Promote: the active key retires (rotation) and next, or a fresh key, becomes active; a fresh next key comes. The
 * fresh keys move into the transition. */
static int step_promote(Transition *t, const LifecyclePlan *plan, StoreKey **fresh_active, StoreKey **fresh_next) {
        StoreKey *active = keys_in_state(t->keys, t->n_keys, KEY_STATE_ACTIVE),
                 *next = keys_in_state(t->keys, t->n_keys, KEY_STATE_NEXT);
        const Policy *p = &t->r->policy;

        if (plan->rotate && active) {
                active->retire_at = t->now;
                active->expire_at = t->now + p->token_ttl_max + p->clock_skew;
                active->state = KEY_STATE_RETIRED;
                add_step(t, active, false, "key.retire", DETAIL_SCHEDULE, NULL);
                add_gone(t, active);
        }
        if (plan->rotate || plan->promote) {
                StoreKey *k = next ?: *fresh_active;
                if (!k)
                        return -ENOKEY;
                if (k == *fresh_active)
                        add_fresh(t, TAKE_PTR(*fresh_active));
                k->activate_at = t->now;
                k->state = KEY_STATE_ACTIVE;
                add_step(t, k, false, "key.activate", DETAIL_SCHEDULE, NULL);
        }
        if (*fresh_next)
                add_fresh(t, TAKE_PTR(*fresh_next));
        return 0;
}

static int disable_row(Engine *e, const Ring *r) {
        _cleanup_json_ json_t *pj = NULL;
        _cleanup_free_ char *text = NULL;
        StoreKeyring row = { .name = r->name,
                             .kind = (char *) ring_kind_to_string(r->kind),
                             .owner_uid = r->owner_uid,
                             .disabled = true };
        int rc = policy_to_json(&r->policy, &pj);
        if (rc < 0)
                return rc;
        text = json_dumps(pj, JSON_COMPACT | JSON_SORT_KEYS);
        if (!text)
                return -ENOMEM;
        row.policy = text;
        return store_keyring_update(e->store, &row);
}

/* Every step's row and audit record, in the open transaction. */
static int write_rows(Engine *e, const Transition *t) {
        const Change *c = t->c;
        int rc = 0;

        for (size_t i = 0; rc >= 0 && i < t->n_steps; i++) {
                const Step *s = &t->steps[i];
                const char *kid = s->key ? s->key->kid : NULL;

                if (!s->key)
                        rc = disable_row(e, t->r);
                else if (s->insert) {
                        rc = store_key_insert(e->store, s->key);
                        if (rc >= 0)
                                rc = store_pending_key_delete(e->store, s->key->id);
                } else
                        rc = store_key_update(e->store, s->key);
                if (rc < 0)
                        break;
                switch (s->detail) {
                case DETAIL_NONE:
                        rc = engine_audit(e, c->actor, s->action, t->r->name, kid, "ok", NULL);
                        break;
                case DETAIL_REASON:
                        /* "s*": no comment member at all without one, so that such records read as before. */
                        rc = engine_audit(e, c->actor, s->action, t->r->name, kid, "ok", "{s:s, s:s*}", "reason",
                                          s->reason, "comment", s->comment);
                        break;
                case DETAIL_SCHEDULE:
                        rc = engine_audit(e, c->actor, s->action, t->r->name, kid, "ok", "{s:s, s:b}", "reason",
                                          c->reason ?: "scheduled", "forced", c->forced);
                        break;
                case DETAIL_ALG:
                        rc = engine_audit(e, c->actor, s->action, t->r->name, kid, "ok", "{s:s}", "alg",
                                          keyd_alg_to_string(s->key->alg));
                        break;
                }
        }
        return rc;
}

static void transition_done(Transition *t) {
        store_key_list_free(t->keys);
        free(t->steps);
        free(t->gone);
}

/* Steps on copies of r's keys; fresh keys are taken over. */
static int transition_prepare(Transition *t, Ring *r, const LifecyclePlan *plan, const Change *c, usec_t now,
                              StoreKey **fresh_active, StoreKey **fresh_next) {
        int rc;

        *t = (Transition){ .r = r, .c = c, .now = now };
        rc = ring_keys_copy(r, 2, &t->keys, &t->n_keys);
        if (rc < 0)
                return rc;
        t->steps = calloc(2 * t->n_keys + 5, sizeof *t->steps);
        t->gone = calloc(t->n_keys + 1, sizeof *t->gone);
        if (!t->steps || !t->gone)
                return -ENOMEM;
        rc = step_revoke(t);
        if (rc < 0)
                return rc;
        step_expire(t, plan);
        rc = step_promote(t, plan, fresh_active, fresh_next);
        if (rc < 0)
                return rc;
        if (c->disable)
                add_step(t, NULL, false, "keyring.disable", DETAIL_NONE, NULL);
        return 0;
}

/* A committed transition in the keyring's counters (/metrics): a key that became active other than the keyring's
 * first, and every key revoked. */
static void count_transition(Ring *r, const Transition *t) {
        for (size_t i = 0; i < t->n_steps; i++) {
                const char *action = t->steps[i].action;
                if (streq(action, "key.revoke"))
                        __atomic_add_fetch(&r->revocations, 1, __ATOMIC_RELAXED);
                else if (streq(action, "key.activate") && !streq_ptr(t->c->reason, "initial"))
                        __atomic_add_fetch(&r->rotations, 1, __ATOMIC_RELAXED);
        }
}

/* Apply a plan (and a change) to a keyring: see the top of this file. */
static int apply_plan(Engine *e, Ring *r, const LifecyclePlan *plan, const Change *c) {
        StoreKey *fresh_active = NULL, *fresh_next = NULL;
        char fresh[2][STORE_KEY_ID_MAX + 1] = { "", "" };
        Transition t = { 0 };
        RingView *v = NULL;
        usec_t now = engine_now(e);
        int rc = 0, signer_error;
        const StoreKey *next = ring_key_in_state(r, KEY_STATE_NEXT);
        /* A standby to promote: one the change neither revokes nor replaces. */
        bool has_next =
                next && !plan->replace_next && !c->disable && !(c->revoke_kid && streq(next->kid, c->revoke_kid));

        /* Token first. */
        if ((plan->promote || plan->rotate) && !has_next && (rc = engine_generate_key(e, r, &fresh_active)) >= 0)
                memcpy(fresh[0], fresh_active->id, sizeof fresh[0]);
        if (rc >= 0 && plan->generate_next && (rc = engine_generate_key(e, r, &fresh_next)) >= 0)
                memcpy(fresh[1], fresh_next->id, sizeof fresh[1]);
        if (rc >= 0)
                rc = transition_prepare(&t, r, plan, c, now, &fresh_active, &fresh_next);
        store_key_free(fresh_active); /* what the transition did not take */
        store_key_free(fresh_next);
        if (rc >= 0 && engine_failpoint(e, "apply:before-commit")) {
                transition_done(&t);
                return -ECANCELED;
        }
        /* The view of the keys as they will be, built before the transaction: it signs the revocation list. It takes
         * the keys; the steps point at them until it is freed. */
        if (rc >= 0)
                rc = ring_view_build(r, e->hsm, TAKE_PTR(t.keys), t.n_keys, now, !e->opts.read_only, &v, &signer_error);
        if (rc >= 0)
                rc = store_begin(e->store, STORE_SYNCED);
        if (rc >= 0 && (rc = write_rows(e, &t)) < 0)
                engine_rollback(e);
        if (rc >= 0)
                rc = engine_swap_view(e, r, TAKE_PTR(v), SWAP_COMMIT | (c->disable ? SWAP_DISABLE : 0));
        if (rc < 0) {
                /* Nothing was committed: the fresh keys leave the token again. */
                ring_view_free(v);
                transition_done(&t);
                for (size_t i = 0; i < ELEMENTSOF(fresh); i++)
                        if (fresh[i][0])
                                engine_discard_key(e, fresh[i]);
                return rc;
        }
        count_transition(r, &t);
        if (engine_failpoint(e, "apply:after-commit")) {
                transition_done(&t);
                return -ECANCELED;
        }
        /* A failure here leaves private objects that reconcile destroys at the next start. */
        for (size_t i = 0; i < t.n_gone; i++)
                if (!engine_failpoint(e, "apply:before-destroy"))
                        (void) engine_destroy_objects(e, t.gone[i]);
        transition_done(&t);
        if (e->stopped)
                return -ECANCELED;
        (void) ring_write_jwks_file(e, r);
        return 0;
}

int engine_plan(const Ring *r, usec_t now, LifecyclePlan *plan) {
        _cleanup_free_ size_t *expire = calloc(r->view->n_keys + 1, sizeof *expire);
        int rc;

        if (!expire)
                return -ENOMEM;
        plan->expire = expire;
        rc = ring_plan(r, &(Change){ .reason = "scheduled" }, now, plan);
        plan->expire = NULL;
        return rc;
}

int engine_plan_and_apply(Engine *e, Ring *r, const Change *c, usec_t now, LifecyclePlan *plan) {
        _cleanup_free_ size_t *expire = calloc(r->view->n_keys + 1, sizeof *expire);
        int rc;

        if (!expire)
                return -ENOMEM;
        plan->expire = expire;
        rc = ring_plan(r, c, now, plan);
        if (rc < 0 || (lifecycle_plan_empty(plan) && !c->revoke_kid && !c->disable)) {
                plan->expire = NULL;
                return rc;
        }
        /* A scheduled pass that promotes says why: a keyring's first key, or a repair. */
        Change promoted = { .actor = c->actor, .reason = "initial" };
        if (plan->promote && streq(c->reason, "scheduled")) {
                if (ring_key_in_state(r, KEY_STATE_RETIRED) || ring_key_in_state(r, KEY_STATE_REVOKED))
                        promoted.reason = "repair";
                c = &promoted;
        }
        rc = apply_plan(e, r, plan, c);
        plan->expire = NULL;
        return rc < 0 ? rc : 1;
}

/* Apply a change asked for now (rotate, revoke, disable) and make the keyring due for a lifecycle pass. */
static int apply_now(Engine *e, Ring *r, const Change *c) {
        usec_t now = engine_now(e);
        LifecyclePlan plan;
        int rc = engine_plan_and_apply(e, r, c, now, &plan);
        if (rc < 0)
                return rc;
        engine_schedule(e, r, now);
        return 0;
}

int engine_rotate(Engine *e, const char *name, bool force, const char *reason, const Actor *a) {
        Ring *r = engine_get_ring(e, name);
        const StoreKey *next;

        if (!r)
                return -ENOENT;
        if (r->disabled)
                return -ESHUTDOWN;
        next = ring_key_in_state(r, KEY_STATE_NEXT);
        if (!ring_key_in_state(r, KEY_STATE_ACTIVE) || !next)
                return -ENOKEY;
        if (!force && next->publish_at + r->policy.prepublish > engine_now(e))
                return -EBUSY;
        return apply_now(e, r, &(Change){ .actor = a, .reason = reason ?: "manual", .forced = force, .rotate = true });
}

int engine_revoke_key(Engine *e, const char *kid, const char *reason, const Actor *a) {
        return engine_revoke_key_comment(e, kid, reason, NULL, a);
}

int engine_revoke_key_comment(Engine *e, const char *kid, const char *reason, const char *comment, const Actor *a) {
        RevokeReason why = revoke_reason_from_string(reason);
        const StoreKey *k;
        Ring *r = NULL;
        int rc;

        if (why < 0 || (comment && strlen(comment) > 256))
                return -EINVAL;
        k = kid ? engine_find_key(e, kid, &r) : NULL;
        if (!k)
                return -ENOENT;
        if (k->state == KEY_STATE_REVOKED)
                return -EALREADY;
        /* Revoking the active key promotes next at once and generates a standby; revoking next generates a new one. */
        rc = apply_now(e, r,
                       &(Change){ .actor = a,
                                  .reason = "revocation",
                                  .revoke_kid = kid,
                                  .revoke_reason = why,
                                  .revoke_comment = comment });
        if (rc >= 0)
                log_debug("keyring %s: key %s revoked (%s)", r->name, kid, reason);
        return rc;
}

int engine_disable_ring(Engine *e, const char *name, const Actor *a) {
        Ring *r = engine_get_ring(e, name);
        if (!r)
                return -ENOENT;
        if (r->disabled)
                return -EALREADY;
        int rc = apply_now(e, r, &(Change){ .actor = a, .reason = "disable", .disable = true });
        if (rc >= 0)
                log_debug("keyring %s: disabled, every key revoked", name);
        return rc;
}
