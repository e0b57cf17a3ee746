/* SPDX-License-Identifier: MIT */
/* The event loop: lifecycle timer, audit checkpoints, signals, readiness, status and watchdog. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>
#include <systemd/sd-journal.h>

#include "api/api.h"
#include "common/crypto-util.h"
#include "common/log.h"
#include "common/strv.h"
#include "keyd/config.h"
#include "keyd/daemon.h"
#include "pkcs11/hsm.h"
#include "rotation/audit.h"
#include "rotation/engine.h"
#include "store/store.h"

/* MESSAGE_IDs of the journal records an operator alerts on (journalctl MESSAGE_ID=...). */
#define MESSAGE_ID_ROTATION "5f1b6c2ad9e04d8a9c3e7b0f4a6d2c81"
#define MESSAGE_ID_REVOCATION "c2e8a71f3b5d4f6e8a9b0c1d2e3f4a57"
#define MESSAGE_ID_KEY_LOST "9a4d3c2b1e0f4a5b8c7d6e5f4a3b2c19"
#define MESSAGE_ID_PUBLICATION "3e7c1a9d5b2f4c68a0d4e6b8f1c3a527"

/* A call from an API thread, run on the event loop (the engine's only writer). */
typedef struct Job {
        int (*fn)(Engine *e, void *arg);
        void *arg;
        int result;
        bool done;
        bool detached; /* posted without a waiter: the loop frees it and its arg */
        struct Job *next;
} Job;

typedef struct Daemon {
        const DaemonOptions *opts;
        Api *api;
        int job_fd;
        sd_event_source *job_source;
        pthread_mutex_t job_lock;
        pthread_cond_t job_cond;
        Job *jobs, *jobs_tail;
        bool stopping;
        Config config;
        Hsm *hsm;
        Store *store;
        Engine *engine;
        AuditLog *audit;
        StoreHealth *health; /* the database's write health, told by the engine's store and the audit log's */
        bool storage_fault;  /* as the probe last logged it */
        int lock_fd;         /* flock()ed: one keyd per database */
        sd_event *event;
        sd_event_source *timer, *checkpoint, *watch;
        char last_status[1024]; /* the last STATUS= sent */
        bool token_up;          /* as STATUS= last said */
} Daemon;

static void on_event(const EngineEvent *ev, void *userdata) {
        const char *id = NULL;
        int prio = LOG_INFO;
        (void) userdata;

        if (streq(ev->action, "key.activate"))
                id = MESSAGE_ID_ROTATION;
        else if (streq(ev->action, "key.revoke") || streq(ev->action, "keyring.disable")) {
                id = MESSAGE_ID_REVOCATION;
                prio = LOG_NOTICE;
        } else if (startswith(ev->action, "reconcile.")) {
                id = MESSAGE_ID_KEY_LOST;
                prio = LOG_WARNING;
        } else if (startswith(ev->action, "jwks-file.")) {
                /* Not a key change: the keyring's published file could not be written (it is degraded), or can be
                 * again. */
                id = MESSAGE_ID_PUBLICATION;
                prio = streq(ev->action, "jwks-file.failed") ? LOG_WARNING : LOG_NOTICE;
        }
        if (prio > log_get_max_level())
                return;
        if (getenv("JOURNAL_STREAM"))
                sd_journal_send("MESSAGE=keyring %s: %s%s%s%s%s", ev->keyring, ev->action, ev->kid ? " " : "",
                                ev->kid ?: "", ev->detail ? " " : "", ev->detail ?: "", "PRIORITY=%i", prio,
                                "KEYD_KEYRING=%s", ev->keyring, "KEYD_KID=%s", ev->kid ?: "",
                                id ? "MESSAGE_ID=%s" : NULL, id, NULL);
        else
                log_full_errno(prio, 0, "keyring %s: %s%s%s%s%s", ev->keyring, ev->action, ev->kid ? " " : "",
                               ev->kid ?: "", ev->detail ? " " : "", ev->detail ?: "");
}

/* STATUS=: a line an operator reads in systemctl status. With thousands of keyrings, counts and the first few. */
static void notify_status(Daemon *d) {
        char buf[1024], when[32], storage[64];
        size_t n = engine_n_rings(d->engine), degraded = 0, off = 0;

        for (size_t i = 0; i < n; i++)
                degraded += !ring_healthy(engine_ring_at(d->engine, i));
        HsmHealth th;
        hsm_health(d->hsm, &th);
        d->token_up = th.up;
        if (!th.up)
                off += (size_t) snprintf(buf, sizeof buf, "STATUS=TOKEN UNAVAILABLE (%s); ", th.reason);
        else
                off += (size_t) snprintf(buf, sizeof buf, "STATUS=");
        off += (size_t) snprintf(buf + off, sizeof buf - off, "%zu keyring(s), %zu degraded", n, degraded);
        if (store_health_fault(d->health, NULL, storage, sizeof storage))
                off += (size_t) snprintf(buf + off, sizeof buf - off, "; storage unavailable: %s", storage);
        for (size_t i = 0; i < n && i < 4 && off < sizeof buf - 128; i++) {
                Ring *r = engine_ring_at(d->engine, i);
                const StoreKey *a = ring_key_in_state(r, KEY_STATE_ACTIVE);
                usec_t due = ring_next_due(r);
                off += (size_t) snprintf(buf + off, sizeof buf - off, "; %s: %s %.12s, next %s", ring_name(r),
                                         ring_degraded(r) ? "DEGRADED" : ring_disabled(r) ? "disabled" : "active",
                                         a ? a->kid : "-",
                                         due == USEC_INFINITY ? "never" : format_rfc3339(when, sizeof when, due));
        }
        /* Only a change: the service manager keeps the last STATUS= anyway, and each message is a datagram that
         * blocks the loop while the manager's queue is full. */
        if (streq(buf, d->last_status))
                return;
        snprintf(d->last_status, sizeof d->last_status, "%s", buf);
        (void) sd_notify(0, buf);
}

static int arm_timer(Daemon *d, usec_t due);

static int run_tick(Daemon *d) {
        usec_t due = USEC_INFINITY;
        int r = engine_tick(d->engine, &due);
        if (r < 0)
                log_warning_errno(r, "Lifecycle pass failed: %m");
        for (size_t i = 0; i < engine_n_rings(d->engine); i++) {
                Ring *ring = engine_ring_at(d->engine, i);
                if (ring_degraded(ring))
                        log_warning("keyring %s: degraded: %s", ring_name(ring), ring_degraded(ring));
        }
        notify_status(d);
        return arm_timer(d, due);
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        (void) s, (void) usec;
        return run_tick(userdata);
}

static int arm_timer(Daemon *d, usec_t due) {
        int r;
        if (due == USEC_INFINITY)
                return sd_event_source_set_enabled(d->timer, SD_EVENT_OFF);
        r = sd_event_source_set_time(d->timer, (uint64_t) MAX(due, (usec_t) 1));
        if (r >= 0)
                r = sd_event_source_set_enabled(d->timer, SD_EVENT_ONESHOT);
        return r;
}

/* EngineOptions.on_checkpoint: every checkpoint signed (the timer's, at start and stop, one asked for through the
 * API) gets copies outside the database: the journal, and the anchor file ([audit] anchor-file) that keydctl audit
 * verify --anchor checks the chain against. Truncating or rewriting all of them is harder than the database alone. A
 * failure to write the anchor file is logged and counted; keyd goes on. */
static void checkpoint_copies(uint64_t seq, const char *hash, void *userdata) {
        static unsigned anchor_failures; /* one daemon per process */
        Daemon *d = userdata;
        int r;

        log_info("Audit checkpoint: record %llu, hash %s.", (unsigned long long) seq, hash);
        if (!d->config.anchor_file)
                return;
        r = audit_anchor_append(d->store, d->config.anchor_file, seq);
        if (r < 0)
                log_warning_errno(r,
                                  "Cannot append the audit checkpoint at record %llu to %s (%u failure(s) so far): %m",
                                  (unsigned long long) seq, d->config.anchor_file, ++anchor_failures);
}

/* Sign the head of the audit log if anything is new since the last checkpoint (checkpoint_copies() keeps copies). */
static void write_checkpoint(Daemon *d) {
        int r = engine_checkpoint(d->engine, NULL, NULL);
        if (r < 0 && r != -ENOKEY)
                log_warning_errno(r, "Cannot write an audit checkpoint: %m");
}

static int on_checkpoint(sd_event_source *s, uint64_t usec, void *userdata) {
        Daemon *d = userdata;
        write_checkpoint(d);
        (void) sd_event_source_set_time(s, usec + (uint64_t) d->config.checkpoint_interval);
        return 0;
}

/* While the database cannot be written, try a write (store_probe(): it never waits on a lock), so that keyd and
 * /healthz recover by themselves once the fault is gone, whether a request comes or not. A change either way is
 * logged and told in STATUS=. */
static void watch_storage(Daemon *d) {
        char reason[64];
        bool fault = store_health_fault(d->health, NULL, reason, sizeof reason);

        if (fault && store_probe(d->store) >= 0)
                fault = false;
        if (fault != d->storage_fault) {
                d->storage_fault = fault;
                if (fault)
                        log_error("The database %s cannot be written: %s. Minting, signing and changes are refused "
                                  "(503 storage_unavailable) until it can; verification and the JWKS go on.",
                                  d->config.store_path, reason);
                else
                        log_notice("The database %s can be written again.", d->config.store_path);
                notify_status(d);
        }
}

/* The token's health: STATUS= says when it changes, and a token that came back is given a lifecycle pass at once (a
 * transition that failed while it was down is retried). */
static void watch_token(Daemon *d) {
        HsmHealth th;
        hsm_health(d->hsm, &th);
        if (th.up == d->token_up)
                return;
        if (!th.up) {
                notify_status(d);
                return;
        }
        int r = run_tick(d); /* says STATUS= too */
        if (r < 0)
                log_warning_errno(r, "Lifecycle pass after the token came back failed: %m");
}

/* The world keyd depends on, every WATCH_INTERVAL: the token and the database. */
#define WATCH_INTERVAL (500 * USEC_PER_MSEC)
static int on_watch(sd_event_source *s, uint64_t usec, void *userdata) {
        Daemon *d = userdata;
        watch_token(d);
        watch_storage(d);
        (void) sd_event_source_set_time(s, usec + (uint64_t) WATCH_INTERVAL);
        return 0;
}

static int loop_call(void *userdata, int (*fn)(Engine *e, void *arg), void *arg) {
        Daemon *d = userdata;
        Job j = { .fn = fn, .arg = arg };
        uint64_t one = 1;

        pthread_mutex_lock(&d->job_lock);
        if (d->stopping) {
                pthread_mutex_unlock(&d->job_lock);
                return -ECANCELED;
        }
        if (d->jobs_tail)
                d->jobs_tail->next = &j;
        else
                d->jobs = &j;
        d->jobs_tail = &j;
        pthread_mutex_unlock(&d->job_lock);
        if (write(d->job_fd, &one, sizeof one) < 0 && errno != EAGAIN)
                log_warning_errno(negative_errno(), "Cannot wake the event loop: %m");
        pthread_mutex_lock(&d->job_lock);
        while (!j.done)
                pthread_cond_wait(&d->job_cond, &d->job_lock);
        pthread_mutex_unlock(&d->job_lock);
        return j.result;
}

/* Queue a call for the loop without waiting for it (from a signing thread, which must not block). */
static void loop_post(Daemon *d, int (*fn)(Engine *e, void *arg), void *arg) {
        Job *j = calloc(1, sizeof *j);
        uint64_t one = 1;

        if (!j) {
                free(arg);
                return;
        }
        *j = (Job){ .fn = fn, .arg = arg, .detached = true };
        pthread_mutex_lock(&d->job_lock);
        if (d->stopping) {
                pthread_mutex_unlock(&d->job_lock);
                free(j);
                free(arg);
                return;
        }
        if (d->jobs_tail)
                d->jobs_tail->next = j;
        else
                d->jobs = j;
        d->jobs_tail = j;
        pthread_mutex_unlock(&d->job_lock);
        if (write(d->job_fd, &one, sizeof one) < 0 && errno != EAGAIN)
                log_warning_errno(negative_errno(), "Cannot wake the event loop: %m");
}

typedef struct LostKey {
        char ring[KEYRING_NAME_MAX + 1];
        char kid[STORE_KID_MAX + 1];
} LostKey;

static int repair_on_loop(Engine *e, void *arg) {
        LostKey *k = arg;
        int r = engine_repair_lost(e, k->ring, k->kid);
        if (r > 0)
                log_warning("keyring %s: active key %s was lost from the token while keyd ran; repaired by policy.",
                            k->ring, k->kid);
        else if (r < 0)
                log_error_errno(r, "keyring %s: key %s was lost from the token and the repair failed: %m (%s)",
                                k->ring, k->kid, hsm_last_error());
        return r;
}

/* EngineOptions.on_key_lost: on a signing thread, under the engine's read lock. */
static void on_key_lost(const char *ring, const char *kid, void *userdata) {
        LostKey *k = calloc(1, sizeof *k);
        if (!k)
                return;
        snprintf(k->ring, sizeof k->ring, "%s", ring);
        snprintf(k->kid, sizeof k->kid, "%s", kid);
        loop_post(userdata, repair_on_loop, k);
}

static int on_jobs(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Daemon *d = userdata;
        uint64_t n;
        Job *list;
        (void) s, (void) revents;

        (void) !read(fd, &n, sizeof n);
        pthread_mutex_lock(&d->job_lock);
        list = d->jobs;
        d->jobs = d->jobs_tail = NULL;
        pthread_mutex_unlock(&d->job_lock);
        for (Job *j = list, *next; j; j = next) {
                next = j->next;
                int r = j->fn(d->engine, j->arg);
                if (j->detached) {
                        free(j->arg);
                        free(j);
                        continue;
                }
                pthread_mutex_lock(&d->job_lock);
                j->result = r;
                j->done = true;
                pthread_cond_broadcast(&d->job_cond);
                pthread_mutex_unlock(&d->job_lock);
        }
        /* A change may move the next transition: plan again and re-arm. */
        return list ? run_tick(d) : 0;
}

/* No job waits forever once the loop is gone. */
static void fail_jobs(Daemon *d) {
        pthread_mutex_lock(&d->job_lock);
        d->stopping = true;
        for (Job *j = d->jobs, *next; j; j = next) {
                next = j->next;
                if (j->detached) {
                        free(j->arg);
                        free(j);
                        continue;
                }
                j->result = -ECANCELED;
                j->done = true;
        }
        d->jobs = d->jobs_tail = NULL;
        pthread_cond_broadcast(&d->job_cond);
        pthread_mutex_unlock(&d->job_lock);
}

/* Sockets passed by systemd, told apart by FileDescriptorName= ("api", "public", "metrics"). */
static void activation_fds(int *ret_api, int *ret_public, int *ret_metrics) {
        char **names = NULL;
        int n = sd_listen_fds_with_names(1, &names);
        *ret_api = *ret_public = *ret_metrics = -EBADF;
        for (int i = 0; i < n; i++) {
                int fd = SD_LISTEN_FDS_START + i;
                if (names && streq_ptr(names[i], "api") && sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) > 0)
                        *ret_api = fd;
                else if (names && streq_ptr(names[i], "public") && sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1) > 0)
                        *ret_public = fd;
                else if (names && streq_ptr(names[i], "metrics") && sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1) > 0)
                        *ret_metrics = fd;
                else
                        log_warning("Ignoring passed socket %d (%s): keyd takes \"api\", \"public\" and \"metrics\".",
                                    fd, names && names[i] ? names[i] : "unnamed");
        }
        for (int i = 0; names && i < n; i++)
                free(names[i]);
        free(names);
}

static int start_api(Daemon *d) {
        Config *c = &d->config;
        int api_fd, public_fd, metrics_fd;
        int r;

        activation_fds(&api_fd, &public_fd, &metrics_fd);
        ApiConfig ac = {
                .socket_path = c->socket,
                .socket_fd = api_fd,
                .public_listen = c->public_listen,
                .public_fd = public_fd,
                .metrics_listen = c->metrics_listen,
                .metrics_fd = metrics_fd >= 0 ? metrics_fd : 0,
                .db_path = c->store_path,
                .admin_users = c->admin_users,
                .admin_groups = c->admin_groups,
                .max_connections = c->max_connections,
                .max_connections_per_uid = c->max_connections_per_uid,
                .idle_timeout = (unsigned) (c->idle_timeout / USEC_PER_SEC),
                .dev_uid = d->opts->dev ? getuid() : (uid_t) -1,
                .storage = d->health,
        };
        r = api_start(&ac, d->engine, d->audit, loop_call, d, &d->api);
        if (r == -EADDRINUSE || r == -EINVAL)
                return log_error_errno(r, "Cannot listen on %s for the public listener, or on %s for the metrics "
                                          "listener: %m",
                                       public_fd >= 0 ? "the passed socket" : c->public_listen ?: "-",
                                       metrics_fd >= 0 ? "the passed socket" : c->metrics_listen ?: "-");
        if (r < 0)
                return log_error_errno(r, "Cannot serve the API on %s: %m", api_fd >= 0 ? "the passed socket" : c->socket);
        log_info("API on %s%s%s%s%s.", api_fd >= 0 ? "the socket passed by systemd" : c->socket,
                 public_fd >= 0 || c->public_listen ? ", public listener on " : "",
                 public_fd >= 0 ? "the passed socket" : c->public_listen ?: "",
                 metrics_fd >= 0 || c->metrics_listen ? ", metrics on " : "",
                 metrics_fd >= 0 ? "the passed socket" : c->metrics_listen ?: "");
        return 0;
}

/* SPEC §9: what a newcomer types next. */
static void dev_hint(const Config *c) {
        printf("\nkeyd is running. In another terminal:\n"
               "  mint a token:    TOKEN=$(build/keydctl --socket %s mint default --sub agent-1)\n"
               "  verify it:       build/keydctl --socket %s verify \"$TOKEN\"\n"
               "  fetch the JWKS:  curl -s http://%s/.well-known/jwks.json\n"
               "Stop with Ctrl-C.\n\n",
               c->socket, c->socket, c->public_listen ? c->public_listen : "127.0.0.1:8080");
        fflush(stdout);
}

static int ring_specs(Config *c, RingSpec **ret) {
        RingSpec *specs = calloc(c->n_keyrings + 1, sizeof *specs);
        if (!specs)
                return -ENOMEM;
        for (size_t i = 0; i < c->n_keyrings; i++)
                specs[i] = (RingSpec){ c->keyrings[i].name, c->keyrings[i].kind, c->keyrings[i].owner_uid,
                                       &c->keyrings[i].policy, .from_file = true };
        *ret = specs;
        return 0;
}

static int load_config(const char *path, Config *c) {
        char **errors = NULL;
        int r;

        r = config_init(c);
        if (r < 0)
                return log_oom();
        r = config_load(path, c, &errors);
        for (char **e = errors; e && *e; e++)
                log_error("%s", *e);
        for (char **e = errors; e && *e; e++)
                free(*e);
        free(errors);
        if (r < 0) {
                config_done(c);
                return r == -EINVAL ? r : log_error_errno(r, "Cannot read %s: %m", path);
        }
        return 0;
}

/* SIGHUP: re-read keyring policies; the token session and the database stay open. */
/* An audit record of keyd's own (a reload), by whoever sent the signal; a record that cannot be written is logged. */
static void audit_daemon(Daemon *d, const Actor *a, const char *action, const char *result, const char *fmt, ...) {
        AuditRecord rec;
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = audit_record_build(&rec, a, now_realtime(), action, NULL, NULL, result, fmt, ap);
        va_end(ap);
        if (r >= 0) {
                int64_t seq = audit_log_write(d->audit, &rec.rec, STORE_SYNCED);
                r = seq < 0 ? (int) seq : 0;
                audit_record_done(&rec);
        }
        if (r < 0)
                log_warning_errno(r, "Cannot write the audit record of %s: %m", action);
}

static int on_sighup(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Daemon *d = userdata;
        _cleanup_free_ RingSpec *specs = NULL;
        Config fresh;
        int r;
        (void) s, (void) si;

        /* The reload is audited as the signal's sender's (systemctl reload: systemd, uid 0). */
        Actor sender = { .uid = si->ssi_uid, .gid = -1, .pid = si->ssi_pid, .comm = NULL };
        (void) sd_notify(0, "RELOADING=1");
        r = load_config(d->opts->config_path, &fresh);
        if (r < 0) {
                log_error("Reload refused: %s has errors; keeping the running configuration.", d->opts->config_path);
                audit_daemon(d, &sender, "config.reload", "error", "{s:s, s:s}", "config", d->opts->config_path,
                             "error", "the configuration has errors");
                (void) sd_notify(0, "READY=1");
                return 0;
        }
        r = ring_specs(&fresh, &specs);
        if (r >= 0)
                r = engine_apply_config(d->engine, specs, fresh.n_keyrings);
        if (r < 0) {
                log_error_errno(r, "Reload failed: %m; keeping the running configuration.");
                audit_daemon(d, &sender, "config.reload", "error", "{s:s, s:s}", "config", d->opts->config_path,
                             "error", strerror(-r));
                config_done(&fresh);
        } else {
                /* The engine keeps a keyring whose section is gone (it cannot tell it from one created through the
                 * API): say so, rather than let an operator believe it went with its section. */
                char **removed = NULL;
                (void) config_removed_keyrings(&d->config, &fresh, &removed);
                for (char **n = removed; n && *n; n++)
                        log_warning("keyring %s: removed from %s, but kept: it goes on rotating and signing under "
                                    "its last policy ('keydctl disable %s' retires it).",
                                    *n, d->opts->config_path, *n);
                _cleanup_json_ json_t *gone = json_array();
                for (char **n = removed; gone && n && *n; n++)
                        (void) json_array_append_new(gone, json_string(*n));
                audit_daemon(d, &sender, "config.reload", "ok", "{s:s, s:I, s:O?}", "config", d->opts->config_path,
                             "keyrings", (json_int_t) fresh.n_keyrings, "removed_but_kept", gone);
                strv_free(removed);
                config_done(&d->config);
                d->config = fresh;
                if (d->api)
                        (void) api_reload(d->api, d->config.admin_users, d->config.admin_groups);
                log_info("Configuration reloaded: %zu keyring(s).", d->config.n_keyrings);
        }
        (void) run_tick(d);
        (void) sd_notify(0, "READY=1");
        return 0;
}

/* The anchor file must not be the database or one of SQLite's files beside it: appending to it would corrupt it, and
 * opening and closing it would drop SQLite's locks. Compared by name and, where both exist, by inode. */
static int check_anchor_path(const char *anchor, const char *db) {
        static const char *const suffixes[] = { "", "-wal", "-shm", "-journal", ".lock" };
        struct stat a, f;

        if (!anchor)
                return 0;
        bool anchor_exists = stat(anchor, &a) >= 0;
        for (size_t i = 0; i < ELEMENTSOF(suffixes); i++) {
                _cleanup_free_ char *p = NULL;
                if (asprintf(&p, "%s%s", db, suffixes[i]) < 0)
                        return -ENOMEM;
                if (streq(p, anchor) ||
                    (anchor_exists && stat(p, &f) >= 0 && f.st_dev == a.st_dev && f.st_ino == a.st_ino))
                        return -EINVAL;
        }
        return 0;
}

static int lock_store(const char *db_path, int *ret_fd) {
        _cleanup_free_ char *path = NULL;
        _cleanup_close_ int fd = -EBADF;

        if (asprintf(&path, "%s.lock", db_path) < 0)
                return -ENOMEM;
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW, 0600);
        if (fd < 0)
                return negative_errno();
        if (flock(fd, LOCK_EX | LOCK_NB) < 0)
                return errno == EWOULDBLOCK ? -EWOULDBLOCK : negative_errno();
        *ret_fd = TAKE_FD(fd);
        return 0;
}

/* The reconcile's findings, for the operator: what was destroyed, what was kept and why. */
static void log_reconcile(const ReconcileReport *rep, usec_t took) {
        log_info("Reconciled in %lld ms (installation %s): %u orphan object(s) destroyed, %u leftover private "
                 "object(s) destroyed, %u key(s) lost, %u key(s) refused, %u object(s) of other installations kept.",
                 (long long) (took / 1000), rep->instance_id, rep->orphans_destroyed, rep->privates_destroyed,
                 rep->keys_lost, rep->keys_refused, rep->foreign);
        if (rep->unproven > 0)
                log_warning("Reconcile kept %u token object(s) labelled as this installation's that the database "
                            "has no record of: a restored or copied database? They are not destroyed; see "
                            "'keyd reconcile --dry-run'.",
                            rep->unproven);
        if (rep->refused)
                log_warning("Reconcile refused to destroy or demote anything: more than %u objects would go or keys "
                            "be marked lost ([token] reconcile-max-destroy); keyrings whose active key is missing "
                            "stay degraded. Check with 'keyd reconcile --dry-run'.",
                            rep->max_destroy);
}

static int daemon_start(Daemon *d) {
        _cleanup_free_ RingSpec *specs = NULL;
        ReconcileReport rep;
        Config *c = &d->config;
        int r;

        /* One keyd per database: a second one (started by hand beside the service, say) would rotate and reconcile
         * the same keys at the same time. The lock is on a file of its own, never on the database file, whose POSIX
         * locks belong to SQLite. */
        r = check_anchor_path(c->anchor_file, c->store_path);
        if (r < 0)
                return log_error_errno(r, "[audit] anchor-file %s is the database or one of its files: refusing to "
                                          "append to it (and to open and close a file SQLite holds).",
                                       c->anchor_file);
        r = lock_store(c->store_path, &d->lock_fd);
        if (r == -EWOULDBLOCK)
                return log_error_errno(r, "Another keyd is running on the database %s (it holds %s.lock). Refusing "
                                          "to start a second one.",
                                       c->store_path, c->store_path);
        if (r < 0)
                return log_error_errno(r, "Cannot lock %s.lock: %m", c->store_path);

        if (c->softhsm2_conf && setenv("SOFTHSM2_CONF", c->softhsm2_conf, 1) < 0)
                return log_oom();
        HsmConfig hc = { .module = c->module, .uri = c->uri, .pin_file = c->pin_file,
                         .sessions = c->max_sessions, .sign_in = (HsmSignIn) c->sign_in,
                         .session_wait_ms = (unsigned) (c->session_wait / USEC_PER_MSEC),
                         .sign_timeout_ms = (unsigned) (c->sign_timeout / USEC_PER_MSEC) };
        r = hsm_open(&hc, &d->hsm);
        if (r == -EACCES)
                return log_error_errno(r, "Cannot log in to the token %s: wrong PIN (%s). Not retrying, so that the "
                                          "token does not lock.",
                                       c->uri, hsm_last_error());
        if (r < 0)
                return log_error_errno(r, "Cannot open the token %s with module %s: %m (%s)", c->uri, c->module,
                                       hsm_last_error());
        log_info("Logged in to token '%s'.", hsm_token_label(d->hsm));

        r = store_open(c->store_path, 0, &d->store);
        if (r < 0)
                return log_error_errno(r, "Cannot open the database %s: %m", c->store_path);
        r = audit_log_open(c->store_path, &d->audit);
        if (r < 0)
                return log_error_errno(r, "Cannot open the audit log in %s: %m", c->store_path);
        d->health = store_health_new();
        if (!d->health)
                return log_oom();
        store_set_health(d->store, d->health);
        audit_log_set_health(d->audit, d->health);

        EngineOptions eo = { .on_event = on_event, .event_userdata = d,
                             .reconcile_max_destroy = c->reconcile_max_destroy,
                             .on_key_lost = on_key_lost, .key_lost_userdata = d,
                             .on_checkpoint = checkpoint_copies, .checkpoint_userdata = d };
        r = engine_new(d->hsm, d->store, &eo, &d->engine);
        if (r >= 0)
                r = engine_load(d->engine);
        if (r < 0)
                return log_error_errno(r, "Cannot load the keyrings from %s: %m (%s)", c->store_path,
                                       store_last_error(d->store));
        r = ring_specs(c, &specs);
        if (r >= 0)
                r = engine_apply_config(d->engine, specs, c->n_keyrings);
        if (r < 0)
                return log_error_errno(r, "Cannot apply the configured keyrings: %m");

        usec_t t0 = now_monotonic();
        r = engine_reconcile(d->engine, &rep);
        if (r < 0)
                return log_error_errno(r, "Cannot reconcile the token with the database: %m (%s)", hsm_last_error());
        log_reconcile(&rep, now_monotonic() - t0);
        return 0;
}

static void daemon_stop(Daemon *d) {
        fail_jobs(d);
        d->api = api_stop(d->api);
        d->job_source = sd_event_source_unref(d->job_source);
        if (d->job_fd >= 0)
                close(d->job_fd);
        d->checkpoint = sd_event_source_unref(d->checkpoint);
        d->watch = sd_event_source_unref(d->watch);
        d->timer = sd_event_source_unref(d->timer);
        d->event = sd_event_unref(d->event);
        d->engine = engine_free(d->engine);
        d->audit = audit_log_close(d->audit);
        d->store = store_close(d->store);
        d->health = store_health_free(d->health);
        d->hsm = hsm_close(d->hsm);
        if (d->lock_fd >= 0)
                d->lock_fd = safe_close(d->lock_fd);
        config_done(&d->config);
}

int daemon_run(const DaemonOptions *o) {
        Daemon d = { .opts = o, .job_fd = -EBADF, .lock_fd = -EBADF };
        sigset_t mask;
        int r;

        pthread_mutex_init(&d.job_lock, NULL);
        pthread_cond_init(&d.job_cond, NULL);
        if (getenv("JOURNAL_STREAM"))
                log_set_journal(1);
        r = load_config(o->config_path, &d.config);
        if (r < 0)
                return r;

        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        sigprocmask(SIG_BLOCK, &mask, NULL);

        r = daemon_start(&d);
        if (r < 0)
                goto finish;

        r = sd_event_default(&d.event);
        if (r >= 0)
                r = sd_event_add_signal(d.event, NULL, SIGTERM, NULL, NULL);
        if (r >= 0)
                r = sd_event_add_signal(d.event, NULL, SIGINT, NULL, NULL);
        if (r >= 0)
                r = sd_event_add_signal(d.event, NULL, SIGHUP, on_sighup, &d);
        if (r >= 0)
                r = sd_event_add_time(d.event, &d.timer, CLOCK_REALTIME, 0, 1000, on_timer, &d);
        if (r >= 0)
                r = sd_event_add_time_relative(d.event, &d.checkpoint, CLOCK_REALTIME,
                                               (uint64_t) d.config.checkpoint_interval, USEC_PER_SEC, on_checkpoint,
                                               &d);
        if (r >= 0)
                r = sd_event_source_set_enabled(d.checkpoint, SD_EVENT_ON);
        if (r >= 0)
                r = sd_event_add_time_relative(d.event, &d.watch, CLOCK_MONOTONIC, (uint64_t) WATCH_INTERVAL,
                                               50 * USEC_PER_MSEC, on_watch, &d);
        if (r >= 0)
                r = sd_event_source_set_enabled(d.watch, SD_EVENT_ON);
        if (r >= 0) {
                d.job_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
                r = d.job_fd < 0 ? negative_errno() : sd_event_add_io(d.event, &d.job_source, d.job_fd, EPOLLIN, on_jobs, &d);
        }
        /* WATCHDOG=1 from the loop itself when WATCHDOG_USEC is set: a stuck loop gets restarted. */
        if (r >= 0)
                r = sd_event_set_watchdog(d.event, true);
        if (r < 0) {
                log_error_errno(r, "Cannot set up the event loop: %m");
                goto finish;
        }

        r = run_tick(&d);
        if (r < 0) {
                log_error_errno(r, "Cannot arm the lifecycle timer: %m");
                goto finish;
        }
        /* A jwks-file that cannot be written is told (keyring and path) and marks its keyring degraded; the pass
         * that writes it again is due within the retry delay: arm the timer for it, and say it in STATUS=. */
        if (engine_publish_all(d.engine) < 0 && (r = run_tick(&d)) < 0) {
                log_error_errno(r, "Cannot arm the lifecycle timer: %m");
                goto finish;
        }
        /* The start (reconcile, the first lifecycle pass) is signed before anyone is told keyd is ready. */
        write_checkpoint(&d);
        r = start_api(&d);
        if (r < 0)
                goto finish;
        (void) sd_notify(0, "READY=1");
        log_info("keyd " KEYD_VERSION " ready: %zu keyring(s).", engine_n_rings(d.engine));
        if (o->dev)
                dev_hint(&d.config);

        r = sd_event_loop(d.event);
        (void) sd_notify(0, "STOPPING=1");
        fail_jobs(&d);
        if (r < 0)
                log_error_errno(r, "Event loop failed: %m");
        else {
                log_info("Stopping.");
                /* A clean stop signs the head once no request can add to it any more. */
                d.api = api_stop(d.api);
                write_checkpoint(&d);
        }
finish:
        daemon_stop(&d);
        pthread_mutex_destroy(&d.job_lock);
        pthread_cond_destroy(&d.job_cond);
        return r < 0 ? r : 0;
}
