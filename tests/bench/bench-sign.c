/* SPDX-License-Identifier: MIT */
/* Signing through keyd's token layer against raw C_Sign on the same token, in one run.
 *
 * Raw is what a bare PKCS#11 loop does (tools/p11bench.c in spirit): a session per thread, the key handle found once,
 * C_SignInit + C_Sign over the digest (ECDSA) or the message (RSA). keyd's layer signs the same message through
 * hsm_key_sign(): SHA-256 in software for ECDSA, a session from the pool, the cached handle, R‖S checked.
 * Rounds alternate raw and keyd so that both see the same machine; the ratio is keyd / raw.
 *
 * Environment: KEYD_BENCH_SECONDS (per round, default 2), KEYD_BENCH_ROUNDS (default 2), SOFTHSM_MODULE. */
#include <fcntl.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/time-util.h"
#include "pkcs11/hsm-internal.h"

#define MAX_THREADS 8
#define LAT_CAP 2000000

typedef struct Run {
        Hsm *hsm;
        HsmKey *key;
        bool raw;
        double seconds;
        long ops;
        double *lat;
        int failed;
} Run;

static double now_s(void) {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        return (double) t.tv_sec + (double) t.tv_nsec / 1e9;
}

static void *worker(void *arg) {
        Run *r = arg;
        Hsm *h = r->hsm;
        HsmKey *k = r->key;
        uint8_t msg[200], sig[HSM_SIG_MAX], digest[32];
        CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
        CK_OBJECT_HANDLE priv = CK_INVALID_HANDLE;
        CK_MECHANISM m = k->mech;

        memset(msg, 'a', sizeof msg);
        if (r->raw) {
                if (h->f->C_OpenSession(h->slot, CKF_SERIAL_SESSION, NULL, NULL, &s) != CKR_OK ||
                    hsm_find_one(h, s, CKO_PRIVATE_KEY, k->id, k->id_len, &priv) < 0) {
                        r->failed = 1;
                        return NULL;
                }
                memset(digest, 'a', sizeof digest);
        }
        double end = now_s() + r->seconds;
        for (;;) {
                double t0 = now_s();
                if (t0 > end)
                        break;
                if (r->raw) {
                        CK_ULONG sl = sizeof sig;
                        CK_RV rv = h->f->C_SignInit(s, &m, priv);
                        if (rv == CKR_OK)
                                rv = k->md ? h->f->C_Sign(s, digest, sizeof digest, sig, &sl)
                                           : h->f->C_Sign(s, msg, sizeof msg, sig, &sl);
                        if (rv != CKR_OK) {
                                r->failed = 1;
                                break;
                        }
                } else if (hsm_key_sign(k, msg, sizeof msg, sig, sizeof sig) < 0) {
                        r->failed = 1;
                        break;
                }
                if (r->ops < LAT_CAP)
                        r->lat[r->ops] = now_s() - t0;
                r->ops++;
        }
        if (s != CK_INVALID_HANDLE)
                h->f->C_CloseSession(s);
        return NULL;
}

static int cmp_double(const void *a, const void *b) {
        double x = *(const double *) a, y = *(const double *) b;
        return x < y ? -1 : x > y;
}

typedef struct Result {
        long ops;
        double seconds;
        double *lat;
        long n_lat;
} Result;

static int run(Hsm *h, HsmKey *k, bool raw, int threads, double seconds, Result *acc) {
        pthread_t t[MAX_THREADS];
        Run r[MAX_THREADS];

        for (int i = 0; i < threads; i++) {
                r[i] = (Run){ .hsm = h, .key = k, .raw = raw, .seconds = seconds };
                r[i].lat = malloc(sizeof(double) * LAT_CAP);
                if (!r[i].lat || pthread_create(&t[i], NULL, worker, &r[i]) != 0)
                        return -1;
        }
        for (int i = 0; i < threads; i++) {
                pthread_join(t[i], NULL);
                if (r[i].failed)
                        return -1;
                long n = r[i].ops < LAT_CAP ? r[i].ops : LAT_CAP;
                acc->lat = realloc(acc->lat, sizeof(double) * (size_t) (acc->n_lat + n));
                memcpy(acc->lat + acc->n_lat, r[i].lat, sizeof(double) * (size_t) n);
                acc->n_lat += n;
                acc->ops += r[i].ops;
                free(r[i].lat);
        }
        acc->seconds += seconds;
        return 0;
}

static double pct(Result *r, double p) {
        if (r->n_lat == 0)
                return 0;
        return r->lat[(long) ((double) (r->n_lat - 1) * p)] * 1e6;
}

static char tmpdir[] = "/tmp/keyd-bench.XXXXXX";

static int write_file(const char *path, const char *s) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0)
                return -1;
        ssize_t n = write(fd, s, strlen(s));
        close(fd);
        return n == (ssize_t) strlen(s) ? 0 : -1;
}

static int make_token(const char *module, char *pin_path, size_t size) {
        char path[512], conf[1024], pin[33];
        unsigned char rnd[16];

        if (!mkdtemp(tmpdir))
                return -1;
        snprintf(path, sizeof path, "%s/tokens", tmpdir);
        if (mkdir(path, 0700) < 0)
                return -1;
        snprintf(conf, sizeof conf, "directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n",
                 path);
        snprintf(path, sizeof path, "%s/softhsm2.conf", tmpdir);
        if (write_file(path, conf) < 0 || setenv("SOFTHSM2_CONF", path, 1) < 0)
                return -1;
        if (RAND_bytes(rnd, sizeof rnd) != 1)
                return -1;
        for (size_t i = 0; i < sizeof rnd; i++)
                snprintf(pin + 2 * i, 3, "%02x", rnd[i]);
        if (hsm_token_init(module, "keyd-bench", "bench-so-pin", pin) < 0)
                return -1;
        snprintf(pin_path, size, "%s/pin", tmpdir);
        return write_file(pin_path, pin);
}

int main(void) {
        const char *module = getenv("SOFTHSM_MODULE") ?: KEYD_DEFAULT_MODULE;
        double seconds = getenv("KEYD_BENCH_SECONDS") ? atof(getenv("KEYD_BENCH_SECONDS")) : 2.0;
        int rounds = getenv("KEYD_BENCH_ROUNDS") ? atoi(getenv("KEYD_BENCH_ROUNDS")) : 2;
        char pin_path[512], cmd[600];
        Hsm *h = NULL;
        int rc = 0;

        if (seconds <= 0 || seconds > 60 || rounds < 1 || rounds > 20) {
                fprintf(stderr, "bench-sign: KEYD_BENCH_SECONDS must be in (0, 60], KEYD_BENCH_ROUNDS in [1, 20]\n");
                return 2;
        }
        if (make_token(module, pin_path, sizeof pin_path) < 0) {
                fprintf(stderr, "bench-sign: cannot create a SoftHSM2 token: %m\n");
                return 1;
        }
        HsmConfig cfg = { .module = module, .uri = "pkcs11:token=keyd-bench", .pin_file = pin_path, .sessions = 2 };
        if (hsm_open(&cfg, &h) < 0) {
                fprintf(stderr, "bench-sign: hsm_open: %s\n", hsm_last_error());
                return 1;
        }

        static const struct {
                KeydAlg alg;
                unsigned bits;
                const char *name;
        } algs[] = { { KEYD_ALG_ES256, 0, "ES256" }, { KEYD_ALG_RS256, 2048, "RS256" } };

        printf("# keyd pkcs11 layer vs raw C_Sign, same token (SoftHSM2), %d round(s) x %.1fs each, alternating\n",
               rounds, seconds);
        printf("%-6s %7s %10s %10s %7s %9s %9s %9s %9s\n", "alg", "threads", "raw_ops/s", "keyd_ops/s", "ratio",
               "raw_p50", "keyd_p50", "raw_p99", "keyd_p99");
        for (size_t a = 0; a < sizeof algs / sizeof algs[0]; a++) {
                uint8_t id[4] = { 0xbe, 0x00, 0x00, (uint8_t) a };
                HsmKey *k = NULL;
                if (hsm_generate(h, algs[a].alg, algs[a].bits, id, sizeof id, "keyd:bench:0", &k) < 0) {
                        fprintf(stderr, "bench-sign: generate %s: %s\n", algs[a].name, hsm_last_error());
                        rc = 1;
                        break;
                }
                for (int threads = 1; threads <= 2; threads++) {
                        Result raw = { 0 }, keyd = { 0 };
                        for (int i = 0; i < rounds; i++)
                                if (run(h, k, true, threads, seconds, &raw) < 0 ||
                                    run(h, k, false, threads, seconds, &keyd) < 0) {
                                        fprintf(stderr, "bench-sign: signing failed: %s\n", hsm_last_error());
                                        return 1;
                                }
                        qsort(raw.lat, (size_t) raw.n_lat, sizeof(double), cmp_double);
                        qsort(keyd.lat, (size_t) keyd.n_lat, sizeof(double), cmp_double);
                        double rops = (double) raw.ops / raw.seconds, kops = (double) keyd.ops / keyd.seconds;
                        printf("%-6s %7d %10.0f %10.0f %6.1f%% %8.1fus %8.1fus %8.1fus %8.1fus\n", algs[a].name,
                               threads, rops, kops, 100.0 * kops / rops, pct(&raw, 0.5), pct(&keyd, 0.5),
                               pct(&raw, 0.99), pct(&keyd, 0.99));
                        fflush(stdout);
                        free(raw.lat);
                        free(keyd.lat);
                }
                hsm_key_free(k);
        }
        hsm_close(h);
        snprintf(cmd, sizeof cmd, "rm -rf -- '%s'", tmpdir);
        if (strncmp(tmpdir, "/tmp/keyd-bench.", 16) == 0)
                (void) !system(cmd);
        return rc;
}
