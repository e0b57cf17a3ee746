/* SPDX-License-Identifier: MIT */
#include <stdint.h>
#include <stdlib.h>

#include "common/macro.h"
#include "jose/b64.h"

static const char b64url_alphabet[64] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* The 6-bit value of a base64url character, or -1 for anything else ('+', '/', '=', white space, NUL, ...). */
static int b64url_value(unsigned char c) {
        if (c >= 'A' && c <= 'Z')
                return c - 'A';
        if (c >= 'a' && c <= 'z')
                return c - 'a' + 26;
        if (c >= '0' && c <= '9')
                return c - '0' + 52;
        if (c == '-')
                return 62;
        if (c == '_')
                return 63;
        return -1;
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

int jose_b64url_decode_to(const char *s, size_t len, void *out, size_t outsz, size_t *ret_len) {
        uint8_t *o = out;
        size_t n = 0;
        uint32_t acc = 0;
        unsigned bits = 0;

        if (!s && len > 0)
                return -EINVAL;
        if (!b64url_valid(s, len))
                return -EINVAL;
        if (jose_b64url_decoded_max(len) > outsz)
                return -ENOBUFS;

        for (size_t i = 0; i < len; i++) {
                acc = acc << 6 | (uint32_t) b64url_value((unsigned char) s[i]);
                bits += 6;
                if (bits >= 8) {
                        bits -= 8;
                        o[n++] = (uint8_t) (acc >> bits);
                        acc &= (1u << bits) - 1;
                }
        }
        if (ret_len)
                *ret_len = n;
        return 0;
}

int jose_b64url_decode(const char *s, size_t len, void **ret, size_t *ret_len) {
        size_t max = jose_b64url_decoded_max(len), n;
        uint8_t *buf;
        int r;

        if (!s && len > 0)
                return -EINVAL;
        if (!b64url_valid(s, len))
                return -EINVAL;
        buf = malloc(max + 1);
        if (!buf)
                return -ENOMEM;
        r = jose_b64url_decode_to(s, len, buf, max, &n);
        if (r < 0) {
                free(buf);
                return r;
        }
        buf[n] = 0;
        *ret = buf;
        if (ret_len)
                *ret_len = n;
        return 0;
}
