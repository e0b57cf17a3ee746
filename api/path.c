/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

#include "api/path.h"
#include "common/hex.h"
#include "common/utf8.h"

int api_path_decode(const char *raw, size_t len, char *out, size_t size) {
        size_t n = 0;

        if (size == 0)
                return -ENOBUFS;
        for (size_t i = 0; i < len; i++) {
                unsigned char c = (unsigned char) raw[i];
                if (c == '%') {
                        int hi = i + 2 < len ? hex_digit_value(raw[i + 1]) : -1,
                            lo = hi >= 0 ? hex_digit_value(raw[i + 2]) : -1;
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
