/* SPDX-License-Identifier: MIT */
/* The audit log kept for years, with the real daemon and keydctl: export the start of the log to a segment sealed by a
 * signed checkpoint, prune only what was exported, verify the kept chain from its anchor (across restarts, whose
 * checkpoints are signed by a key whose records were pruned) and the segments offline; tampered segments and
 * unexported prunes are refused. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/macro.h"
#include "tests/helpers/test-api.h"
#include "tests/helpers/test-daemon.h"
#include "tests/helpers/test-util.h"

static TestToken tok;
static TestDaemon d = { .notify_fd = -1 };
static char sock[512], anchor[512], seg1[512], seg2[512];

static void setup(void) {
        test_token_setup(&tok);
        test_daemon_socket(&tok, sock, sizeof sock);
        snprintf(anchor, sizeof anchor, "%s/anchor.jsonl", tok.dir);
        snprintf(seg1, sizeof seg1, "%s/segment-1.jsonl", tok.dir);
        snprintf(seg2, sizeof seg2, "%s/segment-2.jsonl", tok.dir);
}

static void teardown(void) {
        test_daemon_teardown(&d, &tok);
}

TestSuite(audit_retention, .init = setup, .fini = teardown, .timeout = 180);

static void start(void) {
        char rings[2048];
        snprintf(rings, sizeof rings,
                 "[audit]\nanchor-file = %s\n\n[keyring default]\nkind = issuer\nalg = ES256\nsign-users = root\n"
                 "rotation-period = 1h\nprepublish = 10m\ntoken-ttl-max = 10m\ndefault-ttl = 5m\n",
                 anchor);
        test_daemon_start_rings(&d, &tok, rings);
}

static void stop(void) {
        test_daemon_stop_clean(&d);
        test_daemon_done(&d);
}

static void mint(int n) {
        for (int i = 0; i < n; i++)
                json_decref(test_api_expect(sock, "POST", "/v1/keyrings/default/tokens", "{\"sub\":\"agent-7\"}", 201));
}

/* keydctl ARGS (a format) against the daemon: the exit status, the output (stdout and stderr) in out. */
_printf_(3, 4) static int keydctl(char *out, size_t size, const char *fmt, ...) {
        char args[2048], cmd[4096];
        va_list ap;
        int status;
        va_start(ap, fmt);
        vsnprintf(args, sizeof args, fmt, ap);
        va_end(ap);
        snprintf(cmd, sizeof cmd, "%s --socket %s %s 2>&1",
                 getenv("KEYD_TEST_KEYDCTL") ?: KEYD_TEST_BUILDDIR "/keydctl", sock, args);
        char *text = test_run(cmd, &status);
        snprintf(out, size, "%s", text);
        free(text);
        cr_assert(WIFEXITED(status), "%s", cmd);
        return WEXITSTATUS(status);
}

static uint64_t first_seq(void) {
        json_t *j = test_api_expect(sock, "GET", "/v1/audit?after=0&limit=1", NULL, 200);
        uint64_t seq = (uint64_t) json_integer_value(json_object_get(json_array_get(json_object_get(j, "records"), 0),
                                                                     "seq"));
        json_decref(j);
        return seq;
}

static uint64_t head_seq(void) {
        json_t *j = test_api_audit_verify(sock);
        uint64_t seq = (uint64_t) json_integer_value(json_object_get(j, "head_seq"));
        json_decref(j);
        return seq;
}

/* The last record of action: a new reference, asserted to be there. */
static json_t *last_record(const char *action) {
        char path[128];
        snprintf(path, sizeof path, "/v1/audit?order=desc&limit=1&action=%s", action);
        json_t *j = test_api_expect(sock, "GET", path, NULL, 200);
        json_t *rec = json_incref(json_array_get(json_object_get(j, "records"), 0));
        json_decref(j);
        cr_assert_not_null(rec, "no %s record", action);
        return rec;
}

/* Replace the first occurrence of from with to in file (same length or not). */
static void file_replace(const char *path, const char *from, const char *to) {
        char *text = test_read_file(path, NULL), *p = strstr(text, from);
        cr_assert_not_null(p, "%s has no %s", path, from);
        FILE *f = fopen(path, "we");
        cr_assert_not_null(f);
        fwrite(text, 1, (size_t) (p - text), f);
        fputs(to, f);
        fputs(p + strlen(from), f);
        fclose(f);
        free(text);
}

Test(audit_retention, export_prune_verify) {
        char out[16384];
        start();
        mint(6);
        uint64_t before = head_seq() - 2; /* the last two records stay */

        /* Nothing exported: prune is refused, and nothing is removed. */
        int rc = keydctl(out, sizeof out, "audit prune --before %" PRIu64, before);
        cr_assert_eq(rc, 6, "a 409: keydctl's exit status for a conflict: %s", out);
        cr_assert(strstr(out, "not in an exported segment") && strstr(out, "conflict"), "%s", out);
        cr_assert_eq(first_seq(), 1);
        json_t *refused = last_record("api.refused");
        cr_assert_str_eq(json_string_value(json_object_get(json_object_get(refused, "detail"), "route")),
                         "POST /v1/audit/prune");
        json_decref(refused);

        /* Export: a new file, sealed by a checkpoint signed now (none covers the segment's last record yet). */
        rc = keydctl(out, sizeof out, "audit export --before %" PRIu64 " %s", before, seg1);
        cr_assert_eq(rc, 0, "%s", out);
        cr_assert(strstr(out, "(signed now)"), "%s", out);
        struct stat st;
        cr_assert_eq(stat(seg1, &st), 0);
        cr_assert_eq(st.st_mode & 07777, 0600);
        json_t *exp = last_record("audit.export");
        json_t *detail = json_object_get(exp, "detail");
        cr_assert_eq(json_integer_value(json_object_get(detail, "first")), 1);
        cr_assert_eq((uint64_t) json_integer_value(json_object_get(detail, "last")), before - 1);
        cr_assert_str_eq(json_string_value(json_object_get(exp, "comm")), "keydctl");
        json_decref(exp);
        rc = keydctl(out, sizeof out, "audit export --before %" PRIu64 " %s", before, seg1);
        cr_assert_eq(rc, 1, "never over a file: %s", out);

        /* The segment verifies on its own (the key from keyd). */
        rc = keydctl(out, sizeof out, "audit verify --segment %s", seg1);
        cr_assert_eq(rc, 0, "%s", out);
        cr_assert(strstr(out, "verified: records 1 to"), "%s", out);

        /* Prune what was exported: audited, the log starts at before, and the kept chain verifies from there. */
        rc = keydctl(out, sizeof out, "audit prune --before %" PRIu64, before);
        cr_assert_eq(rc, 0, "%s", out);
        cr_assert(strstr(out, "Pruned"), "%s", out);
        cr_assert_eq(first_seq(), before);
        json_t *p = last_record("audit.prune");
        cr_assert_eq(json_integer_value(json_object_get(p, "uid")), 0);
        cr_assert_str_eq(json_string_value(json_object_get(p, "comm")), "keydctl");
        cr_assert_eq((uint64_t) json_integer_value(json_object_get(json_object_get(p, "detail"), "anchor_seq")),
                     before - 1);
        json_decref(p);
        json_t *v = test_api_audit_verify(sock);
        cr_assert_eq((uint64_t) json_integer_value(json_object_get(v, "first_seq")), before);
        cr_assert_eq((uint64_t) json_integer_value(json_object_get(v, "anchor_seq")), before - 1);
        json_decref(v);
        rc = keydctl(out, sizeof out, "audit verify");
        cr_assert_eq(rc, 0, "%s", out);
        cr_assert(strstr(out, "pruned before"), "%s", out);
        /* Pruning again is nothing to do. */
        rc = keydctl(out, sizeof out, "audit prune --before %" PRIu64, before);
        cr_assert_eq(rc, 0, "%s", out);
        cr_assert(strstr(out, "Nothing to prune"), "%s", out);

        /* The segment joins what keyd keeps. */
        rc = keydctl(out, sizeof out, "audit verify --segment %s", seg1);
        cr_assert_eq(rc, 0, "%s", out);
        cr_assert(strstr(out, "joins"), "%s", out);

        /* Across a restart: the checkpoints at stop and start are signed by the key whose records were pruned. */
        mint(2);
        stop();
        start();
        mint(1);
        v = test_api_audit_verify(sock);
        cr_assert_gt(json_integer_value(json_object_get(v, "checkpoint_seq")), (json_int_t) before);
        json_decref(v);

        /* The anchors: those of pruned records need the segment; with it, all match. */
        rc = keydctl(out, sizeof out, "audit verify --anchor %s", anchor);
        cr_assert_eq(rc, 1, "%s", out);
        cr_assert(strstr(out, "was pruned from keyd"), "%s", out);
        rc = keydctl(out, sizeof out, "audit verify --anchor %s --segment %s", anchor, seg1);
        cr_assert_eq(rc, 0, "%s", out);
        cr_assert(strstr(out, "Anchors verified"), "%s", out);

        /* A second segment, from where the first ended, by time: up to now. */
        time_t now = time(NULL) + 5;
        char iso[64];
        strftime(iso, sizeof iso, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
        rc = keydctl(out, sizeof out, "audit export --before %s %s", iso, seg2);
        cr_assert_eq(rc, 0, "%s", out);
        rc = keydctl(out, sizeof out, "audit verify --segment %s %s", seg2, seg1);
        cr_assert_eq(rc, 0, "%s", out);
        cr_assert(strstr(out, "segment-2.jsonl (from record") && strstr(out, "joins"), "%s", out);
        test_api_audit_verify(sock);
}

Test(audit_retention, tampered_segments_do_not_verify) {
        char out[16384], jwks[600];
        start();
        mint(4);
        uint64_t before = head_seq();
        int rc = keydctl(out, sizeof out, "audit export --before %" PRIu64 " %s", before, seg1);
        cr_assert_eq(rc, 0, "%s", out);

        /* Offline: the key from a JWKS saved from the public endpoint, keyd gone. */
        json_t *j = test_api_expect(sock, "GET", "/v1/keyrings/default/jwks", NULL, 200);
        snprintf(jwks, sizeof jwks, "%s/jwks.json", tok.dir);
        char *text = json_dumps(j, JSON_COMPACT);
        free(test_token_write_file(&tok, "jwks.json", text));
        free(text);
        json_decref(j);
        stop();
        rc = keydctl(out, sizeof out, "audit verify --segment --jwks %s %s", jwks, seg1);
        cr_assert_eq(rc, 0, "%s", out);

        /* A record changed: its hash does not match. */
        char *saved = test_read_file(seg1, NULL);
        file_replace(seg1, "\"comm\":\"test-audit-rete\"", "\"comm\":\"forged-command!!\"");
        rc = keydctl(out, sizeof out, "audit verify --segment --jwks %s %s", jwks, seg1);
        cr_assert_eq(rc, 1, "%s", out);
        cr_assert(strstr(out, "does not match its hash"), "%s", out);
        free(test_token_write_file(&tok, "segment-1.jsonl", saved));

        /* A record removed: a gap. */
        char *line3 = strstr(saved, "\n{\"seq\":3,");
        cr_assert_not_null(line3);
        char *line3_end = strchr(line3 + 1, '\n');
        char *cut = strndup(line3, (size_t) (line3_end - line3));
        file_replace(seg1, cut, "");
        free(cut);
        rc = keydctl(out, sizeof out, "audit verify --segment --jwks %s %s", jwks, seg1);
        cr_assert_eq(rc, 1, "%s", out);
        cr_assert(strstr(out, "record 3 is missing"), "%s", out);
        free(test_token_write_file(&tok, "segment-1.jsonl", saved));

        /* The checkpoint's signature: a character in its middle. */
        char *jws = strstr(saved, "\"jws\":\"");
        cr_assert_not_null(jws);
        char *end = strchr(jws + 7, '"');
        char old[16], new[16];
        snprintf(old, sizeof old, "%.11s\"", end - 11);
        snprintf(new, sizeof new, "%c%.10s\"", end[-11] == 'A' ? 'B' : 'A', end - 10);
        file_replace(seg1, old, new);
        rc = keydctl(out, sizeof out, "audit verify --segment --jwks %s %s", jwks, seg1);
        cr_assert_eq(rc, 1, "%s", out);
        cr_assert(strstr(out, "signature"), "%s", out);
        free(test_token_write_file(&tok, "segment-1.jsonl", saved));

        /* A key that is not the one the kid names. */
        free(test_token_write_file(&tok, "jwks.json", "{\"keys\":[]}"));
        rc = keydctl(out, sizeof out, "audit verify --segment --jwks %s %s", jwks, seg1);
        cr_assert_eq(rc, 1, "%s", out);
        cr_assert(strstr(out, "not in the JWKS"), "%s", out);
        free(saved);
}
