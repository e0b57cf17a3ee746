/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

#include "rotation/audit.h"
#include "rotation/engine.h"

/* The local API (SPEC §4: HTTP/1.1 + JSON on a Unix stream socket), the public listener (SPEC §5) and the optional
 * metrics listener (GET /metrics over TCP for Prometheus). */
typedef struct Api Api;

/* Run fn(engine, arg) on the thread that owns the engine's writes (the daemon's event loop) and wait for its result.
 * Every administrative change goes through it. */
typedef int (*ApiLoopCall)(void *userdata, int (*fn)(Engine *e, void *arg), void *arg);

typedef struct ApiConfig {
        const char *socket_path; /* bound by keyd unless socket_fd >= 0 (from socket activation) */
        int socket_fd;
        const char *public_listen; /* "HOST:PORT", or NULL; ignored when public_fd >= 0 */
        int public_fd;
        const char *metrics_listen; /* "HOST:PORT" for GET /metrics alone, or NULL; ignored when metrics_fd > 0 */
        int metrics_fd;             /* a passed socket (> 0: 0 in a zeroed config means none) */
        const char *db_path;     /* for reading the audit log */
        char **admin_users, **admin_groups;
        unsigned max_connections, max_connections_per_uid;
        unsigned idle_timeout;   /* seconds */
        uid_t dev_uid;           /* dev mode: this uid is admin and may sign with every keyring; (uid_t) -1 if none */
        StoreHealth *storage;    /* the database's write health (/healthz, 503 storage_unavailable), or NULL */
} ApiConfig;

int api_start(const ApiConfig *cfg, Engine *engine, AuditLog *audit, ApiLoopCall call, void *call_userdata,
              Api **ret);
Api *api_stop(Api *a);
/* Replace the admin lists and forget the public listener's cached documents (SIGHUP). */
int api_reload(Api *a, char **admin_users, char **admin_groups);
