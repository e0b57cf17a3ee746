/* SPDX-License-Identifier: MIT */
/* The engine's locking contract (rotation/engine-internal.h) and what it keeps: no token operation under the write
 * lock, verification without the engine lock, signers that give up, the short JWKS max-age after a revocation kept
 * across a restart, and every audit event of a transaction told. */
#include "tests/helpers/test-shim.h"
#include "tests/unit/engine-fixture.h"

TestSuite(contract, .init = setup, .fini = teardown, .timeout = 240);

/* --- no token operation while the engine's write lock is held --- */

static CK_FUNCTION_LIST *real_f, spy_f;
static unsigned token_calls, sign_calls, under_write_lock;

/* Called before every spied token operation, on the thread that makes it: the event loop, in these tests. */
static void check_lock(const char *what) {
        token_calls++;
        if (!eng)
                return;
        if (pthread_rwlock_tryrdlock(&eng->lock) == 0) {
                pthread_rwlock_unlock(&eng->lock);
                return;
        }
        under_write_lock++;
        cr_log_error("%s ran under the engine's write lock", what);
}

static CK_RV spy_sign_init(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k) {
        check_lock("C_SignInit");
        sign_calls++;
        return real_f->C_SignInit(s, m, k);
}

static CK_RV spy_generate(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR pub, CK_ULONG n_pub,
                          CK_ATTRIBUTE_PTR priv, CK_ULONG n_priv, CK_OBJECT_HANDLE_PTR h_pub,
                          CK_OBJECT_HANDLE_PTR h_priv) {
        check_lock("C_GenerateKeyPair");
        return real_f->C_GenerateKeyPair(s, m, pub, n_pub, priv, n_priv, h_pub, h_priv);
}

static CK_RV spy_find_init(CK_SESSION_HANDLE s, CK_ATTRIBUTE_PTR t, CK_ULONG n) {
        check_lock("C_FindObjectsInit");
        return real_f->C_FindObjectsInit(s, t, n);
}

static CK_RV spy_get_attribute(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t, CK_ULONG n) {
        check_lock("C_GetAttributeValue");
        return real_f->C_GetAttributeValue(s, o, t, n);
}

static CK_RV spy_destroy(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o) {
        check_lock("C_DestroyObject");
        return real_f->C_DestroyObject(s, o);
}

static void spy_token(void) {
        real_f = hsm->f;
        spy_f = *real_f;
        spy_f.C_SignInit = spy_sign_init;
        spy_f.C_GenerateKeyPair = spy_generate;
        spy_f.C_FindObjectsInit = spy_find_init;
        spy_f.C_GetAttributeValue = spy_get_attribute;
        spy_f.C_DestroyObject = spy_destroy;
        hsm->f = &spy_f;
}

Test(contract, no_token_operation_under_the_write_lock) {
        ReconcileReport rep;
        spy_token();
        create("default", KEYD_ALG_ES256);
        tick();
        cr_assert_eq(engine_rotate(eng, "default", true, "test", NULL), 0);
        cr_assert_eq(engine_revoke_key(eng, in_state("default", KEY_STATE_ACTIVE)->kid, "key_compromise", NULL), 0);
        fake_now += S(100);
        tick();
        cr_assert_eq(engine_checkpoint(eng, NULL, NULL), 1);
        close_engine();
        open_engine();
        cr_assert_eq(engine_reconcile(eng, &rep), 0);
        tick();
        cr_assert_eq(engine_disable_ring(eng, "default", NULL), 0);
        hsm->f = real_f;
        cr_assert_gt(sign_calls, 3, "revocation lists and the checkpoint were signed (%u)", sign_calls);
        cr_assert_gt(token_calls, sign_calls);
        cr_assert_eq(under_write_lock, 0, "%u of %u token operations ran under the write lock", under_write_lock,
                     token_calls);
}

/* --- verification asks the denylist, never the engine's lock --- */

static void *ask_denied(void *arg) {
        return (void *) (intptr_t) engine_token_denied(eng, arg);
}

Test(contract, denylist_answers_while_the_engine_is_locked) {
        pthread_t t;
        struct timespec deadline;
        void *result = NULL;

        cr_assert_eq(engine_deny_token(eng, "jti-1", "default", fake_now + S(60), NULL), 0);
        pthread_rwlock_wrlock(&eng->lock); /* as the event loop does around a swap */
        cr_assert_eq(pthread_create(&t, NULL, ask_denied, (void *) "jti-1"), 0);
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += 10;
        int r = pthread_timedjoin_np(t, &result, &deadline);
        pthread_rwlock_unlock(&eng->lock);
        if (r != 0)
                pthread_join(t, &result);
        cr_assert_eq(r, 0, "a verifier waited for the engine's write lock");
        cr_assert_eq((intptr_t) result, 1, "the jti is denied");
        cr_assert_eq(engine_token_denied(eng, "jti-2"), 0);
}

/* --- a signer waits for the token a bounded time, and the event loop is never held up for ever --- */

static void *sign_once(void *arg) {
        uint8_t sig[HSM_SIG_MAX];
        (void) arg;
        return (void *) (intptr_t) engine_sign(eng, "default", "x", 1, sig, sizeof sig, NULL, NULL);
}

Test(contract, signer_gives_up_on_a_hung_token) {
        TestShim shim;
        pthread_t t;
        void *result = NULL;

        /* The same token, behind the shim. */
        close_engine();
        hsm_close(hsm);
        test_shim_use(&shim, &tok);
        hsm = test_token_open(&tok, 2);
        open_engine();
        create("default", KEYD_ALG_ES256);
        tick();
        cr_assert_gt((intptr_t) sign_once(NULL), 0);

        hsm->sign_timeout_ms = 300;
        test_shim_set_hang(&shim, true);
        /* A signer holds the read lock while it waits; a rotation needs the write lock. Both finish. */
        cr_assert_eq(pthread_create(&t, NULL, sign_once, NULL), 0);
        cr_assert(test_shim_wait_hung(&shim, 1, 10000), "the signature is stuck in the token");
        cr_assert_eq(engine_rotate(eng, "default", true, "test", NULL), 0);
        cr_assert_eq(pthread_join(t, &result), 0);
        cr_assert_eq((intptr_t) result, -ETIMEDOUT, "the signer gave up: %s", strerror(-(int) (intptr_t) result));
        test_shim_set_hang(&shim, false);
        cr_assert_gt((intptr_t) sign_once(NULL), 0, "the token signs again");
        test_shim_teardown(&shim);
}

/* --- the short max-age after a revocation is derived from the keys, so a restart keeps it --- */

Test(contract, revocation_max_age_survives_restart) {
        Policy p = test_policy(KEYD_ALG_ES256);
        p.rotation_period = S(86400);
        p.prepublish = S(3600);
        p.token_ttl_max = S(600);
        RingSpec spec = { .name = "default", .kind = RING_ISSUER, .owner_uid = -1, .policy = &p };
        unsigned max_age;

        cr_assert_eq(engine_create_ring(eng, &spec, NULL), 0);
        policy_done(&p);
        tick();
        ring_jwks(engine_get_ring(eng, "default"), fake_now, NULL, NULL, &max_age);
        cr_assert_eq(max_age, 1800, "prepublish/2 without a revocation");
        cr_assert_eq(engine_revoke_key(eng, in_state("default", KEY_STATE_NEXT)->kid, "superseded", NULL), 0);
        fake_now += S(30);
        close_engine();
        open_engine();
        ring_jwks(engine_get_ring(eng, "default"), fake_now, NULL, NULL, &max_age);
        cr_assert_eq(max_age, JWKS_REVOCATION_MAX_AGE, "still short after a restart");
        fake_now += JWKS_REVOCATION_WINDOW;
        ring_jwks(engine_get_ring(eng, "default"), fake_now, NULL, NULL, &max_age);
        cr_assert_eq(max_age, 1800, "and long again once the window has passed");
}

/* --- every audit record of a transaction reaches on_event, however many --- */

static unsigned events, revoke_events;

static void count_event(const EngineEvent *ev, void *u) {
        (void) u;
        events++;
        revoke_events += streq(ev->action, "key.revoke");
}

Test(contract, every_event_of_a_transaction_is_told) {
        size_t n;

        close_engine();
        extra_opts.on_event = count_event;
        open_engine();
        create("default", KEYD_ALG_ES256);
        tick();
        for (int i = 0; i < 20; i++)
                cr_assert_eq(engine_rotate(eng, "default", true, "test", NULL), 0);
        ring_keys(engine_get_ring(eng, "default"), &n);
        cr_assert_eq(n, 22, "20 retired keys, active and next");
        events = revoke_events = 0;
        cr_assert_eq(engine_disable_ring(eng, "default", NULL), 0);
        cr_assert_eq(revoke_events, 22, "one key.revoke per key: %u", revoke_events);
        cr_assert_eq(events, 23, "and keyring.disable: %u", events);
        cr_assert_eq(engine_events_dropped(eng), 0);
        extra_opts.on_event = NULL;
}

/* --- a keyring created while readers walk the keyrings never frees the array under them --- */

static void *create_ring_named(void *name) {
        create(name, KEYD_ALG_ES256);
        return NULL;
}

Test(contract, new_keyring_never_moves_the_array_under_a_reader) {
        unsigned moved = 0;

        for (int i = 0; i < 20; i++) {
                char name[32];
                pthread_t t;
                snprintf(name, sizeof name, "ring%02d", i);
                engine_read_lock(eng);
                Ring **seen = eng->rings;
                size_t n = engine_n_rings(eng);
                cr_assert_eq(pthread_create(&t, NULL, create_ring_named, name), 0);
                usleep(20000); /* the creator gets as far as the write lock */
                moved += eng->rings != seen || engine_n_rings(eng) != n;
                for (size_t j = 0; j < n; j++)
                        cr_assert_not_null(ring_name(seen[j]), "the array a reader holds is still there");
                engine_read_unlock(eng);
                cr_assert_eq(pthread_join(t, NULL), 0);
        }
        cr_assert_eq(engine_n_rings(eng), 20);
        cr_assert_eq(moved, 0, "the keyrings changed under a reader %u times", moved);
}

/* --- a repair that cannot be committed leaves the keyring unable to sign, unhealthy, and due --- */

static char lost_kid[STORE_KID_MAX + 1];

static void note_lost(const char *ring, const char *kid, void *u) {
        (void) ring, (void) u;
        snprintf(lost_kid, sizeof lost_kid, "%s", kid);
}

Test(contract, failed_repair_keeps_the_keyring_unhealthy) {
        uint8_t sig[HSM_SIG_MAX];
        sqlite3 *db = NULL;
        usec_t due;

        close_engine();
        extra_opts.on_key_lost = note_lost;
        open_engine();
        create("default", KEYD_ALG_ES256);
        tick();
        Ring *r = engine_get_ring(eng, "default");
        char active[STORE_KID_MAX + 1];
        snprintf(active, sizeof active, "%s", in_state("default", KEY_STATE_ACTIVE)->kid);
        cr_assert_eq(engine_destroy_objects(eng, in_state("default", KEY_STATE_ACTIVE)->id), 0);
        cr_assert_eq(engine_sign(eng, "default", "x", 1, sig, sizeof sig, NULL, NULL), -ENOKEY);
        cr_assert_str_eq(lost_kid, active, "the signer reported the lost key");

        /* Another writer holds the database: the repair cannot commit. */
        cr_assert_eq(sqlite3_open(db_path, &db), SQLITE_OK);
        cr_assert_eq(sqlite3_exec(db, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);
        cr_assert_lt(engine_repair_lost(eng, "default", active), 0);
        cr_assert_not(ring_can_sign(r), "a keyring whose active key is lost cannot sign");
        cr_assert_not(ring_healthy(r), "nor is it healthy");
        cr_assert_not_null(ring_degraded(r));
        cr_assert_lt(ring_next_due(r), USEC_INFINITY, "and it is due again");
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        sqlite3_close(db);

        fake_now = ring_next_due(r);
        cr_assert_eq(engine_tick(eng, &due), 1, "the next pass repairs it");
        cr_assert(ring_healthy(r));
        cr_assert_str_neq(in_state("default", KEY_STATE_ACTIVE)->kid, active);
        cr_assert_gt(engine_sign(eng, "default", "x", 1, sig, sizeof sig, NULL, NULL), 0);
        extra_opts.on_key_lost = NULL;
}
