/* SPDX-License-Identifier: MIT */
/* keydctl: kids as operators type them. keyd takes whole kids only (POST /v1/keys/{kid}/revoke); people copy the 12
 * characters "keydctl keyrings" shows, or a kid that starts with "-". A prefix is resolved here, against the keys of
 * every keyring as keyd lists them, and must name one key. */
#include "keyd/keydctl-internal.h"

#define CANDIDATES_SHOWN 8 /* of an ambiguous prefix, the ones named */

bool base64url_text(const char *s) {
        for (; *s; s++)
                if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-' ||
                      *s == '_'))
                        return false;
        return true;
}

int ctl_check_kid(const char *kid) {
        size_t len = strlen(kid);

        if (len == 0)
                return ctl_error(KEYDCTL_ERR_USAGE, "the KID is empty");
        if (!base64url_text(kid))
                return ctl_error(KEYDCTL_ERR_USAGE, "'%s' is not a kid: a kid is base64url (A-Z a-z 0-9 - _)", kid);
        if (len > KID_MAX)
                return ctl_error(KEYDCTL_ERR_USAGE, "'%s' is not a kid: longer than %d characters", kid, KID_MAX);
        /* A short prefix would too easily name another key than the one meant, in an emergency of all times. */
        if (len < KID_PREFIX_MIN)
                return ctl_error(KEYDCTL_ERR_USAGE,
                                 "kid prefix '%s' is too short: give the kid, or at least its first %d characters", kid,
                                 KID_PREFIX_MIN);
        return 0;
}

int ctl_resolve_kid(Ctl *c, const char *kid, json_t **ret_keyrings, const json_t **ret_ring, const json_t **ret_key) {
        _cleanup_json_ json_t *all = NULL;
        const json_t *ring, *key, *found_ring = NULL, *found_key = NULL;
        size_t i, j, n = 0;
        char list[2048] = "";
        int r;

        r = ctl_check_kid(kid);
        if (r < 0)
                return r;
        r = ctl_fetch_keyrings(c, &all);
        if (r < 0)
                return r;
        json_array_foreach(json_object_get(all, "keyrings"), i, ring)
                json_array_foreach(json_object_get(ring, "keys"), j, key) {
                        const char *k = json_str(key, "kid");
                        if (!k || !startswith(k, kid))
                                continue;
                        /* The whole kid names its key even when it is also a prefix of another one. */
                        if (streq(k, kid)) {
                                found_ring = ring;
                                found_key = key;
                                n = 1;
                                goto done;
                        }
                        if (n < CANDIDATES_SHOWN)
                                (void) snprintf(list + strlen(list), sizeof list - strlen(list),
                                                "%s%s (keyring %s, %s)", n ? ", " : "", k,
                                                json_str(ring, "name") ?: "?", json_str(key, "state") ?: "?");
                        n++;
                        found_ring = ring;
                        found_key = key;
                }
done:
        if (n == 0)
                return ctl_error(KEYDCTL_ERR_REFUSED, "no key has a kid that starts with '%s' (see keydctl keyrings)",
                                 kid);
        if (n > 1) {
                if (n > CANDIDATES_SHOWN)
                        (void) snprintf(list + strlen(list), sizeof list - strlen(list), " and %zu more",
                                        n - CANDIDATES_SHOWN);
                return ctl_error(KEYDCTL_ERR_USAGE, "kid prefix '%s' is ambiguous: %s; give more of the kid", kid,
                                 list);
        }
        *ret_ring = found_ring;
        *ret_key = found_key;
        *ret_keyrings = TAKE_PTR(all);
        return 0;
}
