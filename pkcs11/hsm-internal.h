/* SPDX-License-Identifier: MIT */
#pragma once

/* The token layer's internals, shared by its .c files and by its tests. */
#include <p11-kit/pkcs11.h>
#include <pthread.h>

#include "pkcs11/hsm.h"

typedef struct HsmSession {
        CK_SESSION_HANDLE handle;
        struct HsmSession *next_free;
} HsmSession;

struct Hsm {
        void *dl;
        CK_FUNCTION_LIST *f;
        CK_SLOT_ID slot;
        char label[33];
        char serial[17];

        /* Where the PIN comes from, kept so that a lost login can be redone. Never the PIN itself. */
        char *pin_path;

        /* A session held open for the life of the Hsm: login state lives as long as any session does. */
        CK_SESSION_HANDLE anchor;
        pthread_mutex_t admin_lock; /* serialises the anchor session: keygen, listing, destroy, re-login */

        HsmSession *sessions;
        unsigned n_sessions;
        HsmSession *free_list;
        unsigned session_wait_ms;   /* how long a signer waits for a free session */
        pthread_mutex_t pool_lock;
        pthread_cond_t pool_cond;   /* on CLOCK_MONOTONIC */

        /* The index of keyd's objects (index.c), sorted by id; guarded by admin_lock. */
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
/* Copy a blank-padded PKCS#11 string into a NUL-terminated one. */
void hsm_unpad(char *dst, const CK_UTF8CHAR *src, size_t n);

/* login.c */
/* Read the PIN from the configured source and log in on the anchor session. Wipes the PIN. */
int hsm_login(Hsm *h);
/* Where the PIN comes from: credential, pin file, URI pin-source, in that order. A new string. */
int hsm_pin_path(const char *pin_file, const char *uri_pin_source, char **ret);

/* pool.c */
int hsm_pool_open(Hsm *h, unsigned n);
void hsm_pool_close(Hsm *h);
/* A free session, waiting at most session_wait_ms for one: NULL when none came free in time. */
HsmSession *hsm_pool_acquire(Hsm *h);
void hsm_pool_release(Hsm *h, HsmSession *s);
/* After rv on session s: reopen the session and log in again if the token lost them. 1 if worth retrying. */
int hsm_pool_recover(Hsm *h, HsmSession *s, CK_RV rv);

/* index.c: call with admin_lock held. */
int hsm_index_put(Hsm *h, const uint8_t *id, size_t id_len, const char *label, CK_OBJECT_HANDLE priv,
                  CK_OBJECT_HANDLE pub);
bool hsm_index_lookup(Hsm *h, const uint8_t *id, size_t id_len, CK_OBJECT_HANDLE *ret_priv,
                      CK_OBJECT_HANDLE *ret_pub);
void hsm_index_forget(Hsm *h, const uint8_t *id, size_t id_len);

/* objects.c */
/* Whether object o (still) has CKA_ID id: a handle from the index is checked before it is destroyed. */
bool hsm_object_has_id(Hsm *h, CK_OBJECT_HANDLE o, const uint8_t *id, size_t id_len);
int hsm_find_one(Hsm *h, CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls, const uint8_t *id, size_t id_len,
                 CK_OBJECT_HANDLE *ret);
