/* rebuild.c - circmond --rebuild: its configuration and its start-up check. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "circmon/alias.h"
#include "circmon/cluster_sync.h"
#include "circmon/log.h"
#include "circmon/store.h"
#include "rebuild.h"

#define REBUILD_GROUP_SUFFIX ".rebuild"

int cmd_rebuild_prepare(struct cm_config *cfg, char *err, size_t errlen)
{
    if (!cfg->redis_alias) {
        snprintf(err, errlen, "%s: --rebuild needs [redis] alias (the key every reader "
                              "resolves; README, Operations, Rebuild)",
                 cfg->path ? cfg->path : "configuration");
        return -EINVAL;
    }
    size_t gl = strlen(cfg->group_id), sl = strlen(REBUILD_GROUP_SUFFIX);
    char *g = malloc(gl + sl + 1);
    if (!g) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    memcpy(g, cfg->group_id, gl);
    memcpy(g + gl, REBUILD_GROUP_SUFFIX, sl + 1);
    free(cfg->group_id);
    cfg->group_id = g;
    free(cfg->alerts);
    cfg->alerts = NULL;
    cfg->n_alerts = 0;
    cfg->rebuild_run = 1;
    return 0;
}

/* Records cfg's settings under its prefix (SET NX), or checks them against
 * those recorded. */
static int marker_check(struct cm_rsync *c, const struct cm_config *cfg, char *err,
                        size_t errlen)
{
    char *k = cm_alias_marker_key(cfg->key_prefix), *set = cm_alias_settings_format(cfg);
    char cerr[400] = "";
    int r = -1;
    redisReply *rep = NULL;
    if (!k || !set) {
        snprintf(err, errlen, "--rebuild: out of memory (or a scheme id that is not UTF-8)");
        goto out;
    }
    const char *setv[] = {"SET", k, set, "NX"};
    rep = cm_rsync_command(c, 4, setv, NULL, cerr, sizeof(cerr));
    if (!rep || rep->type == REDIS_REPLY_ERROR) {
        snprintf(err, errlen, "--rebuild: SET %s: %s", k, rep ? rep->str : cerr);
        goto out;
    }
    if (rep->type == REDIS_REPLY_STATUS) { /* the first run on this prefix */
        r = 0;
        goto out;
    }
    freeReplyObject(rep);
    const char *getv[] = {"GET", k};
    rep = cm_rsync_command(c, 2, getv, NULL, cerr, sizeof(cerr));
    struct cm_config fold;
    char why[400];
    if (!rep || rep->type != REDIS_REPLY_STRING) {
        snprintf(err, errlen, "--rebuild: GET %s: %s", k,
                 !rep ? cerr : rep->type == REDIS_REPLY_ERROR ? rep->str : "not a string");
        goto out;
    }
    if (cm_alias_settings_parse(rep->str, rep->len, &fold, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "--rebuild: %s: %s", k, why);
        goto out;
    }
    if (!cm_alias_settings_equal(&fold, cfg))
        snprintf(err, errlen, "--rebuild: prefix %s was begun with other fold settings than "
                              "%s's (%s): a prefix is folded with one set of settings; delete it "
                              "(circmonctl rebuild delete --prefix %s) or use another",
                 cfg->key_prefix, cfg->path ? cfg->path : "the configuration", k,
                 cfg->key_prefix);
    else
        r = 0;
    cm_config_free(&fold);
out:
    if (rep)
        freeReplyObject(rep);
    free(k);
    free(set);
    return r;
}

int cmd_rebuild_check(const struct cm_config *cfg, char *err, size_t errlen)
{
    char why[512];
    struct cm_alias al;
    int rebuild = cfg->rebuild_run;
    if (!cfg->redis_alias)
        return 0;
    struct cm_rsync *c = cm_rsync_open(cfg, why, sizeof(why)); /* one Redis, or the cluster */
    if (!c) {
        if (!rebuild) { /* the pipeline waits for Redis by itself */
            cm_log_warn("alias %s not checked: %s", cfg->redis_alias, why);
            return 0;
        }
        snprintf(err, errlen, "--rebuild: %s", why);
        return -1;
    }
    int r = cm_alias_read_sync(c, cfg, &al, why, sizeof(why));
    if (r < 0) {
        cm_rsync_close(c);
        snprintf(err, errlen, "%s%s", rebuild ? "--rebuild: " : "", why);
        return -1;
    }
    r = 0;
    if (!rebuild) {
        if (al.from_alias && !strcmp(al.prefix, cfg->key_prefix) &&
            !cm_alias_settings_equal(&al.fold, cfg)) {
            snprintf(err, errlen, "key_prefix %s is the active prefix (alias %s), folded with "
                                  "other settings than %s's: folding it with these would "
                                  "mix two settings in one prefix",
                     cfg->key_prefix, cfg->redis_alias, cfg->path ? cfg->path : "the file");
            r = -1;
        }
    } else if (!al.from_alias) {
        snprintf(err, errlen, "--rebuild: alias %s names no prefix yet: run 'circmonctl "
                              "rebuild begin --config FILE' with the configuration in use first",
                 cfg->redis_alias);
        r = -1;
    } else if (!strcmp(al.prefix, cfg->key_prefix)) {
        snprintf(err, errlen, "--rebuild: key_prefix %s is the active prefix (alias %s): a "
                              "rebuild folds a new prefix, never the one being read",
                 cfg->key_prefix, cfg->redis_alias);
        r = -1;
    } else {
        r = marker_check(c, cfg, err, errlen);
    }
    cm_rsync_close(c);
    cm_alias_free(&al);
    return r;
}
