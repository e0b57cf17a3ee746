/* SPDX-License-Identifier: MIT */
#pragma once

#include <openssl/evp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/alg.h"

/* Keys, signatures and JWS pieces made in the test with OpenSSL (and jose/b64), independently of what is tested. */

/* A new key pair for alg (RSA: 2048 bits). */
EVP_PKEY *test_gen_key(KeydAlg alg);
/* OpenSSL's signature of msg with key for alg: DER for ECDSA when der is true, else JOSE form (R‖S). A new buffer. */
uint8_t *test_sign(EVP_PKEY *key, KeydAlg alg, const void *msg, size_t len, bool der, size_t *ret_len);
/* base64url of n bytes, a new string. */
char *test_b64url(const void *data, size_t n);
/* "B64(header_text).B64(payload)": a JWS signing input with no signature yet, a new string. */
char *test_jws_input(const char *header_text, const char *payload);
/* "input.B64(sig)", a new string. */
char *test_jws_with_signature(const char *input, const void *sig, size_t sig_len);
