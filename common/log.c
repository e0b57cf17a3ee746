/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-journal.h>

#include "common/log.h"

/* The longest line written whole (below journald's LineMax, 48 KiB by default, past which it splits a line). */
#define LOG_LINE_MAX (16 * 1024)
#define LOG_CUT_NOTE_MAX 32 /* " (N bytes left out)" */

static int max_level = LOG_INFO;
static int use_journal;

void log_set_max_level(int level) {
        max_level = level;
}

int log_get_max_level(void) {
        return max_level;
}

void log_set_journal(int enable) {
        use_journal = enable;
}

/* Where a line too long for LOG_LINE_MAX is cut: before the first JSON text in it ('{' or '['), so that a line never
 * carries half of a JSON document that a reader would take for a whole one (or fail to parse); a line without one
 * is cut at the limit. The note says how much was left out. */
static void cut_line(char *buf, size_t size, size_t full_len) {
        const char *note_fmt = " (%zu bytes left out)";
        size_t keep = size - 1 - LOG_CUT_NOTE_MAX;
        char *json = strpbrk(buf, "{[");

        if (json && (size_t) (json - buf) < keep)
                keep = (size_t) (json - buf);
        /* Never in the middle of a UTF-8 sequence either. */
        while (keep > 0 && ((unsigned char) buf[keep] & 0xc0) == 0x80)
                keep--;
        (void) snprintf(buf + keep, size - keep, note_fmt, full_len - keep);
}

int log_internal(int level, int error, const char *file, int line, const char *func, const char *format, ...) {
        char stack[2048], *buf = stack, *heap = NULL;
        size_t size = sizeof stack;
        va_list ap, aq;
        int saved = errno, n;

        if (error < 0)
                error = -error;
        /* Make %m print the error we were given, not whatever errno happens to hold. */
        errno = error;
        va_start(ap, format);
        va_copy(aq, ap);
        n = vsnprintf(stack, sizeof stack, format, ap);
        va_end(ap);
        if (n >= (int) sizeof stack) {
                /* A long line (an audit record's detail): up to LOG_LINE_MAX in full, else cut where no JSON is. */
                size_t want = MIN((size_t) n + 1, (size_t) LOG_LINE_MAX + 1);
                heap = malloc(want);
                if (heap) {
                        errno = error;
                        (void) vsnprintf(heap, want, format, aq);
                        buf = heap;
                        size = want;
                }
        }
        va_end(aq);
        if (n >= (int) size)
                cut_line(buf, size, (size_t) n);

        if (use_journal) {
                char cfile[256], cline[32];
                (void) snprintf(cfile, sizeof cfile, "CODE_FILE=%s", file);
                (void) snprintf(cline, sizeof cline, "CODE_LINE=%d", line);
                (void) sd_journal_send_with_location(cfile, cline, func, "MESSAGE=%s", buf,
                                                     "PRIORITY=%i", level, error ? "ERRNO=%i" : NULL, error,
                                                     NULL);
        } else
                (void) fprintf(stderr, "keyd: %s\n", buf);

        free(heap);
        errno = saved;
        return -error;
}
