/* SPDX-License-Identifier: MIT */
/* The Unix socket server: libmicrohttpd, one thread per connection (signing concurrency is bounded by the token's
 * session pool), peer credentials read once per connection, limits on everything a caller controls. */
#include <grp.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "api/api-internal.h"
#include "common/crypto-util.h"
#include "common/log.h"

static void count_uid(Api *a, uid_t uid, int delta, unsigned *ret_count) {
        char key[24];
        snprintf(key, sizeof key, "%u", (unsigned) uid);
        pthread_mutex_lock(&a->lock);
        unsigned *n = strmap_get(a->per_uid, key);
        if (!n && delta > 0 && (n = calloc(1, sizeof *n)) && strmap_put(a->per_uid, key, n, NULL) < 0) {
                free(n);
                n = NULL;
        }
        if (n) {
                *n = (unsigned) ((int) *n + delta);
                if (ret_count)
                        *ret_count = *n;
                if (*n == 0)
                        free(strmap_remove(a->per_uid, key));
        }
        pthread_mutex_unlock(&a->lock);
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code) {
        Api *a = cls;
        Peer *p = *socket_context;

        if (code == MHD_CONNECTION_NOTIFY_STARTED) {
                const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
                p = calloc(1, sizeof *p);
                if (!p || !ci || peer_from_fd(ci->connect_fd, p) < 0) {
                        free(p);
                        *socket_context = NULL; /* every request on it is refused */
                        return;
                }
                unsigned total = atomic_fetch_add(&a->connections, 1) + 1, mine = 0;
                count_uid(a, p->uid, +1, &mine);
                p->over_total = total > a->cfg.max_connections;
                p->over_limit = mine > a->cfg.max_connections_per_uid;
                /* Over a limit: one second to ask (and be told 503 / 429), then the slot is free again, so that
                 * idle connections cannot hold it. */
                if (p->over_total || p->over_limit)
                        (void) MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT, 1U);
                *socket_context = p;
        } else if (code == MHD_CONNECTION_NOTIFY_CLOSED && p) {
                atomic_fetch_sub(&a->connections, 1);
                count_uid(a, p->uid, -1, NULL);
                peer_done(p);
                free(p);
                *socket_context = NULL;
        }
}

static enum MHD_Result add_header_size(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
        size_t *total = cls;
        (void) kind;
        *total += strlen(key) + (value ? strlen(value) : 0) + 4;
        return MHD_YES;
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
        bool close_after = false;
        (void) version;

        if (!rq) {
                const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
                size_t header_bytes = 0;
                const char *cl;

                rq = calloc(1, sizeof *rq);
                if (!rq)
                        return MHD_NO;
                rq->api = a;
                rq->conn = conn;
                rq->method = method;
                rq->peer = ci ? ci->socket_context : NULL;
                (void) MHD_get_connection_values(conn, MHD_HEADER_KIND, add_header_size, &header_bytes);
                rq->headers_too_large = header_bytes + strlen(url) > API_HEADER_MAX;
                cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
                if (cl && (strlen(cl) > 9 || strtoul(cl, NULL, 10) > API_BODY_MAX))
                        rq->body_too_large = true;
                *con_cls = rq;
                return MHD_YES;
        }

        if (*upload_data_size > 0) {
                size_t n = *upload_data_size;
                *upload_data_size = 0;
                if (rq->body_too_large || rq->headers_too_large)
                        return MHD_YES; /* keep reading and dropping: the reply comes at the end */
                if (rq->body_len + n > API_BODY_MAX) {
                        rq->body_too_large = true;
                        free(rq->body);
                        rq->body = NULL;
                        rq->body_len = 0;
                        return MHD_YES;
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

        if (!rq->peer) {
                reply_error(&rp, MHD_HTTP_FORBIDDEN, "forbidden", "the peer's credentials cannot be read");
                close_after = true;
        } else if (rq->peer->over_total) {
                reply_error(&rp, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable", "too many connections to keyd");
                close_after = true;
        } else if (rq->peer->over_limit) {
                reply_error(&rp, MHD_HTTP_TOO_MANY_REQUESTS, "too_many_requests",
                            "too many connections from uid %u", (unsigned) rq->peer->uid);
                close_after = true;
        } else if (rq->headers_too_large) {
                reply_error(&rp, MHD_HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE, "headers_too_large",
                            "request headers exceed %d bytes", API_HEADER_MAX);
                close_after = true;
        } else if (rq->body_too_large) {
                reply_error(&rp, MHD_HTTP_CONTENT_TOO_LARGE, "payload_too_large", "request body exceeds %d bytes",
                            API_BODY_MAX);
                close_after = true;
        } else
                api_dispatch(rq, url, &rp);

        ret = send_reply(conn, &rp, close_after);
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

static int bind_unix(const char *path, int *ret) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_close_ int fd = -EBADF;
        struct group *g;

        if (strlen(path) >= sizeof sa.sun_path)
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, strlen(path) + 1);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return negative_errno();
        (void) unlink(path); /* a stale socket of a previous run */
        if (bind(fd, (struct sockaddr *) &sa, sizeof sa) < 0)
                return negative_errno();
        /* 0660, group keyd when it exists (SPEC §4): who may connect is who may verify. */
        if ((g = getgrnam("keyd")))
                if (chown(path, (uid_t) -1, g->gr_gid) < 0)
                        return negative_errno();
        if (chmod(path, 0660) < 0 || listen(fd, SOMAXCONN) < 0)
                return negative_errno();
        *ret = TAKE_FD(fd);
        return 0;
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
        char buf[512];
        (void) cls;
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
        a->cfg.db_path = a->db_path = cfg->db_path ? strdup(cfg->db_path) : NULL;
        a->engine = engine;
        a->audit = audit;
        a->call = call;
        a->call_userdata = call_userdata;
        a->socket_fd = a->public_fd = -EBADF;
        pthread_mutex_init(&a->lock, NULL);
        a->per_uid = strmap_new();
        a->public_cache = strmap_new();
        a->route_stats = calloc(api_n_routes(), sizeof *a->route_stats);
        if (!a->per_uid || !a->public_cache || !a->route_stats || (cfg->socket_path && !a->socket_path) ||
            (cfg->public_listen && !a->public_listen) || (cfg->db_path && !a->db_path) ||
            api_reload(a, cfg->admin_users, cfg->admin_groups) < 0) {
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
        /* MHD's own limit sits above ours so that the connections over it get a 503 rather than a reset. */
        a->mhd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL |
                                          MHD_USE_ERROR_LOG,
                                  0, NULL, NULL, on_request, a, MHD_OPTION_LISTEN_SOCKET, a->socket_fd,
                                  MHD_OPTION_CONNECTION_LIMIT, a->cfg.max_connections + 16,
                                  MHD_OPTION_CONNECTION_TIMEOUT, a->cfg.idle_timeout ? a->cfg.idle_timeout : 30,
                                  MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) 32768,
                                  MHD_OPTION_NOTIFY_CONNECTION, on_connection, a, MHD_OPTION_NOTIFY_COMPLETED,
                                  on_completed, a, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, a, MHD_OPTION_END);
        if (!a->mhd) {
                api_stop(a);
                return -EIO;
        }
        r = public_start(a);
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
        if (a->mhd)
                MHD_stop_daemon(a->mhd);
        if (a->socket_fd >= 0)
                close(a->socket_fd);
        if (a->own_socket && a->cfg.socket_path)
                (void) unlink(a->cfg.socket_path);
        strmap_free(a->per_uid, free);
        strmap_free(a->public_cache, public_cache_free);
        strv_free(a->admin_users);
        strv_free(a->admin_groups);
        free(a->route_stats);
        free(a->socket_path);
        free(a->public_listen);
        free(a->db_path);
        pthread_mutex_destroy(&a->lock);
        free(a);
        return NULL;
}

static bool remove_all(const char *key, void *value, void *userdata) {
        (void) key, (void) value, (void) userdata;
        return true;
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
        /* Policies may have changed too (an issuer URL is in the discovery document): build them again. */
        strmap_remove_if(a->public_cache, remove_all, NULL, public_cache_free);
        pthread_mutex_unlock(&a->lock);
        return 0;
}
