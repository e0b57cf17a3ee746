/* SPDX-License-Identifier: MIT */
/* The schedule's pass: every keyring that is due is planned and applied (rotation/transition.c), then told when it is
 * next due and whether it is degraded; and the same pass at once for a keyring whose signer found its key gone
 * (engine_repair_lost(), with rotation/repair.c). */
#include <stdio.h>

#include "common/crypto-util.h"
#include "common/log.h"
#include "rotation/engine-internal.h"

/* The one writer of Ring.degraded: when the keyring is next due, and why it is degraded (NULL: healthy). */
static void set_health(Engine *e, Ring *r, usec_t due, const char *why) {
        char *copy = why ? strdup(why) : NULL;
        pthread_rwlock_wrlock(&e->lock);
        schedule_set(&e->schedule, &r->due, due);
        free(r->degraded);
        r->degraded = why && !copy ? (char *) NULL : copy;
        pthread_rwlock_unlock(&e->lock);
        if (why && !copy)
                log_error("keyring %s: degraded (%s), out of memory to say so", r->name, why);
}

/* A keyring whose active key is not open in the token cannot sign, whatever its plan says. */
static const char *view_problem(const Ring *r) {
        if (r->disabled || !ring_key_in_state(r, KEY_STATE_ACTIVE))
                return NULL;
        if (r->view->signer_lost)
                return "the active key was lost from the token: repairing";
        if (!r->view->signer)
                return "the active key cannot be opened in the token";
        return NULL;
}

int engine_tick_ring(Engine *e, Ring *r, usec_t now) {
        Change c = { .actor = actor_self(), .reason = "scheduled" };
        LifecyclePlan plan;
        char why[160];
        int rc;

        if ((r->search_lost || r->view->signer_lost) && (rc = engine_demote_lost_keys(e, r)) < 0) {
                snprintf(why, sizeof why, "the active key was lost from the token and its repair failed: %s",
                         strerror(-rc));
                set_health(e, r, now + e->opts.retry_delay, why);
                return rc;
        }
        if (view_problem(r))
                (void) engine_reload_ring(e, r); /* the token may be back */
        rc = engine_plan_and_apply(e, r, &c, now, &plan);
        if (rc == -ECANCELED)
                return rc;
        if (rc < 0) {
                if (rc == -ENOSPC || rc == -ENOLCK) /* only the store gives these: not the token's fault */
                        snprintf(why, sizeof why, "transition failed: %s", store_fault_reason(rc));
                else
                        snprintf(why, sizeof why, "transition failed: %s (%s)", strerror(-rc), hsm_last_error());
                set_health(e, r, now + e->opts.retry_delay, rc == -EUCLEAN ? "inconsistent keys in the store" : why);
                return rc;
        }
        if (rc > 0) {
                /* A plan is idempotent: once applied, planning at the same instant finds nothing to do (else: retry
                 * later rather than apply twice in one pass). */
                if (engine_plan(r, now, &plan) < 0 || !lifecycle_plan_empty(&plan))
                        plan.next_due = now + e->opts.retry_delay;
        }
        /* A jwks-file that could not be written is written again on every pass (a transition just applied wrote
         * it already), and the pass comes back within the retry delay while it fails: an operator who fixes the
         * directory sees the keyring healthy again without waiting for its next rotation. */
        if (r->jwks_file_failed && rc == 0)
                (void) ring_write_jwks_file(e, r);
        usec_t due = plan.next_due;
        if (view_problem(r) || r->jwks_file_failed)
                due = MIN(due, now + e->opts.retry_delay);
        set_health(e, r, due, view_problem(r));
        return rc;
}

int engine_tick(Engine *e, usec_t *ret_next_due) {
        usec_t now = engine_now(e);
        int changed = 0, rc;

        engine_prune_denied(e);
        for (ScheduleItem *it; (it = schedule_first(&e->schedule)) && it->due <= now;) {
                Ring *r = (Ring *) ((char *) it - offsetof(Ring, due));
                rc = engine_tick_ring(e, r, now);
                if (rc == -ECANCELED)
                        return rc;
                if (rc > 0)
                        changed++;
                else if (rc < 0)
                        log_debug("keyring %s: %s", r->name, r->degraded ?: "transition failed");
        }
        if (ret_next_due)
                *ret_next_due = schedule_next_due(&e->schedule);
        return changed;
}

int engine_repair_lost(Engine *e, const char *name, const char *kid) {
        Ring *r = engine_get_ring(e, name);
        const StoreKey *active = r ? ring_key_in_state(r, KEY_STATE_ACTIVE) : NULL;
        char ids[2][STORE_KEY_ID_MAX + 1];
        int rc;

        if (!r || r->disabled)
                return 0;
        __atomic_store_n(&r->repair_pending, false, __ATOMIC_RELEASE);
        if (!active || !kid || !streq(active->kid, kid))
                return 0; /* already repaired, or rotated meanwhile */
        if (engine_find_lost(e, r, ids) == 0)
                return 0;
        /* Until the repair is done, a keyring whose active key is gone cannot sign (and /healthz says so); the pass
         * below (or, if it fails, the next one) demotes the lost keys and repairs the keyring by its policy. */
        if (ids[0][0]) {
                engine_write_lock(e);
                r->view->signer_lost = true;
                engine_write_unlock(e);
        }
        r->search_lost = true;
        rc = engine_tick_ring(e, r, engine_now(e));
        return rc < 0 ? rc : 1;
}
