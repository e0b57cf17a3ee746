/* SPDX-License-Identifier: MIT */
/* Query parameters: the endpoints that take some name them, and anything else is refused, like unknown members of a
 * body. libmicrohttpd splits the query at '&' and '=' and leaves it undecoded (api_unescape_none()). */
#include <assert.h>
#include <stdio.h>

#include "api/api-internal.h"

#define QUERY_KEYS_MAX 8

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
