/* SPDX-License-Identifier: MIT */
/* The signing session pool: one session per concurrent signer, handed out and back under one short lock. */
#include <time.h>

#include "common/log.h"
#include "pkcs11/hsm-internal.h"

int hsm_pool_open(Hsm *h, unsigned n) {
        if (n == 0 || n > 1024)
                return -EINVAL;
        h->sessions = calloc(n, sizeof *h->sessions);
        if (!h->sessions)
                return -ENOMEM;
        for (unsigned i = 0; i < n; i++) {
                CK_RV rv = h->f->C_OpenSession(h->slot, CKF_SERIAL_SESSION, NULL, NULL, &h->sessions[i].handle);
                if (rv != CKR_OK)
                        return hsm_fail(rv); /* hsm_pool_close() closes what was opened */
                h->n_sessions = i + 1;
                h->sessions[i].next_free = h->free_list;
                h->free_list = &h->sessions[i];
        }
        return 0;
}

void hsm_pool_close(Hsm *h) {
        for (unsigned i = 0; i < h->n_sessions; i++)
                if (h->sessions[i].handle != CK_INVALID_HANDLE)
                        (void) h->f->C_CloseSession(h->sessions[i].handle);
        free(h->sessions);
        h->sessions = NULL;
        h->n_sessions = 0;
        h->free_list = NULL;
}

HsmSession *hsm_pool_acquire(Hsm *h) {
        struct timespec deadline;
        HsmSession *s;
        int r = 0;

        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_sec += h->session_wait_ms / 1000;
        deadline.tv_nsec += (long) (h->session_wait_ms % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
                deadline.tv_sec++;
                deadline.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&h->pool_lock);
        /* Bounded: a signer never waits forever (it may hold the engine's read lock, which the event loop needs). */
        while (!h->free_list && r != ETIMEDOUT)
                r = pthread_cond_timedwait(&h->pool_cond, &h->pool_lock, &deadline);
        s = h->free_list;
        if (s)
                h->free_list = s->next_free;
        pthread_mutex_unlock(&h->pool_lock);
        return s;
}

void hsm_pool_release(Hsm *h, HsmSession *s) {
        pthread_mutex_lock(&h->pool_lock);
        s->next_free = h->free_list;
        h->free_list = s;
        pthread_cond_signal(&h->pool_cond);
        pthread_mutex_unlock(&h->pool_lock);
}

int hsm_pool_recover(Hsm *h, HsmSession *s, CK_RV rv) {
        CK_RV r2;

        switch (rv) {
        case CKR_SESSION_HANDLE_INVALID:
        case CKR_SESSION_CLOSED:
        case CKR_DEVICE_ERROR:
        case CKR_USER_NOT_LOGGED_IN:
                break;
        default:
                return 0;
        }
        log_debug("token session lost (%s): reopening", hsm_rv_name(rv));

        if (rv != CKR_USER_NOT_LOGGED_IN) {
                (void) h->f->C_CloseSession(s->handle);
                r2 = h->f->C_OpenSession(h->slot, CKF_SERIAL_SESSION, NULL, NULL, &s->handle);
                if (r2 != CKR_OK) {
                        s->handle = CK_INVALID_HANDLE;
                        return 0;
                }
        }

        /* The anchor may be gone too (all sessions closed by the token means the login is gone). Check it, and
         * log in again if the token says nobody is. */
        pthread_mutex_lock(&h->admin_lock);
        CK_SESSION_INFO info;
        r2 = h->f->C_GetSessionInfo(h->anchor, &info);
        if (r2 != CKR_OK) {
                (void) h->f->C_CloseSession(h->anchor);
                if (h->f->C_OpenSession(h->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h->anchor) !=
                    CKR_OK)
                        h->anchor = CK_INVALID_HANDLE;
        }
        int ok = h->anchor != CK_INVALID_HANDLE;
        if (ok && (r2 != CKR_OK || (info.state != CKS_RW_USER_FUNCTIONS && info.state != CKS_RO_USER_FUNCTIONS)))
                ok = hsm_login(h) >= 0;
        pthread_mutex_unlock(&h->admin_lock);
        return ok;
}
