/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>

/* Dev mode's embedded default (SPEC §9): everything keyd needs under one directory. */
typedef struct DevEnv {
        char *dir;          /* absolute */
        char *softhsm_conf; /* DIR/softhsm2.conf */
        char *pin_file;     /* DIR/pin, 0600 */
        char *db;           /* DIR/keyd.db */
        char *config;       /* DIR/keyd.conf */
        char *socket;       /* DIR/keyd.sock */
        char *jwks_dir;     /* DIR/jwks */
        bool created_token;
        bool created_config;
} DevEnv;

#define DEV_TOKEN_LABEL "keyd"
#define DEV_DEFAULT_DIR "var"

/* Create what is missing under dir (0700): the SoftHSM2 configuration and token directory, a token labelled "keyd"
 * with a random user PIN (DIR/pin) and SO PIN (DIR/so-pin), both 0600, and DIR/keyd.conf for the dev instance.
 * Sets SOFTHSM2_CONF for this process. Reuses whatever is already there. Logs what it found and made. */
int dev_prepare(const char *dir, const char *module, DevEnv *ret);
void dev_env_done(DevEnv *e);
/* A random PIN: 32 hex digits from 16 random bytes (keyd init's too). 0 or -EIO. */
int dev_random_pin(char out[33]);
