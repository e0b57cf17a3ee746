/* SPDX-License-Identifier: MIT */
/* Health (/metrics: metrics.c). */
#include "api/api-internal.h"
#include "common/crypto-util.h"

/* The token's part of /healthz: up, or down and why (keyd answers 503 for everything that signs until it is up). */
static json_t *token_health(Engine *e, bool *ret_up) {
        HsmHealth th;
        hsm_health(engine_hsm(e), &th);
        *ret_up = th.up;
        return json_pack("{s:b, s:s?, s:{s:i, s:i, s:i, s:i}, s:I}", "up", th.up, "reason",
                         th.up ? NULL : th.reason, "sessions", "busy", (int) th.sessions_busy, "idle",
                         (int) th.sessions_idle, "stuck", (int) th.sessions_stuck, "max", (int) th.max_sessions,
                         "reinits", (json_int_t) th.reinits);
}

int h_healthz(Request *rq, const char *arg, Reply *rp) {
        Engine *e = rq->api->engine;
        json_t *degraded = json_array(), *token, *o;
        char storage[128];
        bool token_up, storage_ok;
        size_t n;
        (void) arg;

        engine_read_lock(e);
        n = engine_n_rings(e);
        /* Degraded, or unable to sign for any reason (an active key that could not be opened): never "ok". */
        for (size_t i = 0; degraded && i < n; i++) {
                Ring *r = engine_ring_at(e, i);
                if (!ring_healthy(r))
                        json_array_append_new(degraded, json_string(ring_name(r)));
        }
        engine_read_unlock(e);
        token = token_health(e, &token_up);
        /* A database that cannot be written fails every mint and change: not healthy, whatever the keyrings say. */
        storage_ok = !store_health_fault(rq->api->cfg.storage, NULL, storage, sizeof storage);
        /* A load balancer takes a 503 as "send no signing traffic here": the token cannot sign, or nothing minted
         * could be audited. */
        bool available = token_up && storage_ok;
        const char *status = !available ? "unavailable" : json_array_size(degraded) ? "degraded" : "ok";
        o = json_pack("{s:s, s:I, s:o, s:o, s:s}", "status", status, "keyrings", (json_int_t) n, "degraded", degraded,
                      "token", token, "version", KEYD_VERSION);
        if (o && !storage_ok)
                json_object_set_new(o, "storage", json_string(storage));
        return reply_json(rp, available ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, o);
}
