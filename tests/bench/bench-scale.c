/* SPDX-License-Identifier: MIT */
/* Many agent keyrings in one token (SPEC §10, fourth line): sign latency p99 with N keyrings against one keyring, and
 * start-up, reconcile, RSS, keyring list and JWKS build times with N keyrings, in one run.
 *
 * Two daemons run side by side, each on its own SoftHSM2 token and database in the bench's directory: "keyd" (the
 * one util.c starts), which gets the N keyrings, and "ref", a second build/keyd with one keyring all along (its
 * own token directory and softhsm2.conf, so that SoftHSM2 in it never sees the N keyrings' objects). Sign latency is
 * always 1 keep-alive client posting POST /v1/keyrings/R/sign {"data":"aGVsbG8"} (after one warm-up request on the
 * connection), the same loop for both daemons, and measurements that are compared run in alternating rounds, so
 * that both sides see the same machine.
 *
 * 1. One keyring: "default" (issuer, ES256) on keyd, alternating with "default" on ref. Both have one keyring, so
 *    their ratio is the noise floor of the comparison (an A/A test). keyd's figures are the baseline.
 * 2. N agent keyrings "agent-0" .. "agent-(N-1)" (owner_uid 0: the bench runs as root, so it may sign with them) are
 *    created on keyd through the API, one POST /v1/keyrings at a time on one keep-alive connection; each generates
 *    two keys and commits twice. Printed: the time, the rate, and the latency of the first and last tenth (a
 *    creation that grows with N shows there). Before the creation and after each of its SEGMENTS segments, this
 *    process generates RAW_PAIRS ES256 pairs with raw C_GenerateKeyPair in keyd's own token (keyd's templates) and
 *    destroys them: the token's own keygen rate at the same size and under the same load, against which each
 *    segment's keys per second are compared; the median of those ratios against KEYGEN_TARGET (the load of a shared
 *    machine changes within minutes, so that one ratio over the whole run compares different machines).
 * 3. With N keyrings: "default" and "agent-(N-1)" on keyd, alternating with "default" on ref. Minting
 *    (POST /v1/keyrings/default/tokens) is measured the same way in steps 1, 3 and 4.
 * 4. keyd is stopped (SIGTERM; the time to exit is printed); this process then times the token's own start (module
 *    initialised, login, every object listed and read once: the floor of keyd's start-up); keyd is started again
 *    with the same keyd.conf, token and database: time from exec to the first 200 from GET /healthz, the reconcile time keyd logs ("Reconciled in N
 *    ms"; both against START_TARGET), VmRSS and VmHWM from /proc/PID/status, GET /v1/keyrings (its first page of 100,
 *    and ?limit=1000: first and median of 5), every page of it (limit 1000 and 100, one keep-alive connection,
 *    following "next") and GET /v1/keyrings/default/jwks ("JWKS build/serve": first and median of 21), each on a fresh
 *    connection; then "default" on the restarted keyd alternating with ref.
 * 5. A table, and the SPEC target: sign (and mint) p99 with N keyrings no worse than with one. The verdict
 *    compares keyd with N keyrings to ref in the same rounds (step 3 and after the restart; the worst of them); p99
 *    on a shared machine moves by tens of percent between two measurements of the same thing (step 1's A/A ratio
 *    shows how much), so "no worse" is read as at most P99_SLACK (1.2 x). The ratio to step 1's baseline (minutes
 *    earlier) is printed too.
 *
 * The restart is done here, not by util.c: util.c's keyd is found in /proc (the child of this process running
 * keyd), stopped with SIGTERM and left a zombie (waitid with WNOWAIT) so that bench_cleanup() still reaps it; the
 * restarted keyd and ref are this file's own and are stopped here before bench_cleanup() removes the directory.
 * On SIGINT or SIGTERM every daemon is killed and the directory removed.
 *
 * Environment: KEYD_BENCH_KEYRINGS (N, default 1000), KEYD_BENCH_SECONDS (per side and measurement, split into 3
 * alternating rounds; default 3), KEYD_BENCH_STRICT=1 (exit 1 if the p99 target is missed), SOFTHSM_MODULE,
 * KEYD_BIN. */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pkcs11/hsm-internal.h"
#include "tests/bench/util.h"

#define NAME "bench-scale"
#define P99_SLACK 1.20 /* "no worse", on a shared machine */
#define KEYGEN_TARGET 0.90 /* keyring creation: keys per second against raw C_GenerateKeyPair */
#define START_TARGET 5.0   /* start-up and reconcile, seconds */
#define RAW_PAIRS 20       /* raw key pairs per round (a round before the creation and after each segment) */
#define SEGMENTS 50        /* of the creation, each followed by a raw round: the load changes within minutes */
#define ROUNDS 3
#define READY_TIMEOUT 300.0

/* The bench signs raw (POST /sign) on this issuer keyring too: its policy allows it. */
#define DEFAULT_RING                                                                                                   \
        "[keyring default]\nkind = issuer\nalg = ES256\nissuer = https://bench.test\n"                                 \
        "rotation-period = 24h\nprepublish = 1h\ntoken-ttl-max = 1h\ndefault-ttl = 15m\nallow-raw-sign = yes\n"

static const char *const keyrings[] = { DEFAULT_RING, NULL };

/* ---- the daemons: util.c's keyd, then ours (after the restart), and ref ---- */

static volatile pid_t first_pid;  /* util.c's keyd; once stopped, a zombie that bench_cleanup() reaps */
static volatile pid_t second_pid; /* keyd restarted, ours */
static volatile pid_t ref_pid;    /* ref, ours */
static char dir[64];              /* bench_dir(), for the signal handler */

static void on_signal(int sig) {
        pid_t p;
        if (first_pid > 0)
                kill(first_pid, SIGKILL);
        if (second_pid > 0)
                kill(second_pid, SIGKILL);
        if (ref_pid > 0)
                kill(ref_pid, SIGKILL);
        while (wait(NULL) > 0) /* every child is one of them */
                ;
        if (strncmp(dir, "/tmp/keyd-", 10) == 0) { /* fork and execve are async-signal-safe, system() is not */
                p = fork();
                if (p == 0) {
                        execl("/bin/rm", "rm", "-rf", "--", dir, (char *) NULL);
                        _exit(127);
                }
                if (p > 0)
                        waitpid(p, NULL, 0);
        }
        _exit(128 + sig);
}

/* Stop our daemons, then util.c's (reaped there), and remove the directory. */
static void cleanup(void) {
        bench_stop_child(&second_pid);
        bench_stop_child(&ref_pid);
        first_pid = 0;
        bench_cleanup();
}

/* The child of this process that runs keyd (util.c's daemon): the only child at this point. */
static pid_t find_keyd(void) {
        DIR *d = opendir("/proc");
        struct dirent *de;
        pid_t found = -1;

        if (!d)
                return -1;
        while ((de = readdir(d))) {
                char path[300], buf[512];
                int ppid = 0, fd;
                ssize_t n;
                if (de->d_name[0] < '1' || de->d_name[0] > '9')
                        continue;
                snprintf(path, sizeof path, "/proc/%s/stat", de->d_name);
                if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
                        continue;
                n = read(fd, buf, sizeof buf - 1);
                close(fd);
                if (n <= 0)
                        continue;
                buf[n] = 0;
                const char *p = strrchr(buf, ')');
                if (!p || sscanf(p + 2, "%*c %d", &ppid) != 1 || ppid != getpid() || !strstr(buf, "(keyd)"))
                        continue;
                found = atoi(de->d_name);
                break;
        }
        closedir(d);
        return found;
}

/* VmRSS and VmHWM of pid, in kB. */
static void proc_mem(pid_t pid, long *rss, long *hwm) {
        char path[64], line[256];
        FILE *f;
        *rss = *hwm = -1;
        snprintf(path, sizeof path, "/proc/%d/status", (int) pid);
        if (!(f = fopen(path, "re")))
                return;
        while (fgets(line, sizeof line, f)) {
                if (strncmp(line, "VmRSS:", 6) == 0)
                        *rss = atol(line + 6);
                else if (strncmp(line, "VmHWM:", 6) == 0)
                        *hwm = atol(line + 6);
        }
        fclose(f);
}

/* ---- HTTP over a socket (this keyd's or the reference's), any reply size ---- */

static char main_sock[128], ref_sock[128];

static int conn_call(BenchConn *c, const char *method, const char *path, const char *body, int *ret_status,
                     const char **ret_body, size_t *ret_len) {
        size_t req_len;
        char *req = bench_http_request(method, path, body, &req_len);
        int r = req ? bench_conn_roundtrip(c, req, req_len, ret_status, ret_body, ret_len) : -1;
        free(req);
        return r;
}

/* One GET on a fresh connection to this keyd, timed from connect to the last byte, in seconds; -1 on failure. */
static double timed_get(const char *path, int want_status, size_t *ret_len) {
        BenchConn c = BENCH_CONN_INIT;
        const char *b;
        size_t len = 0;
        int status = 0;
        double t0 = bench_now(), t = -1;

        if (bench_conn_open(&c, main_sock) == 0 && conn_call(&c, "GET", path, NULL, &status, &b, &len) == 0 &&
            status == want_status) {
                t = bench_now() - t0;
                if (ret_len)
                        *ret_len = len;
        } else
                fprintf(stderr, NAME ": GET %s: status %d\n", path, status);
        bench_conn_close(&c);
        free(c.buf);
        return t;
}

/* GET path reps times, each on a fresh connection: the first, the median and the reply's size. */
static int time_get(const char *path, int reps, double *first, double *median, size_t *len) {
        double t[64];
        if (reps > 64)
                reps = 64;
        for (int i = 0; i < reps; i++)
                if ((t[i] = timed_get(path, 200, len)) < 0)
                        return -1;
        *first = t[0];
        qsort(t, (size_t) reps, sizeof *t, bench_cmp_double);
        *median = t[reps / 2];
        return 0;
}

/* Every page of GET /v1/keyrings?limit=limit, following "next" on one keep-alive connection opened for it: the
 * time, the number of requests and of keyrings; -1 on failure. */
static double walk_keyrings(unsigned limit, long *ret_pages, long *ret_rings) {
        BenchConn c = BENCH_CONN_INIT;
        char path[160], after[80] = "";
        double t0 = bench_now(), t = -1;
        long pages = 0, rings = 0;

        if (bench_conn_open(&c, main_sock) < 0)
                goto out;
        for (;;) {
                const char *b;
                size_t len = 0;
                int status = 0;
                if (after[0])
                        snprintf(path, sizeof path, "/v1/keyrings?after=%s&limit=%u", after, limit);
                else
                        snprintf(path, sizeof path, "/v1/keyrings?limit=%u", limit);
                if (conn_call(&c, "GET", path, NULL, &status, &b, &len) < 0 || status != 200) {
                        fprintf(stderr, NAME ": GET %s: status %d\n", path, status);
                        goto out;
                }
                json_t *j = json_loadb(b, len, 0, NULL), *next = json_object_get(j, "next");
                pages++;
                rings += (long) json_array_size(json_object_get(j, "keyrings"));
                bool more = json_is_string(next);
                if (more)
                        snprintf(after, sizeof after, "%s", json_string_value(next));
                json_decref(j);
                if (!more)
                        break;
        }
        t = bench_now() - t0;
        *ret_pages = pages;
        *ret_rings = rings;
out:
        bench_conn_close(&c);
        free(c.buf);
        return t;
}

/* ---- sign latency: one keep-alive client, the same loop for both daemons ---- */

typedef struct SignStat {
        double rate, p50, p99, p999;
        long ops;
} SignStat;

/* One keep-alive connection signing, and the last reply. */
typedef struct Signer {
        BenchConn conn;
        const char *req;
        size_t req_len;
        int status;
        const char *body;
        size_t len;
} Signer;

/* One request: 0 if its reply is a 200 with a signature (sign) or a 201 with a token (mint). */
static bool minting;

static int sign_once(void *arg) {
        Signer *s = arg;
        if (bench_conn_roundtrip(&s->conn, s->req, s->req_len, &s->status, &s->body, &s->len) < 0)
                return -1;
        if (minting)
                return s->status == 201 && memmem(s->body, s->len, "\"token\":", 8) ? 0 : -1;
        return s->status == 200 && memmem(s->body, s->len, "\"signature\":", 12) ? 0 : -1;
}

/* Sign with ring on sock for seconds (after one warm-up request on the connection), adding to acc. */
static int sign_round(const char *sock, const char *ring, double seconds, BenchResult *acc) {
        char path[128];
        Signer s = { .conn = BENCH_CONN_INIT, .body = "" };
        BenchThread th = { .seconds = seconds, .lat_cap = 1 << 20 };
        int rc = -1;

        snprintf(path, sizeof path, "/v1/keyrings/%s/%s", ring, minting ? "tokens" : "sign");
        char *req = bench_http_request("POST", path, minting ? "{\"sub\":\"bench\"}" : "{\"data\":\"aGVsbG8\"}",
                                       &s.req_len);
        s.req = req;
        th.lat = malloc(sizeof(double) * (size_t) th.lat_cap);
        if (!th.lat || !req || bench_conn_open(&s.conn, sock) < 0 || sign_once(&s) < 0)
                goto out;
        double t_start = bench_now();
        bench_thread_loop(&th, sign_once, &s);
        double wall = bench_now() - t_start;
        if (th.failed || bench_result_add(acc, th.lat, th.ops < th.lat_cap ? th.ops : th.lat_cap, th.ops, wall) < 0)
                goto out;
        rc = 0;
out:
        if (rc < 0)
                fprintf(stderr, NAME ": signing with %s on %s failed (status %d): %.*s\n", ring, sock, s.status,
                        (int) s.len, s.body);
        bench_conn_close(&s.conn);
        free(req);
        free(th.lat);
        return rc;
}

static void sign_stat(BenchResult *r, SignStat *ret) {
        bench_result_sort(r);
        *ret = (SignStat){ .rate = bench_rate(r),
                           .p50 = bench_pct(r, 0.5),
                           .p99 = bench_pct(r, 0.99),
                           .p999 = bench_pct(r, 0.999),
                           .ops = r->ops };
        free(r->lat);
        *r = (BenchResult){ 0 };
}

/* rounds rounds, each: every (sock, ring) of the list in turn for seconds / rounds. */
typedef struct Side {
        const char *sock, *ring;
        SignStat *out;
} Side;

static int alternate(Side *sides, int n_sides, int rounds, double seconds) {
        BenchResult acc[4] = { { 0 } };
        int rc = 0;
        for (int i = 0; i < rounds && rc == 0; i++)
                for (int j = 0; j < n_sides && rc == 0; j++)
                        rc = sign_round(sides[j].sock, sides[j].ring, seconds / rounds, &acc[j]);
        for (int j = 0; j < n_sides; j++)
                if (rc == 0)
                        sign_stat(&acc[j], sides[j].out);
                else
                        free(acc[j].lat);
        return rc;
}

/* alternate() minting (POST /v1/keyrings/R/tokens) instead of signing. */
static int alternate_mint(Side *sides, int n_sides, int rounds, double seconds) {
        minting = true;
        int r = alternate(sides, n_sides, rounds, seconds);
        minting = false;
        return r;
}

/* ---- raw C_GenerateKeyPair on keyd's own token, in this process ---- */

/* The token's own keygen rate: ES256 pairs with the templates keyd uses (token objects, private half sensitive and
 * not extractable), generated in keyd's token by this process (SOFTHSM2_CONF is util.c's: the same token directory),
 * in rounds between the segments of the creation, so that both see the token at the same size. Each round generates
 * one untimed pair first (SoftHSM2 in this process reads the objects keyd added since the last round), then
 * RAW_PAIRS timed ones, then destroys them all (untimed): keyd never sees them at its restart. */
typedef struct RawKeygen {
        void *dl;
        CK_FUNCTION_LIST *f;
        CK_SESSION_HANDLE s;
        long pairs;
        double seconds;
        double last_seconds; /* of the last round */
        unsigned serial;
} RawKeygen;

static int raw_open(RawKeygen *k, const char *module, const char *pin_path) {
        char pin[128] = "";
        CK_SLOT_ID slot;
        FILE *f = fopen(pin_path, "re");

        if (!f)
                return -1;
        if (!fgets(pin, sizeof pin, f))
                pin[0] = 0;
        fclose(f);
        pin[strcspn(pin, "\n")] = 0;
        if (hsm_module_load(module, &k->dl, &k->f) < 0 ||
            hsm_find_slot(k->f, "pkcs11:token=keyd-bench", &slot, NULL) < 0 ||
            k->f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &k->s) != CKR_OK) {
                fprintf(stderr, NAME ": cannot open a session on the token for raw keygen\n");
                return -1;
        }
        CK_RV rv = k->f->C_Login(k->s, CKU_USER, (CK_UTF8CHAR *) pin, strlen(pin));
        if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
                fprintf(stderr, NAME ": raw keygen: C_Login: 0x%lx\n", (unsigned long) rv);
                return -1;
        }
        return 0;
}

static void raw_close(RawKeygen *k) {
        if (k->f) {
                (void) k->f->C_CloseSession(k->s);
                hsm_module_unload(k->dl, k->f);
        }
        k->f = NULL;
}

static CK_RV raw_pair(RawKeygen *k, CK_OBJECT_HANDLE *pub, CK_OBJECT_HANDLE *priv) {
        static const CK_BYTE oid_p256[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };
        CK_MECHANISM mech = { CKM_EC_KEY_PAIR_GEN, NULL, 0 };
        CK_BBOOL t = CK_TRUE, f = CK_FALSE;
        CK_KEY_TYPE kt = CKK_EC;
        char label[64], id[32];
        int n = snprintf(id, sizeof id, "raw%08x%08x", (unsigned) getpid(), ++k->serial);
        (void) snprintf(label, sizeof label, "bench-raw:%s", id);
        CK_ATTRIBUTE pt[] = {
                { CKA_TOKEN, &t, sizeof t },      { CKA_PRIVATE, &f, sizeof f },  { CKA_VERIFY, &t, sizeof t },
                { CKA_ENCRYPT, &f, sizeof f },    { CKA_WRAP, &f, sizeof f },     { CKA_ID, id, (CK_ULONG) n },
                { CKA_LABEL, label, strlen(label) }, { CKA_EC_PARAMS, (void *) oid_p256, sizeof oid_p256 },
        };
        CK_ATTRIBUTE vt[] = {
                { CKA_TOKEN, &t, sizeof t },     { CKA_PRIVATE, &t, sizeof t }, { CKA_SENSITIVE, &t, sizeof t },
                { CKA_EXTRACTABLE, &f, sizeof f }, { CKA_SIGN, &t, sizeof t },  { CKA_DECRYPT, &f, sizeof f },
                { CKA_UNWRAP, &f, sizeof f },    { CKA_DERIVE, &f, sizeof f },  { CKA_ID, id, (CK_ULONG) n },
                { CKA_LABEL, label, strlen(label) }, { CKA_KEY_TYPE, &kt, sizeof kt },
        };
        return k->f->C_GenerateKeyPair(k->s, &mech, pt, ELEMENTSOF(pt), vt, ELEMENTSOF(vt), pub, priv);
}

static int raw_round(RawKeygen *k) {
        CK_OBJECT_HANDLE h[2 * (RAW_PAIRS + 1)];
        size_t n = 0;
        int rc = 0;

        if (raw_pair(k, &h[0], &h[1]) != CKR_OK)
                rc = -1;
        else
                n = 2;
        double t0 = bench_now();
        for (int i = 0; i < RAW_PAIRS && rc == 0; i++, n += 2)
                if (raw_pair(k, &h[n], &h[n + 1]) != CKR_OK)
                        rc = -1;
        if (rc == 0) {
                k->last_seconds = bench_now() - t0;
                k->seconds += k->last_seconds;
                k->pairs += RAW_PAIRS;
        } else
                fprintf(stderr, NAME ": raw C_GenerateKeyPair failed\n");
        for (size_t i = 0; i < n; i++)
                (void) k->f->C_DestroyObject(k->s, h[i]);
        return rc;
}

/* The token's own start, the floor of keyd's: load and initialise the module (SoftHSM2 reads every object file of
 * the token), log in, and read every object once (class, label and id: one C_GetAttributeValue each, after one
 * search), as any program that finds its keys by id must. Run in this process on keyd's token, between keyd's stop
 * and its restart, so that both see the token at the same size. */
static double token_floor(const char *module, const char *pin_path, long *ret_objects) {
        RawKeygen k = { 0 };
        CK_OBJECT_HANDLE batch[256];
        CK_ULONG got;
        long n = 0;

        double t0 = bench_now();
        if (raw_open(&k, module, pin_path) < 0)
                return -1;
        if (k.f->C_FindObjectsInit(k.s, NULL, 0) != CKR_OK) {
                raw_close(&k);
                return -1;
        }
        CK_OBJECT_HANDLE *all = NULL;
        while (k.f->C_FindObjects(k.s, batch, ELEMENTSOF(batch), &got) == CKR_OK && got > 0) {
                CK_OBJECT_HANDLE *a = realloc(all, ((size_t) n + got) * sizeof *a);
                if (!a)
                        break;
                all = a;
                memcpy(all + n, batch, got * sizeof *batch);
                n += (long) got;
        }
        (void) k.f->C_FindObjectsFinal(k.s);
        for (long i = 0; i < n; i++) {
                CK_OBJECT_CLASS cls;
                char label[HSM_LABEL_MAX];
                uint8_t id[HSM_ID_MAX];
                CK_ATTRIBUTE a[] = { { CKA_CLASS, &cls, sizeof cls },
                                     { CKA_LABEL, label, sizeof label },
                                     { CKA_ID, id, sizeof id } };
                (void) k.f->C_GetAttributeValue(k.s, all[i], a, ELEMENTSOF(a));
        }
        double t = bench_now() - t0;
        free(all);
        raw_close(&k);
        *ret_objects = n;
        return t;
}

/* ---- creating the agent keyrings ---- */

typedef struct Created {
        double seconds;
        double ratio_median; /* keys per second against raw keygen, per segment, the median */
        int segments;
        double first_p50, first_p99, last_p50, last_p99; /* ms, over the first and last tenth */
} Created;

static void tenth(double *lat, long n, double *p50, double *p99) {
        qsort(lat, (size_t) n, sizeof *lat, bench_cmp_double);
        *p50 = lat[(long) ((double) (n - 1) * 0.5)] * 1e3;
        *p99 = lat[(long) ((double) (n - 1) * 0.99)] * 1e3;
}

static int create_agents(long n, RawKeygen *raw, Created *ret) {
        BenchConn c = BENCH_CONN_INIT;
        double *lat = malloc(sizeof(double) * (size_t) n);
        char body[128];
        const char *b;
        size_t len;
        int status = 0, rc = -1;
        long next_report = n / 10 ?: 1, step = MAX(n / SEGMENTS, 1), next_raw = step;
        double ratios[SEGMENTS + 1];
        int n_ratios = 0;

        if (!lat)
                return -1;
        if (raw_round(raw) < 0)
                goto out;
        double t0 = bench_now(), paused = 0, seg0 = t0;
        for (long i = 0; i < n; i++) {
                snprintf(body, sizeof body, "{\"name\":\"agent-%ld\",\"kind\":\"agent\",\"owner_uid\":0}", i);
                double s = bench_now();
                int r = -1;
                /* One keep-alive connection; opened again if keyd closed it (a retry only before anything was sent
                 * back, so a keyring is never created twice). */
                for (int attempt = 0; attempt < 2 && r < 0; attempt++) {
                        if (c.fd < 0 && bench_conn_open(&c, main_sock) < 0)
                                break;
                        r = conn_call(&c, "POST", "/v1/keyrings", body, &status, &b, &len);
                        if (r < 0)
                                bench_conn_close(&c);
                }
                if (r < 0 || status != 201) {
                        fprintf(stderr, NAME ": creating agent-%ld failed (status %d): %.*s\n", i, status,
                                r < 0 ? 0 : (int) len, r < 0 ? "" : b);
                        goto out;
                }
                lat[i] = bench_now() - s;
                if (n >= 1000 && i + 1 == next_report) {
                        fprintf(stderr, NAME ": %ld/%ld keyrings, %.1f s\n", i + 1, n, bench_now() - t0 - paused);
                        next_report += n / 10;
                }
                if (i + 1 == next_raw || i + 1 == n) {
                        /* A raw keygen round after each segment, not counted in the creation's time; the segment's
                         * keys per second against it, which ran on the machine as loaded as the segment did. */
                        double p = bench_now(), seg = p - seg0;
                        long made = i + 1 - (next_raw - step);
                        if (raw_round(raw) < 0)
                                goto out;
                        if (n_ratios <= SEGMENTS && seg > 0 && raw->last_seconds > 0)
                                ratios[n_ratios++] = (2.0 * (double) made / seg) /
                                                     ((double) RAW_PAIRS / raw->last_seconds);
                        seg0 = bench_now();
                        paused += seg0 - p;
                        next_raw += step;
                }
        }
        qsort(ratios, (size_t) n_ratios, sizeof *ratios, bench_cmp_double);
        ret->segments = n_ratios;
        ret->ratio_median = n_ratios ? ratios[n_ratios / 2] : 0;
        ret->seconds = bench_now() - t0 - paused;
        long t = n >= 10 ? n / 10 : n;
        tenth(lat, t, &ret->first_p50, &ret->first_p99);
        tenth(lat + (n - t), t, &ret->last_p50, &ret->last_p99);
        rc = 0;
out:
        bench_conn_close(&c);
        free(c.buf);
        free(lat);
        return rc;
}

/* ---- starting keyd ourselves: the restart and ref ---- */

static off_t file_size(const char *path) {
        struct stat st;
        return stat(path, &st) < 0 ? 0 : st.st_size;
}

/* Sum of the sizes of the regular files under path, and the number of object files in it. */
static long long tree_size(const char *path, long *files) {
        DIR *d = opendir(path);
        struct dirent *de;
        long long sum = 0;
        if (!d)
                return 0;
        while ((de = readdir(d))) {
                char p[1024];
                struct stat st;
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                        continue;
                snprintf(p, sizeof p, "%s/%s", path, de->d_name);
                if (lstat(p, &st) < 0)
                        continue;
                if (S_ISDIR(st.st_mode))
                        sum += tree_size(p, files);
                else if (S_ISREG(st.st_mode)) {
                        size_t l = strlen(de->d_name);
                        sum += st.st_size;
                        if (l > 7 && strcmp(de->d_name + l - 7, ".object") == 0)
                                (*files)++; /* SoftHSM2's file store: an .object (and a .lock) per object */
                }
        }
        closedir(d);
        return sum;
}

/* "Reconciled in N ms" in keyd.log after offset; -1 if not there. */
static long reconcile_ms(const char *log_path, off_t offset) {
        char line[2048];
        long ms = -1;
        FILE *f = fopen(log_path, "re");
        if (!f)
                return -1;
        if (fseeko(f, offset, SEEK_SET) == 0)
                while (fgets(line, sizeof line, f)) {
                        const char *p = strstr(line, "Reconciled in ");
                        if (p)
                                ms = atol(p + 14);
                }
        fclose(f);
        return ms;
}

/* Poll GET /healthz on sock every 2 ms until it answers 200: 0, or -1 if keyd exited or took too long. */
static int wait_ready(const char *sock, volatile pid_t *pidp, const char *log_path) {
        double t0 = bench_now();
        for (;;) {
                BenchConn c = BENCH_CONN_INIT;
                const char *b;
                size_t len;
                int status = 0, st;
                bool ok = bench_conn_open(&c, sock) == 0 && conn_call(&c, "GET", "/healthz", NULL, &status, &b, &len) == 0 &&
                          status == 200;
                bench_conn_close(&c);
                free(c.buf);
                if (ok)
                        return 0;
                if (waitpid(*pidp, &st, WNOHANG) == *pidp) {
                        *pidp = 0;
                        fprintf(stderr, NAME ": keyd exited during start-up (status %d); see %s\n", st, log_path);
                        return -1;
                }
                if (bench_now() - t0 > READY_TIMEOUT) {
                        fprintf(stderr, NAME ": keyd did not answer /healthz within %.0f s\n", READY_TIMEOUT);
                        return -1;
                }
                usleep(2000);
        }
}

/* ref: its own token directory, SoftHSM2 configuration, token (same PIN), database and socket, one keyring. */
static int start_ref(const char *keyd, const char *module, const char *pin_path) {
        char ref_dir[512], path[600], pin[128] = "", log_path[600];
        int status;
        FILE *f;

        snprintf(ref_dir, sizeof ref_dir, "%s/ref", bench_dir());
        if (mkdir(ref_dir, 0700) < 0 || bench_softhsm_conf(ref_dir) < 0 || !(f = fopen(pin_path, "re")))
                return -1;
        if (!fgets(pin, sizeof pin, f))
                pin[0] = 0;
        fclose(f);
        /* The token, by a child: SoftHSM2 reads SOFTHSM2_CONF once per process. */
        snprintf(path, sizeof path, "%s/softhsm2.conf", ref_dir);
        pid_t pid = fork();
        if (pid == 0)
                _exit(setenv("SOFTHSM2_CONF", path, 1) == 0 &&
                                      hsm_token_init(module, "keyd-bench", "bench-so-pin", pin) == 0
                              ? 0
                              : 1);
        if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                fprintf(stderr, NAME ": cannot create the reference token\n");
                return -1;
        }
        if (bench_write_keyd_conf(ref_dir, module, pin_path, ref_sock, keyrings, path, sizeof path) < 0)
                return -1;
        snprintf(log_path, sizeof log_path, "%s/keyd.log", ref_dir);
        if ((ref_pid = bench_spawn_keyd(keyd, path, log_path)) < 0) {
                ref_pid = 0;
                return -1;
        }
        return wait_ready(ref_sock, &ref_pid, log_path);
}

typedef struct Restart {
        double stop_s, ready_s;
        double floor_s;     /* token_floor() */
        long floor_objects; /* the objects it read */
        long reconcile_ms;
        long rss_kb, hwm_kb;
} Restart;

static int restart_keyd(const char *keyd, const char *module, const char *pin_path, Restart *ret) {
        char config[512], log_path[512];
        siginfo_t si;
        pid_t pid = first_pid;

        snprintf(config, sizeof config, "%s/keyd.conf", bench_dir());
        snprintf(log_path, sizeof log_path, "%s/keyd.log", bench_dir());

        /* Stop: SIGTERM, then wait for the exit without reaping (bench_cleanup() reaps util.c's child). */
        double t0 = bench_now();
        kill(pid, SIGTERM);
        for (;;) {
                si.si_pid = 0;
                if (waitid(P_PID, (id_t) pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == pid)
                        break;
                if (bench_now() - t0 > 30) {
                        fprintf(stderr, NAME ": keyd did not stop within 30 s of SIGTERM\n");
                        return -1;
                }
                usleep(2000);
        }
        ret->stop_s = bench_now() - t0;
        ret->floor_s = token_floor(module, pin_path, &ret->floor_objects);
        if (ret->floor_s < 0) {
                fprintf(stderr, NAME ": cannot list the token for the start-up floor\n");
                return -1;
        }

        /* Start again: same binary and keyd.conf (token, database, socket), output appended to the same log. */
        off_t offset = file_size(log_path);
        t0 = bench_now();
        if ((second_pid = bench_spawn_keyd(keyd, config, log_path)) < 0) {
                second_pid = 0;
                return -1;
        }
        if (wait_ready(main_sock, &second_pid, log_path) < 0)
                return -1;
        ret->ready_s = bench_now() - t0;
        ret->reconcile_ms = reconcile_ms(log_path, offset);
        proc_mem(second_pid, &ret->rss_kb, &ret->hwm_kb);
        return 0;
}

/* ---- the run ---- */

static void print_sign(const char *what, const SignStat *s, const SignStat *ref, const SignStat *base) {
        printf("  %-36s %8.0f %8.1f %8.1f %9.1f", what, s->rate, s->p50, s->p99, s->p999);
        if (ref)
                printf("  %7.2fx", s->p99 / ref->p99);
        else
                printf("  %8s", "");
        if (base)
                printf("  %7.2fx", s->p99 / base->p99);
        printf("\n");
}

int main(void) {
        const char *module = bench_module();
        long n = getenv("KEYD_BENCH_KEYRINGS") ? atol(getenv("KEYD_BENCH_KEYRINGS")) : 1000;
        double seconds = getenv("KEYD_BENCH_SECONDS") ? atof(getenv("KEYD_BENCH_SECONDS")) : 3.0;
        bool strict = getenv("KEYD_BENCH_STRICT") && strcmp(getenv("KEYD_BENCH_STRICT"), "1") == 0;
        char pin_path[512], agent[64], path[600], keyd[4096];
        SignStat base = { 0 }, ref1 = { 0 }, def_n = { 0 }, agent_n = { 0 }, ref3 = { 0 }, def_r = { 0 },
                 ref4 = { 0 }, warm[2], m_base = { 0 }, m_ref1 = { 0 }, m_n = { 0 }, m_ref3 = { 0 }, m_r = { 0 },
                 m_ref4 = { 0 };
        RawKeygen raw = { 0 };
        double walk100 = -1, walk1000 = -1, page1000_first = 0, page1000_med = 0;
        long walk100_pages = 0, walk100_rings = 0, walk1000_pages = 0, walk1000_rings = 0;
        size_t page1000_len = 0;
        Created cr = { 0 };
        Restart rs = { 0 };
        long rss1 = -1, hwm1 = -1, rss_n = -1, hwm_n = -1, objects = 0;
        double list_first = 0, list_med = 0, jwks_first = 0, jwks_med = 0, hz1 = 0, hz1_med = 0, hzn = 0,
               hzn_med = 0;
        size_t list_len = 0, jwks_len = 0, hz_len = 0;
        ssize_t len;
        int rc = 1;

        if (n < 1 || n > 100000 || seconds <= 0 || seconds > 60) {
                fprintf(stderr, NAME ": KEYD_BENCH_KEYRINGS must be in [1, 100000], KEYD_BENCH_SECONDS in (0, 60]\n");
                return 2;
        }
        if (bench_keyd_start(NAME, module, keyrings, pin_path, sizeof pin_path) < 0)
                goto out;
        snprintf(dir, sizeof dir, "%s", bench_dir());
        snprintf(main_sock, sizeof main_sock, "%s/keyd.sock", bench_dir());
        snprintf(ref_sock, sizeof ref_sock, "%s/ref/keyd.sock", bench_dir());
        first_pid = find_keyd();
        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
        snprintf(path, sizeof path, "/proc/%d/exe", (int) first_pid);
        if (first_pid <= 0 || (len = readlink(path, keyd, sizeof keyd - 1)) <= 0) {
                fprintf(stderr, NAME ": cannot find keyd among this process's children\n");
                goto out;
        }
        keyd[len] = 0;
        proc_mem(first_pid, &rss1, &hwm1);
        if (start_ref(keyd, module, pin_path) < 0 || raw_open(&raw, module, pin_path) < 0)
                goto fail;

        printf("# " NAME ": %ld agent keyrings in one SoftHSM2 token (SPEC §10, fourth line)\n"
               "# sign: POST /v1/keyrings/R/sign {\"data\":\"aGVsbG8\"}, 1 keep-alive client, %.1fs per line in %d "
               "rounds alternating with ref (a second keyd, 1 keyring, own token)\n"
               "# mint: POST /v1/keyrings/default/tokens {\"sub\":\"bench\"}, the same way\n"
               "# p99/ref: against ref in the same rounds; p99/base: against keyd with 1 keyring (step 1); "
               "target: p99/ref <= %.2f\n",
               n, seconds, ROUNDS, P99_SLACK);
        fflush(stdout);

        /* 1. One keyring, after an untimed second on each daemon (the first requests to a fresh keyd are slower). */
        Side s_warm[] = { { main_sock, "default", &warm[0] }, { ref_sock, "default", &warm[1] } };
        Side s1[] = { { main_sock, "default", &base }, { ref_sock, "default", &ref1 } };
        Side m1[] = { { main_sock, "default", &m_base }, { ref_sock, "default", &m_ref1 } };
        if (alternate(s_warm, 2, 1, 1.0) < 0 || alternate(s1, 2, ROUNDS, seconds) < 0 ||
            alternate_mint(m1, 2, ROUNDS, seconds) < 0 ||
            time_get("/healthz", 9, &hz1, &hz1_med, &hz_len) < 0)
                goto fail;

        /* 2. N agent keyrings, with raw keygen rounds between their segments. */
        if (create_agents(n, &raw, &cr) < 0)
                goto fail;
        raw_close(&raw);
        proc_mem(first_pid, &rss_n, &hwm_n);

        /* 3. Sign with N keyrings present. */
        snprintf(agent, sizeof agent, "agent-%ld", n - 1);
        Side s3[] = { { main_sock, "default", &def_n }, { main_sock, agent, &agent_n }, { ref_sock, "default", &ref3 } };
        Side m3[] = { { main_sock, "default", &m_n }, { ref_sock, "default", &m_ref3 } };
        if (alternate(s3, 3, ROUNDS, seconds) < 0 || alternate_mint(m3, 2, ROUNDS, seconds) < 0)
                goto fail;

        /* 4. Restart on the same token and database. */
        if (restart_keyd(keyd, module, pin_path, &rs) < 0)
                goto fail;
        Side s4[] = { { main_sock, "default", &def_r }, { ref_sock, "default", &ref4 } };
        Side m4[] = { { main_sock, "default", &m_r }, { ref_sock, "default", &m_ref4 } };
        if (time_get("/v1/keyrings", 5, &list_first, &list_med, &list_len) < 0 ||
            time_get("/v1/keyrings?limit=1000", 5, &page1000_first, &page1000_med, &page1000_len) < 0 ||
            (walk1000 = walk_keyrings(1000, &walk1000_pages, &walk1000_rings)) < 0 ||
            (walk100 = walk_keyrings(100, &walk100_pages, &walk100_rings)) < 0 ||
            time_get("/v1/keyrings/default/jwks", 21, &jwks_first, &jwks_med, &jwks_len) < 0 ||
            time_get("/healthz", 9, &hzn, &hzn_med, &hz_len) < 0 || alternate(s4, 2, ROUNDS, seconds) < 0 ||
            alternate_mint(m4, 2, ROUNDS, seconds) < 0)
                goto fail;
        snprintf(path, sizeof path, "%s/tokens", bench_dir());
        long long token_bytes = tree_size(path, &objects);
        snprintf(path, sizeof path, "%s/keyd.db", bench_dir());
        long long db_bytes = file_size(path);

        /* 5. The table. */
        printf("\n  %-36s %8s %8s %8s %9s  %8s  %8s\n", "sign (1 client)", "ops/s", "p50_us", "p99_us", "p99.9_us",
               "p99/ref", "p99/base");
        print_sign("1. keyd, default, 1 keyring (base)", &base, &ref1, NULL);
        print_sign("   ref, same rounds", &ref1, NULL, NULL);
        snprintf(path, sizeof path, "3. keyd, default, %ld+1 keyrings", n);
        print_sign(path, &def_n, &ref3, &base);
        snprintf(path, sizeof path, "   keyd, %s", agent);
        print_sign(path, &agent_n, &ref3, &base);
        print_sign("   ref, same rounds", &ref3, NULL, NULL);
        print_sign("4. keyd, default, after restart", &def_r, &ref4, &base);
        print_sign("   ref, same rounds", &ref4, NULL, NULL);
        printf("\n  %-36s %8s %8s %8s %9s  %8s  %8s\n", "mint (1 client)", "ops/s", "p50_us", "p99_us", "p99.9_us",
               "p99/ref", "p99/base");
        print_sign("1. keyd, default, 1 keyring (base)", &m_base, &m_ref1, NULL);
        print_sign("   ref, same rounds", &m_ref1, NULL, NULL);
        snprintf(path, sizeof path, "3. keyd, default, %ld+1 keyrings", n);
        print_sign(path, &m_n, &m_ref3, &m_base);
        print_sign("   ref, same rounds", &m_ref3, NULL, NULL);
        print_sign("4. keyd, default, after restart", &m_r, &m_ref4, &m_base);
        print_sign("   ref, same rounds", &m_ref4, NULL, NULL);

        printf("\n  %-44s %s\n", "scale", "value");
        printf("  %-44s %.1f s (%.1f keyrings/s, %.1f ms each)\n", "create N agent keyrings (1 client)", cr.seconds,
               (double) n / cr.seconds, cr.seconds * 1e3 / (double) n);
        printf("  %-44s p50 %.1f ms, p99 %.1f ms -> p50 %.1f ms, p99 %.1f ms\n",
               "  create latency, first tenth -> last tenth", cr.first_p50, cr.first_p99, cr.last_p50, cr.last_p99);
        double raw_rate = raw.seconds > 0 ? (double) raw.pairs / raw.seconds : 0,
               key_rate = 2.0 * (double) n / cr.seconds, keygen_ratio = raw_rate > 0 ? key_rate / raw_rate : 0;
        printf("  %-44s %.1f pairs/s (%ld pairs in %d rounds, %.2f ms each)\n", "raw C_GenerateKeyPair ES256, token",
               raw_rate, raw.pairs, (int) (raw.pairs / RAW_PAIRS), raw.seconds * 1e3 / (double) (raw.pairs ?: 1));
        printf("  %-44s %.1f keys/s = %.2fx raw over the whole run\n", "  creation, 2 keys per keyring", key_rate,
               keygen_ratio);
        printf("  %-44s %.2fx (median of %d segments; target >= %.2fx: %s)\n",
               "  creation against raw, segment by segment", cr.ratio_median, cr.segments, KEYGEN_TARGET,
               cr.ratio_median >= KEYGEN_TARGET ? "OK" : "MISSED");
        printf("  %-44s %.3f s\n", "stop (SIGTERM to exit)", rs.stop_s);
        printf("  %-44s %.3f s (target <= %.0f s: %s)\n", "start-up (exec to /healthz 200)", rs.ready_s,
               START_TARGET, rs.ready_s <= START_TARGET ? "OK" : "MISSED");
        printf("  %-44s %.3f s (%ld objects; keyd's start-up = %.2fx it)\n",
               "  token's floor: initialise, log in, list", rs.floor_s, rs.floor_objects,
               rs.floor_s > 0 ? rs.ready_s / rs.floor_s : 0);
        if (rs.reconcile_ms >= 0)
                printf("  %-44s %ld ms (target <= %.0f s: %s)\n", "reconcile (keyd's log)", rs.reconcile_ms,
                       START_TARGET, (double) rs.reconcile_ms <= START_TARGET * 1e3 ? "OK" : "MISSED");
        else
                printf("  %-44s n/a (no \"Reconciled in\" line in keyd.log)\n", "reconcile (keyd's log)");
        printf("  %-44s %.1f MB (VmHWM %.1f MB)\n", "RSS, 1 keyring, after start", (double) rss1 / 1024,
               (double) hwm1 / 1024);
        printf("  %-44s %.1f MB (VmHWM %.1f MB)\n", "RSS, N+1 keyrings, after creating them", (double) rss_n / 1024,
               (double) hwm_n / 1024);
        printf("  %-44s %.1f MB (VmHWM %.1f MB; %.1f kB per keyring over 1)\n", "RSS, N+1 keyrings, after restart",
               (double) rs.rss_kb / 1024, (double) rs.hwm_kb / 1024, (double) (rs.rss_kb - rss1) / (double) n);
        printf("  %-44s first %.2f ms, median %.2f ms (%zu bytes)\n", "GET /v1/keyrings (first page, 100)",
               list_first * 1e3, list_med * 1e3, list_len);
        printf("  %-44s first %.2f ms, median %.2f ms (%zu bytes)\n", "GET /v1/keyrings?limit=1000 (first page)",
               page1000_first * 1e3, page1000_med * 1e3, page1000_len);
        printf("  %-44s %.1f ms (%ld requests, %ld keyrings)\n", "  every page, limit=1000 (1 connection)",
               walk1000 * 1e3, walk1000_pages, walk1000_rings);
        printf("  %-44s %.1f ms (%ld requests, %ld keyrings)\n", "  every page, limit=100 (1 connection)",
               walk100 * 1e3, walk100_pages, walk100_rings);
        printf("  %-44s first %.3f ms, median %.3f ms (%zu bytes)\n", "JWKS build/serve (default/jwks)",
               jwks_first * 1e3, jwks_med * 1e3, jwks_len);
        printf("  %-44s median %.3f ms -> %.3f ms (%zu bytes)\n", "GET /healthz, 1 keyring -> N+1", hz1_med * 1e3,
               hzn_med * 1e3, hz_len);
        printf("  %-44s %.1f MB, %ld .object files; keyd.db %.1f MB (with every audit record of the run)\n",
               "token directory", (double) token_bytes / (1024 * 1024), objects, (double) db_bytes / (1024 * 1024));

        double r3 = def_n.p99 / ref3.p99, ra = agent_n.p99 / ref3.p99, r4 = def_r.p99 / ref4.p99;
        double worst = r3 > ra ? r3 : ra;
        if (r4 > worst)
                worst = r4;
        double mr3 = m_n.p99 / m_ref3.p99, mr4 = m_r.p99 / m_ref4.p99, mworst = mr3 > mr4 ? mr3 : mr4;
        printf("\n# %ld agent keyrings: mint p99 no worse than with one keyring (p99/ref <= %.2f): %s (worst %.2fx; "
               "A/A with 1 keyring %.2fx; against step 1: %.2fx, %.2fx)\n",
               n, P99_SLACK, mworst <= P99_SLACK ? "OK" : "MISSED", mworst, m_base.p99 / m_ref1.p99,
               m_n.p99 / m_base.p99, m_r.p99 / m_base.p99);

        bool ok = worst <= P99_SLACK;
        printf("# SPEC §10, %ld agent keyrings: sign p99 no worse than with one keyring (p99/ref <= %.2f): %s "
               "(worst %.2fx; A/A with 1 keyring %.2fx; against step 1: %.2fx, %.2fx, %.2fx)\n",
               n, P99_SLACK, ok ? "OK" : "MISSED", worst, base.p99 / ref1.p99, def_n.p99 / base.p99,
               agent_n.p99 / base.p99, def_r.p99 / base.p99);
        ok = ok && mworst <= P99_SLACK;
        rc = strict && !ok ? 1 : 0;
        goto out;
fail:
        bench_show_log();
out:
        raw_close(&raw);
        cleanup();
        return rc;
}
