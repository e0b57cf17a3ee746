/* SPDX-License-Identifier: MIT */
#pragma once

/* keyd init (keyd(8)): for the [token] of config_path, a SoftHSM2 token with random user and SO PINs, the user PIN
 * where keyd reads it ([token] pin-file, else the credential file "pin" next to keyd.conf) and the SO PIN beside it
 * as "so-pin", both mode 0600, none written over an existing file; the token made as user (default keyd) when run as
 * root. With another module: the steps for the vendor's tools. Nothing is done twice: a token with its PIN is left
 * alone. 0, -EINVAL (the configuration), or another negative errno (logged). */
int init_token(const char *config_path, const char *user);
