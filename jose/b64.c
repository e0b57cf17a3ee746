/* SPDX-License-Identifier: MIT */
#include <stdint.h>
#include <stdlib.h>

#include "common/macro.h"
#include "jose/b64.h"

static const char b64url_alphabet[64] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* The 6-bit value of a base64url character, or -1 for anything else ('+', '/', '=', white space, NUL, ...). */
static const int8_t b64url_values[256] = {
        -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
        -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
        -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 62, -1, -1,
        52, 53, 54, 55, 56, 57, 58, 59, 60, 61, -1, -1, -1, -1, -1, -1,
        -1,  0,  1,  2,  3,  4,  5,  6,  7,  8,  9, 10, 11, 12, 13, 14,
        15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, -1, -1, -1, -1, 63,
        -1, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,
        41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, -1, -1, -1, -1, -1,
        -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
        -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
        -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
        -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
        -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
        -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
        -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
        -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
};

static inline int b64url_value(unsigned char c) {
        return b64url_values[c];
}

size_t jose_b64url_encode_to(const void *data, size_t n, char *out) {
        const uint8_t *p = data;
        size_t o = 0, i = 0;

        for (; i + 3 <= n; i += 3) {
                uint32_t v = (uint32_t) p[i] << 16 | (uint32_t) p[i + 1] << 8 | p[i + 2];
                out[o++] = b64url_alphabet[v >> 18 & 63];
                out[o++] = b64url_alphabet[v >> 12 & 63];
                out[o++] = b64url_alphabet[v >> 6 & 63];
                out[o++] = b64url_alphabet[v & 63];
        }
        if (n - i == 1) {
                out[o++] = b64url_alphabet[p[i] >> 2];
                out[o++] = b64url_alphabet[(p[i] & 3) << 4];
        } else if (n - i == 2) {
                uint32_t v = (uint32_t) p[i] << 8 | p[i + 1];
                out[o++] = b64url_alphabet[v >> 10 & 63];
                out[o++] = b64url_alphabet[v >> 4 & 63];
                out[o++] = b64url_alphabet[(v & 15) << 2];
        }
        return o;
}

int jose_b64url_encode(const void *data, size_t n, char **ret) {
        size_t len = jose_b64url_encoded_len(n);
        char *s = malloc(len + 1);
        if (!s)
                return -ENOMEM;
        s[jose_b64url_encode_to(data, n, s)] = 0;
        *ret = s;
        return 0;
}

/* Whether s[0..len) is strict base64url: the alphabet only, a length that is not 1 mod 4, and zero unused bits in the
 * last character (so that every value has exactly one encoding). */
static bool b64url_valid(const char *s, size_t len) {
        if (len % 4 == 1)
                return false;
        for (size_t i = 0; i < len; i++)
                if (b64url_value((unsigned char) s[i]) < 0)
                        return false;
        if (len % 4 == 2)
                return (b64url_value((unsigned char) s[len - 1]) & 0x0f) == 0;
        if (len % 4 == 3)
                return (b64url_value((unsigned char) s[len - 1]) & 0x03) == 0;
        return true;
}

/* Decode s[0..len), already checked with b64url_valid(), into out: whole groups of four characters, then the tail. */
static size_t b64url_decode_valid(const char *s, size_t len, uint8_t *o) {
        const unsigned char *p = (const unsigned char *) s;
        size_t n = 0, i = 0;

        for (; i + 4 <= len; i += 4) {
                uint32_t v = (uint32_t) b64url_values[p[i]] << 18 | (uint32_t) b64url_values[p[i + 1]] << 12 |
                             (uint32_t) b64url_values[p[i + 2]] << 6 | (uint32_t) b64url_values[p[i + 3]];
                o[n++] = (uint8_t) (v >> 16);
                o[n++] = (uint8_t) (v >> 8);
                o[n++] = (uint8_t) v;
        }
        if (len - i == 2) {
                uint32_t v = (uint32_t) b64url_values[p[i]] << 6 | (uint32_t) b64url_values[p[i + 1]];
                o[n++] = (uint8_t) (v >> 4);
        } else if (len - i == 3) {
                uint32_t v = (uint32_t) b64url_values[p[i]] << 12 | (uint32_t) b64url_values[p[i + 1]] << 6 |
                             (uint32_t) b64url_values[p[i + 2]];
                o[n++] = (uint8_t) (v >> 10);
                o[n++] = (uint8_t) (v >> 2);
        }
        return n;
}

int jose_b64url_decode_to(const char *s, size_t len, void *out, size_t outsz, size_t *ret_len) {
        size_t n;

        if (!s && len > 0)
                return -EINVAL;
        if (!b64url_valid(s, len))
                return -EINVAL;
        if (jose_b64url_decoded_max(len) > outsz)
                return -ENOBUFS;
        n = b64url_decode_valid(s, len, out);
        if (ret_len)
                *ret_len = n;
        return 0;
}

int jose_b64url_decode(const char *s, size_t len, void **ret, size_t *ret_len) {
        size_t max = jose_b64url_decoded_max(len), n;
        uint8_t *buf;

        if (!s && len > 0)
                return -EINVAL;
        if (!b64url_valid(s, len))
                return -EINVAL;
        buf = malloc(max + 1);
        if (!buf)
                return -ENOMEM;
        n = b64url_decode_valid(s, len, buf);
        buf[n] = 0;
        *ret = buf;
        if (ret_len)
                *ret_len = n;
        return 0;
}
