/* SPDX-License-Identifier: MIT */
#include "common/macro.h"
#include "common/string-table.h"
#include "rotation/lifecycle.h"

static const char *const revoke_reason_table[_REVOKE_REASON_MAX] = {
        [REVOKE_KEY_COMPROMISE] = "key_compromise",
        [REVOKE_SUPERSEDED] = "superseded",
        [REVOKE_CESSATION] = "cessation",
        [REVOKE_UNSPECIFIED] = "unspecified",
};

DEFINE_STRING_TABLE_LOOKUP(revoke_reason, RevokeReason);

StoreKey *keys_in_state(StoreKey *const *keys, size_t n, KeyState s) {
        for (size_t i = 0; i < n; i++)
                if (keys[i]->state == s)
                        return keys[i];
        return NULL;
}

usec_t lifecycle_rotation_due(const StoreKey *active, const StoreKey *next, const Policy *p) {
        usec_t a = active->activate_at + p->rotation_period, b = next->publish_at + p->prepublish;
        return MAX(a, b);
}

int lifecycle_plan(StoreKey *const *keys, size_t n, const Policy *p, bool disabled, usec_t now, LifecyclePlan *plan) {
        const StoreKey *active = NULL, *next = NULL;
        usec_t due = USEC_INFINITY;

        plan->promote = plan->rotate = plan->generate_next = plan->replace_next = false;
        plan->n_expire = 0;

        for (size_t i = 0; i < n; i++) {
                const StoreKey *k = keys[i];
                switch (k->state) {
                case KEY_STATE_ACTIVE:
                        if (active)
                                return -EUCLEAN;
                        active = k;
                        break;
                case KEY_STATE_NEXT:
                        if (next)
                                return -EUCLEAN;
                        next = k;
                        break;
                case KEY_STATE_RETIRED:
                        if (k->expire_at <= now)
                                plan->expire[plan->n_expire++] = i;
                        else
                                due = MIN(due, k->expire_at);
                        break;
                default:
                        break;
                }
        }

        if (disabled) {
                /* A disabled keyring has no key left to move (all revoked), and never gets a new one. */
                plan->next_due = plan->n_expire > 0 ? now : due;
                return 0;
        }

        if (next && next->alg != p->alg) {
                plan->replace_next = true;
                next = NULL;
        }
        if (!active) {
                plan->promote = true;
                plan->generate_next = true;
        } else if (!next)
                plan->generate_next = true;
        else {
                usec_t rot = lifecycle_rotation_due(active, next, p);
                if (rot <= now) {
                        plan->rotate = true;
                        plan->generate_next = true;
                } else
                        due = MIN(due, rot);
        }

        /* Once this plan is applied the keyring has both keys again, and the next rotation is at least one second
         * away; so "due" is when the retired keys expire or the current pair rotates. */
        plan->next_due = lifecycle_plan_empty(plan) ? due : now;
        return 0;
}
