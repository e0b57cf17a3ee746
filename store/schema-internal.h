/* SPDX-License-Identifier: MIT */
#pragma once

#include "store/store.h"

/* Bring a read-write database to store_schema_version_latest(), one step per transaction; check the version of a
 * read-only one. -EPROTONOSUPPORT: newer than this build (or, read-only, older). */
int store_migrate(Store *s);
