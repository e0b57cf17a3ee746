/* SPDX-License-Identifier: MIT */
#include "common/utf8.h"

size_t utf8_char_len(const unsigned char *s, size_t n) {
        size_t len;
        unsigned lo = 0x80, hi = 0xBF;

        if (s[0] < 0x80)
                return 1;
        if (s[0] >= 0xC2 && s[0] <= 0xDF)
                len = 2;
        else if (s[0] >= 0xE0 && s[0] <= 0xEF) {
                len = 3;
                lo = s[0] == 0xE0 ? 0xA0 : 0x80; /* not overlong */
                hi = s[0] == 0xED ? 0x9F : 0xBF; /* not a surrogate */
        } else if (s[0] >= 0xF0 && s[0] <= 0xF4) {
                len = 4;
                lo = s[0] == 0xF0 ? 0x90 : 0x80; /* not overlong */
                hi = s[0] == 0xF4 ? 0x8F : 0xBF; /* not above U+10FFFF */
        } else
                return 0; /* a continuation byte, 0xC0/0xC1 (overlong), 0xF5-0xFF */
        if (n < len || s[1] < lo || s[1] > hi)
                return 0;
        for (size_t i = 2; i < len; i++)
                if (s[i] < 0x80 || s[i] > 0xBF)
                        return 0;
        return len;
}

bool utf8_valid(const char *s, size_t n) {
        const unsigned char *u = (const unsigned char *) s;
        for (size_t i = 0, k; i < n; i += k)
                if ((k = utf8_char_len(u + i, n - i)) == 0)
                        return false;
        return true;
}
