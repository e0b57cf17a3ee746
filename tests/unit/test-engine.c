/* SPDX-License-Identifier: MIT */
#include <sys/stat.h>

#include "tests/unit/engine-fixture.h"

TestSuite(engine, .init = setup, .fini = teardown, .timeout = 240);

static size_t count_private_objects(void) {
        HsmObject *o = NULL;
        size_t n = 0, priv = 0;
        cr_assert_eq(hsm_list(hsm, "keyd:", &o, &n), 0);
        for (size_t i = 0; i < n; i++)
                priv += o[i].is_private;
        free(o);
        return priv;
}

/* The JWKS kids in order. */
static json_t *jwks_kids(const char *ring) {
        size_t len;
        const char *etag;
        unsigned max_age;
        const char *body = ring_jwks(engine_get_ring(eng, ring), fake_now, &len, &etag, &max_age);
        cr_assert_not_null(body);
        json_t *doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL), *kids = json_array(), *k;
        size_t i;
        cr_assert_not_null(doc);
        json_array_foreach(json_object_get(doc, "keys"), i, k) {
                cr_assert_str_eq(json_string_value(json_object_get(k, "use")), "sig");
                json_array_append(kids, json_object_get(k, "kid"));
        }
        json_decref(doc);
        return kids;
}

static bool jwks_has(const char *ring, const char *kid) {
        json_t *kids = jwks_kids(ring), *k;
        size_t i;
        bool found = false;
        json_array_foreach(kids, i, k) found |= streq(json_string_value(k), kid);
        json_decref(kids);
        return found;
}

/* A signature by the keyring's active key verifies with the JWK the JWKS publishes for it. */
static void sign_and_verify(const char *ring) {
        uint8_t sig[HSM_SIG_MAX];
        char kid[STORE_KID_MAX + 1];
        KeydAlg alg;
        int n = engine_sign(eng, ring, "payload", 7, sig, sizeof sig, kid, &alg);
        cr_assert_gt(n, 0, "sign: %s", strerror(-n));
        const StoreKey *k = engine_find_key(eng, kid, NULL);
        cr_assert_not_null(k);
        cr_assert_eq(k->state, KEY_STATE_ACTIVE);
        json_t *jwk = json_loads(k->jwk, 0, NULL);
        EVP_PKEY *pkey = NULL;
        cr_assert_eq(jose_jwk_to_pkey(jwk, &pkey), 0);
        cr_assert_eq(jose_verify_signature(alg, pkey, "payload", 7, sig, (size_t) n), JOSE_OK);
        EVP_PKEY_free(pkey);
        json_decref(jwk);
}

/* A copy of the kid of the key in state s of the keyring "default": the row it is read from changes as the key moves
 * on. */
static void kid_of(KeyState s, char kid[static STORE_KID_MAX + 1]) {
        const StoreKey *k = in_state("default", s);
        cr_assert_not_null(k, "no %s key in default", key_state_to_string(s));
        strcpy(kid, k->kid);
}

/* The keyring "default" (ES256) after its first tick; the kids of its active and next keys copied to active and
 * next (STORE_KID_MAX + 1 bytes each), where not NULL. */
static void start_default(char *active, char *next) {
        create("default", KEYD_ALG_ES256);
        tick();
        if (active)
                kid_of(KEY_STATE_ACTIVE, active);
        if (next)
                kid_of(KEY_STATE_NEXT, next);
}

Test(engine, bootstrap_rotate_expire) {
        create("default", KEYD_ALG_ES256);
        cr_assert_eq(tick(), 1);
        const StoreKey *a = in_state("default", KEY_STATE_ACTIVE), *n = in_state("default", KEY_STATE_NEXT);
        cr_assert(a && n);
        char a_kid[STORE_KID_MAX + 1], n_kid[STORE_KID_MAX + 1];
        strcpy(a_kid, a->kid);
        strcpy(n_kid, n->kid);
        cr_assert_eq(count_private_objects(), 2);
        json_t *kids = jwks_kids("default");
        cr_assert_eq(json_array_size(kids), 2);
        cr_assert_str_eq(json_string_value(json_array_get(kids, 0)), a_kid, "active first");
        cr_assert_str_eq(json_string_value(json_array_get(kids, 1)), n_kid, "next second");
        json_decref(kids);
        sign_and_verify("default");

        cr_assert_eq(tick(), 0, "idempotent: nothing more to do at the same instant");
        fake_now += S(99);
        cr_assert_eq(tick(), 0, "not yet");
        fake_now += S(1);
        cr_assert_eq(tick(), 1, "rotation at rotation-period");
        usec_t rotated_at = fake_now;
        a = in_state("default", KEY_STATE_ACTIVE);
        cr_assert_str_eq(a->kid, n_kid, "next became active");
        cr_assert_geq(a->activate_at - a->publish_at, S(20), "published at least prepublish before activation");
        const StoreKey *ret = in_state("default", KEY_STATE_RETIRED);
        cr_assert_str_eq(ret->kid, a_kid);
        cr_assert_eq(ret->retire_at, rotated_at);
        cr_assert_eq(ret->expire_at, rotated_at + S(30) + S(5), "expire_at = retire_at + token-ttl-max + skew");
        cr_assert_eq(count_private_objects(), 2, "the retired key's private object is destroyed");
        kids = jwks_kids("default");
        cr_assert_eq(json_array_size(kids), 3);
        cr_assert_str_eq(json_string_value(json_array_get(kids, 2)), a_kid, "retired last");
        json_decref(kids);
        sign_and_verify("default");

        fake_now = rotated_at + S(35) - 1;
        tick();
        cr_assert(jwks_has("default", a_kid), "a retired key stays published until expire_at");
        fake_now = rotated_at + S(35);
        cr_assert_eq(tick(), 1);
        cr_assert(!jwks_has("default", a_kid), "gone from the JWKS at expire_at");
        StoreKey *row = NULL;
        cr_assert_eq(store_key_get_by_kid(store, a_kid, &row), 0, "kept in the store for audit");
        cr_assert_eq(row->state, KEY_STATE_EXPIRED);
        store_key_free(row);
}

Test(engine, manual_rotation_respects_prepublish) {
        create("default", KEYD_ALG_EDDSA);
        tick();
        fake_now += S(10);
        cr_assert_eq(engine_rotate(eng, "default", false, NULL, NULL), -EBUSY, "next published 10s < 20s ago");
        fake_now += S(10);
        char old_kid[STORE_KID_MAX + 1];
        kid_of(KEY_STATE_ACTIVE, old_kid);
        cr_assert_eq(engine_rotate(eng, "default", false, "operator", NULL), 0);
        cr_assert_str_neq(in_state("default", KEY_STATE_ACTIVE)->kid, old_kid);
        cr_assert_eq(engine_rotate(eng, "default", false, NULL, NULL), -EBUSY, "the new next is brand new");
        cr_assert_eq(engine_rotate(eng, "default", true, "emergency", NULL), 0, "force overrides");
        cr_assert_eq(engine_rotate(eng, "nope", true, NULL, NULL), -ENOENT);
        sign_and_verify("default");
}

Test(engine, revoke_active_promotes_next) {
        char a[STORE_KID_MAX + 1], n[STORE_KID_MAX + 1];
        start_default(a, n);
        cr_assert_eq(engine_revoke_key(eng, a, "bogus", NULL), -EINVAL);
        cr_assert_eq(engine_revoke_key(eng, "no-such-kid", "key_compromise", NULL), -ENOENT);
        cr_assert_eq(engine_revoke_key(eng, a, "key_compromise", NULL), 0);
        cr_assert_str_eq(in_state("default", KEY_STATE_ACTIVE)->kid, n, "the standby is promoted at once");
        cr_assert_not_null(in_state("default", KEY_STATE_NEXT), "a new standby is made");
        cr_assert(!jwks_has("default", a), "revoked: out of the JWKS before the call returns");
        cr_assert_eq(count_private_objects(), 2, "the revoked key's private object is destroyed");
        cr_assert_eq(engine_revoke_key(eng, a, "key_compromise", NULL), -EALREADY);
        unsigned max_age;
        ring_jwks(engine_get_ring(eng, "default"), fake_now, NULL, NULL, &max_age);
        cr_assert_leq(max_age, 60, "a short max-age after a revocation");
        ring_jwks(engine_get_ring(eng, "default"), fake_now + S(601), NULL, NULL, &max_age);
        cr_assert_eq(max_age, 10, "prepublish/2 again ten minutes later");

        /* The revocation list names the key and is signed by the active key. */
        const char *rl = ring_revocations(engine_get_ring(eng, "default"));
        cr_assert_not_null(rl);
        JoseJws *jws = NULL;
        cr_assert_eq(jose_jws_parse(rl, strlen(rl), &jws), JOSE_OK);
        cr_assert_str_eq(jws->kid, n);
        json_t *claims = NULL;
        cr_assert_eq(jose_jws_claims(jws, &claims), JOSE_OK);
        json_t *first = json_array_get(json_object_get(claims, "revoked"), 0);
        cr_assert_str_eq(json_string_value(json_object_get(first, "kid")), a);
        cr_assert_str_eq(json_string_value(json_object_get(first, "reason")), "key_compromise");
        json_t *jwk = json_loads(in_state("default", KEY_STATE_ACTIVE)->jwk, 0, NULL);
        EVP_PKEY *pk = NULL;
        cr_assert_eq(jose_jwk_to_pkey(jwk, &pk), 0);
        cr_assert_eq(jose_jws_verify(jws, pk, KEYD_ALG_ES256), JOSE_OK);
        EVP_PKEY_free(pk);
        json_decref(jwk);
        json_decref(claims);
        jose_jws_free(jws);
        sign_and_verify("default");
}

Test(engine, revoke_next_and_retired) {
        char n[STORE_KID_MAX + 1];
        start_default(NULL, n);
        cr_assert_eq(engine_revoke_key(eng, n, "superseded", NULL), 0);
        cr_assert_str_neq(in_state("default", KEY_STATE_NEXT)->kid, n, "a new standby replaces it");
        cr_assert(!jwks_has("default", n));
        fake_now += S(200);
        tick();
        char rk[STORE_KID_MAX + 1];
        kid_of(KEY_STATE_RETIRED, rk);
        cr_assert_eq(engine_revoke_key(eng, rk, "key_compromise", NULL), 0);
        cr_assert(!jwks_has("default", rk));
        cr_assert_not_null(in_state("default", KEY_STATE_ACTIVE));
}

Test(engine, disable_refuses_signing) {
        create("agentish", KEYD_ALG_ES256);
        tick();
        cr_assert_eq(engine_disable_ring(eng, "agentish", NULL), 0);
        uint8_t sig[HSM_SIG_MAX];
        cr_assert_eq(engine_sign(eng, "agentish", "x", 1, sig, sizeof sig, NULL, NULL), -ESHUTDOWN);
        size_t n;
        StoreKey *const *keys = ring_keys(engine_get_ring(eng, "agentish"), &n);
        for (size_t i = 0; i < n; i++)
                cr_assert_eq(keys[i]->state, KEY_STATE_REVOKED);
        cr_assert_eq(count_private_objects(), 0);
        fake_now += S(1000);
        cr_assert_eq(tick(), 0, "a disabled keyring gets no new key");
        cr_assert_eq(engine_disable_ring(eng, "agentish", NULL), -EALREADY);
        /* It stays disabled across a restart. */
        close_engine();
        open_engine();
        cr_assert(ring_disabled(engine_get_ring(eng, "agentish")));
        cr_assert_eq(engine_sign(eng, "agentish", "x", 1, sig, sizeof sig, NULL, NULL), -ESHUTDOWN);
}

Test(engine, deny_token) {
        create("default", KEYD_ALG_ES256);
        cr_assert_eq(engine_deny_token(eng, "jti-1", "default", fake_now + S(60), NULL), 0);
        cr_assert_eq(engine_token_denied(eng, "jti-1"), 1);
        cr_assert_eq(engine_token_denied(eng, "jti-2"), 0);
        cr_assert_eq(engine_deny_token(eng, "jti-1", "default", fake_now + S(60), NULL), -EEXIST);
        cr_assert_eq(engine_deny_token(eng, "old", "default", fake_now - 1, NULL), -EINVAL, "already expired");
        cr_assert_eq(engine_deny_token(eng, "", "default", fake_now + S(1), NULL), -EINVAL);
        fake_now += S(61);
        cr_assert_eq(engine_token_denied(eng, "jti-1"), 0, "a denial ends with the token's exp");
}

Test(engine, policy_alg_change_replaces_next) {
        start_default(NULL, NULL);
        Policy p = test_policy(KEYD_ALG_EDDSA);
        RingSpec spec = { .name = "default", .kind = RING_ISSUER, .owner_uid = -1, .policy = &p };
        cr_assert_eq(engine_apply_config(eng, &spec, 1), 0);
        tick();
        cr_assert_eq(in_state("default", KEY_STATE_ACTIVE)->alg, KEYD_ALG_ES256, "the active key signs on");
        cr_assert_eq(in_state("default", KEY_STATE_NEXT)->alg, KEYD_ALG_EDDSA, "the standby follows the policy");
        fake_now += S(100);
        tick();
        cr_assert_eq(in_state("default", KEY_STATE_ACTIVE)->alg, KEYD_ALG_EDDSA);
        sign_and_verify("default");
        policy_done(&p);
}

Test(engine, jwks_file_written) {
        char *path;
        cr_assert(asprintf(&path, "%s/jwks.json", tok.dir) >= 0);
        Policy p = test_policy(KEYD_ALG_ES256);
        p.jwks_file = strdup(path);
        create_with("default", p);
        tick();
        size_t len, flen;
        const char *body = ring_jwks(engine_get_ring(eng, "default"), fake_now, &len, NULL, NULL);
        char *file = test_read_file(path, &flen);
        cr_assert_eq(flen, len);
        cr_assert_eq(memcmp(file, body, len), 0, "the file holds exactly the served bytes");
        free(file);
        free(path);
}

static int jwks_events_failed, jwks_events_written;

static void count_jwks_event(const EngineEvent *ev, void *userdata) {
        (void) userdata;
        if (streq(ev->action, "jwks-file.failed")) {
                jwks_events_failed++;
                cr_assert(ev->detail && strstr(ev->detail, "/missing/jwks.json"), "the path: %s", ev->detail);
                cr_assert_str_eq(ev->keyring, "default");
        } else if (streq(ev->action, "jwks-file.written"))
                jwks_events_written++;
}

/* A jwks-file that cannot be written: the keyring is degraded (saying the path), the failures are counted and told
 * once, the keyring is due again within the retry delay (30 s), and the pass that finds the directory there writes
 * the file and clears the mark, without a key change. */
Test(engine, jwks_file_failure_degrades_until_written) {
        char *dir, *path;
        RingCounters rc;
        usec_t due;

        close_engine();
        extra_opts.on_event = count_jwks_event;
        open_engine();
        cr_assert(asprintf(&dir, "%s/missing", tok.dir) >= 0);
        cr_assert(asprintf(&path, "%s/jwks.json", dir) >= 0);
        Policy p = test_policy(KEYD_ALG_ES256);
        p.jwks_file = strdup(path);
        create_with("default", p);
        tick();
        Ring *r = engine_get_ring(eng, "default");
        cr_assert(ring_degraded(r) && strstr(ring_degraded(r), path), "%s", ring_degraded(r) ?: "(healthy)");
        cr_assert(!ring_healthy(r), "degraded, though it can sign");
        cr_assert(ring_can_sign(r));
        ring_counters(r, &rc);
        cr_assert_geq(rc.jwks_file_failures, 1);
        cr_assert_eq(jwks_events_failed, 1, "told once");
        cr_assert_eq(engine_tick(eng, &due), 0);
        cr_assert_leq(due, fake_now + S(30), "due again within the retry delay, not at the next rotation (100 s)");

        fake_now += S(30);
        tick();
        ring_counters(r, &rc);
        cr_assert_geq(rc.jwks_file_failures, 2, "written again on the pass");
        cr_assert_eq(jwks_events_failed, 1, "the same error is not told again");

        cr_assert_eq(mkdir(dir, 0700), 0);
        fake_now += S(30);
        tick();
        cr_assert_null(ring_degraded(r), "%s", ring_degraded(r));
        cr_assert(ring_healthy(r));
        cr_assert_eq(jwks_events_written, 1);
        size_t len, flen;
        const char *body = ring_jwks(r, fake_now, &len, NULL, NULL);
        char *file = test_read_file(path, &flen);
        cr_assert(flen == len && memcmp(file, body, len) == 0, "the file holds the served bytes");
        cr_assert_eq(engine_tick(eng, &due), 0);
        cr_assert_gt(due, fake_now + S(30), "no retries once it is written");
        extra_opts.on_event = NULL;
        free(file), free(path), free(dir);
}

Test(engine, etag_changes_with_keys) {
        start_default(NULL, NULL);
        const char *etag;
        ring_jwks(engine_get_ring(eng, "default"), fake_now, NULL, &etag, NULL);
        char before[JWKS_ETAG_MAX];
        strcpy(before, etag);
        cr_assert_eq(etag[0], '"');
        tick();
        ring_jwks(engine_get_ring(eng, "default"), fake_now, NULL, &etag, NULL);
        cr_assert_str_eq(etag, before, "no change, same ETag");
        fake_now += S(100);
        tick();
        ring_jwks(engine_get_ring(eng, "default"), fake_now, NULL, &etag, NULL);
        cr_assert_str_neq(etag, before, "rotation changes the ETag");
}

/* --- reconciliation --- */

static void restart(ReconcileReport *rep) {
        close_engine();
        open_engine();
        cr_assert_eq(engine_reconcile(eng, rep), 0);
        tick();
}

static bool audited(const char *action) {
        StoreAudit **recs = NULL;
        size_t n;
        bool found = false;
        cr_assert_eq(store_audit_list(store, 0, 10000, &recs, &n), 0);
        for (size_t i = 0; i < n; i++)
                found |= streq(recs[i]->action, action);
        store_audit_list_free(recs);
        return found;
}

/* An object made the way engine_generate_key() makes one: id recorded first (if record), then the object. */
static void make_object(uint8_t tag, const char *instance, bool record) {
        const uint8_t id[] = { 0xde, 0xad, tag };
        char hex[7], label[HSM_LABEL_MAX + 1];
        snprintf(hex, sizeof hex, "dead%02x", tag);
        snprintf(label, sizeof label, "keyd:%s:default:%s", instance, hex);
        if (record) {
                cr_assert_eq(store_begin(store, STORE_COMMITTED), 0);
                cr_assert_eq(store_pending_key_insert(store, hex, "default", fake_now), 0);
                cr_assert_eq(store_commit(store), 0);
        }
        cr_assert_eq(hsm_generate(hsm, KEYD_ALG_ES256, 0, id, sizeof id, label, NULL), 0);
}

static char *instance(void) {
        static char id[STORE_INSTANCE_ID_MAX + 1];
        cr_assert_eq(store_instance_id(store, id), 0);
        return id;
}

Test(engine, reconcile_orphan_destroyed) {
        start_default(NULL, NULL);
        /* A crash between keygen and the row's commit: the id was recorded before the object was made. */
        make_object(1, instance(), true);
        cr_assert_eq(count_private_objects(), 3);
        ReconcileReport rep;
        restart(&rep);
        cr_assert_eq(rep.orphans_destroyed, 1);
        cr_assert_eq(count_private_objects(), 2);
        cr_assert(audited("reconcile.orphan_destroyed"), "the orphan's destruction is audited");
        char **pending = NULL;
        size_t n;
        cr_assert_eq(store_pending_key_list(store, &pending, &n), 0);
        cr_assert_eq(n, 0, "the record of the keygen is done with");
        store_pending_key_list_free(pending);
}

/* A second installation on the same token (another database), or this database restored from a backup: objects
 * keyd cannot prove are its own are never destroyed. Before, reconcile destroyed every "keyd:" object without a row. */
Test(engine, reconcile_keeps_what_it_cannot_prove) {
        start_default(NULL, NULL);
        make_object(1, "0123456789abcdef", false); /* another installation's key */
        make_object(2, instance(), false);         /* ours by label, but the database never recorded its keygen */
        const uint8_t old_id[] = { 0xbe, 0xef };   /* the label keyd wrote before installations had an id */
        cr_assert_eq(hsm_generate(hsm, KEYD_ALG_ES256, 0, old_id, sizeof old_id, "keyd:default:beef", NULL), 0);
        cr_assert_eq(count_private_objects(), 5);

        ReconcileReport plan;
        cr_assert_eq(engine_reconcile_plan(eng, &plan), 0);
        cr_assert_eq(plan.n_items, 3);
        cr_assert_eq(plan.foreign, 1);
        cr_assert_eq(plan.unproven, 2);
        reconcile_report_done(&plan);
        cr_assert_eq(count_private_objects(), 5, "a plan changes nothing");

        ReconcileReport rep;
        restart(&rep);
        cr_assert_eq(rep.orphans_destroyed, 0);
        cr_assert_eq(rep.foreign, 1);
        cr_assert_eq(rep.unproven, 2);
        cr_assert_eq(count_private_objects(), 5, "nothing that is not provably keyd's own is destroyed");
        cr_assert(audited("reconcile.unproven"));
        sign_and_verify("default");
}

/* More destructions than a crash leaves behind: reconcile destroys none, audits why, and keyd goes on. */
Test(engine, reconcile_refuses_mass_destruction) {
        start_default(NULL, NULL);
        for (uint8_t i = 0; i < 9; i++)
                make_object(i, instance(), true);
        cr_assert_eq(count_private_objects(), 11);
        ReconcileReport rep;
        restart(&rep);
        cr_assert(rep.refused);
        cr_assert_eq(rep.max_destroy, 8);
        cr_assert_eq(rep.orphans_destroyed, 0);
        cr_assert_eq(count_private_objects(), 11, "nothing destroyed past the limit");
        cr_assert(audited("reconcile.refused"));
        char **pending = NULL;
        size_t n;
        cr_assert_eq(store_pending_key_list(store, &pending, &n), 0);
        cr_assert_eq(n, 9, "the records stay, so that a reconcile with a higher limit can still prove them");
        store_pending_key_list_free(pending);
        sign_and_verify("default");
}

/* A token that lost more keys than a power cut would (the wrong token, a token restored from an old copy): nothing is
 * demoted, the keyring stays degraded (never ok) until an operator looks. */
Test(engine, reconcile_refuses_mass_loss) {
        char a[STORE_KID_MAX + 1];
        start_default(a, NULL);
        (void) engine_destroy_objects(eng, in_state("default", KEY_STATE_ACTIVE)->id);
        (void) engine_destroy_objects(eng, in_state("default", KEY_STATE_NEXT)->id);
        max_destroy = 1;
        ReconcileReport rep;
        restart(&rep);
        cr_assert(rep.refused);
        cr_assert_eq(rep.keys_lost, 0, "none demoted");
        cr_assert_str_eq(in_state("default", KEY_STATE_ACTIVE)->kid, a, "the store is left as it was");
        Ring *r = engine_get_ring(eng, "default");
        cr_assert(!ring_can_sign(r));
        cr_assert(audited("reconcile.refused"));
}

Test(engine, reconcile_lost_active_and_next) {
        char a[STORE_KID_MAX + 1], n[STORE_KID_MAX + 1];
        start_default(a, n);
        /* SoftHSM2 loses the active key's object (no fsync before a power cut). */
        engine_destroy_objects(eng, in_state("default", KEY_STATE_ACTIVE)->id);
        ReconcileReport rep;
        restart(&rep);
        cr_assert_eq(rep.keys_lost, 1);
        cr_assert_str_eq(in_state("default", KEY_STATE_ACTIVE)->kid, n, "next promoted");
        const StoreKey *r = in_state("default", KEY_STATE_RETIRED);
        cr_assert_str_eq(r->kid, a, "the lost active key stays published as retired: its tokens still verify");
        cr_assert(r->lost);
        cr_assert(jwks_has("default", a));
        sign_and_verify("default");

        /* Now the standby is lost. */
        char n2[STORE_KID_MAX + 1];
        kid_of(KEY_STATE_NEXT, n2);
        engine_destroy_objects(eng, in_state("default", KEY_STATE_NEXT)->id);
        restart(&rep);
        cr_assert_eq(rep.keys_lost, 1);
        cr_assert_str_neq(in_state("default", KEY_STATE_NEXT)->kid, n2, "a new standby is generated");
        cr_assert(!jwks_has("default", n2), "a lost standby never signed: it leaves the JWKS");
}

Test(engine, reconcile_destroys_leftover_private) {
        start_default(NULL, NULL);
        fake_now += S(100);
        fail_at = "apply:before-destroy";
        usec_t due;
        cr_assert_eq(engine_tick(eng, &due), -ECANCELED);
        cr_assert_eq(count_private_objects(), 3, "crashed before destroying the retired key's object");
        eng = engine_abandon(eng);
        store = store_close(store);
        open_engine();
        ReconcileReport rep;
        cr_assert_eq(engine_reconcile(eng, &rep), 0);
        cr_assert_eq(rep.privates_destroyed, 1);
        cr_assert_eq(count_private_objects(), 2);
}

Test(engine, reconcile_refuses_unprotected_key) {
        start_default(NULL, NULL);
        /* Replace the standby's object with an extractable key under the same id and label. */
        const StoreKey *n = in_state("default", KEY_STATE_NEXT);
        char kid[STORE_KID_MAX + 1];
        strcpy(kid, n->kid);
        uint8_t id[HSM_ID_MAX];
        size_t id_len;
        cr_assert_eq(hex_decode(n->id, id, sizeof id, &id_len), 0);
        engine_destroy_objects(eng, n->id);
        CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
        CK_MECHANISM mech = { CKM_EC_KEY_PAIR_GEN, NULL, 0 };
        static const CK_BYTE p256[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };
        CK_ATTRIBUTE pub[] = { { CKA_TOKEN, &yes, 1 }, { CKA_EC_PARAMS, (void *) p256, sizeof p256 },
                               { CKA_ID, id, id_len } };
        CK_ATTRIBUTE priv[] = { { CKA_TOKEN, &yes, 1 }, { CKA_PRIVATE, &yes, 1 }, { CKA_SENSITIVE, &no, 1 },
                                { CKA_EXTRACTABLE, &yes, 1 }, { CKA_SIGN, &yes, 1 }, { CKA_ID, id, id_len },
                                { CKA_LABEL, (void *) "keyd:default:x", 14 } };
        CK_OBJECT_HANDLE hp, hk;
        cr_assert_eq(hsm->f->C_GenerateKeyPair(hsm->anchor, &mech, pub, 3, priv, 7, &hp, &hk), CKR_OK);
        ReconcileReport rep;
        restart(&rep);
        cr_assert_eq(rep.keys_refused, 1);
        StoreKey *row = NULL;
        cr_assert_eq(store_key_get_by_kid(store, kid, &row), 0);
        cr_assert_eq(row->state, KEY_STATE_REVOKED, "an unprotected key is never used");
        store_key_free(row);
        cr_assert_str_neq(in_state("default", KEY_STATE_NEXT)->kid, kid);
}

static const char *const failpoints[] = { "generate:before-token", "generate:after-token", "apply:before-commit",
                                          "apply:after-commit", "apply:before-destroy" };

Test(engine, crash_at_every_point_recovers) {
        start_default(NULL, NULL);
        for (size_t i = 0; i < ELEMENTSOF(failpoints); i++) {
                fake_now += S(100);
                fail_at = failpoints[i];
                fail_skip = 0;
                usec_t due;
                cr_assert_eq(engine_tick(eng, &due), -ECANCELED, "failpoint %s fired", failpoints[i]);
                eng = engine_abandon(eng);
                store = store_close(store);
                open_engine();
                ReconcileReport rep;
                cr_assert_eq(engine_reconcile(eng, &rep), 0);
                tick();
                cr_assert_not_null(in_state("default", KEY_STATE_ACTIVE), "after a crash at %s", failpoints[i]);
                cr_assert_not_null(in_state("default", KEY_STATE_NEXT));
                cr_assert_eq(count_private_objects(), 2, "after a crash at %s", failpoints[i]);
                sign_and_verify("default");
        }
        AuditVerifyResult res;
        cr_assert_eq(audit_verify(store, &res), 0, "%s", res.message);
}

/* --- audit --- */

Test(engine, audit_chain_and_checkpoint) {
        start_default(NULL, NULL);
        for (int i = 0; i < 3; i++) {
                fake_now += S(100);
                tick();
        }
        uint64_t cp_seq;
        char cp_hash[STORE_HASH_HEX + 1];
        cr_assert_eq(engine_checkpoint(eng, &cp_seq, cp_hash), 1);
        cr_assert_eq(engine_checkpoint(eng, NULL, NULL), 0, "nothing new: no second checkpoint");
        AuditVerifyResult res;
        cr_assert_eq(audit_verify(store, &res), 0, "%s", res.message);
        cr_assert_gt(res.checkpoint_seq, 0);
        uint64_t cp = res.checkpoint_seq;

        /* Flip one byte of one stored record. */
        close_engine();
        sqlite3 *db;
        cr_assert_eq(sqlite3_open(db_path, &db), SQLITE_OK);
        cr_assert_eq(sqlite3_exec(db, "UPDATE audit SET action = action || 'x' WHERE seq = 3", NULL, NULL, NULL),
                     SQLITE_OK);
        sqlite3_close(db);
        open_engine();
        cr_assert_eq(audit_verify(store, &res), -EBADMSG);
        cr_assert_eq(res.bad_seq, 3, "names record 3: %s", res.message);
        close_engine();

        /* Restore it, then cut the tail including the checkpointed record. */
        cr_assert_eq(sqlite3_open(db_path, &db), SQLITE_OK);
        cr_assert_eq(sqlite3_exec(db, "UPDATE audit SET action = substr(action, 1, length(action) - 1) WHERE seq = 3", NULL, NULL, NULL),
                     SQLITE_OK);
        /* The checkpoint row stays: SQLite's raw connection does not enforce its foreign key. */
        char sql[128];
        snprintf(sql, sizeof sql, "DELETE FROM audit WHERE seq >= %llu;", (unsigned long long) cp - 1);
        cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(db);
        open_engine();
        cr_assert_eq(audit_verify(store, &res), -EBADMSG, "truncation must be caught");
        cr_assert(strstr(res.message, "removed") != NULL, "%s", res.message);
}

Test(engine, audit_group_commit) {
        AuditLog *log = NULL;
        cr_assert_eq(audit_log_open(db_path, &log), 0);
        StoreAudit rec = { .time = fake_now, .uid = 1000, .pid = 1, .comm = (char *) "t", .action = (char *) "token.mint",
                           .result = (char *) "ok" };
        int64_t seq = audit_log_write(log, &rec, STORE_COMMITTED);
        cr_assert_gt(seq, 0);
        StoreAudit bad = rec;
        bad.detail = (char *) "[not an object]";
        cr_assert_lt(audit_log_write(log, &bad, STORE_COMMITTED), 0, "a bad record fails alone");
        cr_assert_gt(audit_log_write(log, &rec, STORE_SYNCED), seq);
        audit_log_close(log);
        AuditVerifyResult res;
        cr_assert_eq(audit_verify(store, &res), 0, "%s", res.message);
        cr_assert_eq(res.head_seq, 2);
}

typedef struct LockedWriter {
        AuditLog *log;
        int64_t result;
} LockedWriter;

static int64_t write_mint_record(AuditLog *log) {
        StoreAudit rec = {
                .time = fake_now, .uid = 1000, .pid = 1, .action = (char *) "token.mint", .result = (char *) "ok"
        };
        return audit_log_write(log, &rec, STORE_COMMITTED);
}

static void *write_while_locked(void *arg) {
        LockedWriter *w = arg;
        w->result = write_mint_record(w->log);
        return NULL;
}

static uint64_t mono_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

/* A database locked by another process fails a whole batch at once, every record with -ENOLCK (a storage fault, not
 * -EBUSY), and nothing is committed. Before, the batch went again one record at a time, each waiting out the busy
 * timeout (5 s): six callers waited some 35 s instead of 10. The bound asserted is generous (a hang, not a speed). */
Test(engine, audit_group_commit_fails_a_locked_batch_at_once) {
        AuditLog *log = NULL;
        Store *other = NULL;
        LockedWriter w[6];
        pthread_t th[6];

        cr_assert_eq(audit_log_open(db_path, &log), 0);
        cr_assert_eq(store_open(db_path, 0, &other), 0);
        cr_assert_eq(store_begin(other, STORE_COMMITTED), 0);
        uint64_t t0 = mono_ms();
        for (size_t i = 0; i < ELEMENTSOF(th); i++) {
                w[i] = (LockedWriter){ .log = log };
                cr_assert_eq(pthread_create(&th[i], NULL, write_while_locked, &w[i]), 0);
        }
        for (size_t i = 0; i < ELEMENTSOF(th); i++) {
                pthread_join(th[i], NULL);
                cr_assert_eq(w[i].result, -ENOLCK, "writer %zu: %lld", i, (long long) w[i].result);
        }
        cr_assert_lt(mono_ms() - t0, 25000, "the callers waited %llu ms", (unsigned long long) (mono_ms() - t0));
        store_rollback(other);
        store_close(other);
        cr_assert_eq(audit_log_commits(log), 0);
        cr_assert_gt(write_mint_record(log), 0, "the connection works again");
        audit_log_close(log);
        AuditVerifyResult res;
        cr_assert_eq(audit_verify(store, &res), 0, "%s", res.message);
}
