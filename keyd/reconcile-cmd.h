/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>

/* keyd reconcile --dry-run [--json]: print what reconcile would do; change nothing. 0, or negative errno (logged). */
int reconcile_dry_run(const char *config_path, bool json);
