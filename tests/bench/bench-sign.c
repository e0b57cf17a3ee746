/* SPDX-License-Identifier: MIT */
/* Signing through keyd's token layer against raw C_Sign on the same token, in one run.
 *
 * Raw is what a bare PKCS#11 loop does (tools/p11bench.c in spirit): a session per thread, the key handle found once,
 * C_SignInit + C_Sign over the digest (ECDSA) or the message (RSA). keyd's layer signs the same message through
 * hsm_key_sign(): SHA-256 in software for ECDSA, a session from the pool, the cached handle, R‖S checked.
 * Rounds alternate raw and keyd so that both see the same machine; the ratio is keyd / raw.
 *
 * Environment: KEYD_BENCH_SECONDS (per round, default 2), KEYD_BENCH_ROUNDS (default 2), SOFTHSM_MODULE. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pkcs11/hsm-internal.h"
#include "tests/bench/util.h"

#define LAT_CAP 2000000

typedef struct Run {
        Hsm *hsm;
        HsmKey *key;
        bool raw;
} Run;

static void *worker(void *arg) {
        BenchThread *r = arg;
        const Run *run = r->arg;
        Hsm *h = run->hsm;
        HsmKey *k = run->key;
        uint8_t msg[200], sig[HSM_SIG_MAX], digest[32];
        CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
        CK_OBJECT_HANDLE priv = CK_INVALID_HANDLE;
        CK_MECHANISM m = k->mech;

        memset(msg, 'a', sizeof msg);
        if (run->raw) {
                if (h->f->C_OpenSession(h->slot, CKF_SERIAL_SESSION, NULL, NULL, &s) != CKR_OK ||
                    hsm_find_one(h, s, CKO_PRIVATE_KEY, k->id, k->id_len, &priv) < 0) {
                        r->failed = 1;
                        return NULL;
                }
                memset(digest, 'a', sizeof digest);
        }
        double end = bench_now() + r->seconds;
        for (;;) {
                double t0 = bench_now();
                if (t0 > end)
                        break;
                if (run->raw) {
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
                if (r->ops < r->lat_cap)
                        r->lat[r->ops] = bench_now() - t0;
                r->ops++;
        }
        if (s != CK_INVALID_HANDLE)
                h->f->C_CloseSession(s);
        return NULL;
}

int main(void) {
        const char *module = getenv("SOFTHSM_MODULE") ?: KEYD_DEFAULT_MODULE;
        double seconds = getenv("KEYD_BENCH_SECONDS") ? atof(getenv("KEYD_BENCH_SECONDS")) : 2.0;
        int rounds = getenv("KEYD_BENCH_ROUNDS") ? atoi(getenv("KEYD_BENCH_ROUNDS")) : 2;
        char pin_path[512];
        Hsm *h = NULL;
        int rc = 0;

        if (seconds <= 0 || seconds > 60 || rounds < 1 || rounds > 20) {
                fprintf(stderr, "bench-sign: KEYD_BENCH_SECONDS must be in (0, 60], KEYD_BENCH_ROUNDS in [1, 20]\n");
                return 2;
        }
        if (bench_token_create("keyd-bench", module, pin_path, sizeof pin_path) < 0) {
                fprintf(stderr, "bench-sign: cannot create a SoftHSM2 token: %m\n");
                bench_cleanup();
                return 1;
        }
        HsmConfig cfg = { .module = module, .uri = "pkcs11:token=keyd-bench", .pin_file = pin_path, .sessions = 2 };
        if (hsm_open(&cfg, &h) < 0) {
                fprintf(stderr, "bench-sign: hsm_open: %s\n", hsm_last_error());
                bench_cleanup();
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
                Run raw_run = { .hsm = h, .key = k, .raw = true }, keyd_run = { .hsm = h, .key = k };
                for (int threads = 1; threads <= 2; threads++) {
                        BenchResult raw = { 0 }, keyd = { 0 };
                        for (int i = 0; i < rounds; i++)
                                if (bench_run_threads(worker, &raw_run, threads, seconds, LAT_CAP, &raw) < 0 ||
                                    bench_run_threads(worker, &keyd_run, threads, seconds, LAT_CAP, &keyd) < 0) {
                                        fprintf(stderr, "bench-sign: signing failed: %s\n", hsm_last_error());
                                        bench_cleanup();
                                        return 1;
                                }
                        bench_result_sort(&raw);
                        bench_result_sort(&keyd);
                        double rops = bench_rate(&raw), kops = bench_rate(&keyd);
                        printf("%-6s %7d %10.0f %10.0f %6.1f%% %8.1fus %8.1fus %8.1fus %8.1fus\n", algs[a].name,
                               threads, rops, kops, 100.0 * kops / rops, bench_pct(&raw, 0.5),
                               bench_pct(&keyd, 0.5), bench_pct(&raw, 0.99), bench_pct(&keyd, 0.99));
                        fflush(stdout);
                        free(raw.lat);
                        free(keyd.lat);
                }
                hsm_key_free(k);
        }
        hsm_close(h);
        bench_cleanup();
        return rc;
}
