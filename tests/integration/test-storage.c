/* SPDX-License-Identifier: MIT */
/* The database fails under a running keyd: its file system full, turned read-only, or locked by an operator's
 * sqlite3. Writes must fail closed with 503 storage_unavailable naming the cause, nothing half-written and nothing in
 * memory changed; verification and the JWKS go on from memory; /healthz says why; and once the fault is gone keyd
 * recovers by itself, with an audit chain that still verifies. Against the real daemon on a real SoftHSM2 token, its
 * database on a tmpfs each test mounts itself (the tests need root: they fail, never skip, without it). */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tests/helpers/test-api.h"
#include "tests/helpers/test-daemon.h"
#include "tests/helpers/test-util.h"

static TestToken tok;
static TestDaemon d = { .notify_fd = -1 };
static char sock[512], fs[512], db[600], filler[600], erofs_flag[512];
static bool mounted;

static const char *RING = "[keyring default]\nkind = issuer\nalg = ES256\nissuer = https://issuer.test\n"
                          "rotation-period = 1h\nprepublish = 10m\ntoken-ttl-max = 10m\ndefault-ttl = 5m\n"
                          "sign-users = root\n";

static void setup(void) {
        test_token_setup(&tok);
        test_daemon_socket(&tok, sock, sizeof sock);
        snprintf(fs, sizeof fs, "%s/dbfs", tok.dir);
        snprintf(db, sizeof db, "%s/keyd.db", fs);
        snprintf(filler, sizeof filler, "%s/filler", fs);
        snprintf(erofs_flag, sizeof erofs_flag, "%s/erofs-on", tok.dir);
        cr_assert_eq(mkdir(fs, 0700), 0, "mkdir %s: %m", fs);
        if (mount("tmpfs", fs, "tmpfs", MS_NOSUID | MS_NODEV, "size=4m,mode=0700") < 0)
                cr_assert_fail("Cannot mount a tmpfs on %s: %m. The storage tests need root with CAP_SYS_ADMIN "
                               "(CI runs them as root); they do not skip.",
                               fs);
        mounted = true;
}

static void teardown(void) {
        test_daemon_done(&d); /* keyd gone: nothing holds the file system */
        if (mounted && umount2(fs, MNT_DETACH) < 0)
                cr_log_error("umount %s: %m", fs);
        mounted = false;
        test_token_teardown(&tok);
}

TestSuite(storage, .init = setup, .fini = teardown, .timeout = 240);

static void start(const char *extra_env) {
        char *text, log[4096];
        cr_assert(asprintf(&text,
                           "[token]\nmodule = %s\nuri = %s\npin-file = %s\nsofthsm2-conf = %s\n\n"
                           "[store]\npath = %s\n\n[api]\nsocket = %s\nworkers = 2\n\n%s",
                           tok.module, tok.uri, tok.pin_file, tok.conf, db, sock, RING) >= 0);
        char *conf = test_token_write_file(&tok, "keyd.conf", text);
        free(text);
        test_daemon_start(&d, &tok, conf, extra_env);
        free(conf);
        if (!test_daemon_wait_notify(&d, "READY=1", 30000, NULL, 0))
                cr_assert_fail("keyd did not become ready:\n%s", test_file_tail(d.log, log, sizeof log));
}

static json_t *call(const char *method, const char *path, const char *body, long want) {
        return test_api_expect(sock, method, path, body, want);
}

static char *mint(void) {
        return test_api_created(sock, "/v1/keyrings/default/tokens", "{\"sub\":\"agent-1\"}", "token");
}

/* The keyring's keys as keyd holds them in memory. */
static json_t *keys_in_memory(void) {
        json_t *j = call("GET", "/v1/keyrings/default", NULL, 200);
        json_t *keys = json_incref(json_object_get(j, "keys"));
        json_decref(j);
        return keys;
}

/* The keys as the database has them, by a reader of its own (a reader never waits for a writer in WAL mode). */
static char *keys_on_disk(void) {
        sqlite3 *h = NULL;
        sqlite3_stmt *st = NULL;
        char *text;

        cr_assert_eq(sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK, "open %s", db);
        cr_assert_eq(sqlite3_prepare_v2(h,
                                        "SELECT group_concat(kid || ':' || state || ':' || revoked_at, ',') FROM "
                                        "(SELECT * FROM keys ORDER BY kid)",
                                        -1, &st, NULL),
                     SQLITE_OK, "%s", sqlite3_errmsg(h));
        cr_assert_eq(sqlite3_step(st), SQLITE_ROW, "%s", sqlite3_errmsg(h));
        text = strdup((const char *) sqlite3_column_text(st, 0) ?: "");
        sqlite3_finalize(st);
        sqlite3_close(h);
        return text;
}

static void expect_storage_error(const char *method, const char *path, const char *body, const char *reason) {
        test_api_expect_error(sock, method, path, body, 503, "storage_unavailable", reason);
}

/* /healthz while the database cannot be written: 503, "unavailable", the reason, the other members still there. */
static void expect_unhealthy(const char *reason) {
        long status = 0;
        json_t *j = test_api(sock, "GET", "/healthz", NULL, &status);
        char *text = json_dumps(j, JSON_COMPACT);
        cr_assert_eq(status, 503, "/healthz: %ld %s", status, text);
        cr_assert_str_eq(json_string_value(json_object_get(j, "status")), "unavailable", "%s", text);
        cr_assert_str_eq(json_string_value(json_object_get(j, "storage")) ?: "", reason, "%s", text);
        cr_assert(json_is_integer(json_object_get(j, "keyrings")) && json_is_array(json_object_get(j, "degraded")) &&
                          json_is_string(json_object_get(j, "version")),
                  "%s", text);
        free(text);
        json_decref(j);
}

/* Every fault looks the same from outside: minting and every change refused with the reason, nothing changed in
 * memory or on disk; verification, the JWKS and reading the keyring go on. */
static void check_fault(const char *reason, const char *token_before) {
        json_t *mem = keys_in_memory();
        char *disk = keys_on_disk(), path[256];

        expect_storage_error("POST", "/v1/keyrings/default/tokens", "{\"sub\":\"agent-1\"}", reason);
        test_api_expect_valid(sock, token_before, NULL);
        json_decref(call("GET", "/v1/keyrings/default/jwks", NULL, 200));
        expect_unhealthy(reason);

        expect_storage_error("POST", "/v1/keyrings/default/rotate", "{\"force\":true}", reason);
        char *next = test_api_kid_in_state(sock, "default", "next");
        cr_assert(next);
        snprintf(path, sizeof path, "/v1/keys/%s/revoke", next);
        expect_storage_error("POST", path, "{\"reason\":\"superseded\"}", reason);
        expect_storage_error("POST", "/v1/tokens/revoke", "{\"jti\":\"during-the-fault\"}", reason);
        expect_storage_error("POST", "/v1/keyrings", "{\"name\":\"agent-x\",\"kind\":\"agent\",\"owner_uid\":1000}",
                             reason);
        free(next);

        json_t *mem_after = keys_in_memory();
        char *disk_after = keys_on_disk();
        cr_assert(json_equal(mem, mem_after), "the keys in memory changed during the fault");
        cr_assert_str_eq(disk_after, disk, "the keys on disk changed during the fault");
        test_api_expect_valid(sock, token_before, NULL);
        expect_unhealthy(reason);
        json_decref(mem);
        json_decref(mem_after);
        free(disk);
        free(disk_after);
}

static long now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* No request but /healthz: keyd must find out by itself that the database can be written again. */
static void wait_recovered(void) {
        long end = now_ms() + 30000, status = 0;
        char *text = NULL, log[4096];

        for (;;) {
                json_t *j = test_api(sock, "GET", "/healthz", NULL, &status);
                free(text);
                text = json_dumps(j, JSON_COMPACT);
                json_decref(j);
                if (status == 200)
                        break;
                if (now_ms() > end)
                        cr_assert_fail("/healthz still %ld %s 30 s after the fault was cleared:\n%s", status,
                                       text ?: "", test_file_tail(d.log, log, sizeof log));
                usleep(100 * 1000);
        }
        free(text);
}

static size_t count_records(const char *action, const char *result) {
        json_t *recs = test_api_audit_records(sock), *r;
        size_t i, n = 0;
        json_array_foreach (recs, i, r)
                n += streq(json_string_value(json_object_get(r, "action")), action) &&
                     streq(json_string_value(json_object_get(r, "result")), result);
        json_decref(recs);
        return n;
}

/* After the fault: minting and changes work again, every token verifies, the chain has no gap or break, and the
 * refused mint left no record (one token minted before the fault, one after). */
static void check_recovered(const char *token_before) {
        wait_recovered();
        char *after = mint();
        test_api_expect_valid(sock, token_before, NULL);
        test_api_expect_valid(sock, after, NULL);
        json_decref(call("POST", "/v1/keyrings/default/rotate", "{\"force\":true}", 200));
        test_api_expect_valid(sock, token_before, NULL);
        test_api_expect_valid(sock, after, NULL);
        cr_assert_eq(count_records("token.mint", "ok"), 2);
        json_decref(test_api_audit_verify(sock));
        free(after);
}

/* Fill the file system to the last byte. */
static void fill(void) {
        static const char zeros[65536];
        int fd = open(filler, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        cr_assert(fd >= 0, "open %s: %m", filler);
        for (size_t chunk = sizeof zeros; chunk > 0; chunk /= 2)
                while (write(fd, zeros, chunk) == (ssize_t) chunk)
                        ;
        cr_assert_eq(errno, ENOSPC, "filling %s: %m", fs);
        close(fd);
}

Test(storage, disk_full) {
        start(NULL);
        char *before = mint();

        fill();
        check_fault("database disk is full", before);
        cr_assert_eq(unlink(filler), 0);
        check_recovered(before);
        free(before);
}

/* Linux refuses "mount -o remount,ro" while a file on the file system is open for writing (EBUSY), as keyd's
 * database always is; chmod and chattr +i change nothing for a descriptor already open. The kernel alone turns a file
 * system read-only under a writer (errors=remount-ro), and then every write(2) fails with EROFS, which SQLite reports
 * as SQLITE_IOERR_WRITE: tests/shim/erofs.c, preloaded into keyd, does just that while its flag file exists. */
Test(storage, read_only) {
        char spec[1100];
        snprintf(spec, sizeof spec, "%s:%s", erofs_flag, fs);
        cr_assert_eq(setenv("KEYD_TEST_EROFS", spec, 1), 0);
        /* Under ASan, a preloaded library comes before the ASan runtime. */
        char asan[1024];
        snprintf(asan, sizeof asan, "%s%sverify_asan_link_order=0", getenv("ASAN_OPTIONS") ?: "",
                 getenv("ASAN_OPTIONS") ? ":" : "");
        cr_assert_eq(setenv("ASAN_OPTIONS", asan, 1), 0);
        start("LD_PRELOAD=" KEYD_TEST_BUILDDIR "/tests/shim/erofs.so");
        char *before = mint();

        bool remounted = mount(NULL, fs, NULL, MS_REMOUNT | MS_RDONLY, NULL) == 0;
        if (!remounted) {
                cr_assert_eq(errno, EBUSY, "remount %s read-only: %m", fs);
                cr_log_info("remount,ro refused (busy: keyd has the database open for writing); EROFS by the shim");
                test_token_write_file(&tok, "erofs-on", "");
        }
        check_fault("database is read-only", before);
        if (remounted)
                cr_assert_eq(mount(NULL, fs, NULL, MS_REMOUNT, NULL), 0, "remount %s read-write: %m", fs);
        else
                cr_assert_eq(unlink(erofs_flag), 0);
        check_recovered(before);
        free(before);
}

/* An operator's sqlite3 holds the write lock: each write waits keyd's busy timeout, then fails. Before, the lock
 * reached the API as -EBUSY, which it answers 409 "published less than prepublish ago" for a rotation. */
Test(storage, locked) {
        start(NULL);
        char *before = mint();
        sqlite3 *h = NULL;

        cr_assert_eq(sqlite3_open_v2(db, &h, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
        cr_assert_eq(sqlite3_exec(h, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK, "%s", sqlite3_errmsg(h));
        check_fault("database is locked by another process", before);
        cr_assert_eq(sqlite3_exec(h, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(h);
        check_recovered(before);
        free(before);
}
