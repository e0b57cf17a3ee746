/* SPDX-License-Identifier: MIT */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/macro.h"
#include "common/time-util.h"

static usec_t clock_usec(clockid_t id) {
        struct timespec ts;
        (void) clock_gettime(id, &ts);
        return (usec_t) ts.tv_sec * USEC_PER_SEC + ts.tv_nsec / 1000;
}

usec_t now_realtime(void) {
        return clock_usec(CLOCK_REALTIME);
}

usec_t now_monotonic(void) {
        return clock_usec(CLOCK_MONOTONIC);
}

struct timespec monotonic_in_ms(unsigned ms) {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        t.tv_sec += ms / 1000;
        t.tv_nsec += (long) (ms % 1000) * 1000000L;
        if (t.tv_nsec >= 1000000000L) {
                t.tv_sec++;
                t.tv_nsec -= 1000000000L;
        }
        return t;
}

int parse_uint64(const char *s, uint64_t max, uint64_t *ret) {
        uint64_t v = 0;

        if (!s || !*s)
                return -EINVAL;
        for (const char *p = s; *p; p++) {
                if (!isdigit((unsigned char) *p))
                        return -EINVAL;
                unsigned d = (unsigned) (*p - '0');
                if (v > (max - d) / 10)
                        return -ERANGE;
                v = v * 10 + d;
        }
        *ret = v;
        return 0;
}

static const struct {
        char suffix;
        usec_t factor;
} units[] = {
        { 'd', 86400 * USEC_PER_SEC },
        { 'h', 3600 * USEC_PER_SEC },
        { 'm', 60 * USEC_PER_SEC },
        { 's', USEC_PER_SEC },
};

#define DURATION_MAX (3650LL * 86400 * USEC_PER_SEC)

/* What parse_duration() reads, largest first. format_duration() keeps to units[] (no weeks), so that what it wrote
 * before still reads the same and older readers of its output still understand it. */
static const struct {
        char suffix;
        usec_t factor;
} parse_units[] = {
        { 'w', 7 * 86400 * USEC_PER_SEC },
        { 'd', 86400 * USEC_PER_SEC },
        { 'h', 3600 * USEC_PER_SEC },
        { 'm', 60 * USEC_PER_SEC },
        { 's', USEC_PER_SEC },
};

static int duration_fail(const char **ret_error, int r, const char *msg) {
        *ret_error = msg;
        return r;
}

#define DURATION_TOO_LONG "longer than 3650d"

int parse_duration_explain(const char *s, usec_t *ret, const char **ret_error) {
        const char *dummy;
        size_t allowed = 0; /* parse_units[allowed] is the largest unit that may come next */
        usec_t total = 0;

        if (!ret_error)
                ret_error = &dummy;
        if (!s || !*s)
                return duration_fail(ret_error, -EINVAL, "empty: write a duration such as 90s, 1h30m or 2d12h");

        /* A bare number is seconds, as it always was. */
        if (!s[strspn(s, "0123456789")]) {
                uint64_t v;
                if (parse_uint64(s, (uint64_t) (DURATION_MAX / USEC_PER_SEC), &v) < 0)
                        return duration_fail(ret_error, -ERANGE, DURATION_TOO_LONG);
                if (v == 0)
                        return duration_fail(ret_error, -ERANGE, "zero: at least 1s");
                *ret = (usec_t) v * USEC_PER_SEC;
                return 0;
        }

        for (const char *p = s; *p;) {
                size_t n = strspn(p, "0123456789"), i;
                const char *u = p + n;
                char num[24];
                uint64_t v;

                for (i = 0; i < ELEMENTSOF(parse_units) && *u != parse_units[i].suffix; i++)
                        ;
                if (n == 0)
                        return duration_fail(ret_error, -EINVAL,
                                             i < ELEMENTSOF(parse_units)
                                                     ? "a unit without a number before it: write 1h, not h"
                                                     : "only whole numbers and units: no sign, fraction or blank");
                if (!*u)
                        return duration_fail(ret_error, -EINVAL, "the last number has no unit: write 1h30m, not 1h30");
                if (i == ELEMENTSOF(parse_units))
                        return duration_fail(ret_error, -EINVAL,
                                             isalpha((unsigned char) *u)
                                                     ? "unknown unit: w, d, h, m or s, in lower case"
                                                     : "only whole numbers and units: no sign, fraction or blank");
                /* One way to write each duration: "1h1h" or "30m1h" is more likely a slip than meant. */
                if (i < allowed)
                        return duration_fail(ret_error, -EINVAL,
                                             "units go from the largest to the smallest, each once: w, d, h, m, s");
                /* Digits only, at least one: parse_uint64() can only find the number too large. */
                if (n >= sizeof num)
                        return duration_fail(ret_error, -ERANGE, DURATION_TOO_LONG);
                memcpy(num, p, n);
                num[n] = 0;
                if (parse_uint64(num, (uint64_t) (DURATION_MAX / parse_units[i].factor), &v) < 0)
                        return duration_fail(ret_error, -ERANGE, DURATION_TOO_LONG);
                total += (usec_t) v * parse_units[i].factor; /* both ≤ DURATION_MAX: the sum cannot overflow */
                if (total > DURATION_MAX)
                        return duration_fail(ret_error, -ERANGE, DURATION_TOO_LONG);
                allowed = i + 1;
                p = u + 1;
        }
        if (total == 0)
                return duration_fail(ret_error, -ERANGE, "zero: at least 1s");
        *ret = total;
        return 0;
}

int parse_duration(const char *s, usec_t *ret) {
        return parse_duration_explain(s, ret, NULL);
}

char *format_duration(char *buf, size_t size, usec_t d) {
        for (size_t i = 0; i < ELEMENTSOF(units); i++)
                if (d >= units[i].factor && d % units[i].factor == 0) {
                        (void) snprintf(buf, size, "%lld%c", (long long) (d / units[i].factor), units[i].suffix);
                        return buf;
                }
        (void) snprintf(buf, size, "%llds", (long long) (d / USEC_PER_SEC));
        return buf;
}

/* n digits at s into *ret. */
static bool rfc3339_digits(const char *s, int n, int *ret) {
        int v = 0;
        for (int i = 0; i < n; i++) {
                if (!isdigit((unsigned char) s[i]))
                        return false;
                v = v * 10 + (s[i] - '0');
        }
        *ret = v;
        return true;
}

int parse_rfc3339_usec(const char *s, int64_t *ret) {
        int y, mo, d, h, mi, se, oh = 0, om = 0, sign = 0;
        int64_t frac = 0, scale = USEC_PER_SEC;
        struct tm tm = { 0 };
        const char *p;

        if (!s || strlen(s) < 20 || s[4] != '-' || s[7] != '-' || !strchr("Tt ", s[10]) || s[13] != ':' ||
            s[16] != ':' || !rfc3339_digits(s, 4, &y) || !rfc3339_digits(s + 5, 2, &mo) ||
            !rfc3339_digits(s + 8, 2, &d) || !rfc3339_digits(s + 11, 2, &h) || !rfc3339_digits(s + 14, 2, &mi) ||
            !rfc3339_digits(s + 17, 2, &se) || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60)
                return -EINVAL;
        p = s + 19;
        if (*p == '.') {
                if (!isdigit((unsigned char) p[1]))
                        return -EINVAL;
                for (p++; isdigit((unsigned char) *p); p++)
                        if (scale > 1) {
                                scale /= 10;
                                frac += (*p - '0') * scale;
                        }
        }
        if (*p == 'Z' || *p == 'z')
                p++;
        else if (*p == '+' || *p == '-') {
                sign = *p == '+' ? 1 : -1;
                if (strlen(p) != 6 || p[3] != ':' || !rfc3339_digits(p + 1, 2, &oh) ||
                    !rfc3339_digits(p + 4, 2, &om) || oh > 23 || om > 59)
                        return -EINVAL;
                p += 6;
        } else
                return -EINVAL;
        if (*p)
                return -EINVAL;
        tm.tm_year = y - 1900;
        tm.tm_mon = mo - 1;
        tm.tm_mday = d;
        tm.tm_hour = h;
        tm.tm_min = mi;
        tm.tm_sec = se;
        time_t t = timegm(&tm);
        if (t == (time_t) -1 && !(y == 1969 && mo == 12 && d == 31))
                return -EINVAL;
        *ret = ((int64_t) t - sign * (oh * 3600 + om * 60)) * (int64_t) USEC_PER_SEC + frac;
        return 0;
}

char *format_rfc3339(char *buf, size_t size, usec_t t) {
        time_t sec = (time_t) (t / USEC_PER_SEC);
        struct tm tm;

        if (!gmtime_r(&sec, &tm) || strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
                if (size > 0)
                        buf[0] = 0;
        }
        return buf;
}
