/* SPDX-License-Identifier: MIT */
#pragma once

#include <jansson.h>

/* HTTP requests to keyd's Unix socket for tests (libcurl). */

/* method, path, body (NULL for none) → the parsed JSON reply (NULL if the body is not JSON); *ret_status is the
 * HTTP status (0 if the request failed at the connection). */
json_t *test_api(const char *socket, const char *method, const char *path, const char *body, long *ret_status);
/* test_api() that asserts the status is want (naming the request and the reply when it is not). */
json_t *test_api_expect(const char *socket, const char *method, const char *path, const char *body, long want);
/* The same with a raw text reply and optional extra header ("Name: value"). */
char *test_api_raw(const char *socket, const char *method, const char *path, const char *body, const char *header,
                   long *ret_status);
/* GET over TCP (the public listener): reply body; response headers appended to *ret_headers if given. */
char *test_http_get(const char *url, const char *header, long *ret_status, char **ret_headers);
