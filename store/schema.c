/* SPDX-License-Identifier: MIT */
/* The schema, as migrations keyed on PRAGMA user_version: step N takes a database from version N-1 to N, in its own
 * transaction. Steps are only ever appended; a released step is never edited. */
#include <stdio.h>

#include "store/schema-internal.h"
#include "store/store-internal.h"

static const char *const migrations[] = {
        [0] = NULL, /* an empty database */
        [1] = "CREATE TABLE keyrings ("
              "  name TEXT PRIMARY KEY NOT NULL CHECK (length(name) > 0),"
              "  kind TEXT NOT NULL CHECK (kind IN ('issuer', 'agent')),"
              "  policy TEXT NOT NULL,"
              "  owner_uid INTEGER NOT NULL DEFAULT -1,"
              "  disabled INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),"
              "  created_at INTEGER NOT NULL"
              ") STRICT;"
              "CREATE TABLE keys ("
              "  id TEXT PRIMARY KEY NOT NULL CHECK (length(id) BETWEEN 1 AND 64),"
              "  kid TEXT NOT NULL UNIQUE CHECK (length(kid) BETWEEN 1 AND 64),"
              "  keyring TEXT NOT NULL REFERENCES keyrings (name) ON DELETE RESTRICT,"
              "  alg TEXT NOT NULL,"
              "  state TEXT NOT NULL CHECK (state IN ('next', 'active', 'retired', 'expired', 'revoked')),"
              "  jwk TEXT NOT NULL,"
              "  created_at INTEGER NOT NULL,"
              "  publish_at INTEGER NOT NULL DEFAULT 0,"
              "  activate_at INTEGER NOT NULL DEFAULT 0,"
              "  retire_at INTEGER NOT NULL DEFAULT 0,"
              "  expire_at INTEGER NOT NULL DEFAULT 0,"
              "  revoked_at INTEGER NOT NULL DEFAULT 0,"
              "  reason TEXT,"
              "  lost INTEGER NOT NULL DEFAULT 0 CHECK (lost IN (0, 1))"
              ") STRICT;"
              "CREATE INDEX keys_keyring_state ON keys (keyring, state);"
              /* SPEC §3: never two active keys, never two standbys, whatever the code above does. */
              "CREATE UNIQUE INDEX keys_one_active ON keys (keyring) WHERE state = 'active';"
              "CREATE UNIQUE INDEX keys_one_next ON keys (keyring) WHERE state = 'next';"
              "CREATE TABLE audit ("
              "  seq INTEGER PRIMARY KEY,"
              "  time INTEGER NOT NULL,"
              "  uid INTEGER NOT NULL,"
              "  pid INTEGER NOT NULL,"
              "  comm TEXT,"
              "  action TEXT NOT NULL,"
              "  keyring TEXT,"
              "  kid TEXT,"
              "  result TEXT NOT NULL,"
              "  detail TEXT,"
              "  prev_hash TEXT NOT NULL,"
              "  hash TEXT NOT NULL"
              ") STRICT;"
              "CREATE TABLE revoked_tokens ("
              "  jti TEXT PRIMARY KEY NOT NULL,"
              "  keyring TEXT,"
              "  exp INTEGER NOT NULL,"
              "  revoked_at INTEGER NOT NULL,"
              "  reason TEXT"
              ") STRICT;"
              "CREATE INDEX revoked_tokens_exp ON revoked_tokens (exp);",
        [2] = "CREATE TABLE audit_checkpoints ("
              "  seq INTEGER PRIMARY KEY REFERENCES audit (seq),"
              "  hash TEXT NOT NULL,"
              "  time INTEGER NOT NULL,"
              "  kid TEXT NOT NULL,"
              "  signature TEXT NOT NULL"
              ") STRICT;",
        /* The installation's identity (in every token object's label) and the key ids about to be generated: an
         * object in the token without a key row is destroyed only if its id was recorded here first, so that a
         * restored or copied database never destroys the keys of the installation it came from. */
        [3] = "CREATE TABLE installation ("
              "  one INTEGER PRIMARY KEY CHECK (one = 1),"
              "  instance_id TEXT NOT NULL CHECK (length(instance_id) = 16),"
              "  created_at INTEGER NOT NULL"
              ") STRICT;"
              "INSERT INTO installation (one, instance_id, created_at) "
              "  VALUES (1, lower(hex(randomblob(8))), CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER));"
              "CREATE TABLE pending_keys ("
              "  id TEXT PRIMARY KEY NOT NULL CHECK (length(id) BETWEEN 1 AND 64),"
              "  keyring TEXT NOT NULL,"
              "  created_at INTEGER NOT NULL"
              ") STRICT;",
        /* Retention: the ranges of the audit log exported to segment files, each sealed by a signed checkpoint at or
         * after its last record; and, once records before some seq are pruned (only what an export sealed), the
         * anchor the kept chain starts from: the last pruned record's seq and hash (the first kept record's
         * prev_hash), and what verifying the kept chain needs of the pruned records (carry, JSON). One row at most. */
        [4] = "CREATE TABLE audit_exports ("
              "  id INTEGER PRIMARY KEY,"
              "  first INTEGER NOT NULL CHECK (first >= 1),"
              "  last INTEGER NOT NULL,"
              "  last_hash TEXT NOT NULL CHECK (length(last_hash) = 64),"
              "  checkpoint_seq INTEGER NOT NULL,"
              "  sha256 TEXT NOT NULL CHECK (length(sha256) = 64),"
              "  exported_at INTEGER NOT NULL,"
              "  CHECK (last >= first AND checkpoint_seq >= last)"
              ") STRICT;"
              "CREATE TABLE audit_anchor ("
              "  one INTEGER PRIMARY KEY CHECK (one = 1),"
              "  seq INTEGER NOT NULL CHECK (seq >= 0),"
              "  hash TEXT NOT NULL CHECK (length(hash) = 64),"
              "  time INTEGER NOT NULL,"
              "  pruned_at INTEGER NOT NULL,"
              "  carry TEXT NOT NULL"
              ") STRICT;",
        /* Where a keyring came from: a [keyring] section of keyd.conf ('file') or POST /v1/keyrings ('api'); NULL for
         * one created before keyd recorded it. A section never takes over a keyring created through the API. */
        [5] = "ALTER TABLE keyrings ADD COLUMN origin TEXT CHECK (origin IN ('file', 'api'));",
};

int store_schema_version_latest(void) {
        return (int) ELEMENTSOF(migrations) - 1;
}

int store_schema_version(Store *s) {
        _cleanup_finalize_ sqlite3_stmt *st = NULL;
        int r;

        if (!s)
                return -EINVAL;
        r = store_query_row(s, "PRAGMA user_version", &st);
        if (r < 0)
                return r;
        sqlite3_int64 v = sqlite3_column_int64(st, 0);
        if (v < 0 || v > INT32_MAX)
                return store_error_msg(s, -EPROTONOSUPPORT, "the database's schema version is not keyd's");
        return (int) v;
}

static int refuse(Store *s, int version) {
        snprintf(s->error, sizeof s->error, "the database's schema version %d is %s than this build's %d", version,
                 version > store_schema_version_latest() ? "newer" : "older", store_schema_version_latest());
        return -EPROTONOSUPPORT;
}

/* Apply the step after the version found inside the write transaction (another process may have migrated since).
 * Returns 1 if a step was applied, 0 if the database is at the latest version. */
static int migrate_one(Store *s) {
        char sql[64];
        int v;

        v = store_schema_version(s);
        if (v < 0)
                return v;
        if (v > store_schema_version_latest())
                return refuse(s, v);
        if (v == store_schema_version_latest())
                return 0;

        if (sqlite3_exec(s->db, migrations[v + 1], NULL, NULL, NULL) != SQLITE_OK)
                return store_error(s, sqlite3_extended_errcode(s->db));
        snprintf(sql, sizeof sql, "PRAGMA user_version=%d", v + 1);
        if (sqlite3_exec(s->db, sql, NULL, NULL, NULL) != SQLITE_OK)
                return store_error(s, sqlite3_extended_errcode(s->db));
        return 1;
}

int store_migrate(Store *s) {
        int r, v;

        v = store_schema_version(s);
        if (v < 0)
                return v;
        if (v > store_schema_version_latest())
                return refuse(s, v);
        if (s->flags & STORE_READ_ONLY)
                return v == store_schema_version_latest() ? 0 : refuse(s, v);

        for (;;) {
                r = store_begin(s, STORE_SYNCED);
                if (r < 0)
                        return r;
                r = migrate_one(s);
                if (r <= 0) {
                        store_rollback(s);
                        return r;
                }
                r = store_commit(s);
                if (r < 0)
                        return r;
                s->migrations_applied++;
        }
}
