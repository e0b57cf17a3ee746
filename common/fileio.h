/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>
#include <sys/types.h>

/* Replace path with data atomically: a temporary file in the same directory, written, fsync'ed, given mode, renamed
 * over path, and the directory fsync'ed. A reader sees the old bytes or the new ones, never a mix; a crash at any
 * instant leaves one of the two. */
int write_file_atomic(const char *path, const void *data, size_t len, mode_t mode);
