/* SPDX-License-Identifier: MIT */
/* The Unix socket server: libmicrohttpd, one thread per connection (signing concurrency is bounded by the token's
 * session pool), connections accepted and limited by accept.c, peer credentials read once per connection (in its own
 * thread, on its first request), limits on everything a caller controls. */
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <stdio.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "api/api-internal.h"
#include "common/crypto-util.h"
#include "common/log.h"
#include "common/strv.h"

/* A connection libmicrohttpd serves (its socket context). */
typedef struct Conn {
        uid_t uid;     /* counted under this uid (accept.c) */
        bool resolved; /* peer read: on the first request */
        bool valid;    /* ...and its credentials could be read */
        Peer peer;
} Conn;

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code) {
        Api *a = cls;
        Conn *c = *socket_context;

        if (code == MHD_CONNECTION_NOTIFY_STARTED) {
                const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
                struct ucred cred;
                socklen_t len = sizeof cred;
                uid_t uid;

                if (!ci || !accept_claim(a, ci->connect_fd, &uid)) {
                        /* Not counted when accepted (cannot happen): count it now, so that closing it balances. */
                        uid = ci && getsockopt(ci->connect_fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0
                                      ? cred.uid
                                      : (uid_t) -1;
                        accept_count(a, uid, +1);
                }
                c = calloc(1, sizeof *c);
                if (!c)
                        accept_count(a, uid, -1); /* every request on it is refused */
                else
                        c->uid = uid;
                *socket_context = c;
        } else if (code == MHD_CONNECTION_NOTIFY_CLOSED && c) {
                accept_count(a, c->uid, -1);
                if (c->resolved)
                        peer_done(&c->peer);
                free(c);
                *socket_context = NULL;
        }
}

/* The peer of a connection, read on its first request (in the connection's own thread: a slow user or group lookup
 * delays no other connection); NULL if its credentials cannot be read. */
static Peer *conn_peer(struct MHD_Connection *conn) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        const union MHD_ConnectionInfo *fi = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        Conn *c = ci ? ci->socket_context : NULL;

        if (!c)
                return NULL;
        if (!c->resolved) {
                c->resolved = true;
                c->valid = fi && peer_from_fd(fi->connect_fd, &c->peer) >= 0;
        }
        return c->valid ? &c->peer : NULL;
}

/* The uid the connection was counted under when accepted, (uid_t) -1 if none. */
static uid_t conn_uid(struct MHD_Connection *conn) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        const Conn *c = ci ? ci->socket_context : NULL;
        return c ? c->uid : (uid_t) -1;
}

/* What the headers say about size and framing. */
typedef struct HeaderScan {
        size_t bytes;
        unsigned content_length, transfer_encoding;
        bool chunked;
} HeaderScan;

static enum MHD_Result scan_header(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
        HeaderScan *h = cls;
        (void) kind;
        h->bytes += strlen(key) + (value ? strlen(value) : 0) + 4;
        if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0)
                h->content_length++;
        else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
                h->transfer_encoding++;
                h->chunked = value && strcasecmp(value, "chunked") == 0;
        }
        return MHD_YES;
}

/* The refusals that the headers decide, before any of the body is read. */
static void check_headers(struct MHD_Connection *conn, const char *url, Peer *peer, Reply *rp) {
        HeaderScan h = { 0 };
        uint64_t len;

        (void) MHD_get_connection_values(conn, MHD_HEADER_KIND, scan_header, &h);
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (!peer)
                reply_error(rp, MHD_HTTP_FORBIDDEN, "forbidden", "the peer's credentials cannot be read");
        else if (h.bytes + strlen(url) > API_HEADER_MAX)
                reply_error(rp, MHD_HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE, "headers_too_large",
                            "request headers exceed %d bytes", API_HEADER_MAX);
        /* One way to frame a body, said once (RFC 9112 §6.3): anything else could be read two ways. */
        else if (h.content_length > 1 || h.transfer_encoding > 1 || (h.content_length && h.transfer_encoding))
                reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request",
                            "more than one Content-Length or Transfer-Encoding, or both");
        else if (h.transfer_encoding && !h.chunked)
                reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request", "the only transfer coding taken is chunked");
        else if (cl && parse_uint64(cl, UINT64_MAX, &len) < 0)
                reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request", "invalid Content-Length");
        else if (cl && len > API_BODY_MAX)
                reply_error(rp, MHD_HTTP_CONTENT_TOO_LARGE, "payload_too_large", "request body exceeds %d bytes",
                            API_BODY_MAX);
}

/* Refuse a request on its headers, or when its chunked body passes the limit, without reading the rest of it. The
 * reply is written on the socket here (nothing else is being written on it now: libmicrohttpd cannot queue a reply in
 * the middle of a body), our side of the stream is shut (the client reads the reply, then EOF), and libmicrohttpd
 * closes its descriptor (MHD_NO). A duplicate of it lingers a moment in accept.c, so that the client's writes of the
 * rest of its request do not fail before it has read the reply. */
static enum MHD_Result refuse(Api *a, struct MHD_Connection *conn, Request *rq, const char *url, Reply *rp) {
        const union MHD_ConnectionInfo *fi = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        _cleanup_free_ char *body = rp->json ? json_dumps(rp->json, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        char reply[1024];

        if (fi && body) {
                size_t n = api_raw_reply(reply, sizeof reply, rp->status, body);
                (void) send(fi->connect_fd, reply, n, MSG_DONTWAIT | MSG_NOSIGNAL);
                (void) shutdown(fi->connect_fd, SHUT_WR);
                int fd = fcntl(fi->connect_fd, F_DUPFD_CLOEXEC, 3);
                if (fd >= 0)
                        accept_linger(a, fd);
        }
        /* Timed under the route it would have gone to: a 413 on a mint is the mint's. */
        rq->route = api_route_find(rq->method, url);
        api_observe_request(a, rq, rp->status);
        json_decref(rp->json);
        rp->json = NULL;
        return MHD_NO;
}

static enum MHD_Result send_reply(struct MHD_Connection *conn, Reply *rp, bool close_after) {
        char *body;
        size_t len;
        struct MHD_Response *resp;
        enum MHD_Result ret;

        if (rp->json) {
                body = json_dumps(rp->json, JSON_COMPACT | JSON_PRESERVE_ORDER);
                if (!body)
                        return MHD_NO;
                len = strlen(body);
                /* One trailing newline, for people reading with curl. */
                char *nb = realloc(body, len + 2);
                if (nb) {
                        body = nb;
                        body[len++] = '\n';
                        body[len] = 0;
                }
        } else {
                body = TAKE_PTR(rp->text);
                len = body ? strlen(body) : 0;
        }
        resp = MHD_create_response_from_buffer(len, body ?: (char *) "", body ? MHD_RESPMEM_MUST_FREE
                                                                             : MHD_RESPMEM_PERSISTENT);
        if (!resp) {
                free(body);
                return MHD_NO;
        }
        (void) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                                       rp->content_type ?: "application/json");
        (void) MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
        if (close_after)
                (void) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
        ret = MHD_queue_response(conn, rp->status, resp);
        MHD_destroy_response(resp);
        return ret;
}

static void reply_done(Reply *rp) {
        json_decref(rp->json);
        free(rp->text);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
        Api *a = cls;
        Request *rq = *con_cls;
        Reply rp = { 0 };
        enum MHD_Result ret;
        (void) version;

        if (!rq) {
                rq = calloc(1, sizeof *rq);
                if (!rq)
                        return MHD_NO;
                rq->start = now_monotonic();
                rq->route = -1;
                rq->api = a;
                rq->conn = conn;
                rq->method = method;
                rq->peer = conn_peer(conn);
                *con_cls = rq;
                check_headers(conn, url, rq->peer, &rp);
                if (!rq->peer) /* the only refusal of these that is audited: a 403 (its uid: as accept read it) */
                        api_audit_refused(rq, NULL, NULL, NULL, url, &rp, conn_uid(conn));
                return rp.status ? refuse(a, conn, rq, url, &rp) : MHD_YES;
        }

        if (*upload_data_size > 0) {
                size_t n = *upload_data_size;
                *upload_data_size = 0;
                if (rq->body_len + n > API_BODY_MAX) {
                        reply_error(&rp, MHD_HTTP_CONTENT_TOO_LARGE, "payload_too_large",
                                    "request body exceeds %d bytes", API_BODY_MAX);
                        return refuse(a, conn, rq, url, &rp);
                }
                char *nb = realloc(rq->body, rq->body_len + n + 1);
                if (!nb)
                        return MHD_NO;
                memcpy(nb + rq->body_len, upload_data, n);
                rq->body = nb;
                rq->body_len += n;
                rq->body[rq->body_len] = 0;
                return MHD_YES;
        }

        api_dispatch(rq, url, &rp);
        ret = send_reply(conn, &rp, false);
        api_observe_request(a, rq, rp.status);
        reply_done(&rp);
        return ret;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe) {
        Request *rq = *con_cls;
        (void) cls, (void) conn, (void) toe;
        if (!rq)
                return;
        json_decref(rq->json);
        free(rq->body);
        free(rq);
        *con_cls = NULL;
}

typedef struct BindJob {
        int fd;
        const struct sockaddr_un *sa;
        int r;
} BindJob;

/* bind() creates the socket file with the socket inode's mode less the umask. The umask is the process's, shared
 * with every thread: this short-lived thread takes one of its own (CLONE_FS) to create the file 0660 whatever keyd's
 * umask is, and no other thread of keyd ever sees a different one. */
static void *bind_thread(void *userdata) {
        BindJob *j = userdata;
        if (unshare(CLONE_FS) < 0) {
                j->r = negative_errno();
                return NULL;
        }
        (void) umask(0117);
        j->r = bind(j->fd, (const struct sockaddr *) j->sa, sizeof *j->sa) < 0 ? negative_errno() : 0;
        return NULL;
}

static int bind_unix(const char *path, int *ret) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_close_ int fd = -EBADF;
        struct group *g;
        pthread_t t;
        int r;

        if (strlen(path) >= sizeof sa.sun_path)
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, strlen(path) + 1);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return negative_errno();
        /* The mode the file will have (SPEC §4: 0660, who may connect is who may verify), set on the socket before
         * it has a path: Linux creates the file with it (less the umask). Never a chmod() on the path. */
        if (fchmod(fd, 0660) < 0)
                return negative_errno();
        (void) unlink(path); /* a stale socket of a previous run */
        BindJob job = { fd, &sa, 0 };
        r = -pthread_create(&t, NULL, bind_thread, &job);
        if (r < 0)
                return r;
        pthread_join(t, NULL);
        if (job.r < 0)
                return job.r;
        /* Group keyd when it exists, before listen(): until then nobody can connect. */
        if ((g = getgrnam("keyd")))
                if (lchown(path, (uid_t) -1, g->gr_gid) < 0)
                        return negative_errno();
        if (listen(fd, SOMAXCONN) < 0)
                return negative_errno();
        *ret = TAKE_FD(fd);
        return 0;
}

/* The path is decoded by the router, strictly (path.c): libmicrohttpd's own unescaping would turn "%00" into the end
 * of the path and "%2F" into a separator. Query arguments are left as sent, too (the API's are numbers). */
size_t api_unescape_none(void *cls, struct MHD_Connection *conn, char *s) {
        (void) cls, (void) conn;
        return strlen(s);
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
        char buf[512];
        (void) cls;
        /* libmicrohttpd logs on every reply on a Unix socket (its TCP_NODELAY is refused): format only what is kept. */
        if (log_get_max_level() < LOG_DEBUG)
                return;
        vsnprintf(buf, sizeof buf, fmt, ap);
        log_debug("microhttpd: %s", buf);
}

int api_start(const ApiConfig *cfg, Engine *engine, AuditLog *audit, ApiLoopCall call, void *call_userdata,
              Api **ret) {
        Api *a = calloc(1, sizeof *a);
        int r;

        if (!a)
                return -ENOMEM;
        a->cfg = *cfg;
        /* Owned copies: the configuration they came from is replaced on SIGHUP. */
        a->cfg.socket_path = a->socket_path = cfg->socket_path ? strdup(cfg->socket_path) : NULL;
        a->cfg.public_listen = a->public_listen = cfg->public_listen ? strdup(cfg->public_listen) : NULL;
        a->cfg.metrics_listen = a->metrics_listen = cfg->metrics_listen ? strdup(cfg->metrics_listen) : NULL;
        a->cfg.db_path = a->db_path = cfg->db_path ? strdup(cfg->db_path) : NULL;
        a->engine = engine;
        a->audit = audit;
        a->call = call;
        a->call_userdata = call_userdata;
        a->socket_fd = a->public_fd = a->accept_wake_fd = -EBADF;
        pthread_mutex_init(&a->lock, NULL);
        a->per_uid = strmap_new();
        a->pending = strmap_new();
        a->public_cache = strmap_new();
        a->route_stats = calloc(api_n_routes(), sizeof *a->route_stats);
        if (!a->per_uid || !a->pending || !a->public_cache || !a->route_stats ||
            (cfg->socket_path && !a->socket_path) || (cfg->public_listen && !a->public_listen) ||
            (cfg->metrics_listen && !a->metrics_listen) ||
            (cfg->db_path && !a->db_path) || api_reload(a, cfg->admin_users, cfg->admin_groups) < 0) {
                api_stop(a);
                return -ENOMEM;
        }
        if (a->cfg.max_connections == 0)
                a->cfg.max_connections = 256;
        if (a->cfg.max_connections_per_uid == 0)
                a->cfg.max_connections_per_uid = 32;

        if (cfg->socket_fd >= 0)
                a->socket_fd = cfg->socket_fd;
        else {
                r = bind_unix(cfg->socket_path, &a->socket_fd);
                if (r < 0) {
                        api_stop(a);
                        return r;
                }
                a->own_socket = true;
        }
        /* No listening socket: accept.c accepts, and hands over the connections within the limits. MHD's own
         * limit is only a backstop, above ours (connections it has not cleaned up yet count there a little longer). */
        a->mhd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL |
                                          MHD_USE_NO_LISTEN_SOCKET | MHD_USE_ITC | MHD_USE_ERROR_LOG,
                                  0, NULL, NULL, on_request, a, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, a,
                                  MHD_OPTION_UNESCAPE_CALLBACK, api_unescape_none, a, MHD_OPTION_CONNECTION_LIMIT,
                                  2 * a->cfg.max_connections + 16,
                                  MHD_OPTION_CONNECTION_TIMEOUT, a->cfg.idle_timeout ? a->cfg.idle_timeout : 30,
                                  MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) 32768,
                                  MHD_OPTION_NOTIFY_CONNECTION, on_connection, a, MHD_OPTION_NOTIFY_COMPLETED,
                                  on_completed, a, MHD_OPTION_END);
        if (!a->mhd) {
                api_stop(a);
                return -EIO;
        }
        r = api_refusals_start(a);
        if (r >= 0)
                r = accept_start(a);
        if (r < 0) {
                api_stop(a);
                return r;
        }
        r = public_start(a);
        if (r >= 0)
                r = metrics_listener_start(a);
        if (r < 0) {
                api_stop(a);
                return r;
        }
        *ret = a;
        return 0;
}

Api *api_stop(Api *a) {
        if (!a)
                return NULL;
        public_stop(a);
        metrics_listener_stop(a);
        accept_stop(a); /* first: nothing is handed to libmicrohttpd after it stops */
        if (a->mhd)
                MHD_stop_daemon(a->mhd);
        accept_done(a);
        api_refusals_stop(a); /* nothing refuses any more: write what was counted */
        if (a->socket_fd >= 0)
                close(a->socket_fd);
        if (a->own_socket && a->cfg.socket_path)
                (void) unlink(a->cfg.socket_path);
        strmap_free(a->per_uid, free);
        strmap_free(a->pending, free);
        strmap_free(a->public_cache, public_cache_free);
        public_routes_free(a->public_routes);
        free(a->public_health);
        strv_free(a->admin_users);
        strv_free(a->admin_groups);
        free(a->route_stats);
        free(a->socket_path);
        free(a->public_listen);
        free(a->metrics_listen);
        free(a->db_path);
        pthread_mutex_destroy(&a->lock);
        free(a);
        return NULL;
}

int api_reload(Api *a, char **admin_users, char **admin_groups) {
        char **u = NULL, **g = NULL;
        if (strv_copy(admin_users, &u) < 0 || strv_copy(admin_groups, &g) < 0) {
                strv_free(u);
                return -ENOMEM;
        }
        pthread_mutex_lock(&a->lock);
        strv_free(a->admin_users);
        strv_free(a->admin_groups);
        a->admin_users = u;
        a->admin_groups = g;
        /* Policies may have changed too (an issuer URL is in the discovery document and chooses its path): build
         * them again. */
        public_forget(a);
        pthread_mutex_unlock(&a->lock);
        return 0;
}
