/* SPDX-License-Identifier: MIT */
/* A randomised run of the engine: thousands of steps (advance time, rotate, revoke, disable, lose an object, crash at
 * any failpoint and reconcile), with SPEC §3's invariants checked against the store and the token after each one.
 * KEYD_TEST_SEED replays a run; KEYD_TEST_STEPS changes its length. */
#include "tests/unit/engine-fixture.h"

#define MAX_RINGS 64

static unsigned seed, seed0;

/* Keys whose activation is exempt from the prepublish rule: first keys, forced rotations, promotions after a
 * revocation or a lost key (the standby may be brand new then; an emergency, audited as such). */
static char exempt[4096][STORE_KID_MAX + 1];
static size_t n_exempt;

static unsigned rnd(unsigned n) {
        return (unsigned) rand_r(&seed) % n;
}

static bool is_exempt(const char *kid) {
        for (size_t i = 0; i < n_exempt; i++)
                if (streq(exempt[i], kid))
                        return true;
        return false;
}

typedef struct Snapshot {
        char name[MAX_RINGS][KEYRING_NAME_MAX + 1];
        char kid[MAX_RINGS][STORE_KID_MAX + 1];
        size_t n;
} Snapshot;

static void remember_active(Snapshot *s) {
        s->n = 0;
        for (size_t i = 0; i < engine_n_rings(eng) && s->n < MAX_RINGS; i++, s->n++) {
                Ring *r = engine_ring_at(eng, i);
                const StoreKey *a = ring_key_in_state(r, KEY_STATE_ACTIVE);
                strcpy(s->name[s->n], ring_name(r));
                strcpy(s->kid[s->n], a ? a->kid : "");
        }
}

/* Every keyring whose active key changed in an emergency step (or that is new) has an exempt activation. */
static void exempt_active_changes(const Snapshot *before) {
        for (size_t i = 0; i < engine_n_rings(eng); i++) {
                Ring *r = engine_ring_at(eng, i);
                const StoreKey *a = ring_key_in_state(r, KEY_STATE_ACTIVE);
                const char *old = "";
                for (size_t j = 0; j < before->n; j++)
                        if (streq(before->name[j], ring_name(r)))
                                old = before->kid[j];
                if (a && !streq(a->kid, old) && n_exempt < ELEMENTSOF(exempt))
                        strcpy(exempt[n_exempt++], a->kid);
        }
}

static void check_invariants(int step) {
        StoreKey **keys = NULL;
        size_t n = 0, n_objs = 0;
        HsmObject *objs = NULL;

        cr_assert_eq(store_key_list(store, NULL, &keys, &n), 0);
        cr_assert_eq(hsm_list(hsm, "keyd:", &objs, &n_objs), 0);

        for (size_t r = 0; r < engine_n_rings(eng); r++) {
                Ring *ring = engine_ring_at(eng, r);
                int active = 0, next = 0;
                for (size_t i = 0; i < n; i++) {
                        if (!streq(keys[i]->keyring, ring_name(ring)))
                                continue;
                        active += keys[i]->state == KEY_STATE_ACTIVE;
                        next += keys[i]->state == KEY_STATE_NEXT;
                }
                if (ring_disabled(ring))
                        cr_assert(active == 0 && next == 0, "seed %u step %d: disabled %s has keys", seed0, step,
                                  ring_name(ring));
                else {
                        cr_assert_eq(active, 1, "seed %u step %d: %s has %d active keys", seed0, step,
                                     ring_name(ring), active);
                        cr_assert_eq(next, 1, "seed %u step %d: %s has %d next keys", seed0, step, ring_name(ring),
                                     next);
                }
                /* The JWKS holds exactly the active, next and retired keys. */
                size_t len;
                const char *body = ring_jwks(ring, fake_now, &len, NULL, NULL);
                cr_assert_not_null(body);
                json_t *doc = json_loadb(body, len, 0, NULL), *k;
                size_t j, published = 0;
                json_array_foreach(json_object_get(doc, "keys"), j, k) {
                        const char *kid = json_string_value(json_object_get(k, "kid"));
                        bool ok = false;
                        for (size_t i = 0; i < n; i++)
                                if (streq(keys[i]->kid, kid))
                                        ok = keys[i]->state == KEY_STATE_ACTIVE || keys[i]->state == KEY_STATE_NEXT ||
                                             keys[i]->state == KEY_STATE_RETIRED;
                        cr_assert(ok, "seed %u step %d: %s published but not active/next/retired", seed0, step, kid);
                        published++;
                }
                json_decref(doc);
                size_t expected = 0;
                for (size_t i = 0; i < n; i++)
                        if (streq(keys[i]->keyring, ring_name(ring)) &&
                            (keys[i]->state == KEY_STATE_ACTIVE || keys[i]->state == KEY_STATE_NEXT ||
                             keys[i]->state == KEY_STATE_RETIRED))
                                expected++;
                cr_assert_eq(published, expected, "seed %u step %d: JWKS of %s", seed0, step, ring_name(ring));
        }

        for (size_t i = 0; i < n; i++) {
                StoreKey *k = keys[i];
                /* A key activated on schedule was published at least prepublish before. */
                if (k->activate_at && !is_exempt(k->kid)) {
                        Ring *ring = engine_get_ring(eng, k->keyring);
                        cr_assert_geq(k->activate_at - k->publish_at, ring_policy(ring)->prepublish,
                                      "seed %u step %d: %s activated %llds after publication", seed0, step, k->kid,
                                      (long long) ((k->activate_at - k->publish_at) / USEC_PER_SEC));
                }
                /* A retired key leaves the JWKS only at expire_at (lost standbys and replaced ones never signed). */
                if (k->state == KEY_STATE_EXPIRED && k->retire_at)
                        cr_assert_leq(k->expire_at, fake_now, "seed %u step %d: %s expired early", seed0, step, k->kid);
                if (k->state == KEY_STATE_RETIRED)
                        cr_assert_gt(k->expire_at, fake_now, "seed %u step %d: %s overdue", seed0, step, k->kid);
                if (k->retire_at && !k->lost)
                        cr_assert_eq(k->expire_at - k->retire_at,
                                     ring_policy(engine_get_ring(eng, k->keyring))->token_ttl_max +
                                             ring_policy(engine_get_ring(eng, k->keyring))->clock_skew,
                                     "seed %u step %d: expire_at", seed0, step);
        }

        /* The token holds private objects only for next and active keys, and for each of them. */
        for (size_t o = 0; o < n_objs; o++) {
                if (!objs[o].is_private)
                        continue;
                char hex[STORE_KEY_ID_MAX + 1] = "";
                for (size_t b = 0; b < objs[o].id_len; b++)
                        snprintf(hex + 2 * b, 3, "%02x", objs[o].id[b]);
                bool live = false;
                for (size_t i = 0; i < n; i++)
                        if (streq(keys[i]->id, hex))
                                live = keys[i]->state == KEY_STATE_ACTIVE || keys[i]->state == KEY_STATE_NEXT;
                cr_assert(live, "seed %u step %d: private object %s belongs to no next/active key", seed0, step,
                          hex);
        }
        size_t live_keys = 0, privs = 0;
        for (size_t i = 0; i < n; i++)
                live_keys += keys[i]->state == KEY_STATE_ACTIVE || keys[i]->state == KEY_STATE_NEXT;
        for (size_t o = 0; o < n_objs; o++)
                privs += objs[o].is_private;
        cr_assert_eq(privs, live_keys, "seed %u step %d: %zu private objects for %zu live keys", seed0, step, privs,
                     live_keys);
        free(objs);
        store_key_list_free(keys);
}

static void create_ring(const char *name, KeydAlg alg) {
        create_with(name, test_policy_with(alg, S(10), S(4), S(5), S(5), S(1)));
}

/* keyd stops (or is killed: crash), starts again, reconciles and catches up; a keyring whose active key changed
 * on the way has an exempt activation. */
static void restart(bool crash, const Snapshot *before) {
        eng = crash ? engine_abandon(eng) : engine_free(eng);
        store = store_close(store);
        open_engine();
        cr_assert_eq(engine_reconcile(eng, NULL), 0);
        tick();
        exempt_active_changes(before);
}

static const char *const failpoints[] = { "generate:before-token", "generate:after-token", "apply:before-commit",
                                          "apply:after-commit", "apply:before-destroy" };

Test(engine_random, invariants_hold, .init = setup, .fini = teardown, .timeout = 900) {
        const char *e = getenv("KEYD_TEST_SEED");
        int steps = getenv("KEYD_TEST_STEPS") ? atoi(getenv("KEYD_TEST_STEPS")) : 2500;
        unsigned crashes = 0, revocations = 0, rotations = 0, lost = 0;
        int rings_made = 2;
        seed0 = seed = e ? (unsigned) strtoul(e, NULL, 10) : (unsigned) time(NULL);
        cr_log_info("seed %u (KEYD_TEST_SEED=%u replays this run)", seed0, seed0);

        cr_assert_eq(engine_reconcile(eng, NULL), 0);
        create_ring("r0", KEYD_ALG_ES256);
        create_ring("r1", KEYD_ALG_EDDSA);
        tick();
        Snapshot none = { .n = 0 };
        exempt_active_changes(&none);
        check_invariants(0);

        for (int step = 1; step <= steps; step++) {
                Snapshot snap, *before = &snap;
                unsigned op = rnd(100);
                Ring *ring = engine_ring_at(eng, rnd((unsigned) engine_n_rings(eng)));
                remember_active(before);

                if (op < 50) {
                        fake_now += (usec_t) rnd(4000) * 1000; /* up to 4 s */
                        tick();
                } else if (op < 60) {
                        int r = engine_rotate(eng, ring_name(ring), false, NULL, NULL);
                        cr_assert(r == 0 || r == -EBUSY || r == -ESHUTDOWN, "rotate: %s", strerror(-r));
                        rotations += r == 0;
                } else if (op < 63) {
                        int r = engine_rotate(eng, ring_name(ring), true, NULL, NULL);
                        cr_assert(r == 0 || r == -ESHUTDOWN);
                        exempt_active_changes(before);
                } else if (op < 71) {
                        size_t n;
                        StoreKey *const *keys = ring_keys(ring, &n);
                        if (n > 0) {
                                char kid[STORE_KID_MAX + 1];
                                strcpy(kid, keys[rnd((unsigned) n)]->kid);
                                int r = engine_revoke_key(eng, kid, "key_compromise", NULL);
                                cr_assert(r == 0 || r == -EALREADY, "revoke: %s", strerror(-r));
                                revocations += r == 0;
                        }
                        exempt_active_changes(before);
                } else if (op < 72 && rings_made < 40) {
                        /* Retire a keyring and make a new one in its place. */
                        if (!ring_disabled(ring))
                                cr_assert_eq(engine_disable_ring(eng, ring_name(ring), NULL), 0);
                        char name[16];
                        snprintf(name, sizeof name, "r%d", rings_made++);
                        create_ring(name, rnd(2) ? KEYD_ALG_ES256 : KEYD_ALG_EDDSA);
                        tick();
                        exempt_active_changes(before);
                } else if (op < 80) {
                        /* The token loses an object (SoftHSM2 does not fsync), then keyd restarts. */
                        const StoreKey *k = ring_key_in_state(ring, rnd(2) ? KEY_STATE_ACTIVE : KEY_STATE_NEXT);
                        if (k) {
                                engine_destroy_objects(eng, k->id);
                                lost++;
                        }
                        restart(false, before);
                } else {
                        /* kill -9 at a failpoint during a due transition, then restart and reconcile. */
                        fake_now += S(6);
                        fail_at = failpoints[rnd(ELEMENTSOF(failpoints))];
                        int r = engine_tick(eng, NULL);
                        cr_assert(r >= 0 || r == -ECANCELED);
                        fail_at = NULL;
                        if (r == -ECANCELED) {
                                crashes++;
                                restart(true, before);
                        }
                }
                check_invariants(step);
        }

        AuditVerifyResult res;
        cr_assert_eq(audit_verify(store, &res), 0, "%s", res.message);
        cr_log_info("%d steps: %u crashes, %u revocations, %u manual rotations, %u lost objects, %llu audit records",
                    steps, crashes, revocations, rotations, lost, (unsigned long long) res.head_seq);
        cr_assert_gt(crashes, 0, "the run crashed at least once");
        cr_assert_gt(revocations, 0);
}
