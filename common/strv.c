/* SPDX-License-Identifier: MIT */
#include "common/macro.h"
#include "common/strv.h"

void strv_free(char **l) {
        for (char **p = l; p && *p; p++)
                free(*p);
        free(l);
}

int strv_split(const char *s, char ***ret) {
        char **l = calloc(1, sizeof(char *));
        size_t n = 0;

        if (!l)
                return -ENOMEM;
        while (s && *s) {
                size_t skip = strspn(s, " \t,"), len;
                s += skip;
                len = strcspn(s, " \t,");
                if (len == 0)
                        break;
                char **nl = realloc(l, (n + 2) * sizeof(char *));
                if (!nl || !(nl[n] = strndup(s, len))) {
                        strv_free(nl ?: l);
                        return -ENOMEM;
                }
                l = nl;
                l[++n] = NULL;
                s += len;
        }
        *ret = l;
        return 0;
}

int strv_copy(char *const *src, char ***ret) {
        size_t n = 0;
        char **l;

        if (!src) {
                *ret = NULL;
                return 0;
        }
        while (src[n])
                n++;
        l = calloc(n + 1, sizeof(char *));
        if (!l)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                if (!(l[i] = strdup(src[i]))) {
                        strv_free(l);
                        return -ENOMEM;
                }
        *ret = l;
        return 0;
}

bool strv_contains(char *const *l, const char *s) {
        for (char *const *p = l; p && *p; p++)
                if (streq(*p, s))
                        return true;
        return false;
}
