/* SPDX-License-Identifier: MIT */
#pragma once

/* Parse "yes/no/true/false/1/0/on/off" (any case): 1, 0, or -EINVAL. */
int parse_boolean(const char *s);
