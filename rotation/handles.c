/* SPDX-License-Identifier: MIT */
/* The index of keyd's objects in the token, by key id. */
#include <stdio.h>

#include "common/log.h"
#include "rotation/engine-internal.h"

int engine_index_key(Engine *e, const char *key_id, unsigned long priv, unsigned long pub) {
        KeyHandles *h, *old = NULL;

        if (priv == 0) {
                free(strmap_remove(e->handles, key_id));
                return 0;
        }
        h = malloc(sizeof *h);
        if (!h)
                return -ENOMEM;
        *h = (KeyHandles){ priv, pub };
        if (strmap_put(e->handles, key_id, h, (void **) &old) < 0) {
                free(h);
                return -ENOMEM;
        }
        free(old);
        return 0;
}

static bool remove_all(const char *key, void *value, void *userdata) {
        (void) key, (void) value, (void) userdata;
        return true;
}

int engine_index_objects(Engine *e, const HsmObject *objs, size_t n) {
        strmap_remove_if(e->handles, remove_all, NULL, free);
        for (size_t i = 0; i < n; i++) {
                char hex[STORE_KEY_ID_MAX + 1] = "";
                KeyHandles *h;
                key_id_to_hex(objs[i].id, objs[i].id_len, hex);
                h = strmap_get(e->handles, hex);
                if (!h) {
                        h = calloc(1, sizeof *h);
                        if (!h || strmap_put(e->handles, hex, h, NULL) < 0) {
                                free(h);
                                return -ENOMEM;
                        }
                }
                if (objs[i].is_private)
                        h->priv = objs[i].handle;
                else
                        h->pub = objs[i].handle;
        }
        return 0;
}

int engine_index_token(Engine *e) {
        HsmObject *objs = NULL;
        size_t n = 0;
        int r = hsm_list(e->hsm, "keyd:", &objs, &n);
        if (r >= 0)
                r = engine_index_objects(e, objs, n);
        free(objs);
        return r;
}

int engine_open_key(Engine *e, const StoreKey *k, HsmKey **ret) {
        KeyHandles *h = strmap_get(e->handles, k->id);
        uint8_t id[HSM_ID_MAX];
        size_t n;
        int r;

        r = key_id_to_bytes(k->id, id, &n);
        if (r < 0)
                return r;
        if (h && h->priv) {
                r = hsm_key_open_handles(e->hsm, k->alg, id, n, h->priv, h->pub, ret);
                if (r != -ENOENT && r != -EINVAL)
                        return r;
                log_debug("key %s: stale handles, searching the token", k->id);
        }
        r = hsm_key_open(e->hsm, k->alg, id, n, ret);
        if (r >= 0) {
                unsigned long priv, pub;
                hsm_key_handles(*ret, &priv, &pub);
                (void) engine_index_key(e, k->id, priv, pub);
        }
        return r;
}
