/* SPDX-License-Identifier: MIT */
/* The public listener (SPEC §5): for every published issuer keyring its JWKS, its OIDC discovery document and its
 * signed revocation list, and health; nothing that signs or administers. Responses are built once per key change
 * (cached by path, keyed on the keyring's JWKS ETag and max-age): the 200 with its body and headers and the 304 with
 * its ETag, handed as they are to every request that asks. The revocation list was signed when the keyring's view was
 * built (rotation/ring.c): nothing here signs. Which keyring a path serves: docs/API.md, "The public listener". */
#include <stdio.h>

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

/* At most this many documents are kept (only paths of documents that exist are: three per published keyring, and the
 * unprefixed ones); past it, a document is built for its request and not kept. */
#define PUBLIC_CACHE_MAX 4096

/* What a path serves. */
typedef enum PublicDoc {
        DOC_JWKS,        /* /.well-known/jwks.json, /jwks/{keyring}.json */
        DOC_DISCOVERY,   /* {issuer path}/.well-known/openid-configuration */
        DOC_REVOCATIONS, /* /revocations.json, /revocations/{keyring}.json */
} PublicDoc;

#define DISCOVERY_SUFFIX "/.well-known/openid-configuration"

/* The keyrings behind the paths that do not name one: the default keyring (the unprefixed paths) and every
 * discovery path (its keyring's issuer path + DISCOVERY_SUFFIX). Built from the keyrings when a request first needs
 * it, and again when keyrings are added (keyrings are never removed: their number tells), when the default one is
 * disabled, or after a reload (api_reload(): an issuer may have changed). Under Api.lock. */
struct PublicRoutes {
        StrMap *discovery; /* path → keyring name (owned) */
        char default_ring[KEYRING_NAME_MAX + 1]; /* "" when there is none */
        size_t n_rings;                          /* engine_n_rings() when built */
};

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

PublicRoutes *public_routes_free(PublicRoutes *pr) {
        if (pr) {
                strmap_free(pr->discovery, free);
                free(pr);
        }
        return NULL;
}

static bool drop_all(const char *key, void *value, void *userdata) {
        (void) key, (void) value, (void) userdata;
        return true;
}

void public_forget(Api *a) {
        strmap_remove_if(a->public_cache, drop_all, NULL, public_cache_free);
        a->public_routes = public_routes_free(a->public_routes);
}

static bool published_issuer(Ring *r) {
        return ring_kind(r) == RING_ISSUER && ring_policy(r)->publish;
}

/* The default issuer keyring: "default" if it is a published issuer, else the first one by name that is not
 * disabled. */
static Ring *default_ring(Engine *e) {
        Ring *r = engine_get_ring(e, "default");
        if (r && published_issuer(r))
                return r;
        for (size_t i = 0; i < engine_n_rings(e); i++) {
                r = engine_ring_at(e, i);
                if (published_issuer(r) && !ring_disabled(r))
                        return r;
        }
        return NULL;
}

/* An issuer URL as discovery needs it (OpenID Connect Discovery 1.0 §4): "https://host[:port]" and its path without
 * a trailing '/' ("" for none). Anything but an http(s) URL without a query or a fragment has no discovery
 * document. */
static int issuer_split(const char *issuer, char *origin, size_t osize, char *path, size_t psize) {
        const char *rest = startswith(issuer, "https://") ?: startswith(issuer, "http://");
        size_t n, p;

        if (!rest || !*rest || *rest == '/' || strpbrk(issuer, "?#"))
                return -EINVAL;
        n = (size_t) (rest - issuer) + strcspn(rest, "/");
        p = strlen(issuer + n);
        while (p > 0 && issuer[n + p - 1] == '/')
                p--;
        if (n >= osize || p >= psize)
                return -ENOBUFS;
        memcpy(origin, issuer, n);
        origin[n] = 0;
        memcpy(path, issuer + n, p);
        path[p] = 0;
        return 0;
}

/* Map the discovery path of r (if it has one and no keyring before it took it) to r. 0 or -ENOMEM. */
static int route_discovery(PublicRoutes *pr, Ring *r) {
        char origin[POLICY_STRING_MAX + 1], path[POLICY_STRING_MAX + sizeof DISCOVERY_SUFFIX];
        const char *issuer = ring_policy(r)->issuer;
        char *name;

        if (!issuer || issuer_split(issuer, origin, sizeof origin, path, POLICY_STRING_MAX + 1) < 0)
                return 0;
        size_t n = strlen(path);
        (void) snprintf(path + n, sizeof path - n, "%s", DISCOVERY_SUFFIX); /* room made for it above */
        if (strmap_get(pr->discovery, path))
                return 0;
        name = strdup(ring_name(r));
        if (!name || strmap_put(pr->discovery, path, name, NULL) < 0) {
                free(name);
                return -ENOMEM;
        }
        return 0;
}

/* Build the routes from the keyrings (under the engine read lock and Api.lock). The default keyring takes its
 * discovery path first, then the others in name order: two issuers with the same path (on two hosts) go to the
 * default one, else to the first by name. "/.well-known/openid-configuration" is the default keyring's when no issuer
 * has an empty path, as before there were per-keyring documents. The documents built from the old routes go (a
 * discovery document's jwks_uri depends on which keyring is the default). */
static int routes_build(Api *a) {
        Engine *e = a->engine;
        PublicRoutes *pr = calloc(1, sizeof *pr);
        Ring *def = default_ring(e);
        int rc = 0;

        if (!pr || !(pr->discovery = strmap_new())) {
                public_routes_free(pr);
                return -ENOMEM;
        }
        if (def) {
                snprintf(pr->default_ring, sizeof pr->default_ring, "%s", ring_name(def));
                rc = route_discovery(pr, def);
        }
        for (size_t i = 0; rc >= 0 && i < engine_n_rings(e); i++)
                if (published_issuer(engine_ring_at(e, i)))
                        rc = route_discovery(pr, engine_ring_at(e, i));
        if (rc >= 0 && def && !strmap_get(pr->discovery, DISCOVERY_SUFFIX)) {
                char *name = strdup(ring_name(def));
                if (!name || strmap_put(pr->discovery, DISCOVERY_SUFFIX, name, NULL) < 0) {
                        free(name);
                        rc = -ENOMEM;
                }
        }
        if (rc < 0) {
                public_routes_free(pr);
                return rc;
        }
        pr->n_rings = engine_n_rings(e);
        public_routes_free(a->public_routes);
        a->public_routes = pr;
        strmap_remove_if(a->public_cache, drop_all, NULL, public_cache_free);
        return 0;
}

/* Whether the routes still stand: built, no keyring added since, and the default keyring still the one
 * default_ring() would choose. */
static bool routes_current(Api *a) {
        PublicRoutes *pr = a->public_routes;
        Ring *def;

        if (!pr || pr->n_rings != engine_n_rings(a->engine))
                return false;
        if (!pr->default_ring[0])
                return true;
        def = engine_get_ring(a->engine, pr->default_ring);
        return def && published_issuer(def) && (streq(pr->default_ring, "default") || !ring_disabled(def));
}

/* The keyring named by "{prefix}{name}.json", or NULL. */
static Ring *named_ring(Engine *e, const char *path, const char *prefix) {
        char name[KEYRING_NAME_MAX + 1];
        const char *rest = startswith(path, prefix);
        size_t n = rest ? strlen(rest) : 0;

        if (n <= 5 || n - 5 >= sizeof name || !streq(rest + n - 5, ".json"))
                return NULL;
        memcpy(name, rest, n - 5);
        name[n - 5] = 0;
        return keyring_name_valid(name) ? engine_get_ring(e, name) : NULL;
}

/* The keyring a public path serves and what of it, or NULL. *ret_default: it is the default keyring. Call under the
 * engine read lock and Api.lock. */
static Ring *path_ring(Api *a, const char *path, PublicDoc *ret_doc, bool *ret_default) {
        Engine *e = a->engine;
        const char *name = NULL;
        Ring *r = NULL;

        if (!routes_current(a) && routes_build(a) < 0)
                return NULL;
        if (streq(path, "/.well-known/jwks.json") || streq(path, "/revocations.json")) {
                *ret_doc = streq(path, "/revocations.json") ? DOC_REVOCATIONS : DOC_JWKS;
                name = a->public_routes->default_ring;
        } else if ((r = named_ring(e, path, "/jwks/")))
                *ret_doc = DOC_JWKS;
        else if ((r = named_ring(e, path, "/revocations/")))
                *ret_doc = DOC_REVOCATIONS;
        else if (strlen(path) >= strlen(DISCOVERY_SUFFIX) &&
                 streq(path + strlen(path) - strlen(DISCOVERY_SUFFIX), DISCOVERY_SUFFIX)) {
                *ret_doc = DOC_DISCOVERY;
                name = strmap_get(a->public_routes->discovery, path);
        }
        if (name)
                r = name[0] ? engine_get_ring(e, name) : NULL;
        if (r)
                *ret_default = streq(ring_name(r), a->public_routes->default_ring);
        return r;
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

/* The OpenID discovery document of r. Its jwks_uri is on the issuer's origin, where the listener is reached: the
 * unprefixed JWKS for the default keyring when its issuer has no path (as before per-keyring documents), else the
 * keyring's own /jwks/{keyring}.json. */
static char *discovery_doc(Ring *r, bool is_default) {
        char origin[POLICY_STRING_MAX + 1], path[POLICY_STRING_MAX + 1];
        const Policy *p = ring_policy(r);
        _cleanup_json_ json_t *doc = NULL;
        _cleanup_free_ char *jwks_uri = NULL;
        int n;

        if (!p->issuer || issuer_split(p->issuer, origin, sizeof origin, path, sizeof path) < 0)
                return NULL;
        if (is_default && !path[0])
                n = asprintf(&jwks_uri, "%s/.well-known/jwks.json", origin);
        else
                n = asprintf(&jwks_uri, "%s/jwks/%s.json", origin, ring_name(r));
        if (n < 0)
                return NULL;
        doc = json_pack("{s:s, s:s, s:[s], s:[s], s:[s]}", "issuer", p->issuer, "jwks_uri", jwks_uri,
                        "id_token_signing_alg_values_supported", keyd_alg_to_string(p->alg),
                        "response_types_supported", "id_token", "subject_types_supported", "public");
        return doc ? json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
}

/* Build a document of r (under the engine read lock): only when the keyring's keys changed. Nothing here signs: the
 * revocation list was signed when the keyring's view was built. */
static Cached *build_doc(Ring *r, PublicDoc doc, bool is_default, const char *version, unsigned max_age) {
        _cleanup_free_ char *body = NULL;
        const char *type = "application/jwk-set+json";
        char etag[JWKS_ETAG_MAX];
        size_t len = 0;
        Cached *c;

        if (doc == DOC_REVOCATIONS) {
                const char *rl = ring_revocations(r);
                if (!rl)
                        return NULL;
                body = strdup(rl);
                type = "application/jwt";
        } else if (doc == DOC_DISCOVERY) {
                body = discovery_doc(r, is_default);
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
        char ver[JWKS_ETAG_MAX] = "";
        const char *version = NULL;
        bool is_default = false;
        Cached *c = NULL, *fresh = NULL;
        PublicDoc doc = DOC_JWKS;
        unsigned max_age = 0;
        enum MHD_Result ret;

        engine_read_lock(a->engine);
        pthread_mutex_lock(&a->lock);
        Ring *r = path_ring(a, path, &doc, &is_default);
        if (r && ring_jwks(r, now_realtime(), NULL, &version, &max_age)) {
                memcpy(ver, version, sizeof ver);
                c = strmap_get(a->public_cache, path);
                if (!c || !streq(c->version, ver) || c->max_age != max_age) {
                        c = NULL;
                        fresh = build_doc(r, doc, is_default, ver, max_age);
                }
        }
        engine_read_unlock(a->engine);

        if (fresh) {
                Cached *old = NULL;
                c = fresh;
                if ((strmap_size(a->public_cache) < PUBLIC_CACHE_MAX || strmap_get(a->public_cache, path)) &&
                    strmap_put(a->public_cache, path, fresh, (void **) &old) >= 0) {
                        cached_free(old);
                        fresh = NULL; /* kept */
                }
        }
        if (!c) {
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
        cached_free(fresh); /* not kept: the queued response holds its own reference */
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

/* /healthz of the public listener: api_health() for the published keyrings, answered from a copy at most a second
 * old (the network may ask as often as it likes; each answer walks every keyring under the engine's read lock). */
#define PUBLIC_HEALTH_TTL USEC_PER_SEC

static enum MHD_Result reply_health(Api *a, struct MHD_Connection *conn) {
        usec_t now = now_monotonic();
        struct MHD_Response *resp;
        enum MHD_Result ret;
        unsigned status;
        char *text;

        pthread_mutex_lock(&a->lock);
        if (!a->public_health || now - a->public_health_at >= PUBLIC_HEALTH_TTL) {
                json_t *body = NULL;
                pthread_mutex_unlock(&a->lock);
                status = api_health(a, false, NULL, &body);
                text = body ? json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
                json_decref(body);
                if (!text)
                        return reply_plain(conn, MHD_HTTP_INTERNAL_SERVER_ERROR,
                                           "{\"error\":\"internal\",\"message\":\"out of memory\"}\n");
                pthread_mutex_lock(&a->lock);
                free(a->public_health);
                a->public_health = text;
                a->public_health_status = status;
                a->public_health_at = now;
        }
        status = a->public_health_status;
        resp = MHD_create_response_from_buffer(strlen(a->public_health), a->public_health, MHD_RESPMEM_MUST_COPY);
        pthread_mutex_unlock(&a->lock);
        if (!resp)
                return MHD_NO;
        (void) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
        (void) MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
        ret = MHD_queue_response(conn, status, resp);
        MHD_destroy_response(resp);
        return ret;
}

static enum MHD_Result on_public(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                 const char *version, const char *upload_data, size_t *upload_data_size,
                                 void **con_cls) {
        Api *a = cls;
        char path[1024];
        (void) version, (void) upload_data;

        int begin = api_listener_begin(conn, *upload_data_size, con_cls);
        if (begin <= 0)
                return begin < 0 ? MHD_NO : MHD_YES;
        /* Strictly, as on the local API (path.c): "/.well-known/jwks.json%00x" is not the JWKS. */
        if (api_path_decode(url, strlen(url), path, sizeof path) < 0)
                return reply_plain(conn, MHD_HTTP_BAD_REQUEST,
                                   "{\"error\":\"bad_request\",\"message\":\"invalid path\"}\n");
        url = path;
        if (!streq(method, "GET") && !streq(method, "HEAD"))
                return reply_plain(conn, MHD_HTTP_METHOD_NOT_ALLOWED,
                                   "{\"error\":\"method_not_allowed\",\"message\":\"GET only\"}\n");
        if (streq(url, "/healthz"))
                return reply_health(a, conn);
        return serve(a, conn, url,
                     MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH));
}

int public_start(Api *a) {
        if (a->cfg.public_fd < 0 && !a->cfg.public_listen)
                return 0;
        /* One thread (as nginx's one worker): verifiers poll, each answer is a copy of prepared bytes, and a flood
         * from the network gets one processor's worth at most, at nice 19. */
        return api_listener_start(a->cfg.public_fd, a->cfg.public_listen, on_public, a, 1, 1024, 32, &a->public);
}

void public_stop(Api *a) {
        if (a->public)
                MHD_stop_daemon(a->public);
        a->public = NULL;
}
