/* SPDX-License-Identifier: MIT */
/* keydctl plan: every key transition due in a window, from the keyrings' keys and policies (SPEC §3), the way keyd's
 * lifecycle computes them:
 *   - a retired key expires at its expire_at;
 *   - the scheduled rotation is at max(active.activate_at + rotation-period, next.publish_at + prepublish); it
 *     activates the next key, retires the active one (which then expires token-ttl-max + clock-skew later) and
 *     publishes a new next key; the rotations after it follow every max(rotation-period, prepublish);
 *   - a keyring without an active or a next key is repaired at once (activate, publish "now");
 *   - a disabled keyring rotates no more.
 * A rotation already due (keyd stopped, or its clock behind) is listed as overdue, and the ones after it counted
 * from now. */
#include "keyd/keydctl-internal.h"

typedef struct Event {
        int64_t at;
        const char *keyring, *event, *kid;
        size_t seq;
} Event;

typedef struct Events {
        Event *v;
        size_t n, allocated;
} Events;

static int add(Events *e, int64_t at, const char *keyring, const char *event, const char *kid) {
        if (e->n == e->allocated) {
                size_t n = e->allocated ? e->allocated * 2 : 64;
                Event *v = reallocarray(e->v, n, sizeof *v);
                if (!v)
                        return -ENOMEM;
                e->v = v;
                e->allocated = n;
        }
        e->v[e->n] = (Event){ at, keyring, event, kid, e->n };
        e->n++;
        return 0;
}

static int cmp_event(const void *a, const void *b) {
        const Event *x = a, *y = b;
        int c;
        if (x->at != y->at)
                return x->at < y->at ? -1 : 1;
        c = strcmp(x->keyring, y->keyring);
        if (c != 0)
                return c;
        return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int key_time(const json_t *key, const char *field, int64_t *ret) {
        return parse_rfc3339(json_str(key, field), ret);
}

static int policy_field(const char *ring, const json_t *policy, const char *field, int64_t *ret) {
        if (parse_policy_duration(json_object_get(policy, field), ret) < 0) {
                ctl_error(0, "keyring %s: no valid policy.%s in keyd's reply; its rotations are not planned", ring,
                          field);
                return -EINVAL;
        }
        return 0;
}

static int plan_ring(const json_t *ring, int64_t now, int64_t until, Events *ev, bool *truncated) {
        const json_t *keys = json_object_get(ring, "keys"), *policy = json_object_get(ring, "policy"), *k;
        const json_t *active = NULL, *next = NULL;
        const char *name = json_str(ring, "name"), *akid, *nkid;
        int64_t period, prepublish, ttl_max, skew, activated, published, t;
        size_t i;
        int r;

        if (!name || !json_is_array(keys)) {
                ctl_error(0, "a keyring in keyd's reply has no name or no keys; skipped");
                return 0;
        }
        json_array_foreach(keys, i, k) {
                const char *state = json_str(k, "state");
                int64_t at;
                if (streq_ptr(state, "active"))
                        active = k;
                else if (streq_ptr(state, "next"))
                        next = k;
                else if (streq_ptr(state, "retired")) {
                        if (key_time(k, "expire_at", &at) < 0)
                                ctl_error(0, "keyring %s: retired key %s has no valid expire_at", name,
                                          json_str(k, "kid") ?: "?");
                        else if (at <= until && (r = add(ev, at, name, "expire", json_str(k, "kid"))) < 0)
                                return r;
                }
        }
        if (json_is_true(json_object_get(ring, "disabled")))
                return 0;
        if (policy_field(name, policy, "rotation_period", &period) < 0 ||
            policy_field(name, policy, "prepublish", &prepublish) < 0 ||
            policy_field(name, policy, "token_ttl_max", &ttl_max) < 0 ||
            policy_field(name, policy, "clock_skew", &skew) < 0)
                return 0;
        if (period <= 0) {
                ctl_error(0, "keyring %s: rotation_period 0 in keyd's reply; its rotations are not planned", name);
                return 0;
        }

        akid = active ? json_str(active, "kid") : NULL;
        nkid = next ? json_str(next, "kid") : NULL;
        activated = published = now;
        if (active && next && (key_time(active, "activate_at", &activated) < 0 ||
                               (key_time(next, "publish_at", &published) < 0 &&
                                key_time(next, "created_at", &published) < 0))) {
                ctl_error(0, "keyring %s: its active or next key has no valid times; its rotations are not planned",
                          name);
                return 0;
        }
        if (!active) {
                /* Repair: the next key (or, without one, a new key) becomes active at once; a new next follows. */
                if ((r = add(ev, now, name, "activate", nkid)) < 0 || (r = add(ev, now, name, "publish", NULL)) < 0)
                        return r;
                akid = nkid;
                nkid = NULL;
                activated = published = now;
        } else if (!next) {
                if ((r = add(ev, now, name, "publish", NULL)) < 0)
                        return r;
                if (key_time(active, "activate_at", &activated) < 0)
                        activated = now;
                published = now;
        }

        t = MAX(activated + period, published + prepublish);
        for (unsigned n = 0; t <= until; n++) {
                int64_t base = MAX(t, now);
                if (n == PLAN_ROTATIONS_MAX) {
                        *truncated = true;
                        break;
                }
                if ((r = add(ev, t, name, "activate", nkid)) < 0 || (r = add(ev, t, name, "retire", akid)) < 0 ||
                    (r = add(ev, t, name, "publish", NULL)) < 0)
                        return r;
                if (base + ttl_max + skew <= until && (r = add(ev, base + ttl_max + skew, name, "expire", akid)) < 0)
                        return r;
                akid = nkid;
                nkid = NULL;
                t = base + MAX(period, prepublish);
        }
        return 0;
}

int plan_compute(const json_t *reply, int64_t now, int64_t until, json_t **ret) {
        const json_t *rings = json_is_array(reply) ? reply : json_object_get(reply, "keyrings"), *ring;
        _cleanup_json_ json_t *list = json_array(), *plan = NULL;
        Events ev = { 0 };
        bool truncated = false;
        char buf[32], buf2[32];
        size_t i;
        int r = 0;

        if (!list)
                return -ENOMEM;
        json_array_foreach(rings, i, ring) {
                r = plan_ring(ring, now, until, &ev, &truncated);
                if (r < 0)
                        goto finish;
        }
        if (ev.n > 0)
                qsort(ev.v, ev.n, sizeof *ev.v, cmp_event);
        for (i = 0; i < ev.n; i++) {
                const Event *e = ev.v + i;
                json_t *o = json_pack("{s:s, s:I, s:s, s:s, s:s?, s:b}", "time", format_time(buf, sizeof buf, e->at),
                                      "at", (json_int_t) e->at, "keyring", e->keyring, "event", e->event, "kid",
                                      e->kid, "overdue", e->at < now);
                if (!o || json_array_append_new(list, o) < 0) {
                        r = -ENOMEM;
                        goto finish;
                }
        }
        plan = json_pack("{s:s, s:s, s:O, s:b}", "now", format_time(buf, sizeof buf, now), "until",
                         format_time(buf2, sizeof buf2, until), "transitions", list, "truncated", truncated);
        if (!plan) {
                r = -ENOMEM;
                goto finish;
        }
        *ret = TAKE_PTR(plan);
finish:
        free(ev.v);
        return r;
}

int plan_print(const json_t *plan, int64_t now) {
        static const char *const headers[] = { "TIME", "IN", "KEYRING", "EVENT", "KID" };
        _cleanup_table_ Table *t = table_new(ELEMENTSOF(headers), headers);
        const json_t *list = json_object_get(plan, "transitions"), *e;
        size_t i;

        if (!t)
                return ctl_error(-ENOMEM, "out of memory");
        /* "in 4m4s" above "in 10m4s": the spans line up on their last digit, as numbers do. */
        table_align_right(t, 1);
        json_array_foreach(list, i, e) {
                int64_t at = json_integer_value(json_object_get(e, "at"));
                const char *kid = json_str(e, "kid");
                char in[40], span[32], kid12[13];

                format_span(span, sizeof span, at > now ? at - now : now - at);
                if (at == now)
                        (void) snprintf(in, sizeof in, "now");
                else
                        (void) snprintf(in, sizeof in, "%s %s", at > now ? "in" : "overdue", span);
                (void) snprintf(kid12, sizeof kid12, "%s", kid ?: "(new)");
                if (TABLE_ROW(t, json_str(e, "time"), in, json_str(e, "keyring"), json_str(e, "event"), kid12) < 0)
                        return ctl_error(-ENOMEM, "out of memory");
        }
        table_show(t, "No key transition due before %s.\n", json_str(plan, "until") ?: "?");
        if (json_is_true(json_object_get(plan, "truncated")))
                ctl_error(0, "only the first %d rotations of each keyring are shown; use a shorter --within",
                          PLAN_ROTATIONS_MAX);
        return 0;
}
