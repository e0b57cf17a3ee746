/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* Helpers shared by the benchmarks (tests/bench/bench-*.c): results and their statistics, threads that time an
 * operation, a private SoftHSM2 token under mkdtemp, and build/keyd started on it with keep-alive HTTP clients over
 * its Unix socket.
 *
 * A bench process makes one run: the working directory, the daemon and the program name used in messages are state
 * of util.c, set by bench_token_create() or bench_keyd_start() and undone by bench_cleanup(). */

#define BENCH_MAX_CLIENTS 8   /* threads or HTTP clients in one run */
#define BENCH_LAT_CAP 1000000 /* latencies recorded per HTTP client and run */

/* ---- time and results ---- */

/* CLOCK_MONOTONIC, in seconds. */
double bench_now(void);

/* Operations and latencies summed over the runs of one measurement. */
typedef struct BenchResult {
        long ops;
        double seconds; /* wall time */
        double *lat;    /* seconds, n_lat of them, sorted by bench_result_sort(); free() it */
        long n_lat;
        double cpu, daemon_cpu; /* CPU seconds used: this process, keyd */
} BenchResult;

void bench_result_sort(BenchResult *r);
/* Percentile p (0..1) of the sorted latencies, in µs; 0 if there are none. */
double bench_pct(const BenchResult *r, double p);
/* Operations per second of wall time. */
double bench_rate(const BenchResult *r);
/* seconds / ops, in µs; 0 without operations. */
double bench_us_per_op(double seconds, long ops);
/* CPU per operation in µs: this process's, plus keyd's if with_daemon. On a shared machine, CPU per operation is
 * what the neighbours do not change; ops/s and latency are what a caller sees. */
double bench_cpu_us(const BenchResult *r, bool with_daemon);

/* ---- timing threads ---- */

/* What a worker of bench_run_threads() is given: it runs its operation in a loop for seconds, records the latency of
 * the first lat_cap operations in lat, counts them in ops, and sets failed (and stops) if one fails. */
typedef struct BenchThread {
        void *arg; /* the bench's, shared by the threads */
        double seconds;
        long lat_cap;
        double *lat;
        long ops;
        int failed;
} BenchThread;

/* Run worker (given a BenchThread *) on threads threads (at most BENCH_MAX_CLIENTS) at once, then add their
 * operations, latencies, the wall time and this process's CPU time to acc. -1 if a thread failed. */
int bench_run_threads(void *(*worker)(void *), void *arg, int threads, double seconds, long lat_cap,
                      BenchResult *acc);

/* ---- working directory, token, keyd ---- */

/* Make the working directory /tmp/PREFIX.XXXXXX (PREFIX starts with "keyd-": bench_cleanup() removes nothing else),
 * a SoftHSM2 configuration and token directory in it (SOFTHSM2_CONF set in this process), and a token labelled
 * "keyd-bench" with a random user PIN, written to the file whose path is returned in pin_path. */
int bench_token_create(const char *prefix, const char *module, char *pin_path, size_t size);
/* The working directory (once it is made). */
const char *bench_dir(void);

/* For the bench called name ("bench-api", also the prefix of its messages): find keyd ($KEYD_BIN, or ../../keyd next
 * to this executable); on SIGINT or SIGTERM kill it and exit 128 + signal, ignore SIGPIPE; make the token in
 * /tmp/keyd-NAME.XXXXXX (bench_token_create()); write a keyd.conf for it with the store, the socket and 2 workers,
 * then the NULL-terminated keyring sections ("[keyring NAME]\n...", a blank line between two), each followed by
 * "sign-users = USER\n" for the current user; start keyd --config on it (output to DIR/keyd.log, killed if this
 * process dies) and wait up to 30 s for GET /healthz to answer 200. Says on stderr what failed. */
int bench_keyd_start(const char *name, const char *module, const char *const *keyrings, char *pin_path,
                     size_t size);
/* The last 20 lines of keyd's output, to stderr. */
void bench_show_log(void);
/* Stop keyd (SIGTERM, SIGKILL after 10 s) and remove the working directory. */
void bench_cleanup(void);

/* ---- HTTP/1.1 over keyd's Unix socket ---- */

/* A request with Host and, if body is not NULL, a JSON body with Content-Length; its length in *ret_len. free() it. */
/* A keep-alive HTTP/1.1 connection to a keyd socket, for replies of any size. */
typedef struct BenchConn {
        int fd;
        char *buf;
        size_t len, cap;
} BenchConn;
#define BENCH_CONN_INIT { .fd = -1 }

/* Connect to sock (NULL: this run's keyd). */
int bench_conn_open(BenchConn *c, const char *sock);
/* Close and free the buffer; the BenchConn can be opened again. */
void bench_conn_close(BenchConn *c);
/* Write a prebuilt request, read one reply: the status and the body (in c->buf, valid until the next call). */
int bench_conn_roundtrip(BenchConn *c, const char *req, size_t req_len, int *ret_status, const char **ret_body,
                         size_t *ret_len);

char *bench_http_request(const char *method, const char *path, const char *body, size_t *ret_len);
/* One request on a fresh connection: the reply's status, and its body as a new string if ret_body is given. */
int bench_http_once(const char *method, const char *path, const char *body, int *ret_status, char **ret_body);
/* clients threads, each a keep-alive connection (connected and warmed by one request before the clock starts)
 * writing req and reading the reply for seconds; a request counts when a reply with want_status, containing
 * want_text if not NULL, has been read in full (latency: write to last byte). Adds operations, latencies (the first
 * BENCH_LAT_CAP of each client) and the CPU of this process and keyd to acc. -1 if a client failed. */
int bench_run_http(const char *req, size_t req_len, int want_status, const char *want_text, int clients,
                   double seconds, BenchResult *acc);
