/* SPDX-License-Identifier: MIT */
/* Routes: method + path → role + handler. The keyring name in a path is checked before any handler sees it. */
#include <stdio.h>

#include "api/api-internal.h"
#include "api/path.h"

typedef struct Route {
        const char *method;
        const char *prefix; /* the path up to the parameter (or the whole path) */
        const char *suffix; /* after the parameter, or NULL for a path without one */
        Role role;
        bool body;          /* a JSON object body is required */
        Handler handler;
} Route;

static const Route routes[] = {
        { "GET", "/v1/keyrings", NULL, ROLE_VERIFY, false, h_keyrings_list },
        { "POST", "/v1/keyrings", NULL, ROLE_ADMIN, true, h_keyring_create },
        { "GET", "/v1/keyrings/", "/jwks", ROLE_VERIFY, false, h_keyring_jwks },
        { "POST", "/v1/keyrings/", "/tokens", ROLE_SIGN, true, h_mint },
        { "POST", "/v1/keyrings/", "/jws", ROLE_SIGN, true, h_jws },
        { "POST", "/v1/keyrings/", "/sign", ROLE_SIGN, true, h_sign },
        { "POST", "/v1/keyrings/", "/rotate", ROLE_ADMIN, false, h_rotate },
        { "POST", "/v1/keyrings/", "/disable", ROLE_ADMIN, false, h_disable },
        { "GET", "/v1/keyrings/", "", ROLE_VERIFY, false, h_keyring_show },
        { "POST", "/v1/keys/", "/revoke", ROLE_ADMIN, true, h_revoke_key },
        { "GET", "/v1/keys/", "", ROLE_VERIFY, false, h_key_show },
        { "POST", "/v1/verify", NULL, ROLE_VERIFY, true, h_verify },
        { "POST", "/v1/tokens/revoke", NULL, ROLE_ADMIN, true, h_revoke_token },
        { "GET", "/v1/audit", NULL, ROLE_ADMIN, false, h_audit_list },
        { "POST", "/v1/audit/verify", NULL, ROLE_ADMIN, false, h_audit_verify },
        { "POST", "/v1/audit/checkpoints", NULL, ROLE_ADMIN, false, h_audit_checkpoint },
        { "POST", "/v1/audit/exports", NULL, ROLE_ADMIN, true, h_audit_export },
        { "POST", "/v1/audit/prune", NULL, ROLE_ADMIN, true, h_audit_prune },
        { "GET", "/v1/audit/keys/", "", ROLE_ADMIN, false, h_audit_key },
        { "GET", "/healthz", NULL, ROLE_VERIFY, false, h_healthz },
        { "GET", "/metrics", NULL, ROLE_VERIFY, false, h_metrics },
};

size_t api_n_routes(void) {
        return ELEMENTSOF(routes);
}

const char *api_route_name(size_t i) {
        static char names[ELEMENTSOF(routes)][64];
        if (!names[i][0])
                snprintf(names[i], sizeof names[i], "%s %s%s%s", routes[i].method, routes[i].prefix,
                         routes[i].suffix ? "{}" : "", routes[i].suffix ?: "");
        return names[i];
}

/* Match url against a route; the parameter (if any) is copied into arg. 1 match, 0 no match. */
static int match(const Route *r, const char *url, char *arg, size_t size) {
        const char *rest = startswith(url, r->prefix);
        if (!rest)
                return 0;
        if (!r->suffix)
                return *rest == 0;
        size_t n = strlen(rest), s = strlen(r->suffix);
        if (n <= s || strcmp(rest + n - s, r->suffix) != 0)
                return 0;
        if (n - s >= size) {
                memset(arg, 'x', size - 1); /* too long to be valid: the handler's name check refuses it */
                arg[size - 1] = 0;
                return 1;
        }
        memcpy(arg, rest, n - s);
        arg[n - s] = 0;
        return 1;
}

/* The route of a decoded path and method: its index (its parameter copied into arg), or -1. *ret_path_known tells
 * whether some route has the path, under another method (405 rather than 404). */
static ssize_t route_find(const char *method, const char *path, char *arg, size_t size, bool *ret_path_known) {
        *ret_path_known = false;
        for (size_t i = 0; i < ELEMENTSOF(routes); i++) {
                if (!match(&routes[i], path, arg, size))
                        continue;
                *ret_path_known = true;
                if (streq(routes[i].method, method))
                        return (ssize_t) i;
        }
        return -1;
}

ssize_t api_route_find(const char *method, const char *url) {
        char arg[256], path[API_HEADER_MAX + 1];
        bool path_known;

        if (api_path_decode(url, strlen(url), path, sizeof path) < 0)
                return -1;
        return route_find(method, path, arg, sizeof arg, &path_known);
}

/* A JSON string of printable ASCII without an escape, at *p: its text (between the quotes) and *p past it. */
static bool plain_string(const char **p, const char *end, const char **ret, size_t *ret_len) {
        const char *s = *p;

        if (s == end || *s != '"')
                return false;
        *ret = ++s;
        for (; s < end && *s != '"'; s++)
                if ((unsigned char) *s < 0x20 || (unsigned char) *s > 0x7e || *s == '\\')
                        return false;
        if (s == end)
                return false;
        *ret_len = (size_t) (s - *ret);
        *p = s + 1;
        return true;
}

static const char *skip_ws(const char *p, const char *end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
                p++;
        return p;
}

/* The usual body, {"name": "value", ...}: at most 8 members, every name and value plain printable ASCII (no escape),
 * no name twice. Built without jansson's lexer, which reads a token's hundreds of characters one at a time; the
 * object is the one json_loadb() would give. NULL for anything else: json_loadb() then parses it (and refuses it
 * with its own message). */
static json_t *plain_object(const char *s, size_t len) {
        struct {
                const char *name, *value;
                size_t name_len, value_len;
        } m[8];
        const char *p = s, *end = s + len;
        size_t n = 0;
        json_t *o;

        p = skip_ws(p, end);
        if (p == end || *p++ != '{')
                return NULL;
        for (;;) {
                if (n == ELEMENTSOF(m))
                        return NULL;
                p = skip_ws(p, end);
                if (!plain_string(&p, end, &m[n].name, &m[n].name_len))
                        return NULL;
                p = skip_ws(p, end);
                if (p == end || *p++ != ':')
                        return NULL;
                p = skip_ws(p, end);
                if (!plain_string(&p, end, &m[n].value, &m[n].value_len))
                        return NULL;
                for (size_t i = 0; i < n; i++)
                        if (m[i].name_len == m[n].name_len && memcmp(m[i].name, m[n].name, m[n].name_len) == 0)
                                return NULL;
                n++;
                p = skip_ws(p, end);
                if (p == end)
                        return NULL;
                if (*p == ',') {
                        p++;
                        continue;
                }
                if (*p++ != '}')
                        return NULL;
                break;
        }
        if (skip_ws(p, end) != end)
                return NULL;
        o = json_object();
        for (size_t i = 0; o && i < n; i++)
                if (json_object_setn_new(o, m[i].name, m[i].name_len, json_stringn(m[i].value, m[i].value_len)) < 0)
                        o = (json_decref(o), NULL);
        return o;
}

/* The body a route takes, parsed into rq->json: false with rp filled when it is not one. */
static bool parse_body(Request *rq, const Route *r, Reply *rp) {
        if (r->body) {
                json_error_t err;
                rq->json = rq->body ? plain_object(rq->body, rq->body_len) : NULL;
                if (!rq->json)
                        rq->json = rq->body ? json_loadb(rq->body, rq->body_len, JSON_REJECT_DUPLICATES, &err) : NULL;
                if (!rq->json) {
                        reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request", "invalid JSON: %s",
                                    rq->body ? err.text : "empty body");
                        return false;
                }
        } else if (rq->body_len > 0 && streq(rq->method, "POST"))
                /* Optional bodies (rotate, disable): parsed when present. */
                rq->json = json_loadb(rq->body, rq->body_len, JSON_REJECT_DUPLICATES, NULL);
        else
                return true;
        if (!json_is_object(rq->json)) {
                reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request", "the body must be a JSON object");
                return false;
        }
        return true;
}

/* The checks every request of route i passes (its parameter, the admin role, its body), then its handler. */
static void route_call(Request *rq, size_t i, const char *arg, Reply *rp) {
        const Route *r = &routes[i];

        if (r->suffix && streq(r->prefix, "/v1/keyrings/") && !keyring_name_valid(arg))
                reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request",
                            "invalid keyring name (1-64 of A-Z a-z 0-9 . _ -, not starting with . or -)");
        else if (r->suffix && streq(r->prefix, "/v1/keys/") && (!*arg || strlen(arg) > STORE_KID_MAX))
                reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request", "invalid kid");
        else if (r->role == ROLE_ADMIN && !authz_admin(rq->api, rq->peer))
                authz_deny(rq, rp, r->suffix ? arg : NULL, api_route_name(i));
        else if (parse_body(rq, r, rp))
                r->handler(rq, r->suffix ? arg : NULL, rp);
}

void api_dispatch(Request *rq, const char *url, Reply *rp) {
        char arg[256], path[API_HEADER_MAX + 1];
        bool path_known;
        ssize_t i;

        rq->route = -1;
        /* The path as sent (libmicrohttpd does not unescape it: see server.c), decoded strictly here. */
        int k = api_path_decode(url, strlen(url), path, sizeof path);
        if (k < 0) {
                reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request",
                            k == -ENOBUFS ? "the path is too long"
                                          : "invalid path (a malformed escape, an escaped NUL or '/', a control "
                                            "byte or invalid UTF-8)");
                return;
        }
        i = route_find(rq->method, path, arg, sizeof arg, &path_known);
        if (i < 0) {
                if (path_known)
                        reply_error(rp, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed", "%s is not allowed here",
                                    rq->method);
                else {
                        reply_error(rp, MHD_HTTP_NOT_FOUND, "not_found", "no such endpoint");
                        api_audit_refused(rq, NULL, NULL, NULL, path, rp, rq->peer->uid);
                }
                return;
        }
        rq->route = i;
        atomic_fetch_add(&rq->api->route_stats[i].requests, 1);
        route_call(rq, (size_t) i, arg, rp);
        if (rp->status >= 400)
                atomic_fetch_add(&rq->api->route_stats[i].errors, 1);
        /* A refusal no handler audited (404, 409, 422...): its own record. The parameter is a kid on .../keys/. */
        const Route *r = &routes[i];
        bool is_kid = r->suffix && (streq(r->prefix, "/v1/keys/") || streq(r->prefix, "/v1/audit/keys/"));
        api_audit_refused(rq, api_route_name((size_t) i), r->suffix && !is_kid ? arg : NULL, is_kid ? arg : NULL,
                          NULL, rp, rq->peer->uid);
}
