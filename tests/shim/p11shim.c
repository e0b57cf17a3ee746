/* SPDX-License-Identifier: MIT */
/* p11shim.so: a PKCS#11 module forwarding to a real one, with latency and faults (see p11shim.h). Built on its own
 * (-shared -fPIC), linked against nothing of keyd's. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <p11-kit/pkcs11.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tests/shim/p11shim.h"

#define SIGN_US_MAX 10000000 /* P11SHIM_SIGN_US: 10 s, more is a typo */

static pthread_once_t once = PTHREAD_ONCE_INIT;
static CK_RV setup_rv;
static CK_FUNCTION_LIST real; /* a copy of the real module's list */
static CK_FUNCTION_LIST shim; /* the same, with every function but C_GetFunctionList replaced by ours */
/* The mapped control file, or this process's own (P11SHIM_SIGN_US): never NULL once set up. */
static P11ShimControl own = { .magic = P11SHIM_MAGIC, .version = P11SHIM_VERSION, .size = sizeof(P11ShimControl) };
static P11ShimControl *ctl = &own;

#define LOAD(field) __atomic_load_n(&ctl->field, __ATOMIC_ACQUIRE)
#define COUNT(field, n) __atomic_add_fetch(&ctl->field, (n), __ATOMIC_RELAXED)

/* ---- faults, latency, hang ---- */

static bool fault_matches(P11ShimFunction fn) {
        int32_t f = LOAD(fault_function);
        if (f == (int32_t) fn)
                return true;
        /* A token that is gone still lets the module load and initialise: only the rest fails. */
        return f == P11SHIM_FN_ALL && fn != P11SHIM_FN_INITIALIZE && fn != P11SHIM_FN_FINALIZE &&
               fn != P11SHIM_FN_GET_INFO && fn != P11SHIM_FN_GET_FUNCTION_LIST;
}

/* Whether this call of fn is to fail: a positive fault_count is taken down by one, by one caller only. */
static bool take_fault(P11ShimFunction fn) {
        int64_t n = LOAD(fault_count);
        for (;;) {
                if (n == 0 || !fault_matches(fn))
                        return false;
                if (n < 0)
                        return true;
                if (__atomic_compare_exchange_n(&ctl->fault_count, &n, n - 1, false, __ATOMIC_ACQ_REL,
                                                __ATOMIC_ACQUIRE))
                        return true;
        }
}

/* The fault, with what the token does along with it (p11shim.h): the caller must cope with the token's state, not
 * only with the error. The real function is not called. */
static CK_RV inject(CK_SESSION_HANDLE session) {
        CK_RV rv = (CK_RV) LOAD(fault_rv);

        COUNT(faults_injected, 1);
        if (session != CK_INVALID_HANDLE) {
                if (rv == CKR_SESSION_CLOSED || rv == CKR_SESSION_HANDLE_INVALID)
                        (void) real.C_CloseSession(session);
                else if (rv == CKR_USER_NOT_LOGGED_IN)
                        (void) real.C_Logout(session);
        }
        return rv;
}

/* A call of fn on session (CK_INVALID_HANDLE: none) is counted; true, with the error in *ret_rv, if it is to fail. */
static bool faulted(P11ShimFunction fn, CK_SESSION_HANDLE session, CK_RV *ret_rv) {
        if (!take_fault(fn))
                return false;
        *ret_rv = inject(session);
        return true;
}

static void sleep_us(uint32_t us) {
        struct timespec t = { .tv_sec = us / 1000000, .tv_nsec = (long) (us % 1000000) * 1000L };
        while (nanosleep(&t, &t) < 0 && errno == EINTR)
                ;
}

/* Wall-clock time on the wire: the thread sleeps, the CPU is free, as with a network HSM. */
static void delay(uint32_t us) {
        if (us == 0)
                return;
        COUNT(delayed, 1);
        COUNT(delayed_us, us);
        sleep_us(us);
}

static void hang_while_asked(void) {
        if (!LOAD(hang))
                return;
        COUNT(hung, 1);
        while (LOAD(hang))
                sleep_us(1000);
        __atomic_sub_fetch(&ctl->hung, 1, __ATOMIC_RELAXED);
}

/* ---- the functions ---- */

/* Every function but C_GetFunctionList, C_Sign and C_GenerateKeyPair, forwarded as is unless a fault is injected:
 * X(ID, name, the session it acts on or CK_INVALID_HANDLE, parameters, arguments). */
#define SHIM_FORWARDED(X)                                                                                              \
        X(INITIALIZE, C_Initialize, CK_INVALID_HANDLE, (CK_VOID_PTR init_args), (init_args))                           \
        X(FINALIZE, C_Finalize, CK_INVALID_HANDLE, (CK_VOID_PTR reserved), (reserved))                                 \
        X(GET_INFO, C_GetInfo, CK_INVALID_HANDLE, (CK_INFO_PTR info), (info))                                          \
        X(GET_SLOT_LIST, C_GetSlotList, CK_INVALID_HANDLE,                                                             \
          (CK_BBOOL token_present, CK_SLOT_ID_PTR slot_list, CK_ULONG_PTR count), (token_present, slot_list, count))   \
        X(GET_SLOT_INFO, C_GetSlotInfo, CK_INVALID_HANDLE, (CK_SLOT_ID slot_id, CK_SLOT_INFO_PTR info),                \
          (slot_id, info))                                                                                             \
        X(GET_TOKEN_INFO, C_GetTokenInfo, CK_INVALID_HANDLE, (CK_SLOT_ID slot_id, CK_TOKEN_INFO_PTR info),             \
          (slot_id, info))                                                                                             \
        X(GET_MECHANISM_LIST, C_GetMechanismList, CK_INVALID_HANDLE,                                                   \
          (CK_SLOT_ID slot_id, CK_MECHANISM_TYPE_PTR mechanism_list, CK_ULONG_PTR count),                              \
          (slot_id, mechanism_list, count))                                                                            \
        X(GET_MECHANISM_INFO, C_GetMechanismInfo, CK_INVALID_HANDLE,                                                   \
          (CK_SLOT_ID slot_id, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR info), (slot_id, type, info))             \
        X(INIT_TOKEN, C_InitToken, CK_INVALID_HANDLE,                                                                  \
          (CK_SLOT_ID slot_id, CK_UTF8CHAR_PTR pin, CK_ULONG pin_len, CK_UTF8CHAR_PTR label),                          \
          (slot_id, pin, pin_len, label))                                                                              \
        X(INIT_PIN, C_InitPIN, session, (CK_SESSION_HANDLE session, CK_UTF8CHAR_PTR pin, CK_ULONG pin_len),            \
          (session, pin, pin_len))                                                                                     \
        X(SET_PIN, C_SetPIN, session,                                                                                  \
          (CK_SESSION_HANDLE session, CK_UTF8CHAR_PTR old_pin, CK_ULONG old_len, CK_UTF8CHAR_PTR new_pin,              \
           CK_ULONG new_len),                                                                                          \
          (session, old_pin, old_len, new_pin, new_len))                                                               \
        X(OPEN_SESSION, C_OpenSession, CK_INVALID_HANDLE,                                                              \
          (CK_SLOT_ID slot_id, CK_FLAGS flags, CK_VOID_PTR application, CK_NOTIFY notify,                              \
           CK_SESSION_HANDLE_PTR session),                                                                             \
          (slot_id, flags, application, notify, session))                                                              \
        X(CLOSE_SESSION, C_CloseSession, session, (CK_SESSION_HANDLE session), (session))                              \
        X(CLOSE_ALL_SESSIONS, C_CloseAllSessions, CK_INVALID_HANDLE, (CK_SLOT_ID slot_id), (slot_id))                  \
        X(GET_SESSION_INFO, C_GetSessionInfo, session, (CK_SESSION_HANDLE session, CK_SESSION_INFO_PTR info),          \
          (session, info))                                                                                             \
        X(GET_OPERATION_STATE, C_GetOperationState, session,                                                           \
          (CK_SESSION_HANDLE session, CK_BYTE_PTR state, CK_ULONG_PTR state_len), (session, state, state_len))         \
        X(SET_OPERATION_STATE, C_SetOperationState, session,                                                           \
          (CK_SESSION_HANDLE session, CK_BYTE_PTR state, CK_ULONG state_len, CK_OBJECT_HANDLE encryption_key,          \
           CK_OBJECT_HANDLE authentication_key),                                                                       \
          (session, state, state_len, encryption_key, authentication_key))                                             \
        X(LOGIN, C_Login, session,                                                                                     \
          (CK_SESSION_HANDLE session, CK_USER_TYPE user_type, CK_UTF8CHAR_PTR pin, CK_ULONG pin_len),                  \
          (session, user_type, pin, pin_len))                                                                          \
        X(LOGOUT, C_Logout, session, (CK_SESSION_HANDLE session), (session))                                           \
        X(CREATE_OBJECT, C_CreateObject, session,                                                                      \
          (CK_SESSION_HANDLE session, CK_ATTRIBUTE_PTR templ, CK_ULONG count, CK_OBJECT_HANDLE_PTR object),            \
          (session, templ, count, object))                                                                             \
        X(COPY_OBJECT, C_CopyObject, session,                                                                          \
          (CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object, CK_ATTRIBUTE_PTR templ, CK_ULONG count,                 \
           CK_OBJECT_HANDLE_PTR new_object),                                                                           \
          (session, object, templ, count, new_object))                                                                 \
        X(DESTROY_OBJECT, C_DestroyObject, session, (CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object),              \
          (session, object))                                                                                           \
        X(GET_OBJECT_SIZE, C_GetObjectSize, session,                                                                   \
          (CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object, CK_ULONG_PTR size), (session, object, size))            \
        X(GET_ATTRIBUTE_VALUE, C_GetAttributeValue, session,                                                           \
          (CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object, CK_ATTRIBUTE_PTR templ, CK_ULONG count),                \
          (session, object, templ, count))                                                                             \
        X(SET_ATTRIBUTE_VALUE, C_SetAttributeValue, session,                                                           \
          (CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object, CK_ATTRIBUTE_PTR templ, CK_ULONG count),                \
          (session, object, templ, count))                                                                             \
        X(FIND_OBJECTS_INIT, C_FindObjectsInit, session,                                                               \
          (CK_SESSION_HANDLE session, CK_ATTRIBUTE_PTR templ, CK_ULONG count), (session, templ, count))                \
        X(FIND_OBJECTS, C_FindObjects, session,                                                                        \
          (CK_SESSION_HANDLE session, CK_OBJECT_HANDLE_PTR object, CK_ULONG max_count, CK_ULONG_PTR count),            \
          (session, object, max_count, count))                                                                         \
        X(FIND_OBJECTS_FINAL, C_FindObjectsFinal, session, (CK_SESSION_HANDLE session), (session))                     \
        X(ENCRYPT_INIT, C_EncryptInit, session,                                                                        \
          (CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism, CK_OBJECT_HANDLE key), (session, mechanism, key))    \
        X(ENCRYPT, C_Encrypt, session,                                                                                 \
          (CK_SESSION_HANDLE session, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out, CK_ULONG_PTR out_len),         \
          (session, in, in_len, out, out_len))                                                                         \
        X(ENCRYPT_UPDATE, C_EncryptUpdate, session,                                                                    \
          (CK_SESSION_HANDLE session, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out, CK_ULONG_PTR out_len),         \
          (session, in, in_len, out, out_len))                                                                         \
        X(ENCRYPT_FINAL, C_EncryptFinal, session, (CK_SESSION_HANDLE session, CK_BYTE_PTR out, CK_ULONG_PTR out_len),  \
          (session, out, out_len))                                                                                     \
        X(DECRYPT_INIT, C_DecryptInit, session,                                                                        \
          (CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism, CK_OBJECT_HANDLE key), (session, mechanism, key))    \
        X(DECRYPT, C_Decrypt, session,                                                                                 \
          (CK_SESSION_HANDLE session, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out, CK_ULONG_PTR out_len),         \
          (session, in, in_len, out, out_len))                                                                         \
        X(DECRYPT_UPDATE, C_DecryptUpdate, session,                                                                    \
          (CK_SESSION_HANDLE session, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out, CK_ULONG_PTR out_len),         \
          (session, in, in_len, out, out_len))                                                                         \
        X(DECRYPT_FINAL, C_DecryptFinal, session, (CK_SESSION_HANDLE session, CK_BYTE_PTR out, CK_ULONG_PTR out_len),  \
          (session, out, out_len))                                                                                     \
        X(DIGEST_INIT, C_DigestInit, session, (CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism),                 \
          (session, mechanism))                                                                                        \
        X(DIGEST, C_Digest, session,                                                                                   \
          (CK_SESSION_HANDLE session, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out, CK_ULONG_PTR out_len),         \
          (session, in, in_len, out, out_len))                                                                         \
        X(DIGEST_UPDATE, C_DigestUpdate, session, (CK_SESSION_HANDLE session, CK_BYTE_PTR in, CK_ULONG in_len),        \
          (session, in, in_len))                                                                                       \
        X(DIGEST_KEY, C_DigestKey, session, (CK_SESSION_HANDLE session, CK_OBJECT_HANDLE key), (session, key))         \
        X(DIGEST_FINAL, C_DigestFinal, session, (CK_SESSION_HANDLE session, CK_BYTE_PTR out, CK_ULONG_PTR out_len),    \
          (session, out, out_len))                                                                                     \
        X(SIGN_INIT, C_SignInit, session,                                                                              \
          (CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism, CK_OBJECT_HANDLE key), (session, mechanism, key))    \
        X(SIGN_UPDATE, C_SignUpdate, session, (CK_SESSION_HANDLE session, CK_BYTE_PTR in, CK_ULONG in_len),            \
          (session, in, in_len))                                                                                       \
        X(SIGN_FINAL, C_SignFinal, session, (CK_SESSION_HANDLE session, CK_BYTE_PTR out, CK_ULONG_PTR out_len),        \
          (session, out, out_len))                                                                                     \
        X(SIGN_RECOVER_INIT, C_SignRecoverInit, session,                                                               \
          (CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism, CK_OBJECT_HANDLE key), (session, mechanism, key))    \
        X(SIGN_RECOVER, C_SignRecover, session,                                                                        \
          (CK_SESSION_HANDLE session, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out, CK_ULONG_PTR out_len),         \
          (session, in, in_len, out, out_len))                                                                         \
        X(VERIFY_INIT, C_VerifyInit, session,                                                                          \
          (CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism, CK_OBJECT_HANDLE key), (session, mechanism, key))    \
        X(VERIFY, C_Verify, session,                                                                                   \
          (CK_SESSION_HANDLE session, CK_BYTE_PTR data, CK_ULONG data_len, CK_BYTE_PTR sig, CK_ULONG sig_len),         \
          (session, data, data_len, sig, sig_len))                                                                     \
        X(VERIFY_UPDATE, C_VerifyUpdate, session, (CK_SESSION_HANDLE session, CK_BYTE_PTR in, CK_ULONG in_len),        \
          (session, in, in_len))                                                                                       \
        X(VERIFY_FINAL, C_VerifyFinal, session, (CK_SESSION_HANDLE session, CK_BYTE_PTR sig, CK_ULONG sig_len),        \
          (session, sig, sig_len))                                                                                     \
        X(VERIFY_RECOVER_INIT, C_VerifyRecoverInit, session,                                                           \
          (CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism, CK_OBJECT_HANDLE key), (session, mechanism, key))    \
        X(VERIFY_RECOVER, C_VerifyRecover, session,                                                                    \
          (CK_SESSION_HANDLE session, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out, CK_ULONG_PTR out_len),         \
          (session, in, in_len, out, out_len))                                                                         \
        X(DIGEST_ENCRYPT_UPDATE, C_DigestEncryptUpdate, session,                                                       \
          (CK_SESSION_HANDLE session, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out, CK_ULONG_PTR out_len),         \
          (session, in, in_len, out, out_len))                                                                         \
        X(DECRYPT_DIGEST_UPDATE, C_DecryptDigestUpdate, session,                                                       \
          (CK_SESSION_HANDLE session, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out, CK_ULONG_PTR out_len),         \
          (session, in, in_len, out, out_len))                                                                         \
        X(SIGN_ENCRYPT_UPDATE, C_SignEncryptUpdate, session,                                                           \
          (CK_SESSION_HANDLE session, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out, CK_ULONG_PTR out_len),         \
          (session, in, in_len, out, out_len))                                                                         \
        X(DECRYPT_VERIFY_UPDATE, C_DecryptVerifyUpdate, session,                                                       \
          (CK_SESSION_HANDLE session, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out, CK_ULONG_PTR out_len),         \
          (session, in, in_len, out, out_len))                                                                         \
        X(GENERATE_KEY, C_GenerateKey, session,                                                                        \
          (CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism, CK_ATTRIBUTE_PTR templ, CK_ULONG count,              \
           CK_OBJECT_HANDLE_PTR key),                                                                                  \
          (session, mechanism, templ, count, key))                                                                     \
        X(WRAP_KEY, C_WrapKey, session,                                                                                \
          (CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism, CK_OBJECT_HANDLE wrapping_key, CK_OBJECT_HANDLE key, \
           CK_BYTE_PTR wrapped, CK_ULONG_PTR wrapped_len),                                                             \
          (session, mechanism, wrapping_key, key, wrapped, wrapped_len))                                               \
        X(UNWRAP_KEY, C_UnwrapKey, session,                                                                            \
          (CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism, CK_OBJECT_HANDLE unwrapping_key,                     \
           CK_BYTE_PTR wrapped, CK_ULONG wrapped_len, CK_ATTRIBUTE_PTR templ, CK_ULONG count,                          \
           CK_OBJECT_HANDLE_PTR key),                                                                                  \
          (session, mechanism, unwrapping_key, wrapped, wrapped_len, templ, count, key))                               \
        X(DERIVE_KEY, C_DeriveKey, session,                                                                            \
          (CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism, CK_OBJECT_HANDLE base_key, CK_ATTRIBUTE_PTR templ,   \
           CK_ULONG count, CK_OBJECT_HANDLE_PTR key),                                                                  \
          (session, mechanism, base_key, templ, count, key))                                                           \
        X(SEED_RANDOM, C_SeedRandom, session, (CK_SESSION_HANDLE session, CK_BYTE_PTR seed, CK_ULONG seed_len),        \
          (session, seed, seed_len))                                                                                   \
        X(GENERATE_RANDOM, C_GenerateRandom, session, (CK_SESSION_HANDLE session, CK_BYTE_PTR out, CK_ULONG out_len),  \
          (session, out, out_len))                                                                                     \
        X(GET_FUNCTION_STATUS, C_GetFunctionStatus, session, (CK_SESSION_HANDLE session), (session))                   \
        X(CANCEL_FUNCTION, C_CancelFunction, session, (CK_SESSION_HANDLE session), (session))                          \
        X(WAIT_FOR_SLOT_EVENT, C_WaitForSlotEvent, CK_INVALID_HANDLE,                                                  \
          (CK_FLAGS flags, CK_SLOT_ID_PTR slot, CK_VOID_PTR reserved), (flags, slot, reserved))

#define DEFINE_FORWARD(id, name, session_, params, args)                                                               \
        static CK_RV shim_##name params {                                                                              \
                CK_RV rv;                                                                                              \
                COUNT(calls[P11SHIM_FN_##id], 1);                                                                      \
                if (faulted(P11SHIM_FN_##id, session_, &rv))                                                           \
                        return rv;                                                                                     \
                return real.name ? real.name args : CKR_FUNCTION_NOT_SUPPORTED;                                        \
        }
SHIM_FORWARDED(DEFINE_FORWARD)
#undef DEFINE_FORWARD

static CK_RV shim_C_Sign(CK_SESSION_HANDLE session, CK_BYTE_PTR data, CK_ULONG data_len, CK_BYTE_PTR sig,
                         CK_ULONG_PTR sig_len) {
        CK_RV rv;

        COUNT(calls[P11SHIM_FN_SIGN], 1);
        /* A length query (no buffer) makes no signature: it costs the token nothing, here and in the latency. */
        if (sig) {
                hang_while_asked();
                delay(LOAD(sign_latency_us));
        }
        /* After the latency: a network HSM's error takes the round trip too. */
        if (faulted(P11SHIM_FN_SIGN, session, &rv))
                return rv;
        return real.C_Sign(session, data, data_len, sig, sig_len);
}

static CK_RV shim_C_GenerateKeyPair(CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism, CK_ATTRIBUTE_PTR pub_templ,
                                    CK_ULONG pub_count, CK_ATTRIBUTE_PTR priv_templ, CK_ULONG priv_count,
                                    CK_OBJECT_HANDLE_PTR pub, CK_OBJECT_HANDLE_PTR priv) {
        CK_RV rv;

        COUNT(calls[P11SHIM_FN_GENERATE_KEY_PAIR], 1);
        delay(LOAD(keygen_latency_us));
        if (faulted(P11SHIM_FN_GENERATE_KEY_PAIR, session, &rv))
                return rv;
        return real.C_GenerateKeyPair(session, mechanism, pub_templ, pub_count, priv_templ, priv_count, pub, priv);
}

/* ---- loading ---- */

static CK_RV fail(const char *what, const char *detail) {
        /* The shim only runs in tests and benchmarks: say why it refuses, once, where their logs go. */
        fprintf(stderr, "p11shim: %s: %s\n", what, detail);
        return CKR_GENERAL_ERROR;
}

static CK_RV map_control(const char *path) {
        struct stat st;
        void *p;
        int fd = open(path, O_RDWR | O_CLOEXEC);

        if (fd < 0)
                return fail(path, strerror(errno));
        if (fstat(fd, &st) < 0 || st.st_size < (off_t) sizeof(P11ShimControl)) {
                close(fd);
                return fail(path, "shorter than a P11ShimControl");
        }
        p = mmap(NULL, sizeof(P11ShimControl), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        close(fd);
        if (p == MAP_FAILED)
                return fail(path, strerror(errno));
        ctl = p;
        if (ctl->magic != P11SHIM_MAGIC || ctl->version != P11SHIM_VERSION || ctl->size != sizeof(P11ShimControl)) {
                ctl = &own;
                munmap(p, sizeof(P11ShimControl));
                return fail(path, "not a P11ShimControl of this version");
        }
        return CKR_OK;
}

static CK_RV parse_sign_us(const char *s) {
        char *end;
        errno = 0;
        unsigned long us = strtoul(s, &end, 10);
        if (errno != 0 || end == s || *end || s[0] == '-' || us > SIGN_US_MAX)
                return fail("P11SHIM_SIGN_US", "not a number of microseconds up to 10 s");
        own.sign_latency_us = (uint32_t) us;
        return CKR_OK;
}

static CK_RV load(void) {
        const char *module = getenv("P11SHIM_MODULE"), *control = getenv("P11SHIM_CONTROL"),
                   *sign_us = getenv("P11SHIM_SIGN_US");
        CK_C_GetFunctionList get;
        CK_FUNCTION_LIST *list = NULL;
        CK_RV rv;
        void *dl;

        if (!module || !*module)
                module = KEYD_DEFAULT_MODULE; /* the build's SOFTHSM_MODULE */
        dl = dlopen(module, RTLD_NOW | RTLD_LOCAL);
        if (!dl)
                return fail(module, dlerror());
        get = (CK_C_GetFunctionList) dlsym(dl, "C_GetFunctionList");
        /* The shim as its own module would wait for itself in pthread_once. */
        if (!get || get == C_GetFunctionList)
                return fail(module, "no C_GetFunctionList, or the shim itself");
        rv = get(&list);
        if (rv != CKR_OK || !list)
                return fail(module, "C_GetFunctionList failed");

        if (control && *control)
                rv = map_control(control);
        else if (sign_us && *sign_us)
                rv = parse_sign_us(sign_us);
        if (rv != CKR_OK)
                return rv;

        real = *list;
        shim = *list;
#define INSTALL(id, name, ...) shim.name = shim_##name;
        SHIM_FORWARDED(INSTALL)
#undef INSTALL
        shim.C_Sign = shim_C_Sign;
        shim.C_GenerateKeyPair = shim_C_GenerateKeyPair;
        shim.C_GetFunctionList = C_GetFunctionList;
        return CKR_OK;
}

static void setup(void) {
        setup_rv = load();
}

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list) {
        if (!list)
                return CKR_ARGUMENTS_BAD;
        pthread_once(&once, setup);
        COUNT(calls[P11SHIM_FN_GET_FUNCTION_LIST], 1);
        if (setup_rv != CKR_OK)
                return setup_rv;
        *list = &shim;
        return CKR_OK;
}
