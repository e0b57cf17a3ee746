/* SPDX-License-Identifier: MIT */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>

#include "common/crypto-util.h"
#include "common/log.h"
#include "jose/jwk.h"
#include "jose/jws.h"
#include "rotation/audit.h"
#include "rotation/engine-internal.h"

typedef struct Pending {
        StoreAudit *rec;
        StoreDurability durability;
        int64_t result;
        bool done;
        struct Pending *next;
} Pending;

/* Group commit without a thread of its own: a caller that finds no commit running becomes the leader and commits
 * everything queued so far, its own record included, in one transaction; callers that arrive meanwhile queue and
 * wait for the leader (or become the next one). One caller alone pays one commit and no thread hand-off. */
struct AuditLog {
        Store *store;
        pthread_mutex_t lock;
        pthread_cond_t done;
        Pending *head, *tail;
        bool committing, closed;
        uint64_t commits;
};

#define BATCH_MAX 512

/* One transaction for the whole batch; if any record fails, each goes again alone so one bad record fails alone.
 * Returns the number of transactions committed. */
static unsigned commit_batch(AuditLog *l, Pending *batch) {
        StoreDurability d = STORE_COMMITTED;
        unsigned commits = 0;
        int r;

        for (Pending *p = batch; p; p = p->next)
                if (p->durability == STORE_SYNCED)
                        d = STORE_SYNCED;
        r = store_begin(l->store, d);
        for (Pending *p = batch; r >= 0 && p; p = p->next)
                r = store_audit_append(l->store, p->rec);
        if (r >= 0)
                r = store_commit(l->store);
        if (r >= 0) {
                for (Pending *p = batch; p; p = p->next)
                        p->result = (int64_t) p->rec->seq;
                return 1;
        }
        store_rollback(l->store);
        for (Pending *p = batch; p; p = p->next) {
                r = store_begin(l->store, p->durability);
                if (r >= 0)
                        r = store_audit_append(l->store, p->rec);
                if (r >= 0)
                        r = store_commit(l->store);
                if (r < 0)
                        store_rollback(l->store);
                else
                        commits++;
                p->result = r < 0 ? r : (int64_t) p->rec->seq;
        }
        return commits;
}

int audit_log_open(const char *db_path, AuditLog **ret) {
        AuditLog *l = calloc(1, sizeof *l);
        int r;

        if (!l)
                return -ENOMEM;
        r = store_open(db_path, 0, &l->store);
        if (r < 0) {
                free(l);
                return r;
        }
        pthread_mutex_init(&l->lock, NULL);
        pthread_cond_init(&l->done, NULL);
        *ret = l;
        return 0;
}

AuditLog *audit_log_close(AuditLog *l) {
        if (!l)
                return NULL;
        pthread_mutex_lock(&l->lock);
        l->closed = true;
        while (l->committing || l->head)
                pthread_cond_wait(&l->done, &l->lock);
        pthread_mutex_unlock(&l->lock);
        store_close(l->store);
        pthread_mutex_destroy(&l->lock);
        pthread_cond_destroy(&l->done);
        free(l);
        return NULL;
}

int64_t audit_log_write(AuditLog *l, StoreAudit *rec, StoreDurability durability) {
        Pending p = { .rec = rec, .durability = durability };

        pthread_mutex_lock(&l->lock);
        if (l->closed) {
                pthread_mutex_unlock(&l->lock);
                return -ESHUTDOWN;
        }
        if (l->tail)
                l->tail->next = &p;
        else
                l->head = &p;
        l->tail = &p;
        while (!p.done) {
                if (l->committing) {
                        pthread_cond_wait(&l->done, &l->lock);
                        continue;
                }
                /* Lead: take up to BATCH_MAX queued records (ours is among them, or comes in a later batch). */
                Pending *batch = l->head, *last = batch;
                for (int n = 1; last->next && n < BATCH_MAX; n++)
                        last = last->next;
                l->head = last->next;
                if (!l->head)
                        l->tail = NULL;
                last->next = NULL;
                l->committing = true;
                pthread_mutex_unlock(&l->lock);

                unsigned commits = commit_batch(l, batch);

                pthread_mutex_lock(&l->lock);
                for (Pending *q = batch; q;) {
                        Pending *n = q->next;
                        q->done = true;
                        q = n;
                }
                l->commits += commits;
                l->committing = false;
                pthread_cond_broadcast(&l->done);
        }
        pthread_mutex_unlock(&l->lock);
        return p.result;
}

uint64_t audit_log_commits(AuditLog *l) {
        pthread_mutex_lock(&l->lock);
        uint64_t n = l->commits;
        pthread_mutex_unlock(&l->lock);
        return n;
}

int audit_checkpoint_payload(uint64_t seq, const char *hash, usec_t time, char **ret) {
        _cleanup_json_ json_t *o = json_pack("{s:I, s:s, s:I}", "seq", (json_int_t) seq, "hash", hash, "time",
                                             (json_int_t) (time / USEC_PER_SEC));
        if (!o)
                return -ENOMEM;
        *ret = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
        return *ret ? 0 : -ENOMEM;
}

/* The issuer keyring whose key signs checkpoints: "default" if it is an issuer, else the first issuer by name. */
static Ring *checkpoint_ring(Engine *e) {
        Ring *r = engine_get_ring(e, "default");
        if (r && r->kind == RING_ISSUER && !r->disabled)
                return r;
        for (size_t i = 0; i < e->n_rings; i++)
                if (e->rings[i]->kind == RING_ISSUER && !e->rings[i]->disabled)
                        return e->rings[i];
        return NULL;
}

int engine_checkpoint(Engine *e, uint64_t *ret_seq, char ret_hash[STORE_HASH_HEX + 1]) {
        _cleanup_free_ char *payload = NULL, *input = NULL;
        _cleanup_json_ json_t *header = NULL;
        char hash[STORE_HASH_HEX + 1], kid[STORE_KID_MAX + 1];
        uint8_t sig[HSM_SIG_MAX];
        uint64_t seq, last = 0;
        KeydAlg alg;
        size_t len;
        Ring *r = checkpoint_ring(e);
        int n;

        if (!r)
                return -ENOKEY;
        n = store_audit_head(e->store, &seq, hash);
        if (n < 0)
                return n;
        if (seq == 0 || (store_checkpoint_latest(e->store, &last, NULL, NULL, NULL) >= 0 && last == seq))
                return 0; /* nothing new since the last checkpoint */
        usec_t now = engine_now(e);
        n = audit_checkpoint_payload(seq, hash, now, &payload);
        if (n < 0)
                return n;
        pthread_rwlock_rdlock(&e->lock);
        alg = r->signer ? hsm_key_alg(r->signer) : _KEYD_ALG_INVALID;
        memcpy(kid, r->signer_kid, sizeof kid);
        pthread_rwlock_unlock(&e->lock);
        if (alg < 0)
                return -ENOKEY;
        header = json_pack("{s:s, s:s, s:s}", "alg", keyd_alg_to_string(alg), "kid", kid, "typ",
                           "keyd-audit-checkpoint+jwt");
        if (!header)
                return -ENOMEM;
        n = jose_jws_signing_input(header, payload, strlen(payload), &input, &len);
        if (n < 0)
                return n;
        n = engine_sign(e, r->name, input, len, sig, sizeof sig, kid, NULL);
        if (n < 0)
                return n;
        n = jose_jws_append_signature(input, len, sig, (size_t) n);
        if (n < 0)
                return n;
        n = store_begin(e->store, STORE_SYNCED);
        if (n >= 0)
                n = store_checkpoint_insert(e->store, seq, hash, now, kid, input);
        if (n >= 0)
                n = engine_commit(e);
        if (n < 0) {
                engine_rollback(e);
                return n;
        }
        if (ret_seq)
                *ret_seq = seq;
        if (ret_hash)
                memcpy(ret_hash, hash, sizeof hash);
        return 1;
}

_printf_(3, 4) static int verdict(AuditVerifyResult *res, uint64_t bad, const char *fmt, ...) {
        va_list ap;
        res->bad_seq = bad;
        va_start(ap, fmt);
        vsnprintf(res->message, sizeof res->message, fmt, ap);
        va_end(ap);
        return -EBADMSG;
}

static int verify_checkpoint(Store *s, AuditVerifyResult *res) {
        _cleanup_free_ char *cp_hash = NULL, *cp_kid = NULL, *cp_jws = NULL;
        _cleanup_json_ json_t *jwk = NULL, *claims = NULL;
        _cleanup_pkey_ EVP_PKEY *pkey = NULL;
        StoreKey *key = NULL;
        StoreAudit **rec = NULL;
        JoseJws *jws = NULL;
        size_t n = 0;
        uint64_t cp_seq;
        int r;

        r = store_checkpoint_latest(s, &cp_seq, &cp_hash, &cp_kid, &cp_jws);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        res->checkpoint_seq = cp_seq;
        if (res->head_seq < cp_seq)
                return verdict(res, res->head_seq + 1,
                               "the chain ends at record %llu but checkpoint covers record %llu: records were removed",
                               (unsigned long long) res->head_seq, (unsigned long long) cp_seq);
        r = store_audit_list(s, cp_seq - 1, 1, &rec, &n);
        if (r < 0)
                return r;
        bool same = n == 1 && rec[0]->seq == cp_seq && streq(rec[0]->hash, cp_hash);
        store_audit_list_free(rec);
        if (!same)
                return verdict(res, cp_seq, "record %llu does not match the checkpoint",
                               (unsigned long long) cp_seq);

        r = store_key_get_by_kid(s, cp_kid, &key);
        if (r < 0)
                return verdict(res, 0, "the checkpoint's key %s is not in the store", cp_kid);
        jwk = json_loads(key->jwk, 0, NULL);
        KeydAlg alg = key->alg;
        store_key_free(key);
        if (!jwk || jose_jwk_to_pkey(jwk, &pkey) < 0)
                return verdict(res, 0, "the checkpoint's key %s cannot be read", cp_kid);
        if (jose_jws_parse(cp_jws, strlen(cp_jws), &jws) != JOSE_OK)
                return verdict(res, 0, "the checkpoint at record %llu is malformed", (unsigned long long) cp_seq);
        JoseResult v = jose_jws_verify(jws, pkey, alg);
        if (v == JOSE_OK)
                v = jose_jws_claims(jws, &claims);
        jose_jws_free(jws);
        if (v != JOSE_OK)
                return verdict(res, 0, "the checkpoint at record %llu has a bad signature (%s)",
                               (unsigned long long) cp_seq, jose_result_to_string(v));
        json_t *jseq = json_object_get(claims, "seq"), *jhash = json_object_get(claims, "hash");
        if (!json_is_integer(jseq) || (uint64_t) json_integer_value(jseq) != cp_seq || !json_is_string(jhash) ||
            !streq(json_string_value(jhash), cp_hash))
                return verdict(res, cp_seq, "the checkpoint's signed content does not match its record");
        return 0;
}

int audit_verify(Store *s, AuditVerifyResult *ret) {
        AuditVerifyResult res = { 0 };
        char head_hash[STORE_HASH_HEX + 1];
        uint64_t bad = 0;
        int r;

        r = store_audit_head(s, &res.head_seq, head_hash);
        if (r < 0)
                return r;
        res.records = res.head_seq;
        r = store_audit_verify(s, &bad);
        if (r == -EBADMSG)
                r = verdict(&res, bad, "record %llu does not match the chain", (unsigned long long) bad);
        else if (r >= 0)
                r = verify_checkpoint(s, &res);
        if (r >= 0 && !res.message[0])
                snprintf(res.message, sizeof res.message, "%llu records verified%s",
                         (unsigned long long) res.records, res.checkpoint_seq ? ", checkpoint verified" : "");
        if (ret)
                *ret = res;
        return r;
}
