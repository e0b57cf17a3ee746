/* SPDX-License-Identifier: MIT */
/* Keyrings come and change: created by the configuration or the API, their policies updated from keyd.conf. */
#include "common/crypto-util.h"
#include "common/log.h"
#include "rotation/engine-internal.h"

static int store_ring_row(Engine *e, const RingSpec *spec, bool insert, json_t **ret_policy) {
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
                .origin = (char *) (spec->from_file ? "file" : "api"),
        };
        r = insert ? store_keyring_insert(e->store, &row) : store_keyring_update(e->store, &row);
        if (r >= 0)
                *ret_policy = TAKE_PTR(pj);
        return r;
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
        ring = ring_new(spec->name, spec->kind, spec->owner_uid, spec->policy);
        if (!ring)
                return -ENOMEM;
        ring->due.due = engine_now(e);
        ring->from_api = !spec->from_file;

        r = store_begin(e->store, STORE_SYNCED);
        if (r >= 0)
                r = store_ring_row(e, spec, true, &pj);
        /* No record, no change: a record that cannot be built fails the whole change. */
        if (r >= 0)
                r = engine_audit(e, a, "keyring.create", spec->name, NULL, "ok", "{s:s, s:O}", "kind",
                                 ring_kind_to_string(spec->kind), "policy", pj);
        if (r >= 0)
                r = engine_commit(e);
        if (r < 0) {
                engine_rollback(e);
                ring_free(ring);
                return r;
        }
        r = engine_insert_ring(e, ring);
        if (r < 0)
                ring_free(ring);
        return r;
}

static bool policy_equal(const Policy *a, const Policy *b) {
        _cleanup_json_ json_t *ja = NULL, *jb = NULL;
        return policy_to_json(a, &ja) >= 0 && policy_to_json(b, &jb) >= 0 && json_equal(ja, jb);
}

/* Store and audit a configured keyring's new policy, then take it in memory; its view is rebuilt (publishing may have
 * changed) and it is due for a lifecycle pass at once. */
static int update_policy(Engine *e, Ring *ring, const RingSpec *spec) {
        _cleanup_json_ json_t *pj = NULL;
        Policy copy;
        int r;

        r = policy_copy(spec->policy, &copy);
        if (r < 0)
                return r;
        r = store_begin(e->store, STORE_SYNCED);
        if (r >= 0)
                r = store_ring_row(e, spec, false, &pj);
        if (r >= 0)
                r = engine_audit(e, actor_self(), "keyring.policy", ring->name, NULL, "ok", "{s:O}", "policy", pj);
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
        pthread_rwlock_unlock(&e->lock);
        engine_schedule(e, ring, engine_now(e));
        return engine_reload_ring(e, ring);
}

int engine_apply_config(Engine *e, const RingSpec *specs, size_t n) {
        int r;

        for (size_t i = 0; i < n; i++) {
                Ring *ring = engine_get_ring(e, specs[i].name);

                if (!ring)
                        r = engine_create_ring(e, &specs[i], actor_self());
                else if (ring->from_api && specs[i].from_file) {
                        /* Silently giving an agent's keyring the file's policy (another owner, other signers) is
                         * not what either side meant. */
                        log_error("keyring %s was created through the API: the [keyring %s] section of the "
                                  "configuration may not take it over. Remove the section (the keyring keeps its own "
                                  "policy) or give the section another name.",
                                  specs[i].name, specs[i].name);
                        r = -EEXIST;
                } else if (ring->kind != specs[i].kind)
                        r = -EMEDIUMTYPE; /* a keyring never changes kind */
                else if (policy_equal(&ring->policy, specs[i].policy))
                        r = 0;
                else
                        r = update_policy(e, ring, &specs[i]);
                if (r < 0)
                        return r;
        }
        return 0;
}
