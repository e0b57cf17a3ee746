/* SPDX-License-Identifier: MIT */
/* Audit checkpoints (the chain head signed by an issuer key), the anchor file, and verification of the chain with its
 * checkpoints. Uses the engine's public interface only. */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/crypto-util.h"
#include "common/log.h"
#include "common/strmap.h"
#include "jose/jwk.h"
#include "jose/jws.h"
#include "rotation/audit-internal.h"
#include "rotation/audit.h"
#include "rotation/engine.h"

int audit_checkpoint_payload(uint64_t seq, const char *hash, usec_t time, char **ret) {
        _cleanup_json_ json_t *o = json_pack("{s:I, s:s, s:I}", "seq", (json_int_t) seq, "hash", hash, "time",
                                             (json_int_t) (time / USEC_PER_SEC));
        if (!o)
                return -ENOMEM;
        *ret = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
        return *ret ? 0 : -ENOMEM;
}

int audit_anchor_append(Store *s, const char *path, uint64_t seq) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *line = NULL;
        _cleanup_json_ json_t *o = NULL;
        StoreCheckpoint **l = NULL;
        struct stat st;
        size_t len, done = 0;
        int r;

        if (seq == 0)
                return -EINVAL;
        r = store_checkpoint_list(s, seq - 1, 1, &l, NULL);
        if (r < 0)
                return r;
        if (l[0] && l[0]->seq == seq)
                o = json_pack("{s:I, s:s, s:I, s:s, s:s}", "seq", (json_int_t) seq, "hash", l[0]->hash, "time",
                              (json_int_t) (l[0]->time / USEC_PER_SEC), "kid", l[0]->kid, "jws", l[0]->jws);
        r = !l[0] || l[0]->seq != seq ? -ENOENT : o ? 0 : -ENOMEM;
        store_checkpoint_list_free(l);
        if (r < 0)
                return r;
        line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (!line)
                return -ENOMEM;
        len = strlen(line);
        line[len++] = '\n'; /* over the NUL: written by length */

        fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EINVAL;
        while (done < len) {
                ssize_t n = write(fd, line + done, len - done);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        r = n < 0 ? -errno : -EIO;
                        /* No half line left behind for the next one to follow. */
                        (void) !ftruncate(fd, st.st_size);
                        return r;
                }
                done += (size_t) n;
        }
        if (fsync(fd) < 0)
                return -errno;
        return 0;
}

/* The issuer keyring whose key signs checkpoints: "default" if it is an issuer, else the first issuer by name. */
static Ring *checkpoint_ring(Engine *e) {
        Ring *r = engine_get_ring(e, "default");
        if (r && ring_kind(r) == RING_ISSUER && !ring_disabled(r))
                return r;
        for (size_t i = 0; i < engine_n_rings(e); i++) {
                r = engine_ring_at(e, i);
                if (ring_kind(r) == RING_ISSUER && !ring_disabled(r))
                        return r;
        }
        return NULL;
}

int engine_checkpoint(Engine *e, uint64_t *ret_seq, char ret_hash[STORE_HASH_HEX + 1]) {
        _cleanup_free_ char *payload = NULL, *jws = NULL;
        _cleanup_json_ json_t *header = NULL;
        char hash[STORE_HASH_HEX + 1], kid[STORE_KID_MAX + 1];
        Store *s = engine_store(e);
        uint64_t seq, last = 0;
        Ring *r = checkpoint_ring(e);
        int n;

        if (!r)
                return -ENOKEY;
        n = store_audit_head(s, &seq, hash);
        if (n < 0)
                return n;
        if (seq == 0 || (store_checkpoint_latest(s, &last, NULL, NULL, NULL) >= 0 && last == seq))
                return 0; /* nothing new since the last checkpoint */
        usec_t now = engine_now(e);
        if (last > 0) {
                /* Checkpoints never go back in time (audit_verify() refuses it): a clock stepped back signs at the
                 * latest checkpoint's time. */
                StoreCheckpoint **l = NULL;
                if (store_checkpoint_list(s, last - 1, 1, &l, NULL) >= 0 && l[0])
                        now = MAX(now, l[0]->time);
                store_checkpoint_list_free(l);
        }
        n = audit_checkpoint_payload(seq, hash, now, &payload);
        if (n < 0)
                return n;
        header = json_pack("{s:s}", "typ", KEYD_TYP_AUDIT_CHECKPOINT);
        if (!header)
                return -ENOMEM;
        /* alg and kid are set from the key that signs, under the engine's lock. */
        n = engine_sign_compact(e, ring_name(r), header, false, payload, strlen(payload), 0, &jws, kid);
        if (n < 0)
                return n;
        n = store_begin(s, STORE_SYNCED);
        if (n >= 0)
                n = store_checkpoint_insert(s, seq, hash, now, kid, jws);
        if (n >= 0)
                n = store_commit(s);
        if (n < 0) {
                store_rollback(s);
                return n;
        }
        if (engine_options(e)->on_checkpoint)
                engine_options(e)->on_checkpoint(seq, hash, engine_options(e)->checkpoint_userdata);
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

/* What the walk of the chain collects for the checkpoints, from verified records only. */
typedef struct Walk {
        StoreCheckpoint **cps;              /* ascending seq */
        size_t n_cps, next;                 /* next: the first checkpoint whose record the walk has not reached */
        char (*hashes)[STORE_HASH_HEX + 1]; /* the hash of the record each checkpoint names, "" if not reached */
        AuditKeys keys;                     /* issuer keyrings, and the key.generate records of the checkpoints' kids */
        /* The last audit.prune record walked (prune_seq 0: none): the anchor it prunes to, and its carry. */
        uint64_t prune_seq, prune_anchor_seq;
        char prune_anchor_hash[STORE_HASH_HEX + 1];
        json_t *prune_carry;
        int prune_bad; /* an audit.prune record whose detail is not one */
} Walk;

/* An audit.prune record: what it says (audit-prune.c writes it). */
static void walk_prune(Walk *w, const StoreAudit *rec) {
        _cleanup_json_ json_t *d = rec->detail ? json_loads(rec->detail, 0, NULL) : NULL;
        json_t *seq = json_object_get(d, "anchor_seq"), *carry = json_object_get(d, "carry");
        const char *hash = json_string_value(json_object_get(d, "anchor_hash"));

        if (!json_is_integer(seq) || json_integer_value(seq) <= 0 || !hash || strlen(hash) != STORE_HASH_HEX ||
            !json_is_object(carry)) {
                w->prune_bad = w->prune_bad ?: -EBADMSG;
                return;
        }
        w->prune_seq = rec->seq;
        w->prune_anchor_seq = (uint64_t) json_integer_value(seq);
        memcpy(w->prune_anchor_hash, hash, sizeof w->prune_anchor_hash);
        json_decref(w->prune_carry);
        w->prune_carry = json_incref(carry);
}

static int walk_visit(const StoreAudit *rec, void *userdata) {
        Walk *w = userdata;

        while (w->next < w->n_cps && w->cps[w->next]->seq <= rec->seq) {
                if (w->cps[w->next]->seq == rec->seq)
                        memcpy(w->hashes[w->next], rec->hash, sizeof w->hashes[w->next]);
                w->next++;
        }
        if (streq(rec->action, "audit.prune") && streq(rec->result, "ok"))
                walk_prune(w, rec);
        return audit_keys_visit(&w->keys, rec);
}

/* The public key of a checkpoint's kid, read once for consecutive checkpoints signed by the same key. */
typedef struct KeyCache {
        char kid[STORE_KID_MAX + 1];
        KeydAlg alg;
        EVP_PKEY *pkey;
} KeyCache;

/* One checkpoint: signed by a key keyd generated in an issuer keyring before it, whose stored JWK is the one its kid
 * names, as keyd's checkpoint type, with the key's alg, over this checkpoint's seq, hash and time. */
static int verify_one(Store *s, const StoreCheckpoint *cp, const Generated *g, KeyCache *cache,
                      AuditVerifyResult *res) {
        _cleanup_json_ json_t *claims = NULL;
        unsigned long long seq = cp->seq;
        JoseJws *jws = NULL;
        int r;

        if (!g || g->seq == 0 || g->seq >= cp->seq)
                return verdict(res, 0,
                               "the checkpoint at record %llu is signed by key %s, which keyd did not generate in an "
                               "issuer keyring before it",
                               seq, cp->kid);
        if (!streq(cache->kid, cp->kid)) {
                _cleanup_json_ json_t *jwk = NULL;
                char tp[JOSE_THUMBPRINT_LEN + 1];
                StoreKey *key = NULL;

                EVP_PKEY_free(cache->pkey);
                cache->pkey = NULL;
                cache->kid[0] = 0;
                r = store_key_get_by_kid(s, cp->kid, &key);
                if (r == -ENOENT)
                        return verdict(res, 0, "the checkpoint at record %llu names key %s, which is not in the store",
                                       seq, cp->kid);
                if (r < 0)
                        return r;
                jwk = json_loads(key->jwk, 0, NULL);
                cache->alg = key->alg;
                store_key_free(key);
                if (!jwk || jose_jwk_thumbprint(jwk, tp) < 0 || jose_jwk_to_pkey(jwk, &cache->pkey) < 0)
                        return verdict(res, 0, "the stored public key of %s cannot be read", cp->kid);
                if (!streq(tp, cp->kid))
                        return verdict(res, 0,
                                       "the stored public key of %s has another thumbprint (%s): its JWK was replaced",
                                       cp->kid, tp);
                snprintf(cache->kid, sizeof cache->kid, "%s", cp->kid); /* cp->kid is as long as it is */
        }
        if (g->alg >= 0 && cache->alg != g->alg)
                return verdict(res, 0, "the stored alg of key %s is %s, but keyd generated it for %s", cp->kid,
                               keyd_alg_to_string(cache->alg), keyd_alg_to_string(g->alg));

        if (jose_jws_parse(cp->jws, strlen(cp->jws), &jws) != JOSE_OK)
                return verdict(res, 0, "the checkpoint at record %llu is malformed", seq);
        const char *typ = json_string_value(json_object_get(jws->header, "typ"));
        JoseResult v = JOSE_OK;
        if (!typ || !streq(typ, KEYD_TYP_AUDIT_CHECKPOINT))
                r = verdict(res, 0, "the checkpoint at record %llu has typ %s, not " KEYD_TYP_AUDIT_CHECKPOINT, seq,
                            typ ?: "(none)");
        else if (!jws->kid || !streq(jws->kid, cp->kid))
                r = verdict(res, 0, "the checkpoint at record %llu is stored under key %s but names %s", seq, cp->kid,
                            jws->kid ?: "(none)");
        else if (jws->alg != cache->alg)
                r = verdict(res, 0, "the checkpoint at record %llu has alg %s, not its key's %s", seq,
                            json_string_value(json_object_get(jws->header, "alg")) ?: "(none)",
                            keyd_alg_to_string(cache->alg));
        else if ((v = jose_jws_verify(jws, cache->pkey, cache->alg)) != JOSE_OK ||
                 (v = jose_jws_claims(jws, &claims)) != JOSE_OK)
                r = verdict(res, 0, "the checkpoint at record %llu has a bad signature (%s)", seq,
                            jose_result_to_string(v));
        else
                r = 0;
        jose_jws_free(jws);
        if (r < 0)
                return r;

        json_t *jseq = json_object_get(claims, "seq"), *jhash = json_object_get(claims, "hash"),
               *jtime = json_object_get(claims, "time");
        if (!json_is_integer(jseq) || (uint64_t) json_integer_value(jseq) != cp->seq || !json_is_string(jhash) ||
            !streq(json_string_value(jhash), cp->hash) || !json_is_integer(jtime) ||
            json_integer_value(jtime) != (json_int_t) (cp->time / USEC_PER_SEC))
                return verdict(res, cp->seq, "the checkpoint at record %llu: its signed content does not match it",
                               seq);
        return 0;
}

static void walk_done(Walk *w) {
        store_checkpoint_list_free(w->cps);
        free(w->hashes);
        audit_keys_done(&w->keys);
        json_decref(w->prune_carry);
}

/* Records before the anchor were pruned: only as an audit.prune record of the kept chain says, with the carry it
 * says (the kept chain's checkpoints were verified with it). */
static int verify_pruned(const Walk *w, const StoreAuditAnchor *anchor, AuditVerifyResult *res) {
        _cleanup_json_ json_t *carry = json_loads(anchor->carry, JSON_REJECT_DUPLICATES, NULL);
        unsigned long long seq = anchor->seq;
        bool empty = json_is_object(carry) && json_array_size(json_object_get(carry, "issuers")) == 0 &&
                     json_object_size(json_object_get(carry, "keys")) == 0;

        if (w->prune_bad < 0)
                return verdict(res, w->prune_seq, "an audit.prune record does not say what it pruned");
        if (w->prune_seq == 0)
                return anchor->seq == 0 && empty
                               ? 0
                               : verdict(res, anchor->seq + 1,
                                         "records up to %llu are gone (or the anchor was changed), and no audit.prune "
                                         "record of the chain says so",
                                         seq);
        if (anchor->seq > w->prune_anchor_seq)
                return verdict(res, anchor->seq + 1,
                               "records up to %llu are gone, but the last audit.prune record (%llu) pruned up to %llu",
                               seq, (unsigned long long) w->prune_seq, (unsigned long long) w->prune_anchor_seq);
        if (anchor->seq == w->prune_anchor_seq && !streq(anchor->hash, w->prune_anchor_hash))
                return verdict(res, anchor->seq + 1,
                               "the anchor at record %llu has another hash than the audit.prune record (%llu) says",
                               seq, (unsigned long long) w->prune_seq);
        if (!json_equal(carry, w->prune_carry))
                return verdict(res, 0, "the anchor's carry is not the one the audit.prune record (%llu) says",
                               (unsigned long long) w->prune_seq);
        return 0;
}

int audit_verify(Store *s, AuditVerifyResult *ret) {
        AuditVerifyResult res = { 0 };
        StoreAuditAnchor anchor = { 0 };
        Walk w = { 0 };
        KeyCache cache = { .alg = _KEYD_ALG_INVALID };
        uint64_t bad = 0, head = 0;
        int r, begun;

        /* One snapshot for the anchor, the checkpoints and the walk: a prune meanwhile would look like a cut. */
        begun = store_snapshot_begin(s);
        if (begun < 0)
                return begun;
        r = store_audit_anchor(s, &anchor);
        if (r >= 0)
                r = store_audit_head(s, &res.head_seq, NULL);
        /* Checkpoints first, then the chain: the chain only grows, so the walk reaches every checkpoint read before
         * it unless records were removed. */
        if (r >= 0)
                r = store_checkpoint_list(s, anchor.seq, SIZE_MAX, &w.cps, &w.n_cps);
        if (r >= 0) {
                w.hashes = calloc(w.n_cps + 1, sizeof *w.hashes);
                r = w.hashes ? audit_keys_init(&w.keys) : -ENOMEM;
        }
        for (size_t i = 0; r >= 0 && i < w.n_cps; i++)
                r = audit_keys_want(&w.keys, w.cps[i]->kid);
        /* What the pruned records said of issuer keyrings and their keys. */
        if (r >= 0 && audit_keys_load(&w.keys, anchor.carry) < 0)
                r = verdict(&res, anchor.seq + 1, "the anchor's carry is not one");
        if (r >= 0)
                r = store_audit_walk(s, walk_visit, &w, &head, NULL, &bad);
        if (r == -EBADMSG && !res.message[0])
                r = verdict(&res, bad, "record %llu does not match the chain", (unsigned long long) bad);
        else if (r >= 0) {
                res.head_seq = head;
                res.records = head - anchor.seq;
                res.anchor_seq = anchor.seq;
                r = verify_pruned(&w, &anchor, &res);
        }

        /* Every checkpoint, in order: each covers a record still there with its hash, none goes back in time, each
         * verifies. */
        for (size_t i = 0; r >= 0 && i < w.n_cps; i++) {
                const StoreCheckpoint *cp = w.cps[i];
                unsigned long long seq = cp->seq;
                if (cp->seq > head)
                        r = verdict(&res, head + 1,
                                    "the chain ends at record %llu but checkpoint covers record %llu: records were "
                                    "removed",
                                    (unsigned long long) head, seq);
                else if (!streq(w.hashes[i], cp->hash))
                        r = verdict(&res, cp->seq, "record %llu does not match the checkpoint", seq);
                else
                        r = verify_one(s, cp, audit_keys_generated(&w.keys, cp->kid), &cache, &res);
                if (r >= 0 && i > 0 && cp->time < w.cps[i - 1]->time)
                        r = verdict(&res, 0,
                                    "the checkpoint at record %llu was signed before the one at record %llu: "
                                    "checkpoints went backwards",
                                    seq, (unsigned long long) w.cps[i - 1]->seq);
                if (r >= 0)
                        res.checkpoint_seq = cp->seq;
        }
        EVP_PKEY_free(cache.pkey);
        walk_done(&w);
        store_snapshot_end(s, begun);
        if (r >= 0 && !res.message[0]) {
                char pruned[64] = "";
                if (anchor.seq > 0)
                        (void) snprintf(pruned, sizeof pruned, " from record %llu (those before were pruned)",
                                        (unsigned long long) anchor.seq + 1);
                snprintf(res.message, sizeof res.message, "%llu records verified%s%s", (unsigned long long) res.records,
                         pruned, res.checkpoint_seq ? ", every checkpoint verified" : "");
        }
        store_audit_anchor_done(&anchor);
        if (ret)
                *ret = res;
        return r;
}
