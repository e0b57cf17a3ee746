/* SPDX-License-Identifier: MIT */
/* The token layer against a real SoftHSM2 token made for each test. */
#include <criterion/criterion.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/rsa.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/stat.h>

#include "common/crypto-util.h"
#include "pkcs11/hsm-internal.h"
#include "tests/helpers/test-token.h"
#include "tests/helpers/test-util.h"

static TestToken tok;

static void setup(void) {
        test_token_setup(&tok);
}
static void teardown(void) {
        test_token_teardown(&tok);
}

TestSuite(pkcs11, .init = setup, .fini = teardown, .timeout = 120);

static const uint8_t ID1[] = { 0x01, 0x02, 0x03, 0x04 };
static const uint8_t ID2[] = { 0x0a, 0x0b };
static const uint8_t ID3[] = { 0xff };

/* Verify a JOSE-form signature with OpenSSL alone (independent of keyd's jose/). */
static int openssl_verify(KeydAlg alg, EVP_PKEY *pkey, const void *msg, size_t len, const uint8_t *sig,
                          size_t sig_len) {
        _cleanup_(EVP_MD_CTX_freep) EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        EVP_PKEY_CTX *pctx = NULL;
        uint8_t *der = NULL;
        const EVP_MD *md = alg == KEYD_ALG_ES384 ? EVP_sha384() : alg == KEYD_ALG_EDDSA ? NULL : EVP_sha256();
        int ok;

        if (EVP_DigestVerifyInit(ctx, &pctx, md, NULL, pkey) != 1)
                return -1;
        if (alg == KEYD_ALG_PS256) {
                EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING);
                EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 32);
                EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256());
        }
        if (keyd_alg_is_ec(alg)) {
                size_t n = sig_len / 2;
                ECDSA_SIG *es = ECDSA_SIG_new();
                ECDSA_SIG_set0(es, BN_bin2bn(sig, (int) n, NULL), BN_bin2bn(sig + n, (int) n, NULL));
                int der_len = i2d_ECDSA_SIG(es, &der);
                ECDSA_SIG_free(es);
                ok = EVP_DigestVerify(ctx, der, (size_t) der_len, msg, len);
                OPENSSL_free(der);
        } else
                ok = EVP_DigestVerify(ctx, sig, sig_len, msg, len);
        return ok;
}

static void roundtrip(KeydAlg alg, unsigned bits) {
        Hsm *h = test_token_open(&tok, 2);
        HsmKey *k = NULL;
        _cleanup_pkey_ EVP_PKEY *pub = NULL;
        uint8_t sig[HSM_SIG_MAX];
        const char msg[] = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhZ2VudC0xIn0";
        int n;

        cr_assert_eq(hsm_generate(h, alg, bits, ID1, sizeof ID1, "keyd:test:01020304", &k), 0, "generate %s: %s",
                     keyd_alg_to_string(alg), hsm_last_error());
        cr_assert_eq(hsm_key_check_protection(k), 0);
        cr_assert_eq(hsm_key_public(k, &pub), 0);
        if (keyd_alg_is_rsa(alg))
                cr_assert_eq(EVP_PKEY_get_bits(pub), (int) bits);
        n = hsm_key_sign(k, msg, strlen(msg), sig, sizeof sig);
        cr_assert_eq(n, (int) hsm_key_signature_size(k), "sign: %d (%s)", n, hsm_last_error());
        cr_assert_eq(openssl_verify(alg, pub, msg, strlen(msg), sig, (size_t) n), 1, "%s signature must verify",
                     keyd_alg_to_string(alg));
        sig[n / 2] ^= 0x01;
        cr_assert_neq(openssl_verify(alg, pub, msg, strlen(msg), sig, (size_t) n), 1, "a flipped bit must fail");
        sig[n / 2] ^= 0x01;
        cr_assert_neq(openssl_verify(alg, pub, "x", 1, sig, (size_t) n), 1, "another message must fail");

        /* The key opens again by id, with the same public key. */
        HsmKey *again = NULL;
        _cleanup_pkey_ EVP_PKEY *pub2 = NULL;
        cr_assert_eq(hsm_key_open(h, alg, ID1, sizeof ID1, &again), 0);
        cr_assert_eq(hsm_key_public(again, &pub2), 0);
        cr_assert_eq(EVP_PKEY_eq(pub, pub2), 1);
        hsm_key_free(again);
        hsm_key_free(k);
        hsm_close(h);
}

Test(pkcs11, es256) { roundtrip(KEYD_ALG_ES256, 0); }
Test(pkcs11, es384) { roundtrip(KEYD_ALG_ES384, 0); }
Test(pkcs11, eddsa) { roundtrip(KEYD_ALG_EDDSA, 0); }
Test(pkcs11, rs256_2048) { roundtrip(KEYD_ALG_RS256, 2048); }
Test(pkcs11, rs256_3072) { roundtrip(KEYD_ALG_RS256, 3072); }
Test(pkcs11, ps256_2048) { roundtrip(KEYD_ALG_PS256, 2048); }
Test(pkcs11, ps256_4096, .timeout = 300) { roundtrip(KEYD_ALG_PS256, 4096); }

Test(pkcs11, rsa_bits_refused) {
        Hsm *h = test_token_open(&tok, 1);
        cr_assert_eq(hsm_generate(h, KEYD_ALG_RS256, 1024, ID1, sizeof ID1, "keyd:t:1", NULL), -EINVAL);
        cr_assert_eq(hsm_generate(h, KEYD_ALG_RS256, 0, ID1, sizeof ID1, "keyd:t:1", NULL), -EINVAL);
        cr_assert_eq(hsm_generate(h, _KEYD_ALG_INVALID, 0, ID1, sizeof ID1, "keyd:t:1", NULL), -EINVAL);
        HsmObject *objs = NULL;
        size_t n = 99;
        cr_assert_eq(hsm_list(h, "keyd:", &objs, &n), 0);
        cr_assert_eq(n, 0, "a refused generation leaves nothing in the token");
        free(objs);
        hsm_close(h);
}

/* A token opened with a pool of n sessions, and an ES256 key generated in it. */
static HsmKey *open_with_es256_key(unsigned n, Hsm **ret) {
        HsmKey *k = NULL;
        *ret = test_token_open(&tok, n);
        cr_assert_eq(hsm_generate(*ret, KEYD_ALG_ES256, 0, ID1, sizeof ID1, "keyd:t:1", &k), 0, "generate: %s",
                     hsm_last_error());
        return k;
}

static void close_with_key(Hsm *h, HsmKey *k) {
        hsm_key_free(k);
        hsm_close(h);
}

Test(pkcs11, es256_2000_signatures_fixed_size, .timeout = 300) {
        Hsm *h;
        HsmKey *k = open_with_es256_key(1, &h);
        _cleanup_pkey_ EVP_PKEY *pub = NULL;
        uint8_t sig[HSM_SIG_MAX];
        char msg[64];
        int leading_zero = 0;

        cr_assert_eq(hsm_key_public(k, &pub), 0);
        for (int i = 0; i < 2000; i++) {
                int len = snprintf(msg, sizeof msg, "message %d", i);
                int n = hsm_key_sign(k, msg, (size_t) len, sig, sizeof sig);
                cr_assert_eq(n, 64, "signature %d is %d bytes", i, n);
                cr_assert_eq(openssl_verify(KEYD_ALG_ES256, pub, msg, (size_t) len, sig, 64), 1, "signature %d", i);
                if (sig[0] == 0 || sig[32] == 0)
                        leading_zero++;
        }
        /* About 1 in 128 has r or s with a leading zero byte; they must be there and still 64 bytes long. */
        cr_assert_gt(leading_zero, 0, "no signature with a leading zero byte in r or s: padding untested");
        close_with_key(h, k);
}

Test(pkcs11, sign_buffer_too_small) {
        Hsm *h;
        HsmKey *k = open_with_es256_key(1, &h);
        uint8_t sig[63];
        cr_assert_eq(hsm_key_sign(k, "x", 1, sig, sizeof sig), -ENOBUFS);
        close_with_key(h, k);
}

/* Generate a deliberately extractable, non-sensitive EC key: the positive control for every probe. */
static CK_OBJECT_HANDLE weak_key(Hsm *h) {
        CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
        CK_MECHANISM mech = { CKM_EC_KEY_PAIR_GEN, NULL, 0 };
        static const CK_BYTE p256[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };
        CK_ATTRIBUTE pub[] = { { CKA_TOKEN, &no, 1 }, { CKA_EC_PARAMS, (void *) p256, sizeof p256 } };
        CK_ATTRIBUTE priv[] = { { CKA_TOKEN, &no, 1 }, { CKA_PRIVATE, &yes, 1 }, { CKA_SENSITIVE, &no, 1 },
                                { CKA_EXTRACTABLE, &yes, 1 }, { CKA_SIGN, &yes, 1 } };
        CK_OBJECT_HANDLE hp, hk;
        cr_assert_eq(h->f->C_GenerateKeyPair(h->anchor, &mech, pub, 2, priv, 5, &hp, &hk), CKR_OK);
        return hk;
}

static CK_OBJECT_HANDLE wrapping_key(Hsm *h) {
        CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
        CK_ULONG len = 32;
        CK_MECHANISM mech = { CKM_AES_KEY_GEN, NULL, 0 };
        CK_ATTRIBUTE t[] = { { CKA_TOKEN, &no, 1 }, { CKA_WRAP, &yes, 1 }, { CKA_VALUE_LEN, &len, sizeof len } };
        CK_OBJECT_HANDLE w;
        cr_assert_eq(h->f->C_GenerateKey(h->anchor, &mech, t, 3, &w), CKR_OK);
        return w;
}

static CK_RV probe_read(Hsm *h, CK_OBJECT_HANDLE k, CK_ATTRIBUTE_TYPE t) {
        uint8_t buf[1024];
        CK_ATTRIBUTE a = { t, buf, sizeof buf };
        return h->f->C_GetAttributeValue(h->anchor, k, &a, 1);
}

static CK_RV probe_wrap(Hsm *h, CK_OBJECT_HANDLE w, CK_OBJECT_HANDLE k) {
        uint8_t buf[4096];
        CK_ULONG n = sizeof buf;
        CK_MECHANISM mech = { CKM_AES_KEY_WRAP_PAD, NULL, 0 };
        return h->f->C_WrapKey(h->anchor, &mech, w, k, buf, &n);
}

static CK_BBOOL probe_bool(Hsm *h, CK_OBJECT_HANDLE k, CK_ATTRIBUTE_TYPE t) {
        CK_BBOOL v = 0xff;
        CK_ATTRIBUTE a = { t, &v, sizeof v };
        cr_assert_eq(h->f->C_GetAttributeValue(h->anchor, k, &a, 1), CKR_OK);
        return v;
}

static void non_extractable(KeydAlg alg, unsigned bits, CK_ATTRIBUTE_TYPE secret) {
        Hsm *h = test_token_open(&tok, 1);
        HsmKey *k = NULL;
        CK_BBOOL yes = CK_TRUE;
        CK_ATTRIBUTE set_extractable = { CKA_EXTRACTABLE, &yes, sizeof yes };

        cr_assert_eq(hsm_generate(h, alg, bits, ID1, sizeof ID1, "keyd:t:01020304", &k), 0);
        CK_OBJECT_HANDLE w = wrapping_key(h), ctl = weak_key(h);

        /* Positive control: each probe succeeds on a key made to be extractable. */
        cr_assert_eq(probe_read(h, ctl, CKA_VALUE), CKR_OK, "control: private value readable");
        cr_assert_eq(probe_wrap(h, w, ctl), CKR_OK, "control: wrappable");
        cr_assert_eq(probe_bool(h, ctl, CKA_NEVER_EXTRACTABLE), CK_FALSE);
        cr_assert_eq(probe_bool(h, ctl, CKA_ALWAYS_SENSITIVE), CK_FALSE);

        /* keyd's key refuses every one. */
        cr_assert_eq(probe_read(h, k->priv, secret), CKR_ATTRIBUTE_SENSITIVE);
        cr_assert_eq(probe_wrap(h, w, k->priv), CKR_KEY_UNEXTRACTABLE);
        cr_assert_neq(h->f->C_SetAttributeValue(h->anchor, k->priv, &set_extractable, 1), CKR_OK,
                      "CKA_EXTRACTABLE must not be settable to true");
        cr_assert_eq(probe_bool(h, k->priv, CKA_EXTRACTABLE), CK_FALSE);
        cr_assert_eq(probe_bool(h, k->priv, CKA_SENSITIVE), CK_TRUE);
        cr_assert_eq(probe_bool(h, k->priv, CKA_NEVER_EXTRACTABLE), CK_TRUE);
        cr_assert_eq(probe_bool(h, k->priv, CKA_ALWAYS_SENSITIVE), CK_TRUE);
        cr_assert_eq(probe_bool(h, k->priv, CKA_LOCAL), CK_TRUE);
        cr_assert_eq(probe_bool(h, k->priv, CKA_TOKEN), CK_TRUE);
        cr_assert_eq(probe_bool(h, k->priv, CKA_PRIVATE), CK_TRUE);
        cr_assert_eq(hsm_key_check_protection(k), 0);
        hsm_key_free(k);
        hsm_close(h);
}

Test(pkcs11, non_extractable_es256) { non_extractable(KEYD_ALG_ES256, 0, CKA_VALUE); }
Test(pkcs11, non_extractable_eddsa) { non_extractable(KEYD_ALG_EDDSA, 0, CKA_VALUE); }
Test(pkcs11, non_extractable_rs256) { non_extractable(KEYD_ALG_RS256, 2048, CKA_PRIVATE_EXPONENT); }

Test(pkcs11, protection_check_refuses_weak_key) {
        Hsm *h = test_token_open(&tok, 1);
        CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
        CK_MECHANISM mech = { CKM_EC_KEY_PAIR_GEN, NULL, 0 };
        static const CK_BYTE p256[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };
        CK_ATTRIBUTE pub[] = { { CKA_TOKEN, &yes, 1 }, { CKA_EC_PARAMS, (void *) p256, sizeof p256 },
                               { CKA_ID, (void *) ID2, sizeof ID2 } };
        CK_ATTRIBUTE priv[] = { { CKA_TOKEN, &yes, 1 }, { CKA_PRIVATE, &yes, 1 }, { CKA_SENSITIVE, &no, 1 },
                                { CKA_EXTRACTABLE, &yes, 1 }, { CKA_SIGN, &yes, 1 },
                                { CKA_ID, (void *) ID2, sizeof ID2 } };
        CK_OBJECT_HANDLE hp, hk;
        HsmKey *k = NULL;
        cr_assert_eq(h->f->C_GenerateKeyPair(h->anchor, &mech, pub, 3, priv, 6, &hp, &hk), CKR_OK);
        cr_assert_eq(hsm_key_open(h, KEYD_ALG_ES256, ID2, sizeof ID2, &k), 0);
        cr_assert_eq(hsm_key_check_protection(k), -EPERM);
        hsm_key_free(k);
        hsm_close(h);
}

Test(pkcs11, wrong_pin_is_clear_and_not_retried) {
        char *bad = test_token_write_file(&tok, "bad-pin", "not-the-pin\n");
        HsmConfig cfg = { .module = tok.module, .uri = tok.uri, .pin_file = bad };
        Hsm *h = NULL;
        /* Each wrong attempt fails at once with the token's own reason, and leaves the token usable. */
        for (int i = 0; i < 3; i++) {
                cr_assert_eq(hsm_open(&cfg, &h), -EACCES);
                cr_assert_null(h);
                cr_assert_str_eq(hsm_last_error(), "CKR_PIN_INCORRECT");
        }
        Hsm *ok = test_token_open(&tok, 1);
        hsm_close(ok);
        free(bad);
}

Test(pkcs11, pin_sources_in_order) {
        char *wrong = test_token_write_file(&tok, "wrong", "wrong");
        _cleanup_free_ char *pin = test_read_file(tok.pin_file, NULL);
        Hsm *h = NULL;

        /* The systemd credential wins over the pin file. */
        char *creds;
        cr_assert(asprintf(&creds, "%s/creds", tok.dir) >= 0);
        cr_assert_eq(mkdir(creds, 0700), 0);
        char *cred_pin;
        cr_assert(asprintf(&cred_pin, "%s/pin", creds) >= 0);
        FILE *f = fopen(cred_pin, "we");
        fputs(pin, f);
        fclose(f);
        setenv("CREDENTIALS_DIRECTORY", creds, 1);
        HsmConfig cfg = { .module = tok.module, .uri = tok.uri, .pin_file = wrong };
        cr_assert_eq(hsm_open(&cfg, &h), 0, "credential must win over a wrong pin file");
        h = hsm_close(h);
        unsetenv("CREDENTIALS_DIRECTORY");
        cr_assert_eq(hsm_open(&cfg, &h), -EACCES, "without the credential the wrong pin file is used");

        /* The URI's pin-source is last. */
        char *uri;
        cr_assert(asprintf(&uri, "pkcs11:token=%s?pin-source=file:%s", TEST_TOKEN_LABEL, tok.pin_file) >= 0);
        HsmConfig cfg2 = { .module = tok.module, .uri = uri };
        cr_assert_eq(hsm_open(&cfg2, &h), 0);
        h = hsm_close(h);
        cfg2.pin_file = wrong;
        cr_assert_eq(hsm_open(&cfg2, &h), -EACCES, "the pin file wins over the URI's pin-source");
        free(uri);

        HsmConfig none = { .module = tok.module, .uri = tok.uri };
        cr_assert_eq(hsm_open(&none, &h), -ENOKEY, "no PIN source at all");
        char *empty = test_token_write_file(&tok, "empty", "\n");
        HsmConfig e = { .module = tok.module, .uri = tok.uri, .pin_file = empty };
        cr_assert_eq(hsm_open(&e, &h), -EINVAL, "an empty PIN file");
        HsmConfig missing = { .module = tok.module, .uri = tok.uri, .pin_file = "/nonexistent/pin" };
        cr_assert_eq(hsm_open(&missing, &h), -ENOENT);
        free(wrong), free(creds), free(cred_pin), free(empty);
}

Test(pkcs11, clear_errors_for_module_token_uri) {
        Hsm *h = NULL;
        HsmConfig c = { .module = "/nonexistent/libnothing.so", .uri = tok.uri, .pin_file = tok.pin_file };
        cr_assert_eq(hsm_open(&c, &h), -ENOENT, "missing module");
        c.module = "libsofthsm2.so";
        cr_assert_eq(hsm_open(&c, &h), -EINVAL, "a relative module path is refused");
        c.module = "/etc/passwd";
        cr_assert_eq(hsm_open(&c, &h), -ENOENT, "not a shared object");
        c.module = tok.module;
        c.uri = "pkcs11:token=no-such-token";
        cr_assert_eq(hsm_open(&c, &h), -ENODEV, "missing token");
        c.uri = "http://example.com/";
        cr_assert_eq(hsm_open(&c, &h), -EINVAL, "not a pkcs11 URI");
        c.uri = "pkcs11:token=" TEST_TOKEN_LABEL "?pin-value=1234";
        cr_assert_eq(hsm_open(&c, &h), -EINVAL, "a PIN inside the URI is refused");
        c.uri = "pkcs11:token=%zz";
        cr_assert_eq(hsm_open(&c, &h), -EINVAL, "bad percent-encoding");
        cr_assert_null(h);
}

Test(pkcs11, list_and_destroy) {
        Hsm *h = test_token_open(&tok, 1);
        HsmObject *objs = NULL;
        size_t n = 0;

        cr_assert_eq(hsm_generate(h, KEYD_ALG_ES256, 0, ID1, sizeof ID1, "keyd:a:01020304", NULL), 0);
        cr_assert_eq(hsm_generate(h, KEYD_ALG_EDDSA, 0, ID2, sizeof ID2, "keyd:b:0a0b", NULL), 0);
        cr_assert_eq(hsm_generate(h, KEYD_ALG_ES256, 0, ID3, sizeof ID3, "other:ff", NULL), 0);
        cr_assert_eq(hsm_list(h, "keyd:", &objs, &n), 0);
        cr_assert_eq(n, 4, "two keyd key pairs: 4 objects, got %zu", n);
        int privs = 0;
        for (size_t i = 0; i < n; i++) {
                cr_assert(strncmp(objs[i].label, "keyd:", 5) == 0);
                privs += objs[i].is_private;
        }
        cr_assert_eq(privs, 2);
        free(objs);

        cr_assert_eq(hsm_destroy(h, ID1, sizeof ID1), 2, "private and public object destroyed");
        cr_assert_eq(hsm_destroy(h, ID1, sizeof ID1), -ENOENT);
        HsmKey *k = NULL;
        cr_assert_eq(hsm_key_open(h, KEYD_ALG_ES256, ID1, sizeof ID1, &k), -ENOENT);
        cr_assert_eq(hsm_key_open(h, KEYD_ALG_ES256, ID2, sizeof ID2, &k), -EMEDIUMTYPE, "Ed25519 is not ES256");
        cr_assert_eq(hsm_list(h, "keyd:", &objs, &n), 0);
        cr_assert_eq(n, 2);
        free(objs);
        cr_assert_eq(hsm_list(h, NULL, &objs, &n), 0);
        cr_assert_eq(n, 4, "no prefix lists every key object");
        free(objs);
        hsm_close(h);
}

Test(pkcs11, session_and_login_recovery) {
        Hsm *h;
        HsmKey *k = open_with_es256_key(1, &h);
        uint8_t sig[HSM_SIG_MAX];
        cr_assert_eq(hsm_key_sign(k, "a", 1, sig, sizeof sig), 64);

        /* Every session closed behind keyd's back: the token forgets the login too. */
        cr_assert_eq(h->f->C_CloseAllSessions(h->slot), CKR_OK);
        cr_assert_eq(hsm_key_sign(k, "c", 1, sig, sizeof sig), 64, "sign after logout: %s", hsm_last_error());

        /* A stale object handle is found again once. */
        __atomic_store_n(&k->priv, 0x7fffffff, __ATOMIC_RELEASE);
        cr_assert_eq(hsm_key_sign(k, "d", 1, sig, sizeof sig), 64, "sign with a stale handle: %s",
                     hsm_last_error());
        close_with_key(h, k);
}

/* The whole application logged out behind keyd's back (a network HSM's login timeout, a failover). */
static void logout(Hsm *h) {
        CK_SESSION_HANDLE s;
        cr_assert_eq(h->f->C_OpenSession(h->slot, CKF_SERIAL_SESSION, NULL, NULL, &s), CKR_OK);
        cr_assert_eq(h->f->C_Logout(s), CKR_OK);
        (void) h->f->C_CloseSession(s);
}

/* A token that forgot the login invalidates the handles of private objects and hides them from a search. Before the
 * fix the signer and the probe took that for a key gone from the token (-ENOENT), and the engine demoted the active
 * key as lost. */
Test(pkcs11, a_lost_login_is_never_a_lost_key) {
        Hsm *h;
        HsmKey *k = open_with_es256_key(2, &h), *k2 = NULL;
        uint8_t sig[HSM_SIG_MAX];

        cr_assert_eq(hsm_key_sign(k, "a", 1, sig, sizeof sig), 64);
        logout(h);
        cr_assert_eq(hsm_key_probe(h, ID1, sizeof ID1), 1, "the key is there: %s", hsm_last_error());
        logout(h);
        cr_assert_eq(hsm_key_sign(k, "b", 1, sig, sizeof sig), 64, "sign after a lost login: %s", hsm_last_error());
        logout(h);
        cr_assert_eq(hsm_key_open(h, KEYD_ALG_ES256, ID1, sizeof ID1, &k2), 0, "open: %s", hsm_last_error());
        cr_assert_eq(hsm_key_sign(k2, "c", 1, sig, sizeof sig), 64);
        hsm_key_free(k2);
        close_with_key(h, k);
}

/* One signer after another on a fast token: the worker that signed waits for the next job, and no other is started
 * for it (before the fix a polling worker did not count as idle, and each signature could start one more). */
Test(pkcs11, one_signer_one_session) {
        Hsm *h;
        HsmKey *k = open_with_es256_key(8, &h);
        uint8_t sig[HSM_SIG_MAX];
        HsmHealth th;

        h->sign_in_caller = false; /* the workers, as for a network HSM */
        for (int i = 0; i < 300; i++)
                cr_assert_eq(hsm_key_sign(k, "x", 1, sig, sizeof sig), 64);
        hsm_health(h, &th);
        cr_assert_eq(th.sessions_busy + th.sessions_idle, 1, "%u sessions for one signer",
                     th.sessions_busy + th.sessions_idle);
        close_with_key(h, k);
}

/* A worker idle long enough gives its session back while the next signer queues its job: with one session allowed,
 * no job ever waits out session-wait for a worker (one that left for good, before, could strand it). */
Test(pkcs11, an_idle_worker_strands_no_signer) {
        Hsm *h;
        HsmKey *k = open_with_es256_key(1, &h);
        uint8_t sig[HSM_SIG_MAX];
        int timed_out = 0;

        h->sign_in_caller = false; /* the workers, as for a network HSM */
        h->idle_ms = 1;
        h->session_wait_ms = 100;
        for (int i = 0; i < 2000; i++)
                timed_out += hsm_key_sign(k, "x", 1, sig, sizeof sig) == -ETIMEDOUT;
        cr_assert_eq(timed_out, 0, "%d signatures waited for a worker that never came", timed_out);
        close_with_key(h, k);
}

struct worker {
        HsmKey *key;
        EVP_PKEY *pub;
        int failures;
};

static void *sign_many(void *arg) {
        struct worker *w = arg;
        uint8_t sig[HSM_SIG_MAX];
        for (int i = 0; i < 200; i++) {
                char msg[32];
                int len = snprintf(msg, sizeof msg, "%p-%d", (void *) w, i);
                int n = hsm_key_sign(w->key, msg, (size_t) len, sig, sizeof sig);
                if (n != 64 || openssl_verify(KEYD_ALG_ES256, w->pub, msg, (size_t) len, sig, 64) != 1)
                        w->failures++;
        }
        return NULL;
}

/* SoftHSM2 signs in the caller's thread: no worker thread is started, four callers share the two sessions allowed
 * (waiting for one to come free), every signature verifies, and a signer never waits out session-wait while the
 * others take turns. The same with the workers, for a network HSM's module. */
static void signers_share(bool in_caller) {
        Hsm *h;
        HsmKey *k = open_with_es256_key(2, &h);
        EVP_PKEY *pub = NULL;
        pthread_t t[4];
        struct worker w[4];
        HsmHealth th;

        cr_assert(h->sign_in_caller, "SoftHSM2 (libsofthsm2.so) signs in the caller's thread by default");
        h->sign_in_caller = in_caller;
        cr_assert_eq(hsm_key_public(k, &pub), 0);
        for (int i = 0; i < 4; i++) {
                w[i] = (struct worker){ k, pub, 0 };
                cr_assert_eq(pthread_create(&t[i], NULL, sign_many, &w[i]), 0);
        }
        for (int i = 0; i < 4; i++) {
                pthread_join(t[i], NULL);
                cr_assert_eq(w[i].failures, 0, "signer %d: %d failures (%s)", i, w[i].failures, hsm_last_error());
        }
        hsm_health(h, &th);
        cr_assert_leq(th.sessions_busy + th.sessions_idle, 2, "at most max-sessions sessions: %u",
                      th.sessions_busy + th.sessions_idle);
        cr_assert_eq(th.sessions_busy, 0);
        cr_assert_eq(h->n_workers, in_caller ? 0 : 2, "%u worker threads", h->n_workers);
        EVP_PKEY_free(pub);
        close_with_key(h, k);
}

Test(pkcs11, signers_share_sessions_in_their_threads) {
        signers_share(true);
}

Test(pkcs11, signers_share_sessions_through_workers) {
        signers_share(false);
}

Test(pkcs11, rv_mapping) {
        cr_assert_eq(hsm_rv_to_errno(CKR_OK), 0);
        cr_assert_eq(hsm_rv_to_errno(CKR_PIN_INCORRECT), -EACCES);
        cr_assert_eq(hsm_rv_to_errno(CKR_PIN_LOCKED), -EPERM);
        cr_assert_eq(hsm_rv_to_errno(CKR_SESSION_HANDLE_INVALID), -EBADF);
        cr_assert_eq(hsm_rv_to_errno(CKR_DEVICE_ERROR), -EIO);
        cr_assert_eq(hsm_rv_to_errno(0x80000001UL), -EIO, "vendor codes are EIO");
        cr_assert_str_eq(hsm_rv_name(CKR_KEY_UNEXTRACTABLE), "CKR_KEY_UNEXTRACTABLE");
        cr_assert_str_eq(hsm_rv_name(0x80000001UL), "CKR_VENDOR_OR_UNKNOWN");
}

Test(pkcs11, token_init_and_exists) {
        cr_assert_eq(hsm_token_exists(tok.module, TEST_TOKEN_LABEL), 1);
        cr_assert_eq(hsm_token_exists(tok.module, "absent"), 0);
        cr_assert_eq(hsm_token_init(tok.module, "second", "so-pin-2", "user-pin-2"), 0);
        cr_assert_eq(hsm_token_exists(tok.module, "second"), 1);
        cr_assert_eq(hsm_token_init(tok.module, "", "a", "b"), -EINVAL);
        cr_assert_eq(hsm_token_init(tok.module, "a-label-that-is-longer-than-32-chars", "a", "b"), -EINVAL);
}
