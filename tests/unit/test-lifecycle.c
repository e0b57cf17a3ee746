/* SPDX-License-Identifier: MIT */
/* The lifecycle as a pure function: every transition at its edge. */
#include <criterion/criterion.h>

#include "rotation/lifecycle.h"

#define S(x) ((usec_t) (x) * USEC_PER_SEC)

static Policy pol;
static StoreKey k[6];
static StoreKey *keys[6];
static size_t expire[6];

static void setup(void) {
        policy_init(&pol, RING_ISSUER);
        pol.rotation_period = S(100);
        pol.prepublish = S(20);
        pol.token_ttl_max = S(30);
        pol.clock_skew = S(5);
        memset(k, 0, sizeof k);
        for (int i = 0; i < 6; i++) {
                keys[i] = &k[i];
                k[i].alg = KEYD_ALG_ES256;
                k[i].state = KEY_STATE_EXPIRED;
        }
}

TestSuite(lifecycle, .init = setup);

/* k[0] active since activate_at, k[1] its standby published at publish_at. */
static void active_and_next(usec_t activate_at, usec_t publish_at) {
        k[0].state = KEY_STATE_ACTIVE;
        k[0].activate_at = activate_at;
        k[1].state = KEY_STATE_NEXT;
        k[1].publish_at = publish_at;
}

static LifecyclePlan plan(size_t n, usec_t now, bool disabled) {
        LifecyclePlan p = { .expire = expire };
        cr_assert_eq(lifecycle_plan(keys, n, &pol, disabled, now, &p), 0);
        return p;
}

Test(lifecycle, empty_keyring_bootstraps) {
        LifecyclePlan p = plan(0, S(1000), false);
        cr_assert(p.promote && p.generate_next && !p.rotate);
        cr_assert_eq(p.next_due, S(1000), "due now");
}

Test(lifecycle, steady_state_waits_for_rotation) {
        active_and_next(S(1000), S(1000));
        LifecyclePlan p = plan(2, S(1050), false);
        cr_assert(lifecycle_plan_empty(&p));
        cr_assert_eq(p.next_due, S(1100), "rotation-period after activation");
        p = plan(2, S(1100) - 1, false);
        cr_assert(lifecycle_plan_empty(&p), "one microsecond early is not due");
        p = plan(2, S(1100), false);
        cr_assert(p.rotate && p.generate_next && !p.promote, "due at the instant");
}

Test(lifecycle, rotation_waits_for_prepublish) {
        /* The standby was made late (after a revocation): rotation waits until it has been published prepublish. */
        active_and_next(S(1000), S(1095));
        LifecyclePlan p = plan(2, S(1100), false);
        cr_assert(lifecycle_plan_empty(&p));
        cr_assert_eq(p.next_due, S(1115));
        p = plan(2, S(1115), false);
        cr_assert(p.rotate);
}

Test(lifecycle, retired_expires_at_its_time) {
        active_and_next(S(1000), S(1000));
        k[2].state = KEY_STATE_RETIRED;
        k[2].expire_at = S(1035);
        LifecyclePlan p = plan(3, S(1034), false);
        cr_assert(lifecycle_plan_empty(&p));
        cr_assert_eq(p.next_due, S(1035), "the earliest of expiry and rotation");
        p = plan(3, S(1035), false);
        cr_assert_eq(p.n_expire, 1);
        cr_assert_eq(p.expire[0], 2);
        cr_assert(!p.rotate && !p.promote && !p.generate_next);
}

Test(lifecycle, missing_active_promotes) {
        k[0].state = KEY_STATE_NEXT;
        k[0].publish_at = S(1000);
        k[1].state = KEY_STATE_REVOKED;
        LifecyclePlan p = plan(2, S(1001), false);
        cr_assert(p.promote && p.generate_next && !p.rotate);
}

Test(lifecycle, missing_next_generates) {
        k[0].state = KEY_STATE_ACTIVE;
        k[0].activate_at = S(1000);
        LifecyclePlan p = plan(1, S(1001), false);
        cr_assert(p.generate_next && !p.promote && !p.rotate);
}

Test(lifecycle, alg_change_replaces_unused_next) {
        active_and_next(S(1000), S(1000));
        pol.alg = KEYD_ALG_EDDSA;
        LifecyclePlan p = plan(2, S(1001), false);
        cr_assert(p.replace_next && p.generate_next && !p.rotate);
}

Test(lifecycle, disabled_does_nothing) {
        k[0].state = KEY_STATE_REVOKED;
        LifecyclePlan p = plan(1, S(5000), true);
        cr_assert(lifecycle_plan_empty(&p));
        cr_assert_eq(p.next_due, USEC_INFINITY);
}

Test(lifecycle, two_active_is_refused) {
        k[0].state = KEY_STATE_ACTIVE;
        k[1].state = KEY_STATE_ACTIVE;
        LifecyclePlan p = { .expire = expire };
        cr_assert_eq(lifecycle_plan(keys, 2, &pol, false, S(1), &p), -EUCLEAN);
        k[1].state = KEY_STATE_NEXT;
        k[2].state = KEY_STATE_NEXT;
        cr_assert_eq(lifecycle_plan(keys, 3, &pol, false, S(1), &p), -EUCLEAN);
}

Test(lifecycle, plan_is_idempotent_after_applying) {
        /* Apply a rotation by hand, then plan again at the same instant: nothing to do. */
        active_and_next(S(1000), S(1000));
        usec_t now = S(1100);
        LifecyclePlan p = plan(2, now, false);
        cr_assert(p.rotate);
        k[0].state = KEY_STATE_RETIRED;
        k[0].retire_at = now;
        k[0].expire_at = now + pol.token_ttl_max + pol.clock_skew;
        k[1].state = KEY_STATE_ACTIVE;
        k[1].activate_at = now;
        k[2].state = KEY_STATE_NEXT;
        k[2].publish_at = now;
        p = plan(3, now, false);
        cr_assert(lifecycle_plan_empty(&p));
        cr_assert_eq(p.next_due, now + S(35), "the retired key's expiry comes first");
}
