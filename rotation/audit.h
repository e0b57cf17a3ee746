/* SPDX-License-Identifier: MIT */
#pragma once

#include <jansson.h>
#include <stdarg.h>

#include "common/histogram.h"
#include "store/store.h"

/* Who asked: recorded in every audit record. keyd's own actions use actor_self(). */
typedef struct Actor {
        int64_t uid, gid, pid; /* -1 when unknown */
        const char *comm;
} Actor;

const Actor *actor_self(void);

/* The one way an audit record is made, for the engine's transitions and the API's requests alike: who (an actor), what
 * (an action and its result), on what (keyring, kid), and the detail. Every string is made valid UTF-8 for the chain's
 * canonical JSON (a byte that is not part of a valid sequence is written \xHH: a kid from a path is any bytes). */
typedef struct AuditRecord {
        StoreAudit rec;  /* what store_audit_append() or audit_log_write() take */
        char *owned[4];  /* strings rec points at that the record made */
} AuditRecord;

/* Fill r. detail_fmt is a json_pack() format with its arguments in ap (NULL: no detail). 0, or -ENOMEM: a record that
 * cannot be built in full fails the action that asked for it, it is never written without its detail. */
int audit_record_build(AuditRecord *r, const Actor *a, usec_t time, const char *action, const char *keyring,
                       const char *kid, const char *result, const char *detail_fmt, va_list ap);
void audit_record_done(AuditRecord *r);

/* Per-request audit records with group commit (SPEC §6), on a connection of their own: whatever has queued while
 * the previous commit ran goes into the next transaction, committed by one of the waiting callers, so many callers
 * share one commit (and one fsync for STORE_SYNCED records). audit_log_write() returns only once the caller's record
 * is committed with at least the durability asked for, or failed. */
typedef struct AuditLog AuditLog;

int audit_log_open(const char *db_path, AuditLog **ret);
/* Waits for a commit under way; callers must have stopped writing. */
AuditLog *audit_log_close(AuditLog *l);
/* Returns the record's seq (> 0) or a negative errno; rec->seq/prev_hash/hash are filled on success. */
int64_t audit_log_write(AuditLog *l, StoreAudit *rec, StoreDurability durability);
/* Report the log's storage faults to h (store_set_health()); before any caller writes. */
void audit_log_set_health(AuditLog *l, StoreHealth *h);
/* How many transactions the writer committed (for tests and metrics). */
uint64_t audit_log_commits(AuditLog *l);
/* The time of each committed transaction, from BEGIN to the end of COMMIT (the fsync, for a synced one): what the
 * callers of one group commit wait for. Read it with histogram_render() at any time, from any thread. */
const Histogram *audit_log_commit_times(AuditLog *l);

/* Walk the chain, then check every checkpoint in seq order: the record it names is still there with the same hash
 * (a cut tail or a rewritten record is caught) and the chain reaches at least that far; no checkpoint was signed
 * before the one below it; each is signed by a key keyd generated itself in an issuer keyring before the record it
 * covers (its kid in a verified key.generate record), whose stored JWK has that kid as its RFC 7638 thumbprint, with
 * that key's alg and KEYD_TYP_AUDIT_CHECKPOINT as typ, over its own seq, hash and time. A rewrite of the whole
 * chain (hashes recomputed, checkpoints dropped) is found only against a copy kept outside the database: the anchor
 * file (audit_anchor_append(), keydctl audit verify --anchor). */
typedef struct AuditVerifyResult {
        uint64_t records;        /* records walked */
        uint64_t head_seq;
        uint64_t checkpoint_seq; /* the last checkpoint verified; 0: none (yet) */
        uint64_t bad_seq;        /* the first record that does not match (0 if the fault is not one record) */
        uint64_t anchor_seq;     /* records up to it were pruned (audit_prune()); 0: none */
        char message[256];
} AuditVerifyResult;

/* 0 if all is well, -EBADMSG with the result saying what and where, or another negative errno. Records pruned
 * (audit_prune()) are not walked: the chain is walked from the anchor, which an audit.prune record of the kept chain
 * must account for, and its checkpoints verified with what the anchor carries of the pruned records. */
int audit_verify(Store *s, AuditVerifyResult *ret);

/* Retention: export, seal, prune (SPEC §6 for years). Each on a Store of the caller's own (not the engine's, not the
 * audit log's), in synced transactions with its audit record; message says why when it refuses. */
#define AUDIT_MESSAGE_MAX 256

/* Record e as exported to a segment file sealed by its checkpoint, with an audit.export record (actor a, time now):
 * -EINVAL e's range is not first kept <= first <= last <= checkpoint_seq <= head, -EBADMSG record last does not
 * have e->last_hash, -ENOENT no checkpoint at checkpoint_seq. */
int audit_export_seal(Store *s, const StoreAuditExport *e, const Actor *a, usec_t now, char message[AUDIT_MESSAGE_MAX]);

typedef struct AuditPruneResult {
        uint64_t pruned;                      /* records removed */
        uint64_t first;                       /* the first record kept */
        uint64_t anchor_seq;                  /* the last record removed (the kept chain's anchor) */
        char anchor_hash[STORE_HASH_HEX + 1];
        uint64_t record_seq;                  /* the audit.prune record; 0 if none was written */
        char message[AUDIT_MESSAGE_MAX];
} AuditPruneResult;

/* Remove the records with seq < before, which exports must have sealed, from the start of the log: first the
 * audit.prune record (actor a, time now; detail: before, first, anchor_seq, anchor_hash, and the carry: the issuer
 * keyrings and the key.generate records of the keys that kept and future checkpoints are signed with), then the
 * records and their checkpoints a batch at a time, each batch a synced transaction that moves the anchor. The
 * records to remove are verified first, and every export's last record among them must still have its hash.
 * 0 (also with nothing left to prune: pruned 0, no record); -EPERM a record is in no export; -EBADMSG the chain to
 * prune does not verify, or changed since it was exported; -EINVAL before is past the last record (which is kept);
 * -EAGAIN another prune ran meanwhile. A failure after the record (a storage fault) leaves a shorter prune that
 * verifies: running it again finishes it. */
int audit_prune(Store *s, uint64_t before, const Actor *a, usec_t now, AuditPruneResult *ret);

/* The checkpoint payload as signed: {"seq": N, "hash": "...", "time": T}. */
int audit_checkpoint_payload(uint64_t seq, const char *hash, usec_t time, char **ret);

/* Append the checkpoint at seq, as stored, to the anchor file at path as one JSON line
 * {"seq": N, "hash": "<64 hex>", "time": T (seconds, as signed), "kid": "...", "jws": "<compact JWS>"}, and fsync it.
 * The file is opened O_APPEND|O_NOFOLLOW|O_CLOEXEC and created mode 0600; a symlink or anything but a regular file is
 * refused; a failed write is cut off again so that no half line is left. -ENOENT if there is no checkpoint at seq. */
int audit_anchor_append(Store *s, const char *path, uint64_t seq);
