/* SPDX-License-Identifier: MIT */
/* The public listener (SPEC §5): JWKS, OIDC discovery, the revocation list and health, nothing that signs or
 * administers. Responses are built once per key change (cached by path, keyed on the ETag and max-age): the 200 with
 * its body and headers and the 304 with its ETag, handed as they are to every request that asks. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/resource.h>
#include <threads.h>
#include <unistd.h>

#include "api/api-internal.h"
#include "api/path.h"
#include "common/crypto-util.h"
#include "common/log.h"
#include "rotation/jwks.h"

typedef struct Cached {
        struct MHD_Response *resp;         /* 200, with the body */
        struct MHD_Response *not_modified; /* 304 for a matching If-None-Match: built with resp, never per request */
        char etag[JWKS_ETAG_MAX];    /* of this document */
        char version[JWKS_ETAG_MAX]; /* the keyring's JWKS ETag it was built from */
        unsigned max_age;
} Cached;

static enum MHD_Result reply_plain(struct MHD_Connection *conn, unsigned status, const char *text);
static void cached_free(void *p);

void public_cache_free(void *p) {
        cached_free(p);
}

static void cached_free(void *p) {
        Cached *c = p;
        if (c) {
                if (c->resp)
                        MHD_destroy_response(c->resp);
                if (c->not_modified)
                        MHD_destroy_response(c->not_modified);
                free(c);
        }
}

/* The default issuer keyring: "default" if it is a published issuer, else the first one by name. */
static Ring *default_ring(Engine *e) {
        Ring *r = engine_get_ring(e, "default");
        if (r && ring_kind(r) == RING_ISSUER && ring_policy(r)->publish)
                return r;
        for (size_t i = 0; i < engine_n_rings(e); i++) {
                r = engine_ring_at(e, i);
                if (ring_kind(r) == RING_ISSUER && ring_policy(r)->publish && !ring_disabled(r))
                        return r;
        }
        return NULL;
}

static struct MHD_Response *make_response(const char *body, size_t len, const char *type, const char *etag,
                                          unsigned max_age) {
        char cc[64];
        struct MHD_Response *resp = MHD_create_response_from_buffer(len, (void *) body, MHD_RESPMEM_MUST_COPY);
        if (!resp)
                return NULL;
        snprintf(cc, sizeof cc, "public, max-age=%u", max_age);
        (void) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
        (void) MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, cc);
        (void) MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, etag);
        (void) MHD_add_response_header(resp, "Access-Control-Allow-Origin", "*");
        return resp;
}

/* The 304 of a document: its ETag and Cache-Control, no body. */
static struct MHD_Response *make_not_modified(const char *etag, unsigned max_age) {
        char cc[64];
        struct MHD_Response *resp = MHD_create_response_from_buffer(0, (void *) "", MHD_RESPMEM_PERSISTENT);
        if (!resp)
                return NULL;
        snprintf(cc, sizeof cc, "public, max-age=%u", max_age);
        (void) MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, etag);
        (void) MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, cc);
        return resp;
}

/* The keyring a public path serves, or NULL. Call under the engine read lock. */
static Ring *path_ring(Engine *e, const char *path) {
        char name[KEYRING_NAME_MAX + 8];
        const char *rest;

        if (streq(path, "/.well-known/jwks.json") || streq(path, "/revocations.json") ||
            streq(path, "/.well-known/openid-configuration"))
                return default_ring(e);
        if ((rest = startswith(path, "/jwks/"))) {
                size_t n = strlen(rest);
                if (n <= 5 || n - 5 >= sizeof name || !streq(rest + n - 5, ".json"))
                        return NULL;
                memcpy(name, rest, n - 5);
                name[n - 5] = 0;
                return keyring_name_valid(name) ? engine_get_ring(e, name) : NULL;
        }
        return NULL;
}

/* Build the document of path from its keyring (under the engine read lock): only when the keyring's keys changed. */
static Cached *build_doc(Ring *r, const char *path, const char *version, unsigned max_age) {
        _cleanup_free_ char *body = NULL;
        const char *type = "application/jwk-set+json";
        char etag[JWKS_ETAG_MAX];
        size_t len = 0;
        Cached *c;

        if (streq(path, "/revocations.json")) {
                const char *rl = ring_revocations(r);
                if (!rl)
                        return NULL;
                body = strdup(rl);
                type = "application/jwt";
        } else if (streq(path, "/.well-known/openid-configuration")) {
                const Policy *p = ring_policy(r);
                _cleanup_json_ json_t *doc = NULL;
                _cleanup_free_ char *jwks_uri = NULL;
                if (!p->issuer || asprintf(&jwks_uri, "%s/.well-known/jwks.json", p->issuer) < 0)
                        return NULL;
                doc = json_pack("{s:s, s:s, s:[s], s:[s], s:[s]}", "issuer", p->issuer, "jwks_uri", jwks_uri,
                                "id_token_signing_alg_values_supported", keyd_alg_to_string(p->alg),
                                "response_types_supported", "id_token", "subject_types_supported", "public");
                body = doc ? json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
                type = "application/json";
        } else {
                const char *jwks = ring_jwks(r, 0, &len, NULL, NULL);
                body = jwks ? strndup(jwks, len) : NULL;
        }
        if (!body)
                return NULL;
        len = strlen(body);
        jwks_etag(body, len, etag);
        c = calloc(1, sizeof *c);
        if (!c)
                return NULL;
        c->resp = make_response(body, len, type, etag, max_age);
        c->not_modified = make_not_modified(etag, max_age);
        if (!c->resp || !c->not_modified) {
                cached_free(c);
                return NULL;
        }
        memcpy(c->etag, etag, sizeof etag);
        memcpy(c->version, version, JWKS_ETAG_MAX);
        c->max_age = max_age;
        return c;
}

/* Answer a public GET: the cached response if the keyring's keys and max-age are unchanged, else a new one; 304
 * for a matching If-None-Match. The response is queued under the cache lock: it cannot be replaced meanwhile. */
static enum MHD_Result serve(Api *a, struct MHD_Connection *conn, const char *path, const char *inm) {
        const char *version = NULL;
        unsigned max_age = 0;
        enum MHD_Result ret;
        Cached *fresh = NULL;

        engine_read_lock(a->engine);
        Ring *r = path_ring(a->engine, path);
        bool published = r && ring_jwks(r, now_realtime(), NULL, &version, &max_age);
        char ver[JWKS_ETAG_MAX] = "";
        if (published)
                memcpy(ver, version, sizeof ver);
        pthread_mutex_lock(&a->lock);
        Cached *c = published ? strmap_get(a->public_cache, path) : NULL;
        if (published && (!c || !streq(c->version, ver) || c->max_age != max_age))
                fresh = build_doc(r, path, ver, max_age);
        engine_read_unlock(a->engine);

        if (fresh) {
                Cached *old = NULL;
                if (strmap_size(a->public_cache) < 4096 &&
                    strmap_put(a->public_cache, path, fresh, (void **) &old) >= 0) {
                        cached_free(old);
                        c = fresh;
                } else {
                        cached_free(fresh);
                        c = NULL;
                }
        }
        if (!c || (published && !streq(c->version, ver))) {
                pthread_mutex_unlock(&a->lock);
                return reply_plain(conn, MHD_HTTP_NOT_FOUND,
                                   "{\"error\":\"not_found\",\"message\":\"no such document\"}\n");
        }
        /* Both answers were built with the document: a request only queues one (under the cache lock, so that it
         * cannot be replaced meanwhile). */
        if (inm && (streq(inm, c->etag) || streq(inm, "*")))
                ret = MHD_queue_response(conn, MHD_HTTP_NOT_MODIFIED, c->not_modified);
        else
                ret = MHD_queue_response(conn, MHD_HTTP_OK, c->resp);
        pthread_mutex_unlock(&a->lock);
        return ret;
}

static enum MHD_Result reply_plain(struct MHD_Connection *conn, unsigned status, const char *text) {
        struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(text), (void *) text,
                                                                    MHD_RESPMEM_PERSISTENT);
        (void) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
        enum MHD_Result ret = MHD_queue_response(conn, status, resp);
        MHD_destroy_response(resp);
        return ret;
}

/* The public listener's threads give way to signing: a flood of JWKS requests from the network must not slow the
 * local socket's mints (on a 2-core host, two busy threads at the same priority take half of its time). Linux keeps
 * a nice value per thread; an unprivileged process may always lower its own priority, and the unit allows just this
 * call (SystemCallFilter=setpriority after ~@resources). Where it fails, the thread runs on at its priority. */
#define PUBLIC_NICE 19

static void give_way(void) {
        static thread_local bool lowered;
        if (lowered)
                return;
        lowered = true;
        if (setpriority(PRIO_PROCESS, (id_t) gettid(), PUBLIC_NICE) < 0)
                log_debug_errno(errno, "public listener: cannot lower the thread's priority: %m");
}

static enum MHD_Result on_public(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                 const char *version, const char *upload_data, size_t *upload_data_size,
                                 void **con_cls) {
        static char headers_seen;
        Api *a = cls;
        char path[1024];
        (void) version, (void) upload_data;

        give_way();

        if (*upload_data_size > 0)
                return MHD_NO; /* nothing here takes a body */
        /* Answer on the second call, once the request is read in full: libmicrohttpd closes the connection after a
         * response queued with the headers (it cannot know that no body follows), and a verifier polling the JWKS
         * would pay a new TCP connection for every request. A request that announces a body is answered at once, and
         * its connection closed, as before: nothing here reads one. */
        if (!*con_cls && !MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH) &&
            !MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING)) {
                *con_cls = &headers_seen;
                return MHD_YES;
        }
        /* Strictly, as on the local API (path.c): "/.well-known/jwks.json%00x" is not the JWKS. */
        if (api_path_decode(url, strlen(url), path, sizeof path) < 0)
                return reply_plain(conn, MHD_HTTP_BAD_REQUEST,
                                   "{\"error\":\"bad_request\",\"message\":\"invalid path\"}\n");
        url = path;
        if (!streq(method, "GET") && !streq(method, "HEAD"))
                return reply_plain(conn, MHD_HTTP_METHOD_NOT_ALLOWED,
                                   "{\"error\":\"method_not_allowed\",\"message\":\"GET only\"}\n");
        if (streq(url, "/healthz"))
                return reply_plain(conn, MHD_HTTP_OK, "{\"status\":\"ok\"}\n");
        return serve(a, conn, url,
                     MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH));
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

int public_start(Api *a) {
        struct sockaddr_storage ss;
        socklen_t len;
        unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL;

        if (a->cfg.public_fd < 0 && !a->cfg.public_listen)
                return 0;
        if (a->cfg.public_fd >= 0)
                a->public = MHD_start_daemon(flags, 0, NULL, NULL, on_public, a, MHD_OPTION_LISTEN_SOCKET,
                                             a->cfg.public_fd, MHD_OPTION_THREAD_POOL_SIZE, 2,
                                             MHD_OPTION_CONNECTION_TIMEOUT, 30U, MHD_OPTION_CONNECTION_LIMIT, 1024U,
                                             MHD_OPTION_PER_IP_CONNECTION_LIMIT, 32U, MHD_OPTION_UNESCAPE_CALLBACK,
                                             api_unescape_none, a, MHD_OPTION_END);
        else {
                if (parse_listen(a->cfg.public_listen, &ss, &len) < 0)
                        return -EINVAL;
                if (ss.ss_family == AF_INET6)
                        flags |= MHD_USE_IPv6;
                a->public = MHD_start_daemon(flags, ntohs(((struct sockaddr_in *) &ss)->sin_port), NULL, NULL,
                                             on_public, a, MHD_OPTION_SOCK_ADDR, &ss, MHD_OPTION_THREAD_POOL_SIZE, 2,
                                             MHD_OPTION_CONNECTION_TIMEOUT, 30U, MHD_OPTION_CONNECTION_LIMIT, 1024U,
                                             MHD_OPTION_PER_IP_CONNECTION_LIMIT, 32U, MHD_OPTION_UNESCAPE_CALLBACK,
                                             api_unescape_none, a, MHD_OPTION_END);
        }
        return a->public ? 0 : -EADDRINUSE;
}

void public_stop(Api *a) {
        if (a->public)
                MHD_stop_daemon(a->public);
        a->public = NULL;
}
