/* SPDX-License-Identifier: MIT */
#pragma once

/* The fixture of the API fuzz targets (fuzz-api-body, fuzz-http): a real keyd stack in a private temporary
 * directory, built once per process (and again every KEYD_FUZZ_EPOCH inputs, so that the token, the database and
 * the audit chain never grow without bound): a SoftHSM2 token of its own (SOFTHSM2_CONF), the Store on a SQLite file,
 * the Engine with four keyrings with their keys (issuer keyrings "issuer", "signer" and "victim", signable by the
 * current user, the last two with allow-raw-sign; agent "agent" owned by the current uid), the AuditLog, and an Api:
 * filled by hand for api_dispatch(), or started with api_start() on a Unix socket. No criterion: the few lines of
 * tests/helpers this needs are here. */
#include <pthread.h>
#include <stdbool.h>

#include "api/api-internal.h"
#include "api/peer.h"
#include "pkcs11/hsm.h"
#include "rotation/audit.h"
#include "rotation/engine.h"
#include "store/store.h"

#define FIXTURE_TOKEN_LABEL "keyd-fuzz"

typedef struct Fixture {
        char *dir;
        char *db_path;
        char *socket_path;
        Hsm *hsm;
        Store *store;
        Engine *engine;
        AuditLog *audit;
        Api *api;
        bool server;   /* api from api_start(), else filled by hand */
        char user[64]; /* the current user's name ("" if the uid has none: then it is the dev uid) */

        /* Api.call: administrative changes, serialised, run on the caller's thread followed by engine_tick() as the
         * daemon's loop does. While calls_left is 0 they are answered -ECANCELED (503 "keyd is stopping") without
         * running, so that what an input can change stays bounded; a refused call is counted in calls_refused. */
        pthread_mutex_t call_lock;
        unsigned calls_left;
        unsigned long calls_run, calls_refused;

        char *token;     /* a valid token of keyring "issuer" (see fixture_token()) */
        usec_t token_at; /* when it was minted */
        unsigned long inputs;
        unsigned generation; /* how many times everything was built again */
        bool verbose;        /* $KEYD_FUZZ_VERBOSE: debug logs, and the targets print what they get back */
} Fixture;

/* Build everything (server: api_start() on <dir>/keyd.sock). Aborts on any failure: a fuzzer without its fixture is
 * useless. Registers nothing: the caller calls fixture_teardown() (e.g. from atexit). */
void fixture_setup(Fixture *f, bool server);
/* Stop and free everything, remove the directory. Safe on a fixture that was never set up. */
void fixture_teardown(Fixture *f);
/* Count one input; every KEYD_FUZZ_EPOCH inputs (default 20000; 0 never) build everything again. */
void fixture_next_input(Fixture *f);

/* A token minted by keyring "issuer" for the verify route: iss https://fuzz.test, aud "fuzz", sub "fuzzer", 10 min;
 * minted again when older than 5 min. */
const char *fixture_token(Fixture *f);
/* The kid of the key of keyring ring in state s, copied into kid; false if there is none. */
bool fixture_kid(Fixture *f, const char *ring, KeyState s, char kid[STORE_KID_MAX + 1]);
