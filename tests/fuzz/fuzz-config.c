/* SPDX-License-Identifier: MIT */
/* libFuzzer target for keyd.conf: config_load() (libinih, keyd's line reader, the Section.Key table, [keyring NAME]
 * sections through policy_set()) on the input written to a memfd. Checks what config_load() promises: errors come
 * as a non-empty list exactly when it returns -EINVAL, every message names the file; a loaded configuration has a
 * token URI without a pin-value, valid keyring names, coherent policies and owner uids that fit their kind, and each
 * keyring's policy survives policy_to_json() → policy_update_from_json() → policy_to_json() unchanged. Also built as
 * a replay program (replay.c) that runs the committed corpus inside "make check". */
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>

#include "common/crypto-util.h"
#include "common/strv.h"
#include "keyd/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static int fd = -1;
static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        (void) argc, (void) argv;
        fd = memfd_create("keyd.conf", MFD_CLOEXEC);
        if (fd < 0)
                abort();
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        return 0;
}

static void write_input(const uint8_t *data, size_t size) {
        size_t off = 0;
        if (ftruncate(fd, 0) < 0)
                abort();
        while (off < size) {
                ssize_t n = pwrite(fd, data + off, size - off, (off_t) off);
                if (n <= 0)
                        abort();
                off += (size_t) n;
        }
}

__attribute__((noreturn)) static void fail_round_trip(const ConfigKeyring *k, const json_t *a, const json_t *b, const char *err) {
        _cleanup_free_ char *ta = a ? json_dumps(a, JSON_COMPACT) : NULL, *tb = b ? json_dumps(b, JSON_COMPACT) : NULL;
        fprintf(stderr, "[keyring %s]: policy_to_json: %s\nread back: %s\n%s\n", k->name, ta ?: "(none)",
                tb ?: "(none)", err ?: "");
        abort();
}

static size_t strv_length(char *const *l) {
        size_t n = 0;
        while (l && l[n])
                n++;
        return n;
}

/* A loaded policy's JSON form must read back into the same policy. */
static void check_round_trip(const ConfigKeyring *k) {
        _cleanup_json_ json_t *a = NULL, *b = NULL;
        _cleanup_free_ char *err = NULL;
        const char *why = NULL;
        Policy p;

        if (policy_to_json(&k->policy, &a) < 0)
                fail_round_trip(k, NULL, NULL, "policy_to_json() failed on a policy config_load() accepted");
        if (json_array_size(json_object_get(a, "sign_users")) != strv_length(k->policy.sign_users) ||
            json_array_size(json_object_get(a, "sign_groups")) != strv_length(k->policy.sign_groups))
                fail_round_trip(k, a, NULL, "policy_to_json() lost a name of sign-users or sign-groups");
        policy_init(&p, k->kind);
        if (policy_update_from_json(&p, a, &err) < 0)
                fail_round_trip(k, a, NULL, err);
        if (policy_validate(&p, &why) < 0)
                fail_round_trip(k, a, NULL, why);
        if (policy_to_json(&p, &b) < 0)
                abort();
        policy_done(&p);
        if (!json_equal(a, b))
                fail_round_trip(k, a, b, "not equal");
}

static void check_loaded(const Config *c) {
        if (!c->uri || !startswith(c->uri, "pkcs11:") || strcasestr(c->uri, "pin-value="))
                abort();
        for (size_t i = 0; i < c->n_keyrings; i++) {
                const ConfigKeyring *k = &c->keyrings[i];
                if (!keyring_name_valid(k->name) || policy_validate(&k->policy, NULL) < 0)
                        abort();
                if ((k->kind == RING_AGENT) != (k->owner_uid >= 0) || k->owner_uid >= (int64_t) UINT32_MAX)
                        abort();
                for (size_t j = 0; j < i; j++)
                        if (streq(c->keyrings[j].name, k->name))
                                abort();
                check_round_trip(k);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char **errors = NULL;
        Config c;
        int r;

        if (fd < 0)
                LLVMFuzzerInitialize(NULL, NULL);
        write_input(data, size);
        if (config_init(&c) < 0)
                abort();
        r = config_load(path, &c, &errors);
        if (r == 0) {
                if (errors)
                        abort();
                check_loaded(&c);
        } else if (r == -EINVAL) {
                if (!errors || !errors[0])
                        abort(); /* -EINVAL always comes with what is wrong */
                for (char **e = errors; *e; e++)
                        if (!startswith(*e, path))
                                abort();
        } else if (r != -ENOMEM)
                abort(); /* the memfd is always readable */
        for (char **e = errors; e && *e; e++)
                free(*e);
        free(errors);
        config_done(&c);
        return 0;
}
