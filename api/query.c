/* SPDX-License-Identifier: MIT */
/* Query parameters: the endpoints that take some name them, and anything else is refused, like unknown members of a
 * body. libmicrohttpd splits the query at '&' and '=' and leaves it undecoded (api_unescape_none()). */
#include <assert.h>
#include <ctype.h>
#include <stdio.h>
#include <time.h>

#include "api/api-internal.h"
#include "common/hex.h"
#include "common/utf8.h"

#define QUERY_KEYS_MAX 16

typedef struct QueryScan {
        const char *const *allowed;
        unsigned seen[QUERY_KEYS_MAX];
        char error[160];
} QueryScan;

static enum MHD_Result scan(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
        QueryScan *q = cls;
        size_t i;
        (void) kind;

        if (q->error[0])
                return MHD_NO;
        for (i = 0; q->allowed[i]; i++)
                if (streq(q->allowed[i], key))
                        break;
        /* The names are the caller's: quoted only when they are short and printable. */
        bool printable = strlen(key) <= 32;
        for (const char *p = key; printable && *p; p++)
                printable = *p > 0x20 && *p < 0x7f && *p != '\'';
        if (!q->allowed[i]) {
                if (printable)
                        (void) snprintf(q->error, sizeof q->error, "unknown query parameter '%s'", key);
                else
                        (void) snprintf(q->error, sizeof q->error, "unknown query parameter");
        } else if (++q->seen[i] > 1)
                (void) snprintf(q->error, sizeof q->error, "query parameter '%s' given more than once", key);
        else if (!value)
                (void) snprintf(q->error, sizeof q->error, "query parameter '%s' without a value", key);
        return q->error[0] ? MHD_NO : MHD_YES;
}

int api_query_check(Request *rq, const char *const *allowed, Reply *rp) {
        QueryScan q = { .allowed = allowed };
        size_t n = 0;

        while (allowed[n])
                n++;
        assert(n <= QUERY_KEYS_MAX);
        (void) MHD_get_connection_values(rq->conn, MHD_GET_ARGUMENT_KIND, scan, &q);
        if (q.error[0]) {
                reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request", "%s", q.error);
                return -EINVAL;
        }
        return 0;
}

const char *api_query_get(Request *rq, const char *key) {
        return MHD_lookup_connection_value(rq->conn, MHD_GET_ARGUMENT_KIND, key);
}

int api_query_uint(Request *rq, const char *key, uint64_t def, uint64_t max, uint64_t *ret) {
        const char *v = api_query_get(rq, key);
        if (!v) {
                *ret = def;
                return 0;
        }
        return parse_uint64(v, max, ret) < 0 ? -EINVAL : 0;
}

int api_query_text(Request *rq, const char *key, char *buf, size_t size, const char **ret) {
        const char *v = api_query_get(rq, key);
        size_t n = 0;

        *ret = NULL;
        if (!v)
                return 0;
        /* Percent-decoded (a value such as a sub may hold any character), strictly: no control byte, UTF-8 only.
         * Unlike a path, an escaped '/' is a '/'. */
        for (const char *p = v; *p; p++) {
                unsigned char c = (unsigned char) *p;
                if (c == '%') {
                        int hi = hex_digit_value(p[1]), lo = hi >= 0 ? hex_digit_value(p[2]) : -1;
                        if (lo < 0)
                                return -EINVAL;
                        c = (unsigned char) (hi << 4 | lo);
                        p += 2;
                }
                if (c < 0x20 || c == 0x7f || n + 1 >= size)
                        return -EINVAL;
                buf[n++] = (char) c;
        }
        buf[n] = 0;
        if (n == 0 || !utf8_valid(buf, n))
                return -EINVAL;
        *ret = buf;
        return 0;
}


int api_query_time(Request *rq, const char *key, usec_t *ret) {
        char buf[64];
        const char *v;
        uint64_t secs;

        *ret = 0;
        /* Decoded: an offset's '+' comes escaped from a client that escapes it ("%2B01:00"). */
        if (api_query_text(rq, key, buf, sizeof buf, &v) < 0)
                return -EINVAL;
        if (!v)
                return 0;
        /* Seconds since the epoch up to the year 9999, or RFC 3339. */
        if (parse_uint64(v, 253402300799ULL, &secs) >= 0) {
                if (secs == 0)
                        return -EINVAL;
                *ret = (usec_t) secs * USEC_PER_SEC;
                return 0;
        }
        int64_t us;
        if (parse_rfc3339_usec(v, &us) < 0 || us <= 0)
                return -EINVAL;
        *ret = (usec_t) us;
        return 0;
}
