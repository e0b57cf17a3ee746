/* SPDX-License-Identifier: MIT */
/* libFuzzer target for the token URI (RFC 7512) and the PIN source: hsm_find_slot() parses the URI with p11-kit,
 * refuses a pin-value, matches it against the slots' token info and returns the pin-source; hsm_pin_path() turns that
 * into the path the PIN is read from. No module is loaded: hsm_find_slot() gets a fake function list whose only two
 * functions (C_GetSlotList, C_GetTokenInfo) answer from the input, and no PIN file is ever opened.
 *
 * Input: the URI, then optionally '\n' and up to four slots of 97 bytes each (token label 32, manufacturer 32,
 * model 16, serial 16, blank padded as PKCS#11 has them; then a flags byte: bit 0 the token is initialised, bit 7 of
 * the first slot makes C_GetSlotList fail). Without slots, three fixed ones are used (an uninitialised token, and
 * "keyd" and "other" by SoftHSM2). Checks hsm_find_slot() against p11-kit directly (the first initialised slot that
 * matches, -EINVAL for a bad URI or a pin-value, -ENODEV for none) and hsm_pin_path()'s rules. Also built as a
 * replay program (replay.c) that runs the committed corpus inside "make check". */
#include <p11-kit/uri.h>
#include <stdint.h>
#include <stdio.h>

#include "common/macro.h"
#include "pkcs11/hsm-internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define SLOT_BYTES 97
#define SLOTS_MAX 4

static CK_TOKEN_INFO tokens[SLOTS_MAX];
static size_t n_tokens;
static bool slot_list_fails;

static CK_RV fake_get_slot_list(CK_BBOOL present, CK_SLOT_ID_PTR list, CK_ULONG_PTR count) {
        (void) present;
        if (slot_list_fails)
                return CKR_DEVICE_ERROR;
        if (!list) {
                *count = n_tokens;
                return CKR_OK;
        }
        if (*count < n_tokens) {
                *count = n_tokens;
                return CKR_BUFFER_TOO_SMALL;
        }
        for (size_t i = 0; i < n_tokens; i++)
                list[i] = 10 + i; /* slot ids are not indexes */
        *count = n_tokens;
        return CKR_OK;
}

static CK_RV fake_get_token_info(CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info) {
        if (slot < 10 || slot >= 10 + n_tokens)
                return CKR_SLOT_ID_INVALID;
        *info = tokens[slot - 10];
        return CKR_OK;
}

static CK_FUNCTION_LIST fake = {
        .version = { 2, 40 },
        .C_GetSlotList = fake_get_slot_list,
        .C_GetTokenInfo = fake_get_token_info,
};

static void pad(CK_UTF8CHAR *dst, size_t n, const char *s) {
        memset(dst, ' ', n);
        memcpy(dst, s, MIN(strlen(s), n));
}

static void fixed_token(CK_TOKEN_INFO *t, const char *label, const char *serial, bool initialised) {
        memset(t, 0, sizeof *t);
        pad(t->label, sizeof t->label, label);
        pad(t->manufacturerID, sizeof t->manufacturerID, "SoftHSM project");
        pad(t->model, sizeof t->model, "SoftHSM v2");
        pad(t->serialNumber, sizeof t->serialNumber, serial);
        t->flags = CKF_RNG | CKF_LOGIN_REQUIRED | CKF_USER_PIN_INITIALIZED | (initialised ? CKF_TOKEN_INITIALIZED : 0);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        (void) argc, (void) argv;
        /* hsm_pin_path() prefers $CREDENTIALS_DIRECTORY/pin: keep to the paths the input gives. */
        unsetenv("CREDENTIALS_DIRECTORY");
        return 0;
}

static void load_tokens(const uint8_t *d, size_t n) {
        n_tokens = 0;
        slot_list_fails = false;
        if (!d) {
                fixed_token(&tokens[n_tokens++], "", "", false);
                fixed_token(&tokens[n_tokens++], "keyd", "0123456789abcdef", true);
                fixed_token(&tokens[n_tokens++], "other", "fedcba9876543210", true);
                return;
        }
        slot_list_fails = n >= SLOT_BYTES && (d[SLOT_BYTES - 1] & 0x80);
        for (; n >= SLOT_BYTES && n_tokens < SLOTS_MAX; d += SLOT_BYTES, n -= SLOT_BYTES) {
                CK_TOKEN_INFO *t = &tokens[n_tokens++];
                memset(t, 0, sizeof *t);
                memcpy(t->label, d, 32);
                memcpy(t->manufacturerID, d + 32, 32);
                memcpy(t->model, d + 64, 16);
                memcpy(t->serialNumber, d + 80, 16);
                t->flags = (d[96] & 1) ? CKF_TOKEN_INITIALIZED : 0;
        }
}

/* What hsm_find_slot() should answer, from p11-kit directly. */
static int expected_slot(const char *uri, CK_SLOT_ID *ret_slot, char **ret_pin_source) {
        P11KitUri *u = p11_kit_uri_new();
        int r = -ENODEV;

        if (!u)
                abort();
        *ret_pin_source = NULL;
        if (p11_kit_uri_parse(uri, P11_KIT_URI_FOR_TOKEN, u) != P11_KIT_URI_OK || p11_kit_uri_get_pin_value(u))
                r = -EINVAL;
        else if (slot_list_fails)
                r = -EIO;
        else
                for (size_t i = 0; i < n_tokens; i++)
                        if ((tokens[i].flags & CKF_TOKEN_INITIALIZED) &&
                            p11_kit_uri_match_token_info(u, &tokens[i]) == 1) {
                                const char *ps = p11_kit_uri_get_pin_source(u);
                                *ret_slot = 10 + i;
                                if (ps && !(*ret_pin_source = strdup(ps)))
                                        abort();
                                r = 0;
                                break;
                        }
        p11_kit_uri_free(u);
        return r;
}

static void check_pin_path(const char *pin_source) {
        static const char pin_file[] = "/etc/keyd/pin";
        char *p = NULL;
        int r;

        /* A configured pin-file wins over the URI's pin-source. */
        if (hsm_pin_path(pin_file, pin_source, &p) != 0 || !streq(p, pin_file))
                abort();
        free(p);
        p = NULL;

        r = hsm_pin_path(NULL, pin_source, &p);
        if (!pin_source || !*pin_source) {
                if (r != -ENOKEY)
                        abort();
                return;
        }
        const char *want = startswith(pin_source, "file:") ?: pin_source;
        if (want[0] != '/') {
                if (r != -EINVAL || p)
                        abort(); /* only local absolute paths */
                return;
        }
        if (r != 0 || !streq(p, want))
                abort();
        free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const uint8_t *nl = memchr(data, '\n', size);
        size_t uri_len = nl ? (size_t) (nl - data) : size;
        char *uri = strndup((const char *) data, uri_len), *pin_source = NULL, *want_pin_source = NULL;
        CK_SLOT_ID slot = 0, want_slot = 0;
        int r, want;

        if (!uri)
                abort();
        load_tokens(nl ? nl + 1 : NULL, nl ? size - uri_len - 1 : 0);
        want = expected_slot(uri, &want_slot, &want_pin_source);
        r = hsm_find_slot(&fake, uri, &slot, &pin_source);
        if (r != want)
                abort();
        if (r == 0) {
                if (slot != want_slot || !streq_ptr(pin_source, want_pin_source))
                        abort();
                check_pin_path(pin_source);
        }
        if (r == -EIO && !streq(hsm_last_error(), "CKR_DEVICE_ERROR"))
                abort();

        /* Labels as keyd shows them: never longer than the field; blank padding removed (a label with a NUL inside,
         * which no token should have, ends at the NUL). */
        for (size_t i = 0; i < n_tokens; i++) {
                char label[33];
                hsm_unpad(label, tokens[i].label, 32);
                size_t n = strlen(label);
                if (n > 32 || (n > 0 && label[n - 1] == ' ' && !memchr(tokens[i].label, 0, 32)))
                        abort();
        }
        free(pin_source);
        free(want_pin_source);
        free(uri);
        return 0;
}
