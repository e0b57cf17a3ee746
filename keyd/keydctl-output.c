/* SPDX-License-Identifier: MIT */
/* keydctl: output for people (tables, times, spans) and for scripts (JSON), and reading input files. */
#include <ctype.h>
#include <fcntl.h>
#include <stdarg.h>
#include <time.h>

#include "common/time-util.h"
#include "keyd/keydctl-internal.h"

struct Table {
        size_t n_columns, n_rows, allocated;
        uint32_t right; /* columns aligned to the right, a bit each */
        char **headers;
        char **cells; /* n_rows * n_columns */
};

char *sanitize(const char *s, char *buf, size_t size) {
        size_t i = 0;

        if (size == 0)
                return buf;
        for (; s && *s && i + 1 < size; s++, i++)
                buf[i] = (unsigned char) *s < 0x20 || *s == 0x7f ? '?' : *s;
        buf[i] = 0;
        return buf;
}

static char *sanitize_dup(const char *s) {
        char *d = strdup(s ?: "-");
        for (char *p = d; p && *p; p++)
                if ((unsigned char) *p < 0x20 || *p == 0x7f)
                        *p = '?';
        return d;
}

/* Characters on a terminal: UTF-8 continuation bytes take no column. */
static size_t text_width(const char *s) {
        size_t w = 0;
        for (; *s; s++)
                w += ((unsigned char) *s & 0xc0) != 0x80;
        return w;
}

Table *table_free(Table *t) {
        if (!t)
                return NULL;
        for (size_t i = 0; i < t->n_columns; i++)
                free(t->headers ? t->headers[i] : NULL);
        for (size_t i = 0; i < t->n_rows * t->n_columns; i++)
                free(t->cells[i]);
        free(t->headers);
        free(t->cells);
        free(t);
        return NULL;
}

Table *table_new(size_t n_columns, const char *const *headers) {
        Table *t = calloc(1, sizeof *t);
        if (!t)
                return NULL;
        t->n_columns = n_columns;
        t->headers = calloc(n_columns, sizeof(char *));
        if (!t->headers)
                return table_free(t);
        for (size_t i = 0; i < n_columns; i++)
                if (!(t->headers[i] = strdup(headers[i])))
                        return table_free(t);
        return t;
}

int table_add_row(Table *t, const char *const *cells) {
        if (t->n_rows == t->allocated) {
                size_t n = t->allocated ? t->allocated * 2 : 16;
                char **c = reallocarray(t->cells, n * t->n_columns, sizeof(char *));
                if (!c)
                        return -ENOMEM;
                t->cells = c;
                t->allocated = n;
        }
        for (size_t i = 0; i < t->n_columns; i++) {
                char *d = sanitize_dup(cells[i]);
                if (!d) {
                        for (size_t j = 0; j < i; j++)
                                free(t->cells[t->n_rows * t->n_columns + j]);
                        return -ENOMEM;
                }
                t->cells[t->n_rows * t->n_columns + i] = d;
        }
        t->n_rows++;
        return 0;
}

size_t table_n_rows(const Table *t) {
        return t->n_rows;
}

void table_align_right(Table *t, size_t column) {
        if (column < MIN(t->n_columns, (size_t) 32))
                t->right |= UINT32_C(1) << column;
}

static void print_row(const Table *t, FILE *f, char *const *cells, const size_t *w) {
        size_t last = 0;

        /* No blanks at the end of a line: stop after the last cell that is not empty. */
        for (size_t i = 0; i < t->n_columns; i++)
                if (*cells[i])
                        last = i;
        for (size_t i = 0; i <= last; i++) {
                int pad = (int) (w[i] - text_width(cells[i]));
                if (t->right & (UINT32_C(1) << i))
                        fprintf(f, "%*s%s", pad, "", cells[i]);
                else if (i < last)
                        fprintf(f, "%s%*s", cells[i], pad, "");
                else
                        fputs(cells[i], f);
                fputs(i < last ? "  " : "\n", f);
        }
}

void table_print(const Table *t, FILE *f, bool skip_header, size_t *widths) {
        size_t local[32] = { 0 }, *w = widths ?: local;

        if (!widths && t->n_columns > ELEMENTSOF(local))
                return;
        for (size_t i = 0; i < t->n_columns; i++) {
                w[i] = MAX(w[i], text_width(t->headers[i]));
                for (size_t r = 0; r < t->n_rows; r++)
                        w[i] = MAX(w[i], text_width(t->cells[r * t->n_columns + i]));
        }
        if (!skip_header)
                print_row(t, f, t->headers, w);
        for (size_t r = 0; r < t->n_rows; r++)
                print_row(t, f, t->cells + r * t->n_columns, w);
}

void table_show(const Table *t, const char *format, ...) {
        va_list ap;

        if (t->n_rows > 0) {
                table_print(t, stdout, false, NULL);
                return;
        }
        va_start(ap, format);
        (void) vprintf(format, ap);
        va_end(ap);
}

static bool printed_json;

void print_json(const json_t *j) {
        (void) json_dumpf(j, stdout, JSON_INDENT(2) | JSON_ENCODE_ANY);
        putchar('\n');
        printed_json = true;
}

bool json_printed(void) {
        return printed_json;
}

const char *json_str(const json_t *o, const char *key) {
        return json_string_value(json_object_get(o, key));
}

const char *json_text(const json_t *v, char *buf, size_t size) {
        char *d;

        if (!v || json_is_null(v))
                return NULL;
        if (json_is_string(v))
                return json_string_value(v);
        if (json_is_integer(v)) {
                (void) snprintf(buf, size, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
                return buf;
        }
        d = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        (void) snprintf(buf, size, "%s", d ?: "?");
        free(d);
        return buf;
}

int parse_rfc3339(const char *s, int64_t *ret) {
        int64_t us;
        int r = parse_rfc3339_usec(s, &us);
        if (r < 0)
                return r;
        /* Whole seconds, rounded down (a fraction before the epoch too). */
        *ret = us >= 0 ? us / (int64_t) USEC_PER_SEC : -((-us + (int64_t) USEC_PER_SEC - 1) / (int64_t) USEC_PER_SEC);
        return 0;
}

char *format_time(char *buf, size_t size, int64_t t) {
        return format_rfc3339(buf, size, (usec_t) t * USEC_PER_SEC);
}

int parse_policy_duration(const json_t *v, int64_t *ret) {
        const uint64_t max = 3650ULL * 86400;
        const char *s = json_string_value(v);
        usec_t d;

        if (json_is_integer(v)) {
                if (json_integer_value(v) < 0 || (uint64_t) json_integer_value(v) > max)
                        return -EINVAL;
                *ret = json_integer_value(v);
                return 0;
        }
        /* keyd writes durations as format_duration() does ("1d", "1h30m"), "0s" for none. */
        if (s && (streq(s, "0") || streq(s, "0s"))) {
                *ret = 0;
                return 0;
        }
        if (!s || parse_duration(s, &d) < 0)
                return -EINVAL;
        *ret = (int64_t) (d / USEC_PER_SEC);
        return 0;
}

char *format_span(char *buf, size_t size, int64_t seconds) {
        static const struct {
                char unit;
                uint64_t factor;
        } units[] = { { 'd', 86400 }, { 'h', 3600 }, { 'm', 60 }, { 's', 1 } };
        uint64_t left = seconds < 0 ? (uint64_t) 0 - (uint64_t) seconds : (uint64_t) seconds;
        const char *sign = seconds < 0 ? "-" : "";
        size_t i = 0;

        if (left == 0) {
                (void) snprintf(buf, size, "0s");
                return buf;
        }
        while (left < units[i].factor)
                i++;
        /* The largest unit, and the next one when it is not zero: "2h13m", "3d", "45s". */
        if (i + 1 < ELEMENTSOF(units) && (left % units[i].factor) / units[i + 1].factor > 0)
                (void) snprintf(buf, size, "%s%llu%c%llu%c", sign, (unsigned long long) (left / units[i].factor),
                                units[i].unit,
                                (unsigned long long) ((left % units[i].factor) / units[i + 1].factor),
                                units[i + 1].unit);
        else
                (void) snprintf(buf, size, "%s%llu%c", sign, (unsigned long long) (left / units[i].factor),
                                units[i].unit);
        return buf;
}

int read_input(const char *path, size_t max, char **ret, size_t *ret_len) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        bool stdin_ = streq(path, "-");
        const char *name = stdin_ ? "standard input" : path;

        fd = stdin_ ? dup(STDIN_FILENO) : open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return ctl_error(negative_errno(), "cannot open %s: %m", name);
        data = malloc(max + 2);
        if (!data)
                return ctl_error(-ENOMEM, "out of memory");
        for (;;) {
                ssize_t n = read(fd, data + len, max + 1 - len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return ctl_error(negative_errno(), "cannot read %s: %m", name);
                if (n == 0)
                        break;
                len += (size_t) n;
                if (len > max)
                        return ctl_error(-EFBIG, "%s is larger than %zu KiB; refused", name, max >> 10);
        }
        data[len] = 0;
        *ret = TAKE_PTR(data);
        *ret_len = len;
        return 0;
}
