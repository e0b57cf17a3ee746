/* SPDX-License-Identifier: MIT */
/* Key pair generation in the token. Every protection attribute is set explicitly: SoftHSM2 2.6.1 defaults
 * CKA_SENSITIVE to false, and an object must never be modified after it is made (SoftHSM2 rewrites object files
 * without fsync), so what is set here is what the key keeps. */
#include <string.h>

#include "common/log.h"
#include "pkcs11/hsm-internal.h"

/* DER OIDs for CKA_EC_PARAMS. */
static const CK_BYTE oid_p256[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };
static const CK_BYTE oid_p384[] = { 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22 };
static const CK_BYTE oid_ed25519[] = { 0x06, 0x03, 0x2b, 0x65, 0x70 };
static const CK_BYTE rsa_e[] = { 0x01, 0x00, 0x01 };

/* A boolean attribute of a template. */
typedef struct Flag {
        CK_ATTRIBUTE_TYPE type;
        bool value;
} Flag;

static size_t set_flags(CK_ATTRIBUTE *tmpl, const Flag *flags, size_t n) {
        static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
        for (size_t i = 0; i < n; i++)
                tmpl[i] = (CK_ATTRIBUTE){ flags[i].type, flags[i].value ? &yes : &no, sizeof yes };
        return n;
}

int hsm_generate(Hsm *h, KeydAlg alg, unsigned rsa_bits, const uint8_t *id, size_t id_len, const char *label,
                 HsmKey **ret) {
        CK_MECHANISM mech = { 0 };
        CK_ULONG bits = rsa_bits;
        CK_OBJECT_HANDLE pub, priv;
        CK_KEY_TYPE ktype;
        const CK_BYTE *params = NULL;
        size_t params_len = 0;
        CK_RV rv;

        if (!id || id_len == 0 || id_len > HSM_ID_MAX || !label || strlen(label) > HSM_LABEL_MAX)
                return -EINVAL;
        switch (alg) {
        case KEYD_ALG_ES256:
        case KEYD_ALG_ES384:
                mech.mechanism = CKM_EC_KEY_PAIR_GEN;
                ktype = CKK_EC;
                params = alg == KEYD_ALG_ES256 ? oid_p256 : oid_p384;
                params_len = alg == KEYD_ALG_ES256 ? sizeof oid_p256 : sizeof oid_p384;
                break;
        case KEYD_ALG_EDDSA:
                mech.mechanism = CKM_EC_EDWARDS_KEY_PAIR_GEN;
                ktype = CKK_EC_EDWARDS;
                params = oid_ed25519;
                params_len = sizeof oid_ed25519;
                break;
        case KEYD_ALG_RS256:
        case KEYD_ALG_PS256:
                if (!keyd_rsa_bits_valid(rsa_bits))
                        return -EINVAL;
                mech.mechanism = CKM_RSA_PKCS_KEY_PAIR_GEN;
                ktype = CKK_RSA;
                break;
        default:
                return -EINVAL;
        }

        /* Every boolean that matters, set either way: the public half verifies only, the private half signs only. */
        static const Flag pub_flags[] = {
                { CKA_TOKEN, true },    { CKA_PRIVATE, false }, { CKA_VERIFY, true },
                { CKA_ENCRYPT, false }, { CKA_WRAP, false },
        };
        static const Flag priv_flags[] = {
                { CKA_TOKEN, true }, { CKA_PRIVATE, true },  { CKA_SENSITIVE, true }, { CKA_EXTRACTABLE, false },
                { CKA_SIGN, true },  { CKA_DECRYPT, false }, { CKA_UNWRAP, false },   { CKA_DERIVE, false },
        };
        CK_ATTRIBUTE pub_tmpl[ELEMENTSOF(pub_flags) + 4], priv_tmpl[ELEMENTSOF(priv_flags) + 3];
        size_t n_pub = set_flags(pub_tmpl, pub_flags, ELEMENTSOF(pub_flags));
        size_t n_priv = set_flags(priv_tmpl, priv_flags, ELEMENTSOF(priv_flags));
        CK_ATTRIBUTE named[] = {
                { CKA_ID, (void *) id, id_len },
                { CKA_LABEL, (void *) label, strlen(label) },
        };
        memcpy(pub_tmpl + n_pub, named, sizeof named);
        memcpy(priv_tmpl + n_priv, named, sizeof named);
        n_pub += ELEMENTSOF(named);
        n_priv += ELEMENTSOF(named);
        priv_tmpl[n_priv++] = (CK_ATTRIBUTE){ CKA_KEY_TYPE, &ktype, sizeof ktype };
        if (params)
                pub_tmpl[n_pub++] = (CK_ATTRIBUTE){ CKA_EC_PARAMS, (void *) params, params_len };
        else {
                pub_tmpl[n_pub++] = (CK_ATTRIBUTE){ CKA_MODULUS_BITS, &bits, sizeof bits };
                pub_tmpl[n_pub++] = (CK_ATTRIBUTE){ CKA_PUBLIC_EXPONENT, (void *) rsa_e, sizeof rsa_e };
        }

        int r = hsm_admin_begin(h);
        if (r < 0)
                return r;
        rv = h->f->C_GenerateKeyPair(h->anchor, &mech, pub_tmpl, n_pub, priv_tmpl, n_priv, &pub, &priv);
        if (rv == CKR_OK && hsm_index_put(h, id, id_len, label, priv, pub) < 0)
                log_debug("no memory to index a new key: it will be searched for");
        hsm_admin_end(h, "C_GenerateKeyPair", rv);
        if (rv != CKR_OK)
                return hsm_fail(rv);
        if (!ret)
                return 0;
        /* The token gave us both handles: no search (a search scans every object in the token). */
        return hsm_key_open_handles(h, alg, id, id_len, priv, pub, ret);
}
