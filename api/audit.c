/* SPDX-License-Identifier: MIT */
/* Auditing requests: one record per request that signs, mints, or is refused, written before the answer. Refused
 * requests that no handler audited (a 404, a 409, a 422; a 403 that is not a role's) get an "api.refused" record of
 * their own, one per request: no more records than requests keyd reads. Connections refused at accept (429 over
 * max-connections-per-uid) are not requests: a client can open them far faster than keyd answers requests, so they
 * are counted per uid and written as one record per uid per second at most, by a thread of their own (the accept
 * thread never waits for the database). */
#include <signal.h>
#include <stdio.h>

#include "api/api-internal.h"
#include "common/log.h"

#define REFUSED_PATH_MAX 128        /* bytes of an unknown path kept in the record */
#define REFUSALS_INTERVAL USEC_PER_SEC

static int64_t audit_vwrite(Api *a, const Actor *actor, const char *action, const char *ring, const char *kid,
                            const char *result, const char *detail_fmt, va_list ap) {
        AuditRecord rec;
        int64_t r;

        r = audit_record_build(&rec, actor, now_realtime(), action, ring, kid, result, detail_fmt, ap);
        if (r >= 0)
                r = audit_log_write(a->audit, &rec.rec, STORE_COMMITTED);
        audit_record_done(&rec);
        if (r < 0) {
                atomic_fetch_add(&a->audit_failures, 1);
                return log_error_errno((int) r, "Cannot write the audit record of %s: %m", action);
        }
        return r;
}

static int64_t audit_write(Api *a, const Actor *actor, const char *action, const char *ring, const char *kid,
                           const char *result, const char *detail_fmt, ...) {
        va_list ap;
        va_start(ap, detail_fmt);
        int64_t r = audit_vwrite(a, actor, action, ring, kid, result, detail_fmt, ap);
        va_end(ap);
        return r;
}

int api_audit(Request *rq, const char *action, const char *ring, const char *kid, const char *result,
              const char *detail_fmt, ...) {
        Actor actor = api_actor(rq);
        va_list ap;

        /* Whatever happens to the record, the request has its own: no second one for a refusal. */
        rq->audited = true;
        va_start(ap, detail_fmt);
        int64_t r = audit_vwrite(rq->api, &actor, action, ring, kid, result, detail_fmt, ap);
        va_end(ap);
        return r < 0 ? (int) r : 0;
}

static bool refusal_status(unsigned status) {
        return status == MHD_HTTP_FORBIDDEN || status == MHD_HTTP_NOT_FOUND || status == MHD_HTTP_CONFLICT ||
               status == MHD_HTTP_UNPROCESSABLE_CONTENT;
}

/* A path the caller sent, for the record: at most REFUSED_PATH_MAX bytes, printable ASCII (anything else '?'). */
static void clean_path(const char *path, char out[REFUSED_PATH_MAX + 1]) {
        size_t k = 0;
        for (; path && path[k] && k < REFUSED_PATH_MAX; k++) {
                unsigned char c = (unsigned char) path[k];
                out[k] = c >= 0x20 && c < 0x7f ? (char) c : '?';
        }
        out[k] = 0;
}

void api_audit_refused(Request *rq, const char *route, const char *ring, const char *kid, const char *path,
                       const Reply *rp, uid_t uid) {
        Actor actor = { (int64_t) uid == (int64_t) (uid_t) -1 ? -1 : (int64_t) uid, -1, -1, NULL };
        char clean[REFUSED_PATH_MAX + 1];

        if (rq->audited || !refusal_status(rp->status))
                return;
        rq->audited = true;
        if (rq->peer)
                actor = api_actor(rq);
        clean_path(path, clean);
        /* The refusal stands whether or not its record could be written (as for authz.denied). */
        (void) audit_write(rq->api, &actor, "api.refused", ring, kid, "denied", "{s:s?, s:s?, s:s?, s:i, s:s?, s:s?}",
                           "route", route, "method", route ? NULL : rq->method, "path", path ? clean : NULL,
                           "status", (int) rp->status, "error", json_string_value(json_object_get(rp->json, "error")),
                           "message", json_string_value(json_object_get(rp->json, "message")));
}

/* ---- connections refused at accept (429), counted per uid ---- */

struct ApiRefusals {
        pthread_t thread;
        pthread_mutex_t lock;
        pthread_cond_t wake;
        bool running, stop;
        struct {
                uid_t uid;
                pid_t pid; /* of the last connection refused */
                uint64_t count;
        } uids[API_REFUSALS_UIDS];
        size_t n_uids;
        uint64_t others, other_uids; /* refused from uids the table had no room for */
};

void api_refusal_note(Api *a, uid_t uid, pid_t pid) {
        ApiRefusals *f = a->refusals;
        size_t i;

        if (!f)
                return;
        pthread_mutex_lock(&f->lock);
        for (i = 0; i < f->n_uids && f->uids[i].uid != uid; i++)
                ;
        if (i < f->n_uids || f->n_uids < ELEMENTSOF(f->uids)) {
                if (i == f->n_uids)
                        f->uids[f->n_uids++] = (typeof(f->uids[0])){ .uid = uid };
                f->uids[i].pid = pid;
                f->uids[i].count++;
        } else {
                f->others++;
                f->other_uids++; /* an upper bound: the same uid may be counted more than once */
        }
        pthread_cond_signal(&f->wake);
        pthread_mutex_unlock(&f->lock);
}

/* Write what was counted since the last time: one record per uid, and one for the uids without a place. */
static void refusals_flush(Api *a, ApiRefusals *f) {
        typeof(f->uids[0]) uids[API_REFUSALS_UIDS];
        uint64_t others, other_uids;
        size_t n;

        pthread_mutex_lock(&f->lock);
        n = f->n_uids;
        memcpy(uids, f->uids, n * sizeof uids[0]);
        others = f->others;
        other_uids = f->other_uids;
        f->n_uids = 0;
        f->others = f->other_uids = 0;
        pthread_mutex_unlock(&f->lock);

        for (size_t i = 0; i < n; i++) {
                char comm[17];
                peer_comm(uids[i].pid, comm);
                Actor actor = { (int64_t) uids[i].uid, -1, (int64_t) uids[i].pid, comm[0] ? comm : NULL };
                (void) audit_write(a, &actor, "api.refused", NULL, NULL, "denied", "{s:n, s:i, s:s, s:I, s:s}",
                                   "route", "status", MHD_HTTP_TOO_MANY_REQUESTS, "error", "too_many_requests",
                                   "refused", (json_int_t) uids[i].count, "message",
                                   "connections refused over max-connections-per-uid");
        }
        if (others > 0)
                (void) audit_write(a, NULL, "api.refused", NULL, NULL, "denied", "{s:n, s:i, s:s, s:I, s:I, s:s}",
                                   "route", "status", MHD_HTTP_TOO_MANY_REQUESTS, "error", "too_many_requests",
                                   "refused", (json_int_t) others, "uids", (json_int_t) other_uids, "message",
                                   "connections refused over max-connections-per-uid, from more uids than one "
                                   "record each");
}

static void *refusals_main(void *userdata) {
        Api *a = userdata;
        ApiRefusals *f = a->refusals;
        usec_t last = 0;

        pthread_mutex_lock(&f->lock);
        for (;;) {
                bool pending = f->n_uids > 0 || f->others > 0;
                if (f->stop && !pending)
                        break;
                if (!pending) {
                        pthread_cond_wait(&f->wake, &f->lock);
                        continue;
                }
                /* At most one batch per interval, whatever the rate of refusals (but at once when stopping). */
                usec_t now = now_monotonic();
                if (!f->stop && now < last + REFUSALS_INTERVAL) {
                        struct timespec ts = monotonic_in_ms((unsigned) ((last + REFUSALS_INTERVAL - now) / 1000 + 1));
                        (void) pthread_cond_timedwait(&f->wake, &f->lock, &ts);
                        continue;
                }
                pthread_mutex_unlock(&f->lock);
                refusals_flush(a, f);
                last = now_monotonic();
                pthread_mutex_lock(&f->lock);
        }
        pthread_mutex_unlock(&f->lock);
        return NULL;
}

int api_refusals_start(Api *a) {
        ApiRefusals *f = calloc(1, sizeof *f);
        pthread_condattr_t attr;
        sigset_t all, old;
        int r;

        if (!f)
                return -ENOMEM;
        pthread_mutex_init(&f->lock, NULL);
        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        pthread_cond_init(&f->wake, &attr);
        pthread_condattr_destroy(&attr);
        a->refusals = f;
        /* Signals are the event loop's. */
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        r = -pthread_create(&f->thread, NULL, refusals_main, a);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (r < 0)
                return r;
        f->running = true;
        return 0;
}

void api_refusals_stop(Api *a) {
        ApiRefusals *f = a->refusals;

        if (!f)
                return;
        if (f->running) {
                /* What was counted is written before the audit log closes. */
                pthread_mutex_lock(&f->lock);
                f->stop = true;
                pthread_cond_signal(&f->wake);
                pthread_mutex_unlock(&f->lock);
                pthread_join(f->thread, NULL);
        }
        pthread_mutex_destroy(&f->lock);
        pthread_cond_destroy(&f->wake);
        free(f);
        a->refusals = NULL;
}
