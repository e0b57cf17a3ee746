/* SPDX-License-Identifier: MIT */
/* The keys that may sign checkpoints, as the chain tells them: issuer keyrings (keyring.create) and the keys keyd
 * generated in them (key.generate). A pruned chain hands what it knew on in a carry, so that the kept chain's
 * checkpoints still verify without the records that made their keys. */
#include <stdlib.h>

#include "common/crypto-util.h"
#include "common/macro.h"
#include "rotation/audit-internal.h"
#include "rotation/policy.h"

static int mark; /* the non-NULL value of issuers */

int audit_keys_init(AuditKeys *k) {
        *k = (AuditKeys){ .issuers = strmap_new(), .generated = strmap_new() };
        if (!k->issuers || !k->generated) {
                audit_keys_done(k);
                return -ENOMEM;
        }
        return 0;
}

void audit_keys_done(AuditKeys *k) {
        strmap_free(k->issuers, NULL);
        strmap_free(k->generated, free);
        *k = (AuditKeys){ 0 };
}

int audit_keys_want(AuditKeys *k, const char *kid) {
        if (strmap_get(k->generated, kid))
                return 0;
        Generated *g = calloc(1, sizeof *g);
        if (!g)
                return -ENOMEM;
        g->alg = _KEYD_ALG_INVALID;
        int r = strmap_put(k->generated, kid, g, NULL);
        if (r < 0)
                free(g);
        return r;
}

static char *detail_string(const char *detail, const char *member) {
        _cleanup_json_ json_t *o = detail ? json_loads(detail, 0, NULL) : NULL;
        const char *v = json_string_value(json_object_get(o, member));
        return v ? strdup(v) : NULL;
}

int audit_keys_visit(AuditKeys *k, const StoreAudit *rec) {
        if (!streq(rec->result, "ok") || !rec->keyring)
                return 0;
        if (streq(rec->action, "keyring.create")) {
                _cleanup_free_ char *kind = detail_string(rec->detail, "kind");
                if (kind && streq(kind, ring_kind_to_string(RING_ISSUER)))
                        return strmap_put(k->issuers, rec->keyring, &mark, NULL);
                (void) strmap_remove(k->issuers, rec->keyring);
        } else if (streq(rec->action, "key.generate") && rec->kid) {
                Generated *g = strmap_get(k->generated, rec->kid);
                if (g && g->seq == 0 && strmap_get(k->issuers, rec->keyring)) {
                        _cleanup_free_ char *alg = detail_string(rec->detail, "alg");
                        g->seq = rec->seq;
                        g->alg = alg ? keyd_alg_from_string(alg) : _KEYD_ALG_INVALID;
                }
        }
        return 0;
}

int audit_keys_load(AuditKeys *k, const char *carry) {
        _cleanup_json_ json_t *o = carry ? json_loads(carry, JSON_REJECT_DUPLICATES, NULL) : NULL;
        json_t *issuers = json_object_get(o, "issuers"), *keys = json_object_get(o, "keys"), *v;
        const char *kid;
        size_t i;
        int r;

        if (!json_is_object(o) || (issuers && !json_is_array(issuers)) || (keys && !json_is_object(keys)))
                return -EBADMSG;
        json_array_foreach(issuers, i, v) {
                if (!json_is_string(v))
                        return -EBADMSG;
                r = strmap_put(k->issuers, json_string_value(v), &mark, NULL);
                if (r < 0)
                        return r;
        }
        json_object_foreach(keys, kid, v) {
                json_t *seq = json_object_get(v, "seq"), *alg = json_object_get(v, "alg");
                if (!json_is_integer(seq) || json_integer_value(seq) <= 0 || (alg && !json_is_string(alg)))
                        return -EBADMSG;
                Generated *g = strmap_get(k->generated, kid);
                if (g && g->seq == 0) {
                        g->seq = (uint64_t) json_integer_value(seq);
                        g->alg = alg ? keyd_alg_from_string(json_string_value(alg)) : _KEYD_ALG_INVALID;
                }
        }
        return 0;
}

typedef struct Dump {
        json_t *names, *keys;
        int r;
} Dump;

static bool dump_issuer(const char *key, void *value, void *userdata) {
        Dump *d = userdata;
        (void) value;
        if (d->r >= 0 && json_array_append_new(d->names, json_string(key)) < 0)
                d->r = -ENOMEM;
        return false;
}

static bool dump_key(const char *key, void *value, void *userdata) {
        Dump *d = userdata;
        const Generated *g = value;
        if (d->r < 0 || g->seq == 0)
                return false;
        json_t *o = g->alg >= 0 ? json_pack("{s:I, s:s}", "seq", (json_int_t) g->seq, "alg", keyd_alg_to_string(g->alg))
                                : json_pack("{s:I}", "seq", (json_int_t) g->seq);
        if (!o || json_object_set_new(d->keys, key, o) < 0)
                d->r = -ENOMEM;
        return false;
}

static int name_cmp(const void *a, const void *b) {
        return strcmp(json_string_value(*(json_t *const *) a), json_string_value(*(json_t *const *) b));
}

int audit_keys_dump(const AuditKeys *k, json_t **ret) {
        Dump d = { .names = json_array(), .keys = json_object() };
        _cleanup_json_ json_t *sorted = json_array();

        if (!d.names || !d.keys || !sorted)
                d.r = -ENOMEM;
        /* strmap_remove_if() with a predicate that removes nothing: the map's only way to visit every entry. */
        (void) strmap_remove_if(k->issuers, dump_issuer, &d, NULL);
        (void) strmap_remove_if(k->generated, dump_key, &d, NULL);
        if (d.r >= 0) {
                /* Sorted: a carry is compared as JSON, and read by people. */
                size_t n = json_array_size(d.names);
                json_t **v = calloc(n + 1, sizeof *v);
                for (size_t i = 0; v && i < n; i++)
                        v[i] = json_array_get(d.names, i);
                if (!v)
                        d.r = -ENOMEM;
                else {
                        qsort(v, n, sizeof *v, name_cmp);
                        for (size_t i = 0; d.r >= 0 && i < n; i++)
                                if (json_array_append(sorted, v[i]) < 0)
                                        d.r = -ENOMEM;
                        free(v);
                }
        }
        json_decref(d.names);
        if (d.r < 0) {
                json_decref(d.keys);
                return d.r;
        }
        *ret = json_pack("{s:O, s:o}", "issuers", sorted, "keys", d.keys);
        return *ret ? 0 : -ENOMEM;
}

const Generated *audit_keys_generated(const AuditKeys *k, const char *kid) {
        return strmap_get(k->generated, kid);
}
