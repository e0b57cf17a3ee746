/* SPDX-License-Identifier: MIT */
/* Emergency operations: revoke a key, disable a keyring, deny a token. */
#include "common/crypto-util.h"
#include "common/log.h"
#include "rotation/engine-internal.h"

static int deny_in_memory(Engine *e, const char *jti, usec_t exp);

static const char *const reasons[] = { "key_compromise", "superseded", "cessation", "unspecified" };

static bool reason_valid(const char *r) {
        for (size_t i = 0; i < ELEMENTSOF(reasons); i++)
                if (streq(reasons[i], r))
                        return true;
        return false;
}

static int replan(Engine *e, Ring *r, const Change *c) {
        LifecyclePlan plan;
        size_t *expire = calloc(r->n_keys + 1, sizeof *expire);
        usec_t now = engine_now(e);
        int rc;

        if (!expire)
                return -ENOMEM;
        plan.expire = expire;
        rc = lifecycle_plan(r->keys, r->n_keys, &r->policy, r->disabled || c->disable, now, &plan);
        if (rc >= 0)
                rc = engine_apply_plan(e, r, &plan, c);
        free(expire);
        if (rc >= 0)
                ring_set_schedule(e, r, now, NULL, false);
        return rc;
}

int engine_revoke_key(Engine *e, const char *kid, const char *reason, const Actor *a) {
        _cleanup_free_ size_t *expire = NULL;
        _cleanup_free_ StoreKey **view = NULL;
        StoreKey *k = NULL, gone;
        LifecyclePlan plan;
        usec_t now = engine_now(e);
        Ring *r = NULL;
        int rc;

        if (!reason_valid(reason ?: ""))
                return -EINVAL;
        if (!kid || !engine_find_key(e, kid, &r))
                return -ENOENT;
        for (size_t i = 0; i < r->n_keys; i++)
                if (streq(r->keys[i]->kid, kid))
                        k = r->keys[i];
        if (k->state == KEY_STATE_REVOKED)
                return -EALREADY;

        /* Plan on a view of the keyring in which the key is already gone: revoking the active key promotes next and
         * generates a standby; revoking next generates a new one. The keys themselves change only inside the
         * transaction, under the write lock (apply_rows). */
        view = calloc(r->n_keys + 1, sizeof *view);
        expire = calloc(r->n_keys + 1, sizeof *expire);
        if (!view || !expire)
                return -ENOMEM;
        gone = *k;
        gone.state = KEY_STATE_REVOKED;
        for (size_t i = 0; i < r->n_keys; i++)
                view[i] = r->keys[i] == k ? &gone : r->keys[i];
        plan.expire = expire;
        rc = lifecycle_plan(view, r->n_keys, &r->policy, r->disabled, now, &plan);
        if (rc < 0)
                return rc;
        Change c = { .actor = a, .reason = "revocation", .revoke = k, .revoke_reason = reason };
        rc = engine_apply_plan(e, r, &plan, &c);
        if (rc < 0)
                return rc; /* nothing was committed; the keyring in memory was reloaded from the store */
        ring_set_schedule(e, r, now, NULL, false);
        log_debug("keyring %s: key %s revoked (%s)", r->name, kid, reason);
        return rc;
}

int engine_disable_ring(Engine *e, const char *name, const Actor *a) {
        Ring *r = engine_get_ring(e, name);
        if (!r)
                return -ENOENT;
        if (r->disabled)
                return -EALREADY;
        Change c = { .actor = a, .reason = "disable", .disable = true };
        int rc = replan(e, r, &c);
        if (rc >= 0)
                log_debug("keyring %s: disabled, every key revoked", name);
        return rc;
}

int engine_deny_token(Engine *e, const char *jti, const char *ring, usec_t exp, const Actor *a) {
        usec_t now = engine_now(e);
        int rc;

        if (!jti || !*jti || strlen(jti) > 256 || exp <= now)
                return -EINVAL;
        StoreRevokedToken t = { .jti = (char *) jti, .keyring = (char *) ring, .exp = exp, .revoked_at = now };
        rc = store_begin(e->store, STORE_SYNCED);
        if (rc >= 0)
                rc = store_revoked_token_insert(e->store, &t);
        if (rc >= 0)
                rc = engine_audit(e, a, "token.deny", ring, NULL, "ok",
                                  json_pack("{s:s, s:I}", "jti", jti, "exp", (json_int_t) (exp / USEC_PER_SEC)));
        if (rc >= 0)
                rc = engine_commit(e);
        if (rc < 0) {
                engine_rollback(e);
                return rc;
        }
        return deny_in_memory(e, jti, exp);
}

static int deny_in_memory(Engine *e, const char *jti, usec_t exp) {
        usec_t *v = malloc(sizeof *v), *old = NULL;
        int rc;
        if (!v)
                return -ENOMEM;
        *v = exp;
        pthread_rwlock_wrlock(&e->lock);
        rc = strmap_put(e->denied, jti, v, (void **) &old);
        pthread_rwlock_unlock(&e->lock);
        free(old);
        if (rc < 0)
                free(v);
        return rc;
}

int engine_load_denied(Engine *e) {
        StoreRevokedToken **l = NULL;
        size_t n = 0;
        int rc = store_revoked_token_list(e->store, &l, &n);
        for (size_t i = 0; rc >= 0 && i < n; i++)
                rc = deny_in_memory(e, l[i]->jti, l[i]->exp);
        store_revoked_token_list_free(l);
        return rc;
}

static bool denial_over(const char *key, void *value, void *userdata) {
        (void) key;
        return *(usec_t *) value <= *(usec_t *) userdata;
}

void engine_prune_denied(Engine *e) {
        usec_t now = engine_now(e);
        pthread_rwlock_wrlock(&e->lock);
        size_t n = strmap_remove_if(e->denied, denial_over, &now, free);
        pthread_rwlock_unlock(&e->lock);
        if (n > 0 && store_begin(e->store, STORE_COMMITTED) >= 0) {
                if (store_revoked_token_prune(e->store, now) < 0 || store_commit(e->store) < 0)
                        store_rollback(e->store);
        }
}

int engine_token_denied(Engine *e, const char *jti) {
        int r = 0;
        pthread_rwlock_rdlock(&e->lock);
        usec_t *exp = jti ? strmap_get(e->denied, jti) : NULL;
        if (exp && *exp > engine_now(e))
                r = 1;
        pthread_rwlock_unlock(&e->lock);
        return r;
}
