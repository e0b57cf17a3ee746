/* SPDX-License-Identifier: MIT */
/* systemd integration without systemd as PID 1: the units verify and rate 2.0 or lower, also with the network-HSM
 * drop-in applied, keyd starts from sockets passed by systemd-socket-activate (named "api", "public" and "metrics")
 * with its PIN from a credential directory, the sysusers.d and tmpfiles.d files apply, and the state directory's
 * modes let a web server read the published jwks-files and nothing else. The unit starts on a host without SoftHSM2,
 * lets keyd read its callers' comm, and its socket is reachable by group keyd before keyd runs. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/helpers/test-api.h"
#include "tests/helpers/test-daemon.h"
#include "tests/helpers/test-util.h"

/* Run a shell command: its exit status (-1 if it did not exit), its output in out (cut to size). */
static int run(const char *cmd, char *out, size_t size) {
        int status;
        char *text = test_run(cmd, &status);
        snprintf(out, size, "%s", text);
        free(text);
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The units with ExecStart pointing at the built keyd, in a fresh directory. */
static char *stage_units(void) {
        char *dir = test_mkdtemp(), cmd[2048], out[4096];
        snprintf(cmd, sizeof cmd,
                 "sed 's|/usr/sbin/keyd|%s/keyd|' %s/systemd/keyd.service > %s/keyd.service && "
                 "cp %s/systemd/keyd.socket %s/systemd/keyd-public.socket %s/systemd/keyd-metrics.socket %s/ 2>&1",
                 KEYD_TEST_BUILDDIR, test_srcdir(), dir, test_srcdir(), test_srcdir(), test_srcdir(), dir);
        cr_assert_eq(run(cmd, out, sizeof out), 0, "%s", out);
        return dir;
}

Test(systemd, units_verify_and_rate_safe) {
        char *dir = stage_units(), cmd[2048], out[16384];
        snprintf(cmd, sizeof cmd,
                 "systemd-analyze verify --man=no %s/keyd.service %s/keyd.socket %s/keyd-public.socket "
                 "%s/keyd-metrics.socket 2>&1",
                 dir, dir, dir, dir);
        cr_assert_eq(run(cmd, out, sizeof out), 0, "systemd-analyze verify:\n%s", out);
        cr_assert_null(strstr(out, "keyd-metrics.socket"), "systemd-analyze verify warns about it:\n%s", out);

        snprintf(cmd, sizeof cmd, "systemd-analyze security --offline=true %s/keyd.service 2>&1", dir);
        run(cmd, out, sizeof out);
        const char *e = strstr(out, "Overall exposure level for keyd.service: ");
        cr_assert_not_null(e, "%s", out);
        double level = atof(e + strlen("Overall exposure level for keyd.service: "));
        cr_assert_leq(level, 2.0, "exposure %.1f > 2.0", level);
        cr_log_info("systemd-analyze security: exposure %.1f", level);

        /* Type=notify, the named sockets, the credential: what the daemon relies on. */
        snprintf(cmd, sizeof cmd, "%s/keyd.service", dir);
        char *unit = test_read_file(cmd, NULL);
        cr_assert(strstr(unit, "Type=notify") && strstr(unit, "LoadCredential=pin:") && strstr(unit, "WatchdogSec="));
        free(unit);
        test_rmrf(dir);
        free(dir);
}

/* The line of systemd-analyze security's table for a setting ("PrivateNetwork="), as a new string, or NULL. */
static char *security_line(const char *out, const char *setting) {
        for (const char *l = out; *l;) {
                const char *end = strchrnul(l, '\n'), *s = strstr(l, setting);
                if (s && s < end && s[-1] == ' ')
                        return strndup(l, end - l);
                l = *end ? end + 1 : end;
        }
        return NULL;
}

/* systemd/keyd-network-hsm.conf, as shipped (with its placeholder address), in keyd.service.d/ next to the unit: the
 * unit still verifies, with no complaint about the drop-in, and still rates 2.0 or lower (0.6 without the drop-in,
 * 1.3 with it with systemd 252: host network, Internet sockets, an allow list), with the network open and the rest
 * of the hardening in place. */
Test(systemd, network_hsm_dropin_verifies_and_rates_safe) {
        char *dir = stage_units(), cmd[4096], out[32768];
        snprintf(cmd, sizeof cmd,
                 "mkdir %s/keyd.service.d && cp %s/systemd/keyd-network-hsm.conf %s/keyd.service.d/network-hsm.conf "
                 "2>&1",
                 dir, test_srcdir(), dir);
        cr_assert_eq(run(cmd, out, sizeof out), 0, "%s", out);

        snprintf(cmd, sizeof cmd,
                 "systemd-analyze verify --man=no %s/keyd.service %s/keyd.socket %s/keyd-public.socket 2>&1", dir, dir,
                 dir);
        cr_assert_eq(run(cmd, out, sizeof out), 0, "systemd-analyze verify:\n%s", out);
        /* verify exits 0 on an unknown key or a bad value: it only warns, naming the file. */
        cr_assert_null(strstr(out, "network-hsm.conf"), "systemd-analyze verify warns about the drop-in:\n%s", out);

        snprintf(cmd, sizeof cmd, "systemd-analyze security --offline=true %s/keyd.service 2>&1", dir);
        run(cmd, out, sizeof out);
        const char *e = strstr(out, "Overall exposure level for keyd.service: ");
        cr_assert_not_null(e, "%s", out);
        double level = atof(e + strlen("Overall exposure level for keyd.service: "));
        cr_assert_leq(level, 2.0, "exposure %.1f > 2.0 with the drop-in", level);
        cr_assert_geq(level, 0.7, "exposure %.1f: the drop-in was not applied (the unit alone rates 0.6)", level);
        cr_log_info("systemd-analyze security with the network-HSM drop-in: exposure %.1f", level);

        /* The drop-in took effect: the network is open, to Internet sockets only, behind an IP allow list. */
        struct {
                const char *setting, *mark;
        } expect[] = {
                { "PrivateNetwork=", "\u2717" },                          /* the host's network */
                { "RestrictAddressFamilies=~AF_(INET|INET6)", "\u2717" }, /* TCP to the HSM */
                { "RestrictAddressFamilies=~AF_NETLINK", "\u2713" },      /* still no netlink */
                { "RestrictAddressFamilies=~AF_PACKET", "\u2713" },
                { "IPAddressDeny=", "\u2717" },  /* deny any, with an allow list */
                { "PrivateDevices=", "\u2713" }, /* the rest is unchanged */
                { "ProtectSystem=", "\u2713" },
                { "NoNewPrivileges=", "\u2713" },
                { "SystemCallFilter=~@privileged", "\u2713" },
        };
        for (size_t i = 0; i < sizeof expect / sizeof *expect; i++) {
                char *l = security_line(out, expect[i].setting);
                cr_assert_not_null(l, "no line for %s in:\n%s", expect[i].setting, out);
                cr_assert(strncmp(l, expect[i].mark, strlen(expect[i].mark)) == 0, "%s", l);
                free(l);
        }
        char *l = security_line(out, "IPAddressDeny=");
        cr_assert_not_null(strstr(l, "allow list with"), "IPAddressDeny=any with IPAddressAllow= (an allow list): %s",
                           l);
        free(l);
        test_rmrf(dir);
        free(dir);
}

static TestDaemon d = { .notify_fd = -1 };

/* Whatever happens in the test, its daemon does not outlive it. */
static void kill_daemon(void) {
        test_daemon_done(&d);
}

Test(systemd, socket_activation_and_credential, .timeout = 90, .fini = kill_daemon) {
        TestToken tok;
        char cfg[4096], sock[512], listen_pub[64], listen_metrics[64], creds[512], url[128];
        long st;

        test_token_setup(&tok);
        /* The PIN only as a credential: no pin-file in the configuration. */
        snprintf(creds, sizeof creds, "%s/creds", tok.dir);
        cr_assert_eq(mkdir(creds, 0700), 0);
        char *pin = test_read_file(tok.pin_file, NULL);
        char *cred_pin;
        cr_assert(asprintf(&cred_pin, "%s/pin", creds) >= 0);
        FILE *f = fopen(cred_pin, "we");
        fputs(pin, f);
        fclose(f);
        unlink(tok.pin_file);

        snprintf(sock, sizeof sock, "%s/activated.sock", tok.dir);
        char *conf = NULL;
        /* Start keyd under systemd-socket-activate, which binds the three sockets and passes them by name. A port
         * found free may be taken before systemd-socket-activate binds it (another test starting a listener): then
         * it exits at once, and the whole start is made again on other ports, up to four times. */
        for (int attempt = 0;; attempt++) {
                int port = test_free_port(), mport;
                while ((mport = test_free_port()) == port)
                        ;
                snprintf(listen_pub, sizeof listen_pub, "127.0.0.1:%d", port);
                snprintf(listen_metrics, sizeof listen_metrics, "127.0.0.1:%d", mport);
                snprintf(cfg, sizeof cfg,
                         "[token]\nmodule = %s\nuri = %s\nsofthsm2-conf = %s\n[store]\npath = %s/keyd.db\n"
                         "[api]\nsocket = %s/unused.sock\n"
                         "[keyring default]\nkind = issuer\nalg = ES256\nissuer = https://issuer.test\n",
                         tok.module, tok.uri, tok.conf, tok.dir, tok.dir);
                free(conf);
                conf = test_token_write_file(&tok, "keyd.conf", cfg);

                test_daemon_start(&d, &tok, conf, NULL); /* only to get a notify socket and a log file */
                test_daemon_stop(&d, SIGKILL);
                unlink(sock);
                pid_t pid = fork();
                cr_assert(pid >= 0);
                if (pid == 0) {
                        char e_notify[600], e_creds[600];
                        int fd = open(d.log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
                        if (fd >= 0) {
                                dup2(fd, STDOUT_FILENO);
                                dup2(fd, STDERR_FILENO);
                        }
                        snprintf(e_notify, sizeof e_notify, "NOTIFY_SOCKET=%s", d.notify_path);
                        snprintf(e_creds, sizeof e_creds, "CREDENTIALS_DIRECTORY=%s", creds);
                        execlp("systemd-socket-activate", "systemd-socket-activate", "-l", sock, "-l", listen_pub,
                               "-l", listen_metrics, "--fdname=api:public:metrics", "-E", e_notify, "-E", e_creds,
                               KEYD_TEST_BUILDDIR "/keyd", "--config", conf, (char *) NULL);
                        _exit(127);
                }
                d.pid = pid;
                /* systemd-socket-activate starts keyd at the first connection: make one. */
                for (int i = 0; i < 100 && access(sock, F_OK) < 0; i++)
                        usleep(20000);
                json_t *h = test_api(sock, "GET", "/healthz", NULL, &st);
                json_decref(h);
                int status;
                if (st == 0 && attempt < 3 && waitpid(pid, &status, WNOHANG) == pid) {
                        d.pid = 0; /* it could not bind a port: again */
                        test_daemon_done(&d);
                        continue;
                }
                break;
        }
        cr_assert_eq(st, 200, "the first request through the passed socket");
        cr_assert(test_daemon_wait_notify(&d, "READY=1", 30000, NULL, 0));
        cr_assert(access(tok.pin_file, F_OK) < 0, "no PIN file was used");

        json_t *t = test_api(sock, "POST", "/v1/keyrings/default/tokens", "{\"sub\":\"a\"}", &st);
        cr_assert_eq(st, 403, "root is admin but not in default's sign-users: the API works and authorises");
        json_decref(t);
        snprintf(url, sizeof url, "http://%s/.well-known/jwks.json", listen_pub);
        char *body = test_http_get(url, NULL, &st, NULL);
        cr_assert_eq(st, 200, "the public listener is the passed socket named public");
        cr_assert(strstr(body, "\"keys\"") != NULL);
        free(body);
        /* The socket named metrics serves GET /metrics (keyd-metrics.socket), with no [metrics] in keyd.conf. */
        snprintf(url, sizeof url, "http://%s/metrics", listen_metrics);
        body = test_http_get(url, NULL, &st, NULL);
        cr_assert_eq(st, 200, "the metrics listener is the passed socket named metrics: %s", body);
        cr_assert(strstr(body, "# TYPE keyd_keyrings gauge\n") != NULL, "%s", body);
        free(body);
        char *log = test_read_file(d.log, NULL);
        cr_assert(strstr(log, "the socket passed by systemd") != NULL, "%s", log);
        free(log);
        test_daemon_stop_clean(&d);
        test_daemon_done(&d);
        free(pin), free(cred_pin), free(conf);
        test_token_teardown(&tok);
}

Test(systemd, sysusers_and_tmpfiles_apply) {
        char *root = test_mkdtemp(), cmd[2048], out[8192];
        snprintf(cmd, sizeof cmd,
                 "mkdir -p %s/etc && touch %s/etc/passwd %s/etc/group && echo softhsm:x:995: > %s/etc/group && "
                 "systemd-sysusers --root=%s %s/systemd/keyd.sysusers 2>&1 && "
                 "systemd-tmpfiles --root=%s --create %s/systemd/keyd.tmpfiles 2>&1",
                 root, root, root, root, root, test_srcdir(), root, test_srcdir());
        cr_assert_eq(run(cmd, out, sizeof out), 0, "%s", out);
        snprintf(cmd, sizeof cmd, "%s/etc/passwd", root);
        char *pw = test_read_file(cmd, NULL);
        cr_assert(strstr(pw, "keyd:") != NULL);
        free(pw);
        snprintf(cmd, sizeof cmd, "%s/etc/group", root);
        char *gr = test_read_file(cmd, NULL);
        cr_assert(strstr(gr, "keyd-admin:") && strstr(gr, "keyd-sign:") && strstr(gr, "softhsm:x:995:keyd"), "%s", gr);
        free(gr);
        snprintf(cmd, sizeof cmd, "%s/var/lib/keyd/jwks", root);
        struct stat s;
        cr_assert_eq(stat(cmd, &s), 0);
        cr_assert_eq(s.st_mode & 07777, 0755);
        snprintf(cmd, sizeof cmd, "%s/var/lib/keyd", root);
        cr_assert_eq(stat(cmd, &s), 0);
        cr_assert_eq(s.st_mode & 07777, 0711, "the state directory: passable, not listable: %o", s.st_mode & 07777);
        test_rmrf(root);
        free(root);
}

/* The value of Key= in a unit file's text (the last one), as a new string, or NULL. */
static char *unit_value(const char *unit, const char *key) {
        char *found = NULL;
        size_t n = strlen(key);
        for (const char *l = unit; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL)
                if (strncmp(l, key, n) == 0 && l[n] == '=') {
                        free(found);
                        found = strndup(l + n + 1, strcspn(l + n + 1, "\n"));
                }
        return found;
}

/* The documented layout (keyd.conf(5) jwks-file: /var/lib/keyd/jwks/NAME.json, served by a web server): the state
 * directory as keyd.service makes it (StateDirectory=keyd, StateDirectoryMode=) and keyd.tmpfiles sets it, with a
 * jwks-file (0644, as keyd writes it) and a database (0600) in it. A web server's user reads the jwks-file, and
 * neither the database nor the directory's list of names. Before, the unit's 0700 shut the web server out. */
Test(systemd, jwks_files_readable_by_a_web_server) {
        char *root = test_mkdtemp(), cmd[4096], out[8192], path[1024];
        snprintf(path, sizeof path, "%s/systemd/keyd.service", test_srcdir());
        char *unit = test_read_file(path, NULL), *mode = unit_value(unit, "StateDirectoryMode");
        cr_assert_not_null(mode, "keyd.service sets StateDirectoryMode=");
        cr_assert(strstr(unit, "\nStateDirectory=keyd\n"), "keyd.service has StateDirectory=keyd");

        /* tmpfiles.d first (as at boot or package installation), then what systemd does when it starts the unit:
         * the state directory gets StateDirectoryMode=. keyd writes the files. */
        snprintf(cmd, sizeof cmd,
                 "chmod 0755 %s && mkdir -p %s/etc && touch %s/etc/passwd %s/etc/group && "
                 "echo softhsm:x:995: > %s/etc/group && "
                 "systemd-sysusers --root=%s %s/systemd/keyd.sysusers 2>&1 && "
                 "systemd-tmpfiles --root=%s --create %s/systemd/keyd.tmpfiles 2>&1 && "
                 "chmod %s %s/var/lib/keyd && "
                 "printf '{\"keys\":[]}' > %s/var/lib/keyd/jwks/default.json && "
                 "chmod 0644 %s/var/lib/keyd/jwks/default.json && "
                 "echo db > %s/var/lib/keyd/keyd.db && chmod 0600 %s/var/lib/keyd/keyd.db",
                 root, root, root, root, root, root, test_srcdir(), root, test_srcdir(), mode, root, root, root, root,
                 root);
        cr_assert_eq(run(cmd, out, sizeof out), 0, "%s", out);
        snprintf(path, sizeof path, "%s/var/lib/keyd", root);
        struct stat st;
        cr_assert_eq(stat(path, &st), 0);
        cr_assert_eq((unsigned) (st.st_mode & 07777), (unsigned) strtoul(mode, NULL, 8),
                     "keyd.tmpfiles and StateDirectoryMode= agree");

        pid_t pid = test_fork_as_nobody();
        if (pid == 0) {
                char p[1100];
                snprintf(p, sizeof p, "%s/var/lib/keyd/jwks/default.json", root);
                int fd = open(p, O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        _exit(1); /* the web server cannot read the JWKS */
                close(fd);
                snprintf(p, sizeof p, "%s/var/lib/keyd/keyd.db", root);
                if (open(p, O_RDONLY | O_CLOEXEC) >= 0)
                        _exit(2); /* nor may it read the database */
                snprintf(p, sizeof p, "%s/var/lib/keyd", root);
                if (opendir(p))
                        _exit(3); /* nor list the state directory */
                _exit(0);
        }
        int rc = test_wait_child(pid);
        cr_assert_eq(rc, 0,
                     "as nobody: %s (StateDirectoryMode=%s)",
                     rc == 1   ? "the jwks-file cannot be read"
                     : rc == 2 ? "the database can be read"
                     : rc == 3 ? "the state directory can be listed"
                               : "the child failed",
                     mode);
        free(unit), free(mode);
        test_rmrf(root);
        free(root);
}

/* The value of the last "Key=" line of a unit file in the source tree, as a new string (NULL if none). */
static char *unit_file_value(const char *unit, const char *key) {
        char path[1024], *text, *value;
        snprintf(path, sizeof path, "%s/systemd/%s", test_srcdir(), unit);
        text = test_read_file(path, NULL);
        value = unit_value(text, key);
        free(text);
        return value;
}

/* A host without SoftHSM2 (a network HSM) has no /var/lib/softhsm: a ReadWritePaths= without "-" for it stops keyd
 * from starting there (226/NAMESPACE). Every path of the unit that only SoftHSM2 brings must be optional. */
Test(systemd, softhsm_paths_are_optional) {
        char path[1024];
        snprintf(path, sizeof path, "%s/systemd/keyd.service", test_srcdir());
        char *unit = test_read_file(path, NULL);
        unsigned n = 0;
        for (char *l = strtok(unit, "\n"); l; l = strtok(NULL, "\n")) {
                if (!startswith(l, "ReadWritePaths=") || !strstr(l, "softhsm"))
                        continue;
                for (char *w = strtok(l + strlen("ReadWritePaths="), " "); w; w = strtok(NULL, " ")) {
                        cr_assert_eq(w[0], '-', "%s is required: a host without SoftHSM2 cannot start keyd", w);
                        n++;
                }
                break;
        }
        cr_assert_geq(n, 1, "the unit names SoftHSM2's token directory");
        free(unit);
}

/* keyd writes the caller's comm into every audit record, from /proc/PID/comm: ProtectProc=invisible would hide every
 * other user's process from keyd and leave comm empty. */
Test(systemd, callers_comm_is_visible) {
        char *v = unit_file_value("keyd.service", "ProtectProc");
        cr_assert_not_null(v);
        cr_assert(streq(v, "default"), "ProtectProc=%s hides the callers' /proc/PID/comm from keyd", v);
        free(v);
        v = unit_file_value("keyd.service", "ProcSubset");
        cr_assert(v && streq(v, "pid"), "the rest of /proc stays hidden");
        free(v);
}

/* systemd makes keyd.socket's directory root:root with DirectoryMode= and the socket root:SocketGroup with
 * SocketMode=, before keyd.service runs (which then gives the directory to keyd). Done the same way here: a member
 * of the socket's group who is not its owner (nobody, with that group as its only supplementary group) connects. */
Test(systemd, socket_reachable_by_its_group_before_the_service_runs) {
        char *dir_mode = unit_file_value("keyd.socket", "DirectoryMode"),
             *sock_mode = unit_file_value("keyd.socket", "SocketMode"),
             *group = unit_file_value("keyd.socket", "SocketGroup"), *stream = unit_file_value("keyd.socket", "ListenStream");
        cr_assert(dir_mode && sock_mode && group && stream);
        cr_assert_str_eq(group, "keyd");
        cr_assert(startswith(stream, "/run/keyd/"), "%s", stream);
        const gid_t gid = 54321; /* stands for keyd's group */
        char *root = test_mkdtemp(), dir[512], path[600];
        snprintf(dir, sizeof dir, "%s/run-keyd", root);
        snprintf(path, sizeof path, "%s/keyd.sock", dir);
        cr_assert_eq(chmod(root, 0755), 0);
        cr_assert_eq(mkdir(dir, 0), 0);
        cr_assert_eq(chmod(dir, (mode_t) strtoul(dir_mode, NULL, 8)), 0);

        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        cr_assert_lt(strlen(path), sizeof sa.sun_path);
        memcpy(sa.sun_path, path, strlen(path) + 1);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        cr_assert_eq(bind(fd, (struct sockaddr *) &sa, sizeof sa), 0);
        cr_assert_eq(listen(fd, 4), 0);
        cr_assert_eq(chown(path, 0, gid), 0);
        cr_assert_eq(chmod(path, (mode_t) strtoul(sock_mode, NULL, 8)), 0);

        pid_t pid = fork();
        cr_assert(pid >= 0);
        if (pid == 0) {
                if (setgroups(1, &gid) < 0 || setgid(TEST_NOBODY) < 0 || setuid(TEST_NOBODY) < 0)
                        _exit(99);
                int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                _exit(connect(c, (struct sockaddr *) &sa, sizeof sa) == 0 ? 0 : errno == EACCES ? 13 : 1);
        }
        int status = test_wait_child(pid);
        cr_assert_neq(status, 99, "cannot become nobody");
        cr_assert_eq(status, 0,
                     "a member of group keyd cannot reach the socket (exit %d; 13: EACCES) with DirectoryMode=%s, "
                     "SocketMode=%s",
                     status, dir_mode, sock_mode);
        /* Nobody else may connect: the socket's own mode keeps them out. */
        pid = fork();
        cr_assert(pid >= 0);
        if (pid == 0) {
                if (setgroups(0, NULL) < 0 || setgid(TEST_NOBODY) < 0 || setuid(TEST_NOBODY) < 0)
                        _exit(99);
                int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                _exit(connect(c, (struct sockaddr *) &sa, sizeof sa) == 0 ? 0 : errno == EACCES ? 13 : 1);
        }
        cr_assert_eq(test_wait_child(pid), 13, "a user outside group keyd is refused");
        close(fd);
        test_rmrf(root);
        free(root), free(dir_mode), free(sock_mode), free(group), free(stream);
}
