/* SPDX-License-Identifier: MIT */
/* Auditing requests: one record per request that signs, mints, or is refused, written before the answer. */
#include "api/api-internal.h"
#include "common/log.h"

int api_audit(Request *rq, const char *action, const char *ring, const char *kid, const char *result,
              const char *detail_fmt, ...) {
        Actor actor = api_actor(rq);
        AuditRecord rec;
        va_list ap;
        int64_t r;

        va_start(ap, detail_fmt);
        r = audit_record_build(&rec, &actor, now_realtime(), action, ring, kid, result, detail_fmt, ap);
        va_end(ap);
        if (r >= 0)
                r = audit_log_write(rq->api->audit, &rec.rec, STORE_COMMITTED);
        audit_record_done(&rec);
        if (r < 0) {
                atomic_fetch_add(&rq->api->audit_failures, 1);
                return log_error_errno((int) r, "Cannot write the audit record of %s: %m", action);
        }
        return 0;
}
