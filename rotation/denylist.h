/* SPDX-License-Identifier: MIT */
#pragma once

#include "common/time-util.h"

/* The jtis of denied tokens until their exp, in memory, behind a lock of its own: verification asks it without the
 * engine's lock. The engine writes it (after the denial is committed to the store); any thread reads it. */
typedef struct Denylist Denylist;

Denylist *denylist_new(void);
Denylist *denylist_free(Denylist *d);
/* Deny jti until exp (a later exp of the same jti replaces an earlier one). 0 or -ENOMEM. */
int denylist_add(Denylist *d, const char *jti, usec_t exp);
/* Whether jti is denied at now: 1 or 0. */
int denylist_contains(Denylist *d, const char *jti, usec_t now);
/* Forget denials whose exp has passed at now; returns how many. */
size_t denylist_prune(Denylist *d, usec_t now);
size_t denylist_size(Denylist *d);
