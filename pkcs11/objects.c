/* SPDX-License-Identifier: MIT */
/* Enumerating and destroying keyd's objects (reconciliation). Never on the signing path. */
#include <string.h>

#include "common/log.h"
#include "pkcs11/hsm-internal.h"

/* The facts of a private key from the template read_object() filled: known only if every one was there. */
static void read_facts(HsmObject *o, const CK_ATTRIBUTE *a, size_t n, const uint8_t *modulus) {
        const CK_BBOOL *b[5];
        for (size_t i = 0; i < n; i++)
                if (a[i].ulValueLen == CK_UNAVAILABLE_INFORMATION && a[i].type != CKA_MODULUS)
                        return;
        for (size_t i = 0; i < 5; i++)
                b[i] = a[4 + i].pValue; /* CKA_SENSITIVE .. CKA_LOCAL, in read_object()'s order */
        o->facts.key_type = *(const CK_ULONG *) a[3].pValue;
        o->facts.protected_ok = *b[0] && *b[1] && !*b[2] && *b[3] && *b[4];
        if (o->facts.key_type == CKK_RSA) {
                size_t len = a[9].ulValueLen;
                if (len == CK_UNAVAILABLE_INFORMATION || len == 0)
                        return;
                while (len > 0 && *modulus == 0)
                        modulus++, len--;
                o->facts.modulus_len = len;
        }
        o->facts.known = true;
}

/* One object's class, label and id, and for a private key its facts, in one call: a token may re-read the object at
 * every call (SoftHSM2 opens its file), and a start lists every object. Attributes a public key lacks make the call
 * answer CKR_ATTRIBUTE_TYPE_INVALID with the others filled in (PKCS#11 §5.7); a token that does otherwise is asked
 * again for the three that every object has. false: not an object of keyd's. */
static bool read_object(Hsm *h, HsmObject *o) {
        CK_OBJECT_CLASS cls = 0;
        CK_ULONG ktype = 0;
        CK_BBOOL sensitive = 0, always = 0, extractable = 1, never = 0, local = 0;
        uint8_t modulus[HSM_SIG_MAX + 1];
        CK_ATTRIBUTE a[] = {
                { CKA_CLASS, &cls, sizeof cls },
                { CKA_LABEL, o->label, HSM_LABEL_MAX },
                { CKA_ID, o->id, sizeof o->id },
                { CKA_KEY_TYPE, &ktype, sizeof ktype },
                { CKA_SENSITIVE, &sensitive, sizeof sensitive },
                { CKA_ALWAYS_SENSITIVE, &always, sizeof always },
                { CKA_EXTRACTABLE, &extractable, sizeof extractable },
                { CKA_NEVER_EXTRACTABLE, &never, sizeof never },
                { CKA_LOCAL, &local, sizeof local },
                { CKA_MODULUS, modulus, sizeof modulus },
        };
        CK_RV rv = h->f->C_GetAttributeValue(h->anchor, o->handle, a, ELEMENTSOF(a));
        bool filled = (rv == CKR_OK || rv == CKR_ATTRIBUTE_TYPE_INVALID || rv == CKR_ATTRIBUTE_SENSITIVE) &&
                      a[0].ulValueLen == sizeof cls && a[1].ulValueLen <= HSM_LABEL_MAX &&
                      a[2].ulValueLen <= sizeof o->id;
        if (!filled) {
                /* Only the three every object has (the call as before the facts). */
                if (h->f->C_GetAttributeValue(h->anchor, o->handle, a, 3) != CKR_OK)
                        return false;
        }
        o->label[a[1].ulValueLen] = 0;
        o->id_len = a[2].ulValueLen;
        o->is_private = cls == CKO_PRIVATE_KEY;
        if (filled && o->is_private)
                read_facts(o, a, ELEMENTSOF(a), modulus);
        return true;
}

int hsm_list_locked(Hsm *h, const char *prefix, HsmObject **ret, size_t *ret_n, CK_RV *ret_rv) {
        HsmObject *list = NULL;
        size_t n = 0, cap = 0;
        CK_OBJECT_HANDLE batch[64];
        CK_ULONG got;
        CK_RV rv;
        int r = 0;

        *ret_rv = rv = h->f->C_FindObjectsInit(h->anchor, NULL, 0);
        if (rv != CKR_OK)
                return hsm_fail(rv);
        /* Collect handles first: attribute reads are not allowed to interleave with an active search on every
         * module. */
        CK_OBJECT_HANDLE *handles = NULL;
        size_t n_handles = 0;
        while ((rv = h->f->C_FindObjects(h->anchor, batch, ELEMENTSOF(batch), &got)) == CKR_OK && got > 0) {
                CK_OBJECT_HANDLE *nh = realloc(handles, (n_handles + got) * sizeof *nh);
                if (!nh) {
                        r = -ENOMEM;
                        break;
                }
                handles = nh;
                memcpy(handles + n_handles, batch, got * sizeof *batch);
                n_handles += got;
        }
        (void) h->f->C_FindObjectsFinal(h->anchor);
        if (r == 0 && rv != CKR_OK) {
                *ret_rv = rv;
                r = hsm_fail(rv);
        }

        for (size_t i = 0; r == 0 && i < n_handles; i++) {
                HsmObject o = { .handle = handles[i] };
                /* Objects with labels or ids longer than keyd writes are not keyd's: skip them. */
                if (!read_object(h, &o))
                        continue;
                if (prefix && !startswith(o.label, prefix))
                        continue;
                if (n == cap) {
                        size_t ncap = cap ? cap * 2 : 16;
                        HsmObject *nl = realloc(list, ncap * sizeof *nl);
                        if (!nl) {
                                r = -ENOMEM;
                                break;
                        }
                        list = nl;
                        cap = ncap;
                }
                list[n++] = o;
        }
        free(handles);
        if (r < 0) {
                free(list);
                return r;
        }
        *ret = list;
        *ret_n = n;
        return 0;
}

int hsm_list(Hsm *h, const char *prefix, HsmObject **ret, size_t *ret_n) {
        CK_RV rv = CKR_OK;
        int r = hsm_admin_begin(h);
        if (r < 0)
                return r;
        r = hsm_list_locked(h, prefix, ret, ret_n, &rv);
        hsm_admin_end(h, "C_FindObjects", rv);
        return r;
}

int hsm_destroy(Hsm *h, const uint8_t *id, size_t id_len) {
        CK_ATTRIBUTE tmpl[] = { { CKA_ID, (void *) id, id_len } };
        CK_OBJECT_HANDLE found[8], indexed[2];
        CK_ULONG n = 0;
        CK_RV rv = CKR_OK;
        int destroyed = 0;

        if (!id || id_len == 0 || id_len > HSM_ID_MAX)
                return -EINVAL;
        int r = hsm_admin_begin(h);
        if (r < 0)
                return r;
        if (hsm_index_lookup(h, id, id_len, &indexed[0], &indexed[1])) {
                for (size_t i = 0; i < ELEMENTSOF(indexed) && rv == CKR_OK; i++) {
                        if (indexed[i] == CK_INVALID_HANDLE || !hsm_object_has_id(h, indexed[i], id, id_len))
                                continue; /* stale: the search below finds what is left */
                        rv = h->f->C_DestroyObject(h->anchor, indexed[i]);
                        destroyed += rv == CKR_OK;
                }
                if (destroyed == 2 || rv != CKR_OK)
                        goto done;
        }
        rv = h->f->C_FindObjectsInit(h->anchor, tmpl, ELEMENTSOF(tmpl));
        if (rv == CKR_OK) {
                rv = h->f->C_FindObjects(h->anchor, found, ELEMENTSOF(found), &n);
                (void) h->f->C_FindObjectsFinal(h->anchor);
        }
        for (CK_ULONG i = 0; rv == CKR_OK && i < n; i++) {
                rv = h->f->C_DestroyObject(h->anchor, found[i]);
                if (rv == CKR_OK)
                        destroyed++;
        }
done:
        /* Forgotten once gone: an object the token refused to destroy stays indexed. */
        if (rv == CKR_OK)
                hsm_index_forget(h, id, id_len);
        hsm_admin_end(h, "C_DestroyObject", rv);
        if (rv != CKR_OK)
                return hsm_fail(rv);
        return destroyed > 0 ? destroyed : -ENOENT;
}

int hsm_destroy_handles(Hsm *h, unsigned long priv, unsigned long pub) {
        CK_OBJECT_HANDLE objs[2] = { priv, pub };
        int destroyed = 0;
        CK_RV rv = CKR_OK;
        int r = hsm_admin_begin(h);
        if (r < 0)
                return r;
        for (size_t i = 0; i < ELEMENTSOF(objs) && rv == CKR_OK; i++) {
                if (objs[i] == CK_INVALID_HANDLE)
                        continue;
                rv = h->f->C_DestroyObject(h->anchor, objs[i]);
                if (rv == CKR_OK)
                        destroyed++;
                else if (rv == CKR_OBJECT_HANDLE_INVALID)
                        rv = CKR_OK; /* already gone */
        }
        hsm_admin_end(h, "C_DestroyObject", rv);
        return rv == CKR_OK ? destroyed : hsm_fail(rv);
}
