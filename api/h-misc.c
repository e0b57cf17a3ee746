/* SPDX-License-Identifier: MIT */
/* Health (/metrics: metrics.c). */
#include "api/api-internal.h"
#include "common/crypto-util.h"

int h_healthz(Request *rq, const char *arg, Reply *rp) {
        Engine *e = rq->api->engine;
        json_t *degraded = json_array();
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
        return reply_json(rp, MHD_HTTP_OK,
                          json_pack("{s:s, s:I, s:o, s:s}", "status", json_array_size(degraded) ? "degraded" : "ok",
                                    "keyrings", (json_int_t) n, "degraded", degraded, "version", KEYD_VERSION));
}
