/* SPDX-License-Identifier: MIT */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "pkcs11/hsm.h"

/* Helpers shared by the benchmarks (tests/bench/bench-*.c): results and their statistics, threads that time an
 * operation, a private SoftHSM2 token under mkdtemp, and build/keyd started on it with keep-alive HTTP clients over
 * its Unix socket.
 *
 * A bench process makes one run: the working directory, the daemon and the program name used in messages are state
 * of util.c, set by bench_token_create() or bench_keyd_start() and undone by bench_cleanup(). */

#define BENCH_MAX_CLIENTS 64  /* threads or HTTP clients in one run */
#define BENCH_LAT_CAP 1000000 /* latencies recorded per HTTP client and run */

/* ---- the environment ---- */

/* $SOFTHSM_MODULE if set and not empty, else the build's default. */
const char *bench_module(void);
/* The PKCS#11 shim that makes the token a network HSM (tests/shim/p11shim.h): $KEYD_BENCH_SHIM, or
 * ../shim/p11shim.so next to this executable, as an absolute path into ret; -1 if it is not there. */
int bench_shim_module(char *ret, size_t size);

/* What a bench run is told by its environment. */
typedef struct BenchEnv {
        const char *module; /* bench_module() */
        double seconds;     /* KEYD_BENCH_SECONDS: per round */
        int rounds;         /* KEYD_BENCH_ROUNDS, default 2 */
        int clients;        /* KEYD_BENCH_CLIENTS, 0 if not set: the bench's default */
        bool strict;        /* KEYD_BENCH_STRICT=1: exit 1 if a target is missed */
} BenchEnv;

/* Read the environment (seconds default_seconds if not set; clients only for a bench that takes them); -1, after a
 * message on stderr naming the bench, if KEYD_BENCH_SECONDS is not in (0, 60], KEYD_BENCH_ROUNDS not in [1, 20],
 * KEYD_BENCH_CLIENTS not in [0, BENCH_MAX_CLIENTS]. */
int bench_env(const char *name, double default_seconds, bool with_clients, BenchEnv *ret);

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
/* Add n_lat latencies, ops operations and seconds of wall time to acc; -1 if out of memory. */
int bench_result_add(BenchResult *acc, const double *lat, long n_lat, long ops, double seconds);
/* qsort() order of doubles. */
int bench_cmp_double(const void *a, const void *b);
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
/* The timing loop of a worker: op(arg) again and again for r->seconds, the latency of each recorded in r->lat (the
 * first r->lat_cap of them) and counted in r->ops; at the first op that returns < 0, r->failed is set and the loop
 * ends. */
void bench_thread_loop(BenchThread *r, int (*op)(void *arg), void *arg);

/* Raw C_Sign on the token, as a bare PKCS#11 loop does it (tools/p11bench.c): a worker for bench_run_threads() with a
 * BenchRawSign as its arg. Each thread opens a session and finds the key's handle once, then C_SignInit + C_Sign over
 * a 32-byte digest (ECDSA: keyd hashes in software) or a 200-byte message (RSA). */
typedef struct BenchRawSign {
        Hsm *hsm;
        HsmKey *key;
} BenchRawSign;
void *bench_raw_sign_worker(void *arg);

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
/* What bench_keyd_start_opts() changes in keyd.conf (NULL fields: as bench_keyd_start()). */
typedef struct BenchKeydOpts {
        const char *module; /* keyd's [token] module, if not the one the token is made with (the shim) */
        const char *extra;  /* sections written after [api], before the keyrings ("[token]\nmax-sessions = 64\n") */
} BenchKeydOpts;
/* bench_keyd_start() with opts. keyd inherits this process's environment (P11SHIM_*). */
int bench_keyd_start_opts(const char *name, const char *module, const char *const *keyrings,
                          const BenchKeydOpts *opts, char *pin_path, size_t size);
/* Start keyd --config config in a child (its output appended to log_path, NOTIFY_SOCKET, LISTEN_* and JOURNAL_STREAM
 * unset, killed if this process dies): its pid, or -1. */
pid_t bench_spawn_keyd(const char *keyd, const char *config, const char *log_path);
/* Stop the child *pidp (SIGTERM, SIGKILL after 10 s), reap it and set *pidp to 0; nothing if *pidp <= 0. */
void bench_stop_child(volatile pid_t *pidp);
/* Write s to path (mode 0600, truncated): 0 or -1. */
int bench_write_file(const char *path, const char *s);
/* Under dir: a token directory (dir/tokens) and a SoftHSM2 configuration for it (dir/softhsm2.conf). 0 or -1. */
int bench_softhsm_conf(const char *dir);
/* dir/keyd.conf for keyd on the token "keyd-bench" of dir/softhsm2.conf, with the PIN in pin_path, the store
 * dir/keyd.db, the socket sock and 2 workers, then the NULL-terminated keyring sections (a blank line between two),
 * each followed by "sign-users = USER\n" for the current user. Its path in ret; 0 or -1. */
int bench_write_keyd_conf(const char *dir, const char *module, const char *pin_path, const char *sock,
                          const char *const *keyrings, char *ret, size_t size);
/* The CPU time (user + system) process pid has used, every thread included (from /proc/PID/stat), in seconds; 0 if it
 * cannot be read. */
double bench_pid_cpu(pid_t pid);
/* This run's keyd, 0 if none. */
pid_t bench_keyd_pid(void);
/* The last 20 lines of keyd's output, to stderr. */
void bench_show_log(void);
/* Stop keyd (SIGTERM, SIGKILL after 10 s) and remove the working directory. */
void bench_cleanup(void);

/* ---- HTTP/1.1 over keyd's Unix socket ---- */

/* A keep-alive HTTP/1.1 connection to a keyd socket, for replies of any size. */
typedef struct BenchConn {
        int fd;
        char *buf;
        size_t len, cap;
} BenchConn;
#define BENCH_CONN_INIT { .fd = -1 }

/* Connect to sock: NULL for this run's keyd, a path for a Unix socket, "IPV4:PORT" for TCP (the public listener,
 * nginx). */
int bench_conn_open(BenchConn *c, const char *sock);
/* Close and free the buffer; the BenchConn can be opened again. */
void bench_conn_close(BenchConn *c);
/* Write a prebuilt request, read one reply: the status and the body (in c->buf, valid until the next call; the
 * head is at c->buf). A reply needs a Content-Length, but for 304 and 204. */
int bench_conn_roundtrip(BenchConn *c, const char *req, size_t req_len, int *ret_status, const char **ret_body,
                         size_t *ret_len);

/* A request with Host and, if body is not NULL, a JSON body with Content-Length; its length in *ret_len. free() it. */
char *bench_http_request(const char *method, const char *path, const char *body, size_t *ret_len);
/* One request on a fresh connection: the reply's status, and its body as a new string if ret_body is given. */
int bench_http_once(const char *method, const char *path, const char *body, int *ret_status, char **ret_body);
/* bench_http_once() whose reply must have status want_status and a JSON body: the JSON, or NULL after a message on
 * stderr with the request, the status and the body. */
json_t *bench_http_json(const char *method, const char *path, const char *body, int want_status);
/* clients threads, each a keep-alive connection (connected and warmed by one request before the clock starts)
 * writing req and reading the reply for seconds; a request counts when a reply with want_status, containing
 * want_text if not NULL, has been read in full (latency: write to last byte). Adds operations, latencies (the first
 * BENCH_LAT_CAP of each client) and the CPU of this process and keyd to acc. -1 if a client failed. */
int bench_run_http(const char *req, size_t req_len, int want_status, const char *want_text, int clients,
                   double seconds, BenchResult *acc);
/* bench_run_http() to addr (as bench_conn_open() takes it); keyd's CPU is added to acc whatever addr is. */
int bench_run_http_to(const char *addr, const char *req, size_t req_len, int want_status, const char *want_text,
                      int clients, double seconds, BenchResult *acc);

/* The active ES256 key of keyring ring whose kid is kid (as keyd's store names it in the bench's database), opened in
 * this process's session of the token. */
int bench_open_active_key(Hsm *h, const char *ring, const char *kid, HsmKey **ret);
