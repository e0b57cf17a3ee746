/* SPDX-License-Identifier: MIT */
/* A network HSM fails: its sessions vanish, it forgets the login, it errs, it goes away, it hangs, it is slow. The
 * real keyd on a real SoftHSM2 token behind the PKCS#11 shim (tests/shim), with faults armed while it runs: what a
 * caller gets while the fault lasts, what /healthz says, that keyd comes back by itself once the fault clears, and
 * that every token minted across it verifies with the key that was active. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <limits.h>
#include <p11-kit/pkcs11.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/time-util.h"
#include "tests/helpers/test-api.h"
#include "tests/helpers/test-daemon.h"
#include "tests/helpers/test-shim.h"
#include "tests/helpers/test-util.h"

static TestToken tok;
static TestShim shim;
static TestDaemon d = { .notify_fd = -1 };
static char sock[512];

/* Short timeouts, so that a hang costs the test a second per call. */
static const char *CONFIG = "[token]\nsign-timeout = 1s\nsession-wait = 1s\nmax-sessions = 8\n\n"
                            "[keyring default]\nkind = issuer\nalg = ES256\nissuer = https://issuer.test\n"
                            "rotation-period = 1h\nprepublish = 10m\ntoken-ttl-max = 10m\ndefault-ttl = 5m\n"
                            "sign-users = root\n";

#define MAX_MINTED 256
static struct {
        char *token, *kid;
} minted[MAX_MINTED];
static size_t n_minted;

static void setup(void) {
        test_token_setup(&tok);
        test_shim_use(&shim, &tok);
        test_daemon_socket(&tok, sock, sizeof sock);
        test_daemon_start_rings(&d, &tok, CONFIG);
}

static void teardown(void) {
        test_shim_clear_fault(&shim);
        test_shim_set_hang(&shim, false);
        test_daemon_done(&d);
        for (size_t i = 0; i < n_minted; i++)
                free(minted[i].token), free(minted[i].kid);
        n_minted = 0;
        test_shim_teardown(&shim);
        test_token_teardown(&tok);
}

TestSuite(faults, .init = setup, .fini = teardown, .timeout = 240);

/* POST a mint: its status; a minted token is kept with its kid, for verify_all(). */
static long try_mint(char **ret_error) {
        long status = 0;
        json_t *j = test_api(sock, "POST", "/v1/keyrings/default/tokens", "{\"sub\":\"agent-1\"}", &status);
        if (status == 201 && n_minted < MAX_MINTED) {
                minted[n_minted].token = strdup(json_string_value(json_object_get(j, "token")));
                minted[n_minted].kid = strdup(json_string_value(json_object_get(j, "kid")));
                n_minted++;
        }
        if (ret_error)
                *ret_error = j && json_is_string(json_object_get(j, "error"))
                                     ? strdup(json_string_value(json_object_get(j, "error")))
                                     : NULL;
        json_decref(j);
        return status;
}

static void expect_mint(long want, const char *error) {
        char *got = NULL;
        long status = try_mint(&got);
        cr_assert_eq(status, want, "mint: %ld, want %ld (%s)", status, want, got ?: "-");
        if (error)
                cr_assert_str_eq(got ?: "", error);
        free(got);
}

/* /healthz: its status code, and the token's "up" and "reason". */
static long healthz(bool *ret_up, char *reason, size_t size) {
        long status = 0;
        json_t *j = test_api(sock, "GET", "/healthz", NULL, &status);
        json_t *token = json_object_get(j, "token");
        cr_assert(json_is_object(token), "/healthz has a token member");
        *ret_up = json_is_true(json_object_get(token, "up"));
        if (reason)
                snprintf(reason, size, "%s", json_string_value(json_object_get(token, "reason")) ?: "");
        json_decref(j);
        return status;
}

static void expect_down(const char *in_reason) {
        char reason[256];
        bool up = true;
        long status = healthz(&up, reason, sizeof reason);
        cr_assert_eq(status, 503, "/healthz while the token is down: %ld", status);
        cr_assert(!up);
        if (in_reason)
                cr_assert(strstr(reason, in_reason), "the reason names %s: %s", in_reason, reason);
}

/* The value of one sample in /metrics ("keyd_token_up", "keyd_pkcs11_errors_total{function=...}"), -1 if absent. */
static double metric(const char *sample) {
        long status = 0;
        char *text = test_api_raw(sock, "GET", "/metrics", NULL, NULL, &status);
        double v = -1;
        cr_assert_eq(status, 200);
        size_t n = strlen(sample);
        for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
                if (strncmp(p, sample, n) == 0 && p[n] == ' ')
                        v = strtod(p + n + 1, NULL);
        free(text);
        return v;
}

/* Verify and JWKS answer from memory while the token cannot sign. */
static void expect_verify_and_jwks_work(void) {
        cr_assert_gt(n_minted, 0);
        test_api_expect_valid(sock, minted[0].token, NULL);
        json_decref(test_api_expect(sock, "GET", "/v1/keyrings/default/jwks", NULL, 200));
}

/* Poll until a mint succeeds and /healthz is 200 again; the time it took after the fault cleared, in ms. */
static long expect_recovery(void) {
        usec_t t0 = now_monotonic(), deadline = t0 + 20 * USEC_PER_SEC;
        long status = 0;
        bool up = false;
        while (now_monotonic() < deadline) {
                status = try_mint(NULL);
                if (status == 201 && healthz(&up, NULL, 0) == 200 && up)
                        break;
                usleep(50 * 1000);
        }
        cr_assert_eq(status, 201, "keyd did not recover by itself: mint %ld", status);
        cr_assert(up, "/healthz says the token is up again");
        long ms = (long) ((now_monotonic() - t0) / USEC_PER_MSEC);
        cr_log_info("recovered %ld ms after the fault cleared", ms);
        return ms;
}

/* Every token minted across the fault verifies, and was signed by the key active before it: keyd never signed
 * with another key. */
static void verify_all(const char *active_kid) {
        for (size_t i = 0; i < n_minted; i++) {
                test_api_expect_valid(sock, minted[i].token, NULL);
                cr_assert_str_eq(minted[i].kid, active_kid, "token %zu was signed by the active key", i);
        }
}

static bool hsm_rv_is_device_level(unsigned long rv) {
        return rv == CKR_DEVICE_ERROR || rv == CKR_DEVICE_REMOVED || rv == CKR_TOKEN_NOT_PRESENT;
}

/* A fault that takes the token down until it clears: 503 token_unavailable at once, /healthz 503 with the reason,
 * verify and JWKS from memory; back by itself, re-initialised. */
static void token_down_and_back(P11ShimFunction fn, unsigned long rv, const char *reason) {
        char *kid = test_api_active_kid(sock, "default");
        expect_mint(201, NULL);
        uint64_t inits = test_shim_calls(&shim, P11SHIM_FN_INITIALIZE);

        test_shim_fault(&shim, fn, rv, -1);
        expect_mint(503, "token_unavailable");
        if (!hsm_rv_is_device_level(rv))
                for (int i = 0; i < 2; i++)
                        expect_mint(503, "token_unavailable"); /* down after three in a row */
        expect_down(reason);
        for (int i = 0; i < 5; i++)
                expect_mint(503, "token_unavailable"); /* at once: no queue */
        expect_verify_and_jwks_work();
        cr_assert(test_daemon_wait_notify(&d, "TOKEN UNAVAILABLE", 5000, NULL, 0), "STATUS= says so");
        json_decref(test_api_expect(sock, "GET", "/v1/keyrings/default", NULL, 200));
        cr_assert_eq(metric("keyd_token_up"), 0);
        char errors[128];
        snprintf(errors, sizeof errors, "keyd_pkcs11_errors_total{function=\"%s\",rv=\"%s\"}",
                 fn == P11SHIM_FN_SIGN_INIT || fn == P11SHIM_FN_ALL ? "C_SignInit" : "C_Sign", reason);
        if (strncmp(reason, "CKR_", 4) == 0)
                cr_assert_geq(metric(errors), 1, "%s is counted", errors);

        test_shim_clear_fault(&shim);
        expect_recovery();
        cr_assert_gt(test_shim_calls(&shim, P11SHIM_FN_INITIALIZE), inits, "the module was initialised again");
        cr_assert_eq(metric("keyd_token_up"), 1);
        cr_assert_geq(metric("keyd_token_reinit_total"), 1);
        cr_assert_geq(metric("keyd_pkcs11_sign_seconds_count{alg=\"ES256\"}"), 3);
        for (int i = 0; i < 3; i++)
                expect_mint(201, NULL);
        verify_all(kid);
        char *now = test_api_active_kid(sock, "default");
        cr_assert_str_eq(now, kid, "no rotation while the token was down");
        free(now);
        free(kid);
}

Test(faults, device_error_from_sign) {
        token_down_and_back(P11SHIM_FN_SIGN, CKR_DEVICE_ERROR, "CKR_DEVICE_ERROR");
}

Test(faults, device_error_from_sign_init) {
        token_down_and_back(P11SHIM_FN_SIGN_INIT, CKR_DEVICE_ERROR, "CKR_DEVICE_ERROR");
}

Test(faults, token_not_present) {
        token_down_and_back(P11SHIM_FN_ALL, CKR_TOKEN_NOT_PRESENT, "CKR_TOKEN_NOT_PRESENT");
}

Test(faults, device_removed) {
        token_down_and_back(P11SHIM_FN_ALL, CKR_DEVICE_REMOVED, "CKR_DEVICE_REMOVED");
}

/* An error that says nothing about the device, again and again: down after a few, back once it stops. */
Test(faults, repeated_failures) {
        token_down_and_back(P11SHIM_FN_SIGN, CKR_FUNCTION_FAILED, "in a row");
}

/* A lost session or login costs the caller nothing: the session is discarded, another opened, the login redone. */
static void transparent(P11ShimFunction fn, unsigned long rv) {
        char *kid = test_api_active_kid(sock, "default");
        expect_mint(201, NULL);
        uint64_t logins = test_shim_calls(&shim, P11SHIM_FN_LOGIN);
        uint64_t injected = test_shim_get(&shim, faults_injected);

        test_shim_fault(&shim, fn, rv, 1);
        expect_mint(201, NULL);
        cr_assert_eq(test_shim_get(&shim, faults_injected), injected + 1, "the fault was injected");
        for (int i = 0; i < 20; i++)
                expect_mint(201, NULL);
        bool up = false;
        cr_assert_eq(healthz(&up, NULL, 0), 200);
        cr_assert(up);
        if (rv == CKR_USER_NOT_LOGGED_IN)
                cr_assert_gt(test_shim_calls(&shim, P11SHIM_FN_LOGIN), logins, "keyd logged in again");
        verify_all(kid);
        free(kid);
}

Test(faults, session_handle_invalid) {
        transparent(P11SHIM_FN_SIGN, CKR_SESSION_HANDLE_INVALID);
}

Test(faults, session_closed) {
        transparent(P11SHIM_FN_SIGN, CKR_SESSION_CLOSED);
}

Test(faults, user_not_logged_in) {
        transparent(P11SHIM_FN_SIGN, CKR_USER_NOT_LOGGED_IN);
}

/* One device error on C_Sign leaves that session's operation active in the token: before the fix every later
 * C_SignInit on it failed with CKR_OPERATION_ACTIVE, and keyd answered 503 long after the fault was gone. */
Test(faults, one_device_error_then_signing_goes_on) {
        char *kid = test_api_active_kid(sock, "default");
        expect_mint(201, NULL);
        test_shim_fault(&shim, P11SHIM_FN_SIGN, CKR_DEVICE_ERROR, 1);
        expect_mint(503, "token_unavailable");
        expect_recovery();
        for (int i = 0; i < 30; i++)
                expect_mint(201, NULL);
        verify_all(kid);
        free(kid);
}

/* A C_Sign that never returns: the caller gets 503 after sign-timeout, each stuck call costs one session, after a
 * few the token is down and callers get 503 at once; released, keyd comes back. */
Test(faults, hang) {
        char *kid = test_api_active_kid(sock, "default");
        expect_mint(201, NULL);

        test_shim_set_hang(&shim, true);
        for (int i = 0; i < 3; i++)
                expect_mint(503, "token_unavailable");
        cr_assert(test_shim_wait_hung(&shim, 3, 5000), "three calls stuck in the token");
        expect_down("sign-timeout");
        char *error = NULL;
        for (int i = 0; i < 5; i++) {
                cr_assert_eq(try_mint(&error), 503);
                free(error);
        }
        cr_assert_eq(test_shim_get(&shim, hung), 3, "no more calls reach a token that is down");
        expect_verify_and_jwks_work();

        test_shim_set_hang(&shim, false);
        expect_recovery();
        verify_all(kid);
        free(kid);
}

/* A slow keygen during a rotation: signing goes on with the active key meanwhile, the rotation completes. */
static void *rotate(void *arg) {
        long status = 0;
        (void) arg;
        json_decref(test_api(sock, "POST", "/v1/keyrings/default/rotate", "{\"force\":true}", &status));
        return (void *) (intptr_t) status;
}

Test(faults, slow_keygen_during_rotation) {
        char *kid = test_api_active_kid(sock, "default");
        pthread_t t;
        void *status;

        test_shim_set_keygen_latency(&shim, 3000 * 1000);
        uint64_t keygens = test_shim_calls(&shim, P11SHIM_FN_GENERATE_KEY_PAIR);
        cr_assert_eq(pthread_create(&t, NULL, rotate, NULL), 0);
        usec_t deadline = now_monotonic() + 10 * USEC_PER_SEC;
        while (test_shim_calls(&shim, P11SHIM_FN_GENERATE_KEY_PAIR) == keygens && now_monotonic() < deadline)
                usleep(10 * 1000);
        cr_assert_gt(test_shim_calls(&shim, P11SHIM_FN_GENERATE_KEY_PAIR), keygens, "the rotation generates a key");
        /* The keygen sleeps in the token now: minting goes on. */
        size_t before = n_minted;
        for (int i = 0; i < 10; i++)
                expect_mint(201, NULL);
        cr_assert_eq(test_shim_get(&shim, delayed), 1, "the keygen was still in the token");
        cr_assert_eq(pthread_join(t, &status), 0);
        cr_assert_eq((intptr_t) status, 200, "the rotation completed");
        for (size_t i = before; i < n_minted; i++)
                cr_assert_str_eq(minted[i].kid, kid, "signed by the active key during the rotation");
        test_shim_set_keygen_latency(&shim, 0);
        bool up = false;
        cr_assert_eq(healthz(&up, NULL, 0), 200);
        for (size_t i = 0; i < n_minted; i++)
                test_api_expect_valid(sock, minted[i].token, NULL);
        free(kid);
}

/* A start with many keyrings costs the token one read per object: the listing reads each object's class, label, id
 * and, for a private key, what opening and checking it needs, in one C_GetAttributeValue; opening the active keys
 * and the reconcile's checks read nothing more (a SoftHSM2 token opens an object's file at every call, and 10,000
 * keyrings are 40,000 objects). Before, every key cost five more calls. */
Test(faults, a_start_reads_each_object_once) {
        enum { AGENTS = 12 };
        char body[128], config[PATH_MAX];
        long status = 0;

        for (int i = 0; i < AGENTS; i++) {
                snprintf(body, sizeof body, "{\"name\":\"agent-%d\",\"kind\":\"agent\",\"owner_uid\":0}", i);
                json_decref(test_api(sock, "POST", "/v1/keyrings", body, &status));
                cr_assert_eq(status, 201, "creating agent-%d: %ld", i, status);
        }
        test_daemon_stop_clean(&d);
        test_daemon_done(&d);

        /* Counting from here: the restart. */
        for (int fn = 0; fn < _P11SHIM_FN_MAX; fn++)
                __atomic_store_n(&shim.ctl->calls[fn], 0, __ATOMIC_RELEASE);
        snprintf(config, sizeof config, "%s/keyd.conf", tok.dir);
        test_daemon_start_ready(&d, &tok, config);
        uint64_t objects = 4 * (AGENTS + 1); /* two keys per keyring, a private and a public object each */
        uint64_t reads = test_shim_calls(&shim, P11SHIM_FN_GET_ATTRIBUTE_VALUE);
        /* The slack: the login's and the checkpoint's few calls, not one per key. */
        cr_assert_leq(reads, objects + 8, "%" PRIu64 " attribute reads for %" PRIu64 " objects", reads, objects);
        cr_assert_eq(test_shim_calls(&shim, P11SHIM_FN_FIND_OBJECTS_INIT), 1, "one search: the listing");

        /* And every keyring signs with what the listing read. */
        expect_mint(201, NULL);
        snprintf(body, sizeof body, "/v1/keyrings/agent-%d/sign", AGENTS - 1);
        json_decref(test_api(sock, "POST", body, "{\"data\":\"aGVsbG8\"}", &status));
        cr_assert_eq(status, 200, "agent-%d signs after the restart: %ld", AGENTS - 1, status);
}
