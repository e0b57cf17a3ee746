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

/* Parse a duration: whole numbers each followed by a unit, w (7 days), d, h, m or s, from the largest unit to the
 * smallest and each unit at most once ("90s", "1h30m", "2d12h", "1w"), or a bare number of seconds ("300"). The total
 * must be between one second and ten years (3650d). Returns 0, -EINVAL (not a duration) or -ERANGE (zero, or longer
 * than ten years); *ret is written only on success. */
int parse_duration(const char *s, usec_t *ret);
/* parse_duration(), and on failure *ret_error (if not NULL) points at a static message that says what is wrong and
 * how to write it, for a person ("the last number has no unit: write 1h30m, not 1h30"), without parentheses so that
 * it fits inside a message's own. */
int parse_duration_explain(const char *s, usec_t *ret, const char **ret_error);
/* Format a duration the way parse_duration() reads it, in the largest unit that divides it ("24h", "90s"). */
char *format_duration(char *buf, size_t size, usec_t d);
/* RFC 3339 UTC with second precision ("2026-11-23T04:16:38Z"); returns buf. */
char *format_rfc3339(char *buf, size_t size, usec_t t);
/* RFC 3339 ("2026-11-23T04:16:38Z"; 'T', 't' or a blank between date and time, a fraction of a second and an
 * offset "+01:00" allowed) to µs since the epoch (negative before it). 0 or -EINVAL. */
int parse_rfc3339_usec(const char *s, int64_t *ret);

/* Parse an unsigned decimal integer with range checks: no sign, no leading blanks, nothing after. */
int parse_uint64(const char *s, uint64_t max, uint64_t *ret);
