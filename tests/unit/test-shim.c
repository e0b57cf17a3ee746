/* SPDX-License-Identifier: MIT */
/* The PKCS#11 shim (tests/shim/p11shim.h) through keyd's token layer, and through its own function list where the
 * token's state after a fault is the point. What keyd then does about a fault is the token layer's business and its
 * own tests': here only the first failure, the token's state and the shim's counters are checked. */
#include <criterion/criterion.h>
#include <unistd.h>
#include <dlfcn.h>
#include <p11-kit/pkcs11.h>
#include <pthread.h>

#include "pkcs11/hsm.h"
#include "tests/helpers/test-daemon.h"
#include "tests/helpers/test-shim.h"
#include "tests/helpers/test-token.h"

static TestToken tok;
static TestShim shim;
static Hsm *hsm;
static HsmKey *key;

static const uint8_t ID1[] = { 0x5a, 0x01 };
static const uint8_t ID2[] = { 0x5a, 0x02 };

static void setup(void) {
        test_token_setup(&tok);
        test_shim_use(&shim, &tok);
        hsm = test_token_open(&tok, 2);
        cr_assert_eq(hsm_generate(hsm, KEYD_ALG_ES256, 0, ID1, sizeof ID1, "keyd:test:5a01", &key), 0, "generate: %s",
                     hsm_last_error());
}

static void teardown(void) {
        hsm_key_free(key);
        hsm_close(hsm);
        test_shim_teardown(&shim);
        test_token_teardown(&tok);
}

TestSuite(shim, .init = setup, .fini = teardown, .timeout = 60);

static int sign(void) {
        uint8_t sig[HSM_SIG_MAX];
        return hsm_key_sign(key, "header.payload", 14, sig, sizeof sig);
}

/* The shim's function list as the token layer loaded it in this process: the same module, the same state. */
static CK_FUNCTION_LIST *shim_functions(void) {
        CK_FUNCTION_LIST *f = NULL;
        void *dl = dlopen(test_shim_module(), RTLD_NOW | RTLD_NOLOAD);
        cr_assert_not_null(dl, "the token layer has not loaded the shim");
        CK_C_GetFunctionList get = (CK_C_GetFunctionList) dlsym(dl, "C_GetFunctionList");
        cr_assert_not_null(get);
        cr_assert_eq(get(&f), CKR_OK);
        dlclose(dl);
        return f;
}

/* A session of our own on the test token, logged in (the login is the application's: the token layer's). */
static CK_SESSION_HANDLE raw_session(CK_FUNCTION_LIST *f) {
        CK_SLOT_ID slots[16];
        CK_ULONG n = 16;
        CK_SESSION_HANDLE s;

        cr_assert_eq(f->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
        for (CK_ULONG i = 0; i < n; i++) {
                CK_TOKEN_INFO ti;
                if (f->C_GetTokenInfo(slots[i], &ti) != CKR_OK ||
                    memcmp(ti.label, TEST_TOKEN_LABEL, strlen(TEST_TOKEN_LABEL)) != 0)
                        continue;
                cr_assert_eq(f->C_OpenSession(slots[i], CKF_SERIAL_SESSION, NULL, NULL, &s), CKR_OK);
                return s;
        }
        cr_assert_fail("no token %s", TEST_TOKEN_LABEL);
        return CK_INVALID_HANDLE;
}

static CK_RV raw_sign_init(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE s) {
        CK_MECHANISM mech = { .mechanism = CKM_ECDSA };
        unsigned long priv, pub;
        hsm_key_handles(key, &priv, &pub);
        return f->C_SignInit(s, &mech, priv);
}

static CK_RV raw_sign(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE s) {
        uint8_t digest[32] = { 0 }, sig[HSM_SIG_MAX];
        CK_ULONG len = sizeof sig;
        return f->C_Sign(s, digest, sizeof digest, sig, &len);
}

Test(shim, latency_is_counted) {
        uint64_t signs = test_shim_calls(&shim, P11SHIM_FN_SIGN);
        HsmKey *k2 = NULL;

        cr_assert_eq(test_shim_get(&shim, delayed), 0, "no latency is set by default");
        test_shim_set_sign_latency(&shim, 1000);
        for (int i = 0; i < 5; i++)
                cr_assert_eq(sign(), 64, "sign: %s", hsm_last_error());
        cr_assert_geq(test_shim_calls(&shim, P11SHIM_FN_SIGN) - signs, 5);
        cr_assert_eq(test_shim_get(&shim, delayed), 5, "every signature is delayed");
        cr_assert_eq(test_shim_get(&shim, delayed_us), 5000);

        test_shim_set_sign_latency(&shim, 0);
        cr_assert_eq(sign(), 64);
        cr_assert_eq(test_shim_get(&shim, delayed), 5, "latency 0 delays nothing");

        uint64_t keygens = test_shim_calls(&shim, P11SHIM_FN_GENERATE_KEY_PAIR);
        test_shim_set_keygen_latency(&shim, 2000);
        cr_assert_eq(hsm_generate(hsm, KEYD_ALG_ES256, 0, ID2, sizeof ID2, "keyd:test:5a02", &k2), 0);
        cr_assert_eq(test_shim_calls(&shim, P11SHIM_FN_GENERATE_KEY_PAIR), keygens + 1);
        cr_assert_eq(test_shim_get(&shim, delayed), 6);
        cr_assert_eq(test_shim_get(&shim, delayed_us), 7000);
        hsm_key_free(k2);
}

Test(shim, one_fault_is_injected_once) {
        /* In C_SignInit: the token layer tries once more on another session, which the fault no longer hits. */
        test_shim_fault(&shim, P11SHIM_FN_SIGN_INIT, CKR_DEVICE_MEMORY, 1);
        cr_assert_eq(sign(), 64, "signed on another session: %s", hsm_last_error());
        cr_assert_eq(test_shim_get(&shim, faults_injected), 1);
        cr_assert_eq(test_shim_get(&shim, fault_count), 0, "the count is used up");
        for (int i = 0; i < 3; i++)
                cr_assert_eq(sign(), 64, "sign %d after the fault: %s", i, hsm_last_error());
        cr_assert_eq(test_shim_get(&shim, faults_injected), 1);
}

Test(shim, sign_fault_every_time_is_the_failure) {
        test_shim_fault(&shim, P11SHIM_FN_SIGN, CKR_FUNCTION_REJECTED, 2);
        cr_assert_eq(sign(), -ENODEV, "the token could not sign, even on another session");
        cr_assert_str_eq(hsm_last_error(), "CKR_FUNCTION_REJECTED");
        cr_assert_eq(test_shim_get(&shim, faults_injected), 2);
        /* Both sessions were discarded (their operations were left active): the next signature works. */
        cr_assert_eq(sign(), 64, "sign after the faults: %s", hsm_last_error());
        cr_assert_eq(test_shim_get(&shim, faults_injected), 2);
}

Test(shim, sign_fault_leaves_the_operation_active) {
        CK_FUNCTION_LIST *f = shim_functions();
        CK_SESSION_HANDLE s = raw_session(f);

        cr_assert_eq(raw_sign_init(f, s), CKR_OK);
        test_shim_fault(&shim, P11SHIM_FN_SIGN, CKR_DEVICE_ERROR, 1);
        cr_assert_eq(raw_sign(f, s), CKR_DEVICE_ERROR);
        cr_assert_eq(raw_sign_init(f, s), CKR_OPERATION_ACTIVE, "the real C_Sign was not called");
        cr_assert_eq(raw_sign(f, s), CKR_OK, "the operation is still there to finish");
        cr_assert_eq(raw_sign_init(f, s), CKR_OK);
        cr_assert_eq(raw_sign(f, s), CKR_OK);
        f->C_CloseSession(s);
}

Test(shim, session_closed_closes_the_session) {
        CK_FUNCTION_LIST *f = shim_functions();
        CK_SESSION_HANDLE s = raw_session(f);
        CK_SESSION_INFO info;

        cr_assert_eq(raw_sign_init(f, s), CKR_OK);
        test_shim_fault(&shim, P11SHIM_FN_SIGN, CKR_SESSION_CLOSED, 1);
        cr_assert_eq(raw_sign(f, s), CKR_SESSION_CLOSED);
        cr_assert_eq(f->C_GetSessionInfo(s, &info), CKR_SESSION_HANDLE_INVALID);
        cr_assert_eq(sign(), 64, "the token layer's own sessions are not touched");
}

Test(shim, user_not_logged_in_logs_out) {
        CK_FUNCTION_LIST *f = shim_functions();
        CK_SESSION_HANDLE s = raw_session(f);
        CK_SESSION_INFO info;

        cr_assert_eq(f->C_GetSessionInfo(s, &info), CKR_OK);
        cr_assert_eq(info.state, CKS_RO_USER_FUNCTIONS);
        test_shim_fault(&shim, P11SHIM_FN_SIGN_INIT, CKR_USER_NOT_LOGGED_IN, 1);
        cr_assert_eq(raw_sign_init(f, s), CKR_USER_NOT_LOGGED_IN);
        cr_assert_eq(f->C_GetSessionInfo(s, &info), CKR_OK);
        cr_assert_eq(info.state, CKS_RO_PUBLIC_SESSION, "the whole application is logged out");
        f->C_CloseSession(s);
}

Test(shim, token_not_present_fails_everything_until_cleared) {
        CK_FUNCTION_LIST *f = shim_functions();
        CK_ULONG n = 0;
        CK_INFO info;
        HsmKey *k2 = NULL;

        test_shim_fault(&shim, P11SHIM_FN_ALL, CKR_TOKEN_NOT_PRESENT, -1);
        /* Before the token layer notices (once it has, its recovery finalizes and initialises the module under
         * these raw calls). */
        cr_assert_eq(f->C_GetSlotList(CK_TRUE, NULL, &n), CKR_TOKEN_NOT_PRESENT);
        cr_assert_eq(f->C_GetInfo(&info), CKR_OK, "the module itself still answers");
        cr_assert_eq(sign(), -ENODEV);
        cr_assert_str_eq(hsm_last_error(), "CKR_TOKEN_NOT_PRESENT");
        cr_assert_eq(hsm_generate(hsm, KEYD_ALG_ES256, 0, ID2, sizeof ID2, "keyd:test:5a02", &k2), -ENODEV);
        uint64_t injected = test_shim_get(&shim, faults_injected);
        cr_assert_geq(injected, 2);

        /* A module initialised again (as a recovering keyd does) finds no token either. The token layer's own
         * recovery finalizes and initialises the module meanwhile, until it is closed: count from then on. */
        hsm_key_free(key);
        key = NULL;
        uint64_t finals = test_shim_calls(&shim, P11SHIM_FN_FINALIZE);
        hsm = hsm_close(hsm);
        cr_assert_gt(test_shim_calls(&shim, P11SHIM_FN_FINALIZE), finals, "closing finalizes the module");
        uint64_t inits = test_shim_calls(&shim, P11SHIM_FN_INITIALIZE);
        HsmConfig cfg = { .module = tok.module, .uri = tok.uri, .pin_file = tok.pin_file, .sessions = 2 };
        cr_assert_eq(hsm_open(&cfg, &hsm), -ENODEV);
        cr_assert_eq(test_shim_calls(&shim, P11SHIM_FN_INITIALIZE), inits + 1);
        cr_assert_gt(test_shim_get(&shim, faults_injected), injected);

        test_shim_clear_fault(&shim);
        hsm = test_token_open(&tok, 2);
        cr_assert_eq(hsm_key_open(hsm, KEYD_ALG_ES256, ID1, sizeof ID1, &key), 0);
        cr_assert_eq(sign(), 64, "sign after the token came back: %s", hsm_last_error());
}

static void *sign_thread(void *arg) {
        int *result = arg;
        __atomic_store_n(result, sign(), __ATOMIC_RELEASE);
        return NULL;
}

Test(shim, hang_blocks_sign_until_released) {
        int result = 1; /* no signature is 1 byte: still running */
        pthread_t t;

        test_shim_set_hang(&shim, true);
        cr_assert_eq(pthread_create(&t, NULL, sign_thread, &result), 0);
        cr_assert(test_shim_wait_hung(&shim, 1, 30000), "the signing thread never reached the hang");
        cr_assert_eq(test_shim_get(&shim, hung), 1);
        cr_assert_eq(__atomic_load_n(&result, __ATOMIC_ACQUIRE), 1, "hung, so not returned");
        test_shim_set_hang(&shim, false);
        pthread_join(t, NULL);
        cr_assert_eq(result, 64, "released, the sign goes on: %d", result);
        cr_assert_eq(test_shim_get(&shim, hung), 0);
}

/* The token goes down, and its re-initialisation hangs in the token (the probe signature): no other call waits for
 * it. Before the fix every admin call (a probe, a listing) queued behind the stuck re-initialisation, and so did the
 * event loop. */
Test(shim, a_hung_recovery_holds_up_no_caller) {
        HsmHealth th;
        HsmObject *objs = NULL;
        size_t n = 0;

        cr_assert_eq(hsm_index_load(hsm, "keyd:"), 0); /* as keyd does at start: the recovery probes with its keys */
        /* Gone: down, and every re-initialisation fails; then back, but hanging: the next one's probe signature
         * hangs in the token. */
        test_shim_fault(&shim, P11SHIM_FN_ALL, CKR_TOKEN_NOT_PRESENT, -1);
        cr_assert_eq(sign(), -ENODEV);
        test_shim_set_hang(&shim, true);
        test_shim_clear_fault(&shim);
        cr_assert(test_shim_wait_hung(&shim, 1, 30000), "the recovery's probe signature hangs");
        cr_assert_eq(hsm_key_probe(hsm, ID1, sizeof ID1), -ENODEV, "down: at once, not after the recovery");
        cr_assert_eq(hsm_list(hsm, "keyd:", &objs, &n), -ENODEV);
        cr_assert_eq(sign(), -ENODEV);
        hsm_health(hsm, &th);
        cr_assert(!th.up);

        test_shim_set_hang(&shim, false);
        for (int i = 0; i < 3000 && !th.up; i++) {
                usleep(10 * 1000);
                hsm_health(hsm, &th);
        }
        cr_assert(th.up, "back once the token answers: %s", th.reason);
        cr_assert_eq(sign(), 64);
}

/* Loading: the shim refuses a control it cannot trust, rather than run a test without its faults. */
static void load_setup(void) {
        test_token_setup(&tok);
        test_shim_use(&shim, &tok);
}

static void load_teardown(void) {
        hsm_close(hsm);
        test_shim_teardown(&shim);
        test_token_teardown(&tok);
}

TestSuite(shim_load, .init = load_setup, .fini = load_teardown, .timeout = 60);

static int open_shim(void) {
        HsmConfig cfg = { .module = tok.module, .uri = tok.uri, .pin_file = tok.pin_file, .sessions = 1 };
        return hsm_open(&cfg, &hsm);
}

Test(shim_load, bad_magic_is_refused) {
        __atomic_store_n(&shim.ctl->magic, 0, __ATOMIC_RELEASE);
        cr_assert_eq(open_shim(), -ENOEXEC);
}

Test(shim_load, missing_control_is_refused) {
        cr_assert_eq(setenv("P11SHIM_CONTROL", "/nonexistent/p11shim.ctl", 1), 0);
        cr_assert_eq(open_shim(), -ENOEXEC);
}

Test(shim_load, sign_us_without_control) {
        cr_assert_eq(unsetenv("P11SHIM_CONTROL"), 0);
        cr_assert_eq(setenv("P11SHIM_SIGN_US", "100", 1), 0);
        cr_assert_eq(open_shim(), 0, "%s", hsm_last_error());
        cr_assert_eq(hsm_generate(hsm, KEYD_ALG_ES256, 0, ID1, sizeof ID1, "keyd:test:5a01", &key), 0);
        cr_assert_eq(sign(), 64);
        hsm_key_free(key);
        key = NULL;
        cr_assert_eq(test_shim_get(&shim, delayed), 0, "the control file is not used");
}

Test(shim_load, bad_sign_us_is_refused) {
        cr_assert_eq(unsetenv("P11SHIM_CONTROL"), 0);
        cr_assert_eq(setenv("P11SHIM_SIGN_US", "2ms", 1), 0);
        cr_assert_eq(open_shim(), -ENOEXEC);
}

/* keyd itself on the shim, as an integration test would start it: the control reaches the daemon. */
Test(shim_load, keyd_runs_on_the_shim) {
        TestDaemon d;

        test_shim_set_keygen_latency(&shim, 1000);
        test_daemon_start_rings(&d, &tok,
                                "[keyring default]\nkind = issuer\nalg = ES256\nissuer = https://issuer.test\n");
        cr_assert_geq(test_shim_calls(&shim, P11SHIM_FN_INITIALIZE), 1);
        cr_assert_geq(test_shim_calls(&shim, P11SHIM_FN_GENERATE_KEY_PAIR), 2, "an active and a standby key");
        cr_assert_geq(test_shim_get(&shim, delayed), 2);
        test_daemon_stop_clean(&d);
        cr_assert_geq(test_shim_calls(&shim, P11SHIM_FN_FINALIZE), 1);
        test_daemon_done(&d);
}
