/* SPDX-License-Identifier: MIT */
#pragma once

#include "store/store.h"

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
/* How many transactions the writer committed (for tests and metrics). */
uint64_t audit_log_commits(AuditLog *l);

/* Walk the chain and check the latest checkpoint: its signature (with the public key its kid names in the store), that
 * the record it names is still there with the same hash (a cut tail or a rewritten record is caught), and that the
 * chain reaches at least that far. */
typedef struct AuditVerifyResult {
        uint64_t records;        /* records walked */
        uint64_t head_seq;
        uint64_t checkpoint_seq; /* 0: no checkpoint yet */
        uint64_t bad_seq;        /* the first record that does not match (0 if the fault is not one record) */
        char message[256];
} AuditVerifyResult;

/* 0 if all is well, -EBADMSG with the result saying what and where, or another negative errno. */
int audit_verify(Store *s, AuditVerifyResult *ret);

/* The checkpoint payload as signed: {"seq": N, "hash": "...", "time": T}. */
int audit_checkpoint_payload(uint64_t seq, const char *hash, usec_t time, char **ret);
