/* SPDX-License-Identifier: MIT */
/* Verifying JWTs over keyd's Unix socket against OpenSSL's own verify of the same key, in one run (SPEC §10).
 *
 * The bench makes its own SoftHSM2 token under mkdtemp and starts build/keyd on it with two issuer keyrings, "es"
 * (ES256) and "rs" (RS256, 2048 bits). For each it mints one token, fetches the keyring's JWKS from the socket and
 * builds the public key of the token's kid with jose_jwk_to_pkey().
 *
 * Raw is OpenSSL alone: N threads, each with its own EVP_MD_CTX, EVP_DigestVerifyInit (SHA-256) + EVP_DigestVerify
 * over the token's signing input, the signature decoded (and for ES256 turned into DER) once, before the clock.
 * API is N clients, each a keep-alive HTTP/1.1 connection to keyd's socket writing a prebuilt POST /v1/verify
 * {"token": T} and reading the reply (Content-Length); a request counts when its 200 {"valid":true,...} is read.
 * For reference, "jose" is keyd's own verification code run in this process on N threads (jose_jws_parse,
 * jose_jws_verify_with on the key prepared once, jose_jws_claims, jose_claims_check): what the daemon does minus HTTP, JSON and the key lookup.
 * Rounds alternate raw, jose and API; the ratio is API / raw.
 *
 * Environment: KEYD_BENCH_SECONDS (per round, default 2), KEYD_BENCH_ROUNDS (default 2), KEYD_BENCH_CLIENTS
 * (default 2), SOFTHSM_MODULE, KEYD_BIN (default: ../../keyd next to this executable), KEYD_BENCH_STRICT=1 (exit 1
 * if a target is missed). */
#include <jansson.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jose/b64.h"
#include "jose/jwk.h"
#include "jose/jws.h"
#include "pkcs11/hsm.h"
#include "tests/bench/util.h"

#define TARGET_RATIO 0.70

/* ---- the token under test ---- */

typedef struct Subject {
        const char *ring, *name;
        KeydAlg alg;
        char *token;           /* compact JWS */
        EVP_PKEY *pkey;        /* its public key, from the JWKS */
        JoseVerifier *verifier; /* pkey prepared once, as keyd keeps each key in memory */
        uint8_t *sig;          /* what EVP_DigestVerify takes: DER for ECDSA, the raw signature for RSA */
        size_t sig_len, input_len;
        char *req;             /* POST /v1/verify */
        size_t req_len;
} Subject;

static void subject_done(Subject *s) {
        free(s->token);
        jose_verifier_unref(s->verifier);
        EVP_PKEY_free(s->pkey);
        free(s->sig);
        free(s->req);
}

/* Mint a token on the keyring, find its kid in the keyring's JWKS, prepare everything a loop needs. */
static int subject_prepare(Subject *s) {
        char path[128];
        json_t *minted = NULL, *jwks = NULL, *k;
        const char *kid, *dot;
        void *sig = NULL;
        size_t i, sig_len = 0;
        int r = -1;

        snprintf(path, sizeof path, "/v1/keyrings/%s/tokens", s->ring);
        if (!(minted = bench_http_json("POST", path, "{\"sub\":\"agent-1\"}", 201)))
                goto out;
        s->token = json_is_string(json_object_get(minted, "token"))
                           ? strdup(json_string_value(json_object_get(minted, "token")))
                           : NULL;
        kid = json_string_value(json_object_get(minted, "kid"));
        snprintf(path, sizeof path, "/v1/keyrings/%s/jwks", s->ring);
        if (!s->token || !kid) {
                fprintf(stderr, "bench-verify: minting on %s gave no token or kid\n", s->ring);
                goto out;
        }
        if (!(jwks = bench_http_json("GET", path, NULL, 200)))
                goto out;
        json_array_foreach(json_object_get(jwks, "keys"), i, k) {
                const char *v = json_string_value(json_object_get(k, "kid"));
                if (v && strcmp(v, kid) == 0 && !s->pkey && jose_jwk_to_pkey(k, &s->pkey) < 0)
                        goto out;
        }
        if (!s->pkey) {
                fprintf(stderr, "bench-verify: kid %s is not in the JWKS of %s\n", kid, s->ring);
                goto out;
        }
        if (jose_verifier_new(s->pkey, s->alg, &s->verifier) < 0)
                goto out;
        dot = strrchr(s->token, '.');
        if (!dot || jose_b64url_decode(dot + 1, strlen(dot + 1), &sig, &sig_len) < 0)
                goto out;
        s->input_len = (size_t) (dot - s->token);
        if (s->alg == KEYD_ALG_ES256) {
                if (sig_len != 64)
                        goto out;
                ECDSA_SIG *es = ECDSA_SIG_new();
                BIGNUM *br = BN_bin2bn(sig, 32, NULL), *bs = BN_bin2bn((uint8_t *) sig + 32, 32, NULL);
                unsigned char *der = NULL;
                int n = -1;
                if (es && br && bs && ECDSA_SIG_set0(es, br, bs) == 1) {
                        br = bs = NULL;
                        n = i2d_ECDSA_SIG(es, &der);
                }
                BN_free(br);
                BN_free(bs);
                ECDSA_SIG_free(es);
                if (n <= 0)
                        goto out;
                s->sig = malloc((size_t) n);
                if (s->sig)
                        memcpy(s->sig, der, (size_t) n);
                OPENSSL_free(der);
                s->sig_len = (size_t) n;
        } else {
                s->sig = malloc(sig_len);
                if (s->sig)
                        memcpy(s->sig, sig, sig_len);
                s->sig_len = sig_len;
        }
        if (!s->sig)
                goto out;
        json_t *vb = json_pack("{s:s}", "token", s->token);
        char *vbody = vb ? json_dumps(vb, JSON_COMPACT) : NULL;
        json_decref(vb);
        if (vbody)
                s->req = bench_http_request("POST", "/v1/verify", vbody, &s->req_len);
        free(vbody);
        r = s->req ? 0 : -1;
out:
        free(sig);
        json_decref(minted);
        json_decref(jwks);
        return r;
}

/* ---- raw OpenSSL and keyd's jose code, in-process ---- */

/* What a thread verifies, and how: OpenSSL alone (raw) or keyd's jose code. */
typedef struct LocalRun {
        const Subject *subject;
        bool jose;
} LocalRun;

/* A thread's own state: its run and its OpenSSL context. */
typedef struct LocalThread {
        const LocalRun *run;
        EVP_MD_CTX *ctx;
} LocalThread;

static bool verify_raw(EVP_MD_CTX *ctx, const Subject *s) {
        if (EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, s->pkey) != 1)
                return false;
        return EVP_DigestVerify(ctx, s->sig, s->sig_len, (const unsigned char *) s->token, s->input_len) == 1;
}

static bool verify_jose(const Subject *s) {
        JoseJws *jws = NULL;
        json_t *claims = NULL;
        JoseResult res = jose_jws_parse(s->token, strlen(s->token), &jws);
        if (res == JOSE_OK)
                res = jose_jws_verify_with(jws, s->verifier);
        if (res == JOSE_OK)
                res = jose_jws_claims(jws, &claims);
        if (res == JOSE_OK) {
                JoseClaimsCheck check = { .now = (int64_t) time(NULL) };
                res = jose_claims_check(claims, &check);
        }
        json_decref(claims);
        jose_jws_free(jws);
        return res == JOSE_OK;
}

static int local_verify(void *arg) {
        LocalThread *t = arg;
        return (t->run->jose ? verify_jose(t->run->subject) : verify_raw(t->ctx, t->run->subject)) ? 0 : -1;
}

static void *local_worker(void *arg) {
        BenchThread *r = arg;
        LocalThread t = { .run = r->arg, .ctx = EVP_MD_CTX_new() };

        if (!t.ctx) {
                r->failed = 1;
                return NULL;
        }
        bench_thread_loop(r, local_verify, &t);
        EVP_MD_CTX_free(t.ctx);
        return NULL;
}

int main(void) {
        BenchEnv env;
        char pin_path[512];
        Subject subjects[] = { { .ring = "es", .name = "ES256", .alg = KEYD_ALG_ES256 },
                               { .ring = "rs", .name = "RS256", .alg = KEYD_ALG_RS256 } };
        int rc = 1;
        bool missed = false;
        static const char *const keyrings[] = {
                "[keyring es]\nkind = issuer\nalg = ES256\nissuer = https://es.bench.test\n"
                "rotation-period = 24h\nprepublish = 1h\ntoken-ttl-max = 1h\ndefault-ttl = 1h\n",
                "[keyring rs]\nkind = issuer\nalg = RS256\nrsa-bits = 2048\nissuer = https://rs.bench.test\n"
                "rotation-period = 24h\nprepublish = 1h\ntoken-ttl-max = 1h\ndefault-ttl = 1h\n",
                NULL,
        };

        if (bench_env("bench-verify", 2.0, true, &env) < 0)
                return 2;
        double seconds = env.seconds;
        int rounds = env.rounds, clients = env.clients ?: 2;
        if (bench_keyd_start("bench-verify", env.module, keyrings, pin_path, sizeof pin_path) < 0)
                goto out;
        for (size_t a = 0; a < sizeof subjects / sizeof subjects[0]; a++)
                if (subject_prepare(&subjects[a]) < 0) {
                        bench_show_log();
                        goto out;
                }

        printf("# bench-verify: POST /v1/verify over keyd's Unix socket vs OpenSSL EVP_DigestVerify, same public key\n"
               "# %d round(s) x %.1fs each, alternating raw/jose/api; %d OpenSSL thread(s) vs %d keep-alive client(s); "
               "jose = keyd's verify code in-process\n"
               "# cpu = CPU time per op (raw, jose: this process; api: keyd + clients), cpu_rat = raw_cpu / api_cpu\n",
               rounds, seconds, clients, clients);
        printf("%-6s %7s %10s %10s %10s %7s %9s %9s %9s %9s %9s %9s %9s %9s %7s\n", "alg", "clients", "raw_ops/s",
               "jose_ops/s", "api_ops/s", "ratio", "raw_p50", "jose_p50", "api_p50", "raw_p99", "api_p99", "raw_cpu",
               "jose_cpu", "api_cpu", "cpu_rat");
        for (size_t a = 0; a < sizeof subjects / sizeof subjects[0]; a++) {
                Subject *s = &subjects[a];
                LocalRun raw_run = { .subject = s }, jose_run = { .subject = s, .jose = true };
                BenchResult raw = { 0 }, jose = { 0 }, api = { 0 };
                for (int i = 0; i < rounds; i++) {
                        if (bench_run_threads(local_worker, &raw_run, clients, seconds, BENCH_LAT_CAP, &raw) < 0 ||
                            bench_run_threads(local_worker, &jose_run, clients, seconds, BENCH_LAT_CAP, &jose) < 0) {
                                fprintf(stderr, "bench-verify: %s does not verify in-process\n", s->name);
                                goto out;
                        }
                        if (bench_run_http(s->req, s->req_len, 200, "\"valid\":true", clients, seconds, &api) < 0) {
                                fprintf(stderr, "bench-verify: POST /v1/verify failed\n");
                                bench_show_log();
                                goto out;
                        }
                }
                bench_result_sort(&raw);
                bench_result_sort(&jose);
                bench_result_sort(&api);
                double ratio = bench_rate(&api) / bench_rate(&raw);
                printf("%-6s %7d %10.0f %10.0f %10.0f %6.1f%% %7.1fus %7.1fus %7.1fus %7.1fus %7.1fus %7.1fus %7.1fus "
                       "%7.1fus %6.1f%%\n",
                       s->name, clients, bench_rate(&raw), bench_rate(&jose), bench_rate(&api), 100.0 * ratio,
                       bench_pct(&raw, 0.5), bench_pct(&jose, 0.5), bench_pct(&api, 0.5), bench_pct(&raw, 0.99),
                       bench_pct(&api, 0.99), bench_cpu_us(&raw, false), bench_cpu_us(&jose, false),
                       bench_cpu_us(&api, true), 100.0 * bench_cpu_us(&raw, false) / bench_cpu_us(&api, true));
                printf("%-6s %7s api CPU per op: keyd %.1fus, clients %.1fus\n", "", "",
                       bench_us_per_op(api.daemon_cpu, api.ops), bench_us_per_op(api.cpu, api.ops));
                fflush(stdout);
                if (ratio < TARGET_RATIO)
                        missed = true;
                free(raw.lat);
                free(jose.lat);
                free(api.lat);
        }
        printf("# SPEC §10: verify >= %.0f%% of OpenSSL's rate for the same key: %s\n", 100 * TARGET_RATIO,
               missed ? "MISSED" : "met");
        rc = env.strict && missed ? 1 : 0;
out:
        for (size_t a = 0; a < sizeof subjects / sizeof subjects[0]; a++)
                subject_done(&subjects[a]);
        bench_cleanup();
        return rc;
}
