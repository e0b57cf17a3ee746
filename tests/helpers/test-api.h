/* SPDX-License-Identifier: MIT */
#pragma once

#include <jansson.h>

/* HTTP requests to keyd's Unix socket for tests (libcurl), and what the tests ask of the API again and again. */

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

/* A connection to the socket: the fd, or -1 with errno (no assertion: for a forked child too). */
int test_api_try_connect(const char *socket);
/* The same, asserting that it connects. */
int test_api_connect(const char *socket);

/* An error reply: status want, JSON with "error" code and a "message" (that contains in_message, if given). */
void test_api_expect_error(const char *socket, const char *method, const char *path, const char *body, long want,
                           const char *code, const char *in_message);
/* POST path body, asserting 201: the string member of the reply (a token, a JWS), as a new string. */
char *test_api_created(const char *socket, const char *path, const char *body, const char *member);
/* POST /v1/verify {"token": token EXTRA} (extra: more members, ",\"leeway\":30", or NULL), asserting 200. */
json_t *test_api_verify(const char *socket, const char *token, const char *extra);
/* test_api_verify(), asserting that the token is valid. */
void test_api_expect_valid(const char *socket, const char *token, const char *extra);
/* test_api_verify(), asserting that the token is refused with error. */
void test_api_expect_invalid(const char *socket, const char *token, const char *extra, const char *error);
/* The kid of the keyring's first key in state ("active", "next"...) as a new string, or NULL if it has none. */
char *test_api_kid_in_state(const char *socket, const char *ring, const char *state);
/* The kid of the keyring's active key (asserted), as a new string. */
char *test_api_active_kid(const char *socket, const char *ring);
/* Every audit record (the tests write far fewer than 1000): the array. */
json_t *test_api_audit_records(const char *socket);
/* POST /v1/audit/verify, asserting that the chain verifies: the reply. */
json_t *test_api_audit_verify(const char *socket);
