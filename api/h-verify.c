/* SPDX-License-Identifier: MIT */
/* POST /v1/verify: the algorithm comes from the key the kid names, never from the token (SPEC §4). Only issuer
 * keyrings vouch for a token unless the caller names the (agent) keyrings it trusts; a keyring with an issuer vouches
 * only for tokens with that iss; keyd's own documents (revocation lists, audit checkpoints) are never tokens. */
#include "api/api-internal.h"
#include "common/crypto-util.h"
#include "jose/jws.h"

static int verdict(Request *rq, Reply *rp, JoseResult res, const char *message) {
        atomic_fetch_add(&rq->api->verified_bad, 1);
        return reply_json(rp, MHD_HTTP_OK,
                          json_pack("{s:b, s:s, s:s}", "valid", 0, "error", jose_result_to_string(res), "message",
                                    message));
}

/* A growing reply body for json_dump_callback(). */
typedef struct Body {
        char *buf;
        size_t len, size;
        bool failed;
} Body;

static void body_add(Body *b, const char *s, size_t n) {
        if (b->failed)
                return;
        if (b->len + n + 1 > b->size) {
                size_t size = MAX(b->size * 2, b->len + n + 1);
                char *nb = realloc(b->buf, size);
                if (!nb) {
                        b->failed = true;
                        return;
                }
                b->buf = nb;
                b->size = size;
        }
        memcpy(b->buf + b->len, s, n);
        b->len += n;
        b->buf[b->len] = 0;
}

static int body_dump(const char *s, size_t n, void *userdata) {
        body_add(userdata, s, n);
        return 0;
}

/* A string that JSON writes as it is (no escape): what keyring names and kids (base64url) are. */
static bool json_plain(const char *s) {
        for (; *s; s++)
                if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-' ||
                      *s == '_' || *s == '.'))
                        return false;
        return true;
}

/* The valid verdict, written directly: the bytes json_dumps(JSON_COMPACT | JSON_PRESERVE_ORDER) gives for
 * {"valid": true, "keyring", "kid", "alg", "header", "claims"} and the trailing newline, without building that
 * object. */
static int reply_valid(Reply *rp, const KeyLookup *key, const JoseJws *jws, const json_t *claims) {
        const size_t flags = JSON_COMPACT | JSON_PRESERVE_ORDER;
        const char *alg = keyd_alg_to_string(key->alg);
        Body b = { 0 };

        if (!json_plain(key->keyring) || !json_plain(jws->kid) || !alg)
                return reply_json(rp, MHD_HTTP_OK,
                                  json_pack("{s:b, s:s, s:s, s:s, s:O, s:O}", "valid", 1, "keyring", key->keyring,
                                            "kid", jws->kid, "alg", alg, "header", jws->header, "claims", claims));
        b.size = 512;
        b.buf = malloc(b.size);
        if (!b.buf)
                return reply_error(rp, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "out of memory");
        body_add(&b, "{\"valid\":true,\"keyring\":\"", strlen("{\"valid\":true,\"keyring\":\""));
        body_add(&b, key->keyring, strlen(key->keyring));
        body_add(&b, "\",\"kid\":\"", strlen("\",\"kid\":\""));
        body_add(&b, jws->kid, strlen(jws->kid));
        body_add(&b, "\",\"alg\":\"", strlen("\",\"alg\":\""));
        body_add(&b, alg, strlen(alg));
        body_add(&b, "\",\"header\":", strlen("\",\"header\":"));
        if (json_dump_callback(jws->header, body_dump, &b, flags) < 0)
                b.failed = true;
        body_add(&b, ",\"claims\":", strlen(",\"claims\":"));
        if (json_dump_callback(claims, body_dump, &b, flags) < 0)
                b.failed = true;
        body_add(&b, "}\n", 2);
        if (b.failed) {
                free(b.buf);
                return reply_error(rp, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "out of memory");
        }
        json_decref(rp->json);
        rp->json = NULL;
        free(rp->text);
        rp->text = b.buf;
        rp->status = MHD_HTTP_OK;
        return 0;
}

static bool in_list(const json_t *list, const char *name) {
        size_t i;
        json_t *v;
        json_array_foreach(list, i, v) if (json_is_string(v) && streq(json_string_value(v), name)) return true;
        return false;
}

int h_verify(Request *rq, const char *arg, Reply *rp) {
        json_t *b = rq->json, *token = json_object_get(b, "token"), *rings = json_object_get(b, "keyrings"),
               *aud = json_object_get(b, "audience"), *iss = json_object_get(b, "issuer"),
               *leeway = json_object_get(b, "leeway");
        _cleanup_json_ json_t *claims = NULL;
        JoseJws *jws = NULL;
        KeyLookup key = { 0 };
        json_t *typ;
        JoseResult res;
        (void) arg;

        if (!json_is_string(token))
                return reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request", "token: a compact JWS string is required");
        if (rings && (!json_is_array(rings) || json_array_size(rings) > 64))
                return reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request", "keyrings: an array of names");
        if ((aud && !json_is_string(aud)) || (iss && !json_is_string(iss)))
                return reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request", "audience and issuer: strings");
        if (leeway && (!json_is_integer(leeway) || json_integer_value(leeway) < 0 || json_integer_value(leeway) > 300))
                return reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request", "leeway: 0 to 300 seconds");

        res = jose_jws_parse(json_string_value(token), json_string_length(token), &jws);
        if (res != JOSE_OK)
                return verdict(rq, rp, res, "the token is refused before any key is looked at");
        typ = json_object_get(jws->header, "typ");
        if (typ && (!json_is_string(typ) || keyd_typ_reserved(json_string_value(typ)))) {
                const char *why = json_is_string(typ) ? "this is one of keyd's own documents, not a token"
                                                      : "typ must be a string";
                jose_jws_free(jws);
                return verdict(rq, rp, JOSE_MALFORMED, why);
        }
        if (!jws->kid) {
                jose_jws_free(jws);
                return verdict(rq, rp, JOSE_UNKNOWN_KID, "the token names no kid: keyd does not guess a key");
        }
        /* Without keyrings, issuer keyrings only: an agent's key signs its own proofs, never a token keyd vouches
         * for. */
        if (engine_lookup_key(rq->api->engine, jws->kid, &key) < 0 || (rings && !in_list(rings, key.keyring)) ||
            (!rings && key.kind != RING_ISSUER)) {
                jose_verifier_unref(key.verifier);
                jose_jws_free(jws);
                return verdict(rq, rp, JOSE_UNKNOWN_KID,
                               rings ? "no key with this kid in the keyrings asked for"
                                     : "no key with this kid in an issuer keyring (name agent keyrings in keyrings)");
        }
        if (key.state == KEY_STATE_REVOKED)
                res = JOSE_KEY_REVOKED;
        else
                res = jose_jws_verify_with(jws, key.verifier);
        jose_verifier_unref(key.verifier);
        if (res == JOSE_OK)
                res = jose_jws_claims(jws, &claims);
        if (res == JOSE_OK) {
                JoseClaimsCheck check = {
                        .now = now_realtime() / USEC_PER_SEC,
                        .leeway = leeway ? json_integer_value(leeway) : 0,
                        .audience = aud ? json_string_value(aud) : NULL,
                        .issuer = iss ? json_string_value(iss) : NULL,
                        .require_exp = true, /* a token that never expires is not one keyd vouches for */
                };
                res = jose_claims_check(claims, &check);
        }
        if (res == JOSE_OK && key.issuer[0]) {
                /* The keyring's own issuer, whether or not the caller asked for one. */
                json_t *ti = json_object_get(claims, "iss");
                if (!json_is_string(ti) || !streq(json_string_value(ti), key.issuer))
                        res = JOSE_ISSUER_MISMATCH;
        }
        if (res == JOSE_OK) {
                json_t *jti = json_object_get(claims, "jti");
                if (json_is_string(jti) && engine_token_denied(rq->api->engine, json_string_value(jti)) > 0)
                        res = JOSE_TOKEN_REVOKED;
        }
        if (res != JOSE_OK) {
                jose_jws_free(jws);
                return verdict(rq, rp, res,
                               res == JOSE_KEY_REVOKED        ? "the key that signed this token is revoked"
                               : res == JOSE_TOKEN_REVOKED    ? "this token was revoked"
                               : res == JOSE_ISSUER_MISMATCH ? "iss is not the issuer asked for, or not the issuer of "
                                                                "the keyring whose key signed the token"
                                                              : "the token does not verify");
        }
        atomic_fetch_add(&rq->api->verified_ok, 1);
        reply_valid(rp, &key, jws, claims);
        jose_jws_free(jws);
        return 0;
}
