/* SPDX-License-Identifier: MIT */
/* keyd: the composition root. The only place that exits. */
#include <dlfcn.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <p11-kit/pkcs11.h>
#include <p11-kit/uri.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "common/log.h"
#include "keyd/config.h"
#include "keyd/daemon.h"
#include "keyd/dev.h"
#include "keyd/init-cmd.h"
#include "keyd/reconcile-cmd.h"

#define DEFAULT_CONFIG "/etc/keyd/keyd.conf"

static const char *arg_config = DEFAULT_CONFIG;
static const char *arg_dev_dir;
static const char *arg_module = KEYD_DEFAULT_MODULE;
static const char *arg_user;
static bool arg_dev, arg_check, arg_reconcile, arg_dry_run, arg_json, arg_init;

static void help(void) {
        printf("Usage: keyd [OPTIONS]\n"
               "       keyd [--config FILE] reconcile --dry-run [--json]\n"
               "       keyd [--config FILE] init [--user USER]\n"
               "\n"
               "Key-management and rotation daemon: keeps signing keys in a PKCS#11 token, rotates them,\n"
               "publishes a JWKS, and signs and verifies tokens for local callers.\n"
               "\n"
               "  -c, --config FILE   Configuration file (default " DEFAULT_CONFIG ")\n"
               "      --check-config  Check the configuration, print every error with its line, and exit;\n"
               "                      also check that the PKCS#11 module loads, the PIN file is private and the\n"
               "                      users and groups the file names exist\n"
               "      --dev [DIR]     Run on the embedded default under DIR (default ./" DEV_DEFAULT_DIR "): a SoftHSM2\n"
               "                      token with a random PIN, a SQLite database and DIR/keyd.conf, made if missing\n"
               "      --module PATH   PKCS#11 module for --dev (default " KEYD_DEFAULT_MODULE ")\n"
               "      --dry-run       With reconcile: show what reconciling the token with the database would\n"
               "                      destroy, demote and keep, and change nothing (keyd may keep running)\n"
               "      --json          With reconcile: print JSON\n"
               "      --user USER     With init: make the token as USER (default keyd, when run as root)\n"
               "  -v, --verbose       Log at debug level\n"
               "  -h, --help          Show this help\n"
               "      --version       Show the version\n"
               "\n"
               "init prepares a fresh host: for [token], a SoftHSM2 token with random PINs, the user PIN where\n"
               "keyd reads it (pin-file, else FILE's directory/pin, the credential keyd.service loads), mode 0600;\n"
               "for another module, the steps to take with the vendor's tools.\n"
               "\n"
               "Signals: TERM and INT stop keyd; HUP re-reads keyd.conf: keyrings and their policies, the admin\n"
               "users and groups, and [audit]; the rest takes a restart (keyd(8), SIGNALS).\n"
               "See keyd(8) and keyd.conf(5).\n");
}

static int parse_argv(int argc, char **argv) {
        enum { ARG_VERSION = 0x100, ARG_DEV, ARG_MODULE, ARG_CHECK, ARG_DRY_RUN, ARG_JSON, ARG_USER };
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
                { "user", required_argument, NULL, ARG_USER },
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
                case ARG_USER:
                        arg_user = optarg;
                        break;
                default:
                        return -EINVAL;
                }

        if (!arg_dev && optind < argc && streq(argv[optind], "init")) {
                arg_init = true;
                optind++;
        }
        if (arg_user && !arg_init) {
                log_error("--user goes with 'keyd init' (see keyd --help)");
                return -EINVAL;
        }
        if (arg_init) {
                if (arg_check || arg_dry_run || arg_json) {
                        log_error("'keyd init' takes --config and --user only (see keyd --help)");
                        return -EINVAL;
                }
        } else if (!arg_dev && optind < argc && streq(argv[optind], "reconcile")) {
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

/* A problem --check-config found past the file's own errors, as "FILE:LINE: message" (FILE: when the key is not in
 * the file and its default is at fault); %m prints error. Returns error, so that the caller keeps the first one. */
_printf_(4, 5) static int check_failed(int error, const char *path, unsigned line, const char *fmt, ...) {
        va_list ap;

        if (line > 0)
                fprintf(stderr, "%s:%u: ", path, line);
        else
                fprintf(stderr, "%s: ", path);
        errno = error < 0 ? -error : error;
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        return error;
}

/* The module loads and hands out its function list. Nothing more: C_Initialize would start the module (threads,
 * a network HSM's connection, SoftHSM2's token directory) beside a keyd that may be running. */
static int check_module(const char *path, const Config *c) {
        unsigned line = config_line(c, "token", "module");
        const char *deflt = line > 0 ? "" : " (the default)";
        CK_FUNCTION_LIST *f = NULL;
        CK_C_GetFunctionList get;
        void *dl;
        int r = 0;

        dl = dlopen(c->module, RTLD_NOW | RTLD_LOCAL);
        if (!dl)
                return check_failed(-ENOENT, path, line, "module: cannot load %s%s: %s", c->module, deflt, dlerror());
        get = (CK_C_GetFunctionList) dlsym(dl, "C_GetFunctionList");
        if (!get)
                r = check_failed(-ENOEXEC, path, line, "module: %s%s is not a PKCS#11 module (no C_GetFunctionList)",
                                 c->module, deflt);
        else if (get(&f) != CKR_OK || !f)
                r = check_failed(-ENOEXEC, path, line, "module: C_GetFunctionList of %s%s failed", c->module, deflt);
        dlclose(dl);
        return r;
}

static bool path_under(const char *path, const char *dir) {
        const char *rest = dir && *dir ? startswith(path, dir) : NULL;
        return rest && (*rest == '/' || (*rest == 0 && dir[strlen(dir) - 1] == '/'));
}

/* A PIN file keyd reads: a regular file of its own name (not a symbolic link, which whoever may change it can point
 * elsewhere), readable by its owner alone. systemd's credentials are its business: their directory is private. */
static int check_pin_file(const char *path, unsigned line, const char *key, const char *pin) {
        struct stat st;

        if (path_under(pin, getenv("CREDENTIALS_DIRECTORY")))
                return 0;
        if (lstat(pin, &st) < 0)
                return check_failed(negative_errno(), path, line, "%s: cannot use the PIN file %s: %m", key, pin);
        if (S_ISLNK(st.st_mode))
                return check_failed(-ELOOP, path, line, "%s: the PIN file %s is a symbolic link (name the file itself)",
                                    key, pin);
        if (!S_ISREG(st.st_mode))
                return check_failed(-EBADFD, path, line, "%s: the PIN file %s is not a regular file", key, pin);
        if (st.st_mode & 07177)
                return check_failed(-EPERM, path, line,
                                    "%s: the PIN file %s has mode %04o (0600 or stricter: chmod 600 %s)", key, pin,
                                    (unsigned) (st.st_mode & 07777), pin);
        return 0;
}

/* The PIN keyd would read, in its order (pkcs11/login.c): the credential "pin", pin-file, the URI's pin-source. */
static int check_pin(const char *path, const Config *c) {
        const char *creds = getenv("CREDENTIALS_DIRECTORY"), *source;
        unsigned uri_line = config_line(c, "token", "uri");
        _cleanup_free_ char *cred = NULL;
        P11KitUri *u;
        int r;

        u = p11_kit_uri_new();
        if (!u)
                return -ENOMEM;
        r = p11_kit_uri_parse(c->uri, P11_KIT_URI_FOR_TOKEN, u);
        if (r != P11_KIT_URI_OK)
                r = check_failed(-EINVAL, path, uri_line, "uri: cannot parse %s: %s", c->uri, p11_kit_uri_message(r));
        else if (creds && *creds && asprintf(&cred, "%s/pin", creds) < 0) {
                cred = NULL;
                r = -ENOMEM;
        } else if (cred && access(cred, F_OK) == 0)
                r = 0;
        else if (c->pin_file)
                r = check_pin_file(path, config_line(c, "token", "pin-file"), "pin-file", c->pin_file);
        else if (!(source = p11_kit_uri_get_pin_source(u)))
                r = check_failed(-ENOKEY, path, 0,
                                 "no PIN: give keyd the systemd credential \"pin\", a [token] pin-file, or a "
                                 "pin-source in the uri");
        else if ((startswith(source, "file:") ?: source)[0] != '/')
                r = check_failed(-EINVAL, path, uri_line, "uri: pin-source %s is not a file (file:/PATH or /PATH)",
                                 source);
        else
                r = check_pin_file(path, uri_line, "uri pin-source", startswith(source, "file:") ?: source);
        p11_kit_uri_free(u);
        return r;
}

static int first_error(int ret, int r) {
        return ret < 0 ? ret : r;
}

static bool lookup_missing(void) {
        /* getpwnam(3): "not found" is a NULL with errno 0 or one of these, depending on the NSS module. */
        return errno == 0 || errno == ENOENT || errno == ESRCH || errno == EBADF || errno == EPERM;
}

/* Every name of a list resolves, as a user or a group. Authorisation compares names (api/authz.c): a name that
 * resolves to nothing never matches anyone, silently. */
static int check_names(const char *path, unsigned line, const char *key, char *const *names, bool groups) {
        const char *what = groups ? "group" : "user";
        int ret = 0;

        for (char *const *n = names; n && *n; n++) {
                const char *hint = (*n)[strspn(*n, "0123456789")] ? "" : " (the list takes names, not ids)";
                int r;

                errno = 0;
                if (groups ? getgrnam(*n) != NULL : getpwnam(*n) != NULL)
                        continue;
                if (lookup_missing())
                        r = check_failed(-ESRCH, path, line, "%s: no %s '%s' on this system%s", key, what, *n, hint);
                else
                        r = check_failed(negative_errno(), path, line, "%s: cannot look up %s '%s': %m", key, what, *n);
                ret = first_error(ret, r);
        }
        return ret;
}

/* What keyd would trip over only once it starts, for a file without errors. The users and groups checked are those
 * the file names: the defaults (root, keyd-admin) come with the package. Returns the first problem's error. */
static int check_environment(const char *path, const Config *c) {
        unsigned users = config_line(c, "api", "admin-users"), groups = config_line(c, "api", "admin-groups");
        int ret;

        ret = check_module(path, c);
        ret = first_error(ret, check_pin(path, c));
        if (users > 0)
                ret = first_error(ret, check_names(path, users, "admin-users", c->admin_users, false));
        if (groups > 0)
                ret = first_error(ret, check_names(path, groups, "admin-groups", c->admin_groups, true));
        for (size_t i = 0; i < c->n_keyrings; i++) {
                const ConfigKeyring *k = &c->keyrings[i];
                ret = first_error(ret, check_names(path, config_keyring_line(k, "sign-users"), "sign-users",
                                                   k->policy.sign_users, false));
                ret = first_error(ret, check_names(path, config_keyring_line(k, "sign-groups"), "sign-groups",
                                                   k->policy.sign_groups, true));
        }
        return ret;
}

/* keyd(8), EXIT STATUS: a file that cannot be read, or has errors, is -EINVAL (2); a problem keyd would meet at start
 * (the module, the PIN file, a user) is its own error (1). */
static int check_config(const char *path) {
        _cleanup_(config_done) Config c = {};
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
        if (r == -ENOMEM)
                return log_oom();
        if (r < 0 && r != -EINVAL) {
                log_error_errno(r, "Cannot read %s: %m", path);
                return -EINVAL;
        }
        if (r < 0)
                return r;
        r = check_environment(path, &c);
        if (r == -ENOMEM)
                return log_oom();
        if (r < 0)
                return r;
        printf("%s: OK, %zu keyring(s)\n", path, c.n_keyrings);
        return 0;
}

/* A configuration that cannot be read is a usage error (2), as one with errors is, and not a failure to start (1):
 * tell it apart before the daemon reads it. */
static int config_readable(const char *path) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        struct stat st;

        if (fd < 0 || fstat(fd, &st) < 0) {
                log_error_errno(negative_errno(), "Cannot read %s: %m", path);
                return -EINVAL;
        }
        if (S_ISDIR(st.st_mode)) {
                log_error_errno(-EISDIR, "Cannot read %s: %m", path);
                return -EINVAL;
        }
        return 0;
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
        if (arg_reconcile) {
                r = config_readable(arg_config);
                return r < 0 ? r : reconcile_dry_run(arg_config, arg_json);
        }
        if (arg_init) {
                r = config_readable(arg_config);
                return r < 0 ? r : init_token(arg_config, arg_user);
        }

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
        } else {
                r = config_readable(arg_config);
                if (r < 0)
                        return r;
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
