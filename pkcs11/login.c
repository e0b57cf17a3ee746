/* SPDX-License-Identifier: MIT */
/* Opening a token: PIN source, login, and the Hsm object's life. */
#include <fcntl.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <sys/stat.h>

#include "common/log.h"
#include "pkcs11/hsm-internal.h"

#define PIN_MAX 256

int hsm_pin_path(const char *pin_file, const char *uri_pin_source, char **ret) {
        const char *creds = getenv("CREDENTIALS_DIRECTORY");
        char *p = NULL;

        if (creds && *creds) {
                if (asprintf(&p, "%s/pin", creds) < 0)
                        return -ENOMEM;
                if (access(p, F_OK) == 0) {
                        *ret = p;
                        return 0;
                }
                free(p);
                p = NULL;
        }
        if (pin_file && *pin_file)
                p = strdup(pin_file);
        else if (uri_pin_source && *uri_pin_source) {
                const char *path = startswith(uri_pin_source, "file:") ?: uri_pin_source;
                if (path[0] != '/')
                        return -EINVAL; /* only local files: no other pin-source scheme is supported */
                p = strdup(path);
        } else
                return -ENOKEY;
        if (!p)
                return -ENOMEM;
        *ret = p;
        return 0;
}

/* Read at most PIN_MAX bytes; strip one trailing newline. The caller wipes buf. */
static int pin_read(const char *path, char buf[PIN_MAX + 2], size_t *ret_len) {
        _cleanup_close_ int fd = -EBADF;
        size_t n = 0;
        ssize_t k;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return negative_errno();
        while (n < PIN_MAX + 1 && (k = read(fd, buf + n, PIN_MAX + 1 - n)) != 0) {
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                n += (size_t) k;
        }
        if (n > PIN_MAX)
                return -E2BIG;
        if (n > 0 && buf[n - 1] == '\n')
                n--;
        if (n > 0 && buf[n - 1] == '\r')
                n--;
        if (n == 0)
                return -EINVAL;
        *ret_len = n;
        return 0;
}

int hsm_login(Hsm *h) {
        char pin[PIN_MAX + 2];
        size_t len = 0;
        CK_RV rv;
        int r;

        r = pin_read(h->pin_path, pin, &len);
        if (r < 0) {
                OPENSSL_cleanse(pin, sizeof pin);
                return r;
        }
        rv = h->f->C_Login(h->anchor, CKU_USER, (CK_UTF8CHAR *) pin, len);
        OPENSSL_cleanse(pin, sizeof pin);
        if (rv == CKR_USER_ALREADY_LOGGED_IN)
                rv = CKR_OK;
        return hsm_fail(rv);
}

const char *hsm_token_label(Hsm *h) {
        return h->label;
}

int hsm_open(const HsmConfig *cfg, Hsm **ret) {
        _cleanup_free_ char *uri_pin_source = NULL;
        CK_TOKEN_INFO ti;
        Hsm *h;
        CK_RV rv;
        int r;

        if (!cfg || !cfg->module || !cfg->uri)
                return -EINVAL;
        h = calloc(1, sizeof *h);
        if (!h)
                return -ENOMEM;
        h->anchor = CK_INVALID_HANDLE;
        pthread_mutex_init(&h->admin_lock, NULL);
        pthread_mutex_init(&h->index_lock, NULL);
        pthread_rwlock_init(&h->module_lock, NULL);
        pthread_mutex_init(&h->health_lock, NULL);
        pthread_cond_init(&h->health_cond, NULL);
        hsm_signer_init(h);
        h->max_sessions = cfg->sessions ?: 64;
        h->session_wait_ms = cfg->session_wait_ms ?: 5000;
        h->sign_timeout_ms = cfg->sign_timeout_ms ?: 5000;
        h->idle_ms = cfg->idle_ms ?: 30000;
        if (cfg->sign_in == HSM_SIGN_IN_AUTO) {
                const char *base = strrchr(cfg->module, '/');
                h->sign_in_caller = streq(base ? base + 1 : cfg->module, "libsofthsm2.so");
        } else
                h->sign_in_caller = cfg->sign_in == HSM_SIGN_IN_CALLER;
        h->uri = strdup(cfg->uri);
        if (!h->uri) {
                r = -ENOMEM;
                goto fail;
        }

        r = hsm_module_load(cfg->module, &h->dl, &h->f);
        if (r < 0)
                goto fail;
        r = hsm_find_slot(h->f, cfg->uri, &h->slot, &uri_pin_source);
        if (r < 0)
                goto fail;
        rv = h->f->C_GetTokenInfo(h->slot, &ti);
        if (rv != CKR_OK) {
                r = hsm_fail(rv);
                goto fail;
        }
        hsm_unpad(h->label, ti.label, 32);
        hsm_unpad(h->serial, ti.serialNumber, 16);
        if (ti.flags & CKF_USER_PIN_LOCKED) {
                r = hsm_fail(CKR_PIN_LOCKED);
                goto fail;
        }
        /* The anchor takes one of the token's sessions; CK_EFFECTIVELY_INFINITE (0) and CK_UNAVAILABLE_INFORMATION
         * set no limit. */
        if (ti.ulMaxSessionCount != CK_EFFECTIVELY_INFINITE && ti.ulMaxSessionCount != CK_UNAVAILABLE_INFORMATION &&
            ti.ulMaxSessionCount > 1 && h->max_sessions > ti.ulMaxSessionCount - 1) {
                log_info("token '%s' allows %lu sessions: signing with at most %lu at once", h->label,
                         ti.ulMaxSessionCount, ti.ulMaxSessionCount - 1);
                h->max_sessions = (unsigned) (ti.ulMaxSessionCount - 1);
        }

        r = hsm_pin_path(cfg->pin_file, uri_pin_source, &h->pin_path);
        if (r < 0)
                goto fail;
        rv = h->f->C_OpenSession(h->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h->anchor);
        if (rv != CKR_OK) {
                r = hsm_fail(rv);
                goto fail;
        }
        /* One attempt only: a wrong PIN is reported, never retried, so keyd cannot lock the token. */
        r = hsm_login(h);
        if (r < 0)
                goto fail;
        r = hsm_health_init(h);
        if (r < 0)
                goto fail;
        *ret = h;
        return 0;
fail:
        hsm_close(h);
        return r;
}

Hsm *hsm_close(Hsm *h) {
        if (!h)
                return NULL;
        bool recovery_stopped = hsm_health_stop(h);
        if (!hsm_signer_stop(h) || !recovery_stopped) {
                /* A call is stuck in a hung token: finalizing the module or freeing what the call uses could crash
                 * keyd on its way out. Leave both to the exit. */
                log_warning("token '%s' is hung: leaving it without C_Finalize", h->label);
                return NULL;
        }
        if (h->f && h->anchor != CK_INVALID_HANDLE) {
                (void) h->f->C_Logout(h->anchor);
                (void) h->f->C_CloseSession(h->anchor);
        }
        hsm_module_unload(h->dl, h->f);
        pthread_mutex_destroy(&h->admin_lock);
        pthread_mutex_destroy(&h->index_lock);
        pthread_mutex_destroy(&h->pool_lock);
        pthread_cond_destroy(&h->work_cond);
        pthread_cond_destroy(&h->caller_cond);
        pthread_rwlock_destroy(&h->module_lock);
        pthread_mutex_destroy(&h->health_lock);
        pthread_cond_destroy(&h->health_cond);
        free(h->pin_path);
        free(h->uri);
        free(h->index_prefix);
        free(h->index);
        free(h);
        return NULL;
}
