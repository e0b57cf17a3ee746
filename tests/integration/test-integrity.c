/* SPDX-License-Identifier: MIT */
/* keyd never runs alone: an operator's sqlite3 on its database, a second keyd on the same token, a key that
 * vanishes from the token while keyd runs. Each against the real daemon, a real SoftHSM2 token and a real SQLite file. */
#include <criterion/criterion.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/crypto-util.h"
#include "common/hex.h"
#include "pkcs11/hsm.h"
#include "rotation/audit.h"
#include "store/store.h"
#include "tests/helpers/test-api.h"
#include "tests/helpers/test-daemon.h"
#include "tests/helpers/test-util.h"

static TestToken tok;
static TestDaemon d = { .notify_fd = -1 };
static char sock[512], db[512];

static const char *RING = "[keyring default]\nkind = issuer\nalg = ES256\nissuer = https://issuer.test\n"
                          "rotation-period = 1h\nprepublish = 10m\ntoken-ttl-max = 10m\ndefault-ttl = 5m\n"
                          "sign-users = root\n";

static void setup(void) {
        test_token_setup(&tok);
        test_daemon_socket(&tok, sock, sizeof sock);
        snprintf(db, sizeof db, "%s/keyd.db", tok.dir);
}

static void teardown(void) {
        test_daemon_teardown(&d, &tok);
}

TestSuite(integrity, .init = setup, .fini = teardown, .timeout = 180);

static json_t *call(const char *method, const char *path, const char *body, long want) {
        return test_api_expect(sock, method, path, body, want);
}

static char *mint(char **ret_jti, char **ret_kid) {
        json_t *j = call("POST", "/v1/keyrings/default/tokens", "{\"sub\":\"agent-1\"}", 201);
        char *t = strdup(json_string_value(json_object_get(j, "token")));
        if (ret_jti)
                *ret_jti = strdup(json_string_value(json_object_get(j, "jti")));
        if (ret_kid)
                *ret_kid = strdup(json_string_value(json_object_get(j, "kid")));
        json_decref(j);
        return t;
}

/* The verdict on a token: NULL if valid, else the error code (static storage). */
static const char *verdict(const char *token) {
        static char error[64];
        json_t *j = test_api_verify(sock, token, NULL);
        bool valid = json_is_true(json_object_get(j, "valid"));
        snprintf(error, sizeof error, "%s", valid ? "" : json_string_value(json_object_get(j, "error")));
        json_decref(j);
        return valid ? NULL : error;
}

static void run_sqlite3(const char *sql) {
        char cmd[1024];
        snprintf(cmd, sizeof cmd, "sqlite3 '%s' '%s' >/dev/null 2>&1", db, sql);
        int status = system(cmd);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "sqlite3 %s: status %d", sql, status);
}

/* An outside reader of the database (an operator's sqlite3, a backup job) while keyd runs, then kill -9: what keyd
 * committed afterwards (a revoked key, a denied jti) is still there after the restart. Before the fix keyd's own
 * open()/close() of the database file dropped SQLite's POSIX locks, the reader took itself for the last user and
 * deleted the WAL that keyd went on writing into. */
Test(integrity, revocation_survives_outside_reader_and_kill9) {
        char *conf = test_daemon_write_config(&tok, RING);
        test_daemon_start_ready(&d, &tok, conf);

        char *jti = NULL, *kid = NULL;
        char *revoked_key_token = mint(NULL, &kid);
        char *denied_token = NULL;

        run_sqlite3("SELECT count(*) FROM keys");
        char wal[600];
        snprintf(wal, sizeof wal, "%s-wal", db);
        cr_assert_eq(access(wal, F_OK), 0, "keyd's WAL is still there after an outside reader closed the database");

        /* Revoke the key that signed the first token; the second token (signed by the promoted key) is denied. */
        char path[256], body[256];
        snprintf(path, sizeof path, "/v1/keys/%s/revoke", kid);
        json_decref(call("POST", path, "{\"reason\":\"key_compromise\"}", 200));
        denied_token = mint(&jti, NULL);
        snprintf(body, sizeof body, "{\"jti\":\"%s\"}", jti);
        json_decref(call("POST", "/v1/tokens/revoke", body, 200));
        cr_assert_str_eq(verdict(revoked_key_token), "key_revoked");
        cr_assert_str_eq(verdict(denied_token), "token_revoked");

        /* A second outside read, then the crash. */
        run_sqlite3("SELECT count(*) FROM audit");
        test_daemon_stop(&d, SIGKILL);
        test_daemon_done(&d);

        test_daemon_start_ready(&d, &tok, conf);
        cr_assert_str_eq(verdict(revoked_key_token), "key_revoked", "the revocation came back as valid after kill -9");
        cr_assert_str_eq(verdict(denied_token), "token_revoked", "the denied jti came back as valid after kill -9");
        json_decref(test_api_audit_verify(sock));
        /* Both are in the chain. */
        json_t *j = test_api_audit_records(sock), *r;
        size_t i;
        bool saw_revoke = false, saw_deny = false;
        json_array_foreach(j, i, r) {
                const char *action = json_string_value(json_object_get(r, "action"));
                saw_revoke |= streq(action, "key.revoke") && streq_ptr(json_string_value(json_object_get(r, "kid")), kid);
                saw_deny |= streq(action, "token.deny");
        }
        json_decref(j);
        cr_assert(saw_revoke && saw_deny, "the revocation and the denial are in the audit chain after the crash");
        free(revoked_key_token), free(denied_token), free(jti), free(kid), free(conf);
}

/* The token's keyd objects: how many private ones, and whether one has this CKA_ID (hex). */
static size_t private_objects(const char *with_id, bool *ret_found) {
        Hsm *h = test_token_open(&tok, 1);
        HsmObject *objs = NULL;
        size_t n = 0, priv = 0;
        cr_assert_eq(hsm_list(h, "keyd:", &objs, &n), 0);
        if (ret_found)
                *ret_found = false;
        for (size_t i = 0; i < n; i++) {
                char hex[2 * HSM_ID_MAX + 1];
                hex_encode(objs[i].id, objs[i].id_len, hex, sizeof hex);
                priv += objs[i].is_private;
                if (with_id && ret_found && objs[i].is_private && streq(hex, with_id))
                        *ret_found = true;
        }
        free(objs);
        hsm_close(h);
        return priv;
}

/* The token object id of a kid, from the database (read-only, plain SQLite: any schema version). */
static char *key_id_of(const char *db_path, const char *kid) {
        sqlite3 *sdb;
        sqlite3_stmt *st;
        cr_assert_eq(sqlite3_open_v2(db_path, &sdb, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        cr_assert_eq(sqlite3_prepare_v2(sdb, "SELECT id FROM keys WHERE kid = ?1", -1, &st, NULL), SQLITE_OK);
        sqlite3_bind_text(st, 1, kid, -1, SQLITE_STATIC);
        cr_assert_eq(sqlite3_step(st), SQLITE_ROW, "kid %s in %s", kid, db_path);
        char *id = strdup((const char *) sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
        sqlite3_close(sdb);
        return id;
}

static char *write_second_config(void) {
        char *text, *path;
        cr_assert(asprintf(&text,
                           "[token]\nmodule = %s\nuri = %s\npin-file = %s\nsofthsm2-conf = %s\n\n"
                           "[store]\npath = %s/other.db\n\n[api]\nsocket = %s/other.sock\n\n%s",
                           tok.module, tok.uri, tok.pin_file, tok.conf, tok.dir, tok.dir, RING) >= 0);
        path = test_token_write_file(&tok, "other.conf", text);
        free(text);
        return path;
}

/* A second keyd pointed at the same token with another database (a wrong path, a restored backup) never destroys the
 * first one's keys. Before, its reconcile destroyed every live key of the first as "orphans", and the first kept
 * answering ok while it could no longer sign. */
Test(integrity, second_installation_never_destroys_the_first) {
        char *conf = test_daemon_write_config(&tok, RING);
        test_daemon_start_ready(&d, &tok, conf);
        char *kid = NULL, *t1 = mint(NULL, &kid);
        char *id = key_id_of(db, kid);
        size_t before = private_objects(NULL, NULL);
        cr_assert_eq(before, 2, "the first installation's active and next keys");

        /* What the second would do, without doing it. */
        char *other = write_second_config(), cmd[2048];
        snprintf(cmd, sizeof cmd, "%s/keyd --config %s reconcile --dry-run --json",
                 getenv("KEYD_TEST_KEYD") ? "" : KEYD_TEST_BUILDDIR, other);
        /* (with KEYD_TEST_KEYD set, an old build has no dry run: skip to the real thing) */
        if (!getenv("KEYD_TEST_KEYD")) {
                int status;
                char *out = test_run(cmd, &status);
                cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s", out);
                json_t *j = json_loads(out, 0, NULL), *it;
                cr_assert_not_null(j, "%s", out);
                size_t i, foreign = 0;
                json_array_foreach(json_object_get(j, "items"), i, it) {
                        cr_assert_str_eq(json_string_value(json_object_get(it, "action")), "keep_foreign", "%s", out);
                        foreign++;
                }
                cr_assert_eq(foreign, 2, "the first installation's two keys, kept: %s", out);
                json_decref(j);
                free(out);
        }

        TestDaemon second = { .notify_fd = -1 };
        test_daemon_start_ready(&second, &tok, other); /* the second keyd starts */
        int status = test_daemon_stop(&second, SIGTERM);
        char *log2 = test_read_file(second.log, NULL);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "a clean stop (status %d):\n%s", status, log2);
        test_daemon_done(&second);

        bool found;
        cr_assert_eq(private_objects(id, &found), 4, "both installations' keys are in the token:\n%s", log2);
        cr_assert(found, "the first installation's active key survived the second's reconcile");
        /* And the first still signs with it. */
        char *kid2 = NULL, *t2 = mint(NULL, &kid2);
        cr_assert_str_eq(kid2, kid);
        cr_assert_null(verdict(t2));
        cr_assert_null(verdict(t1));
        free(t1), free(t2), free(kid), free(kid2), free(id), free(other), free(conf), free(log2);
}

/* One keyd per database: a second one started on the same configuration refuses to start, and the first goes on. */
Test(integrity, second_keyd_on_the_same_database_refused) {
        char *conf = test_daemon_write_config(&tok, RING);
        test_daemon_start_ready(&d, &tok, conf);
        TestDaemon second = { .notify_fd = -1 };
        test_daemon_start(&second, &tok, conf, NULL);
        /* It exits by itself (the wait reaps it) without ever being ready. */
        cr_assert(!test_daemon_wait_notify(&second, "READY=1", 5000, NULL, 0), "a second keyd on the same database");
        cr_assert_eq(second.pid, 0, "the second keyd exited");
        char *log2 = test_read_file(second.log, NULL);
        cr_assert(strstr(log2, "Another keyd is running on the database") != NULL, "%s", log2);
        test_daemon_done(&second);
        char *t = mint(NULL, NULL);
        cr_assert_null(verdict(t));
        free(t), free(log2), free(conf);
}

static json_t *health(void) {
        return call("GET", "/healthz", NULL, 200);
}

static void destroy_token_key(const char *key_id) {
        Hsm *h = test_token_open(&tok, 1);
        uint8_t id[HSM_ID_MAX];
        size_t n;
        cr_assert_eq(hex_decode(key_id, id, sizeof id, &n), 0, "key id %s", key_id);
        cr_assert_geq(hsm_destroy(h, id, n), 1);
        hsm_close(h);
}

static char *kid_in_state(const char *state) {
        return test_api_kid_in_state(sock, "default", state);
}

/* Mint until a token comes (the repair runs on the event loop), at most a few seconds. */
static char *mint_after_repair(char **ret_kid) {
        for (int i = 0; i < 100; i++) {
                long status;
                json_t *j = test_api(sock, "POST", "/v1/keyrings/default/tokens", "{\"sub\":\"agent-1\"}", &status);
                if (status == 201) {
                        char *t = strdup(json_string_value(json_object_get(j, "token")));
                        *ret_kid = strdup(json_string_value(json_object_get(j, "kid")));
                        json_decref(j);
                        return t;
                }
                cr_assert_eq(status, 503, "while the key is lost: 503, not %ld", status);
                json_decref(j);
                usleep(50000);
        }
        cr_assert_fail("the keyring was not repaired within 5 s:\n%s", test_read_file(d.log, NULL));
        return NULL;
}

static bool audit_has(const char *action, const char *kid) {
        json_t *j = test_api_audit_records(sock), *r;
        size_t i;
        bool found = false;
        json_array_foreach(j, i, r) found |=
                streq(json_string_value(json_object_get(r, "action")), action) &&
                (!kid || streq_ptr(json_string_value(json_object_get(r, "kid")), kid));
        json_decref(j);
        return found;
}

/* A key lost from the token while keyd runs is noticed at the next signature and repaired by policy at once: active
 * lost → the standby is promoted. Before, every mint failed until a restart, and /healthz said ok. */
Test(integrity, active_key_lost_while_running_is_repaired) {
        char *conf = test_daemon_write_config(&tok, RING);
        test_daemon_start_ready(&d, &tok, conf);
        char *active = kid_in_state("active"), *next = kid_in_state("next");
        char *old_token = mint(NULL, NULL);
        char *id = key_id_of(db, active);
        destroy_token_key(id);

        char *kid = NULL, *t = mint_after_repair(&kid);
        cr_assert_str_eq(kid, next, "the pre-published standby signs now");
        cr_assert_null(verdict(t));
        cr_assert_null(verdict(old_token), "tokens of the lost key still verify: it stays published as retired");
        cr_assert(audit_has("key.lost", active), "the loss is audited");
        json_t *h = health();
        cr_assert_str_eq(json_string_value(json_object_get(h, "status")), "ok", "repaired: healthy again");
        json_decref(h);
        long st;
        char *metrics = test_api_raw(sock, "GET", "/metrics", NULL, NULL, &st);
        cr_assert(strstr(metrics, "keyd_keys_lost_total 1\n") != NULL, "%s", metrics);
        char *fresh_next = kid_in_state("next");
        cr_assert_not_null(fresh_next);
        cr_assert_str_neq(fresh_next, next, "a new standby was generated");
        test_daemon_stop_clean(&d);
        free(active), free(next), free(old_token), free(id), free(kid), free(t), free(metrics), free(fresh_next);
        free(conf);
}

/* Both keys lost: new keys, without a restart. */
Test(integrity, both_keys_lost_while_running_are_replaced) {
        char *conf = test_daemon_write_config(&tok, RING);
        test_daemon_start_ready(&d, &tok, conf);
        char *active = kid_in_state("active"), *next = kid_in_state("next");
        char *a_id = key_id_of(db, active), *n_id = key_id_of(db, next);
        destroy_token_key(a_id);
        destroy_token_key(n_id);

        char *kid = NULL, *t = mint_after_repair(&kid);
        cr_assert_str_neq(kid, active);
        cr_assert_str_neq(kid, next);
        cr_assert_null(verdict(t));
        cr_assert(audit_has("key.lost", active) && audit_has("key.lost", next));
        json_t *h = health();
        cr_assert_str_eq(json_string_value(json_object_get(h, "status")), "ok");
        json_decref(h);
        test_daemon_stop_clean(&d);
        free(active), free(next), free(a_id), free(n_id), free(kid), free(t), free(conf);
}

/* keyd --dev DIR --check-config: prepares DIR as dev mode does, checks the configuration, exits. */
static char *dev_check(const char *dir, int *ret_status) {
        char cmd[1024];
        snprintf(cmd, sizeof cmd, "%s/keyd --dev %s --check-config 2>&1", getenv("KEYD_TEST_KEYD") ? "" : KEYD_TEST_BUILDDIR,
                 dir);
        if (getenv("KEYD_TEST_KEYD"))
                snprintf(cmd, sizeof cmd, "%s --dev %s --check-config 2>&1", getenv("KEYD_TEST_KEYD"), dir);
        return test_run(cmd, ret_status);
}

/* Dev mode trusts nothing it did not create: a directory writable by others, one owned by another user, or a file in
 * it that is a symbolic link is refused, and nothing is made in it. Before, dev mode used whatever it found. */
Test(integrity, dev_mode_refuses_untrusted_directory) {
        char dir[600], link[700], *out;
        int status;

        snprintf(dir, sizeof dir, "%s/dev", tok.dir);
        cr_assert_eq(mkdir(dir, 0700), 0);
        out = dev_check(dir, &status);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "a private directory of the caller's: %s", out);
        free(out);

        cr_assert_eq(chmod(dir, 0777), 0);
        out = dev_check(dir, &status);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) != 0 && strstr(out, "writable by others"), "%s", out);
        free(out);
        cr_assert_eq(chmod(dir, 0700), 0);

        /* keyd.conf pointing elsewhere: keyd would read (and dev mode write) a file it did not make. */
        snprintf(link, sizeof link, "%s/keyd.conf", dir);
        cr_assert_eq(unlink(link), 0);
        cr_assert_eq(symlink("/etc/hostname", link), 0);
        out = dev_check(dir, &status);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) != 0 && strstr(out, "symbolic link"), "%s", out);
        free(out);
        cr_assert_eq(unlink(link), 0);

        /* Another user's directory. */
        cr_assert_eq(chown(dir, 65534, 65534), 0);
        out = dev_check(dir, &status);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) != 0 && strstr(out, "owned by uid 65534"), "%s", out);
        free(out);
}

/* An anchor file that is the database (or its WAL) would be appended to, and opened and closed under SQLite: keyd
 * refuses to start, before it opens anything. */
Test(integrity, anchor_file_never_the_database) {
        static const char *const suffixes[] = { "", "-wal" };
        for (size_t i = 0; i < ELEMENTSOF(suffixes); i++) {
                char rings[2048];
                snprintf(rings, sizeof rings, "[audit]\nanchor-file = %s%s\n\n%s", db, suffixes[i], RING);
                char *conf = test_daemon_write_config(&tok, rings);
                test_daemon_start(&d, &tok, conf, NULL);
                cr_assert(!test_daemon_wait_notify(&d, "READY=1", 5000, NULL, 0), "anchor-file = the database%s",
                          suffixes[i]);
                char *log = test_read_file(d.log, NULL);
                cr_assert(strstr(log, "is the database or one of its files") != NULL, "%s", log);
                cr_assert_neq(access(db, F_OK), 0, "nothing was opened");
                unlink(d.log); /* each round reads its own */
                test_daemon_done(&d);
                free(log), free(conf);
        }
}
