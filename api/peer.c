/* SPDX-License-Identifier: MIT */
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <sys/socket.h>

#include "api/peer.h"
#include "common/macro.h"

void peer_comm(pid_t pid, char out[17]) {
        char path[64], buf[32];
        ssize_t n;
        int fd;

        out[0] = 0;
        snprintf(path, sizeof path, "/proc/%d/comm", (int) pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return;
        n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n <= 0)
                return;
        size_t k = 0;
        for (ssize_t i = 0; i < n && k < 16; i++) {
                unsigned char c = (unsigned char) buf[i];
                if (c == '\n')
                        break;
                /* The kernel promises nothing about comm: keep the audit log's text printable ASCII. */
                out[k++] = c >= 0x20 && c < 0x7f ? (char) c : '?';
        }
        out[k] = 0;
}

int peer_from_fd(int fd, Peer *ret) {
        struct ucred cred;
        socklen_t len = sizeof cred;
        Peer p = { 0 };
        char buf[4096];

        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || len != sizeof cred)
                return -ENOTCONN;
        p.uid = cred.uid;
        p.gid = cred.gid;
        p.pid = cred.pid;

        /* Supplementary groups as the peer had them when it connected. */
        gid_t groups[PEER_GROUPS_MAX];
        socklen_t glen = sizeof groups;
        p.groups[p.n_groups++] = cred.gid;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &glen) == 0)
                for (size_t i = 0; i < glen / sizeof(gid_t) && p.n_groups < PEER_GROUPS_MAX; i++)
                        if (groups[i] != cred.gid)
                                p.groups[p.n_groups++] = groups[i];

        struct passwd pw, *pwp = NULL;
        if (getpwuid_r(p.uid, &pw, buf, sizeof buf, &pwp) == 0 && pwp)
                snprintf(p.user, sizeof p.user, "%s", pwp->pw_name);
        for (size_t i = 0; i < p.n_groups; i++) {
                struct group gr, *grp = NULL;
                if (getgrgid_r(p.groups[i], &gr, buf, sizeof buf, &grp) == 0 && grp)
                        p.group_names[i] = strdup(grp->gr_name);
        }
        peer_comm(p.pid, p.comm);
        *ret = p;
        return 0;
}

void peer_done(Peer *p) {
        for (size_t i = 0; i < p->n_groups; i++)
                free(p->group_names[i]);
        memset(p, 0, sizeof *p);
}

bool peer_in_group(const Peer *p, const char *group) {
        for (size_t i = 0; i < p->n_groups; i++)
                if (p->group_names[i] && streq(p->group_names[i], group))
                        return true;
        return false;
}
