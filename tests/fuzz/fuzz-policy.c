/* SPDX-License-Identifier: MIT */
/* libFuzzer target for a keyring policy in JSON (the "policy" member of POST /v1/keyrings, and the form the store
 * keeps): policy_update_from_json() over the defaults of a kind, policy_validate(), and the round trip: a valid
 * policy's policy_to_json() must read back (over fresh defaults, and over a policy_copy()) into a valid policy whose
 * JSON is equal. The input is the JSON text; a leading '!' selects the agent kind's defaults (issuer otherwise).
 * Also built as a replay program (replay.c) that runs the committed corpus inside "make check". */
#include <stdint.h>

#include "common/crypto-util.h"
#include "rotation/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* want (a policy_to_json()) read into the defaults of kind gives the same JSON. */
static void check_round_trip(RingKind kind, const json_t *want) {
        _cleanup_json_ json_t *got = NULL;
        _cleanup_free_ char *err = NULL;
        Policy q;

        policy_init(&q, kind);
        if (policy_update_from_json(&q, want, &err) < 0)
                abort(); /* keyd refuses the JSON it wrote itself */
        if (policy_validate(&q, NULL) < 0 || policy_to_json(&q, &got) < 0)
                abort();
        if (!json_equal(want, got))
                abort();
        policy_done(&q);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        RingKind kind = RING_ISSUER;
        _cleanup_json_ json_t *o = NULL, *j = NULL, *jc = NULL;
        _cleanup_free_ char *err = NULL;
        const char *why = NULL;
        Policy p, copy;
        int r;

        if (size > 0 && data[0] == '!') {
                kind = RING_AGENT;
                data++, size--;
        }
        o = json_loadb((const char *) data, size, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, NULL);
        if (!o)
                return 0;
        policy_init(&p, kind);
        r = policy_update_from_json(&p, o, &err);
        if (r < 0) {
                if (r == -EINVAL && !err)
                        abort(); /* a refusal names the member */
                policy_done(&p);
                return 0;
        }
        if (!json_is_object(o))
                abort(); /* only an object is a policy */
        if (policy_validate(&p, &why) < 0) {
                if (!why)
                        abort();
                policy_done(&p);
                return 0;
        }
        if (policy_to_json(&p, &j) < 0)
                abort();
        check_round_trip(kind, j);
        check_round_trip(kind == RING_ISSUER ? RING_AGENT : RING_ISSUER, j);

        if (policy_copy(&p, &copy) < 0)
                abort();
        if (policy_to_json(&copy, &jc) < 0 || !json_equal(j, jc))
                abort();
        policy_done(&copy);
        policy_done(&p);
        return 0;
}
