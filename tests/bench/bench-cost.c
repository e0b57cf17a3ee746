/* SPDX-License-Identifier: MIT */
/* What keyd adds per request, in CPU (SPEC §10): keyd's own CPU per request minus what the token (or OpenSSL)
 * spends on the same operation, measured in the same run; the public JWKS against nginx; a JWKS flood against the
 * local mint rate; and the audit's growth of the database per mint.
 *
 * The bench makes its own SoftHSM2 token under mkdtemp and starts build/keyd on it with a public listener on
 * 127.0.0.1 (a free port) and three keyrings: "es" (issuer, ES256: the default issuer, so /.well-known/jwks.json),
 * "rs" (issuer, RS256 2048) and "agent" (agent, ES256, owned by the bench's uid). Once keyd is up it opens the same
 * token itself and finds the active keys of "es" and "agent" by the kid of a first signature (as bench-api does).
 *
 * Every measurement is 2 keep-alive clients (or 2 threads) for KEYD_BENCH_SECONDS, repeated KEYD_BENCH_ROUNDS times,
 * the rows alternating within a round. keyd's CPU is its utime + stime from /proc/PID/stat over the run, divided by
 * the requests answered. What is subtracted, per request:
 *   mint, jws, sign  raw C_Sign (CKM_ECDSA over a 32-byte digest) on the same token and key, 2 threads with a session
 *                    each, this process's CPU per signature (the raw loop of bench-api);
 *   verify           OpenSSL's EVP_DigestVerifyInit + EVP_DigestVerify over the same token with the same public key,
 *                    2 threads, this process's CPU per verification (the raw loop of bench-verify);
 *   JWKS             nothing: there is no token work in it.
 * Targets (overhead): mint <= 40 us, verify <= 25 us (ES256 and RS256), JWKS GET <= 15 us (socket, public 200 and
 * 304). jws and sign are printed against the mint target for information; they do not count for KEYD_BENCH_STRICT.
 *
 * Throughput: GET /.well-known/jwks.json on the public listener (200, and 304 with If-None-Match) against nginx
 * (1 worker, started here on 127.0.0.1 with its configuration, pid, logs and temporary paths in the bench's
 * directory, access log off) serving the same bytes from a file, same client loop, alternating with the keyd rows;
 * target keyd >= 0.5x nginx. Without nginx (make bench installs nginx-light with scripts/deps.sh bench) the rows are
 * skipped with a message. Flood: the mint rate with 2 clients alone, then while KEYD_BENCH_FLOOD_CLIENTS (default 8)
 * other clients GET the public JWKS as fast as they can, alternating; target: at most 10 % lower. The flood's
 * clients run at nice 19 for the target (on a small machine, clients at normal priority take the cores from keyd and
 * the mint clients whatever keyd does: that line is printed for information).
 *
 * Audit at load: around every mint run, the database is checkpointed (wal_checkpoint(TRUNCATE), from this process)
 * and measured (page_count x page_size, plus what is left in keyd.db-wal); growth per mint, as MB per million.
 *
 * Environment: KEYD_BENCH_SECONDS (per measurement and round, default 1.25), KEYD_BENCH_ROUNDS (default 2),
 * KEYD_BENCH_FLOOD_CLIENTS (1 to 30: keyd's public listener allows 32 connections per address), KEYD_BENCH_NGINX
 * (the nginx binary; default: nginx in PATH, /usr/sbin/nginx), SOFTHSM_MODULE, KEYD_BIN, KEYD_BENCH_STRICT=1 (exit 1
 * if a target is missed). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <jansson.h>
#include <netinet/in.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/hex.h"
#include "jose/b64.h"
#include "jose/jwk.h"
#include "pkcs11/hsm.h"
#include "store/store.h"
#include "tests/bench/util.h"

#define NAME "bench-cost"
#define CLIENTS 2
#define TARGET_MINT_US 40.0
#define TARGET_VERIFY_US 25.0
#define TARGET_JWKS_US 15.0
#define TARGET_NGINX_RATIO 0.5
#define TARGET_FLOOD_DROP 0.10
#define FLOOD_MAX 30

static const char JWS_BODY[] = "{\"payload_json\":{\"htm\":\"GET\",\"htu\":\"https://api.example.com/x\","
                               "\"iat\":1795409825,\"jti\":\"x1\"},\"header\":{\"typ\":\"dpop+jwt\"}}";
static const char SIGN_BODY[] = "{\"data\":\"aGVsbG8\"}";
static const char MINT_BODY[] = "{\"sub\":\"agent-1\"}";

/* ---- small helpers ---- */

/* A free TCP port on 127.0.0.1 (bound and released: another process could take it meanwhile), or -1. */
static int free_port(void) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof sa;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = -1;
        if (fd < 0)
                return -1;
        if (bind(fd, (struct sockaddr *) &sa, sizeof sa) == 0 && getsockname(fd, (struct sockaddr *) &sa, &len) == 0)
                port = ntohs(sa.sin_port);
        close(fd);
        return port;
}

/* The value of header name in the reply head at buf (up to the blank line), into ret; -1 if absent. */
static int header_value(const char *buf, const char *name, char *ret, size_t size) {
        const char *end = strstr(buf, "\r\n\r\n"), *l;
        size_t n = strlen(name);
        for (l = strstr(buf, "\r\n"); l && end && l < end; l = strstr(l + 2, "\r\n"))
                if (strncasecmp(l + 2, name, n) == 0 && l[2 + n] == ':') {
                        const char *v = l + 3 + n, *e;
                        while (*v == ' ')
                                v++;
                        e = strstr(v, "\r\n");
                        if (!e || (size_t) (e - v) >= size)
                                return -1;
                        snprintf(ret, size, "%.*s", (int) (e - v), v);
                        return 0;
                }
        return -1;
}

/* GET path from addr on a fresh connection: status, body (new string), ETag, Content-Type, Cache-Control. */
static int http_get_full(const char *addr, const char *path, int *status, char **body, char *etag, char *ctype,
                         char *cache, size_t size) {
        BenchConn c = BENCH_CONN_INIT;
        size_t len, blen;
        const char *b;
        char *req = bench_http_request("GET", path, NULL, &len);
        int r = -1;

        if (req && bench_conn_open(&c, addr) == 0 && bench_conn_roundtrip(&c, req, len, status, &b, &blen) == 0) {
                *body = strndup(b, blen);
                etag[0] = ctype[0] = cache[0] = 0;
                (void) header_value(c.buf, "ETag", etag, size);
                (void) header_value(c.buf, "Content-Type", ctype, size);
                (void) header_value(c.buf, "Cache-Control", cache, size);
                r = *body ? 0 : -1;
        }
        bench_conn_close(&c);
        free(req);
        return r;
}

static char *get_request(const char *path, const char *etag, size_t *ret_len) {
        char *s = NULL;
        int n = etag ? asprintf(&s, "GET %s HTTP/1.1\r\nHost: keyd\r\nIf-None-Match: %s\r\n\r\n", path, etag)
                     : asprintf(&s, "GET %s HTTP/1.1\r\nHost: keyd\r\n\r\n", path);
        if (n < 0)
                return NULL;
        *ret_len = (size_t) n;
        return s;
}

/* ---- the database ---- */

/* Checkpoint keyd's database (TRUNCATE) and return its size: page_count x page_size plus the WAL file; also the
 * number of audit records. -1 on error. */
static double db_bytes(long *ret_audit) {
        char path[600];
        sqlite3 *db = NULL;
        sqlite3_stmt *st = NULL;
        long long pages = 0, page_size = 0;
        struct stat sb;
        double bytes = -1;

        snprintf(path, sizeof path, "%s/keyd.db", bench_dir());
        if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK)
                goto out;
        sqlite3_busy_timeout(db, 5000);
        (void) sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
        if (sqlite3_prepare_v2(db,
                               "SELECT (SELECT page_count FROM pragma_page_count), "
                               "(SELECT page_size FROM pragma_page_size), (SELECT count(*) FROM audit)",
                               -1, &st, NULL) != SQLITE_OK ||
            sqlite3_step(st) != SQLITE_ROW)
                goto out;
        pages = sqlite3_column_int64(st, 0);
        page_size = sqlite3_column_int64(st, 1);
        *ret_audit = (long) sqlite3_column_int64(st, 2);
        snprintf(path, sizeof path, "%s/keyd.db-wal", bench_dir());
        bytes = (double) pages * (double) page_size + (stat(path, &sb) == 0 ? (double) sb.st_size : 0);
out:
        sqlite3_finalize(st);
        sqlite3_close(db);
        return bytes;
}

/* ---- OpenSSL's own verify, as bench-verify's raw loop ---- */

typedef struct Verify {
        const char *ring, *name;
        char *token;
        EVP_PKEY *pkey;
        uint8_t *sig; /* DER for ECDSA, raw for RSA */
        size_t sig_len, input_len;
        char *req;
        size_t req_len;
} Verify;

static void verify_done(Verify *v) {
        free(v->token);
        EVP_PKEY_free(v->pkey);
        free(v->sig);
        free(v->req);
}

static int verify_prepare(Verify *v) {
        char path[128];
        json_t *minted = NULL, *jwks = NULL, *k, *vb = NULL;
        const char *kid, *dot;
        void *sig = NULL;
        size_t i, sig_len = 0;
        char *vbody = NULL;
        int r = -1;

        snprintf(path, sizeof path, "/v1/keyrings/%s/tokens", v->ring);
        if (!(minted = bench_http_json("POST", path, MINT_BODY, 201)))
                goto out;
        kid = json_string_value(json_object_get(minted, "kid"));
        if (!kid || !json_is_string(json_object_get(minted, "token")))
                goto out;
        v->token = strdup(json_string_value(json_object_get(minted, "token")));
        snprintf(path, sizeof path, "/v1/keyrings/%s/jwks", v->ring);
        if (!v->token || !(jwks = bench_http_json("GET", path, NULL, 200)))
                goto out;
        json_array_foreach (json_object_get(jwks, "keys"), i, k) {
                const char *x = json_string_value(json_object_get(k, "kid"));
                if (x && strcmp(x, kid) == 0 && !v->pkey && jose_jwk_to_pkey(k, &v->pkey) < 0)
                        goto out;
        }
        dot = strrchr(v->token, '.');
        if (!v->pkey || !dot || jose_b64url_decode(dot + 1, strlen(dot + 1), &sig, &sig_len) < 0)
                goto out;
        v->input_len = (size_t) (dot - v->token);
        if (EVP_PKEY_get_base_id(v->pkey) == EVP_PKEY_EC) {
                ECDSA_SIG *es = ECDSA_SIG_new();
                BIGNUM *br = sig_len == 64 ? BN_bin2bn(sig, 32, NULL) : NULL,
                       *bs = sig_len == 64 ? BN_bin2bn((uint8_t *) sig + 32, 32, NULL) : NULL;
                unsigned char *der = NULL;
                int n = -1;
                if (es && br && bs && ECDSA_SIG_set0(es, br, bs) == 1) {
                        br = bs = NULL;
                        n = i2d_ECDSA_SIG(es, &der);
                }
                BN_free(br);
                BN_free(bs);
                ECDSA_SIG_free(es);
                if (n > 0 && (v->sig = malloc((size_t) n)))
                        memcpy(v->sig, der, (size_t) n);
                OPENSSL_free(der);
                v->sig_len = n > 0 ? (size_t) n : 0;
        } else if ((v->sig = malloc(sig_len))) {
                memcpy(v->sig, sig, sig_len);
                v->sig_len = sig_len;
        }
        if (!v->sig)
                goto out;
        vb = json_pack("{s:s}", "token", v->token);
        vbody = vb ? json_dumps(vb, JSON_COMPACT) : NULL;
        v->req = vbody ? bench_http_request("POST", "/v1/verify", vbody, &v->req_len) : NULL;
        r = v->req ? 0 : -1;
out:
        if (r < 0)
                fprintf(stderr, NAME ": cannot prepare a %s token to verify\n", v->name);
        free(vbody);
        json_decref(vb);
        free(sig);
        json_decref(minted);
        json_decref(jwks);
        return r;
}

typedef struct VerifyThread {
        const Verify *v;
        EVP_MD_CTX *ctx;
} VerifyThread;

static int openssl_verify(void *arg) {
        VerifyThread *t = arg;
        const Verify *v = t->v;
        if (EVP_DigestVerifyInit(t->ctx, NULL, EVP_sha256(), NULL, v->pkey) != 1)
                return -1;
        return EVP_DigestVerify(t->ctx, v->sig, v->sig_len, (const unsigned char *) v->token, v->input_len) == 1 ? 0
                                                                                                                 : -1;
}

static void *openssl_worker(void *arg) {
        BenchThread *r = arg;
        VerifyThread t = { .v = r->arg, .ctx = EVP_MD_CTX_new() };
        if (!t.ctx) {
                r->failed = 1;
                return NULL;
        }
        bench_thread_loop(r, openssl_verify, &t);
        EVP_MD_CTX_free(t.ctx);
        return NULL;
}

/* ---- nginx ---- */

typedef struct Nginx {
        volatile pid_t pid; /* the master */
        pid_t worker;
        char addr[32];
        char dir[600];
} Nginx;

static const char *nginx_binary(void) {
        static char path[4096];
        const char *e = getenv("KEYD_BENCH_NGINX");
        if (e && *e)
                return access(e, X_OK) == 0 ? e : NULL;
        const char *p = getenv("PATH");
        char *copy = p ? strdup(p) : NULL, *save = NULL;
        for (char *d = copy ? strtok_r(copy, ":", &save) : NULL; d; d = strtok_r(NULL, ":", &save)) {
                snprintf(path, sizeof path, "%s/nginx", d);
                if (access(path, X_OK) == 0) {
                        free(copy);
                        return path;
                }
        }
        free(copy);
        return access("/usr/sbin/nginx", X_OK) == 0 ? "/usr/sbin/nginx" : NULL;
}

/* Start nginx serving body at path (with keyd's Content-Type and Cache-Control) on a free port: 0, or -1 after a
 * message. */
static int nginx_start(Nginx *n, const char *bin, const char *path, const char *body, const char *ctype,
                       const char *cache) {
        char p[800], conf[8192], user[300] = "";
        int port = free_port();

        snprintf(n->dir, sizeof n->dir, "%s/nginx", bench_dir());
        snprintf(conf, sizeof conf, "%s/www", n->dir);
        snprintf(p, sizeof p, "%s/www/.well-known", n->dir);
        if (port < 0 || mkdir(n->dir, 0700) < 0 || mkdir(conf, 0700) < 0 || mkdir(p, 0700) < 0)
                return -1;
        snprintf(p, sizeof p, "%s/www%s", n->dir, path);
        if (bench_write_file(p, body) < 0 || chmod(p, 0644) < 0)
                return -1;
        /* Run by root, the worker would become nobody, who cannot read the bench's 0700 directory. */
        if (geteuid() == 0) {
                struct passwd *pw = getpwuid(getuid());
                struct group *gr = getgrgid(getgid());
                if (pw && gr)
                        snprintf(user, sizeof user, "user %s %s;\n", pw->pw_name, gr->gr_name);
        }
        snprintf(n->addr, sizeof n->addr, "127.0.0.1:%d", port);
        snprintf(conf, sizeof conf,
                 "daemon off;\nmaster_process on;\nworker_processes 1;\n%s"
                 "pid %s/nginx.pid;\nerror_log %s/error.log warn;\n"
                 "events { worker_connections 1024; }\n"
                 "http {\n"
                 "  access_log off;\n  server_tokens off;\n"
                 "  client_body_temp_path %s/body;\n  proxy_temp_path %s/proxy;\n  fastcgi_temp_path %s/fastcgi;\n"
                 "  uwsgi_temp_path %s/uwsgi;\n  scgi_temp_path %s/scgi;\n"
                 "  keepalive_requests 1000000000;\n  keepalive_timeout 60s;\n  open_file_cache max=16 inactive=60s;\n "
                 " open_file_cache_valid 60s;\n"
                 "  types { }\n  default_type \"%s\";\n"
                 "  server {\n    listen %s;\n    root %s/www;\n"
                 "    location = %s { add_header Cache-Control \"%s\"; }\n  }\n}\n",
                 user, n->dir, n->dir, n->dir, n->dir, n->dir, n->dir, n->dir, ctype, n->addr, n->dir, path, cache);
        snprintf(p, sizeof p, "%s/nginx.conf", n->dir);
        if (bench_write_file(p, conf) < 0)
                return -1;

        pid_t pid = fork();
        if (pid == 0) {
                char log[700], prefix[700], err[700];
                snprintf(log, sizeof log, "%s/stderr.log", n->dir);
                snprintf(prefix, sizeof prefix, "%s/", n->dir);
                snprintf(err, sizeof err, "%s/error.log", n->dir);
                int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
                (void) prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlive the bench */
                if (fd >= 0) {
                        dup2(fd, STDOUT_FILENO);
                        dup2(fd, STDERR_FILENO);
                }
                execl(bin, "nginx", "-p", prefix, "-e", err, "-c", p, (char *) NULL);
                _exit(127);
        }
        if (pid < 0)
                return -1;
        n->pid = pid;
        /* Ready when the file is served; at most 10 s. */
        for (double end = bench_now() + 10; bench_now() < end; usleep(20000)) {
                int status = 0;
                char *b = NULL, e[200], c[200], cc[200];
                if (waitpid(pid, &status, WNOHANG) == pid) {
                        n->pid = 0;
                        break;
                }
                if (http_get_full(n->addr, path, &status, &b, e, c, cc, sizeof e) == 0 && status == 200) {
                        bool same = strcmp(b, body) == 0;
                        free(b);
                        if (!same) {
                                fprintf(stderr, NAME ": nginx does not serve the same bytes\n");
                                return -1;
                        }
                        /* The worker: the master's only child. */
                        char cp[64], list[256] = "";
                        snprintf(cp, sizeof cp, "/proc/%d/task/%d/children", (int) pid, (int) pid);
                        FILE *f = fopen(cp, "r");
                        if (f) {
                                if (!fgets(list, sizeof list, f))
                                        list[0] = 0;
                                fclose(f);
                        }
                        n->worker = (pid_t) atoi(list);
                        return 0;
                }
                free(b);
        }
        fprintf(stderr, NAME ": nginx did not start; its log:\n");
        char cmd[1400];
        snprintf(cmd, sizeof cmd, "cat '%s/stderr.log' '%s/error.log' >&2", n->dir, n->dir);
        (void) !system(cmd);
        return -1;
}

/* ---- the flood ---- */

typedef struct Flood {
        const char *addr, *req;
        size_t req_len;
        int clients, nice; /* the flood's client threads inherit this thread's nice value */
        double seconds;
        BenchResult res;
        int rc;
} Flood;

static void *flood_thread(void *arg) {
        Flood *f = arg;
        if (f->nice)
                (void) setpriority(PRIO_PROCESS, (id_t) gettid(), f->nice);
        f->rc = bench_run_http_to(f->addr, f->req, f->req_len, 200, "\"keys\"", f->clients, f->seconds, &f->res);
        return NULL;
}

/* ---- rows ---- */

typedef struct Row {
        const char *name;
        const char *addr; /* NULL: keyd's socket */
        char *req;
        size_t req_len;
        int want_status;
        const char *want_text;
        BenchResult res;
        int base; /* index into the baselines, -1: none */
        double target;
        bool counts; /* for KEYD_BENCH_STRICT */
} Row;

enum { BASE_SIGN_ES, BASE_SIGN_AGENT, BASE_VERIFY_ES, BASE_VERIFY_RS, N_BASES };

typedef struct Mints {
        double bytes;
        long ops, audit;
} Mints;

/* A keyd row for one round; mint rows also account for the database's growth. */
static int run_row(Row *r, double seconds, Mints *m) {
        double b0 = 0, b1;
        long a0 = 0, a1 = 0, ops0 = r->res.ops;
        if (m && (b0 = db_bytes(&a0)) < 0)
                return -1;
        if (bench_run_http_to(r->addr, r->req, r->req_len, r->want_status, r->want_text, CLIENTS, seconds, &r->res) <
            0) {
                fprintf(stderr, NAME ": %s failed\n", r->name);
                bench_show_log();
                return -1;
        }
        if (m) {
                if ((b1 = db_bytes(&a1)) < 0)
                        return -1;
                m->bytes += b1 - b0;
                m->audit += a1 - a0;
                m->ops += r->res.ops - ops0;
        }
        return 0;
}

int main(void) {
        BenchEnv env;
        char pin_path[512], extra[256], pub_addr[32], agent_ring[512];
        char etag[256], ctype[256], cache[256], ngx_etag[256], e2[256], c2[256];
        char *jwks_body = NULL, *ngx_body = NULL;
        Hsm *h = NULL;
        HsmKey *key_es = NULL, *key_agent = NULL;
        json_t *j_es = NULL, *j_agent = NULL;
        Verify vs[2] = { { .ring = "es", .name = "ES256" }, { .ring = "rs", .name = "RS256" } };
        Nginx ngx = { 0 };
        BenchResult base[N_BASES] = { 0 }, ngx200 = { 0 }, ngx304 = { 0 }, alone = { 0 }, flooded = { 0 },
                    flood_sum = { 0 };
        Row rows[9] = { 0 };
        char *ngx_req200 = NULL, *ngx_req304 = NULL, *flood_req = NULL;
        size_t ngx_len200 = 0, ngx_len304 = 0, flood_len = 0;
        double ngx_cpu200 = 0, ngx_cpu304 = 0;
        Mints mints = { 0 };
        int rc = 1, status = 0, flood_n = 8;
        bool missed = false, have_nginx = false;

        if (bench_env(NAME, 1.25, false, &env) < 0)
                return 2;
        if (getenv("KEYD_BENCH_FLOOD_CLIENTS")) {
                flood_n = atoi(getenv("KEYD_BENCH_FLOOD_CLIENTS"));
                if (flood_n < 1 || flood_n > FLOOD_MAX) {
                        fprintf(stderr, NAME ": KEYD_BENCH_FLOOD_CLIENTS must be in [1, %d]\n", FLOOD_MAX);
                        return 2;
                }
        }
        double seconds = env.seconds, t_start = bench_now();
        int port = free_port();
        if (port < 0)
                return 1;
        snprintf(pub_addr, sizeof pub_addr, "127.0.0.1:%d", port);
        snprintf(extra, sizeof extra, "[public]\nlisten = %s\n", pub_addr);
        snprintf(agent_ring, sizeof agent_ring,
                 "[keyring agent]\nkind = agent\nalg = ES256\nowner-uid = %d\nrotation-period = 24h\nprepublish = 1h\n"
                 "token-ttl-max = 1h\ndefault-ttl = 15m\n",
                 (int) getuid());
        const char *const keyrings[] = {
                "[keyring es]\nkind = issuer\nalg = ES256\nissuer = https://es.bench.test\n"
                "rotation-period = 24h\nprepublish = 1h\ntoken-ttl-max = 1h\ndefault-ttl = 1h\n",
                "[keyring rs]\nkind = issuer\nalg = RS256\nrsa-bits = 2048\nissuer = https://rs.bench.test\n"
                "rotation-period = 24h\nprepublish = 1h\ntoken-ttl-max = 1h\ndefault-ttl = 1h\n",
                agent_ring,
                NULL,
        };
        BenchKeydOpts opts = { .extra = extra };
        if (bench_keyd_start_opts(NAME, env.module, keyrings, &opts, pin_path, sizeof pin_path) < 0)
                goto out;

        /* First signatures: the kids of the keys to sign with raw. */
        if (!(j_es = bench_http_json("POST", "/v1/keyrings/es/tokens", MINT_BODY, 201)) ||
            !(j_agent = bench_http_json("POST", "/v1/keyrings/agent/jws", JWS_BODY, 201))) {
                bench_show_log();
                goto out;
        }
        HsmConfig cfg = { .module = env.module, .uri = "pkcs11:token=keyd-bench", .pin_file = pin_path, .sessions = 2 };
        if (hsm_open(&cfg, &h) < 0) {
                fprintf(stderr, NAME ": hsm_open: %s\n", hsm_last_error());
                goto out;
        }
        if (bench_open_active_key(h, "es", json_string_value(json_object_get(j_es, "kid")), &key_es) < 0 ||
            bench_open_active_key(h, "agent", json_string_value(json_object_get(j_agent, "kid")), &key_agent) < 0) {
                fprintf(stderr, NAME ": cannot find the keyrings' active keys in the token: %s\n", hsm_last_error());
                goto out;
        }
        for (int i = 0; i < 2; i++)
                if (verify_prepare(&vs[i]) < 0) {
                        bench_show_log();
                        goto out;
                }

        /* The public JWKS, its ETag; the same bytes for nginx. */
        if (http_get_full(pub_addr, "/.well-known/jwks.json", &status, &jwks_body, etag, ctype, cache, sizeof etag) <
                    0 ||
            status != 200 || !etag[0]) {
                fprintf(stderr, NAME ": GET /.well-known/jwks.json on the public listener: status %d, ETag '%s'\n",
                        status, etag);
                goto out;
        }
        const char *ngx_bin = nginx_binary();
        if (!ngx_bin)
                printf("# nginx rows skipped: no nginx (make bench installs Debian's nginx-light with "
                       "scripts/deps.sh bench; or set KEYD_BENCH_NGINX)\n");
        else if (nginx_start(&ngx, ngx_bin, "/.well-known/jwks.json", jwks_body, ctype[0] ? ctype : "application/json",
                             cache[0] ? cache : "public") < 0)
                goto out;
        else {
                if (http_get_full(ngx.addr, "/.well-known/jwks.json", &status, &ngx_body, ngx_etag, c2, e2,
                                  sizeof ngx_etag) < 0 ||
                    status != 200 || !ngx_etag[0]) {
                        fprintf(stderr, NAME ": nginx gave no ETag\n");
                        goto out;
                }
                ngx_req200 = get_request("/.well-known/jwks.json", NULL, &ngx_len200);
                ngx_req304 = get_request("/.well-known/jwks.json", ngx_etag, &ngx_len304);
                have_nginx = ngx_req200 && ngx_req304;
        }

        /* The rows, in the order they run in a round. */
        size_t nr = 0;
        Row *mint = &rows[nr++];
        *mint = (Row){ .name = "mint ES256 (POST tokens)",
                       .want_status = 201,
                       .want_text = "\"token\":",
                       .base = BASE_SIGN_ES,
                       .target = TARGET_MINT_US,
                       .counts = true };
        mint->req = bench_http_request("POST", "/v1/keyrings/es/tokens", MINT_BODY, &mint->req_len);
        rows[nr] = (Row){ .name = "jws ES256 (agent, POST jws)",
                          .want_status = 201,
                          .want_text = "\"jws\":",
                          .base = BASE_SIGN_AGENT,
                          .target = TARGET_MINT_US };
        rows[nr].req = bench_http_request("POST", "/v1/keyrings/agent/jws", JWS_BODY, &rows[nr].req_len);
        nr++;
        rows[nr] = (Row){ .name = "sign ES256 (agent, POST sign)",
                          .want_status = 200,
                          .want_text = "\"signature\":",
                          .base = BASE_SIGN_AGENT,
                          .target = TARGET_MINT_US };
        rows[nr].req = bench_http_request("POST", "/v1/keyrings/agent/sign", SIGN_BODY, &rows[nr].req_len);
        nr++;
        for (int i = 0; i < 2; i++, nr++) {
                rows[nr] = (Row){ .name = i == 0 ? "verify ES256" : "verify RS256",
                                  .want_status = 200,
                                  .want_text = "\"valid\":true",
                                  .base = i == 0 ? BASE_VERIFY_ES : BASE_VERIFY_RS,
                                  .target = TARGET_VERIFY_US,
                                  .counts = true };
                rows[nr].req = strdup(vs[i].req);
                rows[nr].req_len = vs[i].req_len;
        }
        rows[nr] = (Row){ .name = "JWKS GET, socket (200)",
                          .want_status = 200,
                          .want_text = "\"keys\"",
                          .base = -1,
                          .target = TARGET_JWKS_US,
                          .counts = true };
        rows[nr].req = get_request("/v1/keyrings/es/jwks", NULL, &rows[nr].req_len);
        nr++;
        Row *pub200 = &rows[nr++];
        *pub200 = (Row){ .name = "JWKS GET, public (200)",
                         .addr = pub_addr,
                         .want_status = 200,
                         .want_text = "\"keys\"",
                         .base = -1,
                         .target = TARGET_JWKS_US,
                         .counts = true };
        pub200->req = get_request("/.well-known/jwks.json", NULL, &pub200->req_len);
        Row *pub304 = &rows[nr++];
        *pub304 = (Row){ .name = "JWKS GET, public (304)",
                         .addr = pub_addr,
                         .want_status = 304,
                         .base = -1,
                         .target = TARGET_JWKS_US,
                         .counts = true };
        pub304->req = get_request("/.well-known/jwks.json", etag, &pub304->req_len);
        flood_req = get_request("/.well-known/jwks.json", NULL, &flood_len);
        for (size_t i = 0; i < nr; i++)
                if (!rows[i].req)
                        goto out;
        if (!flood_req)
                goto out;

        BenchRawSign raw_es = { .hsm = h, .key = key_es }, raw_agent = { .hsm = h, .key = key_agent };
        printf("# " NAME ": keyd's own CPU per request beyond the token's signature or OpenSSL's verify (SPEC §10)\n"
               "# %d round(s) x %.3gs per measurement, %d keep-alive clients (raw: %d threads), alternating; keyd "
               "CPU from /proc/PID/stat\n",
               env.rounds, seconds, CLIENTS, CLIENTS);
        fflush(stdout);
        for (int round = 0; round < env.rounds; round++) {
                /* Each keyd row after its baseline. */
                if (bench_run_threads(bench_raw_sign_worker, &raw_es, CLIENTS, seconds, BENCH_LAT_CAP,
                                      &base[BASE_SIGN_ES]) < 0 ||
                    run_row(&rows[0], seconds, &mints) < 0 ||
                    bench_run_threads(bench_raw_sign_worker, &raw_agent, CLIENTS, seconds, BENCH_LAT_CAP,
                                      &base[BASE_SIGN_AGENT]) < 0 ||
                    run_row(&rows[1], seconds, NULL) < 0 || run_row(&rows[2], seconds, NULL) < 0 ||
                    bench_run_threads(openssl_worker, &vs[0], CLIENTS, seconds, BENCH_LAT_CAP, &base[BASE_VERIFY_ES]) <
                            0 ||
                    run_row(&rows[3], seconds, NULL) < 0 ||
                    bench_run_threads(openssl_worker, &vs[1], CLIENTS, seconds, BENCH_LAT_CAP, &base[BASE_VERIFY_RS]) <
                            0 ||
                    run_row(&rows[4], seconds, NULL) < 0 || run_row(&rows[5], seconds, NULL) < 0 ||
                    run_row(pub200, seconds, NULL) < 0)
                        goto fail;
                if (have_nginx) {
                        double c0 = bench_pid_cpu(ngx.worker);
                        if (bench_run_http_to(ngx.addr, ngx_req200, ngx_len200, 200, "\"keys\"", CLIENTS, seconds,
                                              &ngx200) < 0)
                                goto fail;
                        ngx_cpu200 += bench_pid_cpu(ngx.worker) - c0;
                }
                if (run_row(pub304, seconds, NULL) < 0)
                        goto fail;
                if (have_nginx) {
                        double c0 = bench_pid_cpu(ngx.worker);
                        if (bench_run_http_to(ngx.addr, ngx_req304, ngx_len304, 304, NULL, CLIENTS, seconds, &ngx304) <
                            0)
                                goto fail;
                        ngx_cpu304 += bench_pid_cpu(ngx.worker) - c0;
                }
        }

        printf("%-30s %9s %10s %17s %10s %8s %-7s %9s\n", "request", "requests", "keyd/req", "token|OpenSSL/req",
               "overhead", "target", "verdict", "req/s");
        for (size_t i = 0; i < nr; i++) {
                Row *r = &rows[i];
                double keyd = bench_us_per_op(r->res.daemon_cpu, r->res.ops);
                double b = r->base >= 0 ? bench_cpu_us(&base[r->base], false) : 0, over = keyd - b;
                bool ok = over <= r->target;
                char bs[32], ts[32];
                if (r->base >= 0)
                        snprintf(bs, sizeof bs, "%.1fus %s", b, r->base <= BASE_SIGN_AGENT ? "C_Sign" : "OpenSSL");
                else
                        snprintf(bs, sizeof bs, "-");
                snprintf(ts, sizeof ts, r->counts ? "<=%.0fus" : "(<=%.0f)", r->target);
                printf("%-30s %9ld %8.1fus %17s %8.1fus %8s %-7s %9.0f\n", r->name, r->res.ops, keyd, bs, over, ts,
                       r->counts ? (ok ? "met" : "MISSED") : (ok ? "(met)" : "(over)"), bench_rate(&r->res));
                if (r->counts && !ok)
                        missed = true;
        }
        printf("# token|OpenSSL/req: this process's CPU per raw C_Sign (%.0f/s) or OpenSSL verify (ES256 %.0f/s, "
               "RS256 %.0f/s), same key, %d threads; jws and sign: the mint target, for information\n",
               bench_rate(&base[BASE_SIGN_ES]), bench_rate(&base[BASE_VERIFY_ES]), bench_rate(&base[BASE_VERIFY_RS]),
               CLIENTS);
        printf("# client CPU per request (this process): mint %.1fus, verify ES256 %.1fus, JWKS socket %.1fus, "
               "public 200 %.1fus, public 304 %.1fus\n",
               bench_us_per_op(rows[0].res.cpu, rows[0].res.ops), bench_us_per_op(rows[3].res.cpu, rows[3].res.ops),
               bench_us_per_op(rows[5].res.cpu, rows[5].res.ops), bench_us_per_op(pub200->res.cpu, pub200->res.ops),
               bench_us_per_op(pub304->res.cpu, pub304->res.ops));
        fflush(stdout);

        /* Public JWKS against nginx. */
        printf("\n# public JWKS (%zu bytes) against nginx %s(1 worker, access log off, same bytes from a file), "
               "%d keep-alive clients each, alternating\n",
               strlen(jwks_body), have_nginx ? "" : "[not run] ", CLIENTS);
        if (have_nginx) {
                printf("%-24s %10s %11s %6s %9s %10s %8s %s\n", "request", "keyd_req/s", "nginx_req/s", "ratio",
                       "keyd/req", "nginx/req", "target", "verdict");
                BenchResult *k[2] = { &pub200->res, &pub304->res }, *g[2] = { &ngx200, &ngx304 };
                double gc[2] = { ngx_cpu200, ngx_cpu304 };
                for (int i = 0; i < 2; i++) {
                        double ratio = bench_rate(k[i]) / bench_rate(g[i]);
                        bool ok = ratio >= TARGET_NGINX_RATIO;
                        printf("%-24s %10.0f %11.0f %5.2fx %7.1fus %8.1fus %7s %s\n",
                               i == 0 ? "GET jwks.json (200)" : "GET jwks.json (304)", bench_rate(k[i]),
                               bench_rate(g[i]), ratio, bench_us_per_op(k[i]->daemon_cpu, k[i]->ops),
                               bench_us_per_op(gc[i], g[i]->ops), ">=0.5x", ok ? "met" : "MISSED");
                        missed = missed || !ok;
                }
        }
        fflush(stdout);

        /* The flood: mint alone, then during a flood of the public JWKS by clients at nice 19 (what keyd lets the
         * flood take from minting: the clients only run on CPU that nothing else wants), then by clients at normal
         * priority (they also take this machine's CPU from keyd and the mint clients), alternating. */
        BenchResult flooded_n = { 0 }, flood_sum_n = { 0 };
        for (int round = 0; round < env.rounds; round++) {
                /* Rows of their own: keyd's CPU during a flood is not a mint's. */
                Row a = *mint;
                a.res = (BenchResult){ 0 };
                int ra = run_row(&a, seconds, &mints);
                alone.ops += a.res.ops;
                alone.seconds += a.res.seconds;
                free(a.res.lat);
                if (ra < 0)
                        goto fail;
                for (int v = 0; v < 2; v++) {
                        pthread_t t;
                        Flood f = { .addr = pub_addr,
                                    .req = flood_req,
                                    .req_len = flood_len,
                                    .clients = flood_n,
                                    .nice = v == 0 ? 19 : 0,
                                    .seconds = seconds + 0.6 };
                        Row fl = *mint;
                        fl.res = (BenchResult){ 0 };
                        if (pthread_create(&t, NULL, flood_thread, &f) != 0)
                                goto fail;
                        usleep(300000); /* the flood's clients connected and running */
                        int r = run_row(&fl, seconds, &mints);
                        pthread_join(t, NULL);
                        BenchResult *m = v == 0 ? &flooded : &flooded_n, *fs = v == 0 ? &flood_sum : &flood_sum_n;
                        m->ops += fl.res.ops;
                        m->seconds += fl.res.seconds;
                        fs->ops += f.res.ops;
                        fs->seconds += f.res.seconds;
                        free(fl.res.lat);
                        free(f.res.lat);
                        if (r < 0 || f.rc < 0) {
                                fprintf(stderr, NAME ": the flood failed\n");
                                goto fail;
                        }
                }
        }
        double drop = 1.0 - bench_rate(&flooded) / bench_rate(&alone),
               drop_n = 1.0 - bench_rate(&flooded_n) / bench_rate(&alone);
        bool flood_ok = drop <= TARGET_FLOOD_DROP;
        missed = missed || !flood_ok;
        printf("\n# flood: mint rate with %d clients alone vs while %d clients GET the public JWKS, %d round(s) x "
               "%.3gs, alternating\n",
               CLIENTS, flood_n, env.rounds, seconds);
        printf("mint alone %.0f/s; flood clients at nice 19: %.0f/s (%+.1f%%, flood %.0f req/s); target: at most "
               "10%% lower: %s\n",
               bench_rate(&alone), bench_rate(&flooded), -100.0 * drop, bench_rate(&flood_sum),
               flood_ok ? "met" : "MISSED");
        printf("flood clients at normal priority (for information: they compete with keyd for the cores): %.0f/s "
               "(%+.1f%%, flood %.0f req/s)\n",
               bench_rate(&flooded_n), -100.0 * drop_n, bench_rate(&flood_sum_n));
        fflush(stdout);

        /* The audit at load. */
        printf("\n# audit at load: database growth over the mint runs (checkpointed; page_count x page_size + WAL)\n");
        if (mints.ops > 0)
                printf("%ld mints, %ld audit records, %.1f MB: %.0f bytes per mint = %.0f MB per million mints\n",
                       mints.ops, mints.audit, mints.bytes / 1e6, mints.bytes / (double) mints.ops,
                       mints.bytes / (double) mints.ops);
        printf("\n# " NAME ": %s (%.0f s)\n", missed ? "a target was MISSED" : "every target met",
               bench_now() - t_start);
        rc = env.strict && missed ? 1 : 0;
        goto out;
fail:
        bench_show_log();
out:
        bench_stop_child(&ngx.pid);
        for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
                free(rows[i].req);
                free(rows[i].res.lat);
        }
        for (int i = 0; i < N_BASES; i++)
                free(base[i].lat);
        free(ngx200.lat);
        free(ngx304.lat);
        free(ngx_req200);
        free(ngx_req304);
        free(flood_req);
        free(jwks_body);
        free(ngx_body);
        for (int i = 0; i < 2; i++)
                verify_done(&vs[i]);
        json_decref(j_es);
        json_decref(j_agent);
        hsm_key_free(key_es);
        hsm_key_free(key_agent);
        hsm_close(h);
        bench_cleanup();
        return rc;
}
