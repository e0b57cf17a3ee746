/* SPDX-License-Identifier: MIT */
/* Denied tokens: committed to the store with their audit record, then told to the denylist that verification asks. */
#include "common/crypto-util.h"
#include "common/log.h"
#include "rotation/engine-internal.h"

int engine_deny_token(Engine *e, const char *jti, const char *ring, usec_t exp, const Actor *a) {
        usec_t now = engine_now(e);
        int rc;

        if (!jti || !*jti || strlen(jti) > 256 || exp <= now)
                return -EINVAL;
        StoreRevokedToken t = { .jti = (char *) jti, .keyring = (char *) ring, .exp = exp, .revoked_at = now };
        rc = store_begin(e->store, STORE_SYNCED);
        if (rc >= 0)
                rc = store_revoked_token_insert(e->store, &t);
        if (rc >= 0)
                rc = engine_audit(e, a, "token.deny", ring, NULL, "ok", "{s:s, s:I}", "jti", jti, "exp",
                                  (json_int_t) (exp / USEC_PER_SEC));
        if (rc >= 0)
                rc = engine_commit(e);
        if (rc < 0) {
                engine_rollback(e);
                return rc;
        }
        return denylist_add(e->denied, jti, exp);
}

void engine_prune_denied(Engine *e) {
        usec_t now = engine_now(e);
        if (denylist_prune(e->denied, now) > 0 && store_begin(e->store, STORE_COMMITTED) >= 0) {
                if (store_revoked_token_prune(e->store, now) < 0 || store_commit(e->store) < 0)
                        store_rollback(e->store);
        }
}
