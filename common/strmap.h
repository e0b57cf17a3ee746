/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* A hash map from strings (copied) to pointers (not owned). Not thread-safe: the caller locks. */
typedef struct StrMap StrMap;

StrMap *strmap_new(void);
/* Frees the map and its keys; free_value (may be NULL) is called on every value. */
StrMap *strmap_free(StrMap *m, void (*free_value)(void *));
/* Insert or replace; the replaced value is returned in *ret_old (may be NULL). 0 or -ENOMEM. */
int strmap_put(StrMap *m, const char *key, void *value, void **ret_old);
void *strmap_get(const StrMap *m, const char *key);
/* Remove and return the value, or NULL. */
void *strmap_remove(StrMap *m, const char *key);
size_t strmap_size(const StrMap *m);
/* Remove every entry for which pred returns true; free_value is called on each removed value. */
size_t strmap_remove_if(StrMap *m, bool (*pred)(const char *key, void *value, void *userdata), void *userdata,
                        void (*free_value)(void *));
