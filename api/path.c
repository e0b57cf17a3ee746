/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

#include "api/path.h"

static int unhex(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

/* Length of the UTF-8 sequence at s (n bytes available), or 0 if it is not one (RFC 3629). */
static size_t utf8_len(const unsigned char *s, size_t n) {
        uint32_t cp;
        size_t k;

        if (s[0] < 0x80)
                return 1;
        if (s[0] >= 0xc2 && s[0] <= 0xdf)
                k = 2, cp = s[0] & 0x1f;
        else if (s[0] >= 0xe0 && s[0] <= 0xef)
                k = 3, cp = s[0] & 0x0f;
        else if (s[0] >= 0xf0 && s[0] <= 0xf4)
                k = 4, cp = s[0] & 0x07;
        else
                return 0; /* a continuation byte, 0xc0/0xc1 (overlong), 0xf5-0xff */
        if (k > n)
                return 0;
        for (size_t i = 1; i < k; i++) {
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
                cp = cp << 6 | (s[i] & 0x3f);
        }
        if ((k == 3 && cp < 0x800) || (k == 4 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff))
                return 0;
        return k;
}

int api_path_decode(const char *raw, size_t len, char *out, size_t size) {
        size_t n = 0;

        if (size == 0)
                return -ENOBUFS;
        for (size_t i = 0; i < len; i++) {
                unsigned char c = (unsigned char) raw[i];
                if (c == '%') {
                        int hi = i + 2 < len ? unhex(raw[i + 1]) : -1, lo = hi >= 0 ? unhex(raw[i + 2]) : -1;
                        if (lo < 0)
                                return -EINVAL;
                        c = (unsigned char) (hi << 4 | lo);
                        if (c == '/')
                                return -EINVAL;
                        i += 2;
                }
                if (c < 0x20 || c == 0x7f)
                        return -EINVAL;
                if (n + 1 >= size)
                        return -ENOBUFS;
                out[n++] = (char) c;
        }
        out[n] = 0;
        /* The decoded bytes must be UTF-8. */
        for (size_t i = 0; i < n;) {
                size_t k = utf8_len((const unsigned char *) out + i, n - i);
                if (k == 0)
                        return -EINVAL;
                i += k;
        }
        return n > INT32_MAX ? -ENOBUFS : (int) n;
}
