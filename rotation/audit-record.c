/* SPDX-License-Identifier: MIT */
/* Building audit records: the one place where an actor and an action become a StoreAudit. */
#include <unistd.h>

#include "common/crypto-util.h"
#include "common/hex.h"
#include "common/utf8.h"
#include "rotation/audit.h"

static Actor self_actor = { -1, -1, -1, "keyd" };

const Actor *actor_self(void) {
        if (self_actor.pid < 0)
                self_actor.pid = getpid();
        return &self_actor;
}

/* s as the audit log can hold it: s itself if it is valid UTF-8 (or NULL), else a new string in *owned where every
 * byte that is not part of a valid sequence is written "\xHH". NULL with *owned NULL when out of memory. */
static const char *utf8_clean(const char *s, char **owned, int *err) {
        const unsigned char *u = (const unsigned char *) s;
        size_t n = s ? strlen(s) : 0, i = 0, o = 0, len;
        char *out;

        if (!s || utf8_valid(s, n))
                return s;
        out = malloc(n * 4 + 1);
        if (!out) {
                *err = -ENOMEM;
                return NULL;
        }
        while (i < n) {
                len = utf8_char_len(u + i, n - i);
                if (len > 0) {
                        memcpy(out + o, u + i, len);
                        o += len;
                        i += len;
                } else {
                        out[o++] = '\\';
                        out[o++] = 'x';
                        hex_encode(u + i++, 1, out + o, 3);
                        o += 2;
                }
        }
        out[o] = 0;
        *owned = out;
        return out;
}

int audit_record_build(AuditRecord *r, const Actor *a, usec_t time, const char *action, const char *keyring,
                       const char *kid, const char *result, const char *detail_fmt, va_list ap) {
        int err = 0;

        *r = (AuditRecord){ 0 };
        a = a ?: actor_self();
        if (detail_fmt) {
                _cleanup_json_ json_t *detail = json_vpack_ex(NULL, 0, detail_fmt, ap);
                /* Strings in detail are UTF-8 already: jansson refuses anything else. */
                if (!detail || store_audit_detail_dump(detail, &r->owned[0]) < 0)
                        return -ENOMEM;
                r->rec.detail_canonical = true;
        }
        r->rec.time = time;
        r->rec.uid = a->uid;
        r->rec.pid = a->pid;
        r->rec.comm = (char *) utf8_clean(a->comm, &r->owned[1], &err);
        r->rec.keyring = (char *) utf8_clean(keyring, &r->owned[2], &err);
        r->rec.kid = (char *) utf8_clean(kid, &r->owned[3], &err);
        r->rec.action = (char *) action;
        r->rec.result = (char *) result;
        r->rec.detail = r->owned[0];
        if (err < 0) {
                audit_record_done(r);
                return err;
        }
        return 0;
}

void audit_record_done(AuditRecord *r) {
        for (size_t i = 0; i < ELEMENTSOF(r->owned); i++)
                free(r->owned[i]);
        *r = (AuditRecord){ 0 };
}
