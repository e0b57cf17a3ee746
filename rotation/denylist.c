/* SPDX-License-Identifier: MIT */
#include <pthread.h>

#include "common/macro.h"
#include "common/strmap.h"
#include "rotation/denylist.h"

struct Denylist {
        pthread_rwlock_t lock;
        StrMap *jtis; /* jti → usec_t* exp */
};

Denylist *denylist_new(void) {
        Denylist *d = calloc(1, sizeof *d);
        if (!d)
                return NULL;
        d->jtis = strmap_new();
        if (!d->jtis) {
                free(d);
                return NULL;
        }
        pthread_rwlock_init(&d->lock, NULL);
        return d;
}

Denylist *denylist_free(Denylist *d) {
        if (!d)
                return NULL;
        strmap_free(d->jtis, free);
        pthread_rwlock_destroy(&d->lock);
        free(d);
        return NULL;
}

int denylist_add(Denylist *d, const char *jti, usec_t exp) {
        usec_t *v = malloc(sizeof *v), *old = NULL;
        int r;

        if (!v)
                return -ENOMEM;
        *v = exp;
        pthread_rwlock_wrlock(&d->lock);
        r = strmap_put(d->jtis, jti, v, (void **) &old);
        pthread_rwlock_unlock(&d->lock);
        if (r < 0)
                free(v);
        free(old);
        return r;
}

int denylist_contains(Denylist *d, const char *jti, usec_t now) {
        int r = 0;
        if (!jti)
                return 0;
        pthread_rwlock_rdlock(&d->lock);
        usec_t *exp = strmap_get(d->jtis, jti);
        if (exp && *exp > now)
                r = 1;
        pthread_rwlock_unlock(&d->lock);
        return r;
}

static bool over(const char *key, void *value, void *userdata) {
        (void) key;
        return *(usec_t *) value <= *(usec_t *) userdata;
}

size_t denylist_prune(Denylist *d, usec_t now) {
        pthread_rwlock_wrlock(&d->lock);
        size_t n = strmap_remove_if(d->jtis, over, &now, free);
        pthread_rwlock_unlock(&d->lock);
        return n;
}

size_t denylist_size(Denylist *d) {
        pthread_rwlock_rdlock(&d->lock);
        size_t n = strmap_size(d->jtis);
        pthread_rwlock_unlock(&d->lock);
        return n;
}
