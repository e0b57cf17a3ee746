/* SPDX-License-Identifier: MIT */
/* A keyring in memory: its view (keys, signer, JWKS, revocation list) built outside the lock and swapped in whole,
 * and its readers. */
#include <stdio.h>

#include "common/crypto-util.h"
#include "common/fileio.h"
#include "common/hex.h"
#include "common/log.h"
#include "jose/jwk.h"
#include "jose/jws.h"
#include "rotation/engine-internal.h"
#include "rotation/lifecycle.h"
#include "rotation/ring.h"

Ring *ring_new(const char *name, RingKind kind, int64_t owner_uid, const Policy *policy) {
        Ring *r = calloc(1, sizeof *r);
        if (!r)
                return NULL;
        r->kind = kind;
        r->owner_uid = owner_uid;
        r->due.due = USEC_INFINITY;
        r->name = strdup(name);
        r->view = calloc(1, sizeof *r->view);
        if (policy && policy_copy(policy, &r->policy) < 0) {
                free(r->name);
                free(r->view);
                free(r);
                return NULL;
        }
        if (!policy)
                policy_init(&r->policy, kind);
        if (!r->name || !r->view)
                return ring_free(r);
        return r;
}

Ring *ring_from_row(const StoreKeyring *row, char **ret_error) {
        _cleanup_json_ json_t *pj = NULL;
        RingKind kind = ring_kind_from_string(row->kind);
        Ring *r;

        if (kind < 0)
                return NULL;
        r = ring_new(row->name, kind, row->owner_uid, NULL);
        if (!r)
                return NULL;
        r->disabled = row->disabled;
        r->from_api = row->origin && streq(row->origin, "api");
        pj = json_loads(row->policy ?: "{}", JSON_REJECT_DUPLICATES, NULL);
        if (!pj || policy_update_from_json(&r->policy, pj, ret_error) < 0)
                return ring_free(r);
        return r;
}

void ring_view_unindex(RingView *v, StrMap *kids) {
        for (size_t i = 0; kids && v->refs && i < v->n_keys; i++)
                if (strmap_get(kids, v->keys[i]->kid) == &v->refs[i])
                        strmap_remove(kids, v->keys[i]->kid);
}

RingView *ring_view_free(RingView *v) {
        if (!v)
                return NULL;
        for (size_t i = 0; v->refs && i < v->n_keys; i++)
                jose_verifier_unref(v->refs[i].verifier);
        free(v->refs);
        store_key_list_free(v->keys);
        store_key_list_free(v->expired);
        if (!v->signer_borrowed)
                hsm_key_free(v->signer);
        free(v->jwks);
        free(v->revocations);
        free(v);
        return NULL;
}

Ring *ring_free(Ring *r) {
        if (!r)
                return NULL;
        free(r->name);
        policy_done(&r->policy);
        free(r->degraded);
        free(r->jwks_file_error);
        ring_view_free(r->view);
        free(r);
        return NULL;
}

int ring_key_token_id(const StoreKey *k, uint8_t id[HSM_ID_MAX], size_t *ret_len) {
        return hex_decode(k->id, id, HSM_ID_MAX, ret_len);
}

static int sign_revocations(const Ring *r, RingView *v, usec_t now) {
        _cleanup_json_ json_t *header = NULL;
        _cleanup_free_ char *payload = NULL, *input = NULL;
        uint8_t sig[HSM_SIG_MAX];
        size_t len;
        int n;

        n = jwks_revocations_payload(r->name, r->policy.issuer, v->keys, v->n_keys, now, &payload);
        if (n < 0)
                return n;
        header = json_pack("{s:s, s:s, s:s}", "alg", keyd_alg_to_string(hsm_key_alg(v->signer)), "kid", v->signer_kid,
                           "typ", KEYD_TYP_REVOCATIONS);
        if (!header)
                return -ENOMEM;
        n = jose_jws_signing_input(header, payload, strlen(payload), &input, &len);
        if (n < 0)
                return n;
        n = hsm_key_sign(v->signer, input, len, sig, sizeof sig);
        if (n < 0)
                return n;
        n = jose_jws_append_signature(input, len, sig, (size_t) n);
        if (n < 0)
                return n;
        v->revocations = TAKE_PTR(input);
        return 0;
}

/* The active key in the token: the current signer if the active key is the same, else opened. */
static int view_signer(const Ring *r, Hsm *hsm, RingView *v) {
        const StoreKey *active = keys_in_state(v->keys, v->n_keys, KEY_STATE_ACTIVE);
        uint8_t id[HSM_ID_MAX];
        size_t n;
        int rc;

        if (!active || r->disabled)
                return 0;
        if (r->view && r->view->signer && !r->view->signer_lost && streq(r->view->signer_kid, active->kid)) {
                v->signer = r->view->signer;
                v->signer_borrowed = true;
        } else {
                rc = ring_key_token_id(active, id, &n);
                if (rc >= 0)
                        rc = hsm_key_open(hsm, active->alg, id, n, &v->signer);
                if (rc < 0)
                        return rc;
        }
        memcpy(v->signer_kid, active->kid, sizeof v->signer_kid);
        return 0;
}

int ring_view_build(const Ring *r, Hsm *hsm, StoreKey **keys, size_t n, usec_t now, bool sign, RingView **ret,
                    int *ret_signer_error) {
        RingView *v = calloc(1, sizeof *v);
        size_t k = 0;
        int rc;

        if (!v) {
                store_key_list_free(keys);
                return -ENOMEM;
        }
        /* Expired keys leave memory once the view is swapped in (the store keeps them; a transition still writes
         * their rows until then). */
        v->expired = calloc(n + 1, sizeof *v->expired);
        if (!v->expired) {
                store_key_list_free(keys);
                free(v);
                return -ENOMEM;
        }
        for (size_t i = 0, x = 0; i < n; i++) {
                if (keys[i]->state == KEY_STATE_EXPIRED)
                        v->expired[x++] = keys[i];
                else
                        keys[k++] = keys[i];
        }
        keys[k] = NULL;
        v->keys = keys;
        v->n_keys = k;
        v->refs = calloc(k + 1, sizeof *v->refs);
        if (!v->refs) {
                ring_view_free(v);
                return -ENOMEM;
        }
        for (size_t i = 0; i < k; i++) {
                _cleanup_json_ json_t *jwk = json_loads(keys[i]->jwk, 0, NULL);
                EVP_PKEY *pkey = NULL;
                v->refs[i] = (KeyRef){ .ring = (Ring *) r, .key = keys[i] };
                if (!jwk || jose_jwk_to_pkey(jwk, &pkey) < 0 ||
                    jose_verifier_new(pkey, keys[i]->alg, &v->refs[i].verifier) < 0)
                        log_debug("keyring %s: key %s has an unreadable JWK", r->name, keys[i]->kid);
                EVP_PKEY_free(pkey);
                if (keys[i]->state == KEY_STATE_REVOKED)
                        v->last_revocation = MAX(v->last_revocation, keys[i]->revoked_at);
        }
        *ret_signer_error = view_signer(r, hsm, v);
        if (r->policy.publish) {
                rc = jwks_build(v->keys, v->n_keys, &v->jwks, &v->jwks_len);
                if (rc < 0) {
                        ring_view_free(v);
                        return rc;
                }
                jwks_etag(v->jwks, v->jwks_len, v->etag);
                if (v->signer && sign && sign_revocations(r, v, now) < 0)
                        log_debug("keyring %s: cannot sign the revocation list: %s", r->name, hsm_last_error());
        }
        *ret = v;
        return 0;
}

int ring_view_swap(Ring *r, RingView *v, StrMap *kids, RingView **ret_old) {
        RingView *old = r->view;
        int rc = 0;

        /* New entries first (a kid in both views is replaced in place), then the old view's that are left. */
        for (size_t i = 0; kids && i < v->n_keys; i++)
                if (strmap_put(kids, v->keys[i]->kid, &v->refs[i], NULL) < 0)
                        rc = -ENOMEM;
        if (old) {
                ring_view_unindex(old, kids);
                if (v->signer_borrowed && old->signer == v->signer) {
                        old->signer = NULL;
                        v->signer_borrowed = false;
                }
        }
        if (!old || !streq(old->signer_kid, v->signer_kid))
                __atomic_store_n(&r->repair_pending, false, __ATOMIC_RELEASE);
        r->view = v;
        store_key_list_free(v->expired);
        v->expired = NULL;
        *ret_old = old;
        return rc;
}

static StoreKey *key_dup(const StoreKey *k) {
        StoreKey *c = malloc(sizeof *c);
        if (!c)
                return NULL;
        *c = *k;
        c->keyring = strdup(k->keyring);
        c->jwk = k->jwk ? strdup(k->jwk) : NULL;
        c->reason = k->reason ? strdup(k->reason) : NULL;
        if (!c->keyring || (k->jwk && !c->jwk) || (k->reason && !c->reason))
                return store_key_free(c), NULL;
        return c;
}

int ring_keys_copy(const Ring *r, size_t extra, StoreKey ***ret, size_t *ret_n) {
        StoreKey **l = calloc(r->view->n_keys + extra + 1, sizeof *l);
        if (!l)
                return -ENOMEM;
        for (size_t i = 0; i < r->view->n_keys; i++)
                if (!(l[i] = key_dup(r->view->keys[i]))) {
                        store_key_list_free(l);
                        return -ENOMEM;
                }
        *ret = l;
        *ret_n = r->view->n_keys;
        return 0;
}

/* Tell the daemon (EngineOptions.on_event) that a jwks-file failed or is written again: not an audit record, nothing
 * changed in the store; a line in the journal that names the keyring and the path. */
static void tell_publication(Engine *e, const Ring *r, const char *action, const char *detail) {
        if (e->opts.on_event)
                e->opts.on_event(&(EngineEvent){ action, r->name, NULL, detail }, e->opts.event_userdata);
}

int ring_write_jwks_file(Engine *e, Ring *r) {
        const char *path = r->policy.jwks_file;
        _cleanup_free_ char *why = NULL;
        char detail[POLICY_STRING_MAX + 64];
        int rc = 0;

        /* Nothing to write (no jwks-file any more, or the keyring is not published): nothing failing either. */
        if (path && r->view->jwks)
                rc = write_file_atomic(path, r->view->jwks, r->view->jwks_len, 0644);
        if (rc < 0) {
                __atomic_add_fetch(&r->jwks_file_failures, 1, __ATOMIC_RELAXED);
                if (asprintf(&why, "jwks-file %s cannot be written: %s", path, strerror(-rc)) < 0)
                        why = NULL; /* degraded all the same: ring_degraded() says it without the details */
                /* Soon again (rotation/tick.c writes it on every pass while it fails), not at the next rotation. */
                engine_schedule(e, r, MIN(r->due.due, engine_now(e) + e->opts.retry_delay));
        }
        if (rc >= 0 && !r->jwks_file_failed)
                return 0;
        /* Told once per distinct error: a pass every retry delay must not fill the journal with the same line. */
        bool tell = rc >= 0 || !r->jwks_file_failed || !why || !streq_ptr(why, r->jwks_file_error);
        char *old = r->jwks_file_error;
        engine_write_lock(e);
        r->jwks_file_failed = rc < 0;
        r->jwks_file_error = TAKE_PTR(why);
        engine_write_unlock(e);
        free(old);
        if (!tell)
                return rc;
        if (rc < 0)
                snprintf(detail, sizeof detail, "%s: %s", path, strerror(-rc));
        else
                snprintf(detail, sizeof detail, "%s", path ?: "(no jwks-file any more)");
        tell_publication(e, r, rc < 0 ? "jwks-file.failed" : "jwks-file.written", detail);
        return rc;
}

/* Readers: the event loop, or other threads under the engine's read lock. */
const char *ring_name(const Ring *r) {
        return r->name;
}
RingKind ring_kind(const Ring *r) {
        return r->kind;
}
const Policy *ring_policy(const Ring *r) {
        return &r->policy;
}
int64_t ring_owner_uid(const Ring *r) {
        return r->owner_uid;
}
bool ring_disabled(const Ring *r) {
        return r->disabled;
}
const char *ring_degraded(const Ring *r) {
        if (r->degraded)
                return r->degraded;
        if (r->jwks_file_failed)
                return r->jwks_file_error ?: "its jwks-file cannot be written";
        return NULL;
}
usec_t ring_next_due(const Ring *r) {
        return r->due.due;
}
StoreKey *const *ring_keys(const Ring *r, size_t *ret_n) {
        *ret_n = r->view->n_keys;
        return r->view->keys;
}

const StoreKey *ring_key_in_state(const Ring *r, KeyState s) {
        return keys_in_state(r->view->keys, r->view->n_keys, s);
}

const char *ring_jwks(const Ring *r, usec_t now, size_t *ret_len, const char **ret_etag, unsigned *ret_max_age) {
        const RingView *v = r->view;
        if (!v->jwks)
                return NULL;
        if (ret_len)
                *ret_len = v->jwks_len;
        if (ret_etag)
                *ret_etag = v->etag;
        if (ret_max_age)
                *ret_max_age = jwks_max_age(&r->policy, v->last_revocation, now);
        return v->jwks;
}

const char *ring_revocations(const Ring *r) {
        return r->view->revocations;
}

bool ring_can_sign(const Ring *r) {
        return !r->disabled && r->view->signer && !r->view->signer_lost;
}

bool ring_healthy(const Ring *r) {
        return !ring_degraded(r) && (r->disabled || ring_can_sign(r));
}

void ring_counters(const Ring *r, RingCounters *ret) {
        *ret = (RingCounters){
                .rotations = __atomic_load_n(&r->rotations, __ATOMIC_RELAXED),
                .revocations = __atomic_load_n(&r->revocations, __ATOMIC_RELAXED),
                .jwks_file_failures = __atomic_load_n(&r->jwks_file_failures, __ATOMIC_RELAXED),
        };
}
