/* SPDX-License-Identifier: MIT */
/* keyd: the composition root. The only place that exits. */
#include <getopt.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "common/log.h"
#include "keyd/config.h"
#include "keyd/daemon.h"
#include "keyd/dev.h"
#include "keyd/reconcile-cmd.h"

#define DEFAULT_CONFIG "/etc/keyd/keyd.conf"

static const char *arg_config = DEFAULT_CONFIG;
static const char *arg_dev_dir;
static const char *arg_module = KEYD_DEFAULT_MODULE;
static bool arg_dev, arg_check, arg_reconcile, arg_dry_run, arg_json;

static void help(void) {
        printf("Usage: keyd [OPTIONS]\n"
               "       keyd [--config FILE] reconcile --dry-run [--json]\n"
               "\n"
               "Key-management and rotation daemon: keeps signing keys in a PKCS#11 token, rotates them,\n"
               "publishes a JWKS, and signs and verifies tokens for local callers.\n"
               "\n"
               "  -c, --config FILE   Configuration file (default " DEFAULT_CONFIG ")\n"
               "      --check-config  Check the configuration, print every error with its line, and exit\n"
               "      --dev [DIR]     Run on the embedded default under DIR (default ./" DEV_DEFAULT_DIR "): a SoftHSM2\n"
               "                      token with a random PIN, a SQLite database and DIR/keyd.conf, made if missing\n"
               "      --module PATH   PKCS#11 module for --dev (default " KEYD_DEFAULT_MODULE ")\n"
               "      --dry-run       With reconcile: show what reconciling the token with the database would\n"
               "                      destroy, demote and keep, and change nothing (keyd may keep running)\n"
               "      --json          With reconcile: print JSON\n"
               "  -v, --verbose       Log at debug level\n"
               "  -h, --help          Show this help\n"
               "      --version       Show the version\n"
               "\n"
               "Signals: TERM and INT stop keyd; HUP re-reads the keyring policies.\n"
               "See keyd(8) and keyd.conf(5).\n");
}

static int parse_argv(int argc, char **argv) {
        enum { ARG_VERSION = 0x100, ARG_DEV, ARG_MODULE, ARG_CHECK, ARG_DRY_RUN, ARG_JSON };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                { "verbose", no_argument, NULL, 'v' },
                { "config", required_argument, NULL, 'c' },
                { "check-config", no_argument, NULL, ARG_CHECK },
                { "dev", no_argument, NULL, ARG_DEV },
                { "module", required_argument, NULL, ARG_MODULE },
                { "dry-run", no_argument, NULL, ARG_DRY_RUN },
                { "json", no_argument, NULL, ARG_JSON },
                {},
        };
        int c;

        while ((c = getopt_long(argc, argv, "hvc:", options, NULL)) >= 0)
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
                case 'c':
                        arg_config = optarg;
                        break;
                case ARG_CHECK:
                        arg_check = true;
                        break;
                case ARG_DEV:
                        arg_dev = true;
                        break;
                case ARG_MODULE:
                        arg_module = optarg;
                        break;
                case ARG_DRY_RUN:
                        arg_dry_run = true;
                        break;
                case ARG_JSON:
                        arg_json = true;
                        break;
                default:
                        return -EINVAL;
                }

        if (!arg_dev && optind < argc && streq(argv[optind], "reconcile")) {
                arg_reconcile = true;
                optind++;
                if (!arg_dry_run) {
                        log_error("keyd reconciles at every start; 'keyd reconcile' only shows what that would do, "
                                  "with --dry-run.");
                        return -EINVAL;
                }
        } else if (arg_dry_run || arg_json) {
                log_error("--dry-run and --json go with 'keyd reconcile' (see keyd --help)");
                return -EINVAL;
        }
        if (arg_dev && optind < argc)
                arg_dev_dir = argv[optind++];
        if (optind < argc) {
                log_error("Unexpected argument: %s (see keyd --help)", argv[optind]);
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

static int check_config(const char *path) {
        Config c;
        char **errors = NULL;
        int r;

        if (config_init(&c) < 0)
                return log_oom();
        r = config_load(path, &c, &errors);
        for (char **e = errors; e && *e; e++) {
                fprintf(stderr, "%s\n", *e);
                free(*e);
        }
        free(errors);
        if (r == 0)
                printf("%s: OK, %zu keyring(s)\n", path, c.n_keyrings);
        else if (r != -EINVAL)
                log_error_errno(r, "Cannot read %s: %m", path);
        config_done(&c);
        return r;
}

static int run(int argc, char **argv) {
        DevEnv env = { 0 };
        int r;

        r = parse_argv(argc, argv);
        if (r <= 0)
                return r;
        if (arg_check && !arg_dev)
                return check_config(arg_config);
        r = harden_process();
        if (r < 0)
                return r;
        if (arg_reconcile)
                return reconcile_dry_run(arg_config, arg_json);

        if (arg_dev) {
                r = dev_prepare(arg_dev_dir ?: DEV_DEFAULT_DIR, arg_module, &env);
                if (r < 0)
                        return r;
                arg_config = env.config;
                if (arg_check) {
                        r = check_config(arg_config);
                        dev_env_done(&env);
                        return r;
                }
        }
        DaemonOptions o = { .config_path = arg_config, .dev = arg_dev };
        r = daemon_run(&o);
        dev_env_done(&env);
        return r;
}

int main(int argc, char **argv) {
        int r = run(argc, argv);
        return r < 0 ? (r == -EINVAL ? 2 : 1) : 0;
}
