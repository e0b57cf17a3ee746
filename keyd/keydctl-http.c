/* SPDX-License-Identifier: MIT */
/* keydctl: the API client. HTTP/1.1 over keyd's Unix socket with libcurl; JSON in and out with jansson. */
#include <curl/curl.h>
#include <stdio.h>
#include <sys/un.h>

#include "keyd/keydctl-internal.h"

typedef struct Buffer {
        char *data;
        size_t len;
        bool too_big;
} Buffer;

static size_t on_data(char *p, size_t size, size_t n, void *userdata) {
        Buffer *b = userdata;
        size_t add = size * n;
        char *d;

        if (add > KEYDCTL_REPLY_MAX - b->len) {
                b->too_big = true;
                return 0; /* curl stops with CURLE_WRITE_ERROR */
        }
        d = realloc(b->data, b->len + add + 1);
        if (!d)
                return 0;
        memcpy(d + b->len, p, add);
        b->len += add;
        d[b->len] = 0;
        b->data = d;
        return add;
}

void ctl_done(Ctl *c) {
        if (c->curl) {
                curl_easy_cleanup(c->curl);
                curl_global_cleanup();
                c->curl = NULL;
        }
}

char *ctl_path(const char *prefix, const char *segment, const char *suffix) {
        char *esc, *p;
        int n;

        /* curl_easy_escape() needs no handle; it percent-encodes everything but [A-Za-z0-9._~-]. */
        esc = curl_easy_escape(NULL, segment, 0);
        if (!esc)
                return NULL;
        n = asprintf(&p, "%s%s%s", prefix, esc, suffix ?: "");
        curl_free(esc);
        return n < 0 ? NULL : p;
}

/* The error a refusal of keyd's is, by its HTTP status (keydctl-internal.h): 403, 404, 409 and 422 have exit statuses
 * of their own, the other 4xx and 503 are refusals (exit 1), anything else means keyd could not do its job (exit 3). */
static int status_error(long status) {
        switch (status) {
        case 403:
                return KEYDCTL_ERR_FORBIDDEN;
        case 404:
                return KEYDCTL_ERR_NOT_FOUND;
        case 409:
                return KEYDCTL_ERR_CONFLICT;
        case 422:
                return KEYDCTL_ERR_UNPROCESSABLE;
        case 503:
                return KEYDCTL_ERR_REFUSED;
        default:
                return status >= 400 && status < 500 ? KEYDCTL_ERR_REFUSED : KEYDCTL_ERR_UNREACHABLE;
        }
}

/* A non-2xx reply: keyd's {"error", "message"} on stderr (and kept for --json). */
static int report_error(Ctl *c, const Buffer *b) {
        _cleanup_json_ json_t *e = b->len > 0 ? json_loadb(b->data, b->len, 0, NULL) : NULL;
        const char *code = json_str(e, "error"), *msg = json_str(e, "message");
        int r = status_error(c->status);
        char text[1024];

        if (msg && code)
                return ctl_fail(r, code, c->status, msg);
        if (msg)
                (void) snprintf(text, sizeof text, "%s (HTTP %ld)", msg, c->status);
        else if (code)
                (void) snprintf(text, sizeof text, "keyd refused the request (HTTP %ld)", c->status);
        else
                (void) snprintf(text, sizeof text, "keyd answered HTTP %ld without an error message", c->status);
        return ctl_fail(r, code, c->status, text);
}

static int report_transport(Ctl *c, CURL *h, CURLcode rc, const Buffer *b, const char *errbuf) {
        long os_errno = 0;

        switch (rc) {
        case CURLE_COULDNT_CONNECT:
                (void) curl_easy_getinfo(h, CURLINFO_OS_ERRNO, &os_errno);
                if (os_errno == EACCES)
                        return ctl_error(KEYDCTL_ERR_UNREACHABLE,
                                         "cannot connect to keyd at %s: %s (may this user use the socket? It is "
                                         "usually group keyd)",
                                         c->socket, strerror((int) os_errno));
                if (os_errno > 0)
                        return ctl_error(KEYDCTL_ERR_UNREACHABLE,
                                         "cannot connect to keyd at %s: %s (is keyd running? --socket or "
                                         "$KEYD_SOCKET name another socket)",
                                         c->socket, strerror((int) os_errno));
                break;
        case CURLE_OPERATION_TIMEDOUT:
                return ctl_error(KEYDCTL_ERR_UNREACHABLE, "keyd at %s did not answer within %u s (--timeout)",
                                 c->socket, c->timeout);
        case CURLE_WRITE_ERROR:
        case CURLE_FILESIZE_EXCEEDED:
                if (b->too_big || rc == CURLE_FILESIZE_EXCEEDED)
                        return ctl_error(KEYDCTL_ERR_UNREACHABLE, "keyd's reply is larger than %zu MiB; refused",
                                         KEYDCTL_REPLY_MAX >> 20);
                return ctl_error(-ENOMEM, "out of memory reading keyd's reply");
        case CURLE_OUT_OF_MEMORY:
                return ctl_error(-ENOMEM, "out of memory");
        default:
                break;
        }
        return ctl_error(KEYDCTL_ERR_UNREACHABLE, "cannot talk to keyd at %s: %s", c->socket,
                         *errbuf ? errbuf : curl_easy_strerror(rc));
}

static CURL *ctl_handle(Ctl *c) {
        if (!c->curl) {
                if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                        return NULL;
                c->curl = curl_easy_init();
                if (!c->curl)
                        curl_global_cleanup();
        } else
                curl_easy_reset(c->curl);
        return c->curl;
}

int ctl_keyring_call(Ctl *c, const char *method, const char *name, const char *suffix, const json_t *body,
                     json_t **ret_reply) {
        _cleanup_free_ char *path = ctl_path("/v1/keyrings/", name, suffix);
        if (!path)
                return OOM();
        return ctl_call(c, method, path, body, ret_reply);
}

int ctl_call_verdict(Ctl *c, const char *path, const json_t *body, const char *key, json_t **ret_reply) {
        const json_t *verdict;
        int r;

        r = ctl_call(c, "POST", path, body, ret_reply);
        if (r < 0)
                return r;
        verdict = json_object_get(*ret_reply, key);
        if (!json_is_boolean(verdict))
                return ctl_error(KEYDCTL_ERR_UNREACHABLE, "keyd's reply has no \"%s\"", key);
        return json_is_true(verdict);
}

int ctl_call(Ctl *c, const char *method, const char *path, const json_t *body, json_t **ret_reply) {
        return ctl_call_quiet(c, method, path, body, NULL, ret_reply);
}

static bool is_quiet(const long *quiet, long status) {
        for (; quiet && *quiet; quiet++)
                if (*quiet == status)
                        return true;
        return false;
}

int ctl_call_quiet(Ctl *c, const char *method, const char *path, const json_t *body, const long *quiet,
                   json_t **ret_reply) {
        _cleanup_free_ char *url = NULL, *text = NULL;
        char errbuf[CURL_ERROR_SIZE] = "";
        struct curl_slist *headers = NULL;
        Buffer b = { 0 };
        json_error_t jerr;
        json_t *reply;
        CURLcode rc;
        CURL *h;
        int r;

        c->status = 0;
        if (strlen(c->socket) >= sizeof(((struct sockaddr_un *) NULL)->sun_path))
                return ctl_error(KEYDCTL_ERR_USAGE, "socket path %s is too long (at most %zu bytes)", c->socket,
                                 sizeof(((struct sockaddr_un *) NULL)->sun_path) - 1);
        h = ctl_handle(c);
        if (!h)
                return ctl_error(-ENOMEM, "cannot initialise libcurl");
        if (asprintf(&url, "http://localhost%s", path) < 0)
                return ctl_error(-ENOMEM, "out of memory");
        if (body || streq(method, "POST")) {
                text = body ? json_dumps(body, JSON_COMPACT) : strdup("{}");
                if (!text)
                        return ctl_error(-ENOMEM, "out of memory");
        }

        /* "Expect:" off: no 100-continue round trip for bodies over 1 KiB. */
        headers = curl_slist_append(headers, "Accept: application/json");
        if (headers && text)
                headers = curl_slist_append(headers, "Content-Type: application/json");
        if (headers && text)
                headers = curl_slist_append(headers, "Expect:");
        if (!headers)
                return ctl_error(-ENOMEM, "out of memory");

        (void) curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, c->socket);
        (void) curl_easy_setopt(h, CURLOPT_URL, url);
        (void) curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http");
        (void) curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        (void) curl_easy_setopt(h, CURLOPT_TIMEOUT, (long) c->timeout);
        (void) curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) KEYDCTL_REPLY_MAX);
        (void) curl_easy_setopt(h, CURLOPT_USERAGENT, "keydctl/" KEYD_VERSION);
        (void) curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
        (void) curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
        (void) curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
        (void) curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
        if (text) {
                (void) curl_easy_setopt(h, CURLOPT_POSTFIELDS, text);
                (void) curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) strlen(text));
        }
        if (!streq(method, text ? "POST" : "GET"))
                (void) curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);

        rc = curl_easy_perform(h);
        if (rc != CURLE_OK) {
                r = report_transport(c, h, rc, &b, errbuf);
                goto finish;
        }
        (void) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &c->status);
        if (is_quiet(quiet, c->status)) {
                /* The caller reads the error body itself: keyd's own words, or an empty object. */
                reply = b.len > 0 ? json_loadb(b.data, b.len, 0, NULL) : NULL;
                *ret_reply = json_is_object(reply) ? reply : json_object();
                if (*ret_reply != reply)
                        json_decref(reply);
                r = *ret_reply ? (int) c->status : ctl_error(-ENOMEM, "out of memory");
                goto finish;
        }
        if (c->status < 200 || c->status > 299) {
                r = report_error(c, &b);
                goto finish;
        }
        reply = json_loadb(b.data ?: "", b.len, JSON_REJECT_DUPLICATES, &jerr);
        if (!reply) {
                r = ctl_error(KEYDCTL_ERR_UNREACHABLE, "keyd's reply to %s %s is not JSON: %s (line %d, column %d)",
                              method, path, jerr.text, jerr.line, jerr.column);
                goto finish;
        }
        *ret_reply = reply;
        r = 0;
finish:
        /* Nothing of this call's stack may stay referenced by the handle. */
        (void) curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
        (void) curl_easy_setopt(h, CURLOPT_WRITEDATA, NULL);
        (void) curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
        (void) curl_easy_setopt(h, CURLOPT_POSTFIELDS, NULL);
        curl_slist_free_all(headers);
        free(b.data);
        return r;
}
