/* SPDX-License-Identifier: MIT */
/* The API fuzz targets' fixture (fixture.h). */
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <openssl/rand.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "common/log.h"
#include "common/strv.h"
#include "tests/fuzz/fixture.h"

#define SO_PIN "so-pin-for-fuzzing"
#define EPOCH_DEFAULT 20000
#define CALLS_PER_EPOCH 64

_printf_(2, 3) static void fail(int r, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        fputs("fixture: ", stderr);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fprintf(stderr, ": %s\n", r < 0 ? strerror(-r) : "failed");
        abort();
}

static char *path_in(const Fixture *f, const char *name) {
        char *p;
        if (asprintf(&p, "%s/%s", f->dir, name) < 0)
                fail(-ENOMEM, "asprintf");
        return p;
}

static char *write_file(const Fixture *f, const char *name, const char *s) {
        char *p = path_in(f, name);
        int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0 || write(fd, s, strlen(s)) != (ssize_t) strlen(s))
                fail(negative_errno(), "write %s", p);
        close(fd);
        return p;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        (void) st, (void) flag, (void) ftw;
        return remove(path);
}

static const char *module_path(void) {
        const char *m = getenv("SOFTHSM_MODULE");
        return m && *m ? m : KEYD_DEFAULT_MODULE;
}

/* A token of its own, as tests/helpers/test-token.c makes one; returns the PIN file. */
static char *token_setup(Fixture *f) {
        char conf[1024], pin[33];
        uint8_t rnd[16];
        int r;

        char *tokens = path_in(f, "tokens");
        if (mkdir(tokens, 0700) < 0)
                fail(negative_errno(), "mkdir %s", tokens);
        snprintf(conf, sizeof conf,
                 "directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
                 tokens);
        free(tokens);
        char *conf_path = write_file(f, "softhsm2.conf", conf);
        if (setenv("SOFTHSM2_CONF", conf_path, 1) < 0)
                fail(negative_errno(), "setenv");
        free(conf_path);
        if (RAND_bytes(rnd, sizeof rnd) != 1)
                fail(-EIO, "RAND_bytes");
        for (size_t i = 0; i < sizeof rnd; i++)
                snprintf(pin + 2 * i, 3, "%02x", rnd[i]);
        r = hsm_token_init(module_path(), FIXTURE_TOKEN_LABEL, SO_PIN, pin);
        if (r < 0)
                fail(r, "token init (%s)", hsm_last_error());
        return write_file(f, "pin", pin);
}

static void create_ring(Fixture *f, const char *name, RingKind kind, bool raw_sign) {
        char *users[] = { f->user, NULL };
        RingSpec spec = { .name = name, .kind = kind, .owner_uid = kind == RING_AGENT ? (int64_t) getuid() : -1 };
        Policy p;
        int r;

        policy_init(&p, kind);
        if (kind == RING_ISSUER) {
                p.issuer = strdup("https://fuzz.test");
                if (!p.issuer || (f->user[0] && strv_copy(users, &p.sign_users) < 0))
                        fail(-ENOMEM, "policy");
        }
        /* JWS and raw signatures with an issuer keyring: only where its policy says so. */
        r = raw_sign ? policy_set(&p, "allow-raw-sign", "yes", NULL) : 0;
        if (r < 0 && r != -ENOENT)
                fail(r, "policy allow-raw-sign");
        spec.policy = &p;
        r = engine_create_ring(f->engine, &spec, actor_self());
        if (r < 0)
                fail(r, "create keyring %s", name);
        policy_done(&p);
}

static int fixture_call(void *userdata, int (*fn)(Engine *e, void *arg), void *arg) {
        Fixture *f = userdata;
        int r;

        pthread_mutex_lock(&f->call_lock);
        if (f->calls_left == 0) {
                f->calls_refused++;
                r = -ECANCELED;
        } else {
                f->calls_left--;
                f->calls_run++;
                r = fn(f->engine, arg);
                (void) engine_tick(f->engine, NULL); /* as the daemon's loop does after its jobs */
        }
        pthread_mutex_unlock(&f->call_lock);
        return r;
}

/* The Api that api_start() would build, without the server (nor its sockets and threads): only what the router and
 * the handlers read. api_by_hand_free() frees it (api_stop() would also stop what was never started). */
static void api_by_hand(Fixture *f, char **admins) {
        Api *a = calloc(1, sizeof *a);
        if (!a)
                fail(-ENOMEM, "api");
        a->cfg = (ApiConfig){ .socket_fd = -EBADF, .public_fd = -EBADF, .max_connections = 256,
                              .max_connections_per_uid = 32, .idle_timeout = 30,
                              .dev_uid = f->user[0] ? (uid_t) -1 : getuid() };
        a->cfg.db_path = a->db_path = strdup(f->db_path);
        a->engine = f->engine;
        a->audit = f->audit;
        a->call = fixture_call;
        a->call_userdata = f;
        a->socket_fd = a->public_fd = -EBADF;
        pthread_mutex_init(&a->lock, NULL);
        a->per_uid = strmap_new();
        a->public_cache = strmap_new();
        a->route_stats = calloc(api_n_routes(), sizeof *a->route_stats);
        if (!a->db_path || !a->per_uid || !a->public_cache || !a->route_stats ||
            strv_copy(admins, &a->admin_users) < 0 || strv_split("keyd-admin", &a->admin_groups) < 0)
                fail(-ENOMEM, "api");
        f->api = a;
}

static void api_by_hand_free(Api *a) {
        if (!a)
                return;
        strmap_free(a->per_uid, free);
        strmap_free(a->public_cache, public_cache_free);
        strv_free(a->admin_users);
        strv_free(a->admin_groups);
        free(a->route_stats);
        free(a->db_path);
        pthread_mutex_destroy(&a->lock);
        free(a);
}

void fixture_setup(Fixture *f, bool server) {
        const char *tmp = getenv("TMPDIR");
        struct passwd *pw = getpwuid(getuid());
        char *admins[] = { f->user, NULL }, *pin_file;
        int r;

        *f = (Fixture){ .server = server, .calls_left = CALLS_PER_EPOCH };
        pthread_mutex_init(&f->call_lock, NULL);
        f->verbose = getenv("KEYD_FUZZ_VERBOSE");
        log_set_max_level(f->verbose ? LOG_DEBUG : LOG_CRIT);
        unsetenv("CREDENTIALS_DIRECTORY");
        if (pw)
                snprintf(f->user, sizeof f->user, "%s", pw->pw_name);

        if (asprintf(&f->dir, "%s/keyd-fuzz.XXXXXX", tmp && *tmp ? tmp : "/tmp") < 0 || !mkdtemp(f->dir))
                fail(negative_errno(), "mkdtemp");
        pin_file = token_setup(f);
        HsmConfig hc = { .module = module_path(), .uri = "pkcs11:token=" FIXTURE_TOKEN_LABEL, .pin_file = pin_file,
                         .sessions = 2 };
        r = hsm_open(&hc, &f->hsm);
        if (r < 0)
                fail(r, "hsm_open (%s)", hsm_last_error());
        free(pin_file);

        f->db_path = path_in(f, "keyd.db");
        r = store_open(f->db_path, 0, &f->store);
        if (r < 0)
                fail(r, "store_open");
        r = engine_new(f->hsm, f->store, NULL, &f->engine);
        if (r < 0)
                fail(r, "engine_new");
        r = engine_load(f->engine);
        if (r < 0)
                fail(r, "engine_load");
        create_ring(f, "issuer", RING_ISSUER, false);
        create_ring(f, "agent", RING_AGENT, false);
        create_ring(f, "signer", RING_ISSUER, true);
        create_ring(f, "victim", RING_ISSUER, true);
        r = engine_tick(f->engine, NULL);
        if (r < 0)
                fail(r, "engine_tick");
        r = audit_log_open(f->db_path, &f->audit);
        if (r < 0)
                fail(r, "audit_log_open");

        if (!server) {
                api_by_hand(f, admins);
                return;
        }
        f->socket_path = path_in(f, "keyd.sock");
        ApiConfig ac = { .socket_path = f->socket_path, .socket_fd = -EBADF, .public_fd = -EBADF,
                         .db_path = f->db_path, .admin_users = admins, .max_connections = 256,
                         .max_connections_per_uid = 32, .idle_timeout = 2,
                         .dev_uid = f->user[0] ? (uid_t) -1 : getuid() };
        r = api_start(&ac, f->engine, f->audit, fixture_call, f, &f->api);
        if (r < 0)
                fail(r, "api_start");
}

void fixture_teardown(Fixture *f) {
        if (!f->dir)
                return;
        if (f->server)
                f->api = api_stop(f->api); /* joins the server's threads: nothing uses the engine after this */
        else
                api_by_hand_free(TAKE_PTR(f->api));
        f->audit = audit_log_close(f->audit);
        f->engine = engine_free(f->engine);
        f->store = store_close(f->store);
        f->hsm = hsm_close(f->hsm);
        (void) nftw(f->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
        free(f->dir);
        free(f->db_path);
        free(f->socket_path);
        free(f->token);
        pthread_mutex_destroy(&f->call_lock);
        *f = (Fixture){};
}

void fixture_next_input(Fixture *f) {
        static long epoch = -1;
        if (epoch < 0) {
                const char *e = getenv("KEYD_FUZZ_EPOCH");
                uint64_t v;
                epoch = e && parse_uint64(e, LONG_MAX, &v) == 0 ? (long) v : EPOCH_DEFAULT;
        }
        if (epoch > 0 && ++f->inputs % (unsigned long) epoch == 0) {
                bool server = f->server;
                unsigned long inputs = f->inputs;
                unsigned generation = f->generation;
                fixture_teardown(f);
                fixture_setup(f, server);
                f->inputs = inputs;
                f->generation = generation + 1;
        }
}

/* The mint route itself makes the token, as a client would get it. */
const char *fixture_token(Fixture *f) {
        static const char body[] = "{\"sub\":\"fuzzer\",\"aud\":\"fuzz\",\"ttl\":600}";
        usec_t now = now_realtime();
        Peer peer = { 0 };
        int sv[2];

        if (f->token && now - f->token_at < 300 * USEC_PER_SEC)
                return f->token;
        free(f->token);
        f->token = NULL;
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 || peer_from_fd(sv[0], &peer) < 0)
                fail(negative_errno(), "peer");
        close(sv[0]);
        close(sv[1]);
        Request rq = { .api = f->api, .peer = &peer, .method = "POST", .body = (char *) body,
                       .body_len = strlen(body) };
        Reply rp = { 0 };
        api_dispatch(&rq, "/v1/keyrings/issuer/tokens", &rp);
        json_t *t = json_object_get(rp.json, "token");
        if (json_is_string(t))
                f->token = strdup(json_string_value(t));
        f->token_at = now;
        json_decref(rp.json);
        free(rp.text);
        json_decref(rq.json);
        peer_done(&peer);
        return f->token ?: "no.token.minted";
}

bool fixture_kid(Fixture *f, const char *ring, KeyState s, char kid[STORE_KID_MAX + 1]) {
        bool found = false;
        engine_read_lock(f->engine);
        Ring *r = engine_get_ring(f->engine, ring);
        const StoreKey *k = r ? ring_key_in_state(r, s) : NULL;
        if (k) {
                memcpy(kid, k->kid, STORE_KID_MAX + 1);
                found = true;
        }
        engine_read_unlock(f->engine);
        return found;
}
