/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>

/* NULL-terminated lists of strings. */

/* Split a list of names separated by spaces or commas into a NULL-terminated list. */
int strv_split(const char *s, char ***ret);
void strv_free(char **l);
/* A deep copy; NULL stays NULL. */
int strv_copy(char *const *src, char ***ret);
bool strv_contains(char *const *l, const char *s);
