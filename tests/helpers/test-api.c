/* SPDX-License-Identifier: MIT */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/macro.h"
#include "tests/helpers/test-api.h"

typedef struct Buf {
        char *data;
        size_t len;
} Buf;

static size_t collect(char *ptr, size_t size, size_t n, void *userdata) {
        Buf *b = userdata;
        size_t k = size * n;
        char *nd = realloc(b->data, b->len + k + 1);
        cr_assert_not_null(nd);
        memcpy(nd + b->len, ptr, k);
        b->data = nd;
        b->len += k;
        b->data[b->len] = 0;
        return k;
}

static char *perform(const char *socket, const char *url, const char *method, const char *body, const char *header,
                     long *ret_status, char **ret_headers) {
        CURL *c = curl_easy_init();
        struct curl_slist *h = NULL;
        Buf b = { calloc(1, 1), 0 }, hb = { calloc(1, 1), 0 };
        cr_assert_not_null(c);
        cr_assert(b.data && hb.data);
        curl_easy_setopt(c, CURLOPT_URL, url);
        if (socket)
                curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, socket);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L); /* send "..": the server must refuse it, not curl hide it */
        curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        if (body) {
                curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
                curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long) strlen(body));
        }
        h = curl_slist_append(h, "Content-Type: application/json");
        h = curl_slist_append(h, "Expect:");
        if (header)
                h = curl_slist_append(h, header);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
        curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, collect);
        curl_easy_setopt(c, CURLOPT_HEADERDATA, &hb);
        *ret_status = 0;
        if (curl_easy_perform(c) == CURLE_OK)
                curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, ret_status);
        curl_slist_free_all(h);
        curl_easy_cleanup(c);
        if (ret_headers)
                *ret_headers = hb.data;
        else
                free(hb.data);
        return b.data;
}

char *test_api_raw(const char *socket, const char *method, const char *path, const char *body, const char *header,
                   long *ret_status) {
        char url[4096];
        snprintf(url, sizeof url, "http://keyd%s", path);
        return perform(socket, url, method, body, header, ret_status, NULL);
}

json_t *test_api(const char *socket, const char *method, const char *path, const char *body, long *ret_status) {
        char *text = test_api_raw(socket, method, path, body, NULL, ret_status);
        json_t *j = json_loads(text, 0, NULL);
        free(text);
        return j;
}

char *test_http_get(const char *url, const char *header, long *ret_status, char **ret_headers) {
        return perform(NULL, url, "GET", NULL, header, ret_status, ret_headers);
}

json_t *test_api_expect(const char *socket, const char *method, const char *path, const char *body, long want) {
        long status;
        json_t *j = test_api(socket, method, path, body, &status);
        char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
        cr_assert_eq(status, want, "%s %s %.200s: %ld, want %ld: %s", method, path, body ? body : "", status, want,
                     text ? text : "(not JSON)");
        free(text);
        return j;
}

int test_api_try_connect(const char *socket_path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", socket_path);
        if (fd >= 0 && connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0) {
                int e = errno;
                close(fd);
                errno = e;
                return -1;
        }
        return fd;
}

int test_api_connect(const char *socket_path) {
        int fd = test_api_try_connect(socket_path);
        cr_assert(fd >= 0, "connect %s: %m", socket_path);
        return fd;
}

void test_api_expect_error(const char *socket, const char *method, const char *path, const char *body, long want,
                           const char *code, const char *in_message) {
        json_t *j = test_api_expect(socket, method, path, body, want);
        cr_assert_not_null(j, "%s %s: error replies are JSON", method, path);
        cr_assert_str_eq(json_string_value(json_object_get(j, "error")), code, "%s %s %.200s", method, path,
                         body ? body : "");
        const char *m = json_string_value(json_object_get(j, "message"));
        cr_assert_not_null(m, "%s %s: an error reply without a message", method, path);
        cr_assert(!in_message || strstr(m, in_message), "message '%s' does not say '%s'", m, in_message);
        json_decref(j);
}

char *test_api_created(const char *socket, const char *path, const char *body, const char *member) {
        json_t *j = test_api_expect(socket, "POST", path, body, 201);
        const char *v = json_string_value(json_object_get(j, member));
        cr_assert_not_null(v, "POST %s: no %s in the reply", path, member);
        char *s = strdup(v);
        json_decref(j);
        return s;
}

json_t *test_api_verify(const char *socket, const char *token, const char *extra) {
        char *body;
        cr_assert(asprintf(&body, "{\"token\":\"%s\"%s}", token, extra ? extra : "") >= 0);
        json_t *j = test_api_expect(socket, "POST", "/v1/verify", body, 200);
        free(body);
        return j;
}

void test_api_expect_valid(const char *socket, const char *token, const char *extra) {
        json_t *j = test_api_verify(socket, token, extra);
        cr_assert(json_is_true(json_object_get(j, "valid")), "the token must verify: %s",
                  json_string_value(json_object_get(j, "error")));
        json_decref(j);
}

void test_api_expect_invalid(const char *socket, const char *token, const char *extra, const char *error) {
        json_t *j = test_api_verify(socket, token, extra);
        cr_assert(json_is_false(json_object_get(j, "valid")), "the token must not verify (%s)", error);
        cr_assert_str_eq(json_string_value(json_object_get(j, "error")), error);
        json_decref(j);
}

char *test_api_kid_in_state(const char *socket, const char *ring, const char *state) {
        char path[256];
        json_t *j, *k;
        size_t i;
        char *kid = NULL;

        snprintf(path, sizeof path, "/v1/keyrings/%s", ring);
        j = test_api_expect(socket, "GET", path, NULL, 200);
        json_array_foreach(json_object_get(j, "keys"), i, k) {
                if (!kid && streq_ptr(json_string_value(json_object_get(k, "state")), state))
                        kid = strdup(json_string_value(json_object_get(k, "kid")));
        }
        json_decref(j);
        return kid;
}

char *test_api_active_kid(const char *socket, const char *ring) {
        char *kid = test_api_kid_in_state(socket, ring, "active");
        cr_assert_not_null(kid, "keyring %s has no active key", ring);
        return kid;
}

json_t *test_api_audit_records(const char *socket) {
        json_t *j = test_api_expect(socket, "GET", "/v1/audit?after=0&limit=1000", NULL, 200);
        json_t *r = json_incref(json_object_get(j, "records"));
        json_decref(j);
        cr_assert(json_is_array(r), "GET /v1/audit: no records");
        return r;
}

json_t *test_api_audit_verify(const char *socket) {
        json_t *j = test_api_expect(socket, "POST", "/v1/audit/verify", NULL, 200);
        cr_assert(json_is_true(json_object_get(j, "ok")), "the audit chain does not verify: %s",
                  json_string_value(json_object_get(j, "message")));
        return j;
}
