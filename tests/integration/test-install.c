/* SPDX-License-Identifier: MIT */
/* A fresh host as an operator meets it: make install into a DESTDIR (the example /etc/keyd/keyd.conf, never over
 * one; the bash completion), keyd init making a SoftHSM2 token and its PIN files as the user keyd runs as, the real
 * keyd starting on what init made, and the completion offering keydctl's commands and options. Run as root. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/macro.h"
#include "tests/helpers/test-api.h"
#include "tests/helpers/test-daemon.h"
#include "tests/helpers/test-util.h"

/* Run a shell command: its exit status (-1 if it did not exit), its output (stdout and stderr) as a new string. */
static int sh(char **ret_out, const char *fmt, ...) _printf_(2, 3);
static int sh(char **ret_out, const char *fmt, ...) {
        _cleanup_free_ char *cmd = NULL;
        va_list ap;
        int status;

        va_start(ap, fmt);
        cr_assert(vasprintf(&cmd, fmt, ap) >= 0);
        va_end(ap);
        char *out = test_run(cmd, &status);
        if (ret_out)
                *ret_out = out;
        else
                free(out);
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static char *path_in(const char *dir, const char *rel) {
        char *p;
        cr_assert(asprintf(&p, "%s/%s", dir, rel) > 0);
        return p;
}

static void expect_mode(const char *path, mode_t mode) {
        struct stat st;
        cr_assert_eq(stat(path, &st), 0, "%s: %m", path);
        cr_assert_eq(st.st_mode & 07777, mode, "%s has mode %04o", path, (unsigned) (st.st_mode & 07777));
}

/* make install into a DESTDIR: the example keyd.conf goes to SYSCONFDIR/keyd/keyd.conf when there is none, and
 * stays out of the way of one that exists; the unit names the installed paths and may start without SoftHSM2. "-o all":
 * the build under test is installed as it is, never relinked while the other tests run its binaries. */
Test(install, destdir, .timeout = 300) {
        _cleanup_free_ char *root = test_mkdtemp(), *conf = path_in(root, "etc/keyd/keyd.conf"),
                            *example = test_path("systemd/keyd.conf.example");
        char *out = NULL, *text = NULL, *want = NULL;
        int r = sh(&out, "make -s -o all -C %s BUILD=%s DESTDIR=%s PREFIX=/usr install 2>&1", test_srcdir(),
                   KEYD_TEST_BUILDDIR, root);
        cr_assert_eq(r, 0, "make install:\n%s", out);
        free(out);

        static const char *const files[] = { "usr/sbin/keyd", "usr/bin/keydctl", "usr/share/man/man1/keydctl.1",
                                             "usr/share/man/man8/keyd.8", "usr/lib/systemd/system/keyd.service",
                                             "usr/lib/systemd/system/keyd.socket", "usr/share/keyd/keyd.conf.example",
                                             "usr/share/bash-completion/completions/keydctl" };
        for (size_t i = 0; i < ELEMENTSOF(files); i++) {
                _cleanup_free_ char *p = path_in(root, files[i]);
                cr_assert_eq(access(p, F_OK), 0, "make install did not install %s", files[i]);
        }
        text = test_read_file(conf, NULL);
        want = test_read_file(example, NULL);
        cr_assert_str_eq(text, want, "the example is /etc/keyd/keyd.conf");
        free(want);
        expect_mode(conf, 0644); /* keyd (not root) reads it, through /etc/keyd (root:keyd 0750) */
        free(text);
        _cleanup_free_ char *unit_path = path_in(root, "usr/lib/systemd/system/keyd.service");
        text = test_read_file(unit_path, NULL);
        cr_assert(strstr(text, "ExecStart=/usr/sbin/keyd --config /etc/keyd/keyd.conf\n"), "%s", text);
        cr_assert(strstr(text, "ReadWritePaths=-/var/lib/softhsm\n"), "%s", text);
        free(text);

        /* The installed example has no error keyd.conf(5) would name (2): at most what this host lacks (1). */
        _cleanup_free_ char *creds = path_in(root, "creds");
        cr_assert_eq(mkdir(creds, 0700), 0);
        r = sh(&out, "echo 1234 > %s/pin && CREDENTIALS_DIRECTORY=%s %s/keyd --check-config -c %s 2>&1", creds, creds,
               KEYD_TEST_BUILDDIR, conf);
        cr_assert(r == 0 || r == 1, "keyd --check-config on the example exits %d:\n%s", r, out);
        cr_assert_null(strstr(out, "unknown"), "%s", out);
        free(out);

        /* An operator's keyd.conf is kept, byte for byte. */
        FILE *f = fopen(conf, "we");
        fputs("; mine\n", f);
        fclose(f);
        r = sh(&out, "make -s -o all -C %s BUILD=%s DESTDIR=%s PREFIX=/usr install 2>&1", test_srcdir(), KEYD_TEST_BUILDDIR,
               root);
        cr_assert_eq(r, 0, "make install again:\n%s", out);
        cr_assert(strstr(out, "keyd.conf exists: kept"), "%s", out);
        free(out);
        text = test_read_file(conf, NULL);
        cr_assert_str_eq(text, "; mine\n");
        free(text);

        /* Another SYSCONFDIR: the unit's configuration and credential follow it. */
        r = sh(&out, "make -s -o all -C %s BUILD=%s DESTDIR=%s/alt PREFIX=/usr SYSCONFDIR=/opt/etc install 2>&1",
               test_srcdir(), KEYD_TEST_BUILDDIR, root);
        cr_assert_eq(r, 0, "%s", out);
        free(out);
        _cleanup_free_ char *alt_unit = path_in(root, "alt/usr/lib/systemd/system/keyd.service"),
                            *alt_conf = path_in(root, "alt/opt/etc/keyd/keyd.conf");
        text = test_read_file(alt_unit, NULL);
        cr_assert(strstr(text, "--config /opt/etc/keyd/keyd.conf") && strstr(text, "LoadCredential=pin:/opt/etc/keyd/pin"),
                  "%s", text);
        free(text);
        cr_assert_eq(access(alt_conf, F_OK), 0);
        test_rmrf(root);
}

/* What bash completes after "keydctl WORDS" (the last word being completed), with the built keydctl on PATH. */
static char *complete(const char *words) {
        _cleanup_free_ char *script = test_path("contrib/keydctl.bash");
        char *out;
        int r = sh(&out,
                   "PATH=%s:$PATH bash -c 'source %s; COMP_WORDS=(keydctl %s); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); "
                   "[ \"${COMP_WORDS[COMP_CWORD]}\" = keydctl ] && { COMP_WORDS+=(\"\"); COMP_CWORD=1; }; "
                   "_keydctl; printf \"%%s\\n\" \"${COMPREPLY[@]}\"' 2>&1",
                   KEYD_TEST_BUILDDIR, script, words);
        cr_assert_eq(r, 0, "%s", out);
        return out;
}

/* Whether word is one of the lines of list. */
static bool has_line(const char *list, const char *word) {
        _cleanup_free_ char *all = NULL, *line = NULL;
        cr_assert(asprintf(&all, "\n%s", list) > 0 && asprintf(&line, "\n%s\n", word) > 0);
        return strstr(all, line) != NULL;
}

static void expect_words(const char *words, const char *const *want, const char *const *not) {
        _cleanup_free_ char *got = complete(words);
        for (; want && *want; want++)
                cr_assert(has_line(got, *want), "keydctl %s<TAB> lacks %s:\n%s", words, *want, got);
        for (; not && *not; not++)
                cr_assert(!has_line(got, *not), "keydctl %s<TAB> offers %s:\n%s", words, *not, got);
}

Test(install, bash_completion) {
        if (sh(NULL, "command -v bash") != 0)
                cr_skip_test("no bash");
        expect_words("\"\"",
                     (const char *const[]){ "status", "keyrings", "keyring", "key", "plan", "rotate", "revoke", "mint",
                                            "verify", "token", "audit", "rekey-all", "help", NULL },
                     NULL);
        expect_words("key \"\"", (const char *const[]){ "show", NULL }, NULL);
        expect_words("token \"\"", (const char *const[]){ "revoke", "inspect", NULL }, NULL);
        expect_words("keyring create k1 --", (const char *const[]){ "--rsa-bits", "--issuer", "--allow-raw-sign",
                                                                     "--json", NULL },
                     (const char *const[]){ "--jwks-file", NULL });
        expect_words("verify --a", (const char *const[]){ "--aud", "--audience", NULL }, NULL);
        expect_words("plan --w", (const char *const[]){ "--within", NULL }, NULL);
        expect_words("keyring create k1 --alg \"\"", (const char *const[]){ "ES256", "EdDSA", "PS256", NULL }, NULL);
        expect_words("revoke KID --reason k", (const char *const[]){ "key_compromise", NULL }, NULL);
        expect_words("--", (const char *const[]){ "--json", "--socket", "--version", NULL }, NULL);
}

/* A fresh host: keyd.conf names a SoftHSM2 token that does not exist yet. keyd init makes it as the user keyd runs as
 * (here nobody: SoftHSM2 writes its files 0600 for their maker), the PIN files 0600, and keyd starts on them. */
typedef struct Host {
        char *dir, *conf, *pin, *so_pin, *tokens, *softhsm_conf, *sock;
} Host;

static void host_setup(Host *h, const char *module) {
        char text[4096];
        h->dir = test_mkdtemp();
        cr_assert_eq(chmod(h->dir, 0755), 0); /* nobody reaches the SoftHSM2 configuration and tokens */
        h->conf = path_in(h->dir, "keyd.conf");
        h->pin = path_in(h->dir, "secrets/pin");
        h->so_pin = path_in(h->dir, "secrets/so-pin");
        h->tokens = path_in(h->dir, "tokens");
        h->softhsm_conf = path_in(h->dir, "softhsm2.conf");
        h->sock = path_in(h->dir, "keyd.sock");
        _cleanup_free_ char *secrets = path_in(h->dir, "secrets");
        cr_assert_eq(mkdir(secrets, 0700), 0);
        cr_assert_eq(mkdir(h->tokens, 0700), 0);
        cr_assert_eq(chown(h->tokens, TEST_NOBODY, TEST_NOBODY), 0);
        snprintf(text, sizeof text, "directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n",
                 h->tokens);
        FILE *f = fopen(h->softhsm_conf, "we");
        fputs(text, f);
        fclose(f);
        cr_assert_eq(chmod(h->softhsm_conf, 0644), 0);
        snprintf(text, sizeof text,
                 "[token]\nmodule = %s\nuri = pkcs11:token=keyd-init\npin-file = %s\nsofthsm2-conf = %s\n\n"
                 "[store]\npath = %s/keyd.db\n\n[api]\nsocket = %s\n\n"
                 "[keyring default]\nkind = issuer\nalg = ES256\nissuer = https://issuer.test\n",
                 module, h->pin, h->softhsm_conf, h->dir, h->sock);
        f = fopen(h->conf, "we");
        fputs(text, f);
        fclose(f);
}

static void host_done(Host *h) {
        test_rmrf(h->dir);
        free(h->dir), free(h->conf), free(h->pin), free(h->so_pin), free(h->tokens), free(h->softhsm_conf), free(h->sock);
}

static TestDaemon d = { .notify_fd = -1 };

static void kill_daemon(void) {
        test_daemon_done(&d);
}

Test(install, keyd_init_on_a_fresh_host, .timeout = 120, .fini = kill_daemon) {
        Host h;
        struct stat st;
        char *out;
        int r;

        host_setup(&h, "/usr/lib/softhsm/libsofthsm2.so");
        /* No user keyd on this host (nor sysusers applied): said so, nothing made. */
        if (!getpwnam("keyd")) {
                r = sh(&out, "%s/keyd -c %s init 2>&1", KEYD_TEST_BUILDDIR, h.conf);
                cr_assert_eq(r, 1, "%s", out);
                cr_assert(strstr(out, "No user keyd"), "%s", out);
                free(out);
                cr_assert_neq(access(h.pin, F_OK), 0);
        }

        r = sh(&out, "%s/keyd -c %s init --user nobody 2>&1", KEYD_TEST_BUILDDIR, h.conf);
        cr_assert_eq(r, 0, "keyd init:\n%s", out);
        cr_assert(strstr(out, "Created token 'keyd-init'"), "%s", out);
        free(out);
        /* The PINs: 32 hex digits each, 0600; the pin-file keyd reads itself belongs to keyd's user. */
        expect_mode(h.pin, 0600);
        expect_mode(h.so_pin, 0600);
        cr_assert_eq(stat(h.pin, &st), 0);
        cr_assert_eq(st.st_uid, (uid_t) TEST_NOBODY, "the pin-file is keyd's to read");
        cr_assert_eq(stat(h.so_pin, &st), 0);
        cr_assert_eq(st.st_uid, 0, "the SO PIN stays root's");
        _cleanup_free_ char *pin = test_read_file(h.pin, NULL), *so_pin = test_read_file(h.so_pin, NULL);
        cr_assert_eq(strlen(pin), 32);
        cr_assert_eq(strspn(pin, "0123456789abcdef"), 32);
        cr_assert_str_neq(pin, so_pin);
        /* The token's files are nobody's (keyd's user), not root's. */
        r = sh(&out, "find %s -mindepth 1 ! -user nobody", h.tokens);
        cr_assert(r == 0 && !*out, "token files not made by keyd's user:\n%s", out);
        free(out);

        /* Again: nothing to do, nothing changed. */
        r = sh(&out, "%s/keyd -c %s init --user nobody 2>&1", KEYD_TEST_BUILDDIR, h.conf);
        cr_assert_eq(r, 0, "%s", out);
        cr_assert(strstr(out, "nothing to do"), "%s", out);
        free(out);
        _cleanup_free_ char *pin2 = test_read_file(h.pin, NULL);
        cr_assert_str_eq(pin, pin2);

        /* keyd starts on what init made, and keydctl finds it well. */
        TestToken t = { .dir = h.dir };
        test_daemon_start_ready(&d, &t, h.conf);
        r = sh(&out, "%s/keydctl --socket %s status 2>&1", KEYD_TEST_BUILDDIR, h.sock);
        cr_assert_eq(r, 0, "%s", out);
        cr_assert(strstr(out, "status:    ok"), "%s", out);
        free(out);
        test_daemon_stop_clean(&d);
        test_daemon_done(&d);
        host_done(&h);
}

/* A PIN file without its token is never overwritten; a module that is not SoftHSM2 gets the steps for the vendor's
 * tools; a configuration with errors is a usage error. */
Test(install, keyd_init_refuses) {
        Host h;
        char *out;
        int r;

        host_setup(&h, "/usr/lib/softhsm/libsofthsm2.so");
        FILE *f = fopen(h.pin, "we");
        fputs("the operator's\n", f);
        fclose(f);
        r = sh(&out, "%s/keyd -c %s init --user nobody 2>&1", KEYD_TEST_BUILDDIR, h.conf);
        cr_assert_eq(r, 1, "%s", out);
        cr_assert(strstr(out, "writes no PIN over one"), "%s", out);
        free(out);
        _cleanup_free_ char *pin = test_read_file(h.pin, NULL);
        cr_assert_str_eq(pin, "the operator's\n");
        cr_assert_neq(access(h.so_pin, F_OK), 0);
        host_done(&h);

        /* Another module (the test shim stands for a vendor's): what to do with its tools. */
        _cleanup_free_ char *shim = path_in(KEYD_TEST_BUILDDIR, "tests/shim/p11shim.so");
        host_setup(&h, shim);
        r = sh(&out, "P11SHIM_MODULE=/usr/lib/softhsm/libsofthsm2.so %s/keyd -c %s init --user nobody 2>&1",
               KEYD_TEST_BUILDDIR, h.conf);
        cr_assert_eq(r, 1, "%s", out);
        cr_assert(strstr(out, "keyd init makes tokens in SoftHSM2 only") && strstr(out, h.pin), "%s", out);
        free(out);
        cr_assert_neq(access(h.pin, F_OK), 0, "no PIN made up for a real HSM");
        host_done(&h);

        r = sh(&out, "%s/keyd -c /nonexistent/keyd.conf init 2>&1", KEYD_TEST_BUILDDIR);
        cr_assert_eq(r, 2, "%s", out);
        free(out);
}
