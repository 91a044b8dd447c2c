/* store_read.c - circmonctl's reads of named partitions, routed by hash slot (Redis Cluster or one Redis). */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "circmon/cluster_sync.h"
#include "circmon/store.h"

/* One command with one key: GET or HGETALL of k. */
static redisReply *cmd1(struct cm_rsync *r, const char *verb, const char *k, char *err,
                        size_t errlen)
{
    const char *argv[] = {verb, k};
    return cm_rsync_command(r, 2, argv, NULL, err, errlen);
}

int cm_store_read_agg_of(const struct cm_config *cfg, const int32_t *parts, size_t n,
                         struct cm_agg *ag, struct cm_names *nm, char *err, size_t errlen)
{
    struct cm_rsync *rs = cm_rsync_open(cfg, err, errlen);
    if (!rs)
        return -ECONNREFUSED;
    int r = 0;
    for (size_t i = 0; !r && i < n; i++) {
        char *k = cm_store_key_agg(cfg->key_prefix, parts[i]);
        if (!k) {
            snprintf(err, errlen, "out of memory");
            r = -ENOMEM;
            break;
        }
        redisReply *rep = cmd1(rs, "HGETALL", k, err, errlen); /* atomic per partition */
        r = rep ? cm_store_agg_add_reply(k, rep, ag, nm, err, errlen) : -EPROTO;
        if (rep)
            freeReplyObject(rep);
        free(k);
    }
    cm_rsync_close(rs);
    return r;
}

int cm_store_read_positions_routed(const struct cm_config *cfg, const int32_t *parts, size_t n,
                                   int64_t *pos, char *err, size_t errlen)
{
    struct cm_rsync *rs = cm_rsync_open(cfg, err, errlen);
    if (!rs)
        return -ECONNREFUSED;
    int r = 0;
    for (size_t i = 0; !r && i < n; i++) {
        char *k = cm_store_key_pos(cfg->key_prefix, parts[i]);
        if (!k) {
            snprintf(err, errlen, "out of memory");
            r = -ENOMEM;
            break;
        }
        redisReply *rep = cmd1(rs, "GET", k, err, errlen);
        if (rep && cm_store_pos_parse(rep, &pos[i]) < 0) {
            snprintf(err, errlen, "redis GET %s failed: %s", k,
                     rep->type == REDIS_REPLY_ERROR ? rep->str
                                                    : "not a position (a decimal >= 0)");
            r = -EPROTO;
        } else if (!rep) {
            r = -EPROTO;
        }
        if (rep)
            freeReplyObject(rep);
        free(k);
    }
    cm_rsync_close(rs);
    return r;
}
