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

#include "pkcs11/hsm.h"
#include "tests/bench/util.h"

#define LAT_CAP 2000000

/* keyd's layer: hsm_key_sign() of the same 200-byte message. */
typedef struct KeydSign {
        HsmKey *key;
        uint8_t msg[200], sig[HSM_SIG_MAX];
} KeydSign;

static int keyd_sign(void *arg) {
        KeydSign *s = arg;
        return hsm_key_sign(s->key, s->msg, sizeof s->msg, s->sig, sizeof s->sig) < 0 ? -1 : 0;
}

static void *keyd_worker(void *arg) {
        BenchThread *r = arg;
        KeydSign s = { .key = r->arg };
        memset(s.msg, 'a', sizeof s.msg);
        bench_thread_loop(r, keyd_sign, &s);
        return NULL;
}

int main(void) {
        BenchEnv env;
        char pin_path[512];
        Hsm *h = NULL;
        int rc = 0;

        if (bench_env("bench-sign", 2.0, false, &env) < 0)
                return 2;
        const char *module = env.module;
        double seconds = env.seconds;
        int rounds = env.rounds;
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
                BenchRawSign raw_run = { .hsm = h, .key = k };
                for (int threads = 1; threads <= 2; threads++) {
                        BenchResult raw = { 0 }, keyd = { 0 };
                        for (int i = 0; i < rounds; i++)
                                if (bench_run_threads(bench_raw_sign_worker, &raw_run, threads, seconds, LAT_CAP,
                                                      &raw) < 0 ||
                                    bench_run_threads(keyd_worker, k, threads, seconds, LAT_CAP, &keyd) < 0) {
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
