/* SPDX-License-Identifier: MIT */
/* Signing: mint a JWT, sign a JWS, sign raw data. Each is authorised on the keyring, signed by its active key in the
 * token, audited (committed) and only then answered; a failure to sign is audited too.
 *
 * Raw signing (/jws, /sign) is for agent keyrings: an issuer keyring's key vouches for what /v1/verify accepts and
 * for keyd's own documents, so it signs raw only when its policy says allow-raw-sign, and never anything that carries
 * the typ of one of keyd's own documents (rotation/policy.h). */
#include <openssl/rand.h>
#include <stdio.h>

#include "api/api-internal.h"
#include "common/crypto-util.h"
#include "jose/b64.h"

#define CLAIMS_MAX 64
#define AUD_MAX 16
#define STRING_MAX 1024

/* What a signing handler needs of the keyring, copied under the read lock. */
typedef struct SignTarget {
        char issuer[STRING_MAX + 1];
        char typ[STRING_MAX + 1];
        usec_t ttl_max, default_ttl;
} SignTarget;

/* The caller may sign here, but the keyring's policy does not allow raw signing: 403, audited as a denial. */
static int deny_raw(Request *rq, Reply *rp, const char *name, const char *what) {
        atomic_fetch_add(&rq->api->denied, 1);
        (void) api_audit(rq, "authz.denied", name, NULL, "denied", "{s:s, s:s}", "request", what, "policy",
                         "allow-raw-sign = no");
        return reply_error(rp, MHD_HTTP_FORBIDDEN, "forbidden",
                           "the policy of keyring %s does not allow raw signing (%s): mint tokens with it, sign with "
                           "an agent keyring, or set allow-raw-sign = yes in its [keyring] section",
                           name, what);
}

/* 404, 403 (audited) or 0 with *t filled. raw: /jws or /sign, which an issuer keyring allows only by its policy. */
static int sign_target(Request *rq, const char *name, Reply *rp, SignTarget *t, const char *what, bool raw) {
        Engine *e = rq->api->engine;
        int r = 0;

        engine_read_lock(e);
        Ring *ring = engine_get_ring(e, name);
        if (!ring)
                r = -ENOENT;
        else if (!authz_sign(rq->api, rq->peer, ring))
                r = -EPERM;
        else if (raw && ring_kind(ring) != RING_AGENT && !ring_policy(ring)->allow_raw_sign)
                r = -EACCES;
        else {
                const Policy *p = ring_policy(ring);
                snprintf(t->issuer, sizeof t->issuer, "%s", p->issuer ?: "");
                snprintf(t->typ, sizeof t->typ, "%s", p->token_type ?: "JWT");
                t->ttl_max = p->token_ttl_max;
                t->default_ttl = p->default_ttl;
        }
        engine_read_unlock(e);
        if (r == -ENOENT)
                return reply_errno(rp, r, name);
        if (r == -EPERM)
                return authz_deny(rq, rp, name, what);
        if (r == -EACCES)
                return deny_raw(rq, rp, name, what);
        return 0;
}

/* Signing failed after the keyring was found and the caller authorised: audit it (result "error", with the errno
 * text and the name of this thread's last CK_RV, hsm_last_error()) and answer 503. If even the audit record cannot be
 * written, the answer is the same failure. */
static int sign_failed(Request *rq, Reply *rp, int r, const char *name, const char *action) {
        const char *ckr = hsm_last_error();

        (void) api_audit(rq, action, name, NULL, "error", "{s:s, s:i, s:s}", "error", strerror(-r), "errno", -r,
                         "pkcs11", ckr);
        if (r == -ENOKEY || r == -ESHUTDOWN)
                return reply_error(rp, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable",
                                   "keyring %s has no active key that may sign (%s)", name,
                                   r == -ESHUTDOWN ? "disabled" : "missing or revoked");
        if (r == -ETIMEDOUT || r == -ECANCELED)
                return reply_errno(rp, r, "sign");
        return reply_error(rp, MHD_HTTP_SERVICE_UNAVAILABLE, "token_unavailable",
                           "the token could not sign: %s (%s); see /healthz", strerror(-r), ckr);
}

/* The audit record of a signature could not be committed: nothing is handed out (what says what was not). A storage
 * fault is named as such, so that a client (and its operator) can tell it from a token that cannot sign. */
static int audit_failed(Request *rq, Reply *rp, int r, const char *what) {
        char reason[128];
        const char *why = NULL;

        if (store_health_fault(rq->api->cfg.storage, NULL, reason, sizeof reason))
                why = reason;
        else if (r == -ENOSPC || r == -ENOLCK) /* only the store gives these */
                why = store_fault_reason(r);
        if (why)
                return reply_error(rp, MHD_HTTP_SERVICE_UNAVAILABLE, "storage_unavailable",
                                   "the audit record could not be written (%s): %s", why, what);
        return reply_error(rp, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable", "the audit record could not be written: %s",
                           what);
}

static bool only_members(const json_t *o, const char *const *allowed, const char **ret_bad) {
        const char *key;
        json_t *v;
        json_object_foreach((json_t *) o, key, v) {
                bool ok = false;
                for (const char *const *a = allowed; *a; a++)
                        ok |= streq(*a, key);
                if (!ok) {
                        *ret_bad = key;
                        return false;
                }
        }
        return true;
}

static bool short_string(const json_t *v) {
        return json_is_string(v) && json_string_length(v) > 0 && json_string_length(v) <= STRING_MAX;
}

/* ttl: seconds (integer) or a duration string. 400 for the wrong type, 422 for a value the policy refuses. */
static int parse_ttl(const json_t *v, const SignTarget *t, Reply *rp, usec_t *ret) {
        usec_t ttl;
        if (!v) {
                *ret = t->default_ttl;
                return 0;
        }
        if (json_is_integer(v)) {
                json_int_t s = json_integer_value(v);
                if (s <= 0 || s > 10LL * 365 * 86400)
                        return reply_error(rp, MHD_HTTP_UNPROCESSABLE_CONTENT, "unprocessable",
                                           "ttl must be between 1 second and token-ttl-max");
                ttl = (usec_t) s * USEC_PER_SEC;
        } else if (json_is_string(v)) {
                if (parse_duration(json_string_value(v), &ttl) < 0)
                        return reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request",
                                           "ttl: a number of seconds or a duration such as \"5m\"");
        } else
                return reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request",
                                   "ttl: a number of seconds or a duration such as \"5m\"");
        if (ttl > t->ttl_max)
                return reply_error(rp, MHD_HTTP_UNPROCESSABLE_CONTENT, "unprocessable",
                                   "ttl %llds exceeds token-ttl-max %llds", (long long) (ttl / USEC_PER_SEC),
                                   (long long) (t->ttl_max / USEC_PER_SEC));
        *ret = ttl;
        return 0;
}

static int check_aud(const json_t *v, Reply *rp) {
        size_t i;
        json_t *e;
        if (!v || short_string(v))
                return 0;
        if (json_is_array(v) && json_array_size(v) > 0 && json_array_size(v) <= AUD_MAX) {
                json_array_foreach(v, i, e) if (!short_string(e)) goto bad;
                return 0;
        }
bad:
        return reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request",
                           "aud: a string or an array of 1 to %d strings", AUD_MAX);
}

/* The active kid of an agent keyring, for cnf.jkt (RFC 7800 with a JWK thumbprint, as DPoP binds). */
static int bound_agent_kid(Engine *e, const char *agent, char kid[STORE_KID_MAX + 1]) {
        int r = -ENOENT;
        engine_read_lock(e);
        Ring *ring = keyring_name_valid(agent) ? engine_get_ring(e, agent) : NULL;
        const StoreKey *k = ring && ring_kind(ring) == RING_AGENT && !ring_disabled(ring)
                                    ? ring_key_in_state(ring, KEY_STATE_ACTIVE)
                                    : NULL;
        if (k) {
                memcpy(kid, k->kid, STORE_KID_MAX + 1);
                r = 0;
        }
        engine_read_unlock(e);
        return r;
}

/* 16 random bytes for a jti: from a block of RAND_bytes() output kept per thread (a connection's thread), one call
 * to the DRBG per 32 tokens rather than one per token. A jti is public and needs to be unique, not secret. */
static int jti_random(uint8_t out[16]) {
        static __thread uint8_t pool[512];
        static __thread size_t left;

        if (left < 16) {
                if (RAND_bytes(pool, sizeof pool) != 1)
                        return -EIO;
                left = sizeof pool;
        }
        memcpy(out, pool + sizeof pool - left, 16);
        left -= 16;
        return 0;
}

static const char *const reserved[] = { "iss", "sub", "aud", "exp", "nbf", "iat", "jti", "cnf", "act", "scope", NULL };

int h_mint(Request *rq, const char *name, Reply *rp) {
        static const char *const allowed[] = { "sub", "aud", "ttl", "scope", "act", "claims", "bind_agent", NULL };
        json_t *b = rq->json, *sub = json_object_get(b, "sub"), *aud = json_object_get(b, "aud"),
               *scope = json_object_get(b, "scope"), *act = json_object_get(b, "act"),
               *custom = json_object_get(b, "claims"), *bind = json_object_get(b, "bind_agent");
        _cleanup_json_ json_t *claims = NULL, *header = NULL;
        _cleanup_free_ char *payload = NULL, *token = NULL;
        char kid[STORE_KID_MAX + 1], jkt[STORE_KID_MAX + 1], jti[32];
        uint8_t rnd[16];
        const char *bad;
        SignTarget t;
        usec_t ttl = 0;
        int r;

        if (sign_target(rq, name, rp, &t, "mint tokens", false) < 0)
                return -1;
        /* policy_validate() refuses it; a policy stored before that rule still must not make keyd's documents. */
        if (keyd_typ_reserved(t.typ))
                return reply_error(rp, MHD_HTTP_UNPROCESSABLE_CONTENT, "unprocessable",
                                   "the token-type of keyring %s is one of keyd's own document types", name);
        if (!only_members(b, allowed, &bad))
                return reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request", "unknown member '%s'", bad);
        if (!sub)
                return reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request", "sub is required");
        if (!short_string(sub))
                return reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request", "sub: a string of 1 to %d characters",
                                   STRING_MAX);
        if (check_aud(aud, rp) < 0 || parse_ttl(json_object_get(b, "ttl"), &t, rp, &ttl) < 0)
                return -1;
        if (scope && !short_string(scope))
                return reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request", "scope: a string");
        if (act && (!json_is_object(act) || !short_string(json_object_get(act, "sub"))))
                return reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request",
                                   "act: an object with a \"sub\" (RFC 8693 delegation)");
        if (custom && (!json_is_object(custom) || json_object_size(custom) > CLAIMS_MAX))
                return reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request", "claims: an object of at most %d members",
                                   CLAIMS_MAX);
        for (const char *const *res = reserved; custom && *res; res++)
                if (json_object_get(custom, *res))
                        return reply_error(rp, MHD_HTTP_UNPROCESSABLE_CONTENT, "unprocessable",
                                           "claims: '%s' is set by keyd or by its own member, not in claims", *res);
        if (bind && (!json_is_string(bind) || bound_agent_kid(rq->api->engine, json_string_value(bind), jkt) < 0))
                return reply_error(rp, MHD_HTTP_UNPROCESSABLE_CONTENT, "unprocessable",
                                   "bind_agent: no agent keyring of that name with an active key");

        if (jti_random(rnd) < 0)
                return reply_error(rp, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "no randomness");
        jti[jose_b64url_encode_to(rnd, sizeof rnd, jti)] = 0;
        json_int_t now = (json_int_t) (now_realtime() / USEC_PER_SEC), exp = now + (json_int_t) (ttl / USEC_PER_SEC);

        claims = json_object();
        if (!claims)
                return reply_errno(rp, -ENOMEM, "mint");
        if (t.issuer[0])
                json_object_set_new(claims, "iss", json_string(t.issuer));
        json_object_set(claims, "sub", sub);
        if (aud)
                json_object_set(claims, "aud", aud);
        json_object_set_new(claims, "iat", json_integer(now));
        json_object_set_new(claims, "nbf", json_integer(now));
        json_object_set_new(claims, "exp", json_integer(exp));
        json_object_set_new(claims, "jti", json_string(jti));
        if (scope)
                json_object_set(claims, "scope", scope);
        if (act)
                json_object_set(claims, "act", act);
        if (bind)
                json_object_set_new(claims, "cnf", json_pack("{s:s}", "jkt", jkt));
        if (custom)
                json_object_update(claims, custom);
        payload = json_dumps(claims, JSON_COMPACT | JSON_PRESERVE_ORDER);
        header = json_pack("{s:s}", "typ", t.typ);
        if (!payload || !header)
                return reply_errno(rp, -ENOMEM, "mint");

        /* Never a token that /v1/verify would refuse for its length: refused before anything is signed. */
        r = engine_sign_compact(rq->api->engine, name, header, false, payload, strlen(payload), API_TOKEN_MAX, &token,
                                kid);
        if (r == -EMSGSIZE)
                return reply_error(rp, MHD_HTTP_UNPROCESSABLE_CONTENT, "unprocessable",
                                   "the token would be longer than %d bytes, the most /v1/verify accepts: fewer or "
                                   "shorter claims",
                                   API_TOKEN_MAX);
        if (r < 0)
                return sign_failed(rq, rp, r, name, "token.mint");
        r = api_audit(rq, "token.mint", name, kid, "ok", "{s:s, s:O, s:I}", "jti", jti, "sub", sub, "exp", exp);
        if (r < 0)
                return audit_failed(rq, rp, r, "no token is issued");
        atomic_fetch_add(&rq->api->minted, 1);
        /* Written directly, as json_dumps() would: token, kid and jti are base64url (and dots), nothing to escape. */
        static const char plain[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.";
        char *body;
        if (token[strspn(token, plain)] || kid[strspn(kid, plain)])
                return reply_json(rp, MHD_HTTP_CREATED,
                                  json_pack("{s:s, s:s, s:s, s:I, s:I}", "token", token, "kid", kid, "jti", jti, "iat",
                                            now, "exp", exp));
        if (asprintf(&body, "{\"token\":\"%s\",\"kid\":\"%s\",\"jti\":\"%s\",\"iat\":%lld,\"exp\":%lld}\n", token, kid,
                     jti, (long long) now, (long long) exp) < 0)
                return reply_errno(rp, -ENOMEM, "mint");
        rp->status = MHD_HTTP_CREATED;
        rp->text = body;
        return 0;
}

static int decode_b64(const json_t *v, size_t max, uint8_t **ret, size_t *ret_len) {
        void *out;
        if (!json_is_string(v) || json_string_length(v) > (max / 3 + 1) * 4)
                return -EINVAL;
        if (jose_b64url_decode(json_string_value(v), json_string_length(v), &out, ret_len) < 0)
                return -EINVAL;
        *ret = out;
        return 0;
}

int h_jws(Request *rq, const char *name, Reply *rp) {
        static const char *const allowed[] = { "payload", "payload_json", "header", "embed_jwk", NULL };
        static const char *const forbidden[] = { "alg", "kid", "crit", "jwk", "jku", "x5u", "x5c", "x5t", "b64",
                                                 "zip", "enc", NULL };
        json_t *b = rq->json, *p64 = json_object_get(b, "payload"), *pjson = json_object_get(b, "payload_json"),
               *hdr = json_object_get(b, "header"), *embed = json_object_get(b, "embed_jwk"), *typ;
        _cleanup_free_ uint8_t *payload = NULL;
        _cleanup_free_ char *jws = NULL;
        char kid[STORE_KID_MAX + 1];
        size_t len = 0;
        const char *bad;
        SignTarget t;
        int r;

        if (sign_target(rq, name, rp, &t, "sign JWS", true) < 0)
                return -1;
        if (!only_members(b, allowed, &bad))
                return reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request", "unknown member '%s'", bad);
        if (!!p64 == !!pjson)
                return reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request",
                                   "give exactly one of payload (base64url) and payload_json");
        if (hdr && (!json_is_object(hdr) || json_object_size(hdr) > 16))
                return reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request", "header: an object of at most 16 members");
        for (const char *const *f = forbidden; hdr && *f; f++)
                if (json_object_get(hdr, *f))
                        return reply_error(rp, MHD_HTTP_UNPROCESSABLE_CONTENT, "unprocessable",
                                           "header: '%s' is set by keyd or not allowed", *f);
        typ = json_object_get(hdr, "typ");
        if (typ && !json_is_string(typ))
                return reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request", "header: typ must be a string");
        if (typ && keyd_typ_reserved(json_string_value(typ)))
                return reply_error(rp, MHD_HTTP_UNPROCESSABLE_CONTENT, "unprocessable",
                                   "header: typ '%s' is one of keyd's own document types (" KEYD_TYP_REVOCATIONS
                                   ", " KEYD_TYP_AUDIT_CHECKPOINT ")",
                                   json_string_value(typ));
        if (embed && !json_is_boolean(embed))
                return reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request", "embed_jwk: true or false");
        if (p64 && decode_b64(p64, API_BODY_MAX, &payload, &len) < 0)
                return reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request", "payload: not base64url");
        if (pjson) {
                payload = (uint8_t *) json_dumps(pjson, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
                if (!payload)
                        return reply_errno(rp, -ENOMEM, "jws");
                len = strlen((char *) payload);
        }
        r = engine_sign_compact(rq->api->engine, name, hdr, json_is_true(embed), payload, len, 0, &jws, kid);
        if (r < 0)
                return sign_failed(rq, rp, r, name, "jws.sign");
        r = api_audit(rq, "jws.sign", name, kid, "ok", "{s:I}", "bytes", (json_int_t) len);
        if (r < 0)
                return audit_failed(rq, rp, r, "nothing is signed");
        atomic_fetch_add(&rq->api->signed_jws, 1);
        return reply_json(rp, MHD_HTTP_CREATED, json_pack("{s:s, s:s}", "jws", jws, "kid", kid));
}

/* Base64 as a lenient reader takes it: either alphabet, '=' padding at the end, unused trailing bits ignored. Returns
 * the length written to out (room for n * 3 / 4 bytes), or -EINVAL. */
static ssize_t b64_decode_lenient(const uint8_t *s, size_t n, uint8_t *out) {
        static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        uint32_t acc = 0;
        size_t bits = 0, o = 0;

        while (n > 0 && s[n - 1] == '=')
                n--;
        for (size_t i = 0; i < n; i++) {
                uint8_t c = s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
                const char *p = c ? strchr(alphabet, c) : NULL;
                if (!p)
                        return -EINVAL;
                acc = (acc << 6) | (uint32_t) (p - alphabet);
                bits += 6;
                if (bits >= 8) {
                        bits -= 8;
                        out[o++] = (uint8_t) (acc >> bits);
                        acc &= (1u << bits) - 1;
                }
        }
        return (ssize_t) o;
}

/* Whether raw data is (or starts as) the signing input of a JWS, BASE64URL(header) "." ..., whose protected header
 * names one of keyd's own document types, has duplicate members (which a reader may resolve either way), or starts
 * like a JSON object that keyd cannot read: 1, 0, or -ENOMEM. The header is read as leniently as any JOSE library
 * might. */
static int jws_input_reserved(const uint8_t *data, size_t len) {
        const uint8_t *dot = memchr(data, '.', len);
        _cleanup_free_ uint8_t *hdr = NULL;
        _cleanup_json_ json_t *strict = NULL, *lenient = NULL;
        ssize_t n;

        if (!dot || dot == data)
                return 0;
        hdr = malloc((size_t) (dot - data) * 3 / 4 + 1);
        if (!hdr)
                return -ENOMEM;
        n = b64_decode_lenient(data, (size_t) (dot - data), hdr);
        if (n <= 0)
                return 0;
        strict = json_loadb((const char *) hdr, (size_t) n, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, NULL);
        if (json_is_object(strict)) {
                json_t *typ = json_object_get(strict, "typ");
                return json_is_string(typ) && keyd_typ_reserved(json_string_value(typ));
        }
        lenient = json_loadb((const char *) hdr, (size_t) n, JSON_ALLOW_NUL, NULL);
        if (json_is_object(lenient))
                return 1; /* duplicate members */
        /* Not JSON to jansson, yet it may be a JSON object to a reader that accepts more (a lone surrogate escape, a
         * number out of range, a byte order mark): whatever starts like an object is refused. */
        size_t i = 0;
        if (n >= 3 && hdr[0] == 0xef && hdr[1] == 0xbb && hdr[2] == 0xbf)
                i = 3;
        while (i < (size_t) n && strchr(" \t\r\n", hdr[i]) && hdr[i])
                i++;
        return i < (size_t) n && hdr[i] == '{';
}

int h_sign(Request *rq, const char *name, Reply *rp) {
        static const char *const allowed[] = { "data", NULL };
        _cleanup_free_ uint8_t *data = NULL;
        _cleanup_free_ char *sig_b64 = NULL;
        uint8_t sig[HSM_SIG_MAX];
        char kid[STORE_KID_MAX + 1];
        KeydAlg alg;
        const char *bad;
        size_t len;
        SignTarget t;
        int r;

        if (sign_target(rq, name, rp, &t, "sign data", true) < 0)
                return -1;
        if (!only_members(rq->json, allowed, &bad))
                return reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request", "unknown member '%s'", bad);
        if (decode_b64(json_object_get(rq->json, "data"), API_BODY_MAX, &data, &len) < 0)
                return reply_error(rp, MHD_HTTP_BAD_REQUEST, "bad_request", "data: base64url, at most 64 KiB");
        r = jws_input_reserved(data, len);
        if (r < 0)
                return reply_errno(rp, r, "sign");
        if (r > 0)
                return reply_error(rp, MHD_HTTP_UNPROCESSABLE_CONTENT, "unprocessable",
                                   "data: the signing input of a JWS whose protected header has one of keyd's own "
                                   "document types (" KEYD_TYP_REVOCATIONS ", " KEYD_TYP_AUDIT_CHECKPOINT
                                   ") or duplicate members");
        r = engine_sign(rq->api->engine, name, data, len, sig, sizeof sig, kid, &alg);
        if (r < 0)
                return sign_failed(rq, rp, r, name, "data.sign");
        if (jose_b64url_encode(sig, (size_t) r, &sig_b64) < 0)
                return reply_errno(rp, -ENOMEM, "sign");
        r = api_audit(rq, "data.sign", name, kid, "ok", "{s:I}", "bytes", (json_int_t) len);
        if (r < 0)
                return audit_failed(rq, rp, r, "nothing is signed");
        atomic_fetch_add(&rq->api->signed_raw, 1);
        return reply_json(rp, MHD_HTTP_OK,
                          json_pack("{s:s, s:s, s:s}", "signature", sig_b64, "kid", kid, "alg", keyd_alg_to_string(alg)));
}
