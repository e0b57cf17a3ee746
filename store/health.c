/* SPDX-License-Identifier: MIT */
/* The database's write health: the last storage fault any Store of it met, until a commit goes through. */
#include <pthread.h>
#include <stdio.h>

#include "store/store-internal.h"

struct StoreHealth {
        pthread_mutex_t lock;
        int fault; /* negative errno of the fault, 0 when the last write went through */
};

StoreHealth *store_health_new(void) {
        StoreHealth *h = calloc(1, sizeof *h);
        if (h)
                pthread_mutex_init(&h->lock, NULL);
        return h;
}

StoreHealth *store_health_free(StoreHealth *h) {
        if (h) {
                pthread_mutex_destroy(&h->lock);
                free(h);
        }
        return NULL;
}

const char *store_fault_reason(int r) {
        switch (r) {
        case -ENOSPC:
                return "database disk is full";
        case -EROFS:
                return "database is read-only";
        case -ENOLCK:
                return "database is locked by another process";
        case -EIO:
                return "database I/O error";
        default:
                return NULL;
        }
}

void store_health_set(StoreHealth *h, int r) {
        if (!h)
                return;
        pthread_mutex_lock(&h->lock);
        h->fault = store_fault_reason(r) ? r : -EIO;
        pthread_mutex_unlock(&h->lock);
}

void store_health_clear(StoreHealth *h) {
        if (!h)
                return;
        pthread_mutex_lock(&h->lock);
        h->fault = 0;
        pthread_mutex_unlock(&h->lock);
}

bool store_health_fault(StoreHealth *h, int *ret_errno, char *reason, size_t size) {
        int fault;

        if (!h)
                return false;
        pthread_mutex_lock(&h->lock);
        fault = h->fault;
        if (fault && reason && size > 0)
                snprintf(reason, size, "%s", store_fault_reason(fault));
        pthread_mutex_unlock(&h->lock);
        if (ret_errno)
                *ret_errno = fault;
        return fault != 0;
}
