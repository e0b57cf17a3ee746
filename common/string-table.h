/* SPDX-License-Identifier: MIT */
#pragma once

#include <errno.h>
#include <stddef.h>

#include "common/macro.h"

/* Enums whose values have names: a table "static const char *const NAME_table[_MAX] = { [VALUE] = "name", ... }"
 * (entries may be NULL), and NAME_to_string() / NAME_from_string() made from it by the macros below. */

/* The index of s in table[0..n), NULL entries skipped; -EINVAL if s is NULL or not there. */
int string_table_lookup(const char *const *table, size_t n, const char *s);

/* table[i], or NULL if i is out of range. */
static inline const char *string_table_get(const char *const *table, size_t n, int i) {
        return i >= 0 && (size_t) i < n ? table[i] : NULL;
}

#define DECLARE_STRING_TABLE_LOOKUP(name, type)          \
        const char *name##_to_string(type i);            \
        type name##_from_string(const char *s)

#define DEFINE_STRING_TABLE_LOOKUP_TO_STRING(name, type)                            \
        const char *name##_to_string(type i) {                                      \
                return string_table_get(name##_table, ELEMENTSOF(name##_table), i); \
        }

#define DEFINE_STRING_TABLE_LOOKUP_FROM_STRING(name, type)                                  \
        type name##_from_string(const char *s) {                                            \
                return (type) string_table_lookup(name##_table, ELEMENTSOF(name##_table), s); \
        }

/* NAME_to_string(): the name, or NULL for a value out of range. NAME_from_string(): the value, or -EINVAL (the
 * enum's _INVALID). */
#define DEFINE_STRING_TABLE_LOOKUP(name, type)            \
        DEFINE_STRING_TABLE_LOOKUP_TO_STRING(name, type)  \
        DEFINE_STRING_TABLE_LOOKUP_FROM_STRING(name, type)
