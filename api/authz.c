/* SPDX-License-Identifier: MIT */
/* Roles (SPEC §4): verify for anyone who can connect, sign per keyring, admin by user or group. */
#include "api/api-internal.h"
#include "common/strv.h"

static bool listed(const Peer *p, char *const *users, char *const *groups) {
        if (p->user[0] && strv_contains(users, p->user))
                return true;
        for (char *const *g = groups; g && *g; g++)
                if (peer_in_group(p, *g))
                        return true;
        return false;
}

bool authz_admin(Api *a, const Peer *p) {
        bool ok;
        if (a->cfg.dev_uid != (uid_t) -1 && p->uid == a->cfg.dev_uid)
                return true;
        pthread_mutex_lock(&a->lock);
        ok = listed(p, a->admin_users, a->admin_groups);
        pthread_mutex_unlock(&a->lock);
        return ok;
}

bool authz_sign(Api *a, const Peer *p, Ring *r) {
        if (a->cfg.dev_uid != (uid_t) -1 && p->uid == a->cfg.dev_uid)
                return true;
        if (ring_kind(r) == RING_AGENT)
                return ring_owner_uid(r) >= 0 && (uid_t) ring_owner_uid(r) == p->uid;
        return listed(p, ring_policy(r)->sign_users, ring_policy(r)->sign_groups);
}

int authz_deny(Request *rq, Reply *rp, const char *ring, const char *what) {
        /* The router names the route that was refused: on /v1/keys/{kid}/..., the parameter is a kid. */
        bool is_kid = what && (startswith(what, "POST /v1/keys/") || startswith(what, "GET /v1/audit/keys/"));

        atomic_fetch_add(&rq->api->denied, 1);
        /* The denial is audited; if even that fails, the answer is still no. */
        (void) api_audit(rq, "authz.denied", is_kid ? NULL : ring, is_kid ? ring : NULL, "denied", "{s:s}", "request",
                         what);
        return reply_error(rp, MHD_HTTP_FORBIDDEN, "forbidden", "uid %u may not %s", (unsigned) rq->peer->uid, what);
}
