/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>

/* Decode the path of a request (RFC 3986 percent-encoding), strictly: a request whose path is refused is answered
 * 400, never served as some other path. Refused: a malformed escape ("%", "%4", "%zz"), an escaped NUL, an escaped
 * '/' (it would split or join segments), a control byte (0x00-0x1f, 0x7f; raw or escaped), and bytes that are not
 * UTF-8 (overlong forms, surrogates and code points past U+10FFFF included).
 *
 * raw is len bytes (no terminator needed); the decoded path and a NUL go to out (size bytes). Returns the decoded
 * length, -EINVAL for a refused path, -ENOBUFS if out is too small. A pure function: no allocation, no global state. */
int api_path_decode(const char *raw, size_t len, char *out, size_t size);
