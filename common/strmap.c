/* SPDX-License-Identifier: MIT */
#include <stdint.h>

#include "common/macro.h"
#include "common/strmap.h"

typedef struct Entry {
        char *key;
        void *value;
        uint64_t hash;
        struct Entry *next;
} Entry;

struct StrMap {
        Entry **buckets;
        size_t n_buckets; /* a power of two */
        size_t size;
};

static uint64_t hash_str(const char *s) {
        uint64_t h = 1469598103934665603ULL; /* FNV-1a */
        for (; *s; s++) {
                h ^= (unsigned char) *s;
                h *= 1099511628211ULL;
        }
        return h;
}

StrMap *strmap_new(void) {
        StrMap *m = calloc(1, sizeof *m);
        if (!m)
                return NULL;
        m->n_buckets = 64;
        m->buckets = calloc(m->n_buckets, sizeof *m->buckets);
        if (!m->buckets) {
                free(m);
                return NULL;
        }
        return m;
}

StrMap *strmap_free(StrMap *m, void (*free_value)(void *)) {
        if (!m)
                return NULL;
        for (size_t i = 0; i < m->n_buckets; i++)
                for (Entry *e = m->buckets[i], *n; e; e = n) {
                        n = e->next;
                        if (free_value)
                                free_value(e->value);
                        free(e->key);
                        free(e);
                }
        free(m->buckets);
        free(m);
        return NULL;
}

static int grow(StrMap *m) {
        size_t n = m->n_buckets * 2;
        Entry **b = calloc(n, sizeof *b);
        if (!b)
                return -ENOMEM;
        for (size_t i = 0; i < m->n_buckets; i++)
                for (Entry *e = m->buckets[i], *next; e; e = next) {
                        next = e->next;
                        e->next = b[e->hash & (n - 1)];
                        b[e->hash & (n - 1)] = e;
                }
        free(m->buckets);
        m->buckets = b;
        m->n_buckets = n;
        return 0;
}

static Entry **find(const StrMap *m, const char *key, uint64_t h) {
        Entry **p = &m->buckets[h & (m->n_buckets - 1)];
        for (; *p; p = &(*p)->next)
                if ((*p)->hash == h && streq((*p)->key, key))
                        return p;
        return p;
}

int strmap_put(StrMap *m, const char *key, void *value, void **ret_old) {
        uint64_t h = hash_str(key);
        Entry **p = find(m, key, h);

        if (*p) {
                if (ret_old)
                        *ret_old = (*p)->value;
                (*p)->value = value;
                return 0;
        }
        if (m->size + 1 > m->n_buckets && grow(m) >= 0)
                p = find(m, key, h);
        Entry *e = calloc(1, sizeof *e);
        if (!e || !(e->key = strdup(key))) {
                free(e);
                return -ENOMEM;
        }
        e->value = value;
        e->hash = h;
        *p = e;
        m->size++;
        if (ret_old)
                *ret_old = NULL;
        return 0;
}

void *strmap_get(const StrMap *m, const char *key) {
        Entry **p = find(m, key, hash_str(key));
        return *p ? (*p)->value : NULL;
}

void *strmap_remove(StrMap *m, const char *key) {
        Entry **p = find(m, key, hash_str(key)), *e = *p;
        void *v;
        if (!e)
                return NULL;
        *p = e->next;
        v = e->value;
        free(e->key);
        free(e);
        m->size--;
        return v;
}

size_t strmap_size(const StrMap *m) {
        return m ? m->size : 0;
}

size_t strmap_remove_if(StrMap *m, bool (*pred)(const char *key, void *value, void *userdata), void *userdata,
                        void (*free_value)(void *)) {
        size_t removed = 0;
        for (size_t i = 0; i < m->n_buckets; i++)
                for (Entry **p = &m->buckets[i]; *p;) {
                        Entry *e = *p;
                        if (!pred(e->key, e->value, userdata)) {
                                p = &e->next;
                                continue;
                        }
                        *p = e->next;
                        if (free_value)
                                free_value(e->value);
                        free(e->key);
                        free(e);
                        m->size--;
                        removed++;
                }
        return removed;
}
