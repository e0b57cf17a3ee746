/* SPDX-License-Identifier: MIT */
/* common/histogram.c: where an observation lands, what is printed, and that concurrent observations all count. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>

#include "common/histogram.h"
#include "common/macro.h"

/* The text histogram_render() appends for one series. */
static char *render(const Histogram *h, const char *name, const char *labels) {
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        cr_assert_not_null(f);
        cr_assert_eq(histogram_render(h, f, name, labels), 0);
        cr_assert_eq(fclose(f), 0);
        return buf;
}

/* The value of the sample line that starts with prefix (name and labels, up to the space). */
static unsigned long long sample(const char *text, const char *prefix) {
        char want[256];
        snprintf(want, sizeof want, "%s ", prefix);
        for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
                if (startswith(l, want))
                        return strtoull(l + strlen(want), NULL, 10);
        cr_assert_fail("no sample '%s' in:\n%s", prefix, text);
        return 0;
}

static void bucket(const char *text, const char *le, unsigned long long want) {
        char p[128];
        snprintf(p, sizeof p, "x_bucket{le=\"%s\"}", le);
        cr_assert_eq(sample(text, p), want, "%s: want %llu in:\n%s", p, want, text);
}

Test(histogram, zeroed_has_the_default_bounds) {
        Histogram h = { 0 };
        char *t = render(&h, "x", NULL);
        const char *want = "x_bucket{le=\"0.0001\"} 0\n"
                           "x_bucket{le=\"0.00025\"} 0\n"
                           "x_bucket{le=\"0.0005\"} 0\n"
                           "x_bucket{le=\"0.001\"} 0\n"
                           "x_bucket{le=\"0.0025\"} 0\n"
                           "x_bucket{le=\"0.005\"} 0\n"
                           "x_bucket{le=\"0.01\"} 0\n"
                           "x_bucket{le=\"0.025\"} 0\n"
                           "x_bucket{le=\"0.05\"} 0\n"
                           "x_bucket{le=\"0.1\"} 0\n"
                           "x_bucket{le=\"0.25\"} 0\n"
                           "x_bucket{le=\"0.5\"} 0\n"
                           "x_bucket{le=\"1\"} 0\n"
                           "x_bucket{le=\"2.5\"} 0\n"
                           "x_bucket{le=\"5\"} 0\n"
                           "x_bucket{le=\"10\"} 0\n"
                           "x_bucket{le=\"+Inf\"} 0\n"
                           "x_sum 0\n"
                           "x_count 0\n";
        cr_assert_str_eq(t, want);
        free(t);
}

Test(histogram, a_value_on_a_bound_is_in_that_bucket) {
        Histogram h = { 0 };
        histogram_observe(&h, 100);                      /* exactly 0.0001 */
        histogram_observe_ns(&h, 100001);                /* just above: 0.00025 */
        histogram_observe(&h, 0);                        /* the first bucket */
        histogram_observe(&h, -5);                       /* a clock step back counts as 0 */
        histogram_observe(&h, 10 * USEC_PER_SEC);        /* exactly the last bound */
        histogram_observe_ns(&h, UINT64_C(10000000001)); /* +Inf only */
        char *t = render(&h, "x", "");
        bucket(t, "0.0001", 3);
        bucket(t, "0.00025", 4);
        bucket(t, "5", 4);
        bucket(t, "10", 5);
        bucket(t, "+Inf", 6);
        cr_assert_eq(sample(t, "x_count"), 6);
        cr_assert(strstr(t, "\nx_sum 20.000200002\n"), "the exact sum in seconds:\n%s", t);
        cr_assert_eq(histogram_count(&h), 6);
        cr_assert_eq(histogram_sum_ns(&h), UINT64_C(20000200002));
        free(t);
}

Test(histogram, buckets_are_cumulative_with_labels) {
        const double le[] = { 0.001, 0.5, 2 };
        Histogram h;
        cr_assert_eq(histogram_init(&h, le, ELEMENTSOF(le)), 0);
        for (int i = 0; i < 3; i++)
                histogram_observe(&h, 700);         /* 0.0007 → le 0.001 */
        histogram_observe(&h, 500 * USEC_PER_MSEC); /* on 0.5 */
        histogram_observe(&h, 3 * USEC_PER_SEC);    /* +Inf */
        char *t = render(&h, "keyd_x_seconds", "route=\"GET /a\",code=\"200\"");
        cr_assert_str_eq(t, "keyd_x_seconds_bucket{route=\"GET /a\",code=\"200\",le=\"0.001\"} 3\n"
                            "keyd_x_seconds_bucket{route=\"GET /a\",code=\"200\",le=\"0.5\"} 4\n"
                            "keyd_x_seconds_bucket{route=\"GET /a\",code=\"200\",le=\"2\"} 4\n"
                            "keyd_x_seconds_bucket{route=\"GET /a\",code=\"200\",le=\"+Inf\"} 5\n"
                            "keyd_x_seconds_sum{route=\"GET /a\",code=\"200\"} 3.5021\n"
                            "keyd_x_seconds_count{route=\"GET /a\",code=\"200\"} 5\n");
        free(t);
}

Test(histogram, bad_bounds_are_refused) {
        Histogram h;
        const double unsorted[] = { 0.5, 0.1 }, equal[] = { 0.1, 0.1 }, zero[] = { 0, 1 }, negative[] = { -1 },
                     same_ns[] = { 1e-10, 2e-10 };
        double many[HISTOGRAM_BOUNDS_MAX + 1];
        for (size_t i = 0; i < ELEMENTSOF(many); i++)
                many[i] = (double) (i + 1);
        cr_assert_eq(histogram_init(&h, unsorted, 2), -EINVAL);
        cr_assert_eq(histogram_init(&h, equal, 2), -EINVAL);
        cr_assert_eq(histogram_init(&h, zero, 2), -EINVAL);
        cr_assert_eq(histogram_init(&h, negative, 1), -EINVAL);
        cr_assert_eq(histogram_init(&h, same_ns, 2), -EINVAL, "bounds that round to the same nanosecond");
        cr_assert_eq(histogram_init(&h, many, 0), -EINVAL);
        cr_assert_eq(histogram_init(&h, many, HISTOGRAM_BOUNDS_MAX + 1), -EINVAL);
        cr_assert_eq(histogram_init(&h, many, HISTOGRAM_BOUNDS_MAX), 0);
        /* Refused: left empty, with the default bounds. */
        cr_assert_eq(histogram_init(&h, unsorted, 2), -EINVAL);
        histogram_observe(&h, 100);
        char *t = render(&h, "x", NULL);
        bucket(t, "0.0001", 1);
        free(t);
}

#define THREADS 8
#define PER_THREAD 100000

typedef struct Worker {
        Histogram *h;
        pthread_barrier_t *start;
        unsigned id;
} Worker;

/* Thread id observes id + 1 µs, 1 ms and 1 s in turn: each bucket's total, and the sum, are known exactly. */
static void *observe_many(void *userdata) {
        Worker *w = userdata;
        const usec_t d[] = { (usec_t) w->id + 1, USEC_PER_MSEC, USEC_PER_SEC };
        pthread_barrier_wait(w->start);
        for (unsigned i = 0; i < PER_THREAD; i++)
                histogram_observe(w->h, d[i % 3]);
        return NULL;
}

Test(histogram, concurrent_observations_add_up) {
        static Histogram h; /* shared by every thread, zeroed: the default bounds */
        pthread_barrier_t start;
        pthread_t t[THREADS];
        Worker w[THREADS];
        uint64_t want_sum_us = 0;
        const unsigned per_kind[3] = { (PER_THREAD + 2) / 3, (PER_THREAD + 1) / 3, PER_THREAD / 3 };

        cr_assert_eq(pthread_barrier_init(&start, NULL, THREADS), 0);
        for (unsigned i = 0; i < THREADS; i++) {
                w[i] = (Worker){ .h = &h, .start = &start, .id = i };
                cr_assert_eq(pthread_create(&t[i], NULL, observe_many, &w[i]), 0);
                want_sum_us += per_kind[0] * (uint64_t) (i + 1) + per_kind[1] * UINT64_C(1000) +
                               per_kind[2] * UINT64_C(1000000);
        }
        for (unsigned i = 0; i < THREADS; i++)
                pthread_join(t[i], NULL);
        pthread_barrier_destroy(&start);

        char *text = render(&h, "x", NULL);
        cr_assert_eq(histogram_count(&h), (uint64_t) THREADS * PER_THREAD);
        cr_assert_eq(histogram_sum_ns(&h), want_sum_us * 1000);
        bucket(text, "0.0001", THREADS * per_kind[0]);
        bucket(text, "0.001", THREADS * (per_kind[0] + per_kind[1]));
        bucket(text, "0.5", THREADS * (per_kind[0] + per_kind[1]));
        bucket(text, "1", (unsigned long long) THREADS * PER_THREAD);
        bucket(text, "+Inf", (unsigned long long) THREADS * PER_THREAD);
        free(text);
}
