/* SPDX-License-Identifier: MIT */
/* kill -9 at random instants against the real daemon and a real SoftHSM2 token, rotating every second. After every
 * kill: one active and one next key per keyring, the audit chain verifies, PRAGMA integrity_check is ok, every
 * JWKS file on disk is complete JSON and holds every key that may have signed a token that has not expired. Every
 * tenth round, and at the end, keyd is stopped cleanly after its reconcile instead, and the token must hold private
 * objects exactly for the next and active keys (no orphan survives a reconcile). KEYD_TEST_SEED replays a run. */
#include <criterion/criterion.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/crypto-util.h"
#include "common/hex.h"
#include "rotation/audit.h"
#include "tests/helpers/test-daemon.h"
#include "tests/helpers/test-util.h"

#define ROUNDS 50

static TestToken tok;
static TestDaemon d = { .notify_fd = -1 };

static const char *const RINGS[] = { "fast", "ed" };

static bool ever_ready; /* a start got as far as READY=1: every keyring has been bootstrapped once */

static void check_store(const char *db_path, int round, unsigned seed) {
        sqlite3 *db;
        sqlite3_stmt *st;
        cr_assert_eq(sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        cr_assert_eq(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
        cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
        cr_assert_str_eq((const char *) sqlite3_column_text(st, 0), "ok", "seed %u round %d", seed, round);
        sqlite3_finalize(st);
        sqlite3_close(db);

        Store *s = NULL;
        cr_assert_eq(store_open(db_path, STORE_READ_ONLY, &s), 0);
        AuditVerifyResult res;
        cr_assert_eq(audit_verify(s, &res), 0, "seed %u round %d: %s", seed, round, res.message);

        usec_t now = now_realtime();
        for (size_t r = 0; r < ELEMENTSOF(RINGS); r++) {
                StoreKey **keys = NULL;
                size_t n = 0;
                int active = 0, next = 0;
                cr_assert_eq(store_key_list(s, RINGS[r], &keys, &n), 0);
                for (size_t i = 0; i < n; i++) {
                        active += keys[i]->state == KEY_STATE_ACTIVE;
                        next += keys[i]->state == KEY_STATE_NEXT;
                }
                /* A keyring is created and bootstrapped in two transactions: a kill between them leaves it empty,
                 * and the next start completes it. Never one of the two without the other, never two. */
                cr_assert((active == 1 && next == 1) || (active == 0 && next == 0 && !ever_ready),
                          "seed %u round %d: %s has %d active, %d next", seed, round, RINGS[r], active, next);

                char path[512];
                snprintf(path, sizeof path, "%s/jwks-%s.json", tok.dir, RINGS[r]);
                if (access(path, F_OK) == 0) {
                        size_t len;
                        char *body = test_read_file(path, &len);
                        json_error_t err;
                        json_t *doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, &err);
                        cr_assert_not_null(doc, "seed %u round %d: %s is not complete JSON: %s", seed, round, path,
                                           err.text);
                        /* Every key that may have signed a token still valid must be there: the active key, and
                         * every retired key before its expire_at. */
                        for (size_t i = 0; i < n; i++) {
                                bool signer = keys[i]->state == KEY_STATE_ACTIVE ||
                                              (keys[i]->state == KEY_STATE_RETIRED && keys[i]->expire_at > now);
                                if (!signer)
                                        continue;
                                bool found = false;
                                json_t *k;
                                size_t j;
                                json_array_foreach(json_object_get(doc, "keys"), j, k) found |=
                                        streq(json_string_value(json_object_get(k, "kid")), keys[i]->kid);
                                cr_assert(found, "seed %u round %d: %s key %s missing from %s", seed, round,
                                          key_state_to_string(keys[i]->state), keys[i]->kid, path);
                        }
                        json_decref(doc);
                        free(body);
                }
                store_key_list_free(keys);
        }
        store_close(s);
}

/* With keyd stopped after a reconcile: private objects exactly for next and active keys, no orphan objects. */
static void check_token(const char *db_path, int round, unsigned seed) {
        Hsm *h = test_token_open(&tok, 1);
        Store *s = NULL;
        HsmObject *objs = NULL;
        StoreKey **keys = NULL;
        size_t n_objs = 0, n = 0;
        cr_assert_eq(hsm_list(h, "keyd:", &objs, &n_objs), 0);
        cr_assert_eq(store_open(db_path, STORE_READ_ONLY, &s), 0);
        cr_assert_eq(store_key_list(s, NULL, &keys, &n), 0);
        size_t live = 0, privs = 0;
        for (size_t i = 0; i < n; i++)
                live += keys[i]->state == KEY_STATE_ACTIVE || keys[i]->state == KEY_STATE_NEXT;
        for (size_t o = 0; o < n_objs; o++) {
                char hex[2 * HSM_ID_MAX + 1];
                bool known = false, is_live = false;
                hex_encode(objs[o].id, objs[o].id_len, hex, sizeof hex);
                for (size_t i = 0; i < n; i++)
                        if (streq(keys[i]->id, hex)) {
                                known = true;
                                is_live = keys[i]->state == KEY_STATE_ACTIVE || keys[i]->state == KEY_STATE_NEXT;
                        }
                cr_assert(known, "seed %u round %d: orphan object %s survived reconcile", seed, round, objs[o].label);
                if (objs[o].is_private) {
                        privs++;
                        cr_assert(is_live, "seed %u round %d: private object of a dead key: %s", seed, round,
                                  objs[o].label);
                }
        }
        cr_assert_eq(privs, live, "seed %u round %d: %zu private objects, %zu live keys", seed, round, privs, live);
        store_key_list_free(keys);
        free(objs);
        store_close(s);
        hsm_close(h);
}

Test(kill, kill9_at_random_instants, .timeout = 600) {
        const char *e = getenv("KEYD_TEST_SEED");
        unsigned seed = e ? (unsigned) strtoul(e, NULL, 10) : (unsigned) time(NULL), state = seed;
        char rings[2048], db_path[512];
        int kills = 0, clean = 0;

        cr_log_info("seed %u (KEYD_TEST_SEED=%u replays the kill instants)", seed, seed);
        test_token_setup(&tok);
        snprintf(rings, sizeof rings,
                 "[keyring fast]\nkind = issuer\nalg = ES256\nissuer = https://fast.test\nrotation-period = 1s\n"
                 "prepublish = 1s\ntoken-ttl-max = 2s\ndefault-ttl = 1s\nclock-skew = 1s\njwks-file = %s/jwks-fast.json\n"
                 "\n[keyring ed]\nkind = issuer\nalg = EdDSA\nissuer = https://ed.test\nrotation-period = 1s\n"
                 "prepublish = 1s\ntoken-ttl-max = 1s\ndefault-ttl = 1s\nclock-skew = 0\njwks-file = %s/jwks-ed.json\n",
                 tok.dir, tok.dir);
        char *conf = test_daemon_write_config(&tok, rings);
        snprintf(db_path, sizeof db_path, "%s/keyd.db", tok.dir);

        for (int round = 1; round <= ROUNDS; round++) {
                test_daemon_start(&d, &tok, conf, NULL);
                bool ready = test_daemon_wait_notify(&d, "READY=1", 30000, NULL, 0);
                ever_ready |= ready;
                if (round % 10 == 0) {
                        cr_assert(ready, "round %d: keyd did not become ready", round);
                        /* Let it rotate a while, then a clean stop right after a reconcile and some rotations. */
                        usleep(500000 + (useconds_t) (rand_r(&state) % 1000) * 1000);
                        int status = test_daemon_stop(&d, SIGTERM);
                        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "round %d: status %d", round, status);
                        check_store(db_path, round, seed);
                        check_token(db_path, round, seed);
                        clean++;
                } else {
                        /* Anywhere from during start-up to a few rotations in. */
                        usleep((useconds_t) (rand_r(&state) % 2500) * 1000);
                        test_daemon_stop(&d, SIGKILL);
                        kills++;
                        check_store(db_path, round, seed);
                }
                test_daemon_done(&d);
        }

        /* The last word: start, reconcile, stop cleanly, and nothing is left over. */
        test_daemon_start_ready(&d, &tok, conf);
        test_daemon_stop_clean(&d);
        check_store(db_path, ROUNDS + 1, seed);
        check_token(db_path, ROUNDS + 1, seed);
        cr_log_info("%d kills, %d clean stops", kills, clean);
        cr_assert_geq(kills, 45);
        test_daemon_done(&d);
        free(conf);
        test_token_teardown(&tok);
}
