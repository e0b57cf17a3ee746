/* SPDX-License-Identifier: MIT */
/* libFuzzer target for the API as a byte stream: the input is written as is to a connection to the real server
 * (api_start(): libmicrohttpd, peer credentials, header/body limits, the router, the handlers) on a Unix socket of
 * the fixture (fixture.h), then the write side is shut and the reply read until the server closes (or 2 s pass).
 * Checks that whatever comes back is HTTP/1.x. Also built as a replay program (replay.c) that runs the committed
 * corpus inside "make check".
 *
 * Bounded state: the fixture's call runs at most 64 administrative changes (create, rotate, revoke, disable, deny)
 * per epoch and answers the others 503 as a stopping daemon would; everything is rebuilt every KEYD_FUZZ_EPOCH
 * (default 20000) inputs. The body parsers behind those changes are fuzzed with every change allowed by
 * fuzz-api-body. Everything is stopped at exit (atexit), so that LeakSanitizer sees no thread or buffer left; its
 * check after each input is off in the libFuzzer build (see no_per_input_leak_check()). */
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "common/time-util.h"
#include "tests/fuzz/fixture.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define TIMEOUT_MS 2000
#define REPLY_MAX (1024 * 1024)

static Fixture fx;
static char **args; /* the argument list with the added flag */

static void stop(void) {
        fixture_teardown(&fx);
        free(args);
}

/* libFuzzer reads its flags after this returns: add -detect_leaks=0 (unless given) to turn off its check for leaks
 * after each input, which races with the server's connection threads (they free a connection's memory a moment
 * after it is closed) and reports what is not a leak. Leaks are still found: LeakSanitizer's check at exit runs
 * after stop() has stopped everything, as in the replay. */
static void no_per_input_leak_check(int *argc, char ***argv) {
        static char flag[] = "-detect_leaks=0";

        if (!argc || !argv || !*argv)
                return;
        for (int i = 1; i < *argc; i++)
                if (startswith((*argv)[i], "-detect_leaks="))
                        return;
        args = calloc((size_t) *argc + 2, sizeof(char *));
        if (!args)
                abort();
        for (int i = 0; i < *argc; i++)
                args[i] = (*argv)[i];
        args[*argc] = flag;
        *argv = args;
        (*argc)++;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        no_per_input_leak_check(argc, argv);
        fixture_setup(&fx, true);
        atexit(stop);
        return 0;
}

static int connect_api(void) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

        if (fd < 0 || strlen(fx.socket_path) >= sizeof sa.sun_path)
                abort();
        memcpy(sa.sun_path, fx.socket_path, strlen(fx.socket_path) + 1);
        if (connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0)
                abort(); /* the server listens with a backlog of SOMAXCONN: this never waits */
        return fd;
}

/* Wait for events on fd until the deadline; 0 on timeout. */
static int wait_for(int fd, short events, usec_t deadline) {
        usec_t now = now_monotonic();
        struct pollfd p = { .fd = fd, .events = events };
        if (now >= deadline)
                return 0;
        int r = poll(&p, 1, (int) ((deadline - now) / 1000) + 1);
        return r < 0 ? -errno : r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static char reply[REPLY_MAX];
        usec_t deadline = now_monotonic() + (usec_t) TIMEOUT_MS * 1000;
        size_t off = 0, got = 0;
        int fd;

        if (!fx.dir)
                LLVMFuzzerInitialize(NULL, NULL);
        fixture_next_input(&fx);
        fd = connect_api();

        /* The server may answer and close before it has read everything (a body over the limit): stop writing
         * then, and read what it said. */
        while (off < size) {
                ssize_t n = send(fd, data + off, size - off, MSG_NOSIGNAL);
                if (n > 0) {
                        off += (size_t) n;
                        continue;
                }
                if (n < 0 && errno == EAGAIN && wait_for(fd, POLLOUT, deadline) > 0)
                        continue;
                break;
        }
        (void) shutdown(fd, SHUT_WR);

        for (;;) {
                ssize_t n = recv(fd, reply + got, sizeof reply - got, 0);
                if (n > 0) {
                        got += (size_t) n;
                        if (got == sizeof reply)
                                break;
                        continue;
                }
                if (n < 0 && errno == EAGAIN && wait_for(fd, POLLIN, deadline) > 0)
                        continue;
                break; /* EOF, reset, or timeout */
        }
        close(fd);
        /* Until the server has closed its side too, so that connections do not pile up into the per-uid limit and
         * each input starts from the same state. */
        while (atomic_load(&fx.api->connections) > 0 && now_monotonic() < deadline + (usec_t) USEC_PER_SEC)
                (void) poll(NULL, 0, 1);

        if (got > 0 && (got < 5 || memcmp(reply, "HTTP/", 5) != 0))
                abort(); /* whatever the server sends is an HTTP response */
        if (fx.verbose) /* KEYD_FUZZ_VERBOSE: what came back, for writing seeds */
                fprintf(stderr, "%.*s\n----\n", (int) MIN(got, (size_t) 2000), reply);
        return 0;
}
