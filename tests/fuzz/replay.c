/* SPDX-License-Identifier: MIT */
/* Replays a fuzz corpus without libFuzzer: LLVMFuzzerInitialize() once if the target defines it (as libFuzzer does),
 * then LLVMFuzzerTestOneInput() once for every regular file in the directory argv[1], each input in a buffer of
 * exactly its size (so that ASan sees any read past it). Fails when the directory is missing or holds no input. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* Optional, as with libFuzzer: targets that build state once define it. */
__attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv);

static int run_one(int dirfd, const char *name) {
        struct stat st;
        uint8_t *buf;
        size_t off = 0;
        int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);

        if (fd < 0 || fstat(fd, &st) < 0) {
                fprintf(stderr, "%s: %s\n", name, strerror(errno));
                if (fd >= 0)
                        close(fd);
                return -1;
        }
        if (!S_ISREG(st.st_mode)) {
                close(fd);
                return 0;
        }
        buf = malloc(st.st_size > 0 ? (size_t) st.st_size : 1);
        if (!buf) {
                close(fd);
                return -1;
        }
        while (off < (size_t) st.st_size) {
                ssize_t n = read(fd, buf + off, (size_t) st.st_size - off);
                if (n <= 0) {
                        fprintf(stderr, "%s: short read\n", name);
                        free(buf);
                        close(fd);
                        return -1;
                }
                off += (size_t) n;
        }
        close(fd);
        (void) LLVMFuzzerTestOneInput(buf, off);
        free(buf);
        return 1;
}

int main(int argc, char **argv) {
        struct dirent **names = NULL;
        unsigned ran = 0;
        int n, dirfd, failed = 0;

        if (argc != 2) {
                fprintf(stderr, "usage: %s CORPUS-DIR\n", argv[0]);
                return 2;
        }
        if (LLVMFuzzerInitialize)
                (void) LLVMFuzzerInitialize(&argc, &argv);
        dirfd = open(argv[1], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        n = dirfd < 0 ? -1 : scandir(argv[1], &names, NULL, alphasort);
        if (n < 0) {
                fprintf(stderr, "%s: %s\n", argv[1], strerror(errno));
                if (dirfd >= 0)
                        close(dirfd);
                return 1;
        }
        for (int i = 0; i < n; i++) {
                if (names[i]->d_name[0] != '.') {
                        int r = run_one(dirfd, names[i]->d_name);
                        if (r < 0)
                                failed = 1;
                        else
                                ran += (unsigned) r;
                }
                free(names[i]);
        }
        free(names);
        close(dirfd);
        printf("%s: replayed %u inputs\n", argv[1], ran);
        if (ran == 0) {
                fprintf(stderr, "%s: no input to replay\n", argv[1]);
                return 1;
        }
        return failed;
}
