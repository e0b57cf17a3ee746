/* SPDX-License-Identifier: MIT */
/* Reconciling the token with the store at start (SPEC §3). The store is the truth about which keys exist; the token
 * may hold objects the store never recorded (a crash between keygen and commit), miss objects the store has (SoftHSM2
 * does not fsync its object files), or still hold private objects of keys that left next/active (a crash before the
 * destroy).
 *
 * The token is shared: another installation of keyd (another database, a restored backup, a copy) may keep its keys
 * in it. So an object is destroyed only when this installation can prove it is its own: its key row says so, or its id
 * was recorded in the store before its keygen (a crash leftover of this very database's history). An object that
 * carries this installation's label but neither is kept and reported: it is what a restored or copied database sees
 * of the keys the live installation made since. And when the proven destructions are more than a few, reconcile
 * destroys nothing: that is not what a crash leaves behind. */
#include <stdarg.h>
#include <stdio.h>

#include "common/crypto-util.h"
#include "common/hex.h"
#include "common/log.h"
#include "common/string-table.h"
#include "rotation/engine-internal.h"

#define RECONCILE_MAX_DESTROY_DEFAULT 8U

static const char *const reconcile_action_table[_RECONCILE_ACTION_MAX] = {
        [RECONCILE_DESTROY_ORPHAN] = "destroy_orphan",
        [RECONCILE_DESTROY_PRIVATE] = "destroy_private",
        [RECONCILE_KEY_LOST] = "key_lost",
        [RECONCILE_KEY_REFUSED] = "key_refused",
        [RECONCILE_KEEP_UNPROVEN] = "keep_unproven",
        [RECONCILE_KEEP_FOREIGN] = "keep_foreign",
};

DEFINE_STRING_TABLE_LOOKUP_TO_STRING(reconcile_action, ReconcileAction);

typedef struct Found {
        char id[STORE_KEY_ID_MAX + 1];
        char label[HSM_LABEL_MAX + 1];
        bool has_private;
} Found;

static int found_cmp(const void *a, const void *b) {
        return strcmp(((const Found *) a)->id, ((const Found *) b)->id);
}

static int key_id_cmp(const void *a, const void *b) {
        return strcmp((*(StoreKey *const *) a)->id, (*(StoreKey *const *) b)->id);
}

static int str_cmp(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

/* The installation a label names: "keyd:<instance>:<keyring>:<id>" gives 1 and the instance; the form keyd wrote
 * before installations had an identity, "keyd:<keyring>:<id>", gives 0 (keyring names hold no ':'). */
static int label_instance(const char *label, char out[STORE_INSTANCE_ID_MAX + 1]) {
        const char *rest = startswith(label, "keyd:");
        size_t colons = 0;
        for (const char *p = rest; p && *p; p++)
                colons += *p == ':';
        if (!rest || colons != 2 || strspn(rest, "0123456789abcdef") != STORE_INSTANCE_ID_MAX ||
            rest[STORE_INSTANCE_ID_MAX] != ':')
                return 0;
        memcpy(out, rest, STORE_INSTANCE_ID_MAX);
        out[STORE_INSTANCE_ID_MAX] = 0;
        return 1;
}

static int add_item(ReconcileReport *rep, ReconcileAction action, const char *id, const char *label,
                    const StoreKey *k) {
        ReconcileItem *n = reallocarray(rep->items, rep->n_items + 1, sizeof *n);
        if (!n)
                return -ENOMEM;
        rep->items = n;
        ReconcileItem *it = &n[rep->n_items++];
        *it = (ReconcileItem){ .action = action };
        snprintf(it->id, sizeof it->id, "%s", id);
        snprintf(it->label, sizeof it->label, "%s", label ?: "");
        if (k) {
                snprintf(it->kid, sizeof it->kid, "%s", k->kid);
                snprintf(it->keyring, sizeof it->keyring, "%s", k->keyring);
        }
        return 0;
}

void reconcile_report_done(ReconcileReport *r) {
        if (!r)
                return;
        free(r->items);
        r->items = NULL;
        r->n_items = 0;
}

/* The token's keyd objects, one entry per id, from the token layer's index (listed once, by engine_load()), sorted
 * by hex id. */
static int list_found(Engine *e, Found **ret, size_t *ret_n) {
        _cleanup_free_ HsmEntry *objs = NULL;
        size_t n = 0;
        int r;

        r = hsm_index_list(e->hsm, &objs, &n);
        if (r < 0)
                return r;
        Found *found = calloc(n + 1, sizeof *found);
        if (!found)
                return -ENOMEM;
        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
                if (!startswith(objs[i].label, "keyd:"))
                        continue; /* found by id, but not labelled as keyd's */
                hex_encode(objs[i].id, objs[i].id_len, found[m].id, sizeof found[m].id);
                snprintf(found[m].label, sizeof found[m].label, "%s", objs[i].label);
                found[m++].has_private = objs[i].priv != 0;
        }
        qsort(found, m, sizeof *found, found_cmp);
        *ret = found;
        *ret_n = m;
        return 0;
}

/* A next/active key's standing in the token: 0 fine, RECONCILE_KEY_LOST or RECONCILE_KEY_REFUSED. */
static int check_live(Engine *e, const StoreKey *k, const Found *f) {
        if (!f || !f->has_private)
                return RECONCILE_KEY_LOST;
        uint8_t id[HSM_ID_MAX];
        size_t n;
        int r = ring_key_token_id(k, id, &n);
        if (r >= 0)
                r = hsm_key_check(e->hsm, k->alg, id, n);
        if (r == -EPERM || r == -EMEDIUMTYPE)
                return RECONCILE_KEY_REFUSED;
        return r == -ENOENT ? RECONCILE_KEY_LOST : r;
}

typedef struct Plan {
        ReconcileReport rep;
        StoreKey **keys; /* every key row */
        size_t n_keys;
        char **pending; /* ids recorded before keygen */
        size_t n_pending;
        Found *found;
        size_t n_found;
} Plan;

static void plan_done(Plan *p) {
        store_key_list_free(p->keys);
        store_pending_key_list_free(p->pending);
        free(p->found);
}

static StoreKey *plan_key(Plan *p, const char *id) {
        StoreKey probe = { 0 }, *pp = &probe, **k;
        snprintf(probe.id, sizeof probe.id, "%s", id);
        k = bsearch(&pp, p->keys, p->n_keys, sizeof *p->keys, key_id_cmp);
        return k ? *k : NULL;
}

static int make_plan(Engine *e, Plan *p) {
        int r;

        *p = (Plan){ .rep.max_destroy = e->opts.reconcile_max_destroy ?: RECONCILE_MAX_DESTROY_DEFAULT };
        memcpy(p->rep.instance_id, e->instance_id, sizeof p->rep.instance_id);
        r = list_found(e, &p->found, &p->n_found);
        if (r >= 0)
                r = store_key_list(e->store, NULL, &p->keys, &p->n_keys);
        if (r >= 0)
                r = store_pending_key_list(e->store, &p->pending, &p->n_pending);
        if (r < 0)
                return r;
        /* Sorted by id for the lookups below (store_key_list() orders by time). */
        qsort(p->keys, p->n_keys, sizeof *p->keys, key_id_cmp);

        for (size_t i = 0; i < p->n_found; i++) {
                const Found *f = &p->found[i];
                char inst[STORE_INSTANCE_ID_MAX + 1] = "";
                const char *id = f->id;
                ReconcileAction a;

                if (plan_key(p, f->id))
                        continue; /* a key of ours: below */
                if (bsearch(&id, p->pending, p->n_pending, sizeof *p->pending, str_cmp))
                        a = RECONCILE_DESTROY_ORPHAN;
                else if (label_instance(f->label, inst) && !streq(inst, e->instance_id))
                        a = RECONCILE_KEEP_FOREIGN;
                else
                        a = RECONCILE_KEEP_UNPROVEN;
                r = add_item(&p->rep, a, f->id, f->label, NULL);
                if (r < 0)
                        return r;
                if (a == RECONCILE_DESTROY_ORPHAN)
                        p->rep.orphans_destroyed++;
                else if (a == RECONCILE_KEEP_FOREIGN)
                        p->rep.foreign++;
                else
                        p->rep.unproven++;
        }

        for (size_t j = 0; j < p->n_keys; j++) {
                StoreKey *k = p->keys[j];
                Found probe = { 0 }, *f;
                bool live = k->state == KEY_STATE_NEXT || k->state == KEY_STATE_ACTIVE;

                if (!engine_get_ring(e, k->keyring))
                        continue;
                snprintf(probe.id, sizeof probe.id, "%s", k->id);
                f = bsearch(&probe, p->found, p->n_found, sizeof *p->found, found_cmp);
                if (!live) {
                        if (f && f->has_private) {
                                r = add_item(&p->rep, RECONCILE_DESTROY_PRIVATE, k->id, f->label, k);
                                p->rep.privates_destroyed++;
                        }
                } else {
                        r = check_live(e, k, f);
                        if (r > 0) {
                                if (r == RECONCILE_KEY_LOST)
                                        p->rep.keys_lost++;
                                else
                                        p->rep.keys_refused++;
                                r = add_item(&p->rep, r, k->id, f ? f->label : NULL, k);
                        }
                }
                if (r < 0)
                        return r;
        }
        return 0;
}

int engine_reconcile_plan(Engine *e, ReconcileReport *ret) {
        Plan p;
        int r = make_plan(e, &p);
        if (r >= 0 && ret) {
                *ret = p.rep;
                p.rep.items = NULL;
        }
        reconcile_report_done(&p.rep);
        plan_done(&p);
        return r;
}

/* One audited finding in a transaction of its own; failed: the token's error for a destruction that did not happen
 * (recorded as "error" with the token's error name). detail_fmt and its arguments as json_pack(). */
static int audit_one(Engine *e, const char *action, const char *ring, const char *kid, int failed,
                     const char *detail_fmt, ...) {
        _cleanup_json_ json_t *detail = NULL;
        va_list ap;
        int r;

        va_start(ap, detail_fmt);
        detail = json_vpack_ex(NULL, 0, detail_fmt, ap);
        va_end(ap);
        if (!detail || (failed < 0 && json_object_set_new(detail, "error", json_string(hsm_last_error())) < 0))
                return -ENOMEM;
        r = store_begin(e->store, STORE_SYNCED);
        if (r >= 0)
                r = engine_audit(e, NULL, action, ring, kid, failed < 0 ? "error" : "ok", "O", detail);
        if (r >= 0)
                r = engine_commit(e);
        if (r < 0)
                engine_rollback(e);
        return r;
}

static int apply_item(Engine *e, Plan *p, ReconcileItem *it) {
        StoreKey *k = plan_key(p, it->id);
        Ring *ring = k ? engine_get_ring(e, k->keyring) : NULL;
        int r = 0;

        switch (it->action) {
        case RECONCILE_DESTROY_ORPHAN:
                if (p->rep.refused)
                        return 0;
                it->result = engine_destroy_objects(e, it->id);
                return audit_one(e, "reconcile.orphan_destroyed", NULL, NULL, it->result, "{s:s, s:s}", "id", it->id,
                                 "label", it->label);
        case RECONCILE_DESTROY_PRIVATE:
                if (p->rep.refused)
                        return 0;
                it->result = engine_destroy_objects(e, it->id);
                return audit_one(e, "reconcile.private_destroyed", it->keyring, it->kid, it->result, "{s:s}", "state",
                                 key_state_to_string(k->state));
        case RECONCILE_KEY_LOST:
                if (p->rep.refused)
                        return 0; /* left as it is: the keyring stays degraded until an operator looks */
                __atomic_add_fetch(&e->keys_lost, 1, __ATOMIC_RELAXED);
                log_debug("keyring %s: the private key of %s key %s is missing from the token", k->keyring,
                          key_state_to_string(k->state), k->kid);
                r = engine_demote_key(e, k, &ring->policy, true, "reconcile.key_lost",
                                      "private object missing from the token");
                if (r >= 0 && it->label[0])
                        (void) engine_destroy_objects(e, k->id); /* a public object alone is of no use */
                return r;
        case RECONCILE_KEY_REFUSED:
                log_debug("keyring %s: key %s is not protected as keyd requires (sensitive, never extractable, "
                          "generated in the token): revoked",
                          k->keyring, k->kid);
                r = engine_demote_key(e, k, &ring->policy, false, "reconcile.key_refused",
                                      "protection attributes or key type");
                if (r >= 0)
                        (void) engine_destroy_objects(e, k->id); /* never to be used: revoked whatever the limit */
                return r;
        default:
                return 0; /* kept: reported below */
        }
}

static bool destroy_failed(const Plan *p, const char *id) {
        for (size_t i = 0; i < p->rep.n_items; i++)
                if (p->rep.items[i].result < 0 && streq(p->rep.items[i].id, id))
                        return true;
        return false;
}

/* The ids recorded before keygen are done with once their object is gone or has its row. */
static int prune_pending(Engine *e, Plan *p) {
        int r = store_begin(e->store, STORE_COMMITTED);
        for (size_t i = 0; r >= 0 && i < p->n_pending; i++) {
                Found probe = { 0 };
                snprintf(probe.id, sizeof probe.id, "%s", p->pending[i]);
                bool in_token = bsearch(&probe, p->found, p->n_found, sizeof *p->found, found_cmp) != NULL;
                if (in_token && !plan_key(p, p->pending[i]) && (p->rep.refused || destroy_failed(p, p->pending[i])))
                        continue; /* an orphan still there: its record stays its proof for a later reconcile */
                r = store_pending_key_delete(e->store, p->pending[i]);
        }
        if (r >= 0)
                r = store_commit(e->store);
        if (r < 0)
                store_rollback(e->store);
        return r;
}

static int report_kept(Engine *e, Plan *p) {
        _cleanup_json_ json_t *ids = json_array();
        int r;

        if (!ids)
                return -ENOMEM;
        for (size_t i = 0; i < p->rep.n_items && json_array_size(ids) < 16; i++)
                if (p->rep.items[i].action == RECONCILE_KEEP_UNPROVEN &&
                    json_array_append_new(ids, json_string(p->rep.items[i].label)) < 0)
                        return -ENOMEM;
        if (p->rep.refused) {
                r = audit_one(e, "reconcile.refused", NULL, NULL, 0, "{s:I, s:I, s:I}", "orphans",
                              (json_int_t) p->rep.orphans_destroyed, "private_objects",
                              (json_int_t) p->rep.privates_destroyed, "limit", (json_int_t) p->rep.max_destroy);
                if (r < 0)
                        return r;
        }
        if (p->rep.unproven > 0)
                return audit_one(e, "reconcile.unproven", NULL, NULL, 0, "{s:I, s:I, s:O}", "objects",
                                 (json_int_t) p->rep.unproven, "foreign", (json_int_t) p->rep.foreign, "labels", ids);
        return 0;
}

int engine_reconcile(Engine *e, ReconcileReport *ret) {
        Plan p;
        int r;

        r = make_plan(e, &p);
        if (r < 0)
                goto finish;
        /* A crash leaves a few objects behind and a power cut loses a few keys; many of either means the token and
         * the database do not belong together (a wrong token, a database at the wrong path): change nothing. */
        p.rep.refused = p.rep.orphans_destroyed + p.rep.privates_destroyed + p.rep.keys_lost > p.rep.max_destroy;
        if (p.rep.refused)
                log_debug("reconcile: %u objects to destroy and %u keys lost is over the limit of %u: none",
                          p.rep.orphans_destroyed + p.rep.privates_destroyed, p.rep.keys_lost, p.rep.max_destroy);
        for (size_t i = 0; r >= 0 && i < p.rep.n_items; i++)
                r = apply_item(e, &p, &p.rep.items[i]);
        if (r >= 0)
                r = report_kept(e, &p);
        if (r >= 0)
                r = prune_pending(e, &p);
        if (r < 0)
                goto finish;
        for (size_t i = 0; i < p.rep.n_items; i++) {
                const ReconcileItem *it = &p.rep.items[i];
                bool undone = p.rep.refused || it->result < 0;
                if (undone && it->action == RECONCILE_DESTROY_ORPHAN)
                        p.rep.orphans_destroyed--;
                else if (undone && it->action == RECONCILE_DESTROY_PRIVATE)
                        p.rep.privates_destroyed--;
                else if (p.rep.refused && it->action == RECONCILE_KEY_LOST)
                        p.rep.keys_lost--;
        }

        /* The keyrings whose keys the reconcile marked follow the store again (the others' views are as loaded);
         * each keyring is due for a lifecycle pass. */
        for (size_t i = 0; i < p.rep.n_items; i++) {
                const ReconcileItem *it = &p.rep.items[i];
                Ring *ring = it->keyring[0] ? engine_get_ring(e, it->keyring) : NULL;
                if (ring)
                        (void) engine_reload_ring(e, ring);
        }
        for (size_t i = 0; i < e->n_rings; i++)
                engine_schedule(e, e->rings[i], engine_now(e));
        reconcile_report_done(&p.rep);
        if (ret)
                *ret = p.rep;
finish:
        reconcile_report_done(&p.rep);
        plan_done(&p);
        return r;
}
