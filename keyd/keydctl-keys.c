/* SPDX-License-Identifier: MIT */
/* keydctl: kids as operators type them, and key show. keyd takes whole kids only (POST /v1/keys/{kid}/revoke, GET
 * /v1/keys/{kid}); people copy the 12 characters "keydctl keyrings" shows, or a kid that starts with "-". A prefix is
 * resolved here, against the keys of every keyring as keyd lists them, and must name one key. */
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
                return ctl_error(KEYDCTL_ERR_NOT_FOUND, "no key has a kid that starts with '%s' (see keydctl keyrings)",
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

/* key show for people: the key, its times, where it is in the token, its public JWK. */
static void print_key(const json_t *key) {
        static const struct {
                const char *field, *label;
        } times[] = {
                { "created_at", "Created:" },    { "publish_at", "Published:" }, { "activate_at", "Activated:" },
                { "retire_at", "Retired:" },     { "expire_at", "Expires:" },    { "revoked_at", "Revoked:" },
        };
        const json_t *token = json_object_get(key, "token");
        _cleanup_free_ char *jwk = json_dumps(json_object_get(key, "jwk"), JSON_COMPACT | JSON_ENCODE_ANY);
        const char *state = json_str(key, "state") ?: "?";
        char clean[2][1024];

        printf("Key:          %s\n", sanitize(json_str(key, "kid") ?: "?", clean[0], sizeof clean[0]));
        printf("Keyring:      %s (%s)\n", sanitize(json_str(key, "keyring") ?: "?", clean[0], sizeof clean[0]),
               sanitize(json_str(key, "kind") ?: "?", clean[1], sizeof clean[1]));
        printf("Alg:          %s\n", sanitize(json_str(key, "alg") ?: "?", clean[0], sizeof clean[0]));
        printf("State:        %s%s\n", sanitize(state, clean[0], sizeof clean[0]),
               json_is_true(json_object_get(key, "lost")) ? " (lost from the token)" : "");
        for (size_t i = 0; i < ELEMENTSOF(times); i++) {
                const char *t = json_str(key, times[i].field);
                if (!t)
                        continue;
                if (streq(times[i].field, "revoked_at"))
                        printf("%-14s%s (%s)\n", times[i].label, sanitize(t, clean[0], sizeof clean[0]),
                               sanitize(json_str(key, "reason") ?: "no reason", clean[1], sizeof clean[1]));
                else
                        printf("%-14s%s\n", times[i].label, sanitize(t, clean[0], sizeof clean[0]));
        }
        printf("PKCS#11 URI:  %s\n", sanitize(json_str(token, "uri") ?: "-", clean[0], sizeof clean[0]));
        if (json_is_true(json_object_get(token, "private_key")))
                printf("              (the private key object is in token %s)\n",
                       sanitize(json_str(token, "label") ?: "?", clean[0], sizeof clean[0]));
        else
                printf("              (no private key object in the token: a %s key signs no more)\n",
                       sanitize(state, clean[1], sizeof clean[1]));
        printf("JWK:          %s\n", sanitize(jwk ?: "-", clean[0], sizeof clean[0]));
}

int verb_key_show(Ctl *c, const Verb *v, int argc, char **argv) {
        _cleanup_json_ json_t *all = NULL, *reply = NULL;
        _cleanup_free_ char *path = NULL;
        const json_t *ring, *key;
        int r;

        r = ctl_parse_plain(c, v, argc, argv, 1, 1);
        if (r != CTL_PARSED)
                return r > 0 ? 0 : r;
        r = ctl_resolve_kid(c, argv[optind], &all, &ring, &key);
        if (r < 0)
                return r;
        path = ctl_path("/v1/keys/", json_str(key, "kid"), NULL);
        if (!path)
                return OOM();
        r = ctl_call(c, "GET", path, NULL, &reply);
        if (r < 0)
                return r;
        if (c->json)
                print_json(reply);
        else
                print_key(reply);
        return 0;
}
