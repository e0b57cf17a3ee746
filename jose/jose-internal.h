/* SPDX-License-Identifier: MIT */
#pragma once

/* Private to jose/ and its tests: cleanup helpers for the OpenSSL types only jose/ uses, and the constants that
 * jws.c and verify.c share. */
#include <openssl/ecdsa.h>
#include <openssl/param_build.h>
#include <stdint.h>

#include "common/alg.h"
#include "common/crypto-util.h"
#include "jose/jws.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(OSSL_PARAM_BLD *, OSSL_PARAM_BLD_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(OSSL_PARAM *, OSSL_PARAM_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(ECDSA_SIG *, ECDSA_SIG_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(JoseJws *, jose_jws_free);

/* The largest signature keyd makes or accepts: RSA 4096 (512 bytes). */
#define JOSE_SIGNATURE_MAX 512
/* RSA moduli keyd accepts, in bits. */
#define JOSE_RSA_BITS_MIN 2048
#define JOSE_RSA_BITS_MAX 4096

/* The order n of the curve of an EC alg, big-endian, keyd_alg_ec_size(alg) bytes; NULL for other algs. */
const uint8_t *jose_ec_order(KeydAlg alg);
