/* SPDX-License-Identifier: MIT */
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/objects.h>

#include "common/crypto-util.h"
#include "common/macro.h"
#include "jose/b64.h"
#include "jose/jose-internal.h"
#include "jose/jwk.h"

#define EC_COORD_MAX 48 /* P-384 */

static int ec_alg_nid(KeydAlg alg) {
        switch (alg) {
        case KEYD_ALG_ES256:
                return NID_X9_62_prime256v1;
        case KEYD_ALG_ES384:
                return NID_secp384r1;
        default:
                return NID_undef;
        }
}

static int pkey_ec_nid(EVP_PKEY *pkey) {
        char name[80];
        int nid;

        if (!EVP_PKEY_is_a(pkey, "EC"))
                return NID_undef;
        if (!EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, name, sizeof name, NULL))
                return NID_undef;
        nid = OBJ_sn2nid(name);
        return nid != NID_undef ? nid : EC_curve_nist2nid(name);
}

int jose_pkey_matches_alg(EVP_PKEY *pkey, KeydAlg alg) {
        int bits;

        if (!pkey)
                return 0;
        switch (alg) {
        case KEYD_ALG_ES256:
        case KEYD_ALG_ES384:
                return pkey_ec_nid(pkey) == ec_alg_nid(alg);
        case KEYD_ALG_RS256:
        case KEYD_ALG_PS256:
                if (!EVP_PKEY_is_a(pkey, "RSA"))
                        return 0;
                bits = EVP_PKEY_get_bits(pkey);
                return bits >= JOSE_RSA_BITS_MIN && bits <= JOSE_RSA_BITS_MAX;
        case KEYD_ALG_EDDSA:
                return EVP_PKEY_is_a(pkey, "ED25519");
        default:
                return 0;
        }
}

static int json_set_b64(json_t *obj, const char *key, const void *data, size_t n) {
        _cleanup_free_ char *s = NULL;

        if (jose_b64url_encode(data, n, &s) < 0)
                return -ENOMEM;
        return json_object_set_new(obj, key, json_string(s)) < 0 ? -ENOMEM : 0;
}

static int bn_param_to_json(EVP_PKEY *pkey, const char *param, size_t pad, json_t *obj, const char *key) {
        _cleanup_(BN_freep) BIGNUM *bn = NULL;
        uint8_t buf[JOSE_SIGNATURE_MAX];
        int n;

        if (!EVP_PKEY_get_bn_param(pkey, param, &bn))
                return -EINVAL;
        n = pad > 0 ? (int) pad : BN_num_bytes(bn);
        if (n <= 0 || (size_t) n > sizeof buf || BN_bn2binpad(bn, buf, n) != n)
                return -EINVAL;
        return json_set_b64(obj, key, buf, (size_t) n);
}

int jose_jwk_from_pkey(EVP_PKEY *pkey, KeydAlg alg, json_t **ret) {
        _cleanup_json_ json_t *jwk = NULL;
        uint8_t raw[32];
        size_t raw_len = sizeof raw;
        int r;

        if (!ret || !jose_pkey_matches_alg(pkey, alg))
                return -EINVAL;
        jwk = json_object();
        if (!jwk)
                return -ENOMEM;

        if (keyd_alg_is_ec(alg)) {
                size_t n = keyd_alg_ec_size(alg);
                if (json_object_set_new(jwk, "kty", json_string("EC")) < 0 ||
                    json_object_set_new(jwk, "crv", json_string(keyd_alg_jwk_crv(alg))) < 0)
                        return -ENOMEM;
                r = bn_param_to_json(pkey, OSSL_PKEY_PARAM_EC_PUB_X, n, jwk, "x");
                if (r >= 0)
                        r = bn_param_to_json(pkey, OSSL_PKEY_PARAM_EC_PUB_Y, n, jwk, "y");
        } else if (keyd_alg_is_rsa(alg)) {
                if (json_object_set_new(jwk, "kty", json_string("RSA")) < 0)
                        return -ENOMEM;
                r = bn_param_to_json(pkey, OSSL_PKEY_PARAM_RSA_N, 0, jwk, "n");
                if (r >= 0)
                        r = bn_param_to_json(pkey, OSSL_PKEY_PARAM_RSA_E, 0, jwk, "e");
        } else {
                if (json_object_set_new(jwk, "kty", json_string("OKP")) < 0 ||
                    json_object_set_new(jwk, "crv", json_string("Ed25519")) < 0)
                        return -ENOMEM;
                if (EVP_PKEY_get_raw_public_key(pkey, raw, &raw_len) != 1 || raw_len != sizeof raw)
                        return -EINVAL;
                r = json_set_b64(jwk, "x", raw, raw_len);
        }
        if (r < 0)
                return r;
        *ret = TAKE_PTR(jwk);
        return 0;
}

/* Decode the base64url string member name of jwk into buf; -EINVAL if missing, not a string, not strict base64url,
 * or longer than bufsz. */
static int jwk_get_bytes(const json_t *jwk, const char *name, uint8_t *buf, size_t bufsz, size_t *ret_len) {
        const json_t *v = json_object_get(jwk, name);
        int r;

        if (!json_is_string(v))
                return -EINVAL;
        r = jose_b64url_decode_to(json_string_value(v), json_string_length(v), buf, bufsz, ret_len);
        return r < 0 ? -EINVAL : 0;
}

/* keyd only verifies with a JWK: one marked for anything else ("use" other than "sig", "key_ops" without
 * "verify") is refused. */
static int jwk_check_usage(const json_t *jwk) {
        const json_t *use = json_object_get(jwk, "use"), *ops = json_object_get(jwk, "key_ops"), *op;
        size_t i;
        bool verify = false;

        if (use && !(json_is_string(use) && streq(json_string_value(use), "sig")))
                return -EINVAL;
        if (!ops)
                return 0;
        if (!json_is_array(ops))
                return -EINVAL;
        json_array_foreach(ops, i, op) {
                if (!json_is_string(op))
                        return -EINVAL;
                if (streq(json_string_value(op), "verify"))
                        verify = true;
        }
        return verify ? 0 : -EINVAL;
}

static int pkey_from_params(const char *type, OSSL_PARAM_BLD *bld, EVP_PKEY **ret) {
        _cleanup_(OSSL_PARAM_freep) OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
        _cleanup_(EVP_PKEY_CTX_freep) EVP_PKEY_CTX *ctx = NULL;
        EVP_PKEY *pkey = NULL; /* EVP_PKEY_fromdata() would fill in a non-NULL *ret: never hand it the caller's */

        if (!params)
                return -ENOMEM;
        ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
        if (!ctx)
                return -ENOMEM;
        if (EVP_PKEY_fromdata_init(ctx) != 1 || EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
                return -EINVAL;
        *ret = pkey;
        return 0;
}

static int jwk_to_ec(const json_t *jwk, EVP_PKEY **ret) {
        _cleanup_(OSSL_PARAM_BLD_freep) OSSL_PARAM_BLD *bld = NULL;
        _cleanup_(EVP_PKEY_CTX_freep) EVP_PKEY_CTX *check = NULL;
        _cleanup_pkey_ EVP_PKEY *pkey = NULL;
        uint8_t point[1 + 2 * EC_COORD_MAX];
        const char *crv = json_string_value(json_object_get(jwk, "crv"));
        KeydAlg alg = keyd_alg_from_jwk_crv(crv);
        size_t n, xl, yl;
        int r;

        if (!keyd_alg_is_ec(alg))
                return -EINVAL;
        n = keyd_alg_ec_size(alg);

        point[0] = POINT_CONVERSION_UNCOMPRESSED;
        if (jwk_get_bytes(jwk, "x", point + 1, n, &xl) < 0 || xl != n ||
            jwk_get_bytes(jwk, "y", point + 1 + n, n, &yl) < 0 || yl != n)
                return -EINVAL;

        bld = OSSL_PARAM_BLD_new();
        if (!bld || !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, keyd_alg_ec_group(alg), 0) ||
            !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, 1 + 2 * n))
                return -ENOMEM;
        r = pkey_from_params("EC", bld, &pkey);
        if (r < 0)
                return r;

        /* The point must be on the curve and not the point at infinity. P-256 and P-384 have cofactor 1, so that
         * this partial validation (SP 800-56A §5.6.2.3.4) is a full one: the order check of EVP_PKEY_public_check()
         * (a scalar multiplication, most of the cost of loading a key) adds nothing. */
        check = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
        if (!check)
                return -ENOMEM;
        if (EVP_PKEY_public_check_quick(check) != 1)
                return -EINVAL;
        *ret = TAKE_PTR(pkey);
        return 0;
}

static int jwk_to_rsa(const json_t *jwk, EVP_PKEY **ret) {
        _cleanup_(OSSL_PARAM_BLD_freep) OSSL_PARAM_BLD *bld = NULL;
        _cleanup_(BN_freep) BIGNUM *n = NULL, *e = NULL;
        uint8_t nb[JOSE_RSA_BITS_MAX / 8], eb[8];
        size_t nl, el;
        int bits;

        /* Minimal big-endian (RFC 7518 §6.3.1): no leading zero octet. */
        if (jwk_get_bytes(jwk, "n", nb, sizeof nb, &nl) < 0 || nl == 0 || nb[0] == 0)
                return -EINVAL;
        if (jwk_get_bytes(jwk, "e", eb, sizeof eb, &el) < 0 || el == 0 || eb[0] == 0)
                return -EINVAL;
        n = BN_bin2bn(nb, (int) nl, NULL);
        e = BN_bin2bn(eb, (int) el, NULL);
        if (!n || !e)
                return -ENOMEM;
        bits = BN_num_bits(n);
        if (bits < JOSE_RSA_BITS_MIN || bits > JOSE_RSA_BITS_MAX || !BN_is_odd(n))
                return -EINVAL;
        if (!BN_is_odd(e) || BN_is_one(e))
                return -EINVAL;

        bld = OSSL_PARAM_BLD_new();
        if (!bld || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
            !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e))
                return -ENOMEM;
        return pkey_from_params("RSA", bld, ret);
}

static int jwk_to_okp(const json_t *jwk, EVP_PKEY **ret) {
        const char *crv = json_string_value(json_object_get(jwk, "crv"));
        uint8_t x[32];
        size_t xl;
        EVP_PKEY *pkey;

        if (keyd_alg_from_jwk_crv(crv) != KEYD_ALG_EDDSA)
                return -EINVAL;
        if (jwk_get_bytes(jwk, "x", x, sizeof x, &xl) < 0 || xl != sizeof x)
                return -EINVAL;
        pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, x, sizeof x);
        if (!pkey)
                return -EINVAL;
        *ret = pkey;
        return 0;
}

/* The key types keyd reads, by "kty". */
typedef struct JwkType {
        const char *kty;
        int (*to_pkey)(const json_t *jwk, EVP_PKEY **ret);
        const char *const *required; /* RFC 7638 §3.2: the required members, sorted; NULL-terminated */
} JwkType;

static const JwkType jwk_types[] = {
        { "EC", jwk_to_ec, (const char *const[]){ "crv", "kty", "x", "y", NULL } },
        { "RSA", jwk_to_rsa, (const char *const[]){ "e", "kty", "n", NULL } },
        { "OKP", jwk_to_okp, (const char *const[]){ "crv", "kty", "x", NULL } },
};

/* The type of a JWK object by its "kty", or NULL (no "kty", not a string, or not one keyd knows). */
static const JwkType *jwk_type(const json_t *jwk) {
        const char *kty = json_string_value(json_object_get(jwk, "kty"));

        for (size_t i = 0; kty && i < ELEMENTSOF(jwk_types); i++)
                if (streq(jwk_types[i].kty, kty))
                        return &jwk_types[i];
        return NULL;
}

int jose_jwk_to_pkey(const json_t *jwk, EVP_PKEY **ret) {
        const JwkType *t;
        int r;

        if (!json_is_object(jwk) || !ret)
                return -EINVAL;
        if (jwk_check_usage(jwk) < 0)
                return -EINVAL;
        t = jwk_type(jwk);
        r = t ? t->to_pkey(jwk, ret) : -EINVAL;
        if (r < 0)
                ERR_clear_error(); /* the key was refused: leave nothing on the thread's OpenSSL error queue */
        return r;
}

int jose_jwk_thumbprint(const json_t *jwk, char ret[JOSE_THUMBPRINT_LEN + 1]) {
        _cleanup_json_ json_t *members = NULL;
        _cleanup_free_ char *s = NULL;
        const char *const *names;
        const JwkType *t;
        uint8_t md[32];
        unsigned md_len = 0;

        if (!json_is_object(jwk) || !ret)
                return -EINVAL;
        t = jwk_type(jwk);
        if (!t)
                return -EINVAL;
        names = t->required;

        /* RFC 7638 §3.2: the required members only, sorted, no white space. */
        members = json_object();
        if (!members)
                return -ENOMEM;
        for (; *names; names++) {
                const json_t *v = json_object_get(jwk, *names);
                if (!json_is_string(v))
                        return -EINVAL;
                if (json_object_set_new(members, *names, json_stringn(json_string_value(v), json_string_length(v))) < 0)
                        return -ENOMEM;
        }
        s = json_dumps(members, JSON_COMPACT | JSON_SORT_KEYS);
        if (!s)
                return -ENOMEM;
        if (EVP_Digest(s, strlen(s), md, &md_len, EVP_sha256(), NULL) != 1 || md_len != sizeof md)
                return -EINVAL;
        ret[jose_b64url_encode_to(md, sizeof md, ret)] = 0;
        return 0;
}
