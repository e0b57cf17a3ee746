/* SPDX-License-Identifier: MIT */
#pragma once

/* The token layer's internals, shared by its .c files and by its tests. */
#include <p11-kit/pkcs11.h>
#include <pthread.h>
#include <stdint.h>

#include "common/macro.h"

#include "pkcs11/hsm.h"

typedef struct HsmJob HsmJob;
typedef struct HsmWorker HsmWorker;

#define HSM_ERROR_KINDS 64

struct Hsm {
        void *dl;
        CK_FUNCTION_LIST *f;
        CK_SLOT_ID slot;
        char label[33];
        char serial[17];
        char *uri;          /* to find the token again after a re-initialisation */
        char *index_prefix; /* the label prefix of the index, to list the token again after one */

        /* Where the PIN comes from, kept so that a lost login can be redone. Never the PIN itself. */
        char *pin_path;

        /* Every call into the module holds module_lock for reading; a re-initialisation (C_Finalize + C_Initialize)
         * takes it for writing, so that no call is ever inside the module while it is torn down. generation counts
         * re-initialisations: sessions and object handles of an older generation are dead. */
        pthread_rwlock_t module_lock;
        unsigned generation;

        /* A session held open for the life of a generation: login state lives as long as any session does. */
        CK_SESSION_HANDLE anchor;
        pthread_mutex_t admin_lock; /* serialises the anchor session: keygen, listing, destroy, re-login; the index */

        /* Signing (signer.c): jobs queued for worker threads, each of which owns one session. Workers are started
         * on demand up to max_sessions; an idle one closes its session and waits on without it. */
        pthread_mutex_t pool_lock;
        pthread_cond_t work_cond;    /* a job was queued, or stopping; on CLOCK_MONOTONIC */
        HsmJob *queue_head, *queue_tail;
        HsmWorker **workers; /* every worker started, joined at hsm_close() */
        unsigned max_sessions, n_workers, cap_workers, n_idle, n_spinning, n_busy, n_sessions, n_stuck;
        unsigned session_wait_ms, sign_timeout_ms, idle_ms;
        unsigned sign_us; /* moving average of the token's time per signature */
        bool stopping;
        /* Signing in the caller's thread (HSM_SIGN_IN_CALLER): sessions on a stack of free ones, opened on demand up
         * to max_sessions; a caller waits at most session_wait_ms for one. No worker is started. */
        bool sign_in_caller;
        HsmWorker **callers;      /* every session holder made, freed at hsm_close() */
        HsmWorker **callers_free; /* the ones no caller holds */
        unsigned n_callers, n_callers_free;
        pthread_cond_t caller_cond; /* a holder came free, or stopping; on CLOCK_MONOTONIC */
        unsigned n_cpus, n_polling; /* threads polling (signer.c: poll_begin()) */

        /* Health (health.c): whether the token can sign, and why not. A down token is re-initialised by the
         * recovery thread, with backoff. */
        pthread_mutex_t health_lock;
        pthread_cond_t health_cond;
        bool up, pin_rejected, recovery_stop;
        char down_reason[160];
        unsigned failures; /* consecutive failed signatures */
        uint64_t reinits;
        pthread_t recovery;
        bool has_recovery;
        HsmErrorCount errors[HSM_ERROR_KINDS];
        size_t n_errors;
        Histogram sign_times[_KEYD_ALG_MAX];

        /* The index of keyd's objects (index.c), sorted by id; guarded by index_lock, which is never held across a
         * call into the module (a signer looking up a handle never waits for a keygen). */
        pthread_mutex_t index_lock;
        HsmEntry *index;
        size_t n_index, cap_index;
};

struct HsmKey {
        Hsm *hsm;
        KeydAlg alg;
        uint8_t id[HSM_ID_MAX];
        size_t id_len;
        CK_OBJECT_HANDLE priv; /* read and replaced atomically: a stale handle is found again once */
        CK_OBJECT_HANDLE pub;  /* CK_INVALID_HANDLE if the token holds no public object */
        unsigned generation;   /* of the module the handles belong to: after a re-initialisation, from the index */
        size_t sig_size;
        const EVP_MD *md;      /* pre-hash for ECDSA, NULL otherwise */
        CK_MECHANISM mech;
        CK_RSA_PKCS_PSS_PARAMS pss;
};

/* module.c */
int hsm_module_load(const char *path, void **ret_dl, CK_FUNCTION_LIST **ret_f);
void hsm_module_unload(void *dl, CK_FUNCTION_LIST *f);
/* The first slot whose token matches (an initialised token, label/serial/manufacturer/model of the URI). */
int hsm_find_slot(CK_FUNCTION_LIST *f, const char *uri, CK_SLOT_ID *ret_slot, char **ret_pin_source);
/* Remember rv as the calling thread's last failure and return its errno. */
int hsm_fail(CK_RV rv);
/* The calling thread's last failure (CKR_OK if none). */
CK_RV hsm_last_rv(void);
/* Copy a blank-padded PKCS#11 string into a NUL-terminated one. */
void hsm_unpad(char *dst, const CK_UTF8CHAR *src, size_t n);

/* login.c */
/* Read the PIN from the configured source and log in on the anchor session. Wipes the PIN. */
int hsm_login(Hsm *h);
/* Where the PIN comes from: credential, pin file, URI pin-source, in that order. A new string. */
int hsm_pin_path(const char *pin_file, const char *uri_pin_source, char **ret);

/* signer.c */
void hsm_signer_init(Hsm *h);
/* Stop the workers; false if some are still inside the module (a hung token) after a bounded wait. */
bool hsm_signer_stop(Hsm *h);
/* Sign data (a digest for ECDSA) with the private object of k: a job for a worker, waited for at most
 * sign_timeout_ms. */
int hsm_signer_run(HsmKey *k, const void *data, size_t len, uint8_t *sig, size_t sig_size);

/* health.c */
int hsm_health_init(Hsm *h);
/* Stop the recovery thread; false if it is stuck in a hung token after a bounded wait. */
bool hsm_health_stop(Hsm *h);
/* Count an error of function. */
void hsm_count_error(Hsm *h, const char *function, CK_RV rv);
/* A signature succeeded or failed (rv, or CKR_FUNCTION_CANCELED for a timeout): after a device-level rv or
 * repeated failures the token is marked down and the recovery thread re-initialises it. */
void hsm_sign_result(Hsm *h, CK_RV rv);
/* Mark the token down (once; the first reason stays). */
void hsm_mark_down(Hsm *h, const char *fmt, ...) _printf_(2, 3);
bool hsm_is_up(Hsm *h);
/* A CK_RV that says the device itself is gone or broken, rather than a session or an operation. */
bool hsm_rv_is_device(CK_RV rv);
/* Enter and leave the anchor session: the module lock for reading, the token up, admin_lock. hsm_admin_end() counts
 * rv (if not CKR_OK) as an error of function, repairs the anchor session or the login after an rv that says they
 * are lost, and marks the token down after a device-level rv. */
int hsm_admin_begin(Hsm *h);
void hsm_admin_end(Hsm *h, const char *function, CK_RV rv);
/* With admin_lock held: make sure the anchor session is open and logged in (after the token lost them). */
int hsm_anchor_repair(Hsm *h);
/* Whether session s is logged in (a search in a session that is not finds no private object). */
bool hsm_session_logged_in(Hsm *h, CK_SESSION_HANDLE s);
/* The key's object handles in this generation of the module: after a re-initialisation, from the index (and k is
 * updated). With the module lock held. */
void hsm_key_current(HsmKey *k, CK_OBJECT_HANDLE *ret_priv, CK_OBJECT_HANDLE *ret_pub);

/* objects.c, index.c: call with the module lock and admin_lock held (hsm_admin_begin()). */
int hsm_list_locked(Hsm *h, const char *prefix, HsmObject **ret, size_t *ret_n, CK_RV *ret_rv);
int hsm_index_reload_locked(Hsm *h);
/* index.c: each takes index_lock. */
int hsm_index_put(Hsm *h, const uint8_t *id, size_t id_len, const char *label, CK_OBJECT_HANDLE priv,
                  CK_OBJECT_HANDLE pub);
/* The CKK_* of alg's keys. */
CK_KEY_TYPE hsm_alg_key_type(KeydAlg alg);
/* hsm_key_open_handles() from what a listing read in generation (hsm_list()): no call to the token. */
int hsm_key_from_facts(Hsm *h, KeydAlg alg, const uint8_t *id, size_t id_len, CK_OBJECT_HANDLE priv,
                       CK_OBJECT_HANDLE pub, const HsmKeyFacts *f, unsigned generation, HsmKey **ret);
bool hsm_index_lookup(Hsm *h, const uint8_t *id, size_t id_len, CK_OBJECT_HANDLE *ret_priv,
                      CK_OBJECT_HANDLE *ret_pub);
void hsm_index_forget(Hsm *h, const uint8_t *id, size_t id_len);

/* objects.c */
/* Whether object o (still) has CKA_ID id: a handle from the index is checked before it is destroyed. */
bool hsm_object_has_id(Hsm *h, CK_OBJECT_HANDLE o, const uint8_t *id, size_t id_len);
int hsm_find_one(Hsm *h, CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls, const uint8_t *id, size_t id_len,
                 CK_OBJECT_HANDLE *ret);
