/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Times in keyd are microseconds since the epoch (wall clock) unless a name says otherwise. */
typedef int64_t usec_t;

#define USEC_PER_SEC ((usec_t) 1000000)
#define USEC_PER_MSEC ((usec_t) 1000)
#define USEC_INFINITY INT64_MAX

usec_t now_realtime(void);
usec_t now_monotonic(void);
/* CLOCK_MONOTONIC ms milliseconds from now, as the deadline of a timed wait on a condition or lock set to that clock. */
struct timespec monotonic_in_ms(unsigned ms);

/* Parse a duration: a whole number followed by one of s, m, h, d ("90s", "10m", "24h", "7d"), or a bare number of
 * seconds. The result must be between one second and ten years. Returns 0 or -EINVAL / -ERANGE. */
int parse_duration(const char *s, usec_t *ret);
/* Format a duration the way parse_duration() reads it, in the largest unit that divides it ("24h", "90s"). */
char *format_duration(char *buf, size_t size, usec_t d);
/* RFC 3339 UTC with second precision ("2026-11-23T04:16:38Z"); returns buf. */
char *format_rfc3339(char *buf, size_t size, usec_t t);

/* Parse an unsigned decimal integer with range checks: no sign, no leading blanks, nothing after. */
int parse_uint64(const char *s, uint64_t max, uint64_t *ret);
