/* SPDX-License-Identifier: MIT */
/* Minting ES256 JWTs over keyd's Unix socket against raw C_Sign on the same token, in one run (SPEC §10).
 *
 * The bench makes its own SoftHSM2 token under mkdtemp, starts build/keyd on it with one issuer keyring "bench"
 * (ES256), and once keyd is up opens the same token itself (SoftHSM2 lets a second process use the token directory).
 *
 * Raw is what tools/p11bench.c does: N threads, a session each, the key handle found once, C_SignInit + C_Sign
 * (CKM_ECDSA) over a 32-byte digest, with keyd's own active key of the keyring (found by its kid in keyd's store).
 * Mint is N clients, each a keep-alive HTTP/1.1 connection to keyd's socket, writing a prebuilt
 * POST /v1/keyrings/bench/tokens {"sub":"agent-1"} in one write and reading the reply (Content-Length) with plain
 * read(2); a request is counted when its 201 has been read in full. Latency is per operation, write to last byte.
 * Rounds alternate raw and mint so that both see the same machine; the ratio is mint / raw.
 *
 * For reference (not part of any target), "floor" is GET /healthz with the same clients: the HTTP round trip and a
 * small JSON reply, no token and no audit record.
 *
 * "bench-api network" is the same against a network HSM: the token behind the PKCS#11 shim (tests/shim/p11shim.h)
 * with KEYD_BENCH_TOKEN_US (default 2000) µs of wall-clock latency on every C_Sign, for keyd and for the raw loop
 * alike (P11SHIM_SIGN_US in this process's environment, which keyd inherits). Such a token is slow per signature
 * and wide: what counts is how many signatures are in flight at once. So N is 16, then 64 (raw: N threads and
 * sessions); keyd gets [token] max-sessions = KEYD_BENCH_MAX_SESSIONS (default 64; 0 leaves the line out, for a
 * keyd that does not know the key) and room for the clients in [api] max-connections-per-uid. No floor.
 *
 * Environment: KEYD_BENCH_SECONDS (per round, default 2), KEYD_BENCH_ROUNDS (default 2), KEYD_BENCH_CLIENTS (only
 * this number of clients, default 1 then 2; network: 16 then 64), SOFTHSM_MODULE, KEYD_BIN (default: ../../keyd next
 * to this executable), KEYD_BENCH_SHIM (default: ../shim/p11shim.so next to this executable), KEYD_BENCH_TOKEN_US,
 * KEYD_BENCH_MAX_SESSIONS, KEYD_BENCH_STRICT=1 (exit 1 if a target is missed). */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/hex.h"
#include "store/store.h"
#include "tests/bench/util.h"

#define RING "bench"
#define TARGET_RATIO 0.85
#define TARGET_P50_US 100.0
/* Network HSM: keyd may cost some throughput and a fraction of one signature's latency, not more. */
#define NET_TARGET_RATIO 0.8
#define NET_TARGET_P50_US 1000.0
#define NET_TOKEN_US_MAX 1000000
#define NET_SESSIONS_MAX 1024

/* An integer from the environment in [0, max], or def if not set; -1 after a message if it is something else. */
static long env_long(const char *name, long def, long max) {
        const char *s = getenv(name);
        char *end;
        if (!s || !*s)
                return def;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (errno != 0 || *end || v < 0 || v > max) {
                fprintf(stderr, "bench-api: %s must be a number in [0, %ld]\n", name, max);
                return -1;
        }
        return v;
}

/* One mode of the bench: how keyd and the raw loop reach the token, which client counts, which targets. */
typedef struct Mode {
        const char *title;
        const char *keyd_module; /* keyd's and the raw loop's module: the token's own, or the shim */
        const char *extra;       /* keyd.conf beyond the defaults */
        int clients[2];          /* the two lines */
        bool floor;              /* GET /healthz for reference */
        int target_line;         /* the line (index in clients) the target applies to; -1: every line */
        double target_ratio, target_p50_us;
        const char *target_name;
} Mode;

int main(int argc, char **argv) {
        BenchEnv env;
        char pin_path[512], shim_path[4096], extra[256];
        char *mint_req = NULL, *floor_req = NULL;
        size_t mint_len = 0, floor_len = 0;
        Hsm *h = NULL;
        HsmKey *k = NULL;
        json_t *j = NULL;
        int rc = 1;
        bool missed = false;
        static const char *const keyrings[] = {
                "[keyring " RING "]\nkind = issuer\nalg = ES256\nissuer = https://bench.test\n"
                "rotation-period = 24h\nprepublish = 1h\ntoken-ttl-max = 1h\ndefault-ttl = 15m\n",
                NULL,
        };
        bool network = argc > 1 && strcmp(argv[1], "network") == 0;

        if (argc > 2 || (argc == 2 && !network)) {
                fprintf(stderr, "usage: bench-api [network]\n");
                return 2;
        }
        if (bench_env("bench-api", 2.0, true, &env) < 0)
                return 2;
        Mode mode = {
                .title = "SoftHSM2",
                .keyd_module = env.module,
                .clients = { 1, 2 },
                .floor = true,
                .target_line = 1,
                .target_ratio = TARGET_RATIO,
                .target_p50_us = TARGET_P50_US,
                .target_name = "SPEC §10",
        };
        long token_us = 0, max_sessions = 0;
        if (network) {
                max_sessions = env_long("KEYD_BENCH_MAX_SESSIONS", 64, NET_SESSIONS_MAX);
                token_us = env_long("KEYD_BENCH_TOKEN_US", 2000, NET_TOKEN_US_MAX);
                if (max_sessions < 0 || token_us < 0)
                        return 2;
                if (bench_shim_module(shim_path, sizeof shim_path) < 0) {
                        fprintf(stderr, "bench-api: no PKCS#11 shim at %s (make bench builds it, or set "
                                        "KEYD_BENCH_SHIM)\n",
                                shim_path);
                        return 1;
                }
                /* The shim forwards to the token's module and sleeps token_us in C_Sign: here and in keyd. */
                char us[32];
                snprintf(us, sizeof us, "%ld", token_us);
                if (setenv("P11SHIM_MODULE", env.module, 1) < 0 || setenv("P11SHIM_SIGN_US", us, 1) < 0 ||
                    unsetenv("P11SHIM_CONTROL") < 0)
                        return 1;
                /* 64 clients of one uid, and the bench's own requests, over the default of 32. */
                if (max_sessions > 0)
                        snprintf(extra, sizeof extra,
                                 "[token]\nmax-sessions = %ld\n\n[api]\nmax-connections-per-uid = %d\n", max_sessions,
                                 2 * BENCH_MAX_CLIENTS);
                else
                        snprintf(extra, sizeof extra, "[api]\nmax-connections-per-uid = %d\n", 2 * BENCH_MAX_CLIENTS);
                mode = (Mode){
                        .title = "network HSM (SoftHSM2 behind p11shim)",
                        .keyd_module = shim_path,
                        .extra = extra,
                        .clients = { 16, 64 },
                        .target_line = -1,
                        .target_ratio = NET_TARGET_RATIO,
                        .target_p50_us = NET_TARGET_P50_US,
                        .target_name = "network HSM",
                };
        }
        double seconds = env.seconds;
        int rounds = env.rounds, only = env.clients;
        BenchKeydOpts opts = { .module = mode.keyd_module, .extra = mode.extra };
        if (bench_keyd_start_opts("bench-api", env.module, keyrings, &opts, pin_path, sizeof pin_path) < 0)
                goto out;

        mint_req = bench_http_request("POST", "/v1/keyrings/" RING "/tokens", "{\"sub\":\"agent-1\"}", &mint_len);
        floor_req = bench_http_request("GET", "/healthz", NULL, &floor_len);
        if (!mint_req || !floor_req)
                goto out;
        if (!(j = bench_http_json("POST", "/v1/keyrings/" RING "/tokens", "{\"sub\":\"agent-1\"}", 201)) ||
            !json_is_string(json_object_get(j, "kid"))) {
                fprintf(stderr, "bench-api: the first mint failed\n");
                bench_show_log();
                goto out;
        }

        /* The raw loop goes through the same module as keyd: in network mode, the same latency. */
        HsmConfig cfg = { .module = mode.keyd_module,
                          .uri = "pkcs11:token=keyd-bench",
                          .pin_file = pin_path,
                          .sessions = 2 };
        if (hsm_open(&cfg, &h) < 0) {
                fprintf(stderr, "bench-api: hsm_open: %s\n", hsm_last_error());
                goto out;
        }
        if (bench_open_active_key(h, RING, json_string_value(json_object_get(j, "kid")), &k) < 0) {
                fprintf(stderr, "bench-api: cannot find the keyring's active key in the token: %s\n",
                        hsm_last_error());
                goto out;
        }

        printf("# bench-api: ES256 JWT minting over keyd's Unix socket vs raw C_Sign (CKM_ECDSA), same token and key "
               "(%s)\n# %d round(s) x %.1fs each, alternating raw/mint; N raw threads vs N keep-alive clients%s\n"
               "# cpu = CPU time per op (raw: this process; mint: keyd + clients), cpu_rat = raw_cpu / mint_cpu\n",
               mode.title, rounds, seconds, mode.floor ? "; floor = GET /healthz" : "");
        if (network)
                printf("# token: %ld us of wall-clock latency per C_Sign (KEYD_BENCH_TOKEN_US); keyd: [token] "
                       "max-sessions = %ld (KEYD_BENCH_MAX_SESSIONS, 0: not set)\n",
                       token_us, max_sessions);
        printf("%7s %10s %10s %7s %9s %9s %9s %9s %9s %9s %9s %7s\n", "clients", "raw_ops/s", "mint_ops/s", "ratio",
               "raw_p50", "mint_p50", "p50_diff", "raw_p99", "mint_p99", "raw_cpu", "mint_cpu", "cpu_rat");
        BenchRawSign run = { .hsm = h, .key = k };
        for (int line = 0; line < 2; line++) {
                int clients = only ?: mode.clients[line];
                if (only && line > 0)
                        break;
                BenchResult raw = { 0 }, mint = { 0 }, floor = { 0 };
                for (int i = 0; i < rounds; i++) {
                        if (bench_run_threads(bench_raw_sign_worker, &run, clients, seconds, BENCH_LAT_CAP, &raw) < 0) {
                                fprintf(stderr, "bench-api: raw signing failed: %s\n", hsm_last_error());
                                goto out;
                        }
                        if (bench_run_http(mint_req, mint_len, 201, "\"token\":", clients, seconds, &mint) < 0) {
                                fprintf(stderr, "bench-api: minting failed\n");
                                bench_show_log();
                                goto out;
                        }
                }
                if (mode.floor &&
                    bench_run_http(floor_req, floor_len, 200, "\"status\":\"ok\"", clients, seconds / 2, &floor) < 0) {
                        fprintf(stderr, "bench-api: GET /healthz failed\n");
                        goto out;
                }
                bench_result_sort(&raw);
                bench_result_sort(&mint);
                bench_result_sort(&floor);
                double ratio = bench_rate(&mint) / bench_rate(&raw),
                       diff = bench_pct(&mint, 0.5) - bench_pct(&raw, 0.5);
                printf("%7d %10.0f %10.0f %6.1f%% %7.1fus %7.1fus %+7.1fus %7.1fus %7.1fus %7.1fus %7.1fus %6.1f%%\n",
                       clients, bench_rate(&raw), bench_rate(&mint), 100.0 * ratio, bench_pct(&raw, 0.5),
                       bench_pct(&mint, 0.5), diff, bench_pct(&raw, 0.99), bench_pct(&mint, 0.99),
                       bench_cpu_us(&raw, false), bench_cpu_us(&mint, true),
                       100.0 * bench_cpu_us(&raw, false) / bench_cpu_us(&mint, true));
                if (mode.floor)
                        printf("%7s floor GET /healthz: %.0f ops/s, p50 %.1fus, p99 %.1fus; CPU per op: keyd %.1fus, "
                               "clients %.1fus; mint CPU per op: keyd %.1fus, clients %.1fus\n",
                               "", bench_rate(&floor), bench_pct(&floor, 0.5), bench_pct(&floor, 0.99),
                               bench_us_per_op(floor.daemon_cpu, floor.ops), bench_us_per_op(floor.cpu, floor.ops),
                               bench_us_per_op(mint.daemon_cpu, mint.ops), bench_us_per_op(mint.cpu, mint.ops));
                fflush(stdout);
                /* The local target is stated for 2 clients; the network one for every line. */
                if (mode.target_line < 0 || clients == mode.clients[mode.target_line]) {
                        bool ok = ratio >= mode.target_ratio && diff <= mode.target_p50_us;
                        missed = missed || !ok;
                        printf("# %s, %d clients: mint >= %.0f%% of raw C_Sign and p50 within %.0f us: %s "
                               "(%.1f%%, %+.1f us)\n",
                               mode.target_name, clients, 100 * mode.target_ratio, mode.target_p50_us,
                               ok ? "met" : "MISSED", 100.0 * ratio, diff);
                }
                free(raw.lat);
                free(mint.lat);
                free(floor.lat);
        }
        rc = env.strict && missed ? 1 : 0;
out:
        json_decref(j);
        free(mint_req);
        free(floor_req);
        hsm_key_free(k);
        hsm_close(h);
        bench_cleanup();
        return rc;
}
