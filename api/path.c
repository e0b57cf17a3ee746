/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

#include "api/path.h"
#include "common/utf8.h"

static int unhex(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
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
        if (!utf8_valid(out, n))
                return -EINVAL;
        return n > INT32_MAX ? -ENOBUFS : (int) n;
}
