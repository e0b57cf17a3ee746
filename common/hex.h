/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* Lowercase hex of n bytes into out (room for 2n+1); cut short, still terminated, if out_size is smaller. */
void hex_encode(const uint8_t *data, size_t n, char *out, size_t out_size);
/* The value of one hex digit (either case), or -1. */
int hex_digit_value(char c);
/* Bytes of a hex string of even, non-zero length (either case) into out (room for max bytes): 0 and *ret_len, or
 * -EINVAL (odd, empty, not hex, longer than max bytes). */
int hex_decode(const char *hex, uint8_t *out, size_t max, size_t *ret_len);
