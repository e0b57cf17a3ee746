/* SPDX-License-Identifier: MIT */
#include "common/macro.h"
#include "rotation/schedule.h"

static void swap(Schedule *s, size_t i, size_t j) {
        ScheduleItem *t = s->heap[i];
        s->heap[i] = s->heap[j];
        s->heap[j] = t;
        s->heap[i]->idx = i;
        s->heap[j]->idx = j;
}

static void sift(Schedule *s, size_t i) {
        while (i > 0 && s->heap[(i - 1) / 2]->due > s->heap[i]->due) {
                swap(s, i, (i - 1) / 2);
                i = (i - 1) / 2;
        }
        for (;;) {
                size_t l = 2 * i + 1, r = l + 1, m = i;
                if (l < s->n && s->heap[l]->due < s->heap[m]->due)
                        m = l;
                if (r < s->n && s->heap[r]->due < s->heap[m]->due)
                        m = r;
                if (m == i)
                        return;
                swap(s, i, m);
                i = m;
        }
}

void schedule_done(Schedule *s) {
        free(s->heap);
        *s = (Schedule){ 0 };
}

int schedule_add(Schedule *s, ScheduleItem *it) {
        if (s->n == s->cap) {
                size_t cap = s->cap ? s->cap * 2 : 16;
                ScheduleItem **n = reallocarray(s->heap, cap, sizeof *n);
                if (!n)
                        return -ENOMEM;
                s->heap = n;
                s->cap = cap;
        }
        it->idx = s->n;
        s->heap[s->n++] = it;
        sift(s, it->idx);
        return 0;
}

void schedule_set(Schedule *s, ScheduleItem *it, usec_t due) {
        it->due = due;
        sift(s, it->idx);
}

ScheduleItem *schedule_first(const Schedule *s) {
        return s->n > 0 ? s->heap[0] : NULL;
}

usec_t schedule_next_due(const Schedule *s) {
        return s->n > 0 ? s->heap[0]->due : USEC_INFINITY;
}
