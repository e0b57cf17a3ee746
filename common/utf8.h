/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* UTF-8 as RFC 3629 has it: no overlong forms, no surrogates, nothing above U+10FFFF. */

/* The length of the valid UTF-8 sequence at s (n bytes available, n > 0), or 0 if there is none. */
size_t utf8_char_len(const unsigned char *s, size_t n);
/* Whether the n bytes at s are UTF-8. */
bool utf8_valid(const char *s, size_t n);
