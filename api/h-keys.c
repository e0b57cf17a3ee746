/* SPDX-License-Identifier: MIT */
/* GET /v1/keys/{kid}: one key, with its public JWK and where its objects are in the token, as an RFC 7512 PKCS#11 URI
 * that standard tooling (p11tool, pkcs11-tool, OpenSSL's pkcs11 provider) takes: for an HSM vendor's audit, or to
 * sign with the key by hand in an emergency. */
#include <stdio.h>

#include "api/api-internal.h"
#include "common/hex.h"

/* RFC 7512 §2.3: a path attribute's value is pk11-pchar, everything else percent-encoded. */
static bool pk11_pchar(unsigned char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
               strchr("-._~:[]@!$'()*+,=&", c);
}

static void put_escaped(FILE *f, const uint8_t *p, size_t n, bool all) {
        for (size_t i = 0; i < n; i++)
                if (!all && p[i] != 0 && pk11_pchar(p[i]))
                        fputc(p[i], f);
                else
                        fprintf(f, "%%%02X", p[i]);
}

/* "pkcs11:token=T;object=L;id=%..;type=private": the private key object, by the token's label, the object's label
 * and its id (every byte percent-encoded, as RFC 7512 §2.3 suggests for ids). NULL for want of memory. */
static char *key_object_uri(const KeyObject *o) {
        char *uri = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&uri, &size);

        if (!f)
                return NULL;
        fputs("pkcs11:token=", f);
        put_escaped(f, (const uint8_t *) o->token, strlen(o->token), false);
        fputs(";object=", f);
        put_escaped(f, (const uint8_t *) o->label, strlen(o->label), false);
        fputs(";id=", f);
        put_escaped(f, o->id, o->id_len, true);
        fputs(";type=private", f);
        if (fclose(f) != 0) {
                free(uri);
                return NULL;
        }
        return uri;
}

static bool kid_valid(const char *kid) {
        for (const char *p = kid; *p; p++)
                if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' ||
                      *p == '_'))
                        return false;
        return *kid;
}

int h_key_show(Request *rq, const char *kid, Reply *rp) {
        Engine *e = rq->api->engine;
        char ring[KEYRING_NAME_MAX + 1] = "", key_id[STORE_KEY_ID_MAX + 1] = "", hex[2 * HSM_ID_MAX + 1];
        _cleanup_free_ char *jwk_text = NULL, *uri = NULL;
        json_t *jwk, *o;
        RingKind kind = RING_ISSUER;
        KeyObject obj;
        KeyCopy key;
        int r = -ENOENT;

        if (!kid_valid(kid))
                return reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request", "invalid kid (base64url)");
        engine_read_lock(e);
        Ring *rr = NULL;
        const StoreKey *k = engine_find_key(e, kid, &rr);
        if (k) {
                (void) snprintf(ring, sizeof ring, "%s", ring_name(rr));
                (void) snprintf(key_id, sizeof key_id, "%s", k->id);
                kind = ring_kind(rr);
                jwk_text = k->jwk ? strdup(k->jwk) : NULL;
                r = key_copy(k, &key);
                if (r >= 0 && k->jwk && !jwk_text) {
                        key_copy_done(&key);
                        r = -ENOMEM;
                }
        }
        engine_read_unlock(e);
        if (r < 0)
                return r == -ENOENT ? reply_error(rp, MHD_HTTP_NOT_FOUND, "not_found", "no key %s", kid)
                                    : reply_errno(rp, r, kid);

        r = engine_key_object(e, ring, key_id, &obj);
        if (r >= 0 && !(uri = key_object_uri(&obj)))
                r = -ENOMEM;
        if (r < 0) {
                key_copy_done(&key);
                return reply_errno(rp, r, kid);
        }
        hex_encode(obj.id, obj.id_len, hex, sizeof hex);
        jwk = jwk_text ? json_loads(jwk_text, 0, NULL) : NULL;
        o = key_copy_to_json(&key);
        key_copy_done(&key);
        if (!o || json_object_set_new(o, "keyring", json_string(ring)) < 0 ||
            json_object_set_new(o, "kind", json_string(ring_kind_to_string(kind))) < 0 ||
            json_object_set_new(o, "jwk", jwk ?: json_null()) < 0 ||
            json_object_set_new(o, "token",
                                json_pack("{s:s, s:s, s:s, s:b, s:s}", "label", obj.token, "object", obj.label, "id",
                                          hex, "private_key", obj.private_key, "uri", uri)) < 0) {
                json_decref(o);
                return reply_errno(rp, -ENOMEM, kid);
        }
        return reply_json(rp, MHD_HTTP_OK, o);
}
