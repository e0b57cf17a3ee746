/* SPDX-License-Identifier: MIT */
#include <openssl/sha.h>
#include <stdio.h>

#include "common/crypto-util.h"
#include "jose/b64.h"
#include "rotation/jwks.h"

/* doc (consumed; NULL when building it failed) as compact JSON, members in their order, in a new string. */
static int dump_compact(json_t *doc, char **ret, size_t *ret_len) {
        _cleanup_json_ json_t *d = doc;
        char *s;

        if (!d)
                return -ENOMEM;
        s = json_dumps(d, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (!s)
                return -ENOMEM;
        *ret = s;
        if (ret_len)
                *ret_len = strlen(s);
        return 0;
}

int jwks_build(StoreKey *const *keys, size_t n, char **ret, size_t *ret_len) {
        static const KeyState order[] = { KEY_STATE_ACTIVE, KEY_STATE_NEXT, KEY_STATE_RETIRED };
        _cleanup_json_ json_t *list = json_array();

        if (!list)
                return -ENOMEM;
        for (size_t o = 0; o < ELEMENTSOF(order); o++)
                for (size_t i = 0; i < n; i++) {
                        if (keys[i]->state != order[o])
                                continue;
                        json_t *jwk = json_loads(keys[i]->jwk, JSON_REJECT_DUPLICATES, NULL);
                        if (!jwk || !json_is_object(jwk)) {
                                json_decref(jwk);
                                return -EBADMSG;
                        }
                        if (json_array_append_new(list, jwk) < 0)
                                return -ENOMEM;
                }
        return dump_compact(json_pack("{s:O}", "keys", list), ret, ret_len);
}

void jwks_etag(const char *body, size_t len, char etag[JWKS_ETAG_MAX]) {
        uint8_t md[SHA256_DIGEST_LENGTH];

        SHA256((const uint8_t *) body, len, md);
        /* 144 bits: 24 characters between the quotes. */
        etag[0] = '"';
        size_t n = jose_b64url_encode_to(md, 18, etag + 1);
        etag[1 + n] = '"';
        etag[2 + n] = 0;
}

unsigned jwks_max_age(const Policy *p, usec_t last_revocation, usec_t now) {
        usec_t m = p->prepublish / 2;
        unsigned s;

        m = MIN(m, 86400 * USEC_PER_SEC);
        s = (unsigned) (m / USEC_PER_SEC);
        if (last_revocation > 0 && now - last_revocation < JWKS_REVOCATION_WINDOW)
                s = MIN(s, JWKS_REVOCATION_MAX_AGE);
        return s; /* 0 for a prepublish of one second: verifiers revalidate every time */
}

int jwks_revocations_payload(const char *ring, const char *issuer, StoreKey *const *keys, size_t n, usec_t now,
                             char **ret) {
        _cleanup_json_ json_t *list = json_array();
        char when[32];

        if (!list)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                if (keys[i]->state != KEY_STATE_REVOKED)
                        continue;
                json_t *e = json_pack("{s:s, s:s, s:s}", "kid", keys[i]->kid, "revoked_at",
                                      format_rfc3339(when, sizeof when, keys[i]->revoked_at), "reason",
                                      keys[i]->reason ?: "unspecified");
                if (!e || json_array_append_new(list, e) < 0)
                        return -ENOMEM;
        }
        return dump_compact(json_pack("{s:s, s:s?, s:I, s:O}", "keyring", ring, "iss", issuer, "iat",
                                      (json_int_t) (now / USEC_PER_SEC), "revoked", list),
                            ret, NULL);
}
