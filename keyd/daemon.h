/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>

/* The daemon: one sd-event loop that owns the token, the store and the rotation engine. */

typedef struct DaemonOptions {
        const char *config_path; /* re-read on SIGHUP */
        bool dev;                /* dev mode (SPEC §9) */
} DaemonOptions;

/* Run until SIGTERM or SIGINT. Returns 0 on a clean stop, negative errno if start-up failed. */
int daemon_run(const DaemonOptions *o);
