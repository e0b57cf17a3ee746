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
 * jose_jws_verify, jose_jws_claims, jose_claims_check): what the daemon does minus HTTP, JSON and the key lookup.
 * Rounds alternate raw, jose and API; the ratio is API / raw.
 *
 * Environment: KEYD_BENCH_SECONDS (per round, default 2), KEYD_BENCH_ROUNDS (default 2), KEYD_BENCH_CLIENTS
 * (default 2), SOFTHSM_MODULE, KEYD_BIN (default: ../../keyd next to this executable), KEYD_BENCH_STRICT=1 (exit 1
 * if a target is missed). */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <limits.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "jose/b64.h"
#include "jose/jwk.h"
#include "jose/jws.h"
#include "pkcs11/hsm.h"

#define MAX_CLIENTS 8
#define LAT_CAP 1000000
#define TARGET_RATIO 0.70

static char tmpdir[] = "/tmp/keyd-bench-verify.XXXXXX";
static bool have_tmpdir;
static volatile pid_t daemon_pid;
static char sock_path[100];

/* ---- time and results ---- */

static double now_s(void) {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        return (double) t.tv_sec + (double) t.tv_nsec / 1e9;
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
        double cpu, daemon_cpu; /* CPU seconds used: this process, keyd */
} Result;

static double pct(const Result *r, double p) {
        if (r->n_lat == 0)
                return 0;
        return r->lat[(long) ((double) (r->n_lat - 1) * p)] * 1e6;
}

static double rate(const Result *r) {
        return r->seconds > 0 ? (double) r->ops / r->seconds : 0;
}

static int result_add(Result *acc, const double *lat, long ops, double seconds) {
        long n = ops < LAT_CAP ? ops : LAT_CAP;
        double *l = realloc(acc->lat, sizeof(double) * (size_t) (acc->n_lat + n + 1));
        if (!l)
                return -1;
        acc->lat = l;
        memcpy(acc->lat + acc->n_lat, lat, sizeof(double) * (size_t) n);
        acc->n_lat += n;
        acc->ops += ops;
        acc->seconds += seconds;
        return 0;
}

/* CPU time (user + system) of this process, and of keyd from /proc (every thread, the exited ones too). On a shared
 * machine, CPU per operation is what the neighbours do not change; ops/s and latency are what a caller sees. */
static double self_cpu(void) {
        struct rusage ru;
        if (getrusage(RUSAGE_SELF, &ru) < 0)
                return 0;
        return (double) ru.ru_utime.tv_sec + (double) ru.ru_utime.tv_usec / 1e6 + (double) ru.ru_stime.tv_sec +
               (double) ru.ru_stime.tv_usec / 1e6;
}

static double daemon_cpu(void) {
        char path[64], buf[1024];
        unsigned long long utime = 0, stime = 0;
        ssize_t n;
        int fd;

        snprintf(path, sizeof path, "/proc/%d/stat", (int) daemon_pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return 0;
        n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n <= 0)
                return 0;
        buf[n] = 0;
        const char *p = strrchr(buf, ')'); /* the name may hold anything; fields 3.. follow the last ')' */
        if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2)
                return 0;
        return (double) (utime + stime) / (double) sysconf(_SC_CLK_TCK);
}

static double us_per_op(double seconds, long ops) {
        return ops > 0 ? seconds * 1e6 / (double) ops : 0;
}

static double cpu_us(const Result *r, bool with_daemon) {
        return us_per_op(r->cpu + (with_daemon ? r->daemon_cpu : 0), r->ops);
}

static void result_sort(Result *r) {
        qsort(r->lat, (size_t) r->n_lat, sizeof(double), cmp_double);
}

/* ---- files, token, daemon ---- */

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
        have_tmpdir = true;
        snprintf(path, sizeof path, "%s/tokens", tmpdir);
        if (mkdir(path, 0700) < 0)
                return -1;
        snprintf(conf, sizeof conf,
                 "directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
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

static int write_config(const char *module, const char *pin_path, char *ret, size_t size) {
        struct passwd *pw = getpwuid(getuid());
        char text[4096];

        if (!pw)
                return -1;
        snprintf(text, sizeof text,
                 "[token]\nmodule = %s\nuri = pkcs11:token=keyd-bench\npin-file = %s\n"
                 "softhsm2-conf = %s/softhsm2.conf\n\n[store]\npath = %s/keyd.db\n\n[api]\nsocket = %s\nworkers = 2\n\n"
                 "[keyring es]\nkind = issuer\nalg = ES256\nissuer = https://es.bench.test\n"
                 "rotation-period = 24h\nprepublish = 1h\ntoken-ttl-max = 1h\ndefault-ttl = 1h\nsign-users = %s\n\n"
                 "[keyring rs]\nkind = issuer\nalg = RS256\nrsa-bits = 2048\nissuer = https://rs.bench.test\n"
                 "rotation-period = 24h\nprepublish = 1h\ntoken-ttl-max = 1h\ndefault-ttl = 1h\nsign-users = %s\n",
                 module, pin_path, tmpdir, tmpdir, sock_path, pw->pw_name, pw->pw_name);
        snprintf(ret, size, "%s/keyd.conf", tmpdir);
        return write_file(ret, text);
}

static int keyd_binary(char *ret, size_t size) {
        char self[PATH_MAX];
        const char *e = getenv("KEYD_BIN");
        if (e && *e) {
                snprintf(ret, size, "%s", e);
                return access(ret, X_OK);
        }
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n <= 0)
                return -1;
        self[n] = 0;
        snprintf(ret, size, "%s/../../keyd", dirname(self));
        return access(ret, X_OK);
}

static void stop_daemon(void) {
        pid_t pid = daemon_pid;
        int status;
        if (pid <= 0)
                return;
        kill(pid, SIGTERM);
        for (int i = 0; i < 1000; i++) { /* 10 s, then SIGKILL */
                if (waitpid(pid, &status, WNOHANG) == pid) {
                        daemon_pid = 0;
                        return;
                }
                usleep(10000);
        }
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        daemon_pid = 0;
}

static void cleanup(void) {
        char cmd[600];
        stop_daemon();
        if (have_tmpdir && strncmp(tmpdir, "/tmp/keyd-bench-verify.", 23) == 0) {
                snprintf(cmd, sizeof cmd, "rm -rf -- '%s'", tmpdir);
                (void) !system(cmd);
                have_tmpdir = false;
        }
}

static void on_signal(int sig) {
        if (daemon_pid > 0)
                kill(daemon_pid, SIGKILL);
        _exit(128 + sig);
}

static void show_log(void) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "tail -n 20 '%s/keyd.log' >&2", tmpdir);
        (void) !system(cmd);
}

/* ---- HTTP over the Unix socket: one keep-alive connection, one request at a time ---- */

typedef struct Conn {
        int fd;
        size_t len; /* bytes in buf */
        char buf[65536];
} Conn;

static int conn_open(Conn *c) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock_path);
        c->len = 0;
        c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c->fd < 0)
                return -1;
        if (connect(c->fd, (struct sockaddr *) &sa, sizeof sa) < 0) {
                close(c->fd);
                c->fd = -1;
                return -1;
        }
        return 0;
}

static void conn_close(Conn *c) {
        if (c->fd >= 0)
                close(c->fd);
        c->fd = -1;
}

/* Send req, read one reply: its status, and the body (pointing into c->buf, valid until the next call). */
static int conn_roundtrip(Conn *c, const char *req, size_t req_len, int *ret_status, const char **ret_body,
                          size_t *ret_body_len) {
        size_t off = 0, head = 0, clen = 0;

        while (off < req_len) {
                ssize_t n = write(c->fd, req + off, req_len - off);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return -1;
                off += (size_t) n;
        }
        c->len = 0;
        for (;;) {
                if (!head) {
                        char *e = c->len >= 4 ? memmem(c->buf, c->len, "\r\n\r\n", 4) : NULL;
                        if (e) {
                                head = (size_t) (e - c->buf) + 4;
                                bool found = false;
                                for (char *l = strstr(c->buf, "\r\n"); l && l < e; l = strstr(l + 2, "\r\n"))
                                        if (strncasecmp(l + 2, "Content-Length:", 15) == 0) {
                                                clen = strtoul(l + 17, NULL, 10);
                                                found = true;
                                        }
                                if (!found || head + clen > sizeof c->buf - 1)
                                        return -1;
                        }
                }
                if (head && c->len >= head + clen)
                        break;
                ssize_t n = read(c->fd, c->buf + c->len, sizeof c->buf - 1 - c->len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return -1;
                c->len += (size_t) n;
                c->buf[c->len] = 0;
        }
        if (strncmp(c->buf, "HTTP/1.1 ", 9) != 0)
                return -1;
        *ret_status = atoi(c->buf + 9);
        *ret_body = c->buf + head;
        *ret_body_len = clen;
        return 0;
}

static char *build_request(const char *method, const char *path, const char *body, size_t *ret_len) {
        char *s = NULL;
        int n = body ? asprintf(&s,
                                "%s %s HTTP/1.1\r\nHost: keyd\r\nContent-Type: application/json\r\n"
                                "Content-Length: %zu\r\n\r\n%s",
                                method, path, strlen(body), body)
                     : asprintf(&s, "%s %s HTTP/1.1\r\nHost: keyd\r\n\r\n", method, path);
        if (n < 0)
                return NULL;
        *ret_len = (size_t) n;
        return s;
}

/* One request on a fresh connection; the body is copied into a new string. */
static int http_once(const char *method, const char *path, const char *body, int *ret_status, char **ret_body) {
        Conn *c = malloc(sizeof *c);
        size_t len, blen;
        const char *b;
        int r = -1;
        char *req = build_request(method, path, body, &len);

        if (c && req && conn_open(c) == 0) {
                r = conn_roundtrip(c, req, len, ret_status, &b, &blen);
                if (r == 0 && ret_body)
                        *ret_body = strndup(b, blen);
                conn_close(c);
        }
        free(req);
        free(c);
        return r;
}

static int start_daemon(const char *keyd, const char *config) {
        char log_path[512];
        int status;
        pid_t pid;

        snprintf(log_path, sizeof log_path, "%s/keyd.log", tmpdir);
        pid = fork();
        if (pid < 0)
                return -1;
        if (pid == 0) {
                int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
                (void) prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlive the bench */
                if (fd >= 0) {
                        dup2(fd, STDOUT_FILENO);
                        dup2(fd, STDERR_FILENO);
                }
                unsetenv("NOTIFY_SOCKET");
                unsetenv("LISTEN_FDS");
                unsetenv("LISTEN_PID");
                execl(keyd, "keyd", "--config", config, (char *) NULL);
                _exit(127);
        }
        daemon_pid = pid;
        /* Ready when GET /healthz answers 200; at most 30 s. */
        double end = now_s() + 30;
        while (now_s() < end) {
                int st;
                if (waitpid(pid, &status, WNOHANG) == pid) {
                        daemon_pid = 0;
                        fprintf(stderr, "bench-verify: keyd exited during start-up (status %d)\n", status);
                        show_log();
                        return -1;
                }
                if (http_once("GET", "/healthz", NULL, &st, NULL) == 0 && st == 200)
                        return 0;
                usleep(20000);
        }
        fprintf(stderr, "bench-verify: keyd did not answer /healthz within 30 s\n");
        show_log();
        return -1;
}

/* ---- HTTP clients ---- */

typedef struct HttpRun {
        const char *req;
        size_t req_len;
        int want_status;
        const char *want_text; /* checked in every reply */
        double seconds;
        pthread_barrier_t *start;
        long ops;
        double *lat;
        int failed;
        Conn conn;
} HttpRun;

static bool reply_ok(HttpRun *r, int status, const char *body, size_t len) {
        return status == r->want_status && (!r->want_text || memmem(body, len, r->want_text, strlen(r->want_text)));
}

static void *http_worker(void *arg) {
        HttpRun *r = arg;
        const char *body;
        size_t blen;
        int status;

        /* Connect and warm the connection (keyd's thread for it) before the clock starts. */
        if (conn_open(&r->conn) < 0 || conn_roundtrip(&r->conn, r->req, r->req_len, &status, &body, &blen) < 0 ||
            !reply_ok(r, status, body, blen))
                r->failed = 1;
        pthread_barrier_wait(r->start);
        double end = now_s() + r->seconds;
        while (!r->failed) {
                double t0 = now_s();
                if (t0 > end)
                        break;
                if (conn_roundtrip(&r->conn, r->req, r->req_len, &status, &body, &blen) < 0 ||
                    !reply_ok(r, status, body, blen)) {
                        fprintf(stderr, "bench-verify: unexpected reply (status %d): %.*s\n", status, (int) blen, body);
                        r->failed = 1;
                        break;
                }
                if (r->ops < LAT_CAP)
                        r->lat[r->ops] = now_s() - t0;
                r->ops++;
        }
        conn_close(&r->conn);
        return NULL;
}

static int run_http(const char *req, size_t req_len, int want_status, const char *want_text, int clients,
                    double seconds, Result *acc) {
        pthread_t t[MAX_CLIENTS];
        HttpRun *r = calloc(MAX_CLIENTS, sizeof *r);
        pthread_barrier_t start;
        int rc = 0;

        if (!r)
                return -1;
        pthread_barrier_init(&start, NULL, (unsigned) clients + 1);
        for (int i = 0; i < clients; i++) {
                r[i].req = req;
                r[i].req_len = req_len;
                r[i].want_status = want_status;
                r[i].want_text = want_text;
                r[i].seconds = seconds;
                r[i].start = &start;
                r[i].conn.fd = -1;
                r[i].lat = malloc(sizeof(double) * LAT_CAP);
                if (!r[i].lat || pthread_create(&t[i], NULL, http_worker, &r[i]) != 0)
                        return -1;
        }
        pthread_barrier_wait(&start); /* every client connected and warmed */
        double c0 = self_cpu(), d0 = daemon_cpu();
        for (int i = 0; i < clients; i++) {
                pthread_join(t[i], NULL);
                if (r[i].failed || result_add(acc, r[i].lat, r[i].ops, i == 0 ? seconds : 0) < 0)
                        rc = -1;
                free(r[i].lat);
        }
        acc->cpu += self_cpu() - c0;
        acc->daemon_cpu += daemon_cpu() - d0;
        pthread_barrier_destroy(&start);
        free(r);
        return rc;
}

/* ---- the token under test ---- */

typedef struct Subject {
        const char *ring, *name;
        KeydAlg alg;
        char *token;           /* compact JWS */
        EVP_PKEY *pkey;        /* its public key, from the JWKS */
        uint8_t *sig;          /* what EVP_DigestVerify takes: DER for ECDSA, the raw signature for RSA */
        size_t sig_len, input_len;
        char *req;             /* POST /v1/verify */
        size_t req_len;
} Subject;

static void subject_done(Subject *s) {
        free(s->token);
        EVP_PKEY_free(s->pkey);
        free(s->sig);
        free(s->req);
}

/* Mint a token on the keyring, find its kid in the keyring's JWKS, prepare everything a loop needs. */
static int subject_prepare(Subject *s) {
        char path[128], *body = NULL;
        json_t *minted = NULL, *jwks = NULL, *k;
        const char *kid, *dot;
        void *sig = NULL;
        size_t i, sig_len = 0;
        int status = 0, r = -1;

        snprintf(path, sizeof path, "/v1/keyrings/%s/tokens", s->ring);
        if (http_once("POST", path, "{\"sub\":\"agent-1\"}", &status, &body) < 0 || status != 201 ||
            !(minted = json_loads(body, 0, NULL)) || !json_is_string(json_object_get(minted, "token"))) {
                fprintf(stderr, "bench-verify: minting on %s failed (status %d): %s\n", s->ring, status, body ?: "");
                goto out;
        }
        s->token = strdup(json_string_value(json_object_get(minted, "token")));
        kid = json_string_value(json_object_get(minted, "kid"));
        free(body);
        body = NULL;
        snprintf(path, sizeof path, "/v1/keyrings/%s/jwks", s->ring);
        if (!s->token || !kid || http_once("GET", path, NULL, &status, &body) < 0 || status != 200 ||
            !(jwks = json_loads(body, 0, NULL))) {
                fprintf(stderr, "bench-verify: GET %s failed (status %d): %s\n", path, status, body ?: "");
                goto out;
        }
        json_array_foreach(json_object_get(jwks, "keys"), i, k) {
                const char *v = json_string_value(json_object_get(k, "kid"));
                if (v && strcmp(v, kid) == 0 && !s->pkey && jose_jwk_to_pkey(k, &s->pkey) < 0)
                        goto out;
        }
        if (!s->pkey) {
                fprintf(stderr, "bench-verify: kid %s is not in the JWKS of %s\n", kid, s->ring);
                goto out;
        }
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
                s->req = build_request("POST", "/v1/verify", vbody, &s->req_len);
        free(vbody);
        r = s->req ? 0 : -1;
out:
        free(sig);
        free(body);
        json_decref(minted);
        json_decref(jwks);
        return r;
}

/* ---- raw OpenSSL and keyd's jose code, in-process ---- */

typedef struct LocalRun {
        const Subject *subject;
        bool jose;
        double seconds;
        long ops;
        double *lat;
        int failed;
} LocalRun;

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
                res = jose_jws_verify(jws, s->pkey, s->alg);
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

static void *local_worker(void *arg) {
        LocalRun *r = arg;
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();

        if (!ctx) {
                r->failed = 1;
                return NULL;
        }
        double end = now_s() + r->seconds;
        for (;;) {
                double t0 = now_s();
                if (t0 > end)
                        break;
                if (!(r->jose ? verify_jose(r->subject) : verify_raw(ctx, r->subject))) {
                        r->failed = 1;
                        break;
                }
                if (r->ops < LAT_CAP)
                        r->lat[r->ops] = now_s() - t0;
                r->ops++;
        }
        EVP_MD_CTX_free(ctx);
        return NULL;
}

static int run_local(const Subject *s, bool jose, int threads, double seconds, Result *acc) {
        pthread_t t[MAX_CLIENTS];
        LocalRun r[MAX_CLIENTS];
        int rc = 0;
        double c0 = self_cpu();

        for (int i = 0; i < threads; i++) {
                r[i] = (LocalRun){ .subject = s, .jose = jose, .seconds = seconds };
                r[i].lat = malloc(sizeof(double) * LAT_CAP);
                if (!r[i].lat || pthread_create(&t[i], NULL, local_worker, &r[i]) != 0)
                        return -1;
        }
        for (int i = 0; i < threads; i++) {
                pthread_join(t[i], NULL);
                if (r[i].failed || result_add(acc, r[i].lat, r[i].ops, i == 0 ? seconds : 0) < 0)
                        rc = -1;
                free(r[i].lat);
        }
        acc->cpu += self_cpu() - c0;
        return rc;
}

int main(void) {
        const char *module = getenv("SOFTHSM_MODULE") && *getenv("SOFTHSM_MODULE") ? getenv("SOFTHSM_MODULE")
                                                                                  : KEYD_DEFAULT_MODULE;
        double seconds = getenv("KEYD_BENCH_SECONDS") ? atof(getenv("KEYD_BENCH_SECONDS")) : 2.0;
        int rounds = getenv("KEYD_BENCH_ROUNDS") ? atoi(getenv("KEYD_BENCH_ROUNDS")) : 2;
        int clients = getenv("KEYD_BENCH_CLIENTS") ? atoi(getenv("KEYD_BENCH_CLIENTS")) : 2;
        bool strict = getenv("KEYD_BENCH_STRICT") && strcmp(getenv("KEYD_BENCH_STRICT"), "1") == 0;
        char pin_path[512], config[512], keyd[PATH_MAX + 16];
        Subject subjects[] = { { .ring = "es", .name = "ES256", .alg = KEYD_ALG_ES256 },
                               { .ring = "rs", .name = "RS256", .alg = KEYD_ALG_RS256 } };
        int rc = 1;
        bool missed = false;

        if (seconds <= 0 || seconds > 60 || rounds < 1 || rounds > 20 || clients < 1 || clients > MAX_CLIENTS) {
                fprintf(stderr, "bench-verify: KEYD_BENCH_SECONDS must be in (0, 60], KEYD_BENCH_ROUNDS in [1, 20], "
                                "KEYD_BENCH_CLIENTS in [1, %d]\n",
                        MAX_CLIENTS);
                return 2;
        }
        if (keyd_binary(keyd, sizeof keyd) < 0) {
                fprintf(stderr, "bench-verify: no keyd binary at %s (build it, or set KEYD_BIN)\n", keyd);
                return 1;
        }
        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
        signal(SIGPIPE, SIG_IGN);
        if (make_token(module, pin_path, sizeof pin_path) < 0) {
                fprintf(stderr, "bench-verify: cannot create a SoftHSM2 token: %m\n");
                goto out;
        }
        snprintf(sock_path, sizeof sock_path, "%s/keyd.sock", tmpdir);
        if (write_config(module, pin_path, config, sizeof config) < 0 || start_daemon(keyd, config) < 0)
                goto out;
        for (size_t a = 0; a < sizeof subjects / sizeof subjects[0]; a++)
                if (subject_prepare(&subjects[a]) < 0) {
                        show_log();
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
                Result raw = { 0 }, jose = { 0 }, api = { 0 };
                for (int i = 0; i < rounds; i++) {
                        if (run_local(s, false, clients, seconds, &raw) < 0 ||
                            run_local(s, true, clients, seconds, &jose) < 0) {
                                fprintf(stderr, "bench-verify: %s does not verify in-process\n", s->name);
                                goto out;
                        }
                        if (run_http(s->req, s->req_len, 200, "\"valid\":true", clients, seconds, &api) < 0) {
                                fprintf(stderr, "bench-verify: POST /v1/verify failed\n");
                                show_log();
                                goto out;
                        }
                }
                result_sort(&raw);
                result_sort(&jose);
                result_sort(&api);
                double ratio = rate(&api) / rate(&raw);
                printf("%-6s %7d %10.0f %10.0f %10.0f %6.1f%% %7.1fus %7.1fus %7.1fus %7.1fus %7.1fus %7.1fus %7.1fus "
                       "%7.1fus %6.1f%%\n",
                       s->name, clients, rate(&raw), rate(&jose), rate(&api), 100.0 * ratio, pct(&raw, 0.5),
                       pct(&jose, 0.5), pct(&api, 0.5), pct(&raw, 0.99), pct(&api, 0.99), cpu_us(&raw, false),
                       cpu_us(&jose, false), cpu_us(&api, true), 100.0 * cpu_us(&raw, false) / cpu_us(&api, true));
                printf("%-6s %7s api CPU per op: keyd %.1fus, clients %.1fus\n", "", "",
                       us_per_op(api.daemon_cpu, api.ops), us_per_op(api.cpu, api.ops));
                fflush(stdout);
                if (ratio < TARGET_RATIO)
                        missed = true;
                free(raw.lat);
                free(jose.lat);
                free(api.lat);
        }
        printf("# SPEC §10: verify >= %.0f%% of OpenSSL's rate for the same key: %s\n", 100 * TARGET_RATIO,
               missed ? "MISSED" : "met");
        rc = strict && missed ? 1 : 0;
out:
        for (size_t a = 0; a < sizeof subjects / sizeof subjects[0]; a++)
                subject_done(&subjects[a]);
        cleanup();
        return rc;
}
