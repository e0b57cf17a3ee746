/* SPDX-License-Identifier: MIT */
/* Lock-free latency histograms (histogram.h). Durations are kept in integer nanoseconds, so that a value exactly on
 * a bound lands in that bound's bucket (le: less than or equal) and the sum is exact; both are printed as exact
 * decimals, never through a double. */
#include <errno.h>
#include <inttypes.h>

#include "common/histogram.h"
#include "common/macro.h"

#define NSEC_PER_SEC UINT64_C(1000000000)
#define NSEC_PER_USEC UINT64_C(1000)

static const uint64_t default_le_ns[HISTOGRAM_N_DEFAULT_BOUNDS] = {
        100000,   250000,    500000,    1000000,   2500000,    5000000,    10000000,   25000000,
        50000000, 100000000, 250000000, 500000000, 1000000000, 2500000000, 5000000000, 10000000000,
};

static const uint64_t *bounds_of(const Histogram *h, unsigned *ret_n) {
        if (h->n_bounds == 0) {
                *ret_n = HISTOGRAM_N_DEFAULT_BOUNDS;
                return default_le_ns;
        }
        *ret_n = h->n_bounds;
        return h->le_ns;
}

int histogram_init(Histogram *h, const double *bounds_sec, unsigned n) {
        *h = (Histogram){ 0 };
        if (n == 0 || n > HISTOGRAM_BOUNDS_MAX)
                return -EINVAL;
        for (unsigned i = 0; i < n; i++) {
                /* Also refuses NaN, and anything the nanoseconds of a uint64_t cannot hold (≈ 584 years). */
                if (!(bounds_sec[i] > 0 && bounds_sec[i] < 1.8e10))
                        goto invalid;
                h->le_ns[i] = (uint64_t) (bounds_sec[i] * (double) NSEC_PER_SEC + 0.5);
                if (h->le_ns[i] == 0 || (i > 0 && h->le_ns[i] <= h->le_ns[i - 1]))
                        goto invalid;
        }
        h->n_bounds = n;
        return 0;
invalid:
        *h = (Histogram){ 0 };
        return -EINVAL;
}

void histogram_observe_ns(Histogram *h, uint64_t ns) {
        unsigned n, i = 0;
        const uint64_t *le = bounds_of(h, &n);

        /* Linear: at most 20 compares, and most latencies stop in the first few buckets. */
        while (i < n && ns > le[i])
                i++;
        __atomic_fetch_add(&h->counts[i], 1, __ATOMIC_RELAXED);
        __atomic_fetch_add(&h->sum_ns, ns, __ATOMIC_RELAXED);
}

void histogram_observe(Histogram *h, usec_t d) {
        histogram_observe_ns(h, d > 0 ? (uint64_t) d * NSEC_PER_USEC : 0);
}

void histogram_observe_since(Histogram *h, usec_t start) {
        histogram_observe(h, now_monotonic() - start);
}

uint64_t histogram_count(const Histogram *h) {
        unsigned n;
        uint64_t total = 0;

        (void) bounds_of(h, &n);
        for (unsigned i = 0; i <= n; i++)
                total += __atomic_load_n(&h->counts[i], __ATOMIC_RELAXED);
        return total;
}

uint64_t histogram_sum_ns(const Histogram *h) {
        return __atomic_load_n(&h->sum_ns, __ATOMIC_RELAXED);
}

/* Nanoseconds as exact decimal seconds without trailing zeros: 250000 → "0.00025", 10000000000 → "10". */
static const char *format_seconds(char buf[static 32], uint64_t ns) {
        int k = snprintf(buf, 32, "%" PRIu64 ".%09" PRIu64, ns / NSEC_PER_SEC, ns % NSEC_PER_SEC);
        while (k > 0 && buf[k - 1] == '0')
                buf[--k] = 0;
        if (k > 0 && buf[k - 1] == '.')
                buf[--k] = 0;
        return buf;
}

int histogram_render(const Histogram *h, FILE *f, const char *name, const char *labels) {
        const char *sep = labels && *labels ? "," : "";
        char b[32];
        unsigned n;
        const uint64_t *le = bounds_of(h, &n);
        uint64_t cumulative = 0;

        labels = labels ?: "";
        /* Counts are read once each, and _count is the +Inf bucket: the series is cumulative whatever is observed
         * while it is printed. */
        for (unsigned i = 0; i < n; i++) {
                cumulative += __atomic_load_n(&h->counts[i], __ATOMIC_RELAXED);
                fprintf(f, "%s_bucket{%s%sle=\"%s\"} %" PRIu64 "\n", name, labels, sep, format_seconds(b, le[i]),
                        cumulative);
        }
        cumulative += __atomic_load_n(&h->counts[n], __ATOMIC_RELAXED);
        fprintf(f, "%s_bucket{%s%sle=\"+Inf\"} %" PRIu64 "\n", name, labels, sep, cumulative);
        fprintf(f, "%s_sum%s%s%s %s\n", name, *labels ? "{" : "", labels, *labels ? "}" : "",
                format_seconds(b, histogram_sum_ns(h)));
        fprintf(f, "%s_count%s%s%s %" PRIu64 "\n", name, *labels ? "{" : "", labels, *labels ? "}" : "", cumulative);
        return ferror(f) ? -EIO : 0;
}
