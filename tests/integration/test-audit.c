/* SPDX-License-Identifier: MIT */
/* The audit log cannot be cut or rewritten undetected. The real daemon on a real SoftHSM2 token: it signs a checkpoint
 * at start and at a clean stop and appends each to the anchor file; the database is tampered with SQLite itself while
 * keyd is stopped (a cut tail, a rewritten chain), and keydctl audit verify --anchor catches what the database alone
 * cannot show. And the engine: an administrative change whose audit record cannot be built is rolled back. */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <execinfo.h>
#include <inttypes.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/macro.h"
#include "rotation/audit.h"
#include "rotation/engine.h"
#include "tests/helpers/test-api.h"
#include "tests/helpers/test-daemon.h"
#include "tests/helpers/test-util.h"

static TestToken tok;
static TestDaemon d = { .notify_fd = -1 };
static char sock[512], db[512], anchor[512], logfile[512];

static void setup(void) {
        test_token_setup(&tok);
        test_daemon_socket(&tok, sock, sizeof sock);
        snprintf(db, sizeof db, "%s/keyd.db", tok.dir);
        snprintf(anchor, sizeof anchor, "%s/anchor.jsonl", tok.dir);
        snprintf(logfile, sizeof logfile, "%s/keyd.log", tok.dir); /* keyd's stderr, every start appended */
}

static void teardown(void) {
        test_daemon_teardown(&d, &tok);
}

TestSuite(audit, .init = setup, .fini = teardown, .timeout = 180);

/* Start keyd with an issuer keyring, and with [audit] anchor-file if anchor_file is not NULL. */
static void start_with(const char *anchor_file) {
        char rings[2048], audit[700] = "";
        if (anchor_file)
                snprintf(audit, sizeof audit, "\n[audit]\nanchor-file = %s\n", anchor_file);
        snprintf(rings, sizeof rings,
                 "[keyring default]\nkind = issuer\nalg = ES256\nissuer = https://issuer.test\nsign-users = root\n"
                 "rotation-period = 1h\nprepublish = 10m\ntoken-ttl-max = 10m\ndefault-ttl = 5m\n%s",
                 audit);
        test_daemon_start_rings(&d, &tok, rings);
}

static void start(void) {
        start_with(anchor);
}

static void stop(void) {
        test_daemon_stop_clean(&d);
        test_daemon_done(&d);
}

static void mint(int n) {
        for (int i = 0; i < n; i++) {
                long st;
                json_decref(test_api(sock, "POST", "/v1/keyrings/default/tokens", "{\"sub\":\"agent-7\"}", &st));
                cr_assert_eq(st, 201);
        }
}

/* The anchor file as an array of its lines, each parsed. */
static json_t *anchors(void) {
        json_t *a = json_array();
        char *text = test_read_file(anchor, NULL), *save = NULL;
        for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                json_error_t err;
                json_t *o = json_loads(line, JSON_REJECT_DUPLICATES, &err);
                cr_assert(json_is_object(o), "an anchor line is a JSON object: %s (%s)", line, err.text);
                json_array_append_new(a, o);
        }
        free(text);
        return a;
}

static uint64_t anchor_seq(json_t *a, size_t i) {
        return (uint64_t) json_integer_value(json_object_get(json_array_get(a, i), "seq"));
}

static uint64_t db_head(void) {
        Store *s = NULL;
        uint64_t seq;
        cr_assert_eq(store_open(db, STORE_READ_ONLY, &s), 0);
        cr_assert_eq(store_audit_head(s, &seq, NULL), 0);
        store_close(s);
        return seq;
}

static void sql(const char *text) {
        sqlite3 *h = NULL;
        cr_assert_eq(sqlite3_open_v2(db, &h, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
        cr_assert_eq(sqlite3_exec(h, text, NULL, NULL, NULL), SQLITE_OK, "%s: %s", text, sqlite3_errmsg(h));
        sqlite3_close(h);
}

/* keydctl ARGS...; its output (stdout and stderr) in out. Returns the exit status. */
static int keydctl(char *out, size_t size, const char *args) {
        char cmd[2048];
        int status;
        /* KEYD_TEST_KEYDCTL runs another build of keydctl (to show that a regression test fails on it). */
        snprintf(cmd, sizeof cmd, "%s --socket %s %s 2>&1",
                 getenv("KEYD_TEST_KEYDCTL") ?: KEYD_TEST_BUILDDIR "/keydctl", sock, args);
        char *text = test_run(cmd, &status);
        snprintf(out, size, "%s", text);
        free(text);
        cr_assert(WIFEXITED(status), "%s: status %d", cmd, status);
        return WEXITSTATUS(status);
}

/* keyd started, three tokens minted, keyd stopped: the anchor file then. */
static json_t *mint_three_and_stop(void) {
        start();
        mint(3);
        stop();
        return anchors();
}

/* keyd started again on a database tampered with (what) while it was stopped: the database alone finds nothing wrong
 * in its chain, and keydctl audit verify --anchor fails, naming the anchor at line. Its output is left in out. */
static void expect_caught_by_anchor(const char *what, int line, char *out, size_t size) {
        char args[1024], want[600];
        start();
        int rc = keydctl(out, size, "audit verify");
        cr_assert_eq(rc, 0, "the %s is invisible to the database alone: %s", what, out);
        snprintf(args, sizeof args, "audit verify --anchor %s", anchor);
        rc = keydctl(out, size, args);
        cr_assert_eq(rc, 1, "%s", out);
        snprintf(want, sizeof want, "%s:%d", anchor, line);
        cr_assert(strstr(out, want) != NULL, "names the anchor at line %d: %s", line, out);
}

Test(audit, checkpoints_at_start_and_stop) {
        /* A long interval: only the start and the stop sign. */
        start_with(NULL);
        /* Signed before READY=1: the start is covered before anyone can ask. */
        json_t *v = test_api_audit_verify(sock);
        uint64_t cp_start = (uint64_t) json_integer_value(json_object_get(v, "checkpoint_seq"));
        cr_assert_gt(cp_start, 0, "a checkpoint signed at start, before READY=1");
        cr_assert_eq(cp_start, (uint64_t) json_integer_value(json_object_get(v, "head_seq")), "of the head");
        json_decref(v);
        mint(3);
        stop();

        /* Signed at the clean stop: the head, after every record. */
        Store *s = NULL;
        AuditVerifyResult res;
        cr_assert_eq(store_open(db, STORE_READ_ONLY, &s), 0);
        cr_assert_eq(audit_verify(s, &res), 0, "%s", res.message);
        cr_assert_gt(res.head_seq, cp_start + 2);
        cr_assert_eq(res.checkpoint_seq, res.head_seq, "the stop checkpoint covers the last record");
        store_close(s);
        char *log = test_read_file(logfile, NULL);
        cr_assert(strstr(log, "Audit checkpoint: record") != NULL, "the journal keeps a copy:\n%s", log);
        free(log);
}

Test(audit, checkpoints_are_anchored) {
        struct stat st;

        start();
        json_t *v = test_api_audit_verify(sock);
        uint64_t cp_start = (uint64_t) json_integer_value(json_object_get(v, "checkpoint_seq"));
        json_decref(v);
        cr_assert_eq(stat(anchor, &st), 0, "the anchor file is created");
        cr_assert_eq(st.st_mode & 07777, 0600);
        json_t *a = anchors();
        cr_assert_eq(json_array_size(a), 1);
        json_t *first = json_array_get(a, 0);
        cr_assert_eq(anchor_seq(a, 0), cp_start);
        const char *hash = json_string_value(json_object_get(first, "hash"));
        cr_assert(hash && strlen(hash) == 64 && strspn(hash, "0123456789abcdef") == 64);
        cr_assert(json_is_integer(json_object_get(first, "time")));
        cr_assert(json_is_string(json_object_get(first, "kid")));
        const char *jws = json_string_value(json_object_get(first, "jws"));
        cr_assert(jws && strchr(jws, '.') && strchr(strchr(jws, '.') + 1, '.'), "a compact JWS");
        json_decref(a);

        mint(3);
        stop();
        a = anchors();
        cr_assert_eq(json_array_size(a), 2);
        cr_assert_gt(anchor_seq(a, 1), anchor_seq(a, 0));
        cr_assert_eq(anchor_seq(a, 1), db_head(), "the stop checkpoint is anchored");
        json_decref(a);

        /* The untouched chain matches its anchors; a restart with nothing new anchors nothing new. */
        start();
        char out[4096], args[1024];
        snprintf(args, sizeof args, "audit verify --anchor %s", anchor);
        int rc = keydctl(out, sizeof out, args);
        cr_assert_eq(rc, 0, "%s", out);
        cr_assert(strstr(out, "Anchors verified: 2 anchor(s)") != NULL, "%s", out);
        stop();
        a = anchors();
        cr_assert_eq(json_array_size(a), 2, "nothing new to sign");
        json_decref(a);
}

Test(audit, anchor_catches_a_cut_tail) {
        char out[4096];

        json_t *a = mint_three_and_stop();
        cr_assert_eq(json_array_size(a), 2);
        uint64_t first = anchor_seq(a, 0), last = anchor_seq(a, 1);
        json_decref(a);

        /* Cut every record after the first anchored checkpoint, and the checkpoints that covered them. */
        char text[1024];
        snprintf(text, sizeof text,
                 "DELETE FROM audit_checkpoints WHERE seq > %" PRIu64 "; DELETE FROM audit WHERE seq > %" PRIu64, first,
                 first);
        sql(text);

        expect_caught_by_anchor("cut", 2, out, sizeof out);
        snprintf(text, sizeof text, "seq %" PRIu64, last);
        cr_assert(strstr(out, text) != NULL, "names seq %" PRIu64 ": %s", last, out);
}

Test(audit, anchor_catches_a_rewritten_chain) {
        char out[4096];

        json_t *a = mint_three_and_stop();
        uint64_t first = anchor_seq(a, 0);
        json_decref(a);

        /* Rewrite record 2 and every hash after it, as keyd itself would have, and drop every checkpoint. */
        Store *s = NULL;
        StoreAudit **recs = NULL;
        size_t n = 0;
        cr_assert_eq(store_open(db, 0, &s), 0);
        cr_assert_eq(store_audit_list(s, 0, SIZE_MAX, &recs, &n), 0);
        store_close(s);
        cr_assert_geq(n, first);
        sql("DELETE FROM audit_checkpoints; DELETE FROM audit");
        cr_assert_eq(store_open(db, 0, &s), 0);
        cr_assert_eq(store_begin(s, STORE_SYNCED), 0);
        for (size_t i = 0; i < n; i++) {
                if (i == 1) {
                        free(recs[i]->comm);
                        recs[i]->comm = strdup("forged");
                }
                cr_assert_eq(store_audit_append(s, recs[i]), 0);
        }
        cr_assert_eq(store_commit(s), 0);
        cr_assert_eq(store_audit_verify(s, NULL), 0, "the rewritten chain is a valid chain");
        store_audit_list_free(recs);
        store_close(s);

        expect_caught_by_anchor("rewrite", 1, out, sizeof out);
        cr_assert(strstr(out, "hash") != NULL, "%s", out);
}

Test(audit, anchor_file_failure_does_not_stop_keyd) {
        /* A symlink is not followed (O_NOFOLLOW): the append fails, is logged, and keyd runs on. */
        char target[600];
        snprintf(target, sizeof target, "%s/elsewhere", tok.dir);
        free(test_token_write_file(&tok, "elsewhere", ""));
        cr_assert_eq(symlink(target, anchor), 0);
        start();
        mint(1);
        cr_assert_eq(kill(d.pid, 0), 0, "still running");
        stop();
        char *log = test_read_file(logfile, NULL);
        cr_assert(strstr(log, "Cannot append the audit checkpoint") != NULL, "%s", log);
        cr_assert(strstr(log, "2 failure(s)") != NULL, "the failures are counted:\n%s", log);
        free(log);
        char *elsewhere = test_read_file(target, NULL);
        cr_assert_str_eq(elsewhere, "", "the symlink's target is untouched");
        free(elsewhere);
}

/* ---- the engine: an administrative change whose record cannot be built is rolled back ---- */

/* jansson's allocator, failing the nth allocation from when it is armed. policy_to_json() fails only when out of
 * memory: this is how a failure of it (or of the record's detail) is made on purpose. Only the building of JSON
 * (json_pack, json_array, json_string...: what policy_to_json() does) is failed: jansson 2.14's parser corrupts its
 * heap when an allocation fails inside it, and its serializer loses a key without failing (see store_audit_canonical),
 * so allocations under json_load*() and json_dump*() are let through. */
static unsigned long json_allocs, json_fail_at;

static bool in_parser_or_serializer(void) {
        void *frames[32];
        int n = backtrace(frames, (int) ELEMENTSOF(frames));
        for (int i = 0; i < n; i++) {
                Dl_info info;
                if (dladdr(frames[i], &info) && info.dli_sname &&
                    (startswith(info.dli_sname, "json_load") || startswith(info.dli_sname, "json_dump")))
                        return true;
        }
        return false;
}

static void *failing_malloc(size_t size) {
        if (json_fail_at && !in_parser_or_serializer() && ++json_allocs == json_fail_at)
                return NULL;
        return malloc(size);
}

/* Arm for allocation nth; disarm() tells whether it fired. */
static void arm(unsigned long nth) {
        json_allocs = 0;
        json_fail_at = nth;
}
static bool disarm(void) {
        bool fired = json_fail_at && json_allocs >= json_fail_at;
        json_fail_at = 0;
        return fired;
}

static Policy ring_policy_for(usec_t rotation) {
        Policy p;
        policy_init(&p, RING_ISSUER);
        p.issuer = strdup("https://issuer.test");
        p.rotation_period = rotation;
        return p;
}

/* The records of action for keyring "r": how many, and the policy in the detail of the last (NULL if none). */
static size_t records_of(Store *s, const char *action, json_t **ret_policy) {
        StoreAudit **recs = NULL;
        size_t n = 0, count = 0;
        *ret_policy = NULL;
        cr_assert_eq(store_audit_list(s, 0, SIZE_MAX, &recs, &n), 0);
        for (size_t i = 0; i < n; i++) {
                if (!streq(recs[i]->action, action) || !streq_ptr(recs[i]->keyring, "r"))
                        continue;
                count++;
                json_decref(*ret_policy);
                json_t *detail = recs[i]->detail ? json_loads(recs[i]->detail, 0, NULL) : NULL;
                *ret_policy = json_incref(json_object_get(detail, "policy"));
                if (streq(action, "keyring.create"))
                        cr_assert_str_eq(json_string_value(json_object_get(detail, "kind")), "issuer");
                json_decref(detail);
        }
        store_audit_list_free(recs);
        return count;
}

static json_t *stored_policy(Store *s) {
        StoreKeyring *row = NULL;
        int r = store_keyring_get(s, "r", &row);
        cr_assert(r == 0 || r == -ENOENT);
        json_t *j = row ? json_loads(row->policy, 0, NULL) : NULL;
        store_keyring_free(row);
        return j;
}

Test(audit, admin_change_without_its_record_rolls_back) {
        Hsm *hsm = test_token_open(&tok, 2);
        Store *s = NULL;
        Engine *e = NULL;
        EngineOptions o = { 0 };
        json_t *rec, *now;
        unsigned long nth, fired = 0;
        int r;

        cr_assert_eq(store_open(db, 0, &s), 0);
        cr_assert_eq(engine_new(hsm, s, &o, &e), 0);
        cr_assert_eq(engine_load(e), 0);
        void *frame;
        (void) backtrace(&frame, 1); /* loads what backtrace() needs now, not inside the allocator */
        json_set_alloc_funcs(failing_malloc, free);

        /* engine_create_ring, failing each allocation in turn until none is left to fail: the keyring is stored
         * exactly when its keyring.create record (with that policy) is, and in memory exactly when it succeeded. */
        Policy p1 = ring_policy_for(24 * 3600 * USEC_PER_SEC), p2 = ring_policy_for(12 * 3600 * USEC_PER_SEC);
        RingSpec spec = { .name = "r", .kind = RING_ISSUER, .owner_uid = -1, .policy = &p1 };
        for (nth = 1;; nth++) {
                arm(nth);
                r = engine_create_ring(e, &spec, NULL);
                bool hit = disarm();
                now = stored_policy(s);
                size_t n = records_of(s, "keyring.create", &rec);
                cr_assert_eq(n, now ? 1 : 0, "allocation %lu: create returned %d; stored: %d, records: %zu", nth, r,
                             now != NULL, n);
                cr_assert(!now || json_equal(rec, now), "allocation %lu: the record has the stored policy", nth);
                cr_assert_eq(engine_get_ring(e, "r") != NULL, r == 0, "allocation %lu", nth);
                cr_assert(r == 0 || hit, "allocation %lu: failed with nothing failing: %d", nth, r);
                json_decref(rec);
                json_decref(now);
                if (!hit) {
                        cr_assert_eq(r, 0);
                        break;
                }
                fired++;
                if (r == 0)
                        break;
        }
        cr_assert_gt(fired, 3, "some allocations failed on the way");

        /* engine_apply_config, switching between two policies: the stored policy changes exactly when a
         * keyring.policy record (with the new policy) is added. */
        size_t records = records_of(s, "keyring.policy", &rec);
        json_decref(rec);
        for (nth = 1;; nth++) {
                json_t *before = stored_policy(s);
                spec.policy = spec.policy == &p1 ? &p2 : &p1;
                arm(nth);
                r = engine_apply_config(e, &spec, 1);
                bool hit = disarm();
                now = stored_policy(s);
                bool changed = !json_equal(before, now);
                size_t n = records_of(s, "keyring.policy", &rec);
                cr_assert_eq(n, records + changed, "allocation %lu: apply returned %d; changed: %d, records: %zu",
                             nth, r, changed, n - records);
                cr_assert(!changed || json_equal(rec, now), "allocation %lu: the record has the stored policy", nth);
                cr_assert(r < 0 || changed, "allocation %lu: applied", nth);
                if (!changed) /* try the same change again */
                        spec.policy = spec.policy == &p1 ? &p2 : &p1;
                records = n;
                json_decref(rec);
                json_decref(now);
                json_decref(before);
                if (!hit)
                        break;
        }
        cr_assert_gt(nth, 3, "some allocations failed on the way");
        json_set_alloc_funcs(malloc, free);

        AuditVerifyResult res;
        cr_assert_eq(audit_verify(s, &res), 0, "%s", res.message);
        policy_done(&p1);
        policy_done(&p2);
        engine_free(e);
        store_close(s);
        hsm_close(hsm);
}
