/* SPDX-License-Identifier: MIT */
/* Per-request audit records with group commit: needs the store only. */
#include <pthread.h>

#include "common/macro.h"
#include "rotation/audit.h"

typedef struct Pending {
        StoreAudit *rec;
        StoreDurability durability;
        int64_t result;
        bool done;
        struct Pending *next;
} Pending;

/* Group commit without a thread of its own: a caller that finds no commit running becomes the leader and commits
 * everything queued so far, its own record included, in one transaction; callers that arrive meanwhile queue and
 * wait for the leader (or become the next one). One caller alone pays one commit and no thread hand-off. */
struct AuditLog {
        Store *store;
        pthread_mutex_t lock;
        pthread_cond_t done;
        Pending *head, *tail;
        bool committing, closed;
        uint64_t commits;
        Histogram commit_times; /* observed by the leader, outside the lock: lock-free */
};

#define BATCH_MAX 512

/* One transaction for the whole batch; if any record fails, each goes again alone so one bad record fails alone.
 * Unless the database itself cannot be written (full, read-only, locked past the busy timeout): then every record
 * fails at once, as each would alone, and no caller waits for one busy timeout per record of the batch.
 * Returns the number of transactions committed. */
static unsigned commit_batch(AuditLog *l, Pending *batch) {
        StoreDurability d = STORE_COMMITTED;
        unsigned commits = 0;
        usec_t start = now_monotonic();
        int r;

        for (Pending *p = batch; p; p = p->next)
                if (p->durability == STORE_SYNCED)
                        d = STORE_SYNCED;
        r = store_begin(l->store, d);
        for (Pending *p = batch; r >= 0 && p; p = p->next)
                r = store_audit_append(l->store, p->rec);
        if (r >= 0)
                r = store_commit(l->store);
        if (r >= 0) {
                histogram_observe_since(&l->commit_times, start);
                for (Pending *p = batch; p; p = p->next)
                        p->result = (int64_t) p->rec->seq;
                return 1;
        }
        store_rollback(l->store);
        if (r == -ENOSPC || r == -EROFS || r == -ENOLCK) {
                for (Pending *p = batch; p; p = p->next)
                        p->result = r;
                return 0;
        }
        for (Pending *p = batch; p; p = p->next) {
                start = now_monotonic();
                r = store_begin(l->store, p->durability);
                if (r >= 0)
                        r = store_audit_append(l->store, p->rec);
                if (r >= 0)
                        r = store_commit(l->store);
                if (r < 0)
                        store_rollback(l->store);
                else {
                        histogram_observe_since(&l->commit_times, start);
                        commits++;
                }
                p->result = r < 0 ? r : (int64_t) p->rec->seq;
        }
        return commits;
}

int audit_log_open(const char *db_path, AuditLog **ret) {
        AuditLog *l = calloc(1, sizeof *l);
        int r;

        if (!l)
                return -ENOMEM;
        r = store_open(db_path, 0, &l->store);
        if (r < 0) {
                free(l);
                return r;
        }
        pthread_mutex_init(&l->lock, NULL);
        pthread_cond_init(&l->done, NULL);
        *ret = l;
        return 0;
}

AuditLog *audit_log_close(AuditLog *l) {
        if (!l)
                return NULL;
        pthread_mutex_lock(&l->lock);
        l->closed = true;
        while (l->committing || l->head)
                pthread_cond_wait(&l->done, &l->lock);
        pthread_mutex_unlock(&l->lock);
        store_close(l->store);
        pthread_mutex_destroy(&l->lock);
        pthread_cond_destroy(&l->done);
        free(l);
        return NULL;
}

int64_t audit_log_write(AuditLog *l, StoreAudit *rec, StoreDurability durability) {
        Pending p = { .rec = rec, .durability = durability };

        pthread_mutex_lock(&l->lock);
        if (l->closed) {
                pthread_mutex_unlock(&l->lock);
                return -ESHUTDOWN;
        }
        if (l->tail)
                l->tail->next = &p;
        else
                l->head = &p;
        l->tail = &p;
        while (!p.done) {
                if (l->committing) {
                        pthread_cond_wait(&l->done, &l->lock);
                        continue;
                }
                /* Lead: take up to BATCH_MAX queued records (ours is among them, or comes in a later batch). */
                Pending *batch = l->head, *last = batch;
                for (int n = 1; last->next && n < BATCH_MAX; n++)
                        last = last->next;
                l->head = last->next;
                if (!l->head)
                        l->tail = NULL;
                last->next = NULL;
                l->committing = true;
                pthread_mutex_unlock(&l->lock);

                unsigned commits = commit_batch(l, batch);

                pthread_mutex_lock(&l->lock);
                for (Pending *q = batch; q;) {
                        Pending *n = q->next;
                        q->done = true;
                        q = n;
                }
                l->commits += commits;
                l->committing = false;
                pthread_cond_broadcast(&l->done);
        }
        pthread_mutex_unlock(&l->lock);
        return p.result;
}

const Histogram *audit_log_commit_times(AuditLog *l) {
        return &l->commit_times;
}

void audit_log_set_health(AuditLog *l, StoreHealth *h) {
        pthread_mutex_lock(&l->lock);
        store_set_health(l->store, h);
        pthread_mutex_unlock(&l->lock);
}

uint64_t audit_log_commits(AuditLog *l) {
        pthread_mutex_lock(&l->lock);
        uint64_t n = l->commits;
        pthread_mutex_unlock(&l->lock);
        return n;
}
