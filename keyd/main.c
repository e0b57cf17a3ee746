/* SPDX-License-Identifier: MIT */
/* keyd: the composition root. The only place that exits. */
#include <getopt.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "common/log.h"
#include "keyd/dev.h"
#include "pkcs11/hsm.h"
#include "store/store.h"

static const char *arg_dev_dir;
static bool arg_dev;
static const char *arg_module = KEYD_DEFAULT_MODULE;

static void help(void) {
        printf("Usage: keyd [OPTIONS]\n"
               "\n"
               "Key-management and rotation daemon: keeps signing keys in a PKCS#11 token, rotates them,\n"
               "publishes a JWKS, and signs and verifies tokens for local callers.\n"
               "\n"
               "  --dev [DIR]        Use the embedded default under DIR (default ./" DEV_DEFAULT_DIR "): a SoftHSM2\n"
               "                     token with a random PIN, a SQLite database, a dev configuration\n"
               "  --module PATH      PKCS#11 module for --dev (default " KEYD_DEFAULT_MODULE ")\n"
               "  -v, --verbose      Log at debug level\n"
               "  -h, --help         Show this help\n"
               "      --version      Show the version\n"
               "\n"
               "See keyd(8) and keyd.conf(5).\n");
}

static int parse_argv(int argc, char **argv) {
        enum { ARG_VERSION = 0x100, ARG_DEV, ARG_MODULE };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                { "verbose", no_argument, NULL, 'v' },
                { "dev", no_argument, NULL, ARG_DEV },
                { "module", required_argument, NULL, ARG_MODULE },
                {},
        };
        int c;

        while ((c = getopt_long(argc, argv, "hv", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("keyd " KEYD_VERSION "\n");
                        return 0;
                case 'v':
                        log_set_max_level(LOG_DEBUG);
                        break;
                case ARG_DEV:
                        arg_dev = true;
                        break;
                case ARG_MODULE:
                        arg_module = optarg;
                        break;
                default:
                        return -EINVAL;
                }

        if (arg_dev && optind < argc)
                arg_dev_dir = argv[optind++];
        if (optind < argc) {
                log_error("Unexpected argument: %s (see keyd --help)", argv[optind]);
                return -EINVAL;
        }
        if (!arg_dev) {
                log_error("Nothing to do: give --dev [DIR] (see keyd --help)");
                return -EINVAL;
        }
        return 1;
}

/* No core dumps and no ptrace by other users: a core of keyd could hold a PIN or session state. */
static int harden_process(void) {
        struct rlimit rl = { 0, 0 };
        if (setrlimit(RLIMIT_CORE, &rl) < 0)
                return log_error_errno(negative_errno(), "Cannot disable core dumps: %m");
        if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
                return log_error_errno(negative_errno(), "Cannot clear the dumpable flag: %m");
        umask(0077);
        return 0;
}

static int dev_report(const DevEnv *e) {
        HsmConfig hc = { .module = arg_module, .uri = "pkcs11:token=" DEV_TOKEN_LABEL, .pin_file = e->pin_file,
                         .sessions = 1 };
        Hsm *h = NULL;
        Store *s = NULL;
        HsmObject *objs = NULL;
        StoreKeyring **rings = NULL;
        size_t n_objs = 0, n_rings = 0;
        int r;

        r = hsm_open(&hc, &h);
        if (r < 0)
                return log_error_errno(r, "Cannot open the dev token: %m (%s)", hsm_last_error());
        r = hsm_list(h, "keyd:", &objs, &n_objs);
        hsm_close(h);
        free(objs);
        if (r < 0)
                return log_error_errno(r, "Cannot list the dev token's objects: %m");

        r = store_open(e->db, 0, &s);
        if (r < 0)
                return log_error_errno(r, "Cannot open the database %s: %m", e->db);
        r = store_keyring_list(s, &rings, &n_rings);
        int version = store_schema_version(s);
        store_keyring_list_free(rings);
        store_close(s);
        if (r < 0)
                return log_error_errno(r, "Cannot read the database %s: %m", e->db);

        log_info("dev: token '%s' logs in; %zu keyd object(s) in it", DEV_TOKEN_LABEL, n_objs);
        log_info("dev: database %s at schema version %d, %zu keyring(s)", e->db, version, n_rings);
        return 0;
}

static int run(int argc, char **argv) {
        DevEnv env = { 0 };
        int r;

        r = parse_argv(argc, argv);
        if (r <= 0)
                return r;
        r = harden_process();
        if (r < 0)
                return r;

        r = dev_prepare(arg_dev_dir ?: DEV_DEFAULT_DIR, arg_module, &env);
        if (r < 0)
                return r;
        r = dev_report(&env);
        if (r >= 0)
                log_info("dev: ready under %s (configuration: %s)", env.dir, env.config);
        dev_env_done(&env);
        return r;
}

int main(int argc, char **argv) {
        int r = run(argc, argv);
        return r < 0 ? (r == -EINVAL ? 2 : 1) : 0;
}
