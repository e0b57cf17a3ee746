/* SPDX-License-Identifier: MIT */
#pragma once

/* Cleanup helpers for the OpenSSL and jansson types every layer uses. */
#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/evp.h>

#include "common/macro.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(EVP_PKEY *, EVP_PKEY_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(EVP_PKEY_CTX *, EVP_PKEY_CTX_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(EVP_MD_CTX *, EVP_MD_CTX_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(BIGNUM *, BN_free);
#define _cleanup_pkey_ _cleanup_(EVP_PKEY_freep)
/* json_decrefp() comes with jansson itself. */
#define _cleanup_json_ _cleanup_(json_decrefp)
