/* SPDX-License-Identifier: MIT */
/* Health, as the Unix socket and the public listener tell it (/metrics: metrics.c). */
#include <stdio.h>

#include "api/api-internal.h"
#include "common/crypto-util.h"

/* The token's part of /healthz: up, or down and why (keyd answers 503 for everything that signs until it is up). The
 * public listener says up or down and why, not how busy the sessions are. */
static json_t *token_health(const HsmHealth *th, bool local) {
        if (!local)
                return json_pack("{s:b, s:s?}", "up", th->up, "reason", th->up ? NULL : th->reason);
        return json_pack("{s:b, s:s?, s:{s:i, s:i, s:i, s:i}, s:I}", "up", th->up, "reason",
                         th->up ? NULL : th->reason, "sessions", "busy", (int) th->sessions_busy, "idle",
                         (int) th->sessions_idle, "stuck", (int) th->sessions_stuck, "max", (int) th->max_sessions,
                         "reinits", (json_int_t) th->reinits);
}

/* Whether a listener answers for this keyring: the Unix socket for every keyring (or the one asked for), the public
 * listener for those it publishes (issuer keyrings with publish): an agent keyring is none of a JWKS pool's business,
 * and its name is not the network's. */
static bool health_counts(Ring *r, bool local, const char *only) {
        if (only && !streq(ring_name(r), only))
                return false;
        return local || (ring_kind(r) == RING_ISSUER && ring_policy(r)->publish);
}

/* Why a keyring is not healthy, for the local body: degraded (its lifecycle or its jwks-file), or unable to sign. */
static const char *ring_why(Ring *r) {
        return ring_degraded(r) ?: "it cannot sign: its active key is not open in the token";
}

unsigned api_health(Api *a, bool local, const char *only, json_t **ret) {
        _cleanup_json_ json_t *degraded = json_array(), *reasons = json_object(), *o = NULL;
        char storage[128], message[512] = "", first[KEYRING_NAME_MAX + 1] = "";
        Engine *e = a->engine;
        const char *status;
        size_t n = 0;
        HsmHealth th;
        bool storage_ok;

        if (!degraded || !reasons)
                return *ret = NULL, MHD_HTTP_INTERNAL_SERVER_ERROR;
        engine_read_lock(e);
        for (size_t i = 0; i < engine_n_rings(e); i++) {
                Ring *r = engine_ring_at(e, i);
                if (!health_counts(r, local, only))
                        continue;
                n++;
                /* Degraded, or unable to sign for any reason (an active key that could not be opened): never "ok". */
                if (ring_healthy(r))
                        continue;
                if (!first[0]) {
                        snprintf(first, sizeof first, "%s", ring_name(r));
                        if (local)
                                snprintf(message, sizeof message, "keyring %s: %s", ring_name(r), ring_why(r));
                        else
                                snprintf(message, sizeof message, "keyring %s is degraded", ring_name(r));
                }
                (void) json_array_append_new(degraded, json_string(ring_name(r)));
                if (local)
                        (void) json_object_set_new(reasons, ring_name(r), json_string(ring_why(r)));
        }
        engine_read_unlock(e);
        if (json_array_size(degraded) > 1)
                snprintf(message + strlen(message), sizeof message - strlen(message), " (and %zu more keyrings)",
                         json_array_size(degraded) - 1);

        hsm_health(engine_hsm(e), &th);
        /* A database that cannot be written fails every mint and change, and every revocation: not healthy, whatever
         * the keyrings say. */
        storage_ok = !store_health_fault(a->cfg.storage, NULL, storage, sizeof storage);
        if (!th.up)
                snprintf(message, sizeof message, "the token is down: %s", th.reason);
        else if (!storage_ok)
                snprintf(message, sizeof message, "the database cannot be written: %s", storage);
        /* Anything but ok is 503: a load balancer or a probe that reads only the status code takes it as "this
         * instance does not keep its promises now" (docs/API.md, GET /healthz). */
        status = !th.up || !storage_ok ? "unavailable" : json_array_size(degraded) ? "degraded" : "ok";
        if (local)
                o = json_pack("{s:s, s:I, s:O, s:O, s:o, s:s}", "status", status, "keyrings", (json_int_t) n,
                              "degraded", degraded, "reasons", reasons, "token", token_health(&th, true), "version",
                              KEYD_VERSION);
        else
                o = json_pack("{s:s, s:I, s:O, s:o}", "status", status, "keyrings", (json_int_t) n, "degraded",
                              degraded, "token", token_health(&th, false));
        if (o && !storage_ok)
                (void) json_object_set_new(o, "storage", json_string(storage));
        /* Every answer but 2xx carries {error, message} (docs/API.md, Errors): keydctl and people read why. */
        if (o && !streq(status, "ok")) {
                (void) json_object_set_new(o, "error", json_string(status));
                (void) json_object_set_new(o, "message", json_string(message));
        }
        *ret = TAKE_PTR(o);
        return streq(status, "ok") ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE;
}

int h_healthz(Request *rq, const char *arg, Reply *rp) {
        static const char *const allowed[] = { "keyring", NULL };
        const char *only;
        json_t *body;
        (void) arg;

        if (api_query_check(rq, allowed, rp) < 0)
                return -EINVAL;
        only = api_query_get(rq, "keyring");
        if (only && !keyring_name_valid(only))
                return reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request", "keyring: not a keyring name");
        if (only) {
                engine_read_lock(rq->api->engine);
                bool known = engine_get_ring(rq->api->engine, only);
                engine_read_unlock(rq->api->engine);
                if (!known)
                        return reply_error(rp, MHD_HTTP_NOT_FOUND, "not_found", "no keyring %s", only);
        }
        unsigned status = api_health(rq->api, true, only, &body);
        return reply_json(rp, status, body);
}
