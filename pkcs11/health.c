/* SPDX-License-Identifier: MIT */
/* The token's health: errors counted by function and CK_RV, the token marked down after a device-level error or
 * repeated failures, and a recovery thread that re-initialises the module with backoff until it answers again.
 * A network HSM restarts, drops its sessions and forgets its logins; keyd must come back by itself. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/time-util.h"
#include "pkcs11/hsm-internal.h"

/* Failed signatures in a row that mark the token down, whatever their CK_RV. */
#define FAILURES_DOWN 3
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 1000
/* How long a re-initialisation waits for calls still inside the module (a hung token) before it backs off. */
#define REINIT_WAIT_MS 1000

bool hsm_rv_is_device(CK_RV rv) {
        return rv == CKR_DEVICE_ERROR || rv == CKR_DEVICE_REMOVED || rv == CKR_TOKEN_NOT_PRESENT ||
               rv == CKR_TOKEN_NOT_RECOGNIZED || rv == CKR_CRYPTOKI_NOT_INITIALIZED;
}

void hsm_count_error(Hsm *h, const char *function, CK_RV rv) {
        pthread_mutex_lock(&h->health_lock);
        size_t i = 0;
        while (i < h->n_errors && !(h->errors[i].rv == rv && streq(h->errors[i].function, function)))
                i++;
        if (i == h->n_errors && i < HSM_ERROR_KINDS)
                h->errors[h->n_errors++] = (HsmErrorCount){ .function = function, .rv = rv };
        if (i < h->n_errors)
                h->errors[i].count++;
        pthread_mutex_unlock(&h->health_lock);
}

size_t hsm_errors(Hsm *h, HsmErrorCount *ret, size_t n) {
        pthread_mutex_lock(&h->health_lock);
        size_t have = h->n_errors;
        memcpy(ret, h->errors, MIN(n, have) * sizeof *ret);
        pthread_mutex_unlock(&h->health_lock);
        return have;
}

const Histogram *hsm_sign_times(Hsm *h, KeydAlg alg) {
        return &h->sign_times[alg];
}

bool hsm_is_up(Hsm *h) {
        return __atomic_load_n(&h->up, __ATOMIC_ACQUIRE);
}

void hsm_mark_down(Hsm *h, const char *fmt, ...) {
        pthread_mutex_lock(&h->health_lock);
        if (h->up) {
                va_list ap;
                va_start(ap, fmt);
                vsnprintf(h->down_reason, sizeof h->down_reason, fmt, ap);
                va_end(ap);
                __atomic_store_n(&h->up, false, __ATOMIC_RELEASE);
                log_warning("token '%s' is down: %s; re-initialising it", h->label, h->down_reason);
                pthread_cond_broadcast(&h->health_cond);
        }
        pthread_mutex_unlock(&h->health_lock);
}

/* An error about one key or one request (its type, mechanism, data), not about the token: one bad key must not take
 * every keyring down. */
static bool rv_is_per_key(CK_RV rv) {
        switch (rv) {
        case CKR_KEY_HANDLE_INVALID:
        case CKR_KEY_TYPE_INCONSISTENT:
        case CKR_KEY_FUNCTION_NOT_PERMITTED:
        case CKR_KEY_SIZE_RANGE:
        case CKR_MECHANISM_INVALID:
        case CKR_MECHANISM_PARAM_INVALID:
        case CKR_DATA_INVALID:
        case CKR_DATA_LEN_RANGE:
        case CKR_OBJECT_HANDLE_INVALID:
                return true;
        default:
                return false;
        }
}

void hsm_sign_result(Hsm *h, CK_RV rv) {
        if (rv == CKR_OK) {
                if (__atomic_load_n(&h->failures, __ATOMIC_RELAXED) != 0)
                        __atomic_store_n(&h->failures, 0, __ATOMIC_RELAXED);
                return;
        }
        if (rv_is_per_key(rv))
                return;
        if (hsm_rv_is_device(rv)) {
                hsm_mark_down(h, "%s", hsm_rv_name(rv));
                return;
        }
        unsigned n = __atomic_add_fetch(&h->failures, 1, __ATOMIC_RELAXED);
        if (n >= FAILURES_DOWN)
                hsm_mark_down(h, "%u signatures failed in a row, the last with %s", n,
                              rv == CKR_FUNCTION_CANCELED ? "no answer within sign-timeout" : hsm_rv_name(rv));
}

void hsm_health(Hsm *h, HsmHealth *ret) {
        *ret = (HsmHealth){ .up = hsm_is_up(h) };
        pthread_mutex_lock(&h->health_lock);
        if (!ret->up)
                snprintf(ret->reason, sizeof ret->reason, "%s", h->down_reason);
        ret->reinits = h->reinits;
        pthread_mutex_unlock(&h->health_lock);
        pthread_mutex_lock(&h->pool_lock);
        unsigned open = __atomic_load_n(&h->n_sessions, __ATOMIC_RELAXED);
        ret->sessions_busy = h->n_busy;
        ret->sessions_idle = open - MIN(open, h->n_busy);
        ret->sessions_stuck = h->n_stuck;
        ret->max_sessions = h->max_sessions;
        pthread_mutex_unlock(&h->pool_lock);
}

bool hsm_session_logged_in(Hsm *h, CK_SESSION_HANDLE s) {
        CK_SESSION_INFO info;
        return h->f->C_GetSessionInfo(s, &info) == CKR_OK &&
               (info.state == CKS_RW_USER_FUNCTIONS || info.state == CKS_RO_USER_FUNCTIONS);
}

int hsm_anchor_repair(Hsm *h) {
        CK_SESSION_INFO info;
        CK_RV rv = h->anchor != CK_INVALID_HANDLE ? h->f->C_GetSessionInfo(h->anchor, &info) : CKR_SESSION_CLOSED;
        bool reopened = rv != CKR_OK;

        if (rv != CKR_OK) {
                if (h->anchor != CK_INVALID_HANDLE)
                        (void) h->f->C_CloseSession(h->anchor);
                h->anchor = CK_INVALID_HANDLE;
                rv = h->f->C_OpenSession(h->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h->anchor);
                if (rv != CKR_OK) {
                        h->anchor = CK_INVALID_HANDLE;
                        return hsm_fail(rv);
                }
                rv = h->f->C_GetSessionInfo(h->anchor, &info);
                if (rv != CKR_OK)
                        return hsm_fail(rv);
        }
        if (info.state == CKS_RW_USER_FUNCTIONS || info.state == CKS_RO_USER_FUNCTIONS)
                return 0;
        if (__atomic_load_n(&h->pin_rejected, __ATOMIC_ACQUIRE))
                return -EACCES; /* never try a rejected PIN again: keyd must not lock the token */
        if (!reopened)
                log_info("token '%s' forgot the login: logging in again", h->label);
        int r = hsm_login(h);
        if (r == -EACCES || r == -EPERM)
                __atomic_store_n(&h->pin_rejected, true, __ATOMIC_RELEASE);
        return r;
}

int hsm_admin_begin(Hsm *h) {
        /* Never wait for a re-initialisation (it may hang in the token): down is down, at once. */
        if (!hsm_is_up(h))
                return -ENODEV;
        struct timespec until = monotonic_in_ms(h->sign_timeout_ms);
        if (pthread_rwlock_clockrdlock(&h->module_lock, CLOCK_MONOTONIC, &until) != 0)
                return -ENODEV;
        if (!hsm_is_up(h)) {
                pthread_rwlock_unlock(&h->module_lock);
                return -ENODEV;
        }
        pthread_mutex_lock(&h->admin_lock);
        return 0;
}

void hsm_admin_end(Hsm *h, const char *function, CK_RV rv) {
        if (rv != CKR_OK) {
                hsm_count_error(h, function, rv);
                if (hsm_rv_is_device(rv))
                        hsm_mark_down(h, "%s from %s", hsm_rv_name(rv), function);
                else if (rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED ||
                         rv == CKR_USER_NOT_LOGGED_IN)
                        (void) hsm_anchor_repair(h); /* the next call finds them again; this one has failed */
        }
        pthread_mutex_unlock(&h->admin_lock);
        pthread_rwlock_unlock(&h->module_lock);
}

/* One signature with one of keyd's keys (the first few in the index) on the anchor session: a token that logs in but
 * cannot sign is not back. An error about one key (its type, a mechanism it refuses) tries the next; nothing to sign
 * with (no key yet): the login has to do. */
#define PROBE_KEYS 3
static int probe_sign_locked(Hsm *h) {
        static const uint8_t data[32];
        CK_OBJECT_HANDLE keys[PROBE_KEYS];
        size_t n = 0;

        pthread_mutex_lock(&h->index_lock);
        for (size_t i = 0; i < h->n_index && n < PROBE_KEYS; i++)
                if (h->index[i].priv != CK_INVALID_HANDLE)
                        keys[n++] = h->index[i].priv;
        pthread_mutex_unlock(&h->index_lock);

        for (size_t i = 0; i < n; i++) {
                uint8_t sig[HSM_SIG_MAX];
                CK_ULONG sig_len = sizeof sig;
                CK_KEY_TYPE type;
                CK_ATTRIBUTE a = { CKA_KEY_TYPE, &type, sizeof type };
                CK_MECHANISM mech = { 0 };
                CK_RV rv = h->f->C_GetAttributeValue(h->anchor, keys[i], &a, 1);
                if (rv == CKR_OK) {
                        mech.mechanism = type == CKK_RSA ? CKM_SHA256_RSA_PKCS : type == CKK_EC ? CKM_ECDSA : CKM_EDDSA;
                        rv = h->f->C_SignInit(h->anchor, &mech, keys[i]);
                        if (rv == CKR_OK)
                                rv = h->f->C_Sign(h->anchor, (CK_BYTE *) data, sizeof data, sig, &sig_len);
                }
                if (rv == CKR_OK)
                        return 0;
                hsm_count_error(h, "C_Sign", rv);
                if (!rv_is_per_key(rv))
                        return hsm_fail(rv);
        }
        return 0;
}

/* C_Finalize + C_Initialize, the token found again by its URI, logged in, the index listed again. With the module
 * lock held for writing: no other thread is inside the module. Back only when it signs again. */
static int reinit_locked(Hsm *h) {
        CK_C_INITIALIZE_ARGS args = { .flags = CKF_OS_LOCKING_OK };
        CK_TOKEN_INFO ti;
        CK_RV rv;
        int r;

        /* The sessions of the old generation die with it: never close them in the new one (the handles may be
         * reused). */
        h->anchor = CK_INVALID_HANDLE;
        __atomic_add_fetch(&h->generation, 1, __ATOMIC_ACQ_REL);
        (void) h->f->C_Finalize(NULL);
        rv = h->f->C_Initialize(&args);
        if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED)
                return hsm_fail(rv);
        r = hsm_find_slot(h->f, h->uri, &h->slot, NULL);
        if (r < 0)
                return r;
        rv = h->f->C_GetTokenInfo(h->slot, &ti);
        if (rv != CKR_OK)
                return hsm_fail(rv);
        if (ti.flags & CKF_USER_PIN_LOCKED)
                return hsm_fail(CKR_PIN_LOCKED);
        r = hsm_anchor_repair(h);
        if (r < 0)
                return r;
        if (h->index_prefix)
                r = hsm_index_reload_locked(h);
        else {
                /* Never listed: its handles died with the old generation; keys are searched for again. */
                pthread_mutex_lock(&h->index_lock);
                h->n_index = 0;
                pthread_mutex_unlock(&h->index_lock);
        }
        if (r < 0)
                return r;
        return probe_sign_locked(h);
}

static int reinit(Hsm *h) {
        struct timespec deadline = monotonic_in_ms(REINIT_WAIT_MS);
        int r;

        /* A call stuck in a hung token holds the module lock: wait a bounded time for it, then back off. */
        r = pthread_rwlock_clockwrlock(&h->module_lock, CLOCK_MONOTONIC, &deadline);
        if (r != 0)
                return -r;
        pthread_mutex_lock(&h->admin_lock);
        r = reinit_locked(h);
        pthread_mutex_unlock(&h->admin_lock);
        pthread_rwlock_unlock(&h->module_lock);
        return r;
}

static void *recovery_thread(void *userdata) {
        Hsm *h = userdata;
        unsigned backoff = BACKOFF_MIN_MS;

        pthread_mutex_lock(&h->health_lock);
        for (;;) {
                while (h->up && !h->recovery_stop)
                        pthread_cond_wait(&h->health_cond, &h->health_lock);
                if (h->recovery_stop)
                        break;
                pthread_mutex_unlock(&h->health_lock);
                int r = __atomic_load_n(&h->pin_rejected, __ATOMIC_ACQUIRE) ? -EACCES : reinit(h);
                pthread_mutex_lock(&h->health_lock);
                if (r >= 0) {
                        h->reinits++;
                        __atomic_store_n(&h->failures, 0, __ATOMIC_RELAXED);
                        __atomic_store_n(&h->up, true, __ATOMIC_RELEASE);
                        log_info("token '%s' is up again (re-initialised)", h->label);
                        backoff = BACKOFF_MIN_MS;
                        continue;
                }
                if (r == -EACCES || r == -EPERM)
                        snprintf(h->down_reason, sizeof h->down_reason,
                                 "the token rejected the PIN after re-initialisation; fix the PIN and restart keyd");
                log_debug("re-initialising token '%s': %s (%s); next try in %u ms", h->label, strerror(-r),
                          hsm_last_error(), backoff);
                struct timespec until = monotonic_in_ms(backoff);
                while (!h->recovery_stop && pthread_cond_clockwait(&h->health_cond, &h->health_lock, CLOCK_MONOTONIC,
                                                              &until) == 0)
                        ;
                backoff = MIN(backoff * 2, BACKOFF_MAX_MS);
        }
        pthread_mutex_unlock(&h->health_lock);
        return NULL;
}

int hsm_health_init(Hsm *h) {
        h->up = true;
        int r = -pthread_create(&h->recovery, NULL, recovery_thread, h);
        h->has_recovery = r == 0;
        return r;
}

bool hsm_health_stop(Hsm *h) {
        struct timespec until;
        if (!h->has_recovery)
                return true;
        pthread_mutex_lock(&h->health_lock);
        h->recovery_stop = true;
        pthread_cond_broadcast(&h->health_cond);
        pthread_mutex_unlock(&h->health_lock);
        /* A re-initialisation stuck in a hung token never returns: bounded, as for stuck signers. */
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 2;
        if (pthread_timedjoin_np(h->recovery, NULL, &until) != 0) {
                log_warning("token '%s': its re-initialisation is stuck in the token at exit", h->label);
                return false;
        }
        h->has_recovery = false;
        return true;
}
