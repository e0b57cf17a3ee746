/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>

#include "common/time-util.h"

/* When each keyring is next due: a binary min-heap of items by due time, O(log n) per change. An item is embedded in
 * what it schedules (a Ring); the schedule holds pointers to items, never owns them. Not thread-safe: the engine
 * writes items' due times under its write lock (other threads read them under the read lock). */
typedef struct ScheduleItem {
        usec_t due;
        size_t idx; /* position in the heap */
} ScheduleItem;

typedef struct Schedule {
        ScheduleItem **heap;
        size_t n, cap;
} Schedule;

void schedule_done(Schedule *s);
/* Add an item with its due time set. 0 or -ENOMEM. */
int schedule_add(Schedule *s, ScheduleItem *it);
/* Change an item's due time. */
void schedule_set(Schedule *s, ScheduleItem *it, usec_t due);
/* The item due first, or NULL. */
ScheduleItem *schedule_first(const Schedule *s);
/* When the first item is due (USEC_INFINITY: none). */
usec_t schedule_next_due(const Schedule *s);
