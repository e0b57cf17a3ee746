/* SPDX-License-Identifier: MIT */
/* Retention: record a range of the log as exported and sealed, and prune what exports sealed. Both run on a
 * connection of their own (an API thread's), not on the event loop: a prune of millions of records takes a while, in
 * short transactions that let the group commit and the engine write in between. Needs the store only. */
#include <stdio.h>
#include <time.h>

#include "common/crypto-util.h"
#include "common/macro.h"
#include "rotation/audit-internal.h"
#include "rotation/audit.h"
#include "rotation/policy.h"

#define PRUNE_BATCH 5000                     /* records removed per transaction */
#define PRUNE_PAUSE_NSEC (20 * 1000 * 1000) /* between two: other writers' turn */

_printf_(3, 4) static int refuse(char *message, int r, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        (void) vsnprintf(message, AUDIT_MESSAGE_MAX, fmt, ap);
        va_end(ap);
        return r;
}

/* One audit record in the open transaction, built as every record is. */
static int append(Store *s, const Actor *a, usec_t now, const char *action, const char *fmt, ...) {
        AuditRecord rec;
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = audit_record_build(&rec, a, now, action, NULL, NULL, "ok", fmt, ap);
        va_end(ap);
        if (r < 0)
                return r;
        r = store_audit_append(s, &rec.rec);
        audit_record_done(&rec);
        return r;
}

int audit_export_seal(Store *s, const StoreAuditExport *e, const Actor *a, usec_t now,
                      char message[AUDIT_MESSAGE_MAX]) {
        StoreCheckpoint **cps = NULL;
        StoreAudit **recs = NULL;
        uint64_t first, last;
        size_t n = 0;
        int r;

        message[0] = 0;
        r = store_begin(s, STORE_SYNCED);
        if (r < 0)
                return r;
        r = store_audit_range(s, &first, &last);
        if (r >= 0 && (e->first < first || e->first > e->last || e->last > e->checkpoint_seq ||
                       e->checkpoint_seq > last))
                r = refuse(message, -EINVAL,
                           "first %llu, last %llu, checkpoint %llu: the log holds records %llu to %llu; first <= last "
                           "<= checkpoint_seq",
                           (unsigned long long) e->first, (unsigned long long) e->last,
                           (unsigned long long) e->checkpoint_seq, (unsigned long long) first,
                           (unsigned long long) last);
        if (r >= 0)
                r = store_audit_list(s, e->last - 1, 1, &recs, &n);
        if (r >= 0 && (n != 1 || recs[0]->seq != e->last || !streq(recs[0]->hash, e->last_hash)))
                r = refuse(message, -EBADMSG, "record %llu does not have the hash %s", (unsigned long long) e->last,
                           e->last_hash);
        if (r >= 0)
                r = store_checkpoint_list(s, e->checkpoint_seq - 1, 1, &cps, &n);
        if (r >= 0 && (n != 1 || cps[0]->seq != e->checkpoint_seq))
                r = refuse(message, -ENOENT, "no checkpoint at record %llu", (unsigned long long) e->checkpoint_seq);
        store_audit_list_free(recs);
        store_checkpoint_list_free(cps);
        if (r >= 0)
                r = store_audit_export_insert(s, e);
        if (r >= 0)
                r = append(s, a, now, "audit.export", "{s:I, s:I, s:I, s:s, s:s}", "first", (json_int_t) e->first,
                           "last", (json_int_t) e->last, "checkpoint_seq", (json_int_t) e->checkpoint_seq, "last_hash",
                           e->last_hash, "sha256", e->sha256);
        if (r >= 0)
                r = store_commit(s);
        if (r < 0)
                store_rollback(s);
        return r;
}

/* What the walk over the records to prune checks and collects. */
typedef struct PruneWalk {
        AuditKeys keys;
        StoreAuditExport *exports; /* sealing the range: the hash of each one's last record is checked */
        size_t n_exports;
        uint64_t bad_export;       /* the last of an export whose record has another hash; 0: none */
} PruneWalk;

static int prune_visit(const StoreAudit *rec, void *userdata) {
        PruneWalk *w = userdata;
        for (size_t i = 0; i < w->n_exports; i++)
                if (w->exports[i].last == rec->seq && !streq(w->exports[i].last_hash, rec->hash) && !w->bad_export)
                        w->bad_export = rec->seq;
        return audit_keys_visit(&w->keys, rec);
}

/* The kids whose key.generate record the kept chain may need: those of the kept checkpoints, and of the keys of
 * issuer keyrings that sign or will sign checkpoints (active, next; and retired, which may have signed one that is
 * not written yet). Expired and revoked keys sign nothing more. */
static int want_kids(Store *s, uint64_t before, AuditKeys *k) {
        StoreCheckpoint **cps = NULL;
        StoreKeyring **rings = NULL;
        size_t n = 0;
        int r;

        r = store_checkpoint_list(s, before - 1, SIZE_MAX, &cps, &n);
        for (size_t i = 0; r >= 0 && i < n; i++)
                r = audit_keys_want(k, cps[i]->kid);
        store_checkpoint_list_free(cps);
        if (r >= 0)
                r = store_keyring_list(s, &rings, &n);
        for (size_t i = 0; r >= 0 && i < n; i++) {
                StoreKey **keys = NULL;
                size_t nk = 0;
                if (!streq(rings[i]->kind, ring_kind_to_string(RING_ISSUER)))
                        continue;
                r = store_key_list(s, rings[i]->name, &keys, &nk);
                for (size_t j = 0; r >= 0 && j < nk; j++)
                        if (keys[j]->state == KEY_STATE_ACTIVE || keys[j]->state == KEY_STATE_NEXT ||
                            keys[j]->state == KEY_STATE_RETIRED)
                                r = audit_keys_want(k, keys[j]->kid);
                store_key_list_free(keys);
        }
        store_keyring_list_free(rings);
        return r;
}

/* Check what may be pruned and what the kept chain will need: *ret_carry, *ret_hash (record before - 1's). */
static int prune_plan(Store *s, uint64_t before, uint64_t first, const StoreAuditAnchor *anchor, json_t **ret_carry,
                      char ret_hash[STORE_HASH_HEX + 1], char message[AUDIT_MESSAGE_MAX]) {
        PruneWalk w = { 0 };
        uint64_t sealed, head = 0, bad = 0;
        int r;

        r = store_audit_sealed_end(s, first, &sealed);
        if (r < 0)
                return r;
        if (sealed < before - 1)
                return refuse(message, -EPERM,
                              "records %llu to %llu are not in an exported segment (exported up to %llu): export them "
                              "first",
                              (unsigned long long) sealed + 1, (unsigned long long) before - 1,
                              (unsigned long long) sealed);
        r = store_audit_export_list(s, first, &w.exports, &w.n_exports);
        if (r >= 0)
                r = audit_keys_init(&w.keys);
        if (r >= 0)
                r = want_kids(s, before, &w.keys);
        if (r >= 0 && audit_keys_load(&w.keys, anchor->carry) < 0)
                r = refuse(message, -EBADMSG, "the anchor's carry is not one");
        /* The records to prune, verified, from the anchor: never remove a chain that does not verify. */
        if (r >= 0) {
                r = store_audit_walk_until(s, before - 1, prune_visit, &w, &head, ret_hash, &bad);
                if (r == -EBADMSG)
                        r = refuse(message, r, "record %llu does not match the chain: nothing pruned",
                                   (unsigned long long) bad);
        }
        if (r >= 0 && head != before - 1)
                r = refuse(message, -EBADMSG, "the chain ends at record %llu before %llu", (unsigned long long) head,
                           (unsigned long long) before - 1);
        if (r >= 0 && w.bad_export)
                r = refuse(message, -EBADMSG,
                           "record %llu has another hash than when it was exported: the log changed; nothing pruned",
                           (unsigned long long) w.bad_export);
        if (r >= 0)
                r = audit_keys_dump(&w.keys, ret_carry);
        free(w.exports);
        audit_keys_done(&w.keys);
        return r;
}

int audit_prune(Store *s, uint64_t before, const Actor *a, usec_t now, AuditPruneResult *ret) {
        _cleanup_json_ json_t *carry = NULL;
        _cleanup_free_ char *carry_text = NULL;
        StoreAuditAnchor anchor = { 0 };
        AuditPruneResult res = { 0 };
        char hash[STORE_HASH_HEX + 1];
        uint64_t first, last, first_again, n;
        int r, begun;

        if (before == 0 || before > INT64_MAX)
                return -EINVAL;
        /* Plan in one snapshot. */
        begun = store_snapshot_begin(s);
        if (begun < 0)
                return begun;
        r = store_audit_range(s, &first, &last);
        if (r >= 0)
                r = store_audit_anchor(s, &anchor);
        if (r >= 0 && before > last)
                r = refuse(res.message, -EINVAL, "before %llu: the last record (%llu) is kept, before is at most it",
                           (unsigned long long) before, (unsigned long long) last);
        bool nothing = r >= 0 && (last == 0 || before <= first);
        if (r >= 0 && !nothing)
                r = prune_plan(s, before, first, &anchor, &carry, hash, res.message);
        store_snapshot_end(s, begun);
        res.first = first;
        res.anchor_seq = anchor.seq;
        memcpy(res.anchor_hash, anchor.hash, sizeof res.anchor_hash);
        store_audit_anchor_done(&anchor);
        if (r < 0 || nothing) {
                if (r >= 0)
                        (void) snprintf(res.message, sizeof res.message, "nothing before record %llu is left to prune",
                                        (unsigned long long) before);
                if (ret)
                        *ret = res;
                return r;
        }

        /* The record first, with the carry, synced: a prune cut short by a crash is still announced, and the kept
         * chain verifies at every step of it. */
        carry_text = json_dumps(carry, JSON_COMPACT | JSON_SORT_KEYS);
        if (!carry_text)
                return -ENOMEM;
        r = store_begin(s, STORE_SYNCED);
        if (r >= 0)
                r = store_audit_range(s, &first_again, NULL);
        if (r >= 0 && first_again != first)
                r = refuse(res.message, -EAGAIN, "the log was pruned meanwhile: nothing pruned");
        if (r >= 0)
                r = append(s, a, now, "audit.prune", "{s:I, s:I, s:I, s:s, s:O}", "before", (json_int_t) before,
                           "first", (json_int_t) first, "anchor_seq", (json_int_t) before - 1, "anchor_hash", hash,
                           "carry", carry);
        if (r >= 0)
                r = store_audit_anchor_set_carry(s, carry_text);
        if (r >= 0)
                r = store_commit(s);
        if (r < 0) {
                store_rollback(s);
                if (ret)
                        *ret = res;
                return r;
        }
        (void) store_audit_head(s, &res.record_seq, NULL);

        /* Then the records, a batch at a time, each batch synced with the anchor it leaves. */
        do {
                r = store_begin(s, STORE_SYNCED);
                if (r >= 0)
                        r = store_audit_prune_step(s, before, PRUNE_BATCH, now, &n);
                if (r >= 0)
                        r = store_commit(s);
                if (r < 0) {
                        store_rollback(s);
                        break;
                }
                res.pruned += n;
                if (n > 0)
                        (void) nanosleep(&(struct timespec){ .tv_nsec = PRUNE_PAUSE_NSEC }, NULL);
        } while (n > 0);
        if (r >= 0) {
                res.anchor_seq = before - 1;
                memcpy(res.anchor_hash, hash, sizeof res.anchor_hash);
                res.first = before;
        } else
                (void) snprintf(res.message, sizeof res.message,
                                "%llu records pruned, then: %s; run the prune again to finish it",
                                (unsigned long long) res.pruned, store_last_error(s));
        if (ret)
                *ret = res;
        return r;
}
