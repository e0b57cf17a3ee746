/* SPDX-License-Identifier: MIT */
/* The Unix socket's accept loop. keyd accepts itself, reads the peer's uid (SO_PEERCRED) and checks the limits before
 * libmicrohttpd sees a connection: one over max-connections-per-uid is told 429, one over max-connections 503 (a
 * short, complete reply written without waiting), then closed. A refused connection never has a thread or a slot, so
 * that one uid cannot slow the others. The others are counted and handed to libmicrohttpd (MHD_add_connection; the
 * daemon runs without a listening socket, one thread per connection).
 *
 * A refused connection (here, or by server.c on its headers or body) lingers for a moment in this thread's poll set,
 * its write side shut (at most API_LINGER_MAX of them, each at most LINGER_USEC and LINGER_DRAIN_MAX bytes, whatever
 * they send read and dropped): a client that writes its request, or the rest of its body, after keyd answered then
 * reads the reply and EOF, and does not fail on EPIPE first. */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "api/api-internal.h"
#include "common/log.h"
#include "common/time-util.h"

#define ACCEPT_BATCH 64                       /* connections accepted per wake-up, before the lingering are served */
#define LINGER_MAX API_LINGER_MAX
#define LINGER_USEC (1 * USEC_PER_SEC)
#define LINGER_DRAIN_MAX 65536                /* bytes read from a refused connection before it is closed */
#define BACKOFF_USEC (100 * USEC_PER_MSEC)    /* after accept() failed for want of fds or memory */

typedef struct Linger {
        int fd;
        usec_t until;
        size_t drained;
} Linger;

size_t api_raw_reply(char *buf, size_t size, unsigned status, const char *json) {
        int n = snprintf(buf, size,
                         "HTTP/1.1 %u %s\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n"
                         "Connection: close\r\nContent-Length: %zu\r\n\r\n%s\n",
                         status, MHD_get_reason_phrase_for(status), strlen(json) + 1, json);
        return n < 0 ? 0 : MIN((size_t) n, size - 1);
}

void accept_linger(Api *a, int fd) {
        pthread_mutex_lock(&a->lock);
        if (a->n_lingering < ELEMENTSOF(a->lingering)) {
                a->lingering[a->n_lingering++] = fd;
                fd = -EBADF;
        }
        pthread_mutex_unlock(&a->lock);
        safe_close(fd); /* no room: closed at once */
        (void) eventfd_write(a->accept_wake_fd, 1);
}

static void count_locked(Api *a, uid_t uid, int delta) {
        char key[24];
        snprintf(key, sizeof key, "%u", (unsigned) uid);
        unsigned *n = strmap_get(a->per_uid, key);
        if (!n && delta > 0 && (n = calloc(1, sizeof *n)) && strmap_put(a->per_uid, key, n, NULL) < 0) {
                free(n);
                n = NULL;
        }
        if (n) {
                *n = (unsigned) ((int) *n + delta);
                if (*n == 0)
                        free(strmap_remove(a->per_uid, key));
        }
        if (delta > 0)
                atomic_fetch_add(&a->connections, 1);
        else
                atomic_fetch_sub(&a->connections, 1);
}

void accept_count(Api *a, uid_t uid, int delta) {
        pthread_mutex_lock(&a->lock);
        count_locked(a, uid, delta);
        pthread_mutex_unlock(&a->lock);
}

bool accept_claim(Api *a, int fd, uid_t *ret_uid) {
        char key[16];
        snprintf(key, sizeof key, "%d", fd);
        pthread_mutex_lock(&a->lock);
        uid_t *u = strmap_remove(a->pending, key);
        pthread_mutex_unlock(&a->lock);
        if (!u)
                return false;
        *ret_uid = *u;
        free(u);
        return true;
}

/* Count the connection on fd for uid if the limits allow: 0, or the HTTP status that refuses it. */
static unsigned admit(Api *a, int fd, uid_t uid) {
        char key[24], fdkey[16];
        unsigned status = 0;
        uid_t *box = malloc(sizeof *box), *stale = NULL;

        snprintf(key, sizeof key, "%u", (unsigned) uid);
        snprintf(fdkey, sizeof fdkey, "%d", fd);
        pthread_mutex_lock(&a->lock);
        unsigned *mine = strmap_get(a->per_uid, key);
        if (mine && *mine >= a->cfg.max_connections_per_uid)
                status = MHD_HTTP_TOO_MANY_REQUESTS;
        else if (atomic_load(&a->connections) >= a->cfg.max_connections || !box)
                status = MHD_HTTP_SERVICE_UNAVAILABLE;
        else {
                *box = uid;
                if (strmap_put(a->pending, fdkey, box, (void **) &stale) < 0)
                        status = MHD_HTTP_SERVICE_UNAVAILABLE;
                else {
                        box = NULL;
                        count_locked(a, uid, +1);
                        /* An entry for this fd number: the connection that had it was closed by libmicrohttpd
                         * before it started (it never does unless out of memory). Its count goes now. */
                        if (stale)
                                count_locked(a, *stale, -1);
                }
        }
        pthread_mutex_unlock(&a->lock);
        free(box);
        free(stale);
        return status;
}

/* Tell a refused connection why, without waiting for it, and close our side of the stream. */
static void refuse(int fd, unsigned status, uid_t uid) {
        char body[128], reply[512];
        if (status == MHD_HTTP_TOO_MANY_REQUESTS)
                snprintf(body, sizeof body,
                         "{\"error\":\"too_many_requests\",\"message\":\"too many connections from uid %u\"}",
                         (unsigned) uid);
        else
                snprintf(body, sizeof body, "{\"error\":\"unavailable\",\"message\":\"too many connections to keyd\"}");
        size_t n = api_raw_reply(reply, sizeof reply, status, body);
        (void) send(fd, reply, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        (void) shutdown(fd, SHUT_WR);
}

static void take(Api *a, int fd, Linger *linger, size_t *n_linger, usec_t now) {
        static const struct sockaddr_un unnamed = { .sun_family = AF_UNIX };
        struct ucred cred;
        socklen_t len = sizeof cred;
        uid_t uid;

        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || len != sizeof cred) {
                close(fd);
                return;
        }
        unsigned status = admit(a, fd, cred.uid);
        if (status == MHD_HTTP_TOO_MANY_REQUESTS)
                api_refusal_note(a, cred.uid, cred.pid); /* audited, a uid at a time (audit.c) */
        if (status) {
                refuse(fd, status, cred.uid);
                if (*n_linger < LINGER_MAX)
                        linger[(*n_linger)++] = (Linger){ fd, now + LINGER_USEC, 0 };
                else
                        close(fd);
                return;
        }
        /* libmicrohttpd owns (and closes) fd from here, also when it fails. */
        if (MHD_add_connection(a->mhd, fd, (const struct sockaddr *) &unnamed, sizeof unnamed.sun_family) !=
            MHD_YES) {
                log_debug_errno(errno, "Cannot hand a connection to libmicrohttpd: %m");
                if (accept_claim(a, fd, &uid))
                        accept_count(a, uid, -1);
        }
}

/* Read and drop what a lingering connection sent; false once it is closed or has sent too much. */
static bool drain(Linger *l) {
        char buf[4096];
        for (;;) {
                ssize_t n = recv(l->fd, buf, sizeof buf, MSG_DONTWAIT);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        return true;
                if (n <= 0)
                        return false;
                l->drained += (size_t) n;
                if (l->drained > LINGER_DRAIN_MAX)
                        return false;
        }
}

static void *accept_main(void *userdata) {
        Api *a = userdata;
        Linger linger[LINGER_MAX];
        struct pollfd p[2 + LINGER_MAX];
        size_t n_linger = 0;
        usec_t backoff_until = 0;

        for (;;) {
                usec_t now = now_monotonic(), next = backoff_until > now ? backoff_until : INT64_MAX;
                size_t n = 0;

                p[n++] = (struct pollfd){ a->accept_wake_fd, POLLIN, 0 };
                p[n++] = (struct pollfd){ backoff_until > now ? -1 : a->socket_fd, POLLIN, 0 };
                for (size_t i = 0; i < n_linger; i++) {
                        p[n++] = (struct pollfd){ linger[i].fd, POLLIN, 0 };
                        next = MIN(next, linger[i].until);
                }
                int timeout = next == INT64_MAX ? -1 : (int) ((MAX(next, now) - now + 999) / 1000);
                if (poll(p, n, timeout) < 0 && errno != EINTR) {
                        log_warning_errno(errno, "poll() on the API socket failed: %m");
                        backoff_until = now_monotonic() + BACKOFF_USEC;
                        continue;
                }
                now = now_monotonic();
                if (p[0].revents) {
                        eventfd_t v;
                        (void) eventfd_read(a->accept_wake_fd, &v);
                        if (atomic_load(&a->accept_stop))
                                break;
                }
                /* Backwards, so that the last one, moved into a freed place, has been served already. */
                for (size_t i = n_linger; i-- > 0;)
                        if (now >= linger[i].until || (p[2 + i].revents && !drain(&linger[i]))) {
                                close(linger[i].fd);
                                linger[i] = linger[--n_linger];
                        }
                if (p[0].revents) {
                        /* Refused by server.c: they linger here from now on. */
                        pthread_mutex_lock(&a->lock);
                        for (size_t i = 0; i < a->n_lingering; i++)
                                if (n_linger < LINGER_MAX)
                                        linger[n_linger++] = (Linger){ a->lingering[i], now + LINGER_USEC, 0 };
                                else
                                        close(a->lingering[i]);
                        a->n_lingering = 0;
                        pthread_mutex_unlock(&a->lock);
                }
                if (p[1].revents & (POLLERR | POLLNVAL))
                        backoff_until = now + BACKOFF_USEC;
                else if (p[1].revents & POLLIN)
                        for (unsigned k = 0; k < ACCEPT_BATCH; k++) {
                                int fd = accept4(a->socket_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
                                if (fd < 0) {
                                        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
                                            errno == ENOMEM) {
                                                log_warning_errno(errno, "Cannot accept an API connection: %m");
                                                backoff_until = now + BACKOFF_USEC;
                                        }
                                        break;
                                }
                                take(a, fd, linger, &n_linger, now);
                        }
        }
        for (size_t i = 0; i < n_linger; i++)
                close(linger[i].fd);
        return NULL;
}

int accept_start(Api *a) {
        sigset_t all, old;
        int flags, r;

        /* Accepted connections are polled, never waited for. */
        flags = fcntl(a->socket_fd, F_GETFL);
        if (flags < 0 || fcntl(a->socket_fd, F_SETFL, flags | O_NONBLOCK) < 0)
                return negative_errno();
        a->accept_wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (a->accept_wake_fd < 0)
                return negative_errno();
        /* Signals are the event loop's. */
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        r = -pthread_create(&a->accept_thread, NULL, accept_main, a);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (r < 0)
                return r;
        a->accepting = true;
        return 0;
}

void accept_stop(Api *a) {
        if (a->accepting) {
                atomic_store(&a->accept_stop, true);
                (void) eventfd_write(a->accept_wake_fd, 1);
                pthread_join(a->accept_thread, NULL);
                a->accepting = false;
        }
}

void accept_done(Api *a) {
        for (size_t i = 0; i < a->n_lingering; i++)
                close(a->lingering[i]);
        a->n_lingering = 0;
        a->accept_wake_fd = safe_close(a->accept_wake_fd);
}
