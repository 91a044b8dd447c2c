/* rebuild.c - circmond --rebuild: its configuration and its start-up check. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "circmon/alias.h"
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

int cmd_rebuild_check(const struct cm_config *cfg, char *err, size_t errlen)
{
    char why[512];
    struct cm_alias al;
    redisContext *c = cm_store_connect_sync(cfg, why, sizeof(why));
    if (!c) {
        snprintf(err, errlen, "--rebuild: %s", why);
        return -1;
    }
    int r = cm_alias_read_sync(c, cfg, &al, why, sizeof(why));
    redisFree(c);
    if (r < 0) {
        snprintf(err, errlen, "--rebuild: %s", why);
        return -1;
    }
    r = 0;
    if (!al.from_alias) {
        snprintf(err, errlen, "--rebuild: alias %s names no prefix yet: run 'circmonctl "
                              "rebuild begin --config FILE' with the configuration in use first",
                 cfg->redis_alias);
        r = -1;
    } else if (!strcmp(al.prefix, cfg->key_prefix)) {
        snprintf(err, errlen, "--rebuild: key_prefix %s is the active prefix (alias %s): a "
                              "rebuild folds a new prefix, never the one being read",
                 cfg->key_prefix, cfg->redis_alias);
        r = -1;
    }
    cm_alias_free(&al);
    return r;
}
