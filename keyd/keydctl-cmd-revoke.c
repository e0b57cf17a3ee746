/* SPDX-License-Identifier: MIT */
/* keydctl: revoke and rekey-all, the emergency commands. Both are run again by operators who do not know how far an
 * earlier run got, so a key revoked already is reported as such (with when), never as a failure. After a revocation
 * they say what verifiers see: the key that signs now, and when the revoked key is out of every JWKS cache. */
#include <time.h>

#include "common/parse-util.h"
#include "common/utf8.h"
#include "keyd/keydctl-internal.h"
#include "rotation/jwks.h"
#include "rotation/lifecycle.h"

#define REASON_TEXT_MAX 256 /* bytes, keyd's limit of "comment" */

/* --reason: a reason code, then free text for the audit log if any ("key_compromise: INC-4711", "superseded
 * planned move"). Without a code first: dflt, and all of arg is the text; a usage error when dflt is
 * _REVOKE_REASON_INVALID. *ret_text is NULL when there is no text. */
static int parse_reason(const char *arg, RevokeReason dflt, RevokeReason *ret_code, const char **ret_text) {
        size_t len = strcspn(arg, ": \t");
        RevokeReason code = _REVOKE_REASON_INVALID;
        const char *text = arg;

        for (RevokeReason i = 0; i < _REVOKE_REASON_MAX; i++)
                if (strlen(revoke_reason_to_string(i)) == len && strncmp(arg, revoke_reason_to_string(i), len) == 0)
                        code = i;
        if (code >= 0) {
                text = arg + len;
                text += strspn(text, ": \t");
        } else if (dflt >= 0)
                code = dflt;
        else
                return ctl_error(KEYDCTL_ERR_USAGE,
                                 "--reason: '%s' does not start with a reason code: " REVOKE_REASONS_TEXT
                                 " (free text may follow: --reason 'key_compromise: INC-4711')",
                                 arg);
        if (strlen(text) > REASON_TEXT_MAX)
                return ctl_error(KEYDCTL_ERR_USAGE, "--reason: the text after the code is longer than %d bytes",
                                 REASON_TEXT_MAX);
        *ret_code = code;
        *ret_text = *text ? text : NULL;
        return 0;
}

static const json_t *ring_key(const json_t *ring, const char *kid) {
        const json_t *k;
        size_t i;

        json_array_foreach(json_object_get(ring, "keys"), i, k)
                if (streq_ptr(json_str(k, "kid"), kid))
                        return k;
        return NULL;
}

static int key_time(const json_t *key, const char *field, int64_t *ret) {
        return parse_rfc3339(json_str(key, field), ret);
}

/* The keyring's prepublish in seconds, from its policy as keyd sends it; -EINVAL without one. */
static int ring_prepublish(const json_t *ring, int64_t *ret) {
        return parse_policy_duration(json_object_get(json_object_get(ring, "policy"), "prepublish"), ret);
}

/* The JWKS max-age keyd gave a moment before t (rotation/jwks.c, with the keyring's policy as it is now): shorter
 * while a revocation before t is recent. */
static unsigned max_age_before(const json_t *ring, int64_t prepublish, int64_t t) {
        Policy p = { .prepublish = (usec_t) prepublish * USEC_PER_SEC };
        int64_t last = 0, at;
        const json_t *k;
        size_t i;

        json_array_foreach(json_object_get(ring, "keys"), i, k)
                if (key_time(k, "revoked_at", &at) >= 0 && at < t)
                        last = MAX(last, at);
        return jwks_max_age(&p, last > 0 ? (usec_t) last * USEC_PER_SEC : 0, (usec_t) t * USEC_PER_SEC);
}

/* When every verifier's cache has dropped key, revoked at revoked: a JWKS fetched at t before then held the key for
 * the max-age keyd gave at t, so the latest t + max-age(t) since the key was published. max-age only changes at a
 * revocation (down to JWKS_REVOCATION_MAX_AGE) and when its window ends (back up): those times and the revocation
 * itself are the candidates. An earlier revocation in the same run (rekey-all) shortened max-age for the later ones,
 * but not in the caches filled before it. Returns the time, and the max-age that decides it. */
static int64_t caches_clear_at(const json_t *ring, const json_t *key, int64_t prepublish, int64_t revoked,
                               unsigned *ret_max_age) {
        int64_t published = 0, best = revoked + max_age_before(ring, prepublish, revoked), at;
        unsigned age = (unsigned) (best - revoked);
        const json_t *k;
        size_t i;

        (void) key_time(key, "publish_at", &published);
        json_array_foreach(json_object_get(ring, "keys"), i, k) {
                int64_t cand[2];
                if (key_time(k, "revoked_at", &at) < 0 || at > revoked)
                        continue;
                cand[0] = at;
                cand[1] = at + (int64_t) (JWKS_REVOCATION_WINDOW / USEC_PER_SEC);
                for (size_t j = 0; j < ELEMENTSOF(cand); j++) {
                        unsigned a = max_age_before(ring, prepublish, cand[j]);
                        if (cand[j] < published || cand[j] >= revoked || cand[j] + (int64_t) a <= best)
                                continue;
                        best = cand[j] + a;
                        age = a;
                }
        }
        *ret_max_age = age;
        return best;
}

/* What verifiers see after revocations in ring, for people and for --json: the key that signs now, when it was
 * published (and whether that was less than prepublish before now: verifiers may not have it yet, until when), and
 * when the revoked keys (kids, n of them) are out of every JWKS cache. now is keyd's time of the revocation just made
 * (its clock decides), or the local time. Members set in o: "signing", "caches_clear_at" and "jwks_max_age". */
static int verifier_view(const json_t *ring, const char *const *kids, size_t n, int64_t now, json_t *o) {
        const json_t *active = keyring_key_in_state(ring, "active");
        bool published = json_is_true(json_object_get(json_object_get(ring, "policy"), "publish"));
        int64_t prepublish, clear = 0, pub;
        unsigned age = 0;
        char buf[32];
        json_t *signing = json_null();

        if (ring_prepublish(ring, &prepublish) < 0)
                prepublish = -1;
        for (size_t i = 0; published && prepublish >= 0 && i < n; i++) {
                const json_t *k = ring_key(ring, kids[i]);
                int64_t revoked, t;
                unsigned a;
                if (!k || key_time(k, "revoked_at", &revoked) < 0)
                        continue;
                t = caches_clear_at(ring, k, prepublish, revoked, &a);
                if (t > clear) {
                        clear = t;
                        age = a;
                }
        }
        if (active && json_str(active, "kid")) {
                bool recent = false;
                int64_t have_by = 0;
                if (key_time(active, "publish_at", &pub) >= 0 && prepublish >= 0) {
                        recent = now - pub < prepublish;
                        have_by = pub + max_age_before(ring, prepublish, pub);
                }
                signing = json_pack("{s:s, s:s?, s:b, s:o}", "kid", json_str(active, "kid"), "publish_at",
                                    json_str(active, "publish_at"), "published_recently", recent && published,
                                    "verifiers_have_it_by",
                                    recent && published ? json_string(format_time(buf, sizeof buf, have_by))
                                                        : json_null());
        }
        if (!signing || json_object_set_new(o, "signing", signing) < 0 ||
            json_object_set_new(o, "caches_clear_at",
                                clear > 0 ? json_string(format_time(buf, sizeof buf, clear)) : json_null()) < 0 ||
            json_object_set_new(o, "jwks_max_age", clear > 0 ? json_integer(age) : json_null()) < 0)
                return -ENOMEM;
        return 0;
}

/* verifier_view() for people; indent before each line; what names the revoked keys ("the revoked key"). */
static void print_verifier_view(const json_t *ring, const json_t *o, const char *indent, const char *what) {
        const json_t *signing = json_object_get(o, "signing");
        const char *name = json_str(ring, "name") ?: "?";
        char clean[3][256], span[32];
        int64_t prepublish = 0;

        if (json_is_object(signing))
                printf("%sSigning key:      %s, published %s\n", indent,
                       sanitize(json_str(signing, "kid"), clean[0], sizeof clean[0]),
                       sanitize(json_str(signing, "publish_at") ?: "?", clean[1], sizeof clean[1]));
        else if (json_is_true(json_object_get(ring, "disabled")))
                printf("%sSigning key:      none: keyring %s is disabled\n", indent,
                       sanitize(name, clean[0], sizeof clean[0]));
        else
                printf("%sSigning key:      none yet (keyd is repairing the keyring: keydctl keyring show %s)\n",
                       indent, sanitize(name, clean[0], sizeof clean[0]));
        if (!json_is_true(json_object_get(json_object_get(ring, "policy"), "publish")))
                printf("%sVerifier caches:  none: keyring %s publishes no JWKS\n", indent,
                       sanitize(name, clean[0], sizeof clean[0]));
        else if (json_str(o, "caches_clear_at"))
                printf("%sVerifier caches:  every JWKS cache drops %s by %s (max-age %s)\n", indent, what,
                       sanitize(json_str(o, "caches_clear_at"), clean[0], sizeof clean[0]),
                       format_span(span, sizeof span, json_integer_value(json_object_get(o, "jwks_max_age"))));
        if (json_is_true(json_object_get(signing, "published_recently"))) {
                (void) ring_prepublish(ring, &prepublish);
                ctl_error(0,
                          "warning: keyring %s: signing key %s was published less than prepublish (%s) ago: "
                          "verifiers that fetched the JWKS before may refuse its tokens until %s",
                          name, json_str(signing, "kid"), format_span(span, sizeof span, prepublish),
                          json_str(signing, "verifiers_have_it_by") ?: "?");
        }
}

static int64_t now_seconds(void) {
        return (int64_t) (now_realtime() / USEC_PER_SEC);
}

/* keyd's answer to a revocation that was done already, or to a key that is gone (404: expired meanwhile). */
static const long revoke_quiet[] = { 404, 409, 0 };

/* A key that expired: keyd publishes and accepts it no more, and has no key of that kid to revoke. Not an error:
 * what the operator wants of it is done. */
static int show_expired(Ctl *c, const char *name, const json_t *key) {
        _cleanup_json_ json_t *out = NULL;
        char clean[3][256];

        if (c->json) {
                out = json_pack("{s:s?, s:s, s:s, s:s?, s:b}", "kid", json_str(key, "kid"), "keyring", name, "state",
                                "expired", "expire_at", json_str(key, "expire_at"), "already", true);
                if (!out)
                        return OOM();
                print_json(out);
        } else
                printf("Key %s of keyring %s expired at %s: keyd publishes and accepts it no more; nothing to "
                       "revoke.\n",
                       sanitize(json_str(key, "kid") ?: "?", clean[0], sizeof clean[0]),
                       sanitize(name, clean[1], sizeof clean[1]),
                       sanitize(json_str(key, "expire_at") ?: "?", clean[2], sizeof clean[2]));
        return 0;
}

int verb_revoke(Ctl *c, const Verb *v, int argc, char **argv) {
        _cleanup_json_ json_t *all = NULL, *body = NULL, *reply = NULL, *ring = NULL, *out = NULL;
        _cleanup_free_ char *path = NULL;
        const json_t *ring0, *key;
        const char *reason = NULL, *text = NULL, *kid, *name, *state;
        char clean[4][256];
        RevokeReason code;
        int64_t now;
        bool already;
        int r;

        r = ctl_parse_value(c, v, argc, argv, "reason", &reason, 1, 1);
        if (r != CTL_PARSED)
                return r > 0 ? 0 : r;
        if (!reason)
                return ctl_error(KEYDCTL_ERR_USAGE, "revoke needs --reason " REVOKE_REASONS_TEXT);
        r = parse_reason(reason, _REVOKE_REASON_INVALID, &code, &text);
        if (r < 0)
                return r;
        r = ctl_resolve_kid(c, argv[optind], &all, &ring0, &key);
        if (r < 0)
                return r;
        kid = json_str(key, "kid");
        name = json_str(ring0, "name");
        state = json_str(key, "state") ?: "?";
        if (!name)
                return ctl_error(KEYDCTL_ERR_UNREACHABLE, "keyd's reply has a keyring without a name");

        /* Expired: out of the JWKS and refused by verify already; keyd has no such key to revoke (404). */
        if (streq(state, "expired"))
                return show_expired(c, name, key);
        already = streq(state, "revoked");
        r = 0;
        if (!already) {
                path = ctl_path("/v1/keys/", kid, "/revoke");
                body = json_pack("{s:s}", "reason", revoke_reason_to_string(code));
                if (!path || !body)
                        return OOM();
                if (text && json_object_set_new(body, "comment", json_string(text)) < 0)
                        return ctl_error(KEYDCTL_ERR_USAGE, "--reason: the text is not UTF-8");
                r = ctl_call_quiet(c, "POST", path, body, revoke_quiet, &reply);
                if (r < 0)
                        return r;
                /* 409: revoked meanwhile (by another operator, or an earlier run that timed out); 404: expired
                 * meanwhile. The keyring as it is now says which. */
                already = r > 0;
        }
        /* Revoked before this run: the listing says all there is. Else the keyring as the revocation left it. */
        if (r > 0 || !already) {
                r = ctl_keyring_call(c, "GET", name, NULL, NULL, &ring);
                if (r < 0)
                        return r;
                ring0 = ring;
        }
        key = ring_key(ring0, kid);
        if (key && streq_ptr(json_str(key, "state"), "expired"))
                return show_expired(c, name, key);
        if (!key || !streq_ptr(json_str(key, "state"), "revoked"))
                return ctl_error(KEYDCTL_ERR_REFUSED, "key %s of keyring %s is %s, not revoked", kid, name,
                                 key ? json_str(key, "state") ?: "?" : "gone");
        if (already || key_time(key, "revoked_at", &now) < 0)
                now = now_seconds();

        out = json_pack("{s:s, s:s, s:s, s:s?, s:s?, s:b}", "kid", kid, "keyring", name, "state", "revoked",
                        "revoked_at", json_str(key, "revoked_at"), "reason", json_str(key, "reason"), "already",
                        already);
        if (!out || (!already && text && json_object_set_new(out, "comment", json_string(text)) < 0) ||
            verifier_view(ring0, &kid, 1, now, out) < 0)
                return OOM();
        if (c->json) {
                print_json(out);
                return 0;
        }
        if (already)
                printf("Key %s of keyring %s was already revoked at %s (%s).\n",
                       sanitize(kid, clean[0], sizeof clean[0]), sanitize(name, clean[1], sizeof clean[1]),
                       sanitize(json_str(key, "revoked_at") ?: "?", clean[2], sizeof clean[2]),
                       sanitize(json_str(key, "reason") ?: "no reason", clean[3], sizeof clean[3]));
        else
                printf("Revoked key %s of keyring %s at %s (%s%s%s).\n", sanitize(kid, clean[0], sizeof clean[0]),
                       sanitize(name, clean[1], sizeof clean[1]),
                       sanitize(json_str(key, "revoked_at") ?: "?", clean[2], sizeof clean[2]),
                       revoke_reason_to_string(code), text ? ": " : "",
                       sanitize(text ?: "", clean[3], sizeof clean[3]));
        print_verifier_view(ring0, out, "", "the revoked key");
        printf("Check the keyring with: keydctl keyring show %s\n", clean[1]);
        return 0;
}

/* rekey-all: the run, and what it did to each keyring. */
typedef struct Rekey {
        Ctl *c;
        int64_t before; /* keys created before it are replaced */
        RevokeReason code;
        const char *text; /* for the audit log, or NULL */
        unsigned rekeyed, done, disabled, failed;
} Rekey;

/* A key of the keyring that the run replaces: one that signs or verifies (next, active, retired) and was made before
 * the run. A key whose creation time keyd does not give is taken as old: replacing one key too many is harmless. */
static bool key_to_replace(const json_t *k, int64_t before) {
        const char *state = json_str(k, "state");
        int64_t created;

        if (!streq_ptr(state, "next") && !streq_ptr(state, "active") && !streq_ptr(state, "retired"))
                return false;
        return key_time(k, "created_at", &created) < 0 || created < before;
}

/* One keyring: its keys to replace, revoked in the order that replaces them in the fewest steps
 * (rotation/transition.c): the next key first (keyd generates a new next key), then the active key (the new next key
 * becomes active, keyd generates another next key), then the retired ones (nothing is generated). Two keys generated,
 * one request per key; the old active key signs until the new one takes over, and no key made before the run is left.
 * Keys revoked meanwhile (409) or gone (404: expired) count as done. result gets what happened. */
static int rekey_ring(Rekey *rk, const char *name, json_t *result) {
        static const char *const order[] = { "next", "active", "retired" };
        _cleanup_json_ json_t *ring = NULL, *after = NULL, *revoked = json_array(), *body = NULL;
        _cleanup_free_ const char **kids = NULL;
        size_t n = 0, i;
        const json_t *k;
        int64_t latest = 0, t;
        int r;

        if (!revoked || json_object_set(result, "revoked", revoked) < 0)
                return OOM();
        r = ctl_keyring_call(rk->c, "GET", name, NULL, NULL, &ring);
        if (r < 0)
                return r;
        if (json_is_true(json_object_get(ring, "disabled")))
                return json_object_set_new(result, "result", json_string("disabled")) < 0 ? OOM() : 0;
        body = json_pack("{s:s}", "reason", revoke_reason_to_string(rk->code));
        kids = calloc(json_array_size(json_object_get(ring, "keys")) + 1, sizeof *kids);
        if (!body || !kids || (rk->text && json_object_set_new(body, "comment", json_string(rk->text)) < 0))
                return OOM();

        for (size_t o = 0; o < ELEMENTSOF(order); o++)
                json_array_foreach(json_object_get(ring, "keys"), i, k) {
                        _cleanup_json_ json_t *reply = NULL;
                        _cleanup_free_ char *path = NULL;
                        const char *kid = json_str(k, "kid");

                        if (!kid || !streq_ptr(json_str(k, "state"), order[o]) || !key_to_replace(k, rk->before))
                                continue;
                        path = ctl_path("/v1/keys/", kid, "/revoke");
                        if (!path)
                                return OOM();
                        r = ctl_call_quiet(rk->c, "POST", path, body, revoke_quiet, &reply);
                        if (r < 0) {
                                char what[160];
                                (void) snprintf(what, sizeof what, "revoking its %s key %s", order[o], kid);
                                if (json_object_set_new(result, "error", json_string(what)) < 0)
                                        return OOM();
                                return r;
                        }
                        kids[n++] = kid;
                        if (json_array_append_new(revoked, json_pack("{s:s, s:s}", "kid", kid, "state", order[o])) < 0)
                                return OOM();
                }
        if (n == 0)
                return json_object_set_new(result, "result", json_string("done")) < 0 ? OOM() : 0;

        r = ctl_keyring_call(rk->c, "GET", name, NULL, NULL, &after);
        if (r < 0)
                return r;
        for (i = 0; i < n; i++) {
                const json_t *key = ring_key(after, kids[i]);
                if (key && key_time(key, "revoked_at", &t) >= 0)
                        latest = MAX(latest, t);
        }
        if (json_object_set_new(result, "result", json_string("rekeyed")) < 0 ||
            verifier_view(after, kids, n, latest > 0 ? latest : now_seconds(), result) < 0 ||
            json_object_set(result, "keyring_after", after) < 0)
                return OOM();
        return 0;
}

static void print_rekey_result(const Rekey *rk, const char *name, const json_t *result) {
        const char *what = json_str(result, "result");
        const json_t *revoked = json_object_get(result, "revoked"), *k;
        char clean[256], when[32];
        size_t i;

        sanitize(name, clean, sizeof clean);
        if (streq_ptr(what, "disabled"))
                printf("%s: disabled: every key revoked already\n", clean);
        else if (streq_ptr(what, "done"))
                printf("%s: no key from before %s left: replaced already\n", clean,
                       format_time(when, sizeof when, rk->before));
        else if (streq_ptr(what, "rekeyed")) {
                printf("%s: replaced %zu key(s):", clean, json_array_size(revoked));
                /* 12 characters of each kid, as keydctl keyrings shows them (--json has them whole). */
                json_array_foreach(revoked, i, k) {
                        char kid[13];
                        printf("%s %s %s", i ? "," : "", json_str(k, "state"),
                               sanitize(json_str(k, "kid"), kid, sizeof kid));
                }
                printf("\n");
                print_verifier_view(json_object_get(result, "keyring_after"), result, "  ", "the old keys");
        } else {
                char err[256];
                printf("%s: FAILED %s (keyd's answer above); %zu key(s) revoked before\n", clean,
                       sanitize(json_str(result, "error") ?: "reading it", err, sizeof err), json_array_size(revoked));
        }
        (void) fflush(stdout);
}

/* The shell word of s, for a command line to copy: in single quotes. */
static void print_quoted(FILE *f, const char *s) {
        char clean[512];

        fputc('\'', f);
        for (const char *p = sanitize(s, clean, sizeof clean); *p; p++)
                fputs(*p == '\'' ? "'\\''" : (char[]){ *p, 0 }, f);
        fputc('\'', f);
}

int verb_rekey_all(Ctl *c, const Verb *v, int argc, char **argv) {
        enum { OPT_REASON = CTL_OPT_FIRST_LOCAL, OPT_BEFORE };
        static const struct option options[] = {
                CTL_COMMON_OPTIONS,
                { "reason", required_argument, NULL, OPT_REASON },
                { "before", required_argument, NULL, OPT_BEFORE },
                {},
        };
        _cleanup_json_ json_t *all = NULL, *results = json_array();
        const char *reason = NULL;
        Rekey rk = { .c = c, .before = -1 };
        const json_t *ring;
        char when[32];
        size_t i;
        int opt, r, error = 0; /* KEYDCTL_ERR_UNREACHABLE once keyd cannot be reached */

        if (!results)
                return OOM();
        while ((r = ctl_next_option(c, v, argc, argv, ":h", options, 0, 0, &opt)) == CTL_OPTION)
                switch (opt) {
                case OPT_REASON:
                        reason = optarg;
                        break;
                case OPT_BEFORE:
                        r = ctl_parse_instant("--before", optarg, &rk.before);
                        if (r < 0)
                                return r;
                        break;
                }
        if (r != CTL_PARSED)
                return r > 0 ? 0 : r;
        if (!reason || !*reason)
                return ctl_error(KEYDCTL_ERR_USAGE,
                                 "rekey-all needs --reason, an incident reference for the audit log");
        r = parse_reason(reason, REVOKE_KEY_COMPROMISE, &rk.code, &rk.text);
        if (r < 0)
                return r;
        if (rk.text && !utf8_valid(rk.text, strlen(rk.text)))
                return ctl_error(KEYDCTL_ERR_USAGE, "--reason: the text is not UTF-8");

        if (rk.before < 0) {
                /* Every key made until now, this second's too (keyd gives times in seconds); and the run changes
                 * nothing before the next second begins, so that every key it makes is from "before" on. A second
                 * run with --before then tells the keys that were there from the ones this run made. */
                usec_t t = now_realtime();
                rk.before = (int64_t) (t / USEC_PER_SEC) + 1;
                for (; t < (usec_t) rk.before * USEC_PER_SEC; t = now_realtime())
                        (void) nanosleep(
                                &(struct timespec){ .tv_nsec = (long) ((usec_t) rk.before * USEC_PER_SEC - t) * 1000 },
                                NULL);
        }
        r = ctl_fetch_keyrings(c, &all);
        if (r < 0)
                return r;
        format_time(when, sizeof when, rk.before);
        if (!c->json)
                printf("Replacing every key created before %s in %zu keyring(s) (%s%s%s).\n", when,
                       json_array_size(json_object_get(all, "keyrings")), revoke_reason_to_string(rk.code),
                       rk.text ? ": " : "", rk.text ?: "");
        json_array_foreach(json_object_get(all, "keyrings"), i, ring) {
                const char *name = json_str(ring, "name");
                json_t *result;

                if (!name)
                        continue;
                result = json_pack("{s:s, s:s}", "name", name, "result", "failed");
                if (!result || json_array_append_new(results, result) < 0)
                        return OOM();
                if (error == KEYDCTL_ERR_UNREACHABLE) {
                        /* keyd is gone: the rest are not tried, and the next run does them. */
                        if (json_object_set_new(result, "result", json_string("skipped")) < 0)
                                return OOM();
                        rk.failed++;
                        continue;
                }
                r = rekey_ring(&rk, name, result);
                if (r == -ENOMEM)
                        return r;
                if (r < 0) {
                        rk.failed++;
                        /* No answer at all (c->status 0: no connection, a timeout): the others would fare no
                         * better. keyd's own failure in one keyring (a 500) does not stop the others. */
                        if (r == KEYDCTL_ERR_UNREACHABLE && c->status == 0)
                                error = r;
                } else if (streq_ptr(json_str(result, "result"), "rekeyed"))
                        rk.rekeyed++;
                else if (streq_ptr(json_str(result, "result"), "done"))
                        rk.done++;
                else
                        rk.disabled++;
                if (!c->json && !streq_ptr(json_str(result, "result"), "skipped"))
                        print_rekey_result(&rk, name, result);
        }

        if (c->json) {
                _cleanup_json_ json_t *o = NULL;
                json_array_foreach(results, i, ring)
                        (void) json_object_del((json_t *) ring, "keyring_after");
                o = json_pack("{s:s, s:s, s:s?, s:O, s:I}", "before", when, "reason", revoke_reason_to_string(rk.code),
                              "comment", rk.text, "keyrings", results, "failed", (json_int_t) rk.failed);
                if (!o)
                        return OOM();
                print_json(o);
        } else
                printf("rekey-all: %u keyring(s) rekeyed, %u replaced already, %u disabled, %u failed.\n", rk.rekeyed,
                       rk.done, rk.disabled, rk.failed);
        if (rk.failed == 0)
                return 0;
        if (error == KEYDCTL_ERR_UNREACHABLE)
                ctl_error(0, "keyd could not be reached: the keyrings after the one that failed were not tried");
        fprintf(stderr, "keydctl: not every keyring was rekeyed; once the cause is fixed, complete the run with:\n"
                        "  keydctl rekey-all --reason ");
        print_quoted(stderr, reason);
        fprintf(stderr, " --before %s\n", when);
        return error == KEYDCTL_ERR_UNREACHABLE ? error : KEYDCTL_ERR_REFUSED;
}
