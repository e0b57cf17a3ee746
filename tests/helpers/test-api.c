/* SPDX-License-Identifier: MIT */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <stdio.h>

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
        curl_easy_setopt(c, CURLOPT_URL, url);
        if (socket)
                curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, socket);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L); /* send "..": the server must refuse it, not curl hide it */
        curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
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
