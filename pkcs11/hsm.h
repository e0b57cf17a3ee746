/* SPDX-License-Identifier: MIT */
#pragma once

#include <openssl/evp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/alg.h"
#include "common/histogram.h"

/* The token layer: one PKCS#11 token, logged in once, with a pool of sessions for signing and cached object handles
 * so that the signing path never searches the token. Private keys are generated in the token, sensitive and never
 * extractable; nothing here ever reads, wraps or exports a private key.
 *
 * Errors are negative errno; hsm_last_error() names the CK_RV behind the calling thread's last failure for logs. */

typedef struct Hsm Hsm;
typedef struct HsmKey HsmKey;

/* Where a signature is made. In a signing worker, the caller waits at most sign_timeout_ms: a token across a network
 * that never answers costs a worker, never a caller. In the caller's own thread, with a session of its own, there is
 * no hand-off between threads (on a small machine, two thread wake-ups cost as much as a SoftHSM2 signature) and no
 * bound on the wait: only for a token in this process that cannot hang on a network. AUTO: the caller's thread for
 * SoftHSM2 (the module's file is libsofthsm2.so), workers for every other module. */
typedef enum HsmSignIn {
        HSM_SIGN_IN_AUTO,
        HSM_SIGN_IN_WORKERS,
        HSM_SIGN_IN_CALLER,
} HsmSignIn;

typedef struct HsmConfig {
        const char *module;   /* path of the PKCS#11 module (.so) */
        const char *uri;      /* RFC 7512 URI naming the token, e.g. "pkcs11:token=keyd"; may carry pin-source */
        const char *pin_file; /* optional; used when there is no systemd credential "pin" */
        unsigned sessions;        /* most signing sessions open at once (opened on demand, closed when idle); 0 means
                                   * 64; capped by the token's own limit */
        unsigned session_wait_ms; /* how long a signer waits for a free session before -ETIMEDOUT; 0 means 5000 */
        unsigned sign_timeout_ms; /* how long a signer waits for the token's answer before -ETIMEDOUT; 0 means 5000 */
        unsigned idle_ms;         /* a session idle this long is closed; 0 means 30000 */
        HsmSignIn sign_in;        /* where C_Sign runs; HSM_SIGN_IN_AUTO by default */
} HsmConfig;

#define HSM_ID_MAX 32     /* bytes of CKA_ID keyd uses at most */
#define HSM_LABEL_MAX 128 /* "keyd:<keyring>:<id>" */
#define HSM_SIG_MAX 512   /* RSA 4096 */

/* Load the module, find the token by URI, log in with the PIN from (in order) $CREDENTIALS_DIRECTORY/pin,
 * cfg->pin_file, or the URI's pin-source, and open the session pool. The PIN is wiped as soon as login returns; it is
 * read again from the same source if the token ever forgets the login. Errors: -ENOENT (module or token not found),
 * -EINVAL (bad URI, empty PIN), -EACCES (wrong PIN: tried once, never retried), -ENOKEY (no PIN source),
 * -EPERM (PIN locked). */
int hsm_open(const HsmConfig *cfg, Hsm **ret);
Hsm *hsm_close(Hsm *h);

/* Whether the token can sign now, and why not. A token is marked down after CKR_DEVICE_ERROR, CKR_TOKEN_NOT_PRESENT,
 * CKR_DEVICE_REMOVED or repeated failures; while it is, every call that needs it fails at once with -ENODEV, and a
 * thread of its own re-initialises the module (C_Finalize + C_Initialize, login, the index listed again) with
 * backoff until it answers again. */
typedef struct HsmHealth {
        bool up;
        char reason[160]; /* why it is down ("" when up) */
        unsigned sessions_busy, sessions_idle, sessions_stuck, max_sessions;
        uint64_t reinits;
} HsmHealth;
void hsm_health(Hsm *h, HsmHealth *ret);

/* An error the token returned, counted by function and CK_RV. */
typedef struct HsmErrorCount {
        const char *function;
        unsigned long rv;
        uint64_t count;
} HsmErrorCount;
/* A copy of the error counts into ret (at most n); returns how many there are. */
size_t hsm_errors(Hsm *h, HsmErrorCount *ret, size_t n);

/* The token's time per signature (C_SignInit + C_Sign, wall time), by algorithm. */
const Histogram *hsm_sign_times(Hsm *h, KeydAlg alg);

/* Token label and serial of the open token (for logs and status). */
const char *hsm_token_label(Hsm *h);

/* Initialise the first token-less slot of a module as a new token (dev mode and tests; SoftHSM2 always offers one).
 * Sets the SO PIN and the user PIN; neither is logged. */
int hsm_token_init(const char *module, const char *label, const char *so_pin, const char *user_pin);
/* Whether the module has an initialised token with this label: 1 yes, 0 no, negative on error. */
int hsm_token_exists(const char *module, const char *label);

/* Generate a key pair for alg in the token (rsa_bits for RS256/PS256: 2048, 3072 or 4096), with CKA_ID id and
 * CKA_LABEL label on both objects: private key CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE true, CKA_EXTRACTABLE false,
 * sign only. */
int hsm_generate(Hsm *h, KeydAlg alg, unsigned rsa_bits, const uint8_t *id, size_t id_len, const char *label,
                 HsmKey **ret);
/* Open an existing key by CKA_ID, by its handles in the index (hsm_index_load()) without a search; a key the index
 * does not know, or whose handles went stale, is searched for once and the index refreshed. -ENOENT if the private
 * key is missing, -EMEDIUMTYPE if its key type does not fit alg. */
int hsm_key_open(Hsm *h, KeydAlg alg, const uint8_t *id, size_t id_len, HsmKey **ret);
/* Open a key whose object handles are known (from hsm_list() or hsm_key_handles()): no search. pub may be 0.
 * -ENOENT if the private handle names no object with this id (any more). */
int hsm_key_open_handles(Hsm *h, KeydAlg alg, const uint8_t *id, size_t id_len, unsigned long priv,
                         unsigned long pub, HsmKey **ret);
/* The key's object handles (0 for a missing public object). */
void hsm_key_handles(const HsmKey *k, unsigned long *ret_priv, unsigned long *ret_pub);
HsmKey *hsm_key_free(HsmKey *k);
KeydAlg hsm_key_alg(const HsmKey *k);
/* Size of this key's signatures in bytes (64 for ES256, 96 for ES384, 64 for EdDSA, the modulus size for RSA). */
size_t hsm_key_signature_size(const HsmKey *k);

/* The public key as an OpenSSL key (from the public object, or the private one's public attributes). */
int hsm_key_public(HsmKey *k, EVP_PKEY **ret);
/* Sign msg for JOSE: ES256/ES384 hash with SHA-256/384 and return R‖S of fixed size; RS256 PKCS#1 v1.5 with SHA-256;
 * PS256 PSS with SHA-256, MGF1-SHA256, 32-byte salt; EdDSA pure Ed25519. sig has room for sig_size bytes; the
 * length is returned. A worker thread with a session of its own makes the signature; the caller waits for it at
 * most sign_timeout_ms (-ETIMEDOUT: the call may still be stuck in the token, costing that worker and its session
 * until it returns). A session whose state is unknown after an error is closed and another opened; the login is
 * redone when the token forgot it. -ENODEV when the token could not sign (at once while it is down; hsm_last_error()
 * names the CK_RV); -ENOENT only when a fresh search finds the key gone. */
int hsm_key_sign(HsmKey *k, const void *msg, size_t msg_len, uint8_t *sig, size_t sig_size);
/* Check the private key's protection: sensitive, always sensitive, not extractable, never extractable, generated in
 * the token (CKA_LOCAL). 0 if all hold, -EPERM naming nothing secret otherwise. */
int hsm_key_check_protection(HsmKey *k);
/* Whether the key with this id may sign for alg: 0; -ENOENT no private object, -EMEDIUMTYPE a key of another type,
 * -EPERM its protection fails (hsm_key_check_protection()). From what the listing read when it is still current,
 * else from the token. */
int hsm_key_check(Hsm *h, KeydAlg alg, const uint8_t *id, size_t id_len);

/* What hsm_list() read of a private key along with its id and label, in the same call: enough to open it and to check
 * it (hsm_key_open(), hsm_key_check()) without another call to the token while its handle lives. A SoftHSM2 token
 * re-reads an object's file at every call, so that a start with 10,000 keyrings is mostly such calls. */
typedef struct HsmKeyFacts {
        bool known;             /* every field below was read */
        bool protected_ok;      /* sensitive, always sensitive, not extractable, never extractable, local */
        unsigned long key_type; /* CKK_* */
        size_t modulus_len;     /* RSA: bytes of the modulus without leading zeros; 0 for other keys */
} HsmKeyFacts;

/* An object found by hsm_list(). */
typedef struct HsmObject {
        char label[HSM_LABEL_MAX + 1];
        uint8_t id[HSM_ID_MAX];
        size_t id_len;
        bool is_private; /* private key (else public key or other) */
        unsigned long handle;
        HsmKeyFacts facts; /* private keys only */
} HsmObject;

/* Every object whose label starts with prefix (e.g. "keyd:"), private and public. *ret is a new array. */
int hsm_list(Hsm *h, const char *prefix, HsmObject **ret, size_t *ret_n);

/* The index of keyd's objects by id (as libp11 keeps its key cache in the slot): hsm_index_load() lists the token
 * once (objects whose label starts with prefix); hsm_generate() and hsm_destroy() keep it up to date, hsm_key_open()
 * and hsm_destroy() go by its handles, and a stale handle is refreshed here, never by the caller. */
typedef struct HsmEntry {
        uint8_t id[HSM_ID_MAX];
        size_t id_len;
        char label[HSM_LABEL_MAX + 1];
        unsigned long priv, pub; /* 0: no such object */
        HsmKeyFacts facts;       /* of priv, as the listing read it (not known after a keygen or a search) */
        unsigned generation;     /* of the module the listing read facts in: they hold only while it lives */
} HsmEntry;

int hsm_index_load(Hsm *h, const char *prefix);
/* A copy of the index, sorted by id (length, then bytes). */
int hsm_index_list(Hsm *h, HsmEntry **ret, size_t *ret_n);
/* A fresh search of the token for a key's private object, whatever the index says: 1 there (the index is
 * refreshed), 0 gone (it is forgotten), or a negative errno. */
int hsm_key_probe(Hsm *h, const uint8_t *id, size_t id_len);
/* Destroy every object with this CKA_ID (by its indexed handles, then a search for any left); returns how many, or
 * -ENOENT if there were none. */
int hsm_destroy(Hsm *h, const uint8_t *id, size_t id_len);
/* Destroy objects by handle (0 is skipped): no search. Returns how many. */
int hsm_destroy_handles(Hsm *h, unsigned long priv, unsigned long pub);

/* The name of the CK_RV behind the calling thread's last failure ("CKR_PIN_INCORRECT"), or "CKR_OK". */
const char *hsm_last_error(void);
/* Forget the calling thread's last failure (hsm_key_sign() does, so that its error names its own CK_RV). */
void hsm_clear_error(void);
/* CK_RV to negative errno and to its name: the one place where these are mapped. */
int hsm_rv_to_errno(unsigned long rv);
const char *hsm_rv_name(unsigned long rv);
