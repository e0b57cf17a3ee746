/* SPDX-License-Identifier: MIT */
#include <fcntl.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fileio.h"
#include "common/hex.h"
#include "common/log.h"
#include "keyd/dev.h"
#include "pkcs11/hsm.h"

/* The paths of DevEnv under DIR (besides dir itself). */
static const struct {
        size_t offset;
        const char *name;
} dev_paths[] = {
        { offsetof(DevEnv, softhsm_conf), "softhsm2.conf" },
        { offsetof(DevEnv, pin_file), "pin" },
        { offsetof(DevEnv, db), "keyd.db" },
        { offsetof(DevEnv, config), "keyd.conf" },
        { offsetof(DevEnv, socket), "keyd.sock" },
        { offsetof(DevEnv, jwks_dir), "jwks" },
};

static char **dev_path(DevEnv *e, size_t i) {
        return (char **) ((uint8_t *) e + dev_paths[i].offset);
}

int dev_random_pin(char out[33]) {
        uint8_t rnd[16];
        if (RAND_bytes(rnd, sizeof rnd) != 1)
                return -EIO;
        hex_encode(rnd, sizeof rnd, out, 33);
        OPENSSL_cleanse(rnd, sizeof rnd);
        return 0;
}

static char *path_join(const char *dir, const char *name) {
        char *p;
        return asprintf(&p, "%s/%s", dir, name) < 0 ? NULL : p;
}

static int ensure_dir(const char *path) {
        struct stat st;
        if (mkdir(path, 0700) < 0 && errno != EEXIST)
                return negative_errno();
        if (stat(path, &st) < 0)
                return negative_errno();
        return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

/* Dev mode trusts nothing it did not create: DIR and every file keyd reads or writes in it must be the caller's own,
 * not writable by group or others, and not a symbolic link (another user could point keyd's writes, or its reads of
 * the PIN and the configuration, elsewhere). A missing file is fine: keyd makes it. */
static int check_trusted(const char *path, bool is_dir) {
        struct stat st;

        if (lstat(path, &st) < 0)
                return errno == ENOENT ? 0 : log_error_errno(negative_errno(), "Cannot check %s: %m", path);
        if (S_ISLNK(st.st_mode))
                return log_error_errno(-EPERM, "Refusing %s: it is a symbolic link (dev mode follows none).", path);
        if (is_dir ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode))
                return log_error_errno(-EPERM, "Refusing %s: not a %s.", path, is_dir ? "directory" : "regular file");
        if (st.st_uid != geteuid())
                return log_error_errno(-EPERM, "Refusing %s: owned by uid %u, not by you (uid %u).", path,
                                       (unsigned) st.st_uid, (unsigned) geteuid());
        if (st.st_mode & (S_IWGRP | S_IWOTH))
                return log_error_errno(-EPERM, "Refusing %s: writable by %s (mode %04o); chmod go-w it.", path,
                                       st.st_mode & S_IWOTH ? "others" : "its group", (unsigned) (st.st_mode & 07777));
        return 0;
}

static int check_dev_dir(const char *abs) {
        static const char *const files[] = { "softhsm2.conf", "pin", "so-pin", "keyd.conf", "keyd.db",
                                             "keyd.db-wal", "keyd.db-shm", "keyd.db.lock" };
        static const char *const dirs[] = { "tokens", "jwks" };
        char path[PATH_MAX + 32];
        int r = check_trusted(abs, true);

        for (size_t i = 0; r >= 0 && i < ELEMENTSOF(files); i++) {
                snprintf(path, sizeof path, "%s/%s", abs, files[i]);
                r = check_trusted(path, false);
        }
        for (size_t i = 0; r >= 0 && i < ELEMENTSOF(dirs); i++) {
                snprintf(path, sizeof path, "%s/%s", abs, dirs[i]);
                r = check_trusted(path, true);
        }
        return r;
}

static int make_token(DevEnv *e, const char *module) {
        char pin[33], so_pin[33];
        _cleanup_free_ char *so_path = path_join(e->dir, "so-pin");
        int r;

        if (!so_path)
                return -ENOMEM;
        r = hsm_token_exists(module, DEV_TOKEN_LABEL);
        if (r < 0)
                return log_error_errno(r, "Cannot load the PKCS#11 module %s: %m", module);
        if (r > 0) {
                if (access(e->pin_file, R_OK) < 0)
                        return log_error_errno(-ENOKEY, "Token '%s' exists but %s is missing: %m",
                                               DEV_TOKEN_LABEL, e->pin_file);
                log_info("dev: found token '%s' in %s/tokens", DEV_TOKEN_LABEL, e->dir);
                return 0;
        }
        r = dev_random_pin(pin);
        if (r >= 0)
                r = dev_random_pin(so_pin);
        if (r >= 0)
                r = hsm_token_init(module, DEV_TOKEN_LABEL, so_pin, pin);
        if (r < 0)
                log_error_errno(r, "Cannot create the dev token: %m (%s)", hsm_last_error());
        if (r >= 0)
                r = write_file_atomic(e->pin_file, pin, strlen(pin), 0600);
        if (r >= 0)
                r = write_file_atomic(so_path, so_pin, strlen(so_pin), 0600);
        OPENSSL_cleanse(pin, sizeof pin);
        OPENSSL_cleanse(so_pin, sizeof so_pin);
        if (r < 0)
                return r;
        e->created_token = true;
        log_info("dev: created token '%s' in %s/tokens (user PIN in %s, mode 0600)", DEV_TOKEN_LABEL, e->dir,
                 e->pin_file);
        return 0;
}

static int make_config(DevEnv *e, const char *module) {
        _cleanup_free_ char *text = NULL;
        int n;

        if (access(e->config, F_OK) == 0) {
                log_info("dev: found %s", e->config);
                return 0;
        }
        n = asprintf(&text,
                     "; keyd dev instance (keyd --dev). Edit freely: keyd reads it at start and on SIGHUP.\n"
                     "[token]\n"
                     "module = %s\n"
                     "uri = pkcs11:token=" DEV_TOKEN_LABEL "\n"
                     "pin-file = %s\n"
                     "softhsm2-conf = %s\n"
                     "\n"
                     "[store]\n"
                     "path = %s\n"
                     "\n"
                     "[api]\n"
                     "socket = %s\n"
                     "\n"
                     "[public]\n"
                     "listen = 127.0.0.1:8080\n"
                     "\n"
                     "[keyring default]\n"
                     "kind = issuer\n"
                     "alg = ES256\n"
                     "issuer = http://127.0.0.1:8080\n"
                     "rotation-period = 10m\n"
                     "prepublish = 2m\n"
                     "token-ttl-max = 5m\n"
                     "default-ttl = 5m\n"
                     "clock-skew = 60s\n"
                     "publish = yes\n"
                     "jwks-file = %s/default.json\n",
                     module, e->pin_file, e->softhsm_conf, e->db, e->socket, e->jwks_dir);
        if (n < 0)
                return -ENOMEM;
        n = write_file_atomic(e->config, text, strlen(text), 0600);
        if (n < 0)
                return log_error_errno(n, "Cannot write %s: %m", e->config);
        e->created_config = true;
        log_info("dev: created %s", e->config);
        return 0;
}

int dev_prepare(const char *dir, const char *module, DevEnv *ret) {
        DevEnv e = { 0 };
        char abs[PATH_MAX];
        _cleanup_free_ char *tokens = NULL, *conf = NULL;
        int r;

        r = ensure_dir(dir);
        if (r < 0)
                return log_error_errno(r, "Cannot create %s: %m", dir);
        if (!realpath(dir, abs))
                return log_error_errno(negative_errno(), "Cannot resolve %s: %m", dir);
        r = check_dev_dir(abs);
        if (r < 0)
                return r;
        e.dir = strdup(abs);
        tokens = path_join(abs, "tokens");
        r = e.dir && tokens ? 0 : -ENOMEM;
        for (size_t i = 0; r >= 0 && i < ELEMENTSOF(dev_paths); i++)
                if (!(*dev_path(&e, i) = path_join(abs, dev_paths[i].name)))
                        r = -ENOMEM;
        if (r < 0) {
                dev_env_done(&e);
                return log_oom();
        }
        r = ensure_dir(tokens);
        if (r >= 0)
                r = ensure_dir(e.jwks_dir);
        if (r < 0) {
                log_error_errno(r, "Cannot create directories under %s: %m", abs);
                goto fail;
        }
        if (access(e.softhsm_conf, F_OK) < 0) {
                if (asprintf(&conf,
                             "# SoftHSM2 configuration of the keyd dev instance\n"
                             "directories.tokendir = %s\n"
                             "objectstore.backend = file\n"
                             "log.level = ERROR\n"
                             "slots.removable = false\n",
                             tokens) < 0) {
                        r = log_oom();
                        goto fail;
                }
                r = write_file_atomic(e.softhsm_conf, conf, strlen(conf), 0600);
                if (r < 0) {
                        log_error_errno(r, "Cannot write %s: %m", e.softhsm_conf);
                        goto fail;
                }
        }
        if (setenv("SOFTHSM2_CONF", e.softhsm_conf, 1) < 0) {
                r = log_oom();
                goto fail;
        }
        r = make_token(&e, module);
        if (r >= 0)
                r = make_config(&e, module);
        if (r < 0)
                goto fail;
        *ret = e;
        return 0;
fail:
        dev_env_done(&e);
        return r;
}

void dev_env_done(DevEnv *e) {
        free(e->dir);
        for (size_t i = 0; i < ELEMENTSOF(dev_paths); i++)
                free(*dev_path(e, i));
        memset(e, 0, sizeof *e);
}
