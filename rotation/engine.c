/* SPDX-License-Identifier: MIT */
/* The engine's life, its keyrings in memory and their views, the transaction and its audit records. */
#include <stdio.h>

#include "common/crypto-util.h"
#include "common/log.h"
#include "rotation/engine-internal.h"

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
        e->denied = denylist_new();
        if (!e->kids || !e->denied)
                return engine_free(e), -ENOMEM;
        *ret = e;
        return 0;
}

static void events_clear(Engine *e) {
        for (size_t i = 0; i < e->n_events; i++) {
                PendingEvent *p = &e->events[i];
                free(p->action);
                free(p->keyring);
                free(p->kid);
                free(p->detail);
        }
        e->n_events = 0;
}

Engine *engine_abandon(Engine *e) {
        if (!e)
                return NULL;
        for (size_t i = 0; i < e->n_rings; i++)
                ring_free(e->rings[i]);
        free(e->rings);
        schedule_done(&e->schedule);
        strmap_free(e->kids, NULL);
        denylist_free(e->denied);
        events_clear(e);
        free(e->events);
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

Store *engine_store(Engine *e) {
        return e->store;
}

const EngineOptions *engine_options(Engine *e) {
        return &e->opts;
}

/* Tell the daemon about the records of the transaction that just ended (or drop them if it rolled back). */
static void flush_events(Engine *e, bool committed) {
        for (size_t i = 0; committed && e->opts.on_event && i < e->n_events; i++) {
                PendingEvent *p = &e->events[i];
                EngineEvent ev = { p->action, p->keyring, p->kid, p->detail };
                e->opts.on_event(&ev, e->opts.event_userdata);
        }
        events_clear(e);
}

int engine_commit(Engine *e) {
        int r = store_commit(e->store);
        flush_events(e, r >= 0);
        return r;
}

void engine_rollback(Engine *e) {
        store_rollback(e->store);
        flush_events(e, false);
}

bool engine_failpoint(Engine *e, const char *where) {
        if (e->opts.failpoint && e->opts.failpoint(where, e->opts.failpoint_userdata)) {
                e->stopped = true;
                return true;
        }
        return false;
}

static char *strdup_or_null(const char *s, bool *oom) {
        char *c = s ? strdup(s) : NULL;
        *oom |= s && !c;
        return c;
}

/* Keep a record's event for on_event, told once its transaction commits. */
static void keep_event(Engine *e, const StoreAudit *rec) {
        bool oom = false;

        if (!e->opts.on_event)
                return;
        if (e->n_events == e->cap_events) {
                size_t cap = e->cap_events ? e->cap_events * 2 : 16;
                PendingEvent *n = reallocarray(e->events, cap, sizeof *n);
                if (!n) {
                        __atomic_add_fetch(&e->events_dropped, 1, __ATOMIC_RELAXED);
                        return;
                }
                e->events = n;
                e->cap_events = cap;
        }
        PendingEvent *p = &e->events[e->n_events];
        p->action = strdup_or_null(rec->action, &oom);
        p->keyring = strdup_or_null(rec->keyring && *rec->keyring ? rec->keyring : "", &oom);
        p->kid = strdup_or_null(rec->kid, &oom);
        p->detail = strdup_or_null(rec->detail, &oom);
        e->n_events++;
        if (oom) {
                /* The record itself is in the transaction; only the log line is lost, and counted. */
                __atomic_add_fetch(&e->events_dropped, 1, __ATOMIC_RELAXED);
                e->n_events--;
                free(p->action);
                free(p->keyring);
                free(p->kid);
                free(p->detail);
        }
}

int engine_audit(Engine *e, const Actor *a, const char *action, const char *ring, const char *kid, const char *result,
                 const char *detail_fmt, ...) {
        AuditRecord rec;
        va_list ap;
        int r;

        va_start(ap, detail_fmt);
        r = audit_record_build(&rec, a, engine_now(e), action, ring, kid, result, detail_fmt, ap);
        va_end(ap);
        if (r < 0)
                return r;
        r = store_audit_append(e->store, &rec.rec);
        if (r >= 0)
                keep_event(e, &rec.rec);
        audit_record_done(&rec);
        return r;
}

uint64_t engine_events_dropped(Engine *e) {
        return __atomic_load_n(&e->events_dropped, __ATOMIC_RELAXED);
}

static int ring_cmp(const void *a, const void *b) {
        return strcmp((*(Ring *const *) a)->name, (*(Ring *const *) b)->name);
}

int engine_insert_ring(Engine *e, Ring *r) {
        /* A new array, made before the lock and swapped in under it: readers may be walking the old one. */
        Ring **nr = reallocarray(NULL, e->n_rings + 1, sizeof *nr), **old = e->rings;
        size_t pos = e->n_rings;

        if (!nr)
                return -ENOMEM;
        if (schedule_add(&e->schedule, &r->due) < 0) {
                free(nr);
                return -ENOMEM;
        }
        while (pos > 0 && strcmp(e->rings[pos - 1]->name, r->name) > 0)
                pos--;
        if (e->n_rings > 0) {
                memcpy(nr, e->rings, pos * sizeof *nr);
                memcpy(nr + pos + 1, e->rings + pos, (e->n_rings - pos) * sizeof *nr);
        }
        nr[pos] = r;
        pthread_rwlock_wrlock(&e->lock);
        e->rings = nr;
        e->n_rings++;
        pthread_rwlock_unlock(&e->lock);
        free(old);
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

void engine_read_lock(Engine *e) {
        pthread_rwlock_rdlock(&e->lock);
}

void engine_read_unlock(Engine *e) {
        pthread_rwlock_unlock(&e->lock);
}

void engine_write_lock(Engine *e) {
        pthread_rwlock_wrlock(&e->lock);
}

void engine_write_unlock(Engine *e) {
        pthread_rwlock_unlock(&e->lock);
}

int engine_swap_view(Engine *e, Ring *r, RingView *v, unsigned flags) {
        RingView *old = NULL;
        int rc = 0;

        pthread_rwlock_wrlock(&e->lock);
        if (flags & SWAP_COMMIT)
                rc = engine_commit(e);
        if (rc < 0) {
                pthread_rwlock_unlock(&e->lock);
                engine_rollback(e);
                ring_view_free(v);
                return rc;
        }
        if (flags & SWAP_DISABLE)
                r->disabled = true;
        if (ring_view_swap(r, v, e->kids, &old) < 0)
                /* Done regardless: those keys do not verify until the keyring's next change. */
                log_error("keyring %s: out of memory indexing its keys", r->name);
        pthread_rwlock_unlock(&e->lock);
        ring_view_free(old);
        return 0;
}

int engine_reload_ring(Engine *e, Ring *r) {
        StoreKey **keys = NULL;
        RingView *v = NULL;
        size_t n = 0;
        int rc, signer_error;

        rc = store_key_list(e->store, r->name, &keys, &n);
        if (rc >= 0)
                rc = ring_view_build(r, e->hsm, keys, n, engine_now(e), !e->opts.read_only, &v, &signer_error);
        if (rc >= 0)
                rc = engine_swap_view(e, r, v, 0);
        return rc;
}

void engine_schedule(Engine *e, Ring *r, usec_t due) {
        pthread_rwlock_wrlock(&e->lock);
        schedule_set(&e->schedule, &r->due, due);
        pthread_rwlock_unlock(&e->lock);
}

/* The denied tokens of the store, into the denylist verification asks. */
static int load_denied(Engine *e) {
        StoreRevokedToken **l = NULL;
        size_t n = 0;
        int rc = store_revoked_token_list(e->store, &l, &n);
        for (size_t i = 0; rc >= 0 && i < n; i++)
                rc = denylist_add(e->denied, l[i]->jti, l[i]->exp);
        store_revoked_token_list_free(l);
        return rc;
}

typedef struct KeyAt {
        StoreKey *key;
        size_t pos; /* in the store's order (by time), kept within a keyring */
} KeyAt;

static int key_at_cmp(const void *a, const void *b) {
        const KeyAt *x = a, *y = b;
        int c = strcmp(x->key->keyring, y->key->keyring);
        return c != 0 ? c : x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* Every keyring's view from one query of every key row (one query per keyring costs a read transaction each, at
 * 10,000 keyrings a good part of the start). e->rings is in name order, and so are the keys once sorted. */
static int load_views(Engine *e) {
        StoreKey **all = NULL;
        _cleanup_free_ KeyAt *at = NULL;
        size_t n = 0, i = 0;
        int r;

        r = store_key_list(e->store, NULL, &all, &n);
        if (r < 0)
                return r;
        at = calloc(n + 1, sizeof *at);
        if (!at) {
                store_key_list_free(all);
                return -ENOMEM;
        }
        for (size_t j = 0; j < n; j++)
                at[j] = (KeyAt){ all[j], j };
        free(all); /* the rows now belong to at[] */
        qsort(at, n, sizeof *at, key_at_cmp);

        for (size_t x = 0; x < e->n_rings; x++) {
                Ring *ring = e->rings[x];
                for (; i < n && strcmp(at[i].key->keyring, ring->name) < 0; i++)
                        at[i].key = store_key_free(at[i].key); /* a row without its keyring: not loaded */
                size_t m = 0;
                while (i + m < n && streq(at[i + m].key->keyring, ring->name))
                        m++;
                StoreKey **keys = calloc(m + 1, sizeof *keys);
                if (!keys) {
                        r = -ENOMEM;
                        break;
                }
                for (size_t j = 0; j < m; j++, i++) {
                        keys[j] = at[i].key;
                        at[i].key = NULL;
                }
                RingView *v = NULL;
                int signer_error;
                r = ring_view_build(ring, e->hsm, keys, m, engine_now(e), !e->opts.read_only, &v, &signer_error);
                if (r >= 0)
                        r = engine_swap_view(e, ring, v, 0);
                if (r < 0)
                        break;
        }
        for (size_t j = 0; j < n; j++)
                store_key_free(at[j].key);
        return r;
}

int engine_load(Engine *e) {
        StoreKeyring **rows = NULL;
        size_t n = 0;
        int r;

        /* One listing of the token: every key is opened, and reconcile reads, by this index. */
        r = hsm_index_load(e->hsm, "keyd:");
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
                ring->due.due = engine_now(e);
                r = engine_insert_ring(e, ring);
                if (r < 0) {
                        ring_free(ring);
                        break;
                }
        }
        store_keyring_list_free(rows);
        if (r >= 0)
                r = load_views(e);
        if (r >= 0)
                r = load_denied(e);
        return r;
}

int engine_publish_all(Engine *e) {
        int r = 0;
        for (size_t i = 0; i < e->n_rings; i++) {
                int k = ring_write_jwks_file(e, e->rings[i]);
                if (k < 0 && r == 0)
                        r = k;
        }
        return r;
}

uint64_t engine_keys_lost(Engine *e) {
        return __atomic_load_n(&e->keys_lost, __ATOMIC_RELAXED);
}

Hsm *engine_hsm(Engine *e) {
        return e->hsm;
}
