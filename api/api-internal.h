/* SPDX-License-Identifier: MIT */
#pragma once

#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>

#include "api/api.h"
#include "api/peer.h"
#include "common/histogram.h"
#include "common/macro.h"
#include "common/strmap.h"

#define API_HEADER_MAX 8192
#define API_BODY_MAX 65536
#define API_TOKEN_MAX 16384
#define API_LINGER_MAX 64 /* refused connections lingering at once (accept.c) */

typedef enum Role {
        ROLE_VERIFY, /* anyone who can connect */
        ROLE_SIGN,   /* per keyring: checked by the handler once it has the keyring */
        ROLE_ADMIN,
} Role;

/* The statuses keyd answers with, each with a request duration histogram of its own per route, and one slot for any
 * other: memory stays bounded whatever a caller sends (metrics.c). */
#define API_STATUS_SLOTS 18

/* Per-route counters for /metrics. Zeroed is ready (histograms with the default bounds). */
typedef struct RouteStats {
        atomic_uint_fast64_t requests, errors;
        Histogram duration[API_STATUS_SLOTS]; /* by status: api_observe_request() */
} RouteStats;

typedef struct PublicRoutes PublicRoutes; /* public.c */

struct Api {
        ApiConfig cfg;
        char *socket_path, *public_listen, *metrics_listen, *db_path; /* owned; cfg points at them */
        Engine *engine;
        AuditLog *audit;
        ApiLoopCall call;
        void *call_userdata;

        struct MHD_Daemon *mhd;     /* the Unix socket API (connections handed to it by accept.c) */
        struct MHD_Daemon *public;  /* the public listener, or NULL */
        struct MHD_Daemon *metrics; /* the metrics listener, or NULL */
        int socket_fd, public_fd;
        bool own_socket;            /* bound by keyd: unlink at stop */
        pthread_t accept_thread;
        bool accepting;             /* accept_thread runs */
        atomic_bool accept_stop;    /* tells accept_thread to return */
        int accept_wake_fd;         /* eventfd: accept_stop or lingering was set */

        pthread_mutex_t lock;       /* admins, per-uid counts, pending, the public listener's cache, routes, health */
        char **admin_users, **admin_groups;
        StrMap *per_uid;            /* "uid" → count (boxed), from accept to close */
        StrMap *pending;            /* "fd" → uid (boxed): counted, handed to libmicrohttpd, not yet started */
        int lingering[API_LINGER_MAX]; /* refused connections for accept_thread to linger on */
        size_t n_lingering;
        atomic_uint connections;
        StrMap *public_cache;       /* public responses by path */
        PublicRoutes *public_routes; /* which keyring the public paths serve (public.c), NULL until needed */
        char *public_health;        /* the public listener's last /healthz body, its status, when it was made */
        unsigned public_health_status;
        usec_t public_health_at;

        atomic_uint_fast64_t minted, signed_jws, signed_raw, verified_ok, verified_bad, denied, audit_failures;
        RouteStats *route_stats;    /* one per route (router.c) */
        RouteStats unrouted;        /* durations of the requests that match no route (404, 405, a bad path) */
        struct ApiRefusals *refusals; /* connections refused at accept, to be audited (audit.c) */
};

typedef struct Request {
        Api *api;
        struct MHD_Connection *conn;
        Peer *peer;
        const char *method;
        char *body;
        size_t body_len;
        json_t *json;  /* POST body, parsed */
        usec_t start;  /* now_monotonic() at the first call of the access handler */
        ssize_t route; /* set by api_dispatch(): the route's index, or -1 for none */
        bool audited;  /* a record of this request was written (or tried): api_audit() */
} Request;

typedef struct Reply {
        unsigned status;
        json_t *json;   /* owned */
        char *text;     /* owned, used when json is NULL */
        const char *content_type;
} Reply;

typedef int (*Handler)(Request *rq, const char *arg, Reply *rp);

/* reply.c */
int reply_json(Reply *rp, unsigned status, json_t *body /* consumed */);
_printf_(4, 5) int reply_error(Reply *rp, unsigned status, const char *code, const char *fmt, ...);
/* Map an engine error to a reply: -ENOENT 404, -EEXIST/-EALREADY/-EBUSY/-ESHUTDOWN 409, -EINVAL 400,
 * -ENOKEY/-ETIMEDOUT/-ECANCELED 503, -ENOSPC/-ENOLCK 503 storage_unavailable, else 500. */
int reply_errno(Reply *rp, int r, const char *what);
/* reply_errno() for a request that had to write: a storage fault (while the database's health says so, or one only
 * the store gives) is 503 storage_unavailable naming the cause. */
int reply_write_errno(Request *rq, Reply *rp, int r, const char *what);
json_t *json_time(usec_t t);
/* What the API shows of a keyring, copied under the engine's read lock (ring_copy()) so that its JSON is built
 * (ring_copy_to_json()) after the lock is released. */
typedef struct KeyCopy {
        char kid[STORE_KID_MAX + 1];
        KeydAlg alg;
        KeyState state;
        usec_t created_at, publish_at, activate_at, retire_at, expire_at, revoked_at;
        char *reason; /* owned, may be NULL */
        bool lost;
} KeyCopy;

typedef struct RingCopy {
        char name[KEYRING_NAME_MAX + 1];
        RingKind kind;
        int64_t owner_uid;
        Policy policy; /* owned (policy_copy()) when has_policy */
        bool has_policy;
        bool disabled;
        char *degraded; /* owned, NULL when healthy */
        usec_t next_due;
        KeyCopy *keys;
        size_t n_keys;
} RingCopy;

/* One key, copied under the engine's read lock (key_copy(): 0 or -ENOMEM), shown as the API shows keys (KEY in
 * docs/API.md) after it is released. */
int key_copy(const StoreKey *k, KeyCopy *ret);
void key_copy_done(KeyCopy *k);
json_t *key_copy_to_json(const KeyCopy *k);

/* Call with the engine read lock held. 0 or -ENOMEM (nothing to free then). */
int ring_copy(Ring *r, RingCopy *ret);
void ring_copy_done(RingCopy *c);
/* The keyring as the API shows it (RING in docs/API.md); NULL for want of memory. No lock needed. */
json_t *ring_copy_to_json(const RingCopy *c);
Actor api_actor(const Request *rq);

/* audit.c */
/* Audit a request (audit_record_build() from the caller's peer, then the group commit of audit_log_write()):
 * detail_fmt and its arguments as json_pack(), NULL for none. Returns 0, or negative if the record could not be built
 * or written: the request must then fail. */
int api_audit(Request *rq, const char *action, const char *ring, const char *kid, const char *result,
              const char *detail_fmt, ...);
/* A refused request (403, 404, 409, 422) that has no record yet (rq->audited): an "api.refused" record with the
 * route's name (NULL: no route took it; then the method and up to 128 bytes of path), the status, and the reply's
 * error and message, as the caller (rq->peer; without one, uid: what accept read, pid and comm unknown). One record
 * per request; a failure to write it is logged and counted, the refusal stands. Any other status: nothing. */
void api_audit_refused(Request *rq, const char *route, const char *ring, const char *kid, const char *path,
                       const Reply *rp, uid_t uid);
/* Connections refused at accept (429): counted per uid (the last pid kept) and written by a thread of their own as
 * "api.refused" records, one per uid per second at most (API_REFUSALS_UIDS uids a second, the others in one record
 * more), so that refusing connections never waits for the database and can never write faster than that.
 * api_refusal_note() never blocks for long (a mutex); stop writes what was counted, then joins. */
#define API_REFUSALS_UIDS 16
typedef struct ApiRefusals ApiRefusals;
int api_refusals_start(Api *a);
void api_refusal_note(Api *a, uid_t uid, pid_t pid);
void api_refusals_stop(Api *a);

/* authz.c */
bool authz_admin(Api *a, const Peer *p);
/* Sign on a keyring: issuer keyrings by sign-users / sign-groups, agent keyrings by their owner uid. Call with the
 * engine read lock held. */
bool authz_sign(Api *a, const Peer *p, Ring *r);
/* Refuse with 403 and audit the denial. */
int authz_deny(Request *rq, Reply *rp, const char *ring, const char *what);

/* accept.c: keyd accepts on the Unix socket itself and reads SO_PEERCRED, so that a connection over a limit is refused
 * at once (429 over max-connections-per-uid, 503 over max-connections: a short reply, then closed) and holds no
 * thread and no slot; the others are counted and handed to libmicrohttpd. */
int accept_start(Api *a);
/* Stop accepting (before libmicrohttpd stops: nothing is handed to it after this). */
void accept_stop(Api *a);
/* Close what is left (after libmicrohttpd stopped: its threads may hand over refused connections until then). */
void accept_done(Api *a);
/* Take the count made when the connection on fd was accepted: true and its uid, or false if there is none. */
bool accept_claim(Api *a, int fd, uid_t *ret_uid);
/* Count a connection of uid in (+1, limits not checked) or out (-1). */
void accept_count(Api *a, uid_t uid, int delta);
/* Hand over fd, a refused connection whose reply has been written and whose write side is shut: what the client
 * still sends is read and dropped for a moment, then fd is closed. */
void accept_linger(Api *a, int fd);
/* A complete HTTP/1.1 reply that closes the connection, with a JSON body (a newline is added), for where
 * libmicrohttpd cannot send one. Returns its length (truncated to size - 1). */
size_t api_raw_reply(char *buf, size_t size, unsigned status, const char *json);

/* server.c */
/* MHD_OPTION_UNESCAPE_CALLBACK for both listeners: leave the path as sent, for api_path_decode() (path.h) to decode
 * strictly; libmicrohttpd's own unescaping would end it at "%00" and split it at "%2F". */
size_t api_unescape_none(void *cls, struct MHD_Connection *conn, char *s);

/* query.c: the query parameters of a request (taken as sent, not decoded). */
/* Refuse (400 bad_request, rp filled, -EINVAL) a parameter not in allowed (NULL-terminated), one given twice, or one
 * without "=value"; 0 when every parameter is allowed and given at most once. */
int api_query_check(Request *rq, const char *const *allowed, Reply *rp);
/* A parameter as a decimal integer ≤ max (def when absent): 0, or -EINVAL. */
int api_query_uint(Request *rq, const char *key, uint64_t def, uint64_t max, uint64_t *ret);
/* A parameter's value as sent, or NULL when absent. */
const char *api_query_get(Request *rq, const char *key);
/* A parameter's value percent-decoded into buf (size bytes with its NUL): 0 with *ret buf, or with *ret NULL when
 * absent; -EINVAL when empty, longer than size - 1, with a malformed escape or a control byte, or not UTF-8. */
int api_query_text(Request *rq, const char *key, char *buf, size_t size, const char **ret);
/* A parameter as a time, seconds since the epoch or RFC 3339, into µs (0 when absent): 0, or -EINVAL. */
int api_query_time(Request *rq, const char *key, usec_t *ret);

/* router.c */
/* Route the request, call its handler, and fill rp; sets rq->route. */
void api_dispatch(Request *rq, const char *url, Reply *rp);
size_t api_n_routes(void);
const char *api_route_name(size_t i);
/* The route api_dispatch() would take for method and url (as sent): its index, or -1. For a request refused before
 * it is dispatched. */
ssize_t api_route_find(const char *method, const char *url);

/* metrics.c: GET /metrics is built from one function per source of metrics (the sources[] table there), each
 * appending its families to a MetricsText: "# HELP" and "# TYPE" once per family (metrics_family()), then its
 * samples (metrics_append(), metrics_histogram()). Names follow Prometheus: the unit in the name, "_total" on
 * counters. A write that fails for want of memory fails the whole reply, so sources need not check. */
typedef struct MetricsText MetricsText;
_printf_(2, 3) void metrics_append(MetricsText *m, const char *fmt, ...);
/* "# HELP name help" and "# TYPE name type" (counter, gauge, histogram). */
void metrics_family(MetricsText *m, const char *name, const char *type, const char *help);
/* A family of one sample without labels: its HELP and TYPE lines and "name value". */
void metrics_counter(MetricsText *m, const char *name, const char *help, uint64_t value);
void metrics_gauge(MetricsText *m, const char *name, const char *help, uint64_t value);
/* The samples of one series of a histogram family (histogram_render()): labels NULL, or pairs already escaped. */
void metrics_histogram(MetricsText *m, const char *name, const char *labels, const Histogram *h);
/* The whole exposition, every source of sources[], as a new string in *ret: 0, or -ENOMEM (nothing half-written). */
int api_metrics_render(Api *a, char **ret);
#define API_METRICS_TYPE "text/plain; version=0.0.4"
/* Count a request in keyd_request_duration_seconds: its route (-1: none), its status, the time since rq->start.
 * Lock-free, called once per request when its reply is queued. */
void api_observe_request(Api *a, const Request *rq, unsigned status);

/* handlers */
int h_keyrings_list(Request *rq, const char *arg, Reply *rp);
int h_keyring_show(Request *rq, const char *arg, Reply *rp);
int h_keyring_jwks(Request *rq, const char *arg, Reply *rp);
int h_keyring_create(Request *rq, const char *arg, Reply *rp);
int h_mint(Request *rq, const char *arg, Reply *rp);
int h_jws(Request *rq, const char *arg, Reply *rp);
int h_sign(Request *rq, const char *arg, Reply *rp);
int h_verify(Request *rq, const char *arg, Reply *rp);
int h_rotate(Request *rq, const char *arg, Reply *rp);
int h_revoke_key(Request *rq, const char *arg, Reply *rp);
int h_key_show(Request *rq, const char *arg, Reply *rp);
int h_disable(Request *rq, const char *arg, Reply *rp);
int h_revoke_token(Request *rq, const char *arg, Reply *rp);
int h_audit_list(Request *rq, const char *arg, Reply *rp);
int h_audit_verify(Request *rq, const char *arg, Reply *rp);
int h_audit_checkpoint(Request *rq, const char *arg, Reply *rp);
int h_audit_key(Request *rq, const char *arg, Reply *rp);
int h_audit_export(Request *rq, const char *arg, Reply *rp);
int h_audit_prune(Request *rq, const char *arg, Reply *rp);
int h_healthz(Request *rq, const char *arg, Reply *rp);
/* h-misc.c: health as a listener tells it (docs/API.md, GET /healthz): its HTTP status (200 only for "ok", else 503)
 * and *ret its body (NULL for want of memory). local: the Unix socket's, every keyring (or only the one named by only)
 * with the reasons and the token's sessions; else the public listener's, its published keyrings by name only. */
unsigned api_health(Api *a, bool local, const char *only, json_t **ret);
int h_metrics(Request *rq, const char *arg, Reply *rp); /* metrics.c */

/* public.c */
int public_start(Api *a);
void public_cache_free(void *cached);
PublicRoutes *public_routes_free(PublicRoutes *pr);
/* Drop the documents and routes built so far (a reload may have changed an issuer). Under Api.lock. */
void public_forget(Api *a);
void public_stop(Api *a);

/* listener.c: the TCP listeners (public, metrics). */
/* Start a listener with handler cb on the passed socket fd (>= 0), else on listen ("IPV4:PORT", "[IPV6]:PORT"): 0,
 * -EINVAL for an address it cannot take, -EADDRINUSE when it cannot listen. */
int api_listener_start(int fd, const char *listen, MHD_AccessHandlerCallback cb, Api *a, unsigned threads,
                       unsigned max_connections, unsigned per_ip, struct MHD_Daemon **ret);
/* Lower the calling listener thread's priority (nice 19), once per thread: the network waits, signing does not. */
void api_thread_give_way(void);
/* The start of a listener's (public, metrics) request handler, which take no body: gives way (above); -1 refuse (a
 * body came), 0 return MHD_YES and wait for the request to be read in full, 1 answer it now. */
int api_listener_begin(struct MHD_Connection *conn, size_t upload_data_size, void **con_cls);
int metrics_listener_start(Api *a);
void metrics_listener_stop(Api *a);
