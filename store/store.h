/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "common/alg.h"
#include "common/time-util.h"

/* The metadata and audit store. The interface speaks of keyd's records only, never of SQL, so that a second
 * implementation (PostgreSQL, for several issuer hosts, SPEC §11) can stand behind the same functions.
 *
 * A Store is one connection: use it from one thread at a time (open one per thread for concurrent readers).
 * Writes happen inside store_begin()/store_commit(); a write outside a transaction is -EINVAL. Errors are
 * negative errno: -ENOENT not found (also: a reference to a keyring or audit record that does not exist), -EEXIST
 * duplicate, -EINVAL a value the schema refuses, -ENOMEM, and the storage faults: -ENOSPC the disk is full, -EROFS
 * the database or its file system is read-only (also: writing through a STORE_READ_ONLY Store), -ENOLCK locked by
 * another connection past the busy timeout (never -EBUSY, which callers above use for their own conflicts), -EIO an
 * I/O error or anything else. store_last_error() has the underlying message for the caller's log line. */

typedef struct Store Store;

typedef enum StoreFlags {
        STORE_READ_ONLY = 1 << 0, /* open an existing database without creating or migrating it */
} StoreFlags;

typedef enum StoreDurability {
        STORE_COMMITTED, /* survives a crash of keyd (kill -9): per-request audit records */
        STORE_SYNCED,    /* also survives power loss: key transitions, revocations, administrative records */
} StoreDurability;

typedef struct StoreKeyring {
        char *name;
        char *kind;        /* "issuer" or "agent" */
        char *policy;      /* the policy as a JSON object text */
        int64_t owner_uid; /* agent keyrings: the owner; -1 otherwise */
        bool disabled;
        usec_t created_at;
        char *origin; /* "file" (keyd.conf), "api" (POST /v1/keyrings), or NULL: made before keyd recorded it */
} StoreKeyring;

#define STORE_KEY_ID_MAX 64 /* hex token object id (CKA_ID) */
#define STORE_KID_MAX 64

typedef struct StoreKey {
        char id[STORE_KEY_ID_MAX + 1];   /* token object id, hex: label "keyd:<keyring>:<id>" */
        char kid[STORE_KID_MAX + 1];     /* RFC 7638 thumbprint */
        char *keyring;
        KeydAlg alg;
        KeyState state;
        char *jwk;                        /* public JWK, JSON text */
        usec_t created_at, publish_at, activate_at, retire_at, expire_at, revoked_at; /* 0 = not (yet) */
        char *reason;                     /* revocation reason, or NULL */
        bool lost;                        /* the token object was found missing */
} StoreKey;

#define STORE_HASH_HEX 64

typedef struct StoreAudit {
        uint64_t seq;            /* assigned by store_audit_append() */
        usec_t time;
        int64_t uid, pid;        /* -1 for keyd itself */
        char *comm;              /* may be NULL */
        char *action;            /* "key.generate", "key.activate", "token.mint", ... */
        char *keyring, *kid;     /* may be NULL */
        char *result;            /* "ok", "denied", "error" */
        char *detail;            /* JSON object text, may be NULL */
        char prev_hash[STORE_HASH_HEX + 1];
        char hash[STORE_HASH_HEX + 1];
        /* detail is json_dumps() of an object with JSON_COMPACT | JSON_SORT_KEYS (audit_record_build() makes it so):
         * the canonical form takes it as it is, without parsing and writing it again. Never set for a stored row. */
        bool detail_canonical;
} StoreAudit;

typedef struct StoreRevokedToken {
        char *jti;
        char *keyring;
        usec_t exp;
        usec_t revoked_at;
        char *reason;
} StoreRevokedToken;

/* The database's write health, shared by every Store of one database (and thread-safe): a Store attached to it
 * reports each storage fault it meets (disk full, read-only, locked past the busy timeout, I/O error) and clears it
 * with each commit that succeeds, so that whoever answers requests can say why writes fail without writing. */
typedef struct StoreHealth StoreHealth;

StoreHealth *store_health_new(void);
StoreHealth *store_health_free(StoreHealth *h);
/* True while the last write of the database failed for a storage fault: its errno into *ret_errno and the reason
 * ("database disk is full", ...) into reason (either may be NULL). NULL h is healthy. */
bool store_health_fault(StoreHealth *h, int *ret_errno, char *reason, size_t size);
/* What the operator is told about a storage fault's errno (-ENOSPC, -EROFS, -ENOLCK, -EIO), or NULL for another. */
const char *store_fault_reason(int r);

/* Open (creating and migrating unless STORE_READ_ONLY) the database at path. A new file is created mode 0600.
 * -ENOENT: STORE_READ_ONLY and path does not exist (nothing is created). -EPROTONOSUPPORT: the database's schema is
 * newer than this build, or (STORE_READ_ONLY) older than this build and so not migrated yet. */
int store_open(const char *path, StoreFlags flags, Store **ret);
Store *store_close(Store *s);
/* Report s's storage faults to h, and clear them on its commits (NULL: to none). */
void store_set_health(Store *s, StoreHealth *h);
/* Whether the database can be written now, without waiting for a lock: commits a write that changes nothing (the
 * header's user_version, set to itself: a no-op UPDATE may write nothing at all). 0, clearing the health fault, or
 * the fault's negative errno. -EINVAL inside a transaction. */
int store_probe(Store *s);
/* The message of the last failure on s (SQLite's own where SQLite failed), "" if none. Valid until the next call on s.
 * For a log line only: never parse it. */
const char *store_last_error(Store *s);
/* The schema version the database is at (PRAGMA user_version), and the one this build migrates to. */
int store_schema_version(Store *s);
int store_schema_version_latest(void);

/* BEGIN IMMEDIATE: one writer at a time; durability decides whether the commit is synced to disk.
 * -EINVAL if a transaction is already open, -EROFS on a STORE_READ_ONLY Store. */
int store_begin(Store *s, StoreDurability durability);
/* -EINVAL if no transaction is open. If the commit fails, the transaction has been rolled back. */
int store_commit(Store *s);
/* Never fails; safe to call when no transaction is open. */
void store_rollback(Store *s);

int store_keyring_insert(Store *s, const StoreKeyring *k);
/* Updates policy, owner_uid, disabled of the keyring named k->name. */
int store_keyring_update(Store *s, const StoreKeyring *k);
int store_keyring_get(Store *s, const char *name, StoreKeyring **ret);
/* All keyrings ordered by name. *ret is a NULL-terminated array; free with store_keyring_list_free(). */
int store_keyring_list(Store *s, StoreKeyring ***ret, size_t *ret_n);
StoreKeyring *store_keyring_free(StoreKeyring *k);
void store_keyring_list_free(StoreKeyring **l);

int store_key_insert(Store *s, const StoreKey *k);
/* Updates state, every timestamp, reason, lost of the key with k->id. */
int store_key_update(Store *s, const StoreKey *k);
int store_key_get(Store *s, const char *id, StoreKey **ret);
int store_key_get_by_kid(Store *s, const char *kid, StoreKey **ret);
/* Keys of one keyring (or all, keyring NULL), ordered by created_at then id. NULL-terminated array. */
int store_key_list(Store *s, const char *keyring, StoreKey ***ret, size_t *ret_n);
StoreKey *store_key_free(StoreKey *k);
void store_key_list_free(StoreKey **l);

int store_revoked_token_insert(Store *s, const StoreRevokedToken *t);
/* 1 if jti is denied (and its exp is after now), 0 if not. */
int store_revoked_token_check(Store *s, const char *jti, usec_t now);
int store_revoked_token_list(Store *s, StoreRevokedToken ***ret, size_t *ret_n);
/* Remove denials whose exp has passed; returns how many. */
int store_revoked_token_prune(Store *s, usec_t now);
StoreRevokedToken *store_revoked_token_free(StoreRevokedToken *t);
void store_revoked_token_list_free(StoreRevokedToken **l);

/* Append an audit record inside the current transaction: assigns seq (previous + 1), prev_hash (the previous
 * record's hash; 64 '0' for the first) and hash = hex(SHA-256(prev_hash_bytes ‖ canonical)), where canonical is the
 * record's fields {seq,time,uid,pid,comm,action,keyring,kid,result,detail} as compact JSON with sorted keys (detail
 * embedded as JSON, absent members null). Writes seq, prev_hash and hash back into *rec. */
int store_audit_append(Store *s, StoreAudit *rec);
/* A detail object as a StoreAudit with detail_canonical takes it (a failure to write any part of it fails it all). */
int store_audit_detail_dump(const json_t *detail, char **ret);
/* Records with seq > after, ascending, at most limit. NULL-terminated array. */
int store_audit_list(Store *s, uint64_t after, size_t limit, StoreAudit ***ret, size_t *ret_n);
/* A page of the audit log read with filters (GET /v1/audit). Only a window of at most scan_max consecutive seqs is
 * examined, so that a filter that matches little never makes one call read the whole table: a page may hold fewer
 * than limit records (none at all) and still not be the last. */
typedef struct StoreAuditQuery {
        uint64_t after, before; /* seq > after and, unless before is 0, seq < before */
        bool descending;        /* newest first, down from before (or the head) */
        size_t limit;           /* records in the page, at most */
        uint64_t scan_max;      /* seqs examined, at most (0: no bound) */
        const char *keyring, *kid, *action; /* NULL: any */
        const char *sub;        /* the detail's "sub" (token.mint), NULL: any */
        bool has_uid;
        int64_t uid;
        usec_t since, until;    /* since <= time < until; 0: no bound */
} StoreAuditQuery;

/* The page: *ret (NULL-terminated, ascending or descending as asked) and its size; *ret_next is where the next page
 * starts, every seq up to it (down to it, descending) having been examined: the last record of a full page, else the
 * end of the window (pass it as after, or descending as before); *ret_more is false when nothing after next (before
 * it, descending) is left within the bounds. -EINVAL for a limit of 0. */
int store_audit_query(Store *s, const StoreAuditQuery *q, StoreAudit ***ret, size_t *ret_n, uint64_t *ret_next,
                      bool *ret_more);
/* The seqs of the first and the last record kept (0 and 0 when there is none). */
int store_audit_range(Store *s, uint64_t *ret_first, uint64_t *ret_last);
/* The last record's seq and hash (seq 0 and 64 '0' when empty). */
int store_audit_head(Store *s, uint64_t *ret_seq, char ret_hash[STORE_HASH_HEX + 1]);
/* Walk the chain from the anchor (the first record, when nothing was pruned): 0 if every record's prev_hash and hash
 * match and seq has no gap, else -EBADMSG with *ret_bad_seq set to the first record that does not match (after a gap:
 * the first record after it). Reads one record at a time, in one snapshot of the database. Truncation of the tail is
 * found by checkpoints. */
int store_audit_verify(Store *s, uint64_t *ret_bad_seq);
/* Called by store_audit_walk() for each record once it is verified; the record's strings are valid during the call
 * only. A negative return stops the walk and is returned. */
typedef int (*StoreAuditVisit)(const StoreAudit *rec, void *userdata);
/* store_audit_verify() that also hands each verified record, in seq order, to visit (may be NULL), and on success
 * gives the seq and hash of the last record walked (0 and 64 '0' when empty). Any ret_* may be NULL. */
int store_audit_walk(Store *s, StoreAuditVisit visit, void *userdata, uint64_t *ret_head_seq,
                     char ret_head_hash[STORE_HASH_HEX + 1], uint64_t *ret_bad_seq);
/* store_audit_walk() of the records up to seq until. */
int store_audit_walk_until(Store *s, uint64_t until, StoreAuditVisit visit, void *userdata, uint64_t *ret_head_seq,
                           char ret_head_hash[STORE_HASH_HEX + 1], uint64_t *ret_bad_seq);
/* The canonical text of a record as hashed (a new string). -EINVAL if detail is not a JSON object, or a string is
 * not UTF-8 (jansson refuses it: callers sanitise comm, which the kernel does not promise to be UTF-8). */
int store_audit_canonical(const StoreAudit *rec, char **ret);
StoreAudit *store_audit_free(StoreAudit *a);
void store_audit_list_free(StoreAudit **l);

/* ---- Retention: export sealed segments of the log, then prune them ----
 *
 * Records are pruned from the start of the log only, and only where an export sealed them; the kept chain then
 * starts from an anchor: the last pruned record's seq and hash (which the first kept record names as its prev_hash),
 * its time, when the prune was, and carry, a JSON object with what verifying the kept chain needs to know of the
 * pruned records (audit_verify(): the issuer keyrings, and the keys keyd generated in them that kept or future
 * checkpoints are signed with). Without a prune: seq 0, 64 '0', carry "{}". store_audit_head() of a log whose
 * records were all pruned is the anchor, and store_audit_walk() starts from it. */
typedef struct StoreAuditAnchor {
        uint64_t seq;
        char hash[STORE_HASH_HEX + 1];
        usec_t time, pruned_at;
        char *carry;
} StoreAuditAnchor;

/* The anchor (carry a new string; free with store_audit_anchor_done()). */
int store_audit_anchor(Store *s, StoreAuditAnchor *ret);
void store_audit_anchor_done(StoreAuditAnchor *a);
/* Inside a transaction: set the carry (a JSON object's text), the anchor's seq and hash unchanged (a new anchor row:
 * seq 0). */
int store_audit_anchor_set_carry(Store *s, const char *carry);
/* Inside a transaction: remove the records with seq < before, the oldest max of them at most, and the checkpoints of
 * the records removed; the last one removed becomes the anchor (pruned_at now). *ret_n (may be NULL): how many. The
 * caller checks what may be pruned (store_audit_sealed_end()): this checks nothing but that the last record stays. */
int store_audit_prune_step(Store *s, uint64_t before, size_t max, usec_t now, uint64_t *ret_n);

/* A range of records exported to a segment file: first..last, sealed by the checkpoint at checkpoint_seq (>= last;
 * the segment holds the records up to it), last_hash the hash of record last, sha256 the file's digest (hex). */
typedef struct StoreAuditExport {
        uint64_t first, last, checkpoint_seq;
        char last_hash[STORE_HASH_HEX + 1];
        char sha256[STORE_HASH_HEX + 1];
        usec_t time;
} StoreAuditExport;

/* Inside a transaction: -EINVAL for a range the schema refuses. */
int store_audit_export_insert(Store *s, const StoreAuditExport *e);
/* Exports whose range reaches from or past it, by first; *ret a new array of *ret_n. */
int store_audit_export_list(Store *s, uint64_t from, StoreAuditExport **ret, size_t *ret_n);
/* How far the exports seal the log from seq from without a gap: the highest seq end such that every seq of
 * [from, end] is in an export's first..last; from - 1 when from is in none. */
int store_audit_sealed_end(Store *s, uint64_t from, uint64_t *ret_end);

/* A read snapshot across several reads (BEGIN, deferred): 1 when begun (end it with store_snapshot_end(s, 1)), 0 when
 * a transaction is open already (then end does nothing). */
int store_snapshot_begin(Store *s);
void store_snapshot_end(Store *s, int begun);

/* The installation's identity: 16 lowercase hex digits, made once when the database is created, written into the
 * label of every token object keyd generates ("keyd:<instance>:<keyring>:<id>"). */
#define STORE_INSTANCE_ID_MAX 16
int store_instance_id(Store *s, char ret[STORE_INSTANCE_ID_MAX + 1]);
/* Key ids recorded (committed) before their token objects are generated, and removed in the transaction that inserts
 * the key row: reconcile destroys an object without a row only if its id is recorded here. Insert and delete inside a
 * transaction. The list is a NULL-terminated array of new strings. */
int store_pending_key_insert(Store *s, const char *id, const char *keyring, usec_t time);
int store_pending_key_delete(Store *s, const char *id);
int store_pending_key_list(Store *s, char ***ret, size_t *ret_n);
void store_pending_key_list_free(char **l);

/* Audit checkpoints (SPEC §6): the chain head at seq, with hash (its audit hash, hex), signed at time by the issuer key
 * kid as the JWS compact jws. The store keeps them and does not interpret them: the caller signs and verifies.
 * Insert inside a transaction; -ENOENT if there is no audit record seq, -EEXIST if seq already has a checkpoint,
 * -ERANGE if seq or time is below the latest checkpoint's (checkpoints never go backwards). */
int store_checkpoint_insert(Store *s, uint64_t seq, const char *hash, usec_t time, const char *kid, const char *jws);
/* The checkpoint with the highest seq; -ENOENT if there is none. Any ret_* may be NULL; strings are new. */
int store_checkpoint_latest(Store *s, uint64_t *ret_seq, char **ret_hash, char **ret_kid, char **ret_jws);

/* A checkpoint as stored: time in µs (the signed payload has it in seconds). */
typedef struct StoreCheckpoint {
        uint64_t seq;
        char hash[STORE_HASH_HEX + 1];
        usec_t time;
        char *kid;
        char *jws;
} StoreCheckpoint;

/* Checkpoints with seq > after, ascending, at most limit. NULL-terminated array. */
int store_checkpoint_list(Store *s, uint64_t after, size_t limit, StoreCheckpoint ***ret, size_t *ret_n);
StoreCheckpoint *store_checkpoint_free(StoreCheckpoint *c);
void store_checkpoint_list_free(StoreCheckpoint **l);
