/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdint.h>

#include "common/time-util.h"
#include "rotation/policy.h"

/* keyd.conf (INI, read with libinih; SPEC §2 names). Every value has a parser in one table, Section.Key → parser +
 * offsetof(field); [keyring NAME] sections fill a Policy through policy_set(). */

/* Where a key was last set in the file, for messages that name its line. */
typedef struct ConfigKeyLine {
        char *key;
        unsigned line;
} ConfigKeyLine;

typedef struct ConfigKeyring {
        char *name;        /* [keyring NAME]: 1-64 of [A-Za-z0-9._-], not starting with '.' or '-' */
        RingKind kind;     /* kind = issuer | agent (default issuer) */
        int64_t owner_uid; /* owner-uid = N (agent keyrings), else -1 */
        Policy policy;
        unsigned line;     /* where the section starts, for messages */
        ConfigKeyLine *key_lines; /* every key of the section (config_keyring_line()) */
        size_t n_key_lines;
} ConfigKeyring;

#define CONFIG_FIXED_KEYS_MAX 64 /* keys of [token], [store], [api], [public], [metrics] and [audit], at most */

typedef struct Config {
        /* [token] */
        char *module;        /* module = PATH (default: the build's SoftHSM2 module) */
        char *uri;           /* uri = pkcs11:... (required) */
        char *pin_file;      /* pin-file = PATH */
        char *softhsm2_conf; /* softhsm2-conf = PATH: exported as SOFTHSM2_CONF before the module loads */
        unsigned reconcile_max_destroy; /* reconcile-max-destroy = N (default 8): past it, reconcile destroys none */
        usec_t session_wait; /* session-wait = DURATION, 1s..600s (default 5s): a signer's longest wait for a session */
        unsigned max_sessions; /* max-sessions = N, 1..1024 (default 64): signing sessions open at once, at most */
        usec_t sign_timeout;   /* sign-timeout = DURATION, 1s..600s (default 5s): a signer's longest wait for the token */
        unsigned sign_in;      /* sign-in = auto | caller | workers (HsmSignIn; default auto) */
        /* [store] */
        char *store_path;    /* path = PATH (default /var/lib/keyd/keyd.db) */
        /* [api] */
        char *socket;        /* socket = PATH (default /run/keyd/keyd.sock) */
        unsigned workers;    /* workers = N, 0..256: accepted and unused (signing concurrency is max-sessions) */
        char **admin_users;  /* admin-users = root alice */
        char **admin_groups; /* admin-groups = keyd-admin */
        unsigned max_connections;         /* max-connections = N, 1..65536 (default 256) */
        unsigned max_connections_per_uid; /* max-connections-per-uid = N (default 32) */
        usec_t idle_timeout;              /* idle-timeout = DURATION (default 30s) */
        /* [public] */
        char *public_listen; /* listen = HOST:PORT (optional): IPv4 or [IPv6] literal and a port */
        /* [metrics] */
        char *metrics_listen; /* listen = HOST:PORT (optional): GET /metrics alone, for Prometheus */
        /* [audit] */
        usec_t checkpoint_interval; /* checkpoint-interval = DURATION (default 1h) */
        char *anchor_file;          /* anchor-file = PATH (optional): every checkpoint appended as a JSON line */

        ConfigKeyring *keyrings;
        size_t n_keyrings;

        unsigned key_lines[CONFIG_FIXED_KEYS_MAX]; /* of the fixed sections' keys: config_line() */
} Config;

/* Defaults for every field, no keyrings. Returns 0, or -ENOMEM (config_done() is safe either way). */
int config_init(Config *c);
void config_done(Config *c);

/* Parse path into *c (which config_init() prepared). Every error is collected as "PATH:LINE: message" into a new
 * NULL-terminated list *ret_errors (NULL when there are none), and the whole file is read so that all of them are
 * reported at once: unknown section, unknown key (both with the nearest known name, when one is close: "did you mean
 * 'rotation-period'?"), a key outside any section, a bad value (duration, alg, number,
 * boolean, name), a duplicate keyring, a policy refused by policy_validate() (reported at the section's line),
 * a missing [token] uri, a syntax error. Returns 0, -EINVAL if there were errors, or -errno if the file could not
 * be read. */
int config_load(const char *path, Config *c, char ***ret_errors);

/* The line where key of the fixed section (token, store, api, public, metrics, audit) was last set, or 0 when the file did not
 * set it (its value is the default). */
unsigned config_line(const Config *c, const char *section, const char *key);
/* The same for a key of a [keyring NAME] section (kind, owner-uid and the policy's keys). */
unsigned config_keyring_line(const ConfigKeyring *k, const char *key);

/* The names of the keyrings old has and fresh has not (a reload that dropped a [keyring NAME] section), as a new
 * NULL-terminated list, NULL when there are none. 0 or -ENOMEM. */
int config_removed_keyrings(const Config *old, const Config *fresh, char ***ret);
