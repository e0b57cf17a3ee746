/* SPDX-License-Identifier: MIT */
/* libFuzzer target for every API request body, through the real router and handlers: api_dispatch() on a real
 * fixture (fixture.h: a SoftHSM2 token, the SQLite store, the engine with keyrings "issuer", "agent", "signer",
 * "victim", the audit log, an Api filled by hand whose call runs the change at once). Also built as a replay program
 * (replay.c) that runs the committed corpus inside "make check".
 *
 * Input: two header bytes, then the body.
 *   byte 0, the route, ('0' + n) mod 9: 0 mint (POST /v1/keyrings/R/tokens), 1 jws (.../jws), 2 sign (.../sign),
 *     3 verify (POST /v1/verify), 4 keyring create (POST /v1/keyrings), 5 key revoke (POST /v1/keys/K/revoke),
 *     6 token revoke (POST /v1/tokens/revoke), 7 rotate (.../rotate), 8 disable (.../disable);
 *   byte 1, the target and the peer: (byte | 0x20) - 'a', mod 8, picks R from rings[] or K with kid_for(); an
 *     upper-case letter (bit 0x20 clear) sends the request as a stranger (uid 65534, no name, no groups) instead of
 *     the current user, who is admin and may sign on every keyring.
 * In the body, "@token@" is replaced by a valid token of keyring "issuer" (so that verify reaches the signature and
 * claim checks, which no mutation could reach by itself).
 *
 * Bounded state, so that a long run neither slows down nor fills the disk: keyring create runs only for the names
 * fz0..fz3 (the engine refuses a second create of a name, so at most four keyrings are ever added); disable never
 * targets "issuer", "agent" or "signer" (it would end signing with them for the rest of the run: those targets go
 * to "victim");
 * rotate, key revoke and token revoke each make at most 16 changes per epoch; beyond, and for other create names,
 * the change is answered as by a stopping daemon (503) without running: every body is still parsed and checked up to
 * the change itself. Everything is rebuilt every KEYD_FUZZ_EPOCH (default 20000) inputs. */
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "common/crypto-util.h"
#include "tests/fuzz/fixture.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

enum { R_MINT, R_JWS, R_SIGN, R_VERIFY, R_CREATE, R_REVOKE_KEY, R_REVOKE_TOKEN, R_ROTATE, R_DISABLE, _R_MAX };
#define PER_EPOCH 16

static const char *const suffixes[_R_MAX] = {
        [R_MINT] = "/tokens", [R_JWS] = "/jws", [R_SIGN] = "/sign", [R_ROTATE] = "/rotate", [R_DISABLE] = "/disable",
};
static const char *const fixed_paths[_R_MAX] = {
        [R_VERIFY] = "/v1/verify", [R_CREATE] = "/v1/keyrings", [R_REVOKE_TOKEN] = "/v1/tokens/revoke",
};
static const char *const rings[8] = {
        "issuer", "agent", "signer", "victim", "fz0", "no-such-ring", "..",
        "x123456789012345678901234567890123456789012345678901234567890abcd", /* 65: one too long */
};

static Fixture fx;
static Peer me, stranger;
static unsigned budget[_R_MAX];
static unsigned budget_generation = (unsigned) -1;

static void stop(void) {
        peer_done(&me);
        fixture_teardown(&fx);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        int sv[2];
        (void) argc, (void) argv;

        fixture_setup(&fx, false);
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 || peer_from_fd(sv[0], &me) < 0)
                abort();
        close(sv[0]);
        close(sv[1]);
        stranger = (Peer){ .uid = 65534, .gid = 65534, .pid = 1, .comm = "stranger", .n_groups = 1,
                           .groups = { 65534 } };
        atexit(stop);
        return 0;
}

/* The kid for key revoke, target t: a key of the fixture (if it has one in that state), else a kid that is empty,
 * one character too long, or well-formed and unknown. */
static const char *kid_for(unsigned t, char kid[STORE_KID_MAX + 1]) {
        static const struct {
                const char *ring;
                KeyState state;
        } keys[] = { { "issuer", KEY_STATE_ACTIVE }, { "issuer", KEY_STATE_NEXT }, { "agent", KEY_STATE_ACTIVE },
                     { "victim", KEY_STATE_ACTIVE }, { "issuer", KEY_STATE_RETIRED } };
        if (t < ELEMENTSOF(keys) && fixture_kid(&fx, keys[t].ring, keys[t].state, kid))
                return kid;
        return t == 5   ? ""
               : t == 6 ? "0123456789012345678901234567890123456789012345678901234567890abcd"
                        : "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
}

/* Replace each "@token@" in body with a valid token. A new string in *ret, or NULL if there is none to replace. */
static char *substitute(const char *body, size_t len, size_t *ret_len) {
        static const char mark[] = "@token@";
        const size_t m = sizeof mark - 1;
        const char *p = memmem(body, len, mark, m);
        if (!p)
                return NULL;
        const char *tok = fixture_token(&fx);
        size_t tl = strlen(tok), n = 0, cap = len + 1;
        for (const char *q = p; q; q = memmem(q + m, len - (size_t) (q + m - body), mark, m))
                cap += tl;
        char *out = malloc(cap);
        if (!out)
                abort();
        for (const char *q = body; q < body + len;) {
                p = memmem(q, len - (size_t) (q - body), mark, m);
                size_t k = p ? (size_t) (p - q) : len - (size_t) (q - body);
                memcpy(out + n, q, k);
                n += k;
                q += k;
                if (p) {
                        memcpy(out + n, tok, tl);
                        n += tl;
                        q += m;
                }
        }
        out[n] = 0;
        *ret_len = n;
        return out;
}

/* Whether this input's change (if the handler gets that far) may run: see the top of the file. */
static bool change_allowed(unsigned route, const char *body, size_t len) {
        if (budget_generation != fx.generation) {
                budget_generation = fx.generation;
                for (size_t i = 0; i < _R_MAX; i++)
                        budget[i] = PER_EPOCH;
        }
        switch (route) {
        case R_CREATE: {
                _cleanup_json_ json_t *o = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
                const char *name = json_string_value(json_object_get(o, "name"));
                return name && strlen(name) == 3 && startswith(name, "fz") && name[2] >= '0' && name[2] <= '3';
        }
        case R_ROTATE:
        case R_REVOKE_KEY:
        case R_REVOKE_TOKEN:
                return budget[route] > 0; /* spent only when a change runs */
        default:
                return true;
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char url[512], kid[STORE_KID_MAX + 1];
        _cleanup_free_ char *body = NULL;
        size_t len;

        if (!fx.dir)
                LLVMFuzzerInitialize(NULL, NULL);
        if (size < 2 || size - 2 > API_BODY_MAX)
                return 0;
        unsigned route = (data[0] + 6u) % _R_MAX, target = (unsigned) ((data[1] | 0x20) - 'a') % 8u;
        bool as_stranger = !(data[1] & 0x20);

        fixture_next_input(&fx);
        body = substitute((const char *) data + 2, size - 2, &len);
        if (!body) {
                len = size - 2;
                body = malloc(len + 1);
                if (!body)
                        abort();
                memcpy(body, data + 2, len);
                body[len] = 0;
        }

        if (fixed_paths[route])
                snprintf(url, sizeof url, "%s", fixed_paths[route]);
        else if (route == R_REVOKE_KEY) {
                snprintf(url, sizeof url, "/v1/keys/%s/revoke", kid_for(target, kid));
        } else {
                const char *ring = rings[target];
                if (route == R_DISABLE && target < 3)
                        ring = "victim"; /* never "issuer", "agent", "signer" */
                snprintf(url, sizeof url, "/v1/keyrings/%s%s", ring, suffixes[route]);
        }

        /* The router reads the body (len bytes, NUL-terminated as the server keeps it). */
        Request rq = { .api = fx.api, .peer = as_stranger ? &stranger : &me, .method = "POST",
                       .body = len > 0 ? body : NULL, .body_len = len };
        Reply rp = { 0 };
        pthread_mutex_lock(&fx.call_lock);
        bool allowed = change_allowed(route, body, len);
        unsigned saved = fx.calls_left;
        unsigned long ran = fx.calls_run;
        fx.calls_left = allowed ? 1 : 0;
        pthread_mutex_unlock(&fx.call_lock);

        api_dispatch(&rq, url, &rp);

        pthread_mutex_lock(&fx.call_lock);
        fx.calls_left = saved;
        if (fx.calls_run != ran && budget[route] > 0)
                budget[route]--;
        pthread_mutex_unlock(&fx.call_lock);

        if (fx.verbose) { /* KEYD_FUZZ_VERBOSE: what came back, for writing seeds */
                _cleanup_free_ char *text = rp.json ? json_dumps(rp.json, JSON_COMPACT) : NULL;
                fprintf(stderr, "%s %s %s%s: %u %s\n", as_stranger ? "stranger" : "user", url,
                        allowed ? "" : "(no change) ", body, rp.status, text ?: rp.text ?: "");
        }
        /* Every request gets a status and a JSON body or text. */
        if (rp.status < 200 || rp.status > 599 || (!rp.json && !rp.text))
                abort();
        if (rp.status >= 400 && !json_is_string(json_object_get(rp.json, "error")))
                abort();
        json_decref(rp.json);
        free(rp.text);
        json_decref(rq.json);
        return 0;
}
