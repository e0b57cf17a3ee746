/* SPDX-License-Identifier: MIT */
/* keyd reconcile --dry-run: what the next start's reconcile would do with every keyd object in the token, changing
 * nothing (the database is opened read-only; a running keyd may stay up). */
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/log.h"
#include "keyd/config.h"
#include "keyd/reconcile-cmd.h"
#include "pkcs11/hsm.h"
#include "rotation/engine.h"
#include "store/store.h"

static void print_table(const ReconcileReport *rep) {
        printf("installation %s, limit %u destruction(s) per reconcile\n\n", rep->instance_id, rep->max_destroy);
        printf("%-16s  %-32s  %-20s  %-14s  %s\n", "ACTION", "ID", "KEYRING", "KID", "LABEL");
        for (size_t i = 0; i < rep->n_items; i++) {
                const ReconcileItem *it = &rep->items[i];
                printf("%-16s  %-32s  %-20s  %-14.12s  %s\n", reconcile_action_to_string(it->action), it->id,
                       it->keyring[0] ? it->keyring : "-", it->kid[0] ? it->kid : "-", it->label[0] ? it->label : "-");
        }
        unsigned destroy = rep->orphans_destroyed + rep->privates_destroyed + rep->keys_lost;
        printf("\n%zu finding(s): %u orphan(s) and %u leftover private object(s) to destroy, %u key(s) lost, %u "
               "refused, %u unproven and %u foreign object(s) kept.\n",
               rep->n_items, rep->orphans_destroyed, rep->privates_destroyed, rep->keys_lost, rep->keys_refused,
               rep->unproven, rep->foreign);
        if (destroy > rep->max_destroy)
                printf("The next start would destroy and demote NOTHING: %u destruction(s) and lost key(s) is over "
                       "the limit of %u ([token] reconcile-max-destroy).\n",
                       destroy, rep->max_destroy);
}

static int print_json(const ReconcileReport *rep) {
        json_t *items = json_array();
        for (size_t i = 0; items && i < rep->n_items; i++) {
                const ReconcileItem *it = &rep->items[i];
                json_array_append_new(items, json_pack("{s:s, s:s, s:s?, s:s?, s:s?}", "action",
                                                       reconcile_action_to_string(it->action), "id", it->id,
                                                       "keyring", it->keyring[0] ? it->keyring : NULL, "kid",
                                                       it->kid[0] ? it->kid : NULL, "label",
                                                       it->label[0] ? it->label : NULL));
        }
        json_t *o = json_pack("{s:s, s:I, s:b, s:o}", "instance_id", rep->instance_id, "max_destroy",
                              (json_int_t) rep->max_destroy, "would_refuse",
                              rep->orphans_destroyed + rep->privates_destroyed + rep->keys_lost > rep->max_destroy,
                              "items", items);
        if (!o)
                return log_oom();
        json_dumpf(o, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        putchar('\n');
        json_decref(o);
        return 0;
}

static int scratch_store(char **ret_dir, Store **ret) {
        const char *tmp = getenv("TMPDIR") ?: "/tmp";
        _cleanup_free_ char *path = NULL;
        char *dir;

        if (asprintf(&dir, "%s/keyd-dry-run.XXXXXX", tmp) < 0)
                return -ENOMEM;
        if (!mkdtemp(dir)) {
                free(dir);
                return negative_errno();
        }
        *ret_dir = dir;
        if (asprintf(&path, "%s/keyd.db", dir) < 0)
                return -ENOMEM;
        return store_open(path, 0, ret);
}

static void scratch_remove(char *dir) {
        static const char *const files[] = { "keyd.db", "keyd.db-wal", "keyd.db-shm" };
        char path[PATH_MAX];
        if (!dir)
                return;
        for (size_t i = 0; i < ELEMENTSOF(files); i++) {
                snprintf(path, sizeof path, "%s/%s", dir, files[i]);
                (void) unlink(path);
        }
        (void) rmdir(dir);
        free(dir);
}

int reconcile_dry_run(const char *config_path, bool json) {
        _cleanup_free_ char **errors = NULL;
        char *scratch = NULL;
        ReconcileReport rep = { 0 };
        Config c;
        Hsm *hsm = NULL;
        Store *store = NULL;
        Engine *e = NULL;
        int r;

        if (config_init(&c) < 0)
                return log_oom();
        r = config_load(config_path, &c, &errors);
        for (char **p = errors; p && *p; p++) {
                log_error("%s", *p);
                free(*p);
        }
        if (r < 0) {
                config_done(&c);
                return r == -EINVAL ? r : log_error_errno(r, "Cannot read %s: %m", config_path);
        }
        if (c.softhsm2_conf && setenv("SOFTHSM2_CONF", c.softhsm2_conf, 1) < 0) {
                r = log_oom();
                goto finish;
        }
        HsmConfig hc = { .module = c.module, .uri = c.uri, .pin_file = c.pin_file, .sessions = 1 };
        r = hsm_open(&hc, &hsm);
        if (r < 0) {
                log_error_errno(r, "Cannot open the token %s with module %s: %m (%s)", c.uri, c.module,
                                hsm_last_error());
                goto finish;
        }
        r = store_open(c.store_path, STORE_READ_ONLY, &store);
        if (r == -ENOENT) {
                /* No database yet: a new installation, with an identity of its own, finds everything in the token
                 * foreign or unproven. Plan against an empty scratch database to show exactly that. */
                r = scratch_store(&scratch, &store);
                if (r >= 0)
                        log_notice("%s does not exist yet: as a new installation, keyd would find the token's "
                                   "objects as follows.",
                                   c.store_path);
        }
        if (r == -EPROTONOSUPPORT) {
                log_error("The database %s is of another schema version than this keyd: a dry run reads it without "
                          "migrating it. Start this keyd once (it migrates, then reconciles), or run the dry run with "
                          "the keyd that made the database.",
                          c.store_path);
                goto finish;
        }
        if (r < 0) {
                log_error_errno(r, "Cannot open the database %s read-only: %m", c.store_path);
                goto finish;
        }
        EngineOptions eo = { .reconcile_max_destroy = c.reconcile_max_destroy, .read_only = true };
        r = engine_new(hsm, store, &eo, &e);
        if (r >= 0)
                r = engine_load(e);
        if (r >= 0)
                r = engine_reconcile_plan(e, &rep);
        if (r < 0) {
                log_error_errno(r, "Cannot plan the reconcile: %m (%s; %s)", store_last_error(store),
                                hsm_last_error());
                goto finish;
        }
        r = json ? print_json(&rep) : (print_table(&rep), 0);
finish:
        reconcile_report_done(&rep);
        engine_free(e);
        store_close(store);
        scratch_remove(scratch);
        hsm_close(hsm);
        config_done(&c);
        return r;
}
