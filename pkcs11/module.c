/* SPDX-License-Identifier: MIT */
/* Loading a PKCS#11 module, finding a token by RFC 7512 URI, and the one CK_RV → errno mapping. */
#include <dlfcn.h>
#include <p11-kit/uri.h>
#include <string.h>

#include "common/log.h"
#include "pkcs11/hsm-internal.h"

static __thread CK_RV last_rv;

#define RV(x) { x, #x }
static const struct {
        CK_RV rv;
        const char *name;
} rv_names[] = {
        RV(CKR_OK), RV(CKR_CANCEL), RV(CKR_HOST_MEMORY), RV(CKR_SLOT_ID_INVALID), RV(CKR_GENERAL_ERROR),
        RV(CKR_FUNCTION_FAILED), RV(CKR_ARGUMENTS_BAD), RV(CKR_ATTRIBUTE_READ_ONLY), RV(CKR_ATTRIBUTE_SENSITIVE),
        RV(CKR_ATTRIBUTE_TYPE_INVALID), RV(CKR_ATTRIBUTE_VALUE_INVALID), RV(CKR_DATA_INVALID),
        RV(CKR_DATA_LEN_RANGE), RV(CKR_DEVICE_ERROR), RV(CKR_DEVICE_MEMORY), RV(CKR_DEVICE_REMOVED),
        RV(CKR_FUNCTION_CANCELED), RV(CKR_FUNCTION_NOT_SUPPORTED), RV(CKR_KEY_HANDLE_INVALID),
        RV(CKR_KEY_SIZE_RANGE), RV(CKR_KEY_TYPE_INCONSISTENT), RV(CKR_KEY_FUNCTION_NOT_PERMITTED),
        RV(CKR_KEY_UNEXTRACTABLE), RV(CKR_MECHANISM_INVALID), RV(CKR_MECHANISM_PARAM_INVALID),
        RV(CKR_OBJECT_HANDLE_INVALID), RV(CKR_OPERATION_ACTIVE), RV(CKR_OPERATION_NOT_INITIALIZED),
        RV(CKR_PIN_INCORRECT), RV(CKR_PIN_INVALID), RV(CKR_PIN_LEN_RANGE), RV(CKR_PIN_EXPIRED),
        RV(CKR_PIN_LOCKED), RV(CKR_SESSION_CLOSED), RV(CKR_SESSION_COUNT), RV(CKR_SESSION_HANDLE_INVALID),
        RV(CKR_SESSION_READ_ONLY), RV(CKR_SESSION_EXISTS), RV(CKR_SIGNATURE_INVALID), RV(CKR_SIGNATURE_LEN_RANGE),
        RV(CKR_TEMPLATE_INCOMPLETE), RV(CKR_TEMPLATE_INCONSISTENT), RV(CKR_TOKEN_NOT_PRESENT),
        RV(CKR_TOKEN_NOT_RECOGNIZED), RV(CKR_TOKEN_WRITE_PROTECTED), RV(CKR_USER_ALREADY_LOGGED_IN),
        RV(CKR_USER_NOT_LOGGED_IN), RV(CKR_USER_PIN_NOT_INITIALIZED), RV(CKR_USER_TYPE_INVALID),
        RV(CKR_USER_ANOTHER_ALREADY_LOGGED_IN), RV(CKR_USER_TOO_MANY_TYPES), RV(CKR_WRAPPING_KEY_HANDLE_INVALID),
        RV(CKR_DOMAIN_PARAMS_INVALID), RV(CKR_CURVE_NOT_SUPPORTED), RV(CKR_BUFFER_TOO_SMALL),
        RV(CKR_CRYPTOKI_NOT_INITIALIZED), RV(CKR_CRYPTOKI_ALREADY_INITIALIZED), RV(CKR_FUNCTION_REJECTED),
};
#undef RV

const char *hsm_rv_name(unsigned long rv) {
        for (size_t i = 0; i < ELEMENTSOF(rv_names); i++)
                if (rv_names[i].rv == rv)
                        return rv_names[i].name;
        return "CKR_VENDOR_OR_UNKNOWN";
}

int hsm_rv_to_errno(unsigned long rv) {
        switch (rv) {
        case CKR_OK:
                return 0;
        case CKR_HOST_MEMORY:
        case CKR_DEVICE_MEMORY:
                return -ENOMEM;
        case CKR_PIN_INCORRECT:
        case CKR_PIN_INVALID:
        case CKR_PIN_LEN_RANGE:
        case CKR_PIN_EXPIRED:
                return -EACCES;
        case CKR_PIN_LOCKED:
        case CKR_USER_NOT_LOGGED_IN:
        case CKR_USER_PIN_NOT_INITIALIZED:
        case CKR_ATTRIBUTE_SENSITIVE:
        case CKR_KEY_UNEXTRACTABLE:
        case CKR_KEY_FUNCTION_NOT_PERMITTED:
        case CKR_ATTRIBUTE_READ_ONLY:
        case CKR_FUNCTION_REJECTED:
                return -EPERM;
        case CKR_OBJECT_HANDLE_INVALID:
        case CKR_KEY_HANDLE_INVALID:
        case CKR_SLOT_ID_INVALID:
                return -ENOENT;
        case CKR_TOKEN_NOT_PRESENT:
        case CKR_TOKEN_NOT_RECOGNIZED:
        case CKR_DEVICE_REMOVED:
                return -ENODEV;
        case CKR_SESSION_HANDLE_INVALID:
        case CKR_SESSION_CLOSED:
                return -EBADF;
        case CKR_SESSION_COUNT:
                return -EMFILE;
        case CKR_MECHANISM_INVALID:
        case CKR_MECHANISM_PARAM_INVALID:
        case CKR_FUNCTION_NOT_SUPPORTED:
        case CKR_KEY_TYPE_INCONSISTENT:
        case CKR_CURVE_NOT_SUPPORTED:
        case CKR_KEY_SIZE_RANGE:
        case CKR_DOMAIN_PARAMS_INVALID:
                return -EOPNOTSUPP;
        case CKR_ARGUMENTS_BAD:
        case CKR_ATTRIBUTE_TYPE_INVALID:
        case CKR_ATTRIBUTE_VALUE_INVALID:
        case CKR_DATA_INVALID:
        case CKR_DATA_LEN_RANGE:
        case CKR_TEMPLATE_INCOMPLETE:
        case CKR_TEMPLATE_INCONSISTENT:
        case CKR_USER_TYPE_INVALID:
                return -EINVAL;
        case CKR_SIGNATURE_INVALID:
        case CKR_SIGNATURE_LEN_RANGE:
                return -EBADMSG;
        case CKR_BUFFER_TOO_SMALL:
                return -ENOBUFS;
        case CKR_TOKEN_WRITE_PROTECTED:
        case CKR_SESSION_READ_ONLY:
                return -EROFS;
        case CKR_OPERATION_ACTIVE:
        case CKR_SESSION_EXISTS:
        case CKR_USER_ALREADY_LOGGED_IN:
        case CKR_USER_ANOTHER_ALREADY_LOGGED_IN:
                return -EBUSY;
        case CKR_CRYPTOKI_NOT_INITIALIZED:
        case CKR_CRYPTOKI_ALREADY_INITIALIZED:
                return -EALREADY;
        default:
                return -EIO;
        }
}

CK_RV hsm_last_rv(void) {
        return last_rv;
}

void hsm_clear_error(void) {
        last_rv = CKR_OK;
}

int hsm_fail(CK_RV rv) {
        last_rv = rv;
        return hsm_rv_to_errno(rv);
}

const char *hsm_last_error(void) {
        return hsm_rv_name(last_rv);
}

void hsm_unpad(char *dst, const CK_UTF8CHAR *src, size_t n) {
        memcpy(dst, src, n);
        dst[n] = 0;
        while (n > 0 && dst[n - 1] == ' ')
                dst[--n] = 0;
}

int hsm_module_load(const char *path, void **ret_dl, CK_FUNCTION_LIST **ret_f) {
        CK_C_INITIALIZE_ARGS args = { .flags = CKF_OS_LOCKING_OK };
        CK_C_GetFunctionList get;
        CK_FUNCTION_LIST *f = NULL;
        void *dl;
        CK_RV rv;

        if (!path || path[0] != '/')
                return -EINVAL; /* never let dlopen search the library path for a module */
        /* RTLD_NODELETE: a module's code stays mapped after C_Finalize (its atexit handlers and leak reports need
         * it, and loading it again later is cheaper). */
        dl = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
        if (!dl) {
                log_debug("dlopen %s: %s", path, dlerror());
                return -ENOENT;
        }
        get = (CK_C_GetFunctionList) dlsym(dl, "C_GetFunctionList");
        if (!get || get(&f) != CKR_OK || !f) {
                dlclose(dl);
                return -ENOEXEC;
        }
        rv = f->C_Initialize(&args);
        if (rv != CKR_OK) {
                dlclose(dl);
                return hsm_fail(rv);
        }
        *ret_dl = dl;
        *ret_f = f;
        return 0;
}

void hsm_module_unload(void *dl, CK_FUNCTION_LIST *f) {
        if (f)
                (void) f->C_Finalize(NULL);
        if (dl)
                dlclose(dl);
}

int hsm_find_slot(CK_FUNCTION_LIST *f, const char *uri, CK_SLOT_ID *ret_slot, char **ret_pin_source) {
        CK_SLOT_ID slots[64];
        CK_ULONG n = ELEMENTSOF(slots);
        P11KitUri *u;
        int r, found = 0;
        CK_SLOT_ID slot = 0;
        CK_RV rv;

        u = p11_kit_uri_new();
        if (!u)
                return -ENOMEM;
        r = p11_kit_uri_parse(uri, P11_KIT_URI_FOR_TOKEN, u);
        if (r != P11_KIT_URI_OK) {
                log_debug("bad token URI: %s", p11_kit_uri_message(r));
                p11_kit_uri_free(u);
                return -EINVAL;
        }
        if (p11_kit_uri_get_pin_value(u)) {
                /* A PIN written into the configuration is a PIN in a world-readable place: refuse it. */
                p11_kit_uri_free(u);
                return -EINVAL;
        }

        rv = f->C_GetSlotList(CK_TRUE, slots, &n);
        if (rv != CKR_OK) {
                p11_kit_uri_free(u);
                return hsm_fail(rv);
        }
        for (CK_ULONG i = 0; i < n && !found; i++) {
                CK_TOKEN_INFO ti;
                if (f->C_GetTokenInfo(slots[i], &ti) != CKR_OK || !(ti.flags & CKF_TOKEN_INITIALIZED))
                        continue;
                if (p11_kit_uri_match_token_info(u, &ti) == 1) {
                        slot = slots[i];
                        found = 1;
                }
        }
        if (found && ret_pin_source) {
                const char *ps = p11_kit_uri_get_pin_source(u);
                *ret_pin_source = NULL;
                if (ps && !(*ret_pin_source = strdup(ps))) {
                        p11_kit_uri_free(u);
                        return -ENOMEM;
                }
        }
        p11_kit_uri_free(u);
        if (!found)
                return -ENODEV;
        *ret_slot = slot;
        return 0;
}

static int pad_label(const char *label, CK_UTF8CHAR out[32]) {
        size_t n = strlen(label);
        if (n == 0 || n > 32)
                return -EINVAL;
        memset(out, ' ', 32);
        memcpy(out, label, n);
        return 0;
}

int hsm_token_exists(const char *module, const char *label) {
        CK_FUNCTION_LIST *f;
        CK_SLOT_ID slots[64];
        CK_ULONG n = ELEMENTSOF(slots);
        void *dl;
        int r, found = 0;

        r = hsm_module_load(module, &dl, &f);
        if (r < 0)
                return r;
        if (f->C_GetSlotList(CK_TRUE, slots, &n) == CKR_OK)
                for (CK_ULONG i = 0; i < n; i++) {
                        CK_TOKEN_INFO ti;
                        char l[33];
                        if (f->C_GetTokenInfo(slots[i], &ti) != CKR_OK || !(ti.flags & CKF_TOKEN_INITIALIZED))
                                continue;
                        hsm_unpad(l, ti.label, 32);
                        if (streq(l, label))
                                found = 1;
                }
        hsm_module_unload(dl, f);
        return found;
}

int hsm_token_init(const char *module, const char *label, const char *so_pin, const char *user_pin) {
        CK_FUNCTION_LIST *f;
        CK_SLOT_ID slots[64];
        CK_ULONG n = ELEMENTSOF(slots);
        CK_UTF8CHAR padded[32];
        CK_SESSION_HANDLE s;
        CK_RV rv = CKR_TOKEN_NOT_PRESENT;
        void *dl;
        int r;

        r = pad_label(label, padded);
        if (r < 0)
                return r;
        r = hsm_module_load(module, &dl, &f);
        if (r < 0)
                return r;
        if (f->C_GetSlotList(CK_TRUE, slots, &n) != CKR_OK)
                n = 0;
        for (CK_ULONG i = 0; i < n; i++) {
                CK_TOKEN_INFO ti;
                if (f->C_GetTokenInfo(slots[i], &ti) != CKR_OK || (ti.flags & CKF_TOKEN_INITIALIZED))
                        continue;
                rv = f->C_InitToken(slots[i], (CK_UTF8CHAR *) so_pin, strlen(so_pin), padded);
                if (rv != CKR_OK)
                        break;
                /* SoftHSM2 moves a freshly initialised token to a new slot id: find it again by label. */
                CK_SLOT_ID slot = slots[i];
                CK_ULONG m = ELEMENTSOF(slots);
                if (f->C_GetSlotList(CK_TRUE, slots, &m) == CKR_OK)
                        for (CK_ULONG j = 0; j < m; j++) {
                                char l[33];
                                if (f->C_GetTokenInfo(slots[j], &ti) != CKR_OK ||
                                    !(ti.flags & CKF_TOKEN_INITIALIZED))
                                        continue;
                                hsm_unpad(l, ti.label, 32);
                                if (streq(l, label))
                                        slot = slots[j];
                        }
                rv = f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s);
                if (rv != CKR_OK)
                        break;
                rv = f->C_Login(s, CKU_SO, (CK_UTF8CHAR *) so_pin, strlen(so_pin));
                if (rv == CKR_OK) {
                        rv = f->C_InitPIN(s, (CK_UTF8CHAR *) user_pin, strlen(user_pin));
                        (void) f->C_Logout(s);
                }
                (void) f->C_CloseSession(s);
                break;
        }
        r = hsm_fail(rv);
        hsm_module_unload(dl, f);
        return r;
}
