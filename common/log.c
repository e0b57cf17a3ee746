/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stdio.h>
#include <systemd/sd-journal.h>

#include "common/log.h"

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

int log_internal(int level, int error, const char *file, int line, const char *func, const char *format, ...) {
        char buf[2048];
        va_list ap;
        int saved = errno;

        if (error < 0)
                error = -error;
        /* Make %m print the error we were given, not whatever errno happens to hold. */
        errno = error;
        va_start(ap, format);
        (void) vsnprintf(buf, sizeof buf, format, ap);
        va_end(ap);

        if (use_journal) {
                char cfile[256], cline[32];
                (void) snprintf(cfile, sizeof cfile, "CODE_FILE=%s", file);
                (void) snprintf(cline, sizeof cline, "CODE_LINE=%d", line);
                (void) sd_journal_send_with_location(cfile, cline, func, "MESSAGE=%s", buf,
                                                     "PRIORITY=%i", level, error ? "ERRNO=%i" : NULL, error,
                                                     NULL);
        } else
                (void) fprintf(stderr, "keyd: %s\n", buf);

        errno = saved;
        return -error;
}
