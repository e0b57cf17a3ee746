/* SPDX-License-Identifier: MIT */
#pragma once

#include <syslog.h>

#include "common/macro.h"

/* Logging. Library layers (pkcs11, store, jose, rotation) log at debug level at most and return errors;
 * keyd/ and api/ log once, with context. The log_*_errno() forms return the (negative) error they were given,
 * so "return log_error_errno(r, "...: %m");" logs and propagates in one step; %m prints that error. */

void log_set_max_level(int level);
int log_get_max_level(void);
/* Send records to the journal (with structured fields) instead of stderr. */
void log_set_journal(int enable);

int log_internal(int level, int error, const char *file, int line, const char *func, const char *format, ...)
        _printf_(6, 7);

#define log_full_errno(level, error, ...)                                                         \
        ({                                                                                        \
                int _l_ = (level), _e_ = (error);                                                 \
                _l_ <= log_get_max_level() ? log_internal(_l_, _e_, __FILE__, __LINE__, __func__, \
                                                          __VA_ARGS__)                            \
                                           : -(_e_ < 0 ? -_e_ : _e_);                             \
        })

#define log_debug(...) log_full_errno(LOG_DEBUG, 0, __VA_ARGS__)
#define log_info(...) log_full_errno(LOG_INFO, 0, __VA_ARGS__)
#define log_notice(...) log_full_errno(LOG_NOTICE, 0, __VA_ARGS__)
#define log_warning(...) log_full_errno(LOG_WARNING, 0, __VA_ARGS__)
#define log_error(...) log_full_errno(LOG_ERR, 0, __VA_ARGS__)

#define log_debug_errno(e, ...) log_full_errno(LOG_DEBUG, e, __VA_ARGS__)
#define log_info_errno(e, ...) log_full_errno(LOG_INFO, e, __VA_ARGS__)
#define log_warning_errno(e, ...) log_full_errno(LOG_WARNING, e, __VA_ARGS__)
#define log_error_errno(e, ...) log_full_errno(LOG_ERR, e, __VA_ARGS__)
#define log_oom() log_error_errno(-ENOMEM, "Out of memory.")
