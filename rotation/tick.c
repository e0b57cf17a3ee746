/* SPDX-License-Identifier: MIT */
/* The schedule's pass: every keyring that is due is planned and applied (rotation/transition.c), then told when it is
 * next due and whether it is degraded. */
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
        set_health(e, r, view_problem(r) ? MIN(plan.next_due, now + e->opts.retry_delay) : plan.next_due,
                   view_problem(r));
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
