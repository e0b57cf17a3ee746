/* SPDX-License-Identifier: MIT */
/* The index of keyd's objects in the token, by CKA_ID (as libp11 keeps its key cache in the slot): one listing at
 * start, then kept up to date by every keygen and destroy made through this Hsm, so that opening or destroying a key
 * never searches the token (a search of a SoftHSM2 token reads every object: one search per key is quadratic). A
 * handle the token no longer knows is found again by one search of its id, here and nowhere else. */
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "pkcs11/hsm-internal.h"

static int entry_cmp(const uint8_t *id, size_t id_len, const HsmEntry *e) {
        if (id_len != e->id_len)
                return id_len < e->id_len ? -1 : 1;
        return memcmp(id, e->id, id_len);
}

/* The position of id in the sorted index: where it is (*ret_found) or where it goes. Call with index_lock held. */
static size_t index_find(const Hsm *h, const uint8_t *id, size_t id_len, bool *ret_found) {
        size_t lo = 0, hi = h->n_index;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int c = entry_cmp(id, id_len, &h->index[mid]);
                if (c == 0) {
                        *ret_found = true;
                        return mid;
                }
                if (c < 0)
                        hi = mid;
                else
                        lo = mid + 1;
        }
        *ret_found = false;
        return lo;
}

/* The entry for id, made if there is none. Call with index_lock held. */
static HsmEntry *index_get(Hsm *h, const uint8_t *id, size_t id_len) {
        bool found;
        size_t i = index_find(h, id, id_len, &found);

        if (found)
                return &h->index[i];
        if (id_len == 0 || id_len > HSM_ID_MAX)
                return NULL;
        if (h->n_index == h->cap_index) {
                size_t cap = h->cap_index ? h->cap_index * 2 : 64;
                HsmEntry *n = reallocarray(h->index, cap, sizeof *n);
                if (!n)
                        return NULL;
                h->index = n;
                h->cap_index = cap;
        }
        memmove(h->index + i + 1, h->index + i, (h->n_index - i) * sizeof *h->index);
        h->n_index++;
        h->index[i] = (HsmEntry){ .id_len = id_len };
        memcpy(h->index[i].id, id, id_len);
        return &h->index[i];
}

void hsm_index_forget(Hsm *h, const uint8_t *id, size_t id_len) {
        bool found;
        pthread_mutex_lock(&h->index_lock);
        size_t i = index_find(h, id, id_len, &found);
        if (found) {
                memmove(h->index + i, h->index + i + 1, (h->n_index - i - 1) * sizeof *h->index);
                h->n_index--;
        }
        pthread_mutex_unlock(&h->index_lock);
}

int hsm_index_put(Hsm *h, const uint8_t *id, size_t id_len, const char *label, CK_OBJECT_HANDLE priv,
                  CK_OBJECT_HANDLE pub) {
        pthread_mutex_lock(&h->index_lock);
        HsmEntry *e = index_get(h, id, id_len);
        if (e) {
                if (label && *label)
                        snprintf(e->label, sizeof e->label, "%s", label);
                e->priv = priv;
                e->pub = pub;
                e->facts = (HsmKeyFacts){ 0 }; /* of other handles */
        }
        pthread_mutex_unlock(&h->index_lock);
        return e ? 0 : -ENOMEM;
}

/* A copy of id's entry, if the index has one. */
static bool index_entry(Hsm *h, const uint8_t *id, size_t id_len, HsmEntry *ret) {
        bool found;
        pthread_mutex_lock(&h->index_lock);
        size_t i = index_find(h, id, id_len, &found);
        if (found)
                *ret = h->index[i];
        pthread_mutex_unlock(&h->index_lock);
        return found;
}

/* The listing's facts of e's private key, if they were read in the module that lives now. */
static const HsmKeyFacts *current_facts(Hsm *h, const HsmEntry *e) {
        if (e->priv == CK_INVALID_HANDLE || !e->facts.known ||
            e->generation != __atomic_load_n(&h->generation, __ATOMIC_ACQUIRE))
                return NULL;
        return &e->facts;
}

bool hsm_index_lookup(Hsm *h, const uint8_t *id, size_t id_len, CK_OBJECT_HANDLE *ret_priv, CK_OBJECT_HANDLE *ret_pub) {
        bool found;
        pthread_mutex_lock(&h->index_lock);
        size_t i = index_find(h, id, id_len, &found);
        if (found) {
                *ret_priv = h->index[i].priv;
                *ret_pub = h->index[i].pub;
        }
        pthread_mutex_unlock(&h->index_lock);
        return found;
}

int hsm_index_reload_locked(Hsm *h) {
        _cleanup_free_ HsmObject *objs = NULL;
        size_t n = 0;
        CK_RV rv = CKR_OK;
        int r;

        /* Called with the module held (hsm_admin_begin() or the re-initialisation): the generation stays. */
        unsigned generation = __atomic_load_n(&h->generation, __ATOMIC_ACQUIRE);
        r = hsm_list_locked(h, h->index_prefix, &objs, &n, &rv);
        if (r < 0)
                return r;
        pthread_mutex_lock(&h->index_lock);
        h->n_index = 0;
        for (size_t i = 0; r >= 0 && i < n; i++) {
                HsmEntry *e = index_get(h, objs[i].id, objs[i].id_len);
                if (!e) {
                        r = -ENOMEM;
                        break;
                }
                snprintf(e->label, sizeof e->label, "%s", objs[i].label);
                if (objs[i].is_private) {
                        e->priv = objs[i].handle;
                        e->facts = objs[i].facts;
                        e->generation = generation;
                } else
                        e->pub = objs[i].handle;
        }
        if (r < 0)
                h->n_index = 0;
        pthread_mutex_unlock(&h->index_lock);
        return r;
}

int hsm_index_load(Hsm *h, const char *prefix) {
        int r;

        r = hsm_admin_begin(h);
        if (r < 0)
                return r;
        hsm_clear_error();
        char *p = strdup(prefix ?: "");
        r = p ? 0 : -ENOMEM;
        if (p) {
                free(h->index_prefix);
                h->index_prefix = p;
                r = hsm_index_reload_locked(h);
        }
        hsm_admin_end(h, "C_FindObjects", r < 0 ? hsm_last_rv() : CKR_OK);
        return r;
}

int hsm_index_list(Hsm *h, HsmEntry **ret, size_t *ret_n) {
        pthread_mutex_lock(&h->index_lock);
        HsmEntry *copy = calloc(h->n_index + 1, sizeof *copy);
        if (copy && h->n_index > 0)
                memcpy(copy, h->index, h->n_index * sizeof *copy);
        *ret_n = h->n_index;
        pthread_mutex_unlock(&h->index_lock);
        if (!copy)
                return -ENOMEM;
        *ret = copy;
        return 0;
}

int hsm_key_probe(Hsm *h, const uint8_t *id, size_t id_len) {
        CK_OBJECT_HANDLE priv, pub;
        int r;

        if (!id || id_len == 0 || id_len > HSM_ID_MAX)
                return -EINVAL;
        r = hsm_admin_begin(h);
        if (r < 0)
                return r;
        hsm_clear_error();
        /* A search in a session nobody is logged in to finds no private object: never call a key gone for that. */
        r = hsm_anchor_repair(h);
        if (r >= 0)
                r = hsm_find_one(h, h->anchor, CKO_PRIVATE_KEY, id, id_len, &priv);
        if (r >= 0) {
                char label[HSM_LABEL_MAX + 1] = "";
                CK_ATTRIBUTE a = { CKA_LABEL, label, HSM_LABEL_MAX };
                if (h->f->C_GetAttributeValue(h->anchor, priv, &a, 1) == CKR_OK)
                        label[a.ulValueLen] = 0;
                if (hsm_find_one(h, h->anchor, CKO_PUBLIC_KEY, id, id_len, &pub) < 0)
                        pub = CK_INVALID_HANDLE;
                r = hsm_index_put(h, id, id_len, label, priv, pub) < 0 ? -ENOMEM : 1;
        } else if (r == -ENOENT) {
                hsm_index_forget(h, id, id_len);
                r = 0;
        }
        hsm_admin_end(h, "C_FindObjects", r < 0 ? hsm_last_rv() : CKR_OK);
        return r;
}

int hsm_key_open(Hsm *h, KeydAlg alg, const uint8_t *id, size_t id_len, HsmKey **ret) {
        CK_OBJECT_HANDLE priv = CK_INVALID_HANDLE, pub = CK_INVALID_HANDLE;
        int r;

        if (!id || id_len == 0 || id_len > HSM_ID_MAX)
                return -EINVAL;
        HsmEntry e;
        bool indexed = index_entry(h, id, id_len, &e) && e.priv != CK_INVALID_HANDLE;
        if (indexed) {
                const HsmKeyFacts *f = current_facts(h, &e);
                if (f)
                        return hsm_key_from_facts(h, alg, id, id_len, e.priv, e.pub, f, e.generation, ret);
                r = hsm_key_open_handles(h, alg, id, id_len, e.priv, e.pub, ret);
                if (r != -ENOENT && r != -EINVAL)
                        return r;
                log_debug("token object handles went stale: searching the token for the key");
        }
        r = hsm_key_probe(h, id, id_len);
        if (r < 0)
                return r;
        if (r == 0)
                return -ENOENT;
        (void) hsm_index_lookup(h, id, id_len, &priv, &pub);
        return hsm_key_open_handles(h, alg, id, id_len, priv, pub, ret);
}

int hsm_key_check(Hsm *h, KeydAlg alg, const uint8_t *id, size_t id_len) {
        HsmEntry e;
        HsmKey *k = NULL;
        int r;

        if (alg < 0 || alg >= _KEYD_ALG_MAX || !id || id_len == 0 || id_len > HSM_ID_MAX)
                return -EINVAL;
        if (index_entry(h, id, id_len, &e)) {
                const HsmKeyFacts *f = current_facts(h, &e);
                if (f) {
                        if (f->key_type != hsm_alg_key_type(alg))
                                return -EMEDIUMTYPE;
                        return f->protected_ok ? 0 : -EPERM;
                }
        }
        r = hsm_key_open(h, alg, id, id_len, &k);
        if (r >= 0)
                r = hsm_key_check_protection(k);
        hsm_key_free(k);
        return r;
}
