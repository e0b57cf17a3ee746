/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>

/* base64url without padding (RFC 7515 §2, RFC 4648 §5). Decoding is strict: only [A-Za-z0-9_-], no '=', no
 * white space, a length that is not 1 mod 4, and unused trailing bits that are zero (one encoding per value). */

/* Length of the encoding of n bytes (no NUL). */
static inline size_t jose_b64url_encoded_len(size_t n) {
        return (n / 3) * 4 + (n % 3 == 0 ? 0 : n % 3 + 1);
}
/* Upper bound of the decoding of n characters. */
static inline size_t jose_b64url_decoded_max(size_t n) {
        return (n / 4) * 3 + (n % 4 == 0 ? 0 : n % 4 - 1);
}

/* Encode into out, which has room for jose_b64url_encoded_len(n) bytes; writes no NUL; returns the length. */
size_t jose_b64url_encode_to(const void *data, size_t n, char *out);
/* Encode into a new NUL-terminated string. 0 or -ENOMEM. */
int jose_b64url_encode(const void *data, size_t n, char **ret);
/* Decode len characters of s into out (room for outsz bytes). 0, -EINVAL (not strict base64url), -ENOBUFS. */
int jose_b64url_decode_to(const char *s, size_t len, void *out, size_t outsz, size_t *ret_len);
/* Decode into a new buffer (NUL-terminated for convenience, the NUL not counted). 0, -EINVAL, -ENOMEM. */
int jose_b64url_decode(const char *s, size_t len, void **ret, size_t *ret_len);
