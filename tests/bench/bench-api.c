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
 * Environment: KEYD_BENCH_SECONDS (per round, default 2), KEYD_BENCH_ROUNDS (default 2), KEYD_BENCH_CLIENTS (only
 * this number of clients, default 1 then 2), SOFTHSM_MODULE, KEYD_BIN (default: ../../keyd next to this executable),
 * KEYD_BENCH_STRICT=1 (exit 1 if a target is missed). */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <limits.h>
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

#include "pkcs11/hsm-internal.h"
#include "store/store.h"

#define MAX_CLIENTS 8
#define LAT_CAP 1000000
#define RING "bench"
#define TARGET_RATIO 0.85
#define TARGET_P50_US 100.0

static char tmpdir[] = "/tmp/keyd-bench-api.XXXXXX";
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
        char text[2048];

        if (!pw)
                return -1;
        snprintf(text, sizeof text,
                 "[token]\nmodule = %s\nuri = pkcs11:token=keyd-bench\npin-file = %s\n"
                 "softhsm2-conf = %s/softhsm2.conf\n\n[store]\npath = %s/keyd.db\n\n[api]\nsocket = %s\nworkers = 2\n\n"
                 "[keyring " RING "]\nkind = issuer\nalg = ES256\nissuer = https://bench.test\n"
                 "rotation-period = 24h\nprepublish = 1h\ntoken-ttl-max = 1h\ndefault-ttl = 15m\nsign-users = %s\n",
                 module, pin_path, tmpdir, tmpdir, sock_path, pw->pw_name);
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
        if (have_tmpdir && strncmp(tmpdir, "/tmp/keyd-bench-api.", 20) == 0) {
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
                        fprintf(stderr, "bench-api: keyd exited during start-up (status %d)\n", status);
                        show_log();
                        return -1;
                }
                if (http_once("GET", "/healthz", NULL, &st, NULL) == 0 && st == 200)
                        return 0;
                usleep(20000);
        }
        fprintf(stderr, "bench-api: keyd did not answer /healthz within 30 s\n");
        show_log();
        return -1;
}

/* ---- raw C_Sign ---- */

typedef struct RawRun {
        Hsm *hsm;
        HsmKey *key;
        double seconds;
        long ops;
        double *lat;
        int failed;
} RawRun;

static void *raw_worker(void *arg) {
        RawRun *r = arg;
        Hsm *h = r->hsm;
        HsmKey *k = r->key;
        uint8_t digest[32], sig[HSM_SIG_MAX];
        CK_SESSION_HANDLE s;
        CK_OBJECT_HANDLE priv;
        CK_MECHANISM m = k->mech;

        memset(digest, 'a', sizeof digest);
        if (h->f->C_OpenSession(h->slot, CKF_SERIAL_SESSION, NULL, NULL, &s) != CKR_OK) {
                r->failed = 1;
                return NULL;
        }
        if (hsm_find_one(h, s, CKO_PRIVATE_KEY, k->id, k->id_len, &priv) < 0) {
                h->f->C_CloseSession(s);
                r->failed = 1;
                return NULL;
        }
        double end = now_s() + r->seconds;
        for (;;) {
                double t0 = now_s();
                if (t0 > end)
                        break;
                CK_ULONG sl = sizeof sig;
                CK_RV rv = h->f->C_SignInit(s, &m, priv);
                if (rv == CKR_OK)
                        rv = h->f->C_Sign(s, digest, sizeof digest, sig, &sl);
                if (rv != CKR_OK) {
                        r->failed = 1;
                        break;
                }
                if (r->ops < LAT_CAP)
                        r->lat[r->ops] = now_s() - t0;
                r->ops++;
        }
        h->f->C_CloseSession(s);
        return NULL;
}

static int run_raw(Hsm *h, HsmKey *k, int threads, double seconds, Result *acc) {
        pthread_t t[MAX_CLIENTS];
        RawRun r[MAX_CLIENTS];
        int rc = 0;
        double c0 = self_cpu();

        for (int i = 0; i < threads; i++) {
                r[i] = (RawRun){ .hsm = h, .key = k, .seconds = seconds };
                r[i].lat = malloc(sizeof(double) * LAT_CAP);
                if (!r[i].lat || pthread_create(&t[i], NULL, raw_worker, &r[i]) != 0)
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
                        fprintf(stderr, "bench-api: unexpected reply (status %d): %.*s\n", status, (int) blen, body);
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

/* ---- the active key of the keyring, as keyd's store names it ---- */

static int find_active_key(Hsm *h, const char *kid, HsmKey **ret) {
        char db[512];
        Store *s = NULL;
        StoreKey **keys = NULL;
        size_t n = 0;
        uint8_t id[HSM_ID_MAX];
        size_t id_len = 0;
        int r = -ENOENT;

        snprintf(db, sizeof db, "%s/keyd.db", tmpdir);
        if (store_open(db, STORE_READ_ONLY, &s) < 0)
                return -EIO;
        if (store_key_list(s, RING, &keys, &n) < 0) {
                store_close(s);
                return -EIO;
        }
        for (size_t i = 0; i < n; i++)
                if (keys[i]->state == KEY_STATE_ACTIVE && strcmp(keys[i]->kid, kid) == 0) {
                        for (const char *p = keys[i]->id; p[0] && p[1] && id_len < sizeof id; p += 2)
                                if (sscanf(p, "%2hhx", &id[id_len++]) != 1)
                                        id_len = 0;
                        r = id_len > 0 ? 0 : -EINVAL;
                }
        store_key_list_free(keys);
        store_close(s);
        if (r < 0)
                return r;
        return hsm_key_open(h, KEYD_ALG_ES256, id, id_len, ret);
}

int main(void) {
        const char *module = getenv("SOFTHSM_MODULE") && *getenv("SOFTHSM_MODULE") ? getenv("SOFTHSM_MODULE")
                                                                                  : KEYD_DEFAULT_MODULE;
        double seconds = getenv("KEYD_BENCH_SECONDS") ? atof(getenv("KEYD_BENCH_SECONDS")) : 2.0;
        int rounds = getenv("KEYD_BENCH_ROUNDS") ? atoi(getenv("KEYD_BENCH_ROUNDS")) : 2;
        int only = getenv("KEYD_BENCH_CLIENTS") ? atoi(getenv("KEYD_BENCH_CLIENTS")) : 0;
        bool strict = getenv("KEYD_BENCH_STRICT") && strcmp(getenv("KEYD_BENCH_STRICT"), "1") == 0;
        char pin_path[512], config[512], keyd[PATH_MAX + 16];
        char *mint_req = NULL, *floor_req = NULL, *body = NULL;
        size_t mint_len = 0, floor_len = 0;
        Hsm *h = NULL;
        HsmKey *k = NULL;
        json_t *j = NULL;
        int rc = 1, status = 0;
        bool missed = false;

        if (seconds <= 0 || seconds > 60 || rounds < 1 || rounds > 20 || only < 0 || only > MAX_CLIENTS) {
                fprintf(stderr, "bench-api: KEYD_BENCH_SECONDS must be in (0, 60], KEYD_BENCH_ROUNDS in [1, 20], "
                                "KEYD_BENCH_CLIENTS in [1, %d]\n",
                        MAX_CLIENTS);
                return 2;
        }
        if (keyd_binary(keyd, sizeof keyd) < 0) {
                fprintf(stderr, "bench-api: no keyd binary at %s (build it, or set KEYD_BIN)\n", keyd);
                return 1;
        }
        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
        signal(SIGPIPE, SIG_IGN);
        if (make_token(module, pin_path, sizeof pin_path) < 0) {
                fprintf(stderr, "bench-api: cannot create a SoftHSM2 token: %m\n");
                goto out;
        }
        snprintf(sock_path, sizeof sock_path, "%s/keyd.sock", tmpdir);
        if (write_config(module, pin_path, config, sizeof config) < 0 || start_daemon(keyd, config) < 0)
                goto out;

        mint_req = build_request("POST", "/v1/keyrings/" RING "/tokens", "{\"sub\":\"agent-1\"}", &mint_len);
        floor_req = build_request("GET", "/healthz", NULL, &floor_len);
        if (!mint_req || !floor_req)
                goto out;
        if (http_once("POST", "/v1/keyrings/" RING "/tokens", "{\"sub\":\"agent-1\"}", &status, &body) < 0 ||
            status != 201 || !(j = json_loads(body, 0, NULL)) || !json_is_string(json_object_get(j, "kid"))) {
                fprintf(stderr, "bench-api: the first mint failed (status %d): %s\n", status, body ?: "");
                show_log();
                goto out;
        }

        HsmConfig cfg = { .module = module, .uri = "pkcs11:token=keyd-bench", .pin_file = pin_path, .sessions = 2 };
        if (hsm_open(&cfg, &h) < 0) {
                fprintf(stderr, "bench-api: hsm_open: %s\n", hsm_last_error());
                goto out;
        }
        if (find_active_key(h, json_string_value(json_object_get(j, "kid")), &k) < 0) {
                fprintf(stderr, "bench-api: cannot find the keyring's active key in the token: %s\n",
                        hsm_last_error());
                goto out;
        }

        printf("# bench-api: ES256 JWT minting over keyd's Unix socket vs raw C_Sign (CKM_ECDSA), same token and key "
               "(SoftHSM2)\n# %d round(s) x %.1fs each, alternating raw/mint; N raw threads vs N keep-alive clients; "
               "floor = GET /healthz\n"
               "# cpu = CPU time per op (raw: this process; mint: keyd + clients), cpu_rat = raw_cpu / mint_cpu\n",
               rounds, seconds);
        printf("%7s %10s %10s %7s %9s %9s %9s %9s %9s %9s %9s %7s\n", "clients", "raw_ops/s", "mint_ops/s", "ratio",
               "raw_p50", "mint_p50", "p50_diff", "raw_p99", "mint_p99", "raw_cpu", "mint_cpu", "cpu_rat");
        for (int clients = only ?: 1; clients <= (only ?: 2); clients++) {
                Result raw = { 0 }, mint = { 0 }, floor = { 0 };
                for (int i = 0; i < rounds; i++) {
                        if (run_raw(h, k, clients, seconds, &raw) < 0) {
                                fprintf(stderr, "bench-api: raw signing failed: %s\n", hsm_last_error());
                                goto out;
                        }
                        if (run_http(mint_req, mint_len, 201, "\"token\":", clients, seconds, &mint) < 0) {
                                fprintf(stderr, "bench-api: minting failed\n");
                                show_log();
                                goto out;
                        }
                }
                if (run_http(floor_req, floor_len, 200, "\"status\":\"ok\"", clients, seconds / 2, &floor) < 0) {
                        fprintf(stderr, "bench-api: GET /healthz failed\n");
                        goto out;
                }
                result_sort(&raw);
                result_sort(&mint);
                result_sort(&floor);
                double ratio = rate(&mint) / rate(&raw), diff = pct(&mint, 0.5) - pct(&raw, 0.5);
                printf("%7d %10.0f %10.0f %6.1f%% %7.1fus %7.1fus %+7.1fus %7.1fus %7.1fus %7.1fus %7.1fus %6.1f%%\n",
                       clients, rate(&raw), rate(&mint), 100.0 * ratio, pct(&raw, 0.5), pct(&mint, 0.5), diff,
                       pct(&raw, 0.99), pct(&mint, 0.99), cpu_us(&raw, false), cpu_us(&mint, true),
                       100.0 * cpu_us(&raw, false) / cpu_us(&mint, true));
                printf("%7s floor GET /healthz: %.0f ops/s, p50 %.1fus, p99 %.1fus; CPU per op: keyd %.1fus, "
                       "clients %.1fus; mint CPU per op: keyd %.1fus, clients %.1fus\n",
                       "", rate(&floor), pct(&floor, 0.5), pct(&floor, 0.99), us_per_op(floor.daemon_cpu, floor.ops),
                       us_per_op(floor.cpu, floor.ops), us_per_op(mint.daemon_cpu, mint.ops),
                       us_per_op(mint.cpu, mint.ops));
                fflush(stdout);
                if (clients == 2) {
                        bool ok = ratio >= TARGET_RATIO && diff <= TARGET_P50_US;
                        missed = !ok;
                        printf("# SPEC §10, 2 clients: mint >= %.0f%% of raw C_Sign and p50 within %.0f us: %s "
                               "(%.1f%%, %+.1f us)\n",
                               100 * TARGET_RATIO, TARGET_P50_US, ok ? "met" : "MISSED", 100.0 * ratio, diff);
                }
                free(raw.lat);
                free(mint.lat);
                free(floor.lat);
        }
        rc = strict && missed ? 1 : 0;
out:
        json_decref(j);
        free(body);
        free(mint_req);
        free(floor_req);
        hsm_key_free(k);
        hsm_close(h);
        cleanup();
        return rc;
}
