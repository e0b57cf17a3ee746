/* SPDX-License-Identifier: MIT */
/* The engine's life, its keyrings in memory, the schedule, and signing. */
#include <stdio.h>
#include <unistd.h>

#include "common/crypto-util.h"
#include "common/log.h"
#include "jose/jws.h"
#include "rotation/engine-internal.h"

static Actor self_actor = { -1, -1, -1, "keyd" };

const Actor *engine_actor_self(void) {
        if (self_actor.pid < 0)
                self_actor.pid = getpid();
        return &self_actor;
}

static usec_t real_clock(void *userdata) {
        (void) userdata;
        return now_realtime();
}

int engine_new(Hsm *hsm, Store *store, const EngineOptions *opts, Engine **ret) {
        Engine *e = calloc(1, sizeof *e);
        if (!e)
                return -ENOMEM;
        e->hsm = hsm;
        e->store = store;
        if (opts)
                e->opts = *opts;
        if (!e->opts.clock)
                e->opts.clock = real_clock;
        if (e->opts.retry_delay <= 0)
                e->opts.retry_delay = 30 * USEC_PER_SEC;
        /* Writers first: signers waiting for a token session hold read locks, and must not starve the loop. */
        pthread_rwlockattr_t attr;
        pthread_rwlockattr_init(&attr);
        pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
        pthread_rwlock_init(&e->lock, &attr);
        pthread_rwlockattr_destroy(&attr);
        int r = store_instance_id(store, e->instance_id);
        if (r < 0)
                return engine_free(e), r;
        e->kids = strmap_new();
        e->denied = strmap_new();
        e->handles = strmap_new();
        if (!e->kids || !e->denied || !e->handles)
                return engine_free(e), -ENOMEM;
        *ret = e;
        return 0;
}

void ring_drop_refs(Engine *e, Ring *r) {
        for (size_t i = 0; r->refs && i < r->n_keys; i++) {
                if (e && strmap_get(e->kids, r->keys[i]->kid) == &r->refs[i])
                        strmap_remove(e->kids, r->keys[i]->kid);
                EVP_PKEY_free(r->refs[i].pkey);
        }
        free(r->refs);
        r->refs = NULL;
}

Ring *ring_free(Ring *r) {
        if (!r)
                return NULL;
        ring_drop_refs(NULL, r);
        free(r->name);
        policy_done(&r->policy);
        free(r->degraded);
        store_key_list_free(r->keys);
        hsm_key_free(r->signer);
        free(r->jwks);
        free(r->revocations);
        free(r);
        return NULL;
}

Engine *engine_abandon(Engine *e) {
        if (!e)
                return NULL;
        for (size_t i = 0; i < e->n_rings; i++)
                ring_free(e->rings[i]);
        free(e->rings);
        free(e->heap);
        strmap_free(e->kids, NULL);
        strmap_free(e->denied, free);
        strmap_free(e->handles, free);
        pthread_rwlock_destroy(&e->lock);
        free(e);
        return NULL;
}

Engine *engine_free(Engine *e) {
        return engine_abandon(e);
}

usec_t engine_now(Engine *e) {
        return e->opts.clock(e->opts.clock_userdata);
}

int engine_commit(Engine *e) {
        int r = store_commit(e->store);
        engine_flush_events(e, r >= 0);
        return r;
}

void engine_rollback(Engine *e) {
        store_rollback(e->store);
        engine_flush_events(e, false);
}

void engine_flush_events(Engine *e, bool committed) {
        for (size_t i = 0; committed && e->opts.on_event && i < e->n_pending; i++) {
                PendingEvent *p = &e->pending[i];
                EngineEvent ev = { p->action_buf, p->ring_buf, p->kid_buf[0] ? p->kid_buf : NULL,
                                   p->detail_buf[0] ? p->detail_buf : NULL };
                e->opts.on_event(&ev, e->opts.event_userdata);
        }
        e->n_pending = 0;
}

bool engine_failpoint(Engine *e, const char *where) {
        if (e->opts.failpoint && e->opts.failpoint(where, e->opts.failpoint_userdata)) {
                e->stopped = true;
                return true;
        }
        return false;
}

int engine_audit(Engine *e, const Actor *a, const char *action, const char *ring, const char *kid,
                 const char *result, json_t *detail) {
        _cleanup_free_ char *text = NULL;
        StoreAudit rec = { 0 };

        if (detail) {
                text = json_dumps(detail, JSON_COMPACT | JSON_SORT_KEYS);
                json_decref(detail);
                if (!text)
                        return -ENOMEM;
        }
        a = a ?: engine_actor_self();
        rec.time = engine_now(e);
        rec.uid = a->uid;
        rec.pid = a->pid;
        rec.comm = (char *) a->comm;
        rec.action = (char *) action;
        rec.keyring = (char *) ring;
        rec.kid = (char *) kid;
        rec.result = (char *) result;
        rec.detail = text;
        int r = store_audit_append(e->store, &rec);
        if (r >= 0 && e->opts.on_event && e->n_pending < ELEMENTSOF(e->pending)) {
                /* Told after the commit (engine_flush_events), never for a rolled-back change. */
                PendingEvent *ev = &e->pending[e->n_pending];
                snprintf(ev->action_buf, sizeof ev->action_buf, "%s", action);
                snprintf(ev->ring_buf, sizeof ev->ring_buf, "%s", ring ?: "");
                snprintf(ev->kid_buf, sizeof ev->kid_buf, "%s", kid ?: "");
                snprintf(ev->detail_buf, sizeof ev->detail_buf, "%s", text ?: "");
                e->n_pending++;
        }
        return r;
}

/* The schedule: a binary min-heap of keyrings by next_due, O(log n) per change. */
static void heap_swap(Engine *e, size_t i, size_t j) {
        Ring *t = e->heap[i];
        e->heap[i] = e->heap[j];
        e->heap[j] = t;
        e->heap[i]->heap_idx = i;
        e->heap[j]->heap_idx = j;
}

static void heap_sift(Engine *e, size_t i) {
        while (i > 0 && e->heap[(i - 1) / 2]->next_due > e->heap[i]->next_due) {
                heap_swap(e, i, (i - 1) / 2);
                i = (i - 1) / 2;
        }
        for (;;) {
                size_t l = 2 * i + 1, r = l + 1, m = i;
                if (l < e->n_heap && e->heap[l]->next_due < e->heap[m]->next_due)
                        m = l;
                if (r < e->n_heap && e->heap[r]->next_due < e->heap[m]->next_due)
                        m = r;
                if (m == i)
                        return;
                heap_swap(e, i, m);
                i = m;
        }
}

void schedule_update(Engine *e, Ring *r) {
        heap_sift(e, r->heap_idx);
}

void ring_set_schedule(Engine *e, Ring *r, usec_t due, const char *degraded, bool set_degraded) {
        char *why = set_degraded && degraded ? strdup(degraded) : NULL;
        pthread_rwlock_wrlock(&e->lock);
        r->next_due = due;
        if (set_degraded) {
                free(r->degraded);
                r->degraded = why;
        }
        schedule_update(e, r);
        pthread_rwlock_unlock(&e->lock);
}

static int ring_cmp(const void *a, const void *b) {
        return strcmp((*(Ring *const *) a)->name, (*(Ring *const *) b)->name);
}

int engine_insert_ring(Engine *e, Ring *r) {
        Ring **nr = realloc(e->rings, (e->n_rings + 1) * sizeof *nr);
        if (!nr)
                return -ENOMEM;
        e->rings = nr;
        Ring **nh = realloc(e->heap, (e->n_heap + 1) * sizeof *nh);
        if (!nh)
                return -ENOMEM;
        e->heap = nh;

        size_t pos = e->n_rings;
        while (pos > 0 && strcmp(e->rings[pos - 1]->name, r->name) > 0)
                pos--;
        memmove(e->rings + pos + 1, e->rings + pos, (e->n_rings - pos) * sizeof *nr);
        e->rings[pos] = r;
        e->n_rings++;

        r->heap_idx = e->n_heap;
        e->heap[e->n_heap++] = r;
        schedule_update(e, r);
        return 0;
}

Ring *engine_get_ring(Engine *e, const char *name) {
        Ring key = { .name = (char *) name }, *kp = &key, **found;
        if (!name || e->n_rings == 0)
                return NULL;
        found = bsearch(&kp, e->rings, e->n_rings, sizeof *e->rings, ring_cmp);
        return found ? *found : NULL;
}

size_t engine_n_rings(Engine *e) {
        return e->n_rings;
}

Ring *engine_ring_at(Engine *e, size_t i) {
        return i < e->n_rings ? e->rings[i] : NULL;
}

const StoreKey *engine_find_key(Engine *e, const char *kid, Ring **ret_ring) {
        KeyRef *ref = kid ? strmap_get(e->kids, kid) : NULL;
        if (!ref)
                return NULL;
        if (ret_ring)
                *ret_ring = ref->ring;
        return ref->key;
}

int engine_lookup_key(Engine *e, const char *kid, KeyLookup *ret) {
        int r = -ENOENT;
        pthread_rwlock_rdlock(&e->lock);
        KeyRef *ref = kid ? strmap_get(e->kids, kid) : NULL;
        if (ref && ref->pkey && EVP_PKEY_up_ref(ref->pkey) == 1) {
                snprintf(ret->keyring, sizeof ret->keyring, "%s", ref->ring->name);
                ret->kind = ref->ring->kind;
                snprintf(ret->issuer, sizeof ret->issuer, "%s", ref->ring->policy.issuer ?: "");
                ret->alg = ref->key->alg;
                ret->state = ref->key->state;
                ret->pkey = ref->pkey;
                r = 0;
        }
        pthread_rwlock_unlock(&e->lock);
        return r;
}

void engine_read_lock(Engine *e) {
        pthread_rwlock_rdlock(&e->lock);
}

void engine_read_unlock(Engine *e) {
        pthread_rwlock_unlock(&e->lock);
}

/* A signature the token refused because the key's object is gone (a fresh search found nothing): tell the daemon, so
 * that the event loop repairs the keyring, and answer "no usable key" rather than "no such keyring". Called with the
 * read lock held. */
static int signer_result(Engine *e, Ring *ring, int r) {
        if (r != -ENOENT)
                return r;
        /* One repair queued at a time, however many signers fail meanwhile. */
        if (e->opts.on_key_lost && !__atomic_exchange_n(&ring->repair_pending, true, __ATOMIC_ACQ_REL))
                e->opts.on_key_lost(ring->name, ring->signer_kid, e->opts.key_lost_userdata);
        return -ENOKEY;
}

static json_t *public_members(const char *jwk_text) {
        _cleanup_json_ json_t *jwk = json_loads(jwk_text, 0, NULL);
        json_t *out = json_object();
        static const char *const keep[] = { "kty", "crv", "x", "y", "n", "e" };
        if (!jwk || !out)
                return json_decref(out), NULL;
        for (size_t i = 0; i < ELEMENTSOF(keep); i++) {
                json_t *v = json_object_get(jwk, keep[i]);
                if (v && json_object_set(out, keep[i], v) < 0)
                        return json_decref(out), NULL;
        }
        return out;
}

int engine_sign_compact(Engine *e, const char *name, const json_t *header, bool embed_jwk, const void *payload,
                        size_t len, size_t max, char **ret, char ret_kid[STORE_KID_MAX + 1]) {
        _cleanup_json_ json_t *h = header ? json_copy((json_t *) header) : json_object();
        uint8_t sig[HSM_SIG_MAX];
        char *input = NULL;
        size_t input_len;
        Ring *ring;
        int r;

        if (!h)
                return -ENOMEM;
        pthread_rwlock_rdlock(&e->lock);
        ring = engine_get_ring(e, name);
        if (!ring)
                r = -ENOENT;
        else if (ring->disabled)
                r = -ESHUTDOWN;
        else if (!ring->signer)
                r = -ENOKEY;
        else if (json_object_set_new(h, "alg", json_string(keyd_alg_to_string(hsm_key_alg(ring->signer)))) < 0 ||
                 json_object_set_new(h, "kid", json_string(ring->signer_kid)) < 0)
                r = -ENOMEM;
        else if (embed_jwk && !ring_key_in_state(ring, KEY_STATE_ACTIVE))
                r = -ENOKEY;
        else if (embed_jwk && json_object_set_new(h, "jwk", public_members(ring_key_in_state(ring, KEY_STATE_ACTIVE)->jwk)) < 0)
                r = -ENOMEM;
        else
                r = jose_jws_signing_input(h, payload, len, &input, &input_len);
        /* "." and the signature in base64url without padding: ceil(4n/3) characters. */
        if (r >= 0 && max > 0 && input_len + 1 + (hsm_key_signature_size(ring->signer) * 4 + 2) / 3 > max)
                r = -EMSGSIZE;
        if (r >= 0)
                r = signer_result(e, ring, hsm_key_sign(ring->signer, input, input_len, sig, sizeof sig));
        if (r >= 0 && ret_kid)
                memcpy(ret_kid, ring->signer_kid, sizeof ring->signer_kid);
        pthread_rwlock_unlock(&e->lock);
        if (r >= 0)
                r = jose_jws_append_signature(input, input_len, sig, (size_t) r);
        if (r < 0) {
                free(input);
                return r;
        }
        *ret = input;
        return 0;
}

static Ring *ring_from_row(const StoreKeyring *row, char **ret_error) {
        _cleanup_json_ json_t *pj = NULL;
        Ring *r = calloc(1, sizeof *r);

        if (!r)
                return NULL;
        r->kind = ring_kind_from_string(row->kind);
        r->owner_uid = row->owner_uid;
        r->disabled = row->disabled;
        r->name = strdup(row->name);
        policy_init(&r->policy, r->kind);
        pj = json_loads(row->policy ?: "{}", JSON_REJECT_DUPLICATES, NULL);
        if (!r->name || r->kind < 0 || !pj || policy_update_from_json(&r->policy, pj, ret_error) < 0)
                return ring_free(r);
        return r;
}

int engine_load(Engine *e) {
        StoreKeyring **rows = NULL;
        size_t n = 0;
        int r;

        /* One listing of the token instead of one search per key. */
        r = engine_index_token(e);
        if (r < 0)
                return r;
        r = store_keyring_list(e->store, &rows, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *err = NULL;
                Ring *ring = ring_from_row(rows[i], &err);
                if (!ring) {
                        log_debug("keyring %s: unreadable policy: %s", rows[i]->name, err ?: "out of memory");
                        r = -EBADMSG;
                        break;
                }
                ring->next_due = engine_now(e);
                r = engine_insert_ring(e, ring);
                if (r >= 0) {
                        pthread_rwlock_wrlock(&e->lock);
                        r = ring_refresh(e, ring);
                        pthread_rwlock_unlock(&e->lock);
                }
                if (r < 0)
                        break;
        }
        store_keyring_list_free(rows);
        if (r >= 0)
                r = engine_load_denied(e);
        return r;
}

static int store_ring_row(Engine *e, const RingSpec *spec, bool insert) {
        _cleanup_json_ json_t *pj = NULL;
        _cleanup_free_ char *text = NULL;
        int r;

        r = policy_to_json(spec->policy, &pj);
        if (r < 0)
                return r;
        text = json_dumps(pj, JSON_COMPACT | JSON_SORT_KEYS);
        if (!text)
                return -ENOMEM;
        StoreKeyring row = {
                .name = (char *) spec->name,
                .kind = (char *) ring_kind_to_string(spec->kind),
                .policy = text,
                .owner_uid = spec->owner_uid,
                .created_at = engine_now(e),
        };
        return insert ? store_keyring_insert(e->store, &row) : store_keyring_update(e->store, &row);
}

int engine_create_ring(Engine *e, const RingSpec *spec, const Actor *a) {
        const char *why = NULL;
        _cleanup_json_ json_t *pj = NULL;
        Ring *ring;
        int r;

        if (!keyring_name_valid(spec->name) || spec->kind < 0 || spec->kind >= _RING_KIND_MAX ||
            (spec->kind == RING_AGENT) != (spec->owner_uid >= 0) || policy_validate(spec->policy, &why) < 0)
                return -EINVAL;
        if (engine_get_ring(e, spec->name))
                return -EEXIST;
        ring = calloc(1, sizeof *ring);
        if (!ring || !(ring->name = strdup(spec->name)) || policy_copy(spec->policy, &ring->policy) < 0) {
                if (ring)
                        free(ring->name);
                free(ring);
                return -ENOMEM;
        }
        ring->kind = spec->kind;
        ring->owner_uid = spec->owner_uid;
        ring->next_due = engine_now(e);

        r = store_begin(e->store, STORE_SYNCED);
        if (r >= 0)
                r = store_ring_row(e, spec, true);
        /* No record, no change: a record that cannot be built (or its detail) fails the whole change. */
        if (r >= 0)
                r = policy_to_json(spec->policy, &pj);
        if (r >= 0) {
                json_t *detail = json_pack("{s:s, s:O}", "kind", ring_kind_to_string(spec->kind), "policy", pj);
                r = detail ? engine_audit(e, a, "keyring.create", spec->name, NULL, "ok", detail) : -ENOMEM;
        }
        if (r >= 0)
                r = engine_commit(e);
        if (r < 0) {
                engine_rollback(e);
                ring_free(ring);
                return r;
        }
        pthread_rwlock_wrlock(&e->lock);
        r = engine_insert_ring(e, ring);
        pthread_rwlock_unlock(&e->lock);
        if (r < 0)
                ring_free(ring);
        return r;
}

static bool policy_equal(const Policy *a, const Policy *b) {
        _cleanup_json_ json_t *ja = NULL, *jb = NULL;
        return policy_to_json(a, &ja) >= 0 && policy_to_json(b, &jb) >= 0 && json_equal(ja, jb);
}

int engine_apply_config(Engine *e, const RingSpec *specs, size_t n) {
        int r;

        for (size_t i = 0; i < n; i++) {
                Ring *ring = engine_get_ring(e, specs[i].name);
                _cleanup_json_ json_t *pj = NULL;
                Policy copy;

                if (!ring) {
                        r = engine_create_ring(e, &specs[i], engine_actor_self());
                        if (r < 0)
                                return r;
                        continue;
                }
                if (ring->kind != specs[i].kind)
                        return -EMEDIUMTYPE; /* a keyring never changes kind */
                if (policy_equal(&ring->policy, specs[i].policy))
                        continue;
                r = policy_copy(specs[i].policy, &copy);
                if (r < 0)
                        return r;
                r = store_begin(e->store, STORE_SYNCED);
                if (r >= 0)
                        r = store_ring_row(e, &specs[i], false);
                /* No record, no change (as in engine_create_ring). */
                if (r >= 0)
                        r = policy_to_json(specs[i].policy, &pj);
                if (r >= 0) {
                        json_t *detail = json_pack("{s:O}", "policy", pj);
                        r = detail ? engine_audit(e, engine_actor_self(), "keyring.policy", ring->name, NULL, "ok",
                                                  detail)
                                   : -ENOMEM;
                }
                if (r >= 0)
                        r = engine_commit(e);
                if (r < 0) {
                        engine_rollback(e);
                        policy_done(&copy);
                        return r;
                }
                pthread_rwlock_wrlock(&e->lock);
                policy_done(&ring->policy);
                ring->policy = copy;
                ring->next_due = engine_now(e); /* the lifecycle may have something to do under the new policy */
                schedule_update(e, ring);
                r = ring_refresh(e, ring);
                pthread_rwlock_unlock(&e->lock);
                if (r < 0)
                        return r;
        }
        return 0;
}

int engine_sign(Engine *e, const char *name, const void *msg, size_t len, uint8_t *sig, size_t sig_size,
                char ret_kid[STORE_KID_MAX + 1], KeydAlg *ret_alg) {
        Ring *ring;
        int r;

        pthread_rwlock_rdlock(&e->lock);
        ring = engine_get_ring(e, name);
        if (!ring)
                r = -ENOENT;
        else if (ring->disabled)
                r = -ESHUTDOWN;
        else if (!ring->signer)
                r = -ENOKEY;
        else {
                r = signer_result(e, ring, hsm_key_sign(ring->signer, msg, len, sig, sig_size));
                if (r >= 0 && ret_kid)
                        memcpy(ret_kid, ring->signer_kid, sizeof ring->signer_kid);
                if (r >= 0 && ret_alg)
                        *ret_alg = hsm_key_alg(ring->signer);
        }
        pthread_rwlock_unlock(&e->lock);
        return r;
}

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
        return r->degraded;
}
usec_t ring_next_due(const Ring *r) {
        return r->next_due;
}
StoreKey *const *ring_keys(const Ring *r, size_t *ret_n) {
        *ret_n = r->n_keys;
        return r->keys;
}

const StoreKey *ring_key_in_state(const Ring *r, KeyState s) {
        for (size_t i = 0; i < r->n_keys; i++)
                if (r->keys[i]->state == s)
                        return r->keys[i];
        return NULL;
}

const char *ring_jwks(const Ring *r, usec_t now, size_t *ret_len, const char **ret_etag, unsigned *ret_max_age) {
        if (!r->jwks)
                return NULL;
        if (ret_len)
                *ret_len = r->jwks_len;
        if (ret_etag)
                *ret_etag = r->etag;
        if (ret_max_age)
                *ret_max_age = jwks_max_age(&r->policy, r->last_revocation, now);
        return r->jwks;
}

const char *ring_revocations(const Ring *r) {
        return r->revocations;
}

bool ring_can_sign(const Ring *r) {
        return !r->disabled && r->signer;
}

bool ring_healthy(const Ring *r) {
        return !r->degraded && (r->disabled || r->signer);
}

uint64_t engine_keys_lost(Engine *e) {
        return __atomic_load_n(&e->keys_lost, __ATOMIC_RELAXED);
}
