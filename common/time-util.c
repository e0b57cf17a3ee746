/* SPDX-License-Identifier: MIT */
#include <ctype.h>
#include <stdio.h>
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

int parse_duration(const char *s, usec_t *ret) {
        char num[24];
        usec_t factor = USEC_PER_SEC;
        uint64_t v;
        size_t n;
        int r;

        if (!s)
                return -EINVAL;
        n = strlen(s);
        if (n == 0 || n >= sizeof num)
                return -EINVAL;
        memcpy(num, s, n + 1);
        if (!isdigit((unsigned char) num[n - 1])) {
                bool found = false;
                for (size_t i = 0; i < ELEMENTSOF(units); i++)
                        if (num[n - 1] == units[i].suffix) {
                                factor = units[i].factor;
                                found = true;
                        }
                if (!found)
                        return -EINVAL;
                num[--n] = 0;
        }
        r = parse_uint64(num, (uint64_t) (DURATION_MAX / factor), &v);
        if (r < 0)
                return r;
        if (v == 0)
                return -ERANGE;
        *ret = (usec_t) v * factor;
        return 0;
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

char *format_rfc3339(char *buf, size_t size, usec_t t) {
        time_t sec = (time_t) (t / USEC_PER_SEC);
        struct tm tm;

        if (!gmtime_r(&sec, &tm) || strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
                if (size > 0)
                        buf[0] = 0;
        }
        return buf;
}
