/* SPDX-License-Identifier: MIT */
#pragma once

#include <errno.h>
#include <stdint.h>

/* p11shim.so: a PKCS#11 module for keyd's tests and benchmarks that stands in for a network HSM. It forwards every
 * function to a real module ($P11SHIM_MODULE, default SoftHSM2) and adds what a network HSM does and SoftHSM2 does
 * not: wall-clock latency (a sleep, no CPU) on C_Sign and C_GenerateKeyPair, a C_Sign that hangs until released,
 * and injected errors, with what the token does after them (a closed session, a lost login).
 *
 * Control, either:
 * - $P11SHIM_CONTROL=PATH: a file holding one P11ShimControl (made by the test, see tests/helpers/test-shim.h),
 *   mapped MAP_SHARED, so that a test changes the latency and the faults of a running keyd at any moment and reads
 *   its counters. The shim refuses to load (C_GetFunctionList fails) if the file is missing, too short, or of
 *   another magic or version: a test must not run unknowingly without its faults.
 * - otherwise $P11SHIM_SIGN_US=N: a fixed C_Sign latency of N µs (at most 10 s), for the benchmark; the counters
 *   are kept in the process and nobody reads them.
 *
 * Every field is read by the shim at every call with __atomic loads and counted with __atomic adds; a writer uses
 * __atomic stores (test-shim.c does). */

#define P11SHIM_MAGIC UINT64_C(0x314d494853313150) /* "P11SHIM1" little-endian */
#define P11SHIM_VERSION 1

/* The functions of CK_FUNCTION_LIST, in its order (1-based: 0 is "none"), as indexes of calls[] and values of
 * fault_function. */
typedef enum P11ShimFunction {
        P11SHIM_FN_NONE,
        P11SHIM_FN_INITIALIZE,
        P11SHIM_FN_FINALIZE,
        P11SHIM_FN_GET_INFO,
        P11SHIM_FN_GET_FUNCTION_LIST,
        P11SHIM_FN_GET_SLOT_LIST,
        P11SHIM_FN_GET_SLOT_INFO,
        P11SHIM_FN_GET_TOKEN_INFO,
        P11SHIM_FN_GET_MECHANISM_LIST,
        P11SHIM_FN_GET_MECHANISM_INFO,
        P11SHIM_FN_INIT_TOKEN,
        P11SHIM_FN_INIT_PIN,
        P11SHIM_FN_SET_PIN,
        P11SHIM_FN_OPEN_SESSION,
        P11SHIM_FN_CLOSE_SESSION,
        P11SHIM_FN_CLOSE_ALL_SESSIONS,
        P11SHIM_FN_GET_SESSION_INFO,
        P11SHIM_FN_GET_OPERATION_STATE,
        P11SHIM_FN_SET_OPERATION_STATE,
        P11SHIM_FN_LOGIN,
        P11SHIM_FN_LOGOUT,
        P11SHIM_FN_CREATE_OBJECT,
        P11SHIM_FN_COPY_OBJECT,
        P11SHIM_FN_DESTROY_OBJECT,
        P11SHIM_FN_GET_OBJECT_SIZE,
        P11SHIM_FN_GET_ATTRIBUTE_VALUE,
        P11SHIM_FN_SET_ATTRIBUTE_VALUE,
        P11SHIM_FN_FIND_OBJECTS_INIT,
        P11SHIM_FN_FIND_OBJECTS,
        P11SHIM_FN_FIND_OBJECTS_FINAL,
        P11SHIM_FN_ENCRYPT_INIT,
        P11SHIM_FN_ENCRYPT,
        P11SHIM_FN_ENCRYPT_UPDATE,
        P11SHIM_FN_ENCRYPT_FINAL,
        P11SHIM_FN_DECRYPT_INIT,
        P11SHIM_FN_DECRYPT,
        P11SHIM_FN_DECRYPT_UPDATE,
        P11SHIM_FN_DECRYPT_FINAL,
        P11SHIM_FN_DIGEST_INIT,
        P11SHIM_FN_DIGEST,
        P11SHIM_FN_DIGEST_UPDATE,
        P11SHIM_FN_DIGEST_KEY,
        P11SHIM_FN_DIGEST_FINAL,
        P11SHIM_FN_SIGN_INIT,
        P11SHIM_FN_SIGN,
        P11SHIM_FN_SIGN_UPDATE,
        P11SHIM_FN_SIGN_FINAL,
        P11SHIM_FN_SIGN_RECOVER_INIT,
        P11SHIM_FN_SIGN_RECOVER,
        P11SHIM_FN_VERIFY_INIT,
        P11SHIM_FN_VERIFY,
        P11SHIM_FN_VERIFY_UPDATE,
        P11SHIM_FN_VERIFY_FINAL,
        P11SHIM_FN_VERIFY_RECOVER_INIT,
        P11SHIM_FN_VERIFY_RECOVER,
        P11SHIM_FN_DIGEST_ENCRYPT_UPDATE,
        P11SHIM_FN_DECRYPT_DIGEST_UPDATE,
        P11SHIM_FN_SIGN_ENCRYPT_UPDATE,
        P11SHIM_FN_DECRYPT_VERIFY_UPDATE,
        P11SHIM_FN_GENERATE_KEY,
        P11SHIM_FN_GENERATE_KEY_PAIR,
        P11SHIM_FN_WRAP_KEY,
        P11SHIM_FN_UNWRAP_KEY,
        P11SHIM_FN_DERIVE_KEY,
        P11SHIM_FN_SEED_RANDOM,
        P11SHIM_FN_GENERATE_RANDOM,
        P11SHIM_FN_GET_FUNCTION_STATUS,
        P11SHIM_FN_CANCEL_FUNCTION,
        P11SHIM_FN_WAIT_FOR_SLOT_EVENT,
        /* fault_function only: every function except C_GetFunctionList, C_Initialize, C_Finalize and C_GetInfo (a
         * token that is gone: the module loads and initialises, and nothing else works). */
        P11SHIM_FN_ALL,
        _P11SHIM_FN_MAX,
        _P11SHIM_FN_INVALID = -EINVAL,
} P11ShimFunction;

/* What the shim does on an injected fault, by fault_rv:
 * - it never calls the real function: a faulted C_Sign leaves the session's signing operation active, as a token
 *   whose answer was lost may, and the next C_SignInit on that session fails with CKR_OPERATION_ACTIVE;
 * - CKR_SESSION_CLOSED, CKR_SESSION_HANDLE_INVALID: the session is really closed in the real module first;
 * - CKR_USER_NOT_LOGGED_IN: the user is really logged out first (C_Logout on that session: SoftHSM2 logs out the
 *   whole application);
 * - anything else (CKR_TOKEN_NOT_PRESENT, CKR_DEVICE_REMOVED, CKR_DEVICE_ERROR, ...): only the error. */
typedef struct P11ShimControl {
        /* Written once by whoever makes the file. */
        uint64_t magic;   /* P11SHIM_MAGIC */
        uint32_t version; /* P11SHIM_VERSION */
        uint32_t size;    /* sizeof(P11ShimControl) */

        /* Set by the test at any time. */
        uint32_t sign_latency_us;   /* slept before a C_Sign that makes a signature (not a length query) */
        uint32_t keygen_latency_us; /* slept before C_GenerateKeyPair */
        uint32_t hang;              /* while nonzero, C_Sign blocks (polling every 1 ms), then goes on as usual */
        int32_t fault_function;     /* P11ShimFunction: where to inject */
        uint64_t fault_rv;          /* the CK_RV to return */
        /* The switch of the fault: > 0 inject this many more, then stop (counted down by the shim); < 0 inject at
         * every call until cleared; 0 none. Set it last when arming a fault (after function and rv) and clear it
         * first. */
        int64_t fault_count;

        /* Counted by the shim. */
        uint64_t hung;                   /* threads blocked in C_Sign by hang right now */
        uint64_t faults_injected;        /* every function */
        uint64_t delayed;                /* calls slept before by sign_latency_us or keygen_latency_us */
        uint64_t delayed_us;             /* the sum of their latencies */
        uint64_t calls[_P11SHIM_FN_MAX]; /* calls received per function (faulted ones too); [P11SHIM_FN_INITIALIZE]
                                          * and [P11SHIM_FN_FINALIZE] count the module's initialisations */
        uint64_t reserved[32];           /* room for fields of later versions */
} P11ShimControl;
