/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

/* Who is at the other end of a Unix socket connection: read once when it connects (SO_PEERCRED, SO_PEERGROUPS,
 * /proc/PID/comm), names resolved once, so that authorising a request costs no system call. */
#define PEER_GROUPS_MAX 64

typedef struct Peer {
        uid_t uid;
        gid_t gid;
        pid_t pid;
        char user[64];                      /* "" if the uid has no name */
        char comm[17];                      /* printable ASCII only */
        size_t n_groups;
        gid_t groups[PEER_GROUPS_MAX];      /* primary and supplementary */
        char *group_names[PEER_GROUPS_MAX]; /* NULL where a gid has no name */
} Peer;

/* -ENOTCONN if fd is not a connected Unix socket. */
int peer_from_fd(int fd, Peer *ret);
void peer_done(Peer *p);
/* The command name of pid (/proc/PID/comm) as printable ASCII, "" if it cannot be read (the process is gone). */
void peer_comm(pid_t pid, char out[17]);
bool peer_in_group(const Peer *p, const char *group);
