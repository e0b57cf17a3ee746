/* SPDX-License-Identifier: MIT */
/* keyd init: the token and its PIN for a fresh host, from keyd.conf's [token]. With SoftHSM2, a token with the URI's
 * label and random user and SO PINs, each written to a file of mode 0600 first (never over one); with another module,
 * what to do with the vendor's tools. The token is made as the user keyd runs as: SoftHSM2 writes its files 0600 for
 * whoever makes them, and keyd could not read a token root made. Everything that touches the module runs in a child
 * process with that user's privileges, so that this one never initialises the module (no fork after C_Initialize). */
#include <fcntl.h>
#include <grp.h>
#include <libgen.h>
#include <openssl/crypto.h>
#include <p11-kit/uri.h>
#include <pwd.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "keyd/config.h"
#include "keyd/dev.h"
#include "keyd/init-cmd.h"
#include "pkcs11/hsm.h"

enum { PROBE_ABSENT = 0, PROBE_FAILED = 1, PROBE_PRESENT = 10 };

typedef struct Init {
        const Config *config;
        char label[33];
        const struct passwd *user; /* NULL: this process's own (not root) */
        const char *pin_path, *so_pin_path;
        char pin[33], so_pin[33];
} Init;

/* The token label of the [token] uri (its token= attribute), unpadded. */
static int uri_label(const char *uri, char out[33]) {
        P11KitUri *u = p11_kit_uri_new();
        int r = -ENOMEM;

        if (u) {
                r = p11_kit_uri_parse(uri, P11_KIT_URI_FOR_TOKEN, u) == P11_KIT_URI_OK ? 0 : -EINVAL;
                if (r >= 0) {
                        const CK_TOKEN_INFO *ti = p11_kit_uri_get_token_info(u);
                        size_t n = sizeof ti->label;
                        while (n > 0 && (ti->label[n - 1] == ' ' || ti->label[n - 1] == 0))
                                n--;
                        memcpy(out, ti->label, n);
                        out[n] = 0;
                        r = n > 0 ? 0 : -ENOENT;
                }
                p11_kit_uri_free(u);
        }
        return r;
}

/* In a child: the user the token is made as (with its groups: softhsm for SoftHSM2's token directory), and
 * SOFTHSM2_CONF from [token] softhsm2-conf; then fn's result as the exit status. The parent waits for it. */
static int in_child(Init *in, int (*fn)(Init *in)) {
        int status;
        pid_t pid = fork();

        if (pid < 0)
                return log_error_errno(negative_errno(), "Cannot fork: %m");
        if (pid == 0) {
                const struct passwd *pw = in->user;
                if (pw && (initgroups(pw->pw_name, pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 ||
                           setuid(pw->pw_uid) < 0)) {
                        log_error_errno(negative_errno(), "Cannot become user %s: %m", pw->pw_name);
                        _exit(PROBE_FAILED);
                }
                if (in->config->softhsm2_conf && setenv("SOFTHSM2_CONF", in->config->softhsm2_conf, 1) < 0)
                        _exit(PROBE_FAILED);
                _exit(fn(in));
        }
        if (waitpid(pid, &status, 0) < 0)
                return log_error_errno(negative_errno(), "Cannot wait for the token's process: %m");
        return WIFEXITED(status) ? WEXITSTATUS(status) : PROBE_FAILED;
}

static int probe(Init *in) {
        int r = hsm_token_exists(in->config->module, in->label);
        if (r < 0) {
                log_error_errno(r, "Cannot load the PKCS#11 module %s: %m (%s)", in->config->module, hsm_last_error());
                return PROBE_FAILED;
        }
        return r > 0 ? PROBE_PRESENT : PROBE_ABSENT;
}

static int make_token(Init *in) {
        int r = hsm_token_init(in->config->module, in->label, in->so_pin, in->pin);
        OPENSSL_cleanse(in->pin, sizeof in->pin);
        OPENSSL_cleanse(in->so_pin, sizeof in->so_pin);
        if (r < 0) {
                log_error_errno(r, "Cannot create token '%s': %m (%s)", in->label, hsm_last_error());
                return PROBE_FAILED;
        }
        return 0;
}

/* A new file of mode 0600 holding text, owned by owner (NULL: this process's user); never over an existing one. */
static int write_secret(const char *path, const char *text, const struct passwd *owner) {
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        size_t len = strlen(text);

        if (fd < 0)
                return log_error_errno(negative_errno(), "Cannot create %s: %m", path);
        if (write(fd, text, len) != (ssize_t) len || fsync(fd) < 0 ||
            (owner && fchown(fd, owner->pw_uid, owner->pw_gid) < 0)) {
                int r = log_error_errno(errno ? negative_errno() : -EIO, "Cannot write %s: %m", path);
                (void) unlink(path);
                return r;
        }
        return 0;
}

static bool is_softhsm(const char *module) {
        const char *base = strrchr(module, '/');
        return strstr(base ? base + 1 : module, "softhsm") != NULL;
}

static void print_hsm_steps(const Init *in) {
        printf("keyd init makes tokens in SoftHSM2 only; %s is another module. For a hardware or network HSM:\n"
               "  1. With the vendor's tools, create a token (partition, slot) labelled '%s' as in [token] uri, and\n"
               "     set its user PIN.\n"
               "  2. Write the user PIN to %s, mode 0600, owned by root: keyd.service loads it as the systemd\n"
               "     credential \"pin\" (or use LoadCredentialEncrypted= with systemd-creds encrypt).\n"
               "  3. Install the drop-in keyd-network-hsm.conf (see keyd(8), docs/HSM.md) and name the HSM's\n"
               "     addresses in it.\n"
               "  4. keyd --check-config, then systemctl enable --now keyd.socket keyd.service.\n",
               in->config->module, in->label, in->pin_path);
}

static int init_run(Init *in) {
        bool pin_exists = access(in->pin_path, F_OK) == 0;
        int r;

        r = in_child(in, probe);
        if (r == PROBE_PRESENT && pin_exists) {
                printf("Token '%s' exists and its PIN is in %s: nothing to do.\n", in->label, in->pin_path);
                return 0;
        }
        if (r == PROBE_PRESENT)
                return log_error_errno(-ENOKEY,
                                       "Token '%s' exists, but %s does not: put its user PIN there (mode 0600), or "
                                       "delete the token to make a new one.",
                                       in->label, in->pin_path);
        if (r != PROBE_ABSENT)
                return -EIO;
        if (pin_exists)
                return log_error_errno(-EEXIST,
                                       "%s exists, but there is no token '%s': keyd init writes no PIN over one. Move "
                                       "it away (or create the token with its PIN yourself).",
                                       in->pin_path, in->label);
        if (!is_softhsm(in->config->module)) {
                print_hsm_steps(in);
                return -ENOENT;
        }
        if (access(in->so_pin_path, F_OK) == 0)
                return log_error_errno(-EEXIST, "%s exists: keyd init writes no PIN over one. Move it away.",
                                       in->so_pin_path);

        /* The PINs are on disk before the token exists: a token whose PIN got lost could only be thrown away. The
         * PIN file of [token] pin-file is read by keyd itself, as its user; the credential is read by systemd. */
        r = dev_random_pin(in->pin);
        if (r >= 0)
                r = dev_random_pin(in->so_pin);
        if (r >= 0)
                r = write_secret(in->pin_path, in->pin, in->config->pin_file ? in->user : NULL);
        if (r >= 0) {
                r = write_secret(in->so_pin_path, in->so_pin, NULL);
                if (r < 0)
                        (void) unlink(in->pin_path);
        }
        if (r >= 0 && in_child(in, make_token) != 0) {
                (void) unlink(in->pin_path);
                (void) unlink(in->so_pin_path);
                r = -EIO;
        }
        OPENSSL_cleanse(in->pin, sizeof in->pin);
        OPENSSL_cleanse(in->so_pin, sizeof in->so_pin);
        if (r < 0)
                return r;
        printf("Created token '%s' with %s%s%s.\n"
               "User PIN in %s, SO PIN in %s (both random, mode 0600).\n"
               "Next: edit the issuer of your keyrings, keyd --check-config, then\n"
               "  systemctl enable --now keyd.socket keyd-public.socket keyd.service\n",
               in->label, in->config->module, in->user ? " as user " : "", in->user ? in->user->pw_name : "",
               in->pin_path, in->so_pin_path);
        return 0;
}

int init_token(const char *config_path, const char *user) {
        _cleanup_(config_done) Config c = {};
        _cleanup_free_ char *dir = NULL, *pin_path = NULL, *so_pin_path = NULL;
        Init in = { .config = &c };
        char **errors = NULL;
        int r;

        if (config_init(&c) < 0)
                return log_oom();
        r = config_load(config_path, &c, &errors);
        for (char **e = errors; e && *e; e++) {
                fprintf(stderr, "%s\n", *e);
                free(*e);
        }
        free(errors);
        if (r == -ENOMEM)
                return log_oom();
        if (r < 0) {
                if (r != -EINVAL)
                        log_error_errno(r, "Cannot read %s: %m", config_path);
                return -EINVAL;
        }
        if (uri_label(c.uri, in.label) < 0)
                return log_error_errno(-EINVAL, "%s: [token] uri %s names no token label (pkcs11:token=LABEL)",
                                       config_path, c.uri);

        /* Made as the user keyd runs as, when root runs this; else as whoever does. */
        if (geteuid() == 0) {
                errno = 0;
                in.user = getpwnam(user ?: "keyd");
                if (!in.user)
                        return log_error_errno(-ESRCH,
                                               "No user %s: create it first (systemd-sysusers), or name another with "
                                               "--user.",
                                               user ?: "keyd");
        } else if (user)
                return log_error_errno(-EPERM, "--user takes root: the token is made as you.");

        /* The PIN where keyd reads it: [token] pin-file, else the credential keyd.service loads, next to keyd.conf. */
        if (!(dir = strdup(config_path)))
                return log_oom();
        if (asprintf(&pin_path, "%s/pin", dirname(dir)) < 0) {
                pin_path = NULL;
                return log_oom();
        }
        in.pin_path = c.pin_file ?: pin_path;
        free(dir);
        if (!(dir = strdup(in.pin_path)) || asprintf(&so_pin_path, "%s/so-pin", dirname(dir)) < 0) {
                so_pin_path = NULL;
                return log_oom();
        }
        in.so_pin_path = so_pin_path;
        return init_run(&in);
}
