/* SPDX-License-Identifier: MIT */
/* Helpers shared by the benchmarks: see util.h. */
#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <libgen.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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

#include "common/hex.h"
#include "pkcs11/hsm-internal.h"
#include "store/store.h"
#include "tests/bench/util.h"

/* The state of the run. */
static const char *prog = "bench";
static char tmpdir[64];
static bool have_tmpdir;
static volatile pid_t daemon_pid;
static char sock_path[100];

/* ---- the environment ---- */

const char *bench_module(void) {
        const char *m = getenv("SOFTHSM_MODULE");
        return m && *m ? m : KEYD_DEFAULT_MODULE;
}

int bench_shim_module(char *ret, size_t size) {
        char self[PATH_MAX], path[PATH_MAX + 32];
        const char *e = getenv("KEYD_BENCH_SHIM");
        if (e && *e)
                snprintf(path, sizeof path, "%s", e);
        else {
                ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
                if (n <= 0)
                        return -1;
                self[n] = 0;
                snprintf(path, sizeof path, "%s/../shim/p11shim.so", dirname(self));
        }
        /* keyd wants an absolute module path, and "../" in it would only puzzle a reader of its log. */
        if (!realpath(path, self) || strlen(self) >= size) {
                snprintf(ret, size, "%s", path);
                return -1;
        }
        snprintf(ret, size, "%s", self);
        return 0;
}

int bench_env(const char *name, double default_seconds, bool with_clients, BenchEnv *ret) {
        *ret = (BenchEnv){
                .module = bench_module(),
                .seconds = getenv("KEYD_BENCH_SECONDS") ? atof(getenv("KEYD_BENCH_SECONDS")) : default_seconds,
                .rounds = getenv("KEYD_BENCH_ROUNDS") ? atoi(getenv("KEYD_BENCH_ROUNDS")) : 2,
                .clients = with_clients && getenv("KEYD_BENCH_CLIENTS") ? atoi(getenv("KEYD_BENCH_CLIENTS")) : 0,
                .strict = getenv("KEYD_BENCH_STRICT") && strcmp(getenv("KEYD_BENCH_STRICT"), "1") == 0,
        };
        if (ret->seconds <= 0 || ret->seconds > 60 || ret->rounds < 1 || ret->rounds > 20 || ret->clients < 0 ||
            ret->clients > BENCH_MAX_CLIENTS) {
                if (with_clients)
                        fprintf(stderr,
                                "%s: KEYD_BENCH_SECONDS must be in (0, 60], KEYD_BENCH_ROUNDS in [1, 20], "
                                "KEYD_BENCH_CLIENTS in [1, %d]\n",
                                name, BENCH_MAX_CLIENTS);
                else
                        fprintf(stderr, "%s: KEYD_BENCH_SECONDS must be in (0, 60], KEYD_BENCH_ROUNDS in [1, 20]\n",
                                name);
                return -1;
        }
        return 0;
}

/* ---- time and results ---- */

double bench_now(void) {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        return (double) t.tv_sec + (double) t.tv_nsec / 1e9;
}

int bench_cmp_double(const void *a, const void *b) {
        double x = *(const double *) a, y = *(const double *) b;
        return x < y ? -1 : x > y;
}

int bench_result_add(BenchResult *acc, const double *lat, long n_lat, long ops, double seconds) {
        double *l = realloc(acc->lat, sizeof(double) * (size_t) (acc->n_lat + n_lat + 1));
        if (!l)
                return -1;
        acc->lat = l;
        memcpy(acc->lat + acc->n_lat, lat, sizeof(double) * (size_t) n_lat);
        acc->n_lat += n_lat;
        acc->ops += ops;
        acc->seconds += seconds;
        return 0;
}

void bench_result_sort(BenchResult *r) {
        qsort(r->lat, (size_t) r->n_lat, sizeof(double), bench_cmp_double);
}

double bench_pct(const BenchResult *r, double p) {
        if (r->n_lat == 0)
                return 0;
        return r->lat[(long) ((double) (r->n_lat - 1) * p)] * 1e6;
}

double bench_rate(const BenchResult *r) {
        return r->seconds > 0 ? (double) r->ops / r->seconds : 0;
}

double bench_us_per_op(double seconds, long ops) {
        return ops > 0 ? seconds * 1e6 / (double) ops : 0;
}

double bench_cpu_us(const BenchResult *r, bool with_daemon) {
        return bench_us_per_op(r->cpu + (with_daemon ? r->daemon_cpu : 0), r->ops);
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

double bench_pid_cpu(pid_t pid) {
        char path[64], buf[1024];
        unsigned long long utime = 0, stime = 0;
        ssize_t n;
        int fd;

        if (pid <= 0)
                return 0;
        snprintf(path, sizeof path, "/proc/%d/stat", (int) pid);
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

static double daemon_cpu(void) {
        return bench_pid_cpu(daemon_pid);
}

pid_t bench_keyd_pid(void) {
        return daemon_pid;
}

/* Join a timing thread, add its share to acc (its wall time if it is the first) and free its latencies. */
static int join_thread(pthread_t t, BenchThread *th, bool first, BenchResult *acc) {
        pthread_join(t, NULL);
        long n = th->ops < th->lat_cap ? th->ops : th->lat_cap;
        int r = th->failed || bench_result_add(acc, th->lat, n, th->ops, first ? th->seconds : 0) < 0 ? -1 : 0;
        free(th->lat);
        return r;
}

int bench_run_threads(void *(*worker)(void *), void *arg, int threads, double seconds, long lat_cap,
                      BenchResult *acc) {
        pthread_t t[BENCH_MAX_CLIENTS];
        BenchThread r[BENCH_MAX_CLIENTS];
        int rc = 0, started;
        double c0 = self_cpu();

        if (threads > BENCH_MAX_CLIENTS)
                return -1;
        for (started = 0; started < threads; started++) {
                r[started] = (BenchThread){ .arg = arg, .seconds = seconds, .lat_cap = lat_cap };
                r[started].lat = malloc(sizeof(double) * (size_t) lat_cap);
                if (!r[started].lat || pthread_create(&t[started], NULL, worker, &r[started]) != 0) {
                        free(r[started].lat);
                        rc = -1;
                        break;
                }
        }
        for (int i = 0; i < started; i++)
                if (join_thread(t[i], &r[i], i == 0, acc) < 0)
                        rc = -1;
        acc->cpu += self_cpu() - c0;
        return rc;
}

void bench_thread_loop(BenchThread *r, int (*op)(void *arg), void *arg) {
        double end = bench_now() + r->seconds;
        for (;;) {
                double t0 = bench_now();
                if (t0 > end)
                        break;
                if (op(arg) < 0) {
                        r->failed = 1;
                        break;
                }
                if (r->ops < r->lat_cap)
                        r->lat[r->ops] = bench_now() - t0;
                r->ops++;
        }
}

/* ---- raw C_Sign ---- */

typedef struct RawSign {
        Hsm *hsm;
        HsmKey *key;
        CK_SESSION_HANDLE session;
        CK_OBJECT_HANDLE priv;
        CK_MECHANISM mech;
        uint8_t msg[200], digest[32], sig[HSM_SIG_MAX];
} RawSign;

static int raw_sign(void *arg) {
        RawSign *s = arg;
        CK_FUNCTION_LIST *f = s->hsm->f;
        CK_ULONG sl = sizeof s->sig;
        CK_RV rv = f->C_SignInit(s->session, &s->mech, s->priv);
        if (rv == CKR_OK)
                rv = s->key->md ? f->C_Sign(s->session, s->digest, sizeof s->digest, s->sig, &sl)
                                : f->C_Sign(s->session, s->msg, sizeof s->msg, s->sig, &sl);
        return rv == CKR_OK ? 0 : -1;
}

void *bench_raw_sign_worker(void *arg) {
        BenchThread *r = arg;
        const BenchRawSign *run = r->arg;
        RawSign s = { .hsm = run->hsm, .key = run->key, .mech = run->key->mech };
        Hsm *h = run->hsm;
        HsmKey *k = run->key;

        memset(s.msg, 'a', sizeof s.msg);
        memset(s.digest, 'a', sizeof s.digest);
        if (h->f->C_OpenSession(h->slot, CKF_SERIAL_SESSION, NULL, NULL, &s.session) != CKR_OK) {
                r->failed = 1;
                return NULL;
        }
        if (hsm_find_one(h, s.session, CKO_PRIVATE_KEY, k->id, k->id_len, &s.priv) < 0)
                r->failed = 1;
        else
                bench_thread_loop(r, raw_sign, &s);
        h->f->C_CloseSession(s.session);
        return NULL;
}

/* ---- working directory and token ---- */

static void on_signal(int sig) {
        if (daemon_pid > 0)
                kill(daemon_pid, SIGKILL);
        _exit(128 + sig);
}

int bench_write_file(const char *path, const char *s) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0)
                return -1;
        ssize_t n = write(fd, s, strlen(s));
        close(fd);
        return n == (ssize_t) strlen(s) ? 0 : -1;
}

int bench_softhsm_conf(const char *dir) {
        char path[512], conf[1024];

        snprintf(path, sizeof path, "%s/tokens", dir);
        if (mkdir(path, 0700) < 0)
                return -1;
        snprintf(conf, sizeof conf,
                 "directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
                 path);
        snprintf(path, sizeof path, "%s/softhsm2.conf", dir);
        return bench_write_file(path, conf);
}

int bench_token_create(const char *prefix, const char *module, char *pin_path, size_t size) {
        char path[512], pin[33];
        unsigned char rnd[16];

        if ((size_t) snprintf(tmpdir, sizeof tmpdir, "/tmp/%s.XXXXXX", prefix) >= sizeof tmpdir || !mkdtemp(tmpdir))
                return -1;
        have_tmpdir = true;
        snprintf(sock_path, sizeof sock_path, "%s/keyd.sock", tmpdir);
        snprintf(path, sizeof path, "%s/softhsm2.conf", tmpdir);
        if (bench_softhsm_conf(tmpdir) < 0 || setenv("SOFTHSM2_CONF", path, 1) < 0)
                return -1;
        if (RAND_bytes(rnd, sizeof rnd) != 1)
                return -1;
        hex_encode(rnd, sizeof rnd, pin, sizeof pin);
        if (hsm_token_init(module, "keyd-bench", "bench-so-pin", pin) < 0)
                return -1;
        snprintf(pin_path, size, "%s/pin", tmpdir);
        return bench_write_file(pin_path, pin);
}

const char *bench_dir(void) {
        return tmpdir;
}

void bench_stop_child(volatile pid_t *pidp) {
        pid_t pid = *pidp;
        int status;

        if (pid <= 0)
                return;
        kill(pid, SIGTERM);
        for (int i = 0; waitpid(pid, &status, WNOHANG) != pid; i++) {
                if (i == 1000) { /* 10 s, then SIGKILL */
                        kill(pid, SIGKILL);
                        waitpid(pid, &status, 0);
                        break;
                }
                usleep(10000);
        }
        *pidp = 0;
}

void bench_cleanup(void) {
        char cmd[600];

        bench_stop_child(&daemon_pid);
        if (have_tmpdir && strncmp(tmpdir, "/tmp/keyd-", 10) == 0) {
                snprintf(cmd, sizeof cmd, "rm -rf -- '%s'", tmpdir);
                (void) !system(cmd);
                have_tmpdir = false;
        }
}

/* ---- keyd ---- */

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

static int write_keyd_conf(const char *dir, const char *module, const char *pin_path, const char *sock,
                           const char *extra, const char *const *keyrings, char *ret, size_t size) {
        struct passwd *pw = getpwuid(getuid());
        char *text = NULL;
        size_t len = 0;
        FILE *f;
        int r;

        if (!pw || !(f = open_memstream(&text, &len)))
                return -1;
        fprintf(f,
                "[token]\nmodule = %s\nuri = pkcs11:token=keyd-bench\npin-file = %s\n"
                "softhsm2-conf = %s/softhsm2.conf\n\n[store]\npath = %s/keyd.db\n\n[api]\nsocket = %s\nworkers = 2\n\n",
                module, pin_path, dir, dir, sock);
        if (extra)
                fprintf(f, "%s\n", extra);
        for (size_t i = 0; keyrings[i]; i++)
                fprintf(f, "%s%ssign-users = %s\n", i > 0 ? "\n" : "", keyrings[i], pw->pw_name);
        snprintf(ret, size, "%s/keyd.conf", dir);
        r = fclose(f) == 0 ? bench_write_file(ret, text) : -1;
        free(text);
        return r;
}

int bench_write_keyd_conf(const char *dir, const char *module, const char *pin_path, const char *sock,
                          const char *const *keyrings, char *ret, size_t size) {
        return write_keyd_conf(dir, module, pin_path, sock, NULL, keyrings, ret, size);
}

void bench_show_log(void) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "tail -n 20 '%s/keyd.log' >&2", tmpdir);
        (void) !system(cmd);
}

pid_t bench_spawn_keyd(const char *keyd, const char *config, const char *log_path) {
        pid_t pid = fork();
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
                unsetenv("JOURNAL_STREAM"); /* keyd's log lines go to the file */
                execl(keyd, "keyd", "--config", config, (char *) NULL);
                _exit(127);
        }
        return pid;
}

static int daemon_start(const char *keyd, const char *config) {
        char log_path[512];
        int status;
        pid_t pid;

        snprintf(log_path, sizeof log_path, "%s/keyd.log", tmpdir);
        pid = bench_spawn_keyd(keyd, config, log_path);
        if (pid < 0)
                return -1;
        daemon_pid = pid;
        /* Ready when GET /healthz answers 200; at most 30 s. */
        double end = bench_now() + 30;
        while (bench_now() < end) {
                int st;
                if (waitpid(pid, &status, WNOHANG) == pid) {
                        daemon_pid = 0;
                        fprintf(stderr, "%s: keyd exited during start-up (status %d)\n", prog, status);
                        bench_show_log();
                        return -1;
                }
                if (bench_http_once("GET", "/healthz", NULL, &st, NULL) == 0 && st == 200)
                        return 0;
                usleep(20000);
        }
        fprintf(stderr, "%s: keyd did not answer /healthz within 30 s\n", prog);
        bench_show_log();
        return -1;
}

int bench_keyd_start(const char *name, const char *module, const char *const *keyrings, char *pin_path,
                     size_t size) {
        return bench_keyd_start_opts(name, module, keyrings, NULL, pin_path, size);
}

int bench_keyd_start_opts(const char *name, const char *module, const char *const *keyrings,
                          const BenchKeydOpts *opts, char *pin_path, size_t size) {
        char keyd[PATH_MAX + 16] = "", prefix[32], config[512];

        prog = name;
        if (keyd_binary(keyd, sizeof keyd) < 0) {
                fprintf(stderr, "%s: no keyd binary at %s (build it, or set KEYD_BIN)\n", prog, keyd);
                return -1;
        }
        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
        signal(SIGPIPE, SIG_IGN);
        snprintf(prefix, sizeof prefix, "keyd-%s", name);
        if (bench_token_create(prefix, module, pin_path, size) < 0) {
                fprintf(stderr, "%s: cannot create a SoftHSM2 token: %m\n", prog);
                return -1;
        }
        if (write_keyd_conf(tmpdir, opts && opts->module ? opts->module : module, pin_path, sock_path,
                            opts ? opts->extra : NULL, keyrings, config, sizeof config) < 0)
                return -1;
        return daemon_start(keyd, config);
}

/* ---- HTTP over the Unix socket: one keep-alive connection, one request at a time ---- */

/* TCP to "IPV4:PORT", with Nagle off (a request is one write). */
static int conn_open_tcp(BenchConn *c, const char *addr) {
        struct sockaddr_in sa = { .sin_family = AF_INET };
        char host[64];
        const char *colon = strrchr(addr, ':');
        int one = 1;

        if (!colon || (size_t) (colon - addr) >= sizeof host)
                return -1;
        snprintf(host, sizeof host, "%.*s", (int) (colon - addr), addr);
        sa.sin_port = htons((uint16_t) atoi(colon + 1));
        if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
                return -1;
        c->len = 0;
        c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c->fd < 0)
                return -1;
        (void) setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(c->fd, (struct sockaddr *) &sa, sizeof sa) < 0) {
                close(c->fd);
                c->fd = -1;
                return -1;
        }
        return 0;
}

int bench_conn_open(BenchConn *c, const char *sock) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        if (sock && sock[0] != '/')
                return conn_open_tcp(c, sock);
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock ? sock : sock_path);
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

void bench_conn_close(BenchConn *c) {
        if (c->fd >= 0)
                close(c->fd);
        c->fd = -1;
        free(c->buf);
        c->buf = NULL;
        c->len = c->cap = 0;
}

/* Write a prebuilt request, read one reply: the status, the body (in c->buf, until the next call), its length. */
int bench_conn_roundtrip(BenchConn *c, const char *req, size_t req_len, int *ret_status, const char **ret_body,
                         size_t *ret_len) {
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
                if (c->cap - c->len < 65536) {
                        size_t ncap = c->cap ? c->cap * 2 : 131072;
                        char *nb = realloc(c->buf, ncap + 1);
                        if (!nb)
                                return -1;
                        c->buf = nb;
                        c->cap = ncap;
                }
                ssize_t n = read(c->fd, c->buf + c->len, c->cap - c->len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return -1;
                c->len += (size_t) n;
                c->buf[c->len] = 0;
                if (!head) {
                        char *e = memmem(c->buf, c->len, "\r\n\r\n", 4);
                        if (!e)
                                continue;
                        head = (size_t) (e - c->buf) + 4;
                        bool found = false;
                        for (char *l = strstr(c->buf, "\r\n"); l && l < e; l = strstr(l + 2, "\r\n"))
                                if (strncasecmp(l + 2, "Content-Length:", 15) == 0) {
                                        clen = strtoul(l + 17, NULL, 10);
                                        found = true;
                                }
                        /* 304 and 204 have no body, and nginx sends no Content-Length with them. */
                        if (!found && !(c->len >= 12 && (strncmp(c->buf + 8, " 304", 4) == 0 ||
                                                         strncmp(c->buf + 8, " 204", 4) == 0)))
                                return -1;
                }
                if (c->len >= head + clen)
                        break;
        }
        if (strncmp(c->buf, "HTTP/1.1 ", 9) != 0)
                return -1;
        *ret_status = atoi(c->buf + 9);
        *ret_body = c->buf + head;
        *ret_len = clen;
        return 0;
}

char *bench_http_request(const char *method, const char *path, const char *body, size_t *ret_len) {
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

int bench_http_once(const char *method, const char *path, const char *body, int *ret_status, char **ret_body) {
        BenchConn *c = calloc(1, sizeof *c);
        size_t len, blen;
        const char *b;
        int r = -1;
        char *req = bench_http_request(method, path, body, &len);

        if (c && req && bench_conn_open(c, NULL) == 0) {
                r = bench_conn_roundtrip(c, req, len, ret_status, &b, &blen);
                if (r == 0 && ret_body)
                        *ret_body = strndup(b, blen);
                bench_conn_close(c);
        }
        free(req);
        free(c);
        return r;
}

json_t *bench_http_json(const char *method, const char *path, const char *body, int want_status) {
        char *reply = NULL;
        int status = 0;
        json_t *j = NULL;

        if (bench_http_once(method, path, body, &status, &reply) < 0 || status != want_status ||
            !(j = json_loads(reply, 0, NULL)))
                fprintf(stderr, "%s: %s %s failed (status %d): %s\n", prog, method, path, status, reply ?: "");
        free(reply);
        return j;
}

typedef struct HttpRun {
        const char *addr; /* bench_conn_open()'s */
        const char *req;
        size_t req_len;
        int want_status;
        const char *want_text; /* checked in every reply */
        pthread_barrier_t *start;
        BenchThread th;
        BenchConn conn;
} HttpRun;

static bool reply_ok(HttpRun *r, int status, const char *body, size_t len) {
        return status == r->want_status && (!r->want_text || memmem(body, len, r->want_text, strlen(r->want_text)));
}

/* One request and its reply, which must be what the run wants. */
static int http_exchange(void *arg) {
        HttpRun *r = arg;
        const char *body = "";
        size_t blen = 0;
        int status = 0;

        if (bench_conn_roundtrip(&r->conn, r->req, r->req_len, &status, &body, &blen) < 0 ||
            !reply_ok(r, status, body, blen)) {
                fprintf(stderr, "%s: unexpected reply (status %d): %.*s\n", prog, status, (int) blen, body);
                return -1;
        }
        return 0;
}

static void *http_worker(void *arg) {
        HttpRun *r = arg;
        const char *body;
        size_t blen;
        int status;

        /* Connect and warm the connection (keyd's thread for it) before the clock starts. */
        if (bench_conn_open(&r->conn, r->addr) < 0 || bench_conn_roundtrip(&r->conn, r->req, r->req_len, &status, &body, &blen) < 0 ||
            !reply_ok(r, status, body, blen))
                r->th.failed = 1;
        pthread_barrier_wait(r->start);
        if (!r->th.failed)
                bench_thread_loop(&r->th, http_exchange, r);
        bench_conn_close(&r->conn);
        return NULL;
}

int bench_run_http(const char *req, size_t req_len, int want_status, const char *want_text, int clients,
                   double seconds, BenchResult *acc) {
        return bench_run_http_to(NULL, req, req_len, want_status, want_text, clients, seconds, acc);
}

int bench_run_http_to(const char *addr, const char *req, size_t req_len, int want_status, const char *want_text,
                      int clients, double seconds, BenchResult *acc) {
        pthread_t t[BENCH_MAX_CLIENTS];
        HttpRun *r = calloc(BENCH_MAX_CLIENTS, sizeof *r);
        pthread_barrier_t start;
        int rc = 0;

        if (!r)
                return -1;
        pthread_barrier_init(&start, NULL, (unsigned) clients + 1);
        for (int i = 0; i < clients; i++) {
                r[i] = (HttpRun){ .addr = addr, .req = req, .req_len = req_len, .want_status = want_status, .want_text = want_text,
                                  .start = &start, .th = { .seconds = seconds, .lat_cap = BENCH_LAT_CAP } };
                r[i].conn.fd = -1;
                r[i].th.lat = malloc(sizeof(double) * BENCH_LAT_CAP);
                if (!r[i].th.lat || pthread_create(&t[i], NULL, http_worker, &r[i]) != 0)
                        return -1;
        }
        pthread_barrier_wait(&start); /* every client connected and warmed */
        double c0 = self_cpu(), d0 = daemon_cpu();
        for (int i = 0; i < clients; i++)
                if (join_thread(t[i], &r[i].th, i == 0, acc) < 0)
                        rc = -1;
        acc->cpu += self_cpu() - c0;
        acc->daemon_cpu += daemon_cpu() - d0;
        pthread_barrier_destroy(&start);
        free(r);
        return rc;
}

int bench_open_active_key(Hsm *h, const char *ring, const char *kid, HsmKey **ret) {
        char db[512];
        Store *s = NULL;
        StoreKey **keys = NULL;
        size_t n = 0, id_len = 0;
        uint8_t id[HSM_ID_MAX];
        int r = -ENOENT;

        snprintf(db, sizeof db, "%s/keyd.db", bench_dir());
        if (store_open(db, STORE_READ_ONLY, &s) < 0)
                return -EIO;
        if (store_key_list(s, ring, &keys, &n) < 0) {
                store_close(s);
                return -EIO;
        }
        for (size_t i = 0; i < n; i++)
                if (keys[i]->state == KEY_STATE_ACTIVE && strcmp(keys[i]->kid, kid) == 0)
                        r = hex_decode(keys[i]->id, id, sizeof id, &id_len);
        store_key_list_free(keys);
        store_close(s);
        return r < 0 ? r : hsm_key_open(h, KEYD_ALG_ES256, id, id_len, ret);
}
