/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdint.h>
#include <stdio.h>

#include "common/time-util.h"

/* A latency histogram for hot paths, in the Prometheus model: fixed upper bounds ("le", in seconds), a count per
 * bucket and the sum of what was observed. Many threads may observe at once: an observation is two relaxed atomic
 * adds (its bucket and the sum), with no lock and no allocation. A reader sees each count exactly, but may see an
 * observation in its bucket before it is in the sum (Prometheus clients accept the same). */

#define HISTOGRAM_BOUNDS_MAX 20

typedef struct Histogram {
        unsigned n_bounds;                         /* 0: the default bounds (a zeroed Histogram is ready) */
        uint64_t le_ns[HISTOGRAM_BOUNDS_MAX];      /* upper bounds in nanoseconds, ascending */
        uint64_t counts[HISTOGRAM_BOUNDS_MAX + 1]; /* per bucket, not cumulative; [n_bounds] is +Inf */
        uint64_t sum_ns;
} Histogram;

/* The default bounds, for 50 µs … 10 s: 0.0001 0.00025 0.0005 0.001 0.0025 0.005 0.01 0.025 0.05 0.1 0.25 0.5 1 2.5 5
 * 10. A histogram that is all zeroes (static, calloc) has these. */
#define HISTOGRAM_N_DEFAULT_BOUNDS 16

/* Start h empty with these upper bounds (seconds, strictly ascending, > 0, at most HISTOGRAM_BOUNDS_MAX; rounded to
 * the nanosecond). Returns 0, or -EINVAL and h left with the default bounds. Not concurrent with observations. */
int histogram_init(Histogram *h, const double *bounds_sec, unsigned n);

/* Count one duration (negative counts as 0). Lock-free, safe from any number of threads. */
void histogram_observe_ns(Histogram *h, uint64_t ns);
void histogram_observe(Histogram *h, usec_t d);
/* The time since start (now_monotonic()). */
void histogram_observe_since(Histogram *h, usec_t start);

/* Observations so far (the +Inf bucket, and _count). */
uint64_t histogram_count(const Histogram *h);
uint64_t histogram_sum_ns(const Histogram *h);

/* Append the samples of one series in Prometheus text format: name_bucket{labels,le="…"} (cumulative, ending with
 * le="+Inf"), name_sum{labels} (seconds) and name_count{labels}. labels: NULL or "" for none, else label pairs as they
 * go between the braces (route="x",code="201"), already escaped. The # HELP and # TYPE lines of the family are the
 * caller's (one family has many series). Returns 0, or -EIO if f failed (out of memory for a memstream). */
int histogram_render(const Histogram *h, FILE *f, const char *name, const char *labels);
