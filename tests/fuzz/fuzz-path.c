/* SPDX-License-Identifier: MIT */
/* libFuzzer target for the request path decoder, api_path_decode(), against an independent decoder written here
 * from RFC 3986 (percent-encoding) and RFC 3629 (the UTF-8 byte ranges of its ABNF). Checks: the same verdict and
 * the same bytes; a decoded path is NUL-terminated, holds no NUL, no control byte, no '/' that was not a raw '/'
 * (so decoding never splits or joins segments) and is UTF-8; a buffer one byte too small gives -ENOBUFS, an exact one
 * the same path, none at all -ENOBUFS (or -EINVAL) without a write. The input is the raw path. Also built as a replay program (replay.c) that runs the committed corpus
 * inside "make check". */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/path.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int hexval(uint8_t c) {
        static const char digits[] = "0123456789abcdefABCDEF";
        const char *p = c ? memchr(digits, c, sizeof digits - 1) : NULL;
        if (!p)
                return -1;
        return p - digits < 16 ? (int) (p - digits) : (int) (p - digits) - 6;
}

/* RFC 3629 §4: UTF8-char, byte ranges as in the ABNF. */
static bool utf8_valid(const uint8_t *s, size_t n) {
        for (size_t i = 0; i < n;) {
                uint8_t c = s[i];
                uint8_t lo = 0x80, hi = 0xbf;
                size_t tail;
                if (c <= 0x7f) {
                        i++;
                        continue;
                } else if (c >= 0xc2 && c <= 0xdf)
                        tail = 1;
                else if (c == 0xe0)
                        tail = 2, lo = 0xa0;
                else if ((c >= 0xe1 && c <= 0xec) || c == 0xee || c == 0xef)
                        tail = 2;
                else if (c == 0xed)
                        tail = 2, hi = 0x9f;
                else if (c == 0xf0)
                        tail = 3, lo = 0x90;
                else if (c >= 0xf1 && c <= 0xf3)
                        tail = 3;
                else if (c == 0xf4)
                        tail = 3, hi = 0x8f;
                else
                        return false;
                if (i + tail >= n)
                        return false;
                if (s[i + 1] < lo || s[i + 1] > hi)
                        return false;
                for (size_t k = 2; k <= tail; k++)
                        if (s[i + k] < 0x80 || s[i + k] > 0xbf)
                                return false;
                i += tail + 1;
        }
        return true;
}

/* The expected decoding into out (room for size + 1), or -EINVAL. */
static long reference(const uint8_t *raw, size_t size, uint8_t *out) {
        size_t n = 0;
        for (size_t i = 0; i < size; i++) {
                uint8_t c = raw[i];
                if (c == '%') {
                        if (size - i < 3 || hexval(raw[i + 1]) < 0 || hexval(raw[i + 2]) < 0)
                                return -EINVAL;
                        c = (uint8_t) (hexval(raw[i + 1]) * 16 + hexval(raw[i + 2]));
                        i += 2;
                        if (c == '/')
                                return -EINVAL; /* an escaped '/' */
                }
                if (c < 0x20 || c == 0x7f)
                        return -EINVAL;
                out[n++] = c;
        }
        return utf8_valid(out, n) ? (long) n : -EINVAL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        uint8_t *want = malloc(size + 1);
        char *out = malloc(size + 1), *small;
        size_t raw_slashes = 0, slashes = 0;
        long expected;
        int r;

        if (!want || !out)
                abort();
        expected = reference(data, size, want);
        r = api_path_decode((const char *) data, size, out, size + 1);
        if (r != expected)
                abort();
        if (r >= 0) {
                if (memcmp(out, want, (size_t) r) != 0 || out[r] != 0 || memchr(out, 0, (size_t) r))
                        abort();
                for (size_t i = 0; i < size; i++)
                        raw_slashes += data[i] == '/';
                for (int i = 0; i < r; i++)
                        slashes += out[i] == '/';
                if (slashes != raw_slashes || !utf8_valid((const uint8_t *) out, (size_t) r))
                        abort();
                /* Exactly big enough, and one byte short (in a buffer of that size, so that ASan sees a write past
                 * it). */
                small = malloc((size_t) r + 1);
                if (!small)
                        abort();
                if (api_path_decode((const char *) data, size, small, (size_t) r + 1) != r ||
                    memcmp(small, out, (size_t) r + 1) != 0)
                        abort();
                if (api_path_decode((const char *) data, size, small, (size_t) r) != -ENOBUFS)
                        abort();
                free(small);
        }
        /* No room even for the terminator: refused, and nothing written. */
        small = malloc(0);
        r = api_path_decode((const char *) data, size, small, 0);
        if (r != -ENOBUFS && r != -EINVAL)
                abort();
        free(small);
        free(want);
        free(out);
        return 0;
}
