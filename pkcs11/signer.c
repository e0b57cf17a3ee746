/* SPDX-License-Identifier: MIT */
/* Signing: jobs for worker threads that each own one session. A network HSM answers in milliseconds but signs many
 * at once, so concurrency is bounded by sessions (max_sessions, opened on demand, closed when idle), not by cores or
 * request threads. A caller hands its job over and waits a bounded time: a token that never answers costs one worker
 * and its session per stuck call, never a caller for ever. A token in this process (SoftHSM2) is signed with in the
 * caller's own thread instead, on a session taken from a stack of free ones (HSM_SIGN_IN_CALLER). */
#include <sched.h>
#include <stdlib.h>
#include <sys/sysinfo.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/time-util.h"
#include "pkcs11/hsm-internal.h"

/* How long hsm_signer_stop() waits for workers still inside the module. */
#define STOP_WAIT_MS 2000
/* A token that signs in less than this (a local one: SoftHSM2 signs ES256 in ~70 µs) is waited for by polling, and
 * an idle worker polls as long for the next job: waking a sleeping thread costs as much as the signature itself on
 * a virtual machine. A network HSM's milliseconds are waited for asleep. */
#define SPIN_MAX_US 250

typedef enum JobState {
        JOB_QUEUED,
        JOB_RUNNING,
        JOB_DONE,
} JobState;

struct HsmJob {
        HsmJob *next;
        /* What to sign with, copied: a caller that gives up may free its key while the job still runs. */
        KeydAlg alg;
        CK_MECHANISM mech;
        CK_RSA_PKCS_PSS_PARAMS pss;
        CK_OBJECT_HANDLE priv;
        unsigned generation; /* of priv */
        bool refreshed;      /* priv was found again: the caller updates its key */
        uint8_t id[HSM_ID_MAX];
        size_t id_len;
        uint8_t sig[HSM_SIG_MAX];
        CK_ULONG sig_len;
        /* The outcome, under pool_lock. */
        unsigned state; /* JobState; polled without the lock by a spinning caller */
        bool abandoned;
        CK_RV rv;
        int result; /* 0, or -ENOENT (the key is gone), -ENODEV (the token is down) */
        pthread_cond_t done;
        bool has_cond; /* done was initialised (a worker's job) */
        size_t data_len;
        uint8_t data[];
};

struct HsmWorker {
        Hsm *h;
        pthread_t thread;
        CK_SESSION_HANDLE session;
        unsigned generation; /* of session */
};
typedef struct HsmWorker Worker;

static bool passed(const struct timespec *t) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        return now.tv_sec > t->tv_sec || (now.tv_sec == t->tv_sec && now.tv_nsec >= t->tv_nsec);
}

void hsm_signer_init(Hsm *h) {
        pthread_condattr_t ca;
        h->n_cpus = (unsigned) MAX(get_nprocs(), 1);
        pthread_mutex_init(&h->pool_lock, NULL);
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&h->work_cond, &ca);
        pthread_cond_init(&h->caller_cond, &ca);
        pthread_condattr_destroy(&ca);
}

/* Forget the worker's session: closed if it belongs to this generation (a dead one's handle may be reused). Call with
 * the module lock held. */
/* Whether this thread may poll now: the token is fast, and fewer threads than processors but one poll already (a
 * poll that takes the processor from the thread it waits for only delays it; on one processor never). Paired with
 * poll_end(). */
static bool poll_begin(Hsm *h) {
        if (h->n_cpus < 2 || __atomic_load_n(&h->sign_us, __ATOMIC_RELAXED) >= SPIN_MAX_US)
                return false;
        if (__atomic_fetch_add(&h->n_polling, 1, __ATOMIC_ACQ_REL) < h->n_cpus - 1)
                return true;
        __atomic_sub_fetch(&h->n_polling, 1, __ATOMIC_ACQ_REL);
        return false;
}

static void poll_end(Hsm *h) {
        __atomic_sub_fetch(&h->n_polling, 1, __ATOMIC_ACQ_REL);
}

/* Poll until ready(arg), for at most max_us: a short burst of pause instructions first (a hand-over between two
 * cores that are both awake takes a fraction of a microsecond, a system call more), then the processor to any thread
 * that wants it, between looks. */
static bool poll_until(bool (*ready)(const void *arg), const void *arg, usec_t max_us) {
        usec_t end = now_monotonic() + MIN(max_us, (usec_t) SPIN_MAX_US);
        do {
                for (unsigned i = 0; i < 64; i++) {
                        if (ready(arg))
                                return true;
                        __builtin_ia32_pause();
                }
                sched_yield();
        } while (now_monotonic() < end);
        return ready(arg);
}

static bool job_done(const void *arg) {
        return __atomic_load_n((const unsigned *) arg, __ATOMIC_ACQUIRE) == JOB_DONE;
}

static bool job_queued(const void *arg) {
        const Hsm *h = arg;
        return __atomic_load_n(&h->queue_head, __ATOMIC_ACQUIRE) != NULL;
}

static void session_drop(Worker *w) {
        Hsm *h = w->h;
        if (w->session == CK_INVALID_HANDLE)
                return;
        if (w->generation == __atomic_load_n(&h->generation, __ATOMIC_ACQUIRE))
                (void) h->f->C_CloseSession(w->session);
        w->session = CK_INVALID_HANDLE;
        __atomic_sub_fetch(&h->n_sessions, 1, __ATOMIC_RELAXED);
}

static CK_RV session_open(Worker *w) {
        Hsm *h = w->h;
        CK_RV rv = h->f->C_OpenSession(h->slot, CKF_SERIAL_SESSION, NULL, NULL, &w->session);
        if (rv != CKR_OK) {
                w->session = CK_INVALID_HANDLE;
                hsm_count_error(h, "C_OpenSession", rv);
                return rv;
        }
        w->generation = __atomic_load_n(&h->generation, __ATOMIC_ACQUIRE);
        __atomic_add_fetch(&h->n_sessions, 1, __ATOMIC_RELAXED);
        return CKR_OK;
}

/* The job's key handle for this generation of the module: after a re-initialisation, from the index. */
static void job_handle(Hsm *h, HsmJob *j, unsigned generation) {
        CK_OBJECT_HANDLE priv = CK_INVALID_HANDLE, pub;
        if (j->generation == generation)
                return;
        (void) hsm_index_lookup(h, j->id, j->id_len, &priv, &pub);
        j->priv = priv; /* CK_INVALID_HANDLE: C_SignInit refuses it and the key is searched for */
        j->generation = generation;
        j->refreshed = true;
}

/* After a failed C_SignInit on a handle the token does not know: search for the key once. A token that forgot the
 * login invalidates every handle of a private object and hides them all from a search: that is a lost login, never a
 * lost key. */
static CK_RV find_again(Worker *w, HsmJob *j) {
        CK_OBJECT_HANDLE fresh;
        int r = hsm_find_one(w->h, w->session, CKO_PRIVATE_KEY, j->id, j->id_len, &fresh);
        if (r == -ENOENT && !hsm_session_logged_in(w->h, w->session))
                return CKR_USER_NOT_LOGGED_IN;
        if (r == -ENOENT) {
                j->result = -ENOENT;
                return CKR_KEY_HANDLE_INVALID;
        }
        if (r < 0)
                return hsm_last_rv() != CKR_OK ? hsm_last_rv() : CKR_GENERAL_ERROR;
        CK_OBJECT_HANDLE old_priv, pub = CK_INVALID_HANDLE;
        if (hsm_index_lookup(w->h, j->id, j->id_len, &old_priv, &pub))
                (void) hsm_index_put(w->h, j->id, j->id_len, NULL, fresh, pub);
        j->priv = fresh;
        j->refreshed = true;
        return CKR_OK;
}

/* One attempt: C_SignInit + C_Sign on the worker's session. */
static CK_RV sign_once(Worker *w, HsmJob *j, const char **ret_function) {
        Hsm *h = w->h;
        CK_RV rv;

        j->sig_len = sizeof j->sig;
        *ret_function = "C_SignInit";
        rv = h->f->C_SignInit(w->session, &j->mech, j->priv);
        if (rv != CKR_OK)
                return rv;
        *ret_function = "C_Sign";
        return h->f->C_Sign(w->session, j->data, j->data_len, j->sig, &j->sig_len);
}

/* Sign, recovering once from a lost session or login and once from a stale handle. Any error leaves the session's
 * operation state unknown (a C_Sign that failed may leave its operation active): the session is closed, and the
 * next attempt opens another. */
static CK_RV run_attempts(Worker *w, HsmJob *j) {
        Hsm *h = w->h;
        bool session_retried = false, handle_retried = false;
        const char *function;
        CK_RV rv;

        for (;;) {
                function = "C_OpenSession";
                rv = w->session == CK_INVALID_HANDLE ? session_open(w) : CKR_OK;
                if (rv == CKR_OK) {
                        usec_t t0 = now_monotonic();
                        rv = sign_once(w, j, &function);
                        if (rv == CKR_OK) {
                                usec_t took = now_monotonic() - t0;
                                /* A moving average of the token's time per signature, for poll_begin(). */
                                unsigned avg = __atomic_load_n(&h->sign_us, __ATOMIC_RELAXED);
                                __atomic_store_n(&h->sign_us, (unsigned) ((avg * 7 + (usec_t) MIN(took, 1000000)) / 8),
                                                 __ATOMIC_RELAXED);
                                histogram_observe(&h->sign_times[j->alg], took);
                                return CKR_OK;
                        }
                        hsm_count_error(h, function, rv);
                }
                if ((rv == CKR_KEY_HANDLE_INVALID || rv == CKR_OBJECT_HANDLE_INVALID) &&
                    streq(function, "C_SignInit") && !handle_retried) {
                        handle_retried = true; /* nothing started: the session is as it was */
                        function = "C_FindObjects";
                        rv = find_again(w, j);
                        if (j->result < 0)
                                return rv;
                        if (rv == CKR_OK)
                                continue;
                }
                session_drop(w);
                if (hsm_rv_is_device(rv) || session_retried)
                        return rv;
                session_retried = true;
                /* A lost session may mean a lost login (a token that closed every session logs everybody out). */
                if (rv == CKR_USER_NOT_LOGGED_IN || rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED) {
                        pthread_mutex_lock(&h->admin_lock);
                        int r = hsm_anchor_repair(h);
                        pthread_mutex_unlock(&h->admin_lock);
                        if (r < 0)
                                return rv;
                        handle_retried = false; /* a new login may renumber the private objects: find it again */
                }
        }
}

static void run_job(Worker *w, HsmJob *j) {
        Hsm *h = w->h;

        hsm_clear_error();
        pthread_rwlock_rdlock(&h->module_lock);
        if (!hsm_is_up(h)) {
                pthread_rwlock_unlock(&h->module_lock);
                j->rv = CKR_DEVICE_REMOVED;
                j->result = -ENODEV;
                return;
        }
        unsigned generation = __atomic_load_n(&h->generation, __ATOMIC_ACQUIRE);
        if (w->session != CK_INVALID_HANDLE && w->generation != generation)
                session_drop(w);
        job_handle(h, j, generation);
        j->rv = run_attempts(w, j);
        pthread_rwlock_unlock(&h->module_lock);
        if (j->result == -ENOENT)
                return; /* the key is gone, the token is fine */
        hsm_sign_result(h, j->rv);
        if (j->rv != CKR_OK && hsm_rv_is_device(j->rv))
                j->result = -ENODEV;
}

static void job_free(HsmJob *j) {
        if (j->has_cond)
                pthread_cond_destroy(&j->done);
        free(j);
}

/* Close the worker's session, if it has one (the thread stays: keyd joins every thread it starts). */
static void worker_close_session(Worker *w) {
        pthread_rwlock_rdlock(&w->h->module_lock);
        session_drop(w);
        pthread_rwlock_unlock(&w->h->module_lock);
}

static void *worker_main(void *userdata) {
        Worker *w = userdata;
        Hsm *h = w->h;

        pthread_mutex_lock(&h->pool_lock);
        for (;;) {
                struct timespec idle_until = monotonic_in_ms(h->idle_ms);
                int r = 0;

                if (!h->queue_head && poll_begin(h)) {
                        h->n_spinning++; /* counts as idle: no worker is started for a job this one will take */
                        pthread_mutex_unlock(&h->pool_lock);
                        (void) poll_until(job_queued, h, SPIN_MAX_US);
                        poll_end(h);
                        pthread_mutex_lock(&h->pool_lock);
                        h->n_spinning--;
                }
                h->n_idle++;
                while (!h->queue_head && !h->stopping && r != ETIMEDOUT)
                        r = pthread_cond_clockwait(&h->work_cond, &h->pool_lock, CLOCK_MONOTONIC, &idle_until);
                h->n_idle--;
                HsmJob *j = h->queue_head;
                if (!j && h->stopping)
                        break;
                if (!j) {
                        /* Idle long enough: give the token its session back, and wait on without one. */
                        pthread_mutex_unlock(&h->pool_lock);
                        worker_close_session(w);
                        pthread_mutex_lock(&h->pool_lock);
                        continue;
                }
                h->queue_head = j->next;
                if (!h->queue_head)
                        h->queue_tail = NULL;
                __atomic_store_n(&j->state, JOB_RUNNING, __ATOMIC_RELAXED);
                h->n_busy++;
                pthread_mutex_unlock(&h->pool_lock);

                run_job(w, j);

                pthread_mutex_lock(&h->pool_lock);
                h->n_busy--;
                __atomic_store_n(&j->state, JOB_DONE, __ATOMIC_RELEASE);
                if (j->abandoned) {
                        h->n_stuck--;
                        job_free(j);
                } else
                        pthread_cond_signal(&j->done);
        }
        pthread_mutex_unlock(&h->pool_lock);
        worker_close_session(w);
        return NULL;
}

/* Start one more worker if the queued jobs outnumber the idle workers. Call with pool_lock held. */
static int maybe_spawn(Hsm *h, unsigned queued) {
        Worker *w;
        int r;

        if (queued <= h->n_idle + h->n_spinning || h->n_workers >= h->max_sessions)
                return 0;
        if (h->n_workers == h->cap_workers) {
                unsigned cap = h->cap_workers ? 2 * h->cap_workers : 8;
                Worker **n = reallocarray(h->workers, cap, sizeof *n);
                if (!n)
                        return -ENOMEM;
                h->workers = n;
                h->cap_workers = cap;
        }
        w = calloc(1, sizeof *w);
        if (!w)
                return -ENOMEM;
        *w = (Worker){ .h = h, .session = CK_INVALID_HANDLE };
        r = -pthread_create(&w->thread, NULL, worker_main, w);
        if (r < 0) {
                free(w);
                return r;
        }
        h->workers[h->n_workers++] = w;
        return 0;
}

/* A job; with_cond for a worker's, whose caller waits on done (a caller that signs itself needs none). */
static HsmJob *job_new(HsmKey *k, const void *data, size_t len, bool with_cond) {
        pthread_condattr_t ca;
        HsmJob *j = malloc(sizeof *j + len);
        if (!j)
                return NULL;
        *j = (HsmJob){ .alg = k->alg, .mech = k->mech, .pss = k->pss, .id_len = k->id_len, .data_len = len };
        if (k->mech.pParameter)
                j->mech.pParameter = &j->pss;
        memcpy(j->id, k->id, k->id_len);
        memcpy(j->data, data, len);
        if (!with_cond)
                return j;
        j->has_cond = true;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&j->done, &ca);
        pthread_condattr_destroy(&ca);
        return j;
}

/* Wait for the job, at most session_wait_ms while it is queued and sign_timeout_ms in all. Call with pool_lock held;
 * returns with it held. false: it timed out (and is no longer the caller's). */
static bool job_wait(Hsm *h, HsmJob *j) {
        struct timespec queued_until = monotonic_in_ms(MIN(h->session_wait_ms, h->sign_timeout_ms));
        struct timespec until = monotonic_in_ms(h->sign_timeout_ms);

        if (poll_begin(h)) {
                pthread_mutex_unlock(&h->pool_lock);
                (void) poll_until(job_done, &j->state, 2 * __atomic_load_n(&h->sign_us, __ATOMIC_RELAXED) + 20);
                poll_end(h);
                pthread_mutex_lock(&h->pool_lock);
        }
        while (j->state != JOB_DONE) {
                const struct timespec *d = j->state == JOB_QUEUED ? &queued_until : &until;
                if (passed(d))
                        break;
                (void) pthread_cond_clockwait(&j->done, &h->pool_lock, CLOCK_MONOTONIC, d);
        }
        if (j->state == JOB_DONE)
                return true;
        if (j->state == JOB_QUEUED) {
                /* No session came free in time: take the job back out of the queue. */
                HsmJob **p = &h->queue_head, *prev = NULL;
                while (*p != j) {
                        prev = *p;
                        p = &(*p)->next;
                }
                *p = j->next;
                if (h->queue_tail == j)
                        h->queue_tail = prev;
                j->rv = CKR_SESSION_COUNT;
                return false;
        }
        /* Stuck in the token: the worker frees the job when (if) the call returns. */
        j->abandoned = true;
        h->n_stuck++;
        j->rv = CKR_FUNCTION_CANCELED;
        return false;
}

/* The job's outcome for the caller, and the job freed. */
static int job_result(HsmJob *j, uint8_t *sig, size_t sig_size) {
        int r;
        if (j->rv != CKR_OK) {
                /* Whatever the token said, for the caller the token could not sign (or the key is gone): the CK_RV
                 * is for the logs. */
                (void) hsm_fail(j->rv);
                r = j->result < 0 ? j->result : -ENODEV;
        } else if (j->sig_len > sig_size)
                r = -ENOBUFS;
        else {
                memcpy(sig, j->sig, j->sig_len);
                r = (int) j->sig_len;
        }
        job_free(j);
        return r;
}

/* A session holder for a caller that signs in its own thread: a free one, a new one while fewer than max_sessions
 * exist, or the first to come free within session_wait_ms. Call with pool_lock held. NULL: none in time (or
 * stopping, or out of memory). */
static Worker *caller_take(Hsm *h) {
        struct timespec until = monotonic_in_ms(MIN(h->session_wait_ms, h->sign_timeout_ms));
        for (;;) {
                if (h->stopping)
                        return NULL;
                if (h->n_callers_free > 0)
                        return h->callers_free[--h->n_callers_free];
                if (h->n_callers < h->max_sessions) {
                        Worker **all = reallocarray(h->callers, h->n_callers + 1, sizeof *all);
                        Worker **free_list = all ? reallocarray(h->callers_free, h->n_callers + 1, sizeof *all) : NULL;
                        Worker *w = free_list ? calloc(1, sizeof *w) : NULL;
                        if (all)
                                h->callers = all;
                        if (free_list)
                                h->callers_free = free_list;
                        if (!w)
                                return NULL;
                        *w = (Worker){ .h = h, .session = CK_INVALID_HANDLE };
                        h->callers[h->n_callers++] = w;
                        return w;
                }
                if (passed(&until))
                        return NULL;
                (void) pthread_cond_clockwait(&h->caller_cond, &h->pool_lock, CLOCK_MONOTONIC, &until);
        }
}

/* Sign in the caller's thread (h->sign_in_caller): the same attempts a worker makes, on a session of the caller's
 * for the call. */
static int sign_in_caller(Hsm *h, HsmKey *k, HsmJob *j, uint8_t *sig, size_t sig_size) {
        pthread_mutex_lock(&h->pool_lock);
        Worker *w = caller_take(h);
        if (!w) {
                bool stopping = h->stopping;
                pthread_mutex_unlock(&h->pool_lock);
                job_free(j);
                if (stopping)
                        return -ECANCELED;
                (void) hsm_fail(CKR_SESSION_COUNT); /* for the audit record and the log */
                return -ETIMEDOUT;
        }
        j->priv = k->priv;
        j->generation = k->generation;
        h->n_busy++;
        pthread_mutex_unlock(&h->pool_lock);

        run_job(w, j);

        pthread_mutex_lock(&h->pool_lock);
        h->n_busy--;
        h->callers_free[h->n_callers_free++] = w;
        pthread_cond_signal(&h->caller_cond);
        if (j->refreshed && j->result == 0) {
                __atomic_store_n(&k->priv, j->priv, __ATOMIC_RELEASE);
                k->generation = j->generation;
        }
        pthread_mutex_unlock(&h->pool_lock);
        return job_result(j, sig, sig_size);
}

int hsm_signer_run(HsmKey *k, const void *data, size_t len, uint8_t *sig, size_t sig_size) {
        Hsm *h = k->hsm;
        HsmJob *j;
        int r;

        if (!hsm_is_up(h))
                return -ENODEV;
        j = job_new(k, data, len, !h->sign_in_caller);
        if (!j)
                return -ENOMEM;
        if (h->sign_in_caller)
                return sign_in_caller(h, k, j, sig, sig_size);

        pthread_mutex_lock(&h->pool_lock);
        if (h->stopping) {
                pthread_mutex_unlock(&h->pool_lock);
                job_free(j);
                return -ECANCELED;
        }
        /* The key's handle and its generation, read (and written back below) as a pair under the lock. */
        j->priv = k->priv;
        j->generation = k->generation;
        unsigned queued = 1;
        for (HsmJob *q = h->queue_head; q; q = q->next)
                queued++;
        if (h->queue_tail)
                h->queue_tail->next = j;
        else
                h->queue_head = j;
        h->queue_tail = j;
        r = maybe_spawn(h, queued);
        if (r < 0 && h->n_workers == 0)
                log_warning("cannot start a signing worker: %s", strerror(-r));
        pthread_cond_signal(&h->work_cond);

        if (!job_wait(h, j)) {
                bool stuck = j->abandoned;
                CK_RV rv = j->rv;
                if (!stuck)
                        job_free(j);
                pthread_mutex_unlock(&h->pool_lock);
                if (stuck)
                        hsm_sign_result(h, CKR_FUNCTION_CANCELED);
                (void) hsm_fail(rv); /* for the audit record and the log: why there is no signature */
                return -ETIMEDOUT;
        }
        if (j->refreshed && j->result == 0) {
                __atomic_store_n(&k->priv, j->priv, __ATOMIC_RELEASE);
                k->generation = j->generation;
        }
        pthread_mutex_unlock(&h->pool_lock);
        return job_result(j, sig, sig_size);
}

bool hsm_signer_stop(Hsm *h) {
        struct timespec until;
        unsigned n, stuck = 0;

        pthread_mutex_lock(&h->pool_lock);
        h->stopping = true;
        pthread_cond_broadcast(&h->work_cond);
        pthread_cond_broadcast(&h->caller_cond);
        n = h->n_workers;
        pthread_mutex_unlock(&h->pool_lock);

        /* Every thread keyd starts is joined before the module is finalized and the process exits: a thread still
         * running its exit (OpenSSL's thread-local clean-up in the module) while exit() tears the libraries down
         * crashes. A worker stuck in a hung token is left, and so is everything it uses. */
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += STOP_WAIT_MS / 1000;
        for (unsigned i = 0; i < n; i++) {
                if (pthread_timedjoin_np(h->workers[i]->thread, NULL, &until) != 0) {
                        stuck++;
                        continue;
                }
                free(h->workers[i]);
                h->workers[i] = NULL;
        }
        if (stuck > 0) {
                log_warning("%u signing call(s) still inside the token at exit", stuck);
                return false;
        }
        free(h->workers);
        h->workers = NULL;
        h->n_workers = h->cap_workers = 0;

        /* The callers' sessions: by now nobody signs (the API stopped first), so that every holder is free. One that
         * is not (a caller still inside the token) is left, with everything it uses, as a stuck worker is. */
        pthread_mutex_lock(&h->pool_lock);
        bool callers_done = h->n_callers_free == h->n_callers;
        pthread_mutex_unlock(&h->pool_lock);
        if (!callers_done) {
                log_warning("%u signing call(s) of callers still inside the token at exit",
                            h->n_callers - h->n_callers_free);
                return false;
        }
        for (unsigned i = 0; i < h->n_callers; i++) {
                worker_close_session(h->callers[i]);
                free(h->callers[i]);
        }
        free(h->callers);
        free(h->callers_free);
        h->callers = h->callers_free = NULL;
        h->n_callers = h->n_callers_free = 0;
        return true;
}
