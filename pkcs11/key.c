/* SPDX-License-Identifier: MIT */
/* Keys in the token: open (handles found once and cached), sign, public export, protection check. */
#include <openssl/core_names.h>
#include <openssl/param_build.h>
#include <string.h>

#include "common/crypto-util.h"
#include "common/log.h"
#include "pkcs11/hsm-internal.h"

int hsm_find_one(Hsm *h, CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls, const uint8_t *id, size_t id_len,
                 CK_OBJECT_HANDLE *ret) {
        CK_ATTRIBUTE tmpl[] = {
                { CKA_CLASS, &cls, sizeof cls },
                { CKA_ID, (void *) id, id_len },
        };
        CK_OBJECT_HANDLE found[2];
        CK_ULONG n = 0;
        CK_RV rv;

        rv = h->f->C_FindObjectsInit(s, tmpl, ELEMENTSOF(tmpl));
        if (rv != CKR_OK)
                return hsm_fail(rv);
        rv = h->f->C_FindObjects(s, found, ELEMENTSOF(found), &n);
        (void) h->f->C_FindObjectsFinal(s);
        if (rv != CKR_OK)
                return hsm_fail(rv);
        if (n == 0)
                return -ENOENT;
        if (n > 1)
                return -ENOTUNIQ;
        *ret = found[0];
        return 0;
}

static int get_ulong(Hsm *h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE t, CK_ULONG *ret) {
        CK_ATTRIBUTE a = { t, ret, sizeof *ret };
        CK_RV rv = h->f->C_GetAttributeValue(h->anchor, o, &a, 1);
        return rv == CKR_OK ? 0 : hsm_fail(rv);
}

/* Allocate and read one variable-length attribute. */
static int get_bytes(Hsm *h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE t, uint8_t **ret, size_t *ret_len) {
        CK_ATTRIBUTE a = { t, NULL, 0 };
        CK_RV rv = h->f->C_GetAttributeValue(h->anchor, o, &a, 1);
        if (rv != CKR_OK)
                return hsm_fail(rv);
        if (a.ulValueLen == CK_UNAVAILABLE_INFORMATION || a.ulValueLen == 0 || a.ulValueLen > 4096)
                return -EBADMSG;
        a.pValue = malloc(a.ulValueLen);
        if (!a.pValue)
                return -ENOMEM;
        rv = h->f->C_GetAttributeValue(h->anchor, o, &a, 1);
        if (rv != CKR_OK) {
                free(a.pValue);
                return hsm_fail(rv);
        }
        *ret = a.pValue;
        *ret_len = a.ulValueLen;
        return 0;
}

bool hsm_object_has_id(Hsm *h, CK_OBJECT_HANDLE o, const uint8_t *id, size_t id_len) {
        uint8_t got[HSM_ID_MAX];
        CK_ATTRIBUTE a = { CKA_ID, got, sizeof got };
        return h->f->C_GetAttributeValue(h->anchor, o, &a, 1) == CKR_OK && a.ulValueLen == id_len &&
               memcmp(got, id, id_len) == 0;
}

CK_KEY_TYPE hsm_alg_key_type(KeydAlg alg) {
        return keyd_alg_is_ec(alg) ? CKK_EC : keyd_alg_is_rsa(alg) ? CKK_RSA : CKK_EC_EDWARDS;
}

/* The HsmKey for handles whose key type (and RSA modulus size) are known: -EMEDIUMTYPE if they do not fit alg. */
static int key_new(Hsm *h, KeydAlg alg, const uint8_t *id, size_t id_len, CK_OBJECT_HANDLE priv,
                   CK_OBJECT_HANDLE pub, CK_KEY_TYPE ktype, size_t modulus_len, unsigned generation, HsmKey **ret) {
        size_t sig_size = 0;
        HsmKey *k;

        if (ktype != hsm_alg_key_type(alg))
                return -EMEDIUMTYPE;
        if (keyd_alg_is_rsa(alg)) {
                sig_size = modulus_len;
                if (sig_size > HSM_SIG_MAX || !keyd_rsa_bits_valid((unsigned) sig_size * 8))
                        return -EMEDIUMTYPE;
        }
        k = calloc(1, sizeof *k);
        if (!k)
                return -ENOMEM;
        k->hsm = h;
        k->alg = alg;
        memcpy(k->id, id, id_len);
        k->id_len = id_len;
        k->priv = priv;
        k->pub = pub;
        k->generation = generation;
        switch (alg) {
        case KEYD_ALG_ES256:
        case KEYD_ALG_ES384:
                k->md = alg == KEYD_ALG_ES256 ? EVP_sha256() : EVP_sha384();
                k->mech.mechanism = CKM_ECDSA;
                k->sig_size = 2 * keyd_alg_ec_size(alg);
                break;
        case KEYD_ALG_EDDSA:
                k->mech.mechanism = CKM_EDDSA;
                k->sig_size = 64;
                break;
        case KEYD_ALG_RS256:
                k->mech.mechanism = CKM_SHA256_RSA_PKCS;
                k->sig_size = sig_size;
                break;
        case KEYD_ALG_PS256:
                k->pss = (CK_RSA_PKCS_PSS_PARAMS){ CKM_SHA256, CKG_MGF1_SHA256, 32 };
                k->mech = (CK_MECHANISM){ CKM_SHA256_RSA_PKCS_PSS, &k->pss, sizeof k->pss };
                k->sig_size = sig_size;
                break;
        default:
                break;
        }
        *ret = k;
        return 0;
}

int hsm_key_open_handles(Hsm *h, KeydAlg alg, const uint8_t *id, size_t id_len, unsigned long priv,
                         unsigned long pub, HsmKey **ret) {
        CK_ULONG ktype;
        size_t modulus_len = 0;
        int r;

        if (alg < 0 || alg >= _KEYD_ALG_MAX || !id || id_len == 0 || id_len > HSM_ID_MAX || priv == CK_INVALID_HANDLE)
                return -EINVAL;

        r = hsm_admin_begin(h);
        if (r < 0)
                return r;
        hsm_clear_error();
        r = get_ulong(h, priv, CKA_KEY_TYPE, &ktype);
        if (r >= 0 && !hsm_object_has_id(h, priv, id, id_len))
                r = -ENOENT; /* the handle names another object now */
        if (r >= 0 && ktype == CKK_RSA) {
                _cleanup_free_ uint8_t *mod = NULL;
                size_t n;
                r = get_bytes(h, priv, CKA_MODULUS, &mod, &n);
                if (r >= 0) {
                        while (n > 0 && mod[0] == 0 && n--)
                                memmove(mod, mod + 1, n);
                        modulus_len = n;
                }
        }
        /* The generation the handles were checked in: read before a re-initialisation can come between. */
        unsigned generation = __atomic_load_n(&h->generation, __ATOMIC_ACQUIRE);
        hsm_admin_end(h, "C_GetAttributeValue", hsm_last_rv());
        if (r < 0)
                return r;
        return key_new(h, alg, id, id_len, priv, pub, ktype, modulus_len, generation, ret);
}

int hsm_key_from_facts(Hsm *h, KeydAlg alg, const uint8_t *id, size_t id_len, CK_OBJECT_HANDLE priv,
                       CK_OBJECT_HANDLE pub, const HsmKeyFacts *f, unsigned generation, HsmKey **ret) {
        if (alg < 0 || alg >= _KEYD_ALG_MAX || !id || id_len == 0 || id_len > HSM_ID_MAX || priv == CK_INVALID_HANDLE)
                return -EINVAL;
        return key_new(h, alg, id, id_len, priv, pub, f->key_type, f->modulus_len, generation, ret);
}

void hsm_key_current(HsmKey *k, CK_OBJECT_HANDLE *ret_priv, CK_OBJECT_HANDLE *ret_pub) {
        Hsm *h = k->hsm;
        unsigned generation = __atomic_load_n(&h->generation, __ATOMIC_ACQUIRE);
        CK_OBJECT_HANDLE priv, pub;
        bool current;

        pthread_mutex_lock(&h->pool_lock); /* the handles and their generation are a pair (signer.c) */
        current = k->generation == generation;
        priv = k->priv;
        pub = k->pub;
        pthread_mutex_unlock(&h->pool_lock);
        if (!current && hsm_index_lookup(h, k->id, k->id_len, &priv, &pub)) {
                pthread_mutex_lock(&h->pool_lock);
                __atomic_store_n(&k->priv, priv, __ATOMIC_RELEASE);
                k->pub = pub;
                k->generation = generation;
                pthread_mutex_unlock(&h->pool_lock);
        }
        *ret_priv = priv;
        *ret_pub = pub;
}

void hsm_key_handles(const HsmKey *k, unsigned long *ret_priv, unsigned long *ret_pub) {
        if (ret_priv)
                *ret_priv = __atomic_load_n(&k->priv, __ATOMIC_ACQUIRE);
        if (ret_pub)
                *ret_pub = k->pub;
}

HsmKey *hsm_key_free(HsmKey *k) {
        free(k);
        return NULL;
}

KeydAlg hsm_key_alg(const HsmKey *k) {
        return k->alg;
}

size_t hsm_key_signature_size(const HsmKey *k) {
        return k->sig_size;
}

int hsm_key_sign(HsmKey *k, const void *msg, size_t msg_len, uint8_t *sig, size_t sig_size) {
        uint8_t digest[EVP_MAX_MD_SIZE];
        unsigned digest_len;
        int r;

        hsm_clear_error();
        if (sig_size < k->sig_size)
                return -ENOBUFS;
        if (k->md) {
                if (EVP_Digest(msg, msg_len, digest, &digest_len, k->md, NULL) != 1)
                        return -EIO;
                msg = digest;
                msg_len = digest_len;
        }
        r = hsm_signer_run(k, msg, msg_len, sig, sig_size);
        if (r >= 0 && (size_t) r != k->sig_size)
                return -EBADMSG; /* never hand out a signature of the wrong form */
        return r;
}

/* An EC point attribute is a DER OCTET STRING around the point; some modules give the bare point. */
static const uint8_t *unwrap_octet_string(const uint8_t *p, size_t n, size_t want, size_t *ret_len) {
        if (n == want) {
                *ret_len = n;
                return p;
        }
        if (n >= 2 && p[0] == 0x04) {
                size_t len = p[1], hdr = 2;
                if (p[1] == 0x81 && n >= 3) {
                        len = p[2];
                        hdr = 3;
                }
                if (hdr + len == n && len == want) {
                        *ret_len = len;
                        return p + hdr;
                }
        }
        return NULL;
}

static int public_ec(Hsm *h, CK_OBJECT_HANDLE o, KeydAlg alg, EVP_PKEY **ret) {
        _cleanup_free_ uint8_t *point = NULL;
        _cleanup_(EVP_PKEY_CTX_freep) EVP_PKEY_CTX *ctx = NULL;
        const uint8_t *raw;
        size_t n, raw_len;
        int r;

        r = get_bytes(h, o, CKA_EC_POINT, &point, &n);
        if (r < 0)
                return r;
        if (alg == KEYD_ALG_EDDSA) {
                raw = unwrap_octet_string(point, n, 32, &raw_len);
                if (!raw)
                        return -EBADMSG;
                *ret = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, raw, raw_len);
                return *ret ? 0 : -EIO;
        }
        raw = unwrap_octet_string(point, n, 1 + 2 * keyd_alg_ec_size(alg), &raw_len);
        if (!raw || raw[0] != 0x04)
                return -EBADMSG;
        OSSL_PARAM params[] = {
                OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *) keyd_alg_ec_group(alg), 0),
                OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *) raw, raw_len),
                OSSL_PARAM_construct_end(),
        };
        ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
        if (!ctx || EVP_PKEY_fromdata_init(ctx) != 1 || EVP_PKEY_fromdata(ctx, ret, EVP_PKEY_PUBLIC_KEY, params) != 1)
                return -EBADMSG;
        return 0;
}

static int public_rsa(Hsm *h, CK_OBJECT_HANDLE o, EVP_PKEY **ret) {
        _cleanup_free_ uint8_t *mod = NULL, *exp = NULL;
        _cleanup_(BN_freep) BIGNUM *bn_n = NULL, *bn_e = NULL;
        _cleanup_(EVP_PKEY_CTX_freep) EVP_PKEY_CTX *ctx = NULL;
        OSSL_PARAM_BLD *bld = NULL;
        OSSL_PARAM *params = NULL;
        size_t n_len, e_len;
        int r;

        r = get_bytes(h, o, CKA_MODULUS, &mod, &n_len);
        if (r >= 0)
                r = get_bytes(h, o, CKA_PUBLIC_EXPONENT, &exp, &e_len);
        if (r < 0)
                return r;
        bn_n = BN_bin2bn(mod, (int) n_len, NULL);
        bn_e = BN_bin2bn(exp, (int) e_len, NULL);
        bld = OSSL_PARAM_BLD_new();
        r = -EIO;
        if (bn_n && bn_e && bld && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) == 1 &&
            OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e) == 1 && (params = OSSL_PARAM_BLD_to_param(bld)) &&
            (ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL)) && EVP_PKEY_fromdata_init(ctx) == 1 &&
            EVP_PKEY_fromdata(ctx, ret, EVP_PKEY_PUBLIC_KEY, params) == 1)
                r = 0;
        OSSL_PARAM_free(params);
        OSSL_PARAM_BLD_free(bld);
        return r;
}

int hsm_key_public(HsmKey *k, EVP_PKEY **ret) {
        Hsm *h = k->hsm;
        CK_OBJECT_HANDLE priv, pub, o;
        int r;

        r = hsm_admin_begin(h);
        if (r < 0)
                return r;
        hsm_clear_error();
        hsm_key_current(k, &priv, &pub);
        /* RSA private keys carry the public attributes too; EC and Ed25519 need the public object. */
        o = pub != CK_INVALID_HANDLE ? pub : priv;
        if (keyd_alg_is_rsa(k->alg))
                r = public_rsa(h, o, ret);
        else if (pub == CK_INVALID_HANDLE)
                r = -ENOENT;
        else
                r = public_ec(h, o, k->alg, ret);
        hsm_admin_end(h, "C_GetAttributeValue", hsm_last_rv());
        return r;
}

int hsm_key_check_protection(HsmKey *k) {
        Hsm *h = k->hsm;
        CK_BBOOL sensitive = 0, always = 0, extractable = 1, never = 0, local = 0;
        CK_ATTRIBUTE a[] = {
                { CKA_SENSITIVE, &sensitive, sizeof sensitive },
                { CKA_ALWAYS_SENSITIVE, &always, sizeof always },
                { CKA_EXTRACTABLE, &extractable, sizeof extractable },
                { CKA_NEVER_EXTRACTABLE, &never, sizeof never },
                { CKA_LOCAL, &local, sizeof local },
        };
        CK_RV rv;
        int r;

        CK_OBJECT_HANDLE priv, pub;
        r = hsm_admin_begin(h);
        if (r < 0)
                return r;
        hsm_key_current(k, &priv, &pub);
        rv = h->f->C_GetAttributeValue(h->anchor, priv, a, ELEMENTSOF(a));
        hsm_admin_end(h, "C_GetAttributeValue", rv);
        if (rv != CKR_OK)
                return hsm_fail(rv);
        return sensitive && always && !extractable && never && local ? 0 : -EPERM;
}
