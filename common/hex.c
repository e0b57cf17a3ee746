/* SPDX-License-Identifier: MIT */
#include "common/hex.h"
#include "common/macro.h"

void hex_encode(const uint8_t *data, size_t n, char *out, size_t out_size) {
        static const char digits[] = "0123456789abcdef";
        size_t i;

        if (out_size == 0)
                return;
        for (i = 0; i < n && 2 * i + 2 < out_size; i++) {
                out[2 * i] = digits[data[i] >> 4];
                out[2 * i + 1] = digits[data[i] & 0xf];
        }
        out[2 * i] = 0;
}

int hex_digit_value(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

int hex_decode(const char *hex, uint8_t *out, size_t max, size_t *ret_len) {
        size_t n = hex ? strlen(hex) : 0;

        if (n == 0 || n % 2 || n / 2 > max)
                return -EINVAL;
        for (size_t i = 0; i < n / 2; i++) {
                int hi = hex_digit_value(hex[2 * i]), lo = hex_digit_value(hex[2 * i + 1]);
                if (hi < 0 || lo < 0)
                        return -EINVAL;
                out[i] = (uint8_t) (hi << 4 | lo);
        }
        *ret_len = n / 2;
        return 0;
}
