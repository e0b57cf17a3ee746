/* SPDX-License-Identifier: MIT */
/* LD_PRELOAD shim for the storage tests: a file system that turns read-only under a running process.
 *
 * Linux refuses "mount -o remount,ro" (and a read-only bind remount) while any file on the file system is open for
 * writing, as keyd's database is: only the kernel itself makes a file system read-only under a writer (errors=
 * remount-ro after an I/O error), and from then on every write(2) fails with EROFS. chmod and chattr +i change
 * nothing for a descriptor already open. So this shim does what the kernel does: while the file named before the
 * ':' of KEYD_TEST_EROFS exists, writes to files under the directory after it fail with EROFS, statvfs() of them
 * says ST_RDONLY; reads go on. */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <unistd.h>

/* Whether path is on the "read-only file system" now. */
static bool read_only(const char *path) {
        const char *spec = getenv("KEYD_TEST_EROFS"), *dir;
        char flag[PATH_MAX];
        int saved = errno; /* a call that goes through must not see our errno */
        bool r;

        if (!spec || !(dir = strchr(spec, ':')) || (size_t) (dir - spec) >= sizeof flag)
                return false;
        memcpy(flag, spec, (size_t) (dir - spec));
        flag[dir - spec] = 0;
        dir++;
        r = strncmp(path, dir, strlen(dir)) == 0 && path[strlen(dir)] == '/' && access(flag, F_OK) == 0;
        errno = saved;
        return r;
}

static bool refused(int fd) {
        char link[64], path[PATH_MAX];
        int saved = errno;
        ssize_t n;

        if (!getenv("KEYD_TEST_EROFS"))
                return false;
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        n = readlink(link, path, sizeof path - 1);
        errno = saved;
        if (n <= 0)
                return false;
        path[n] = 0;
        return read_only(path);
}

#define REAL(name) ((__typeof__(&name)) dlsym(RTLD_NEXT, #name))

ssize_t pwrite64(int fd, const void *buf, size_t n, off64_t off) {
        if (refused(fd))
                return errno = EROFS, -1;
        return REAL(pwrite64)(fd, buf, n, off);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
        if (refused(fd))
                return errno = EROFS, -1;
        return REAL(pwrite)(fd, buf, n, off);
}

ssize_t write(int fd, const void *buf, size_t n) {
        if (refused(fd))
                return errno = EROFS, -1;
        return REAL(write)(fd, buf, n);
}

int ftruncate64(int fd, off64_t len) {
        if (refused(fd))
                return errno = EROFS, -1;
        return REAL(ftruncate64)(fd, len);
}

int ftruncate(int fd, off_t len) {
        if (refused(fd))
                return errno = EROFS, -1;
        return REAL(ftruncate)(fd, len);
}

int statvfs(const char *path, struct statvfs *buf) {
        int r = REAL(statvfs)(path, buf);
        if (r == 0 && read_only(path))
                buf->f_flag |= ST_RDONLY;
        return r;
}

int statvfs64(const char *path, struct statvfs64 *buf) {
        int r = REAL(statvfs64)(path, buf);
        if (r == 0 && read_only(path))
                buf->f_flag |= ST_RDONLY;
        return r;
}
