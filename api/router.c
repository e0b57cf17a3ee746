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
        { "POST", "/v1/verify", NULL, ROLE_VERIFY, true, h_verify },
        { "POST", "/v1/tokens/revoke", NULL, ROLE_ADMIN, true, h_revoke_token },
        { "GET", "/v1/audit", NULL, ROLE_ADMIN, false, h_audit_list },
        { "POST", "/v1/audit/verify", NULL, ROLE_ADMIN, false, h_audit_verify },
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

void api_dispatch(Request *rq, const char *url, Reply *rp) {
        char arg[256], path[API_HEADER_MAX + 1];
        bool path_known = false;

        /* The path as sent (libmicrohttpd does not unescape it: see server.c), decoded strictly here. */
        int k = api_path_decode(url, strlen(url), path, sizeof path);
        if (k < 0) {
                reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request",
                            k == -ENOBUFS ? "the path is too long"
                                          : "invalid path (a malformed escape, an escaped NUL or '/', a control "
                                            "byte or invalid UTF-8)");
                return;
        }
        url = path;
        for (size_t i = 0; i < ELEMENTSOF(routes); i++) {
                const Route *r = &routes[i];
                if (!match(r, url, arg, sizeof arg))
                        continue;
                path_known = true;
                if (!streq(r->method, rq->method))
                        continue;
                atomic_fetch_add(&rq->api->route_stats[i].requests, 1);

                if (r->suffix && streq(r->prefix, "/v1/keyrings/") && !keyring_name_valid(arg)) {
                        reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request",
                                    "invalid keyring name (1-64 of A-Z a-z 0-9 . _ -, not starting with . or -)");
                } else if (r->suffix && streq(r->prefix, "/v1/keys/") && (!*arg || strlen(arg) > STORE_KID_MAX)) {
                        reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request", "invalid kid");
                } else if (r->role == ROLE_ADMIN && !authz_admin(rq->api, rq->peer)) {
                        authz_deny(rq, rp, r->suffix ? arg : NULL, api_route_name(i));
                } else {
                        if (r->body) {
                                json_error_t err;
                                rq->json = rq->body ? json_loadb(rq->body, rq->body_len, JSON_REJECT_DUPLICATES, &err)
                                                    : NULL;
                                if (!rq->json) {
                                        reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request", "invalid JSON: %s",
                                                    rq->body ? err.text : "empty body");
                                        goto done;
                                }
                                if (!json_is_object(rq->json)) {
                                        reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request",
                                                    "the body must be a JSON object");
                                        goto done;
                                }
                        } else if (rq->body_len > 0 && streq(rq->method, "POST")) {
                                /* Optional bodies (rotate, disable): parsed when present. */
                                rq->json = json_loadb(rq->body, rq->body_len, JSON_REJECT_DUPLICATES, NULL);
                                if (!json_is_object(rq->json)) {
                                        reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request",
                                                    "the body must be a JSON object");
                                        goto done;
                                }
                        }
                        r->handler(rq, r->suffix ? arg : NULL, rp);
                }
        done:
                if (rp->status >= 400)
                        atomic_fetch_add(&rq->api->route_stats[i].errors, 1);
                return;
        }
        if (path_known)
                reply_error(rp, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed", "%s is not allowed here",
                            rq->method);
        else
                reply_error(rp, MHD_HTTP_NOT_FOUND, "not_found", "no such endpoint");
}
