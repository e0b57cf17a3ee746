/* SPDX-License-Identifier: MIT */
/* The TCP listeners beside the Unix socket: the public listener (public.c) and the metrics listener here, GET /metrics
 * for Prometheus and nothing else ([metrics] listen, or the socket named "metrics"). Both are started the same way,
 * on a socket systemd passed or on an address literal, and their threads give way to signing. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/resource.h>
#include <threads.h>
#include <unistd.h>

#include "api/api-internal.h"
#include "api/path.h"
#include "common/log.h"

/* A listener's threads give way to signing: a flood of requests from the network must not slow the local socket's
 * mints (on a 2-core host, two busy threads at the same priority take half of its time). Linux keeps a nice value per
 * thread; an unprivileged process may always lower its own priority, and the unit allows just this call
 * (SystemCallFilter=setpriority after ~@resources). Where it fails, the thread runs on at its priority. */
#define LISTENER_NICE 19

void api_thread_give_way(void) {
        static thread_local bool lowered;
        if (lowered)
                return;
        lowered = true;
        if (setpriority(PRIO_PROCESS, (id_t) gettid(), LISTENER_NICE) < 0)
                log_debug_errno(errno, "listener: cannot lower the thread's priority: %m");
}

int api_listener_begin(struct MHD_Connection *conn, size_t upload_data_size, void **con_cls) {
        static char headers_seen;

        api_thread_give_way();
        if (upload_data_size > 0)
                return -1; /* nothing here takes a body */
        /* Answer on the second call, once the request is read in full: libmicrohttpd closes the connection after a
         * response queued with the headers (it cannot know that no body follows), and a verifier polling the JWKS
         * (or a scraper) would pay a new TCP connection for every request. A request that announces a body is
         * answered at once, and its connection closed: nothing here reads one. */
        if (!*con_cls && !MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH) &&
            !MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING)) {
                *con_cls = &headers_seen;
                return 0;
        }
        return 1;
}

static int parse_listen(const char *s, struct sockaddr_storage *ss, socklen_t *len) {
        char host[64];
        const char *colon = strrchr(s, ':');
        uint64_t port;

        if (!colon || (size_t) (colon - s) >= sizeof host || parse_uint64(colon + 1, 65535, &port) < 0 || port == 0)
                return -EINVAL;
        memcpy(host, s, (size_t) (colon - s));
        host[colon - s] = 0;
        memset(ss, 0, sizeof *ss);
        if (host[0] == '[' && host[strlen(host) - 1] == ']') {
                struct sockaddr_in6 *sa6 = (struct sockaddr_in6 *) ss;
                host[strlen(host) - 1] = 0;
                if (inet_pton(AF_INET6, host + 1, &sa6->sin6_addr) != 1)
                        return -EINVAL;
                sa6->sin6_family = AF_INET6;
                sa6->sin6_port = htons((uint16_t) port);
                *len = sizeof *sa6;
        } else {
                struct sockaddr_in *sa4 = (struct sockaddr_in *) ss;
                if (inet_pton(AF_INET, host, &sa4->sin_addr) != 1)
                        return -EINVAL;
                sa4->sin_family = AF_INET;
                sa4->sin_port = htons((uint16_t) port);
                *len = sizeof *sa4;
        }
        return 0;
}

int api_listener_start(int fd, const char *listen, MHD_AccessHandlerCallback cb, Api *a, unsigned threads,
                       unsigned max_connections, unsigned per_ip, struct MHD_Daemon **ret) {
        unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL;
        struct sockaddr_storage ss;
        socklen_t len;

        if (fd >= 0)
                *ret = MHD_start_daemon(flags, 0, NULL, NULL, cb, a, MHD_OPTION_LISTEN_SOCKET, fd,
                                        MHD_OPTION_THREAD_POOL_SIZE, threads, MHD_OPTION_CONNECTION_TIMEOUT, 30U,
                                        MHD_OPTION_CONNECTION_LIMIT, max_connections,
                                        MHD_OPTION_PER_IP_CONNECTION_LIMIT, per_ip, MHD_OPTION_UNESCAPE_CALLBACK,
                                        api_unescape_none, a, MHD_OPTION_END);
        else {
                if (!listen || parse_listen(listen, &ss, &len) < 0)
                        return -EINVAL;
                if (ss.ss_family == AF_INET6)
                        flags |= MHD_USE_IPv6;
                *ret = MHD_start_daemon(flags, ntohs(((struct sockaddr_in *) &ss)->sin_port), NULL, NULL, cb, a,
                                        MHD_OPTION_SOCK_ADDR, &ss, MHD_OPTION_THREAD_POOL_SIZE, threads,
                                        MHD_OPTION_CONNECTION_TIMEOUT, 30U, MHD_OPTION_CONNECTION_LIMIT,
                                        max_connections, MHD_OPTION_PER_IP_CONNECTION_LIMIT, per_ip,
                                        MHD_OPTION_UNESCAPE_CALLBACK, api_unescape_none, a, MHD_OPTION_END);
        }
        return *ret ? 0 : -EADDRINUSE;
}

static enum MHD_Result reply_text(struct MHD_Connection *conn, unsigned status, char *text,
                                  enum MHD_ResponseMemoryMode mode, const char *type) {
        struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(text), text, mode);
        enum MHD_Result ret;

        if (!resp) {
                if (mode == MHD_RESPMEM_MUST_FREE)
                        free(text);
                return MHD_NO;
        }
        (void) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
        (void) MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
        ret = MHD_queue_response(conn, status, resp);
        MHD_destroy_response(resp);
        return ret;
}

#define JSON_TYPE "application/json"

/* The metrics listener: GET /metrics, as on the Unix socket (metrics.c), and nothing else. It is for a Prometheus
 * server on the network: no peer credentials, nothing that reads or changes a keyring. */
static enum MHD_Result on_metrics(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
        Api *a = cls;
        char path[256], *text = NULL;
        (void) version, (void) upload_data;

        int begin = api_listener_begin(conn, *upload_data_size, con_cls);
        if (begin <= 0)
                return begin < 0 ? MHD_NO : MHD_YES;
        if (api_path_decode(url, strlen(url), path, sizeof path) < 0)
                return reply_text(conn, MHD_HTTP_BAD_REQUEST,
                                  (char *) "{\"error\":\"bad_request\",\"message\":\"invalid path\"}\n",
                                  MHD_RESPMEM_PERSISTENT, JSON_TYPE);
        if (!streq(path, "/metrics"))
                return reply_text(conn, MHD_HTTP_NOT_FOUND,
                                  (char *) "{\"error\":\"not_found\",\"message\":\"only /metrics is served here\"}\n",
                                  MHD_RESPMEM_PERSISTENT, JSON_TYPE);
        if (!streq(method, "GET") && !streq(method, "HEAD"))
                return reply_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED,
                                  (char *) "{\"error\":\"method_not_allowed\",\"message\":\"GET only\"}\n",
                                  MHD_RESPMEM_PERSISTENT, JSON_TYPE);
        if (api_metrics_render(a, &text) < 0)
                return reply_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR,
                                  (char *) "{\"error\":\"internal\",\"message\":\"out of memory\"}\n",
                                  MHD_RESPMEM_PERSISTENT, JSON_TYPE);
        return reply_text(conn, MHD_HTTP_OK, text, MHD_RESPMEM_MUST_FREE, API_METRICS_TYPE);
}

int metrics_listener_start(Api *a) {
        /* A passed socket is > 0 (systemd passes them from 3 on): 0 is "none" in a zeroed ApiConfig. */
        int fd = a->cfg.metrics_fd > 0 ? a->cfg.metrics_fd : -EBADF;

        if (fd < 0 && !a->cfg.metrics_listen)
                return 0;
        /* One thread: a scraper asks every few seconds, and a scrape takes a millisecond or so. */
        return api_listener_start(fd, a->cfg.metrics_listen, on_metrics, a, 1, 64, 8, &a->metrics);
}

void metrics_listener_stop(Api *a) {
        if (a->metrics)
                MHD_stop_daemon(a->metrics);
        a->metrics = NULL;
}
