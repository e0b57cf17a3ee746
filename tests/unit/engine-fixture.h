/* SPDX-License-Identifier: MIT */
#pragma once

/* The engine tests' fixture: a SoftHSM2 token and a database under mkdtemp for each test, an engine on a clock the
 * test moves, failpoints, and keyring helpers. The rotation engine against a real SoftHSM2 token and a real SQLite
 * file. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>

#include "common/crypto-util.h"
#include "common/hex.h"
#include "jose/jwk.h"
#include "jose/jws.h"
#include "rotation/audit.h"
#include "pkcs11/hsm-internal.h"
#include "rotation/engine-internal.h"
#include "tests/helpers/test-token.h"
#include "tests/helpers/test-util.h"

#define S(x) ((usec_t) (x) * USEC_PER_SEC)

static TestToken tok;
static Hsm *hsm;
static Store *store;
static Engine *eng;
static char *db_path;
static usec_t fake_now = S(1700000000);
static const char *fail_at; /* failpoint name to fire at, or NULL */
static int fail_skip;       /* how many passes of it to let through first */

static inline usec_t fake_clock(void *u) {
        (void) u;
        return fake_now;
}

static inline bool failpoint(const char *where, void *u) {
        (void) u;
        if (!fail_at || strcmp(fail_at, where) != 0)
                return false;
        if (fail_skip-- > 0)
                return false;
        fail_at = NULL;
        return true;
}

static unsigned max_destroy; /* EngineOptions.reconcile_max_destroy; 0: the default */
static EngineOptions extra_opts; /* more options for open_engine() (on_event, ...) */

static inline void open_engine(void) {
        EngineOptions o = extra_opts;
        o.clock = fake_clock;
        o.failpoint = failpoint;
        o.reconcile_max_destroy = max_destroy;
        cr_assert_eq(store_open(db_path, 0, &store), 0);
        cr_assert_eq(engine_new(hsm, store, &o, &eng), 0);
        cr_assert_eq(engine_load(eng), 0);
}

static inline void close_engine(void) {
        eng = engine_free(eng);
        store = store_close(store);
}

static inline void setup(void) {
        test_token_setup(&tok);
        hsm = test_token_open(&tok, 2);
        cr_assert(asprintf(&db_path, "%s/keyd.db", tok.dir) >= 0);
        open_engine();
}

static inline void teardown(void) {
        close_engine();
        hsm_close(hsm);
        free(db_path);
        test_token_teardown(&tok);
}

/* An issuer keyring's policy for alg with these durations, and no issuer. */
static inline Policy test_policy_with(KeydAlg alg, usec_t rotation, usec_t prepublish, usec_t ttl_max,
                                      usec_t default_ttl, usec_t skew) {
        Policy p;
        policy_init(&p, RING_ISSUER);
        p.alg = alg;
        p.rotation_period = rotation;
        p.prepublish = prepublish;
        p.token_ttl_max = ttl_max;
        p.default_ttl = default_ttl;
        p.clock_skew = skew;
        return p;
}

static inline Policy test_policy(KeydAlg alg) {
        Policy p = test_policy_with(alg, S(100), S(20), S(30), S(10), S(5));
        p.issuer = strdup("https://issuer.test");
        return p;
}

/* Create an issuer keyring with the policy p, which is done with after. */
static inline void create_with(const char *name, Policy p) {
        RingSpec spec = { .name = name, .kind = RING_ISSUER, .owner_uid = -1, .policy = &p };
        cr_assert_eq(engine_create_ring(eng, &spec, NULL), 0);
        policy_done(&p);
}

static inline void create(const char *name, KeydAlg alg) {
        create_with(name, test_policy(alg));
}

static inline int tick(void) {
        usec_t due;
        int r = engine_tick(eng, &due);
        cr_assert_geq(r, 0, "tick: %s", strerror(-r));
        return r;
}

static inline const StoreKey *in_state(const char *ring, KeyState s) {
        return ring_key_in_state(engine_get_ring(eng, ring), s);
}

