/* store_read.c - the store's synchronous face, for circmonctl: one blocking
 * connection (AUTH, SELECT), positions and aggregates read by SCAN of one
 * Redis, and reads of named partitions routed by hash slot (Redis Cluster
 * or one Redis). */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "circmon/clock.h"
#include "circmon/cluster_sync.h"
#include "circmon/decimal.h"
#include "circmon/errbuf.h"
#include "circmon/grow.h"
#include "circmon/store.h"
#include "circmon/store_layout.h"

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
        struct cm_agg_read rd;
        if (cm_agg_read_init(&rd, cfg->key_prefix, parts[i]) < 0) {
            snprintf(err, errlen, "out of memory");
            r = -ENOMEM;
            break;
        }
        /* one script: the partition's aggregate is read atomically */
        redisReply *rep = cm_rsync_command(rs, rd.argc, rd.argv, rd.lens, err, errlen);
        r = rep ? cm_store_agg_add_reply(rd.keys[0], rep, ag, nm, err, errlen) : -EPROTO;
        if (rep)
            freeReplyObject(rep);
        cm_agg_read_free(&rd);
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

/* ---- one Redis, blocking ---- */

/* Parses "<prefix>:{P}<suffix>" strictly; returns 0 and *part, or -EINVAL. */
static int key_parse_part(const char *k, size_t kl, const char *prefix, const char *suffix,
                          int32_t *part)
{
    size_t pl = strlen(prefix), sl = strlen(suffix);
    if (kl < pl + 4 + sl || memcmp(k, prefix, pl) || memcmp(k + pl, ":{", 2) ||
        memcmp(k + kl - sl, suffix, sl) || k[kl - sl - 1] != '}')
        return -EINVAL;
    const char *d = k + pl + 2, *e = k + kl - sl - 1;
    uint64_t v;
    if (cm_decimal_u64(d, (size_t)(e - d), INT32_MAX, &v))
        return -EINVAL;
    *part = (int32_t)v;
    return 0;
}

redisContext *cm_store_connect_sync(const struct cm_config *cfg, char *err, size_t errlen)
{
    struct timeval ct, tt;
    cm_clock_tv(cfg->connect_timeout_ms > 0 ? cfg->connect_timeout_ms : 2000, &ct);
    cm_clock_tv(cfg->command_timeout_ms > 0 ? cfg->command_timeout_ms : 5000, &tt);
    redisContext *c;
    const char *where;
    char addr[300];
    if (cfg->redis_unix_socket && *cfg->redis_unix_socket) {
        c = redisConnectUnixWithTimeout(cfg->redis_unix_socket, ct);
        where = cfg->redis_unix_socket;
    } else {
        c = redisConnectWithTimeout(cfg->redis_host, cfg->redis_port, ct);
        snprintf(addr, sizeof(addr), "%s:%d", cfg->redis_host, cfg->redis_port);
        where = addr;
    }
    if (!c || c->err) {
        cm_errf(err, errlen, "cannot connect to redis at %s: %s", where,
             c ? c->errstr : "out of memory");
        if (c)
            redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tt);
    redisReply *rep = NULL;
    if (cfg->redis_password && *cfg->redis_password) {
        if (cfg->redis_user && *cfg->redis_user)
            rep = redisCommand(c, "AUTH %s %s", cfg->redis_user, cfg->redis_password);
        else
            rep = redisCommand(c, "AUTH %s", cfg->redis_password);
        if (!rep || rep->type == REDIS_REPLY_ERROR) {
            cm_errf(err, errlen, "redis at %s: AUTH failed: %s", where,
                 rep ? rep->str : c->errstr);
            goto fail;
        }
        freeReplyObject(rep);
    }
    if (cfg->redis_db) {
        rep = redisCommand(c, "SELECT %d", cfg->redis_db);
        if (!rep || rep->type == REDIS_REPLY_ERROR) {
            cm_errf(err, errlen, "redis at %s: SELECT %d failed: %s", where, cfg->redis_db,
                 rep ? rep->str : c->errstr);
            goto fail;
        }
        freeReplyObject(rep);
    }
    return c;
fail:
    if (rep)
        freeReplyObject(rep);
    redisFree(c);
    return NULL;
}

/* The SCAN pattern for <prefix>:{*}<suffix>, with glob characters of the
 * prefix escaped. */
static char *scan_pattern(const char *prefix, const char *suffix)
{
    size_t j, sl = strlen(suffix);
    char *p = cm_glob_escape(prefix, 4 + sl, &j);
    if (p) {
        memcpy(p + j, ":{*}", 4);
        memcpy(p + j + 4, suffix, sl + 1);
    }
    return p;
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* The partitions having a key <prefix>:{P}<suffix>, sorted and unique
 * (SCAN may return a key twice). */
static int scan_parts(redisContext *c, const struct cm_config *cfg, const char *suffix,
                      int32_t **parts, size_t *n, char *err, size_t errlen)
{
    char *pat = scan_pattern(cfg->key_prefix, suffix);
    int32_t *v = NULL;
    size_t nv = 0, cap = 0;
    char cursor[32] = "0";
    int r = 0;
    if (!pat)
        return -ENOMEM;
    do {
        redisReply *rep = redisCommand(c, "SCAN %s MATCH %s COUNT 1000", cursor, pat);
        if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
            rep->element[0]->type != REDIS_REPLY_STRING ||
            rep->element[1]->type != REDIS_REPLY_ARRAY) {
            cm_errf(err, errlen, "redis SCAN failed: %s",
                 !rep ? c->errstr : rep->type == REDIS_REPLY_ERROR ? rep->str : "bad reply");
            if (rep)
                freeReplyObject(rep);
            r = -EPROTO;
            goto out;
        }
        snprintf(cursor, sizeof(cursor), "%s", rep->element[0]->str);
        redisReply *ks = rep->element[1];
        for (size_t i = 0; i < ks->elements; i++) {
            int32_t p;
            if (ks->element[i]->type != REDIS_REPLY_STRING ||
                key_parse_part(ks->element[i]->str, ks->element[i]->len, cfg->key_prefix,
                               suffix, &p))
                continue;
            if (cm_grow(&v, &cap, nv + 1, sizeof(*v), 64) < 0) {
                freeReplyObject(rep);
                r = -ENOMEM;
                cm_errf(err, errlen, "out of memory listing the partitions of %s", cfg->key_prefix);
                goto out;
            }
            v[nv++] = p;
        }
        freeReplyObject(rep);
    } while (strcmp(cursor, "0"));
    if (nv)
        qsort(v, nv, sizeof(*v), cmp_i32);
    size_t u = 0;
    for (size_t i = 0; i < nv; i++)
        if (u == 0 || v[u - 1] != v[i])
            v[u++] = v[i];
    *parts = v;
    *n = u;
    v = NULL;
out:
    free(v);
    free(pat);
    return r;
}

/* parts (n, sorted, unique) becomes the sorted union with more[0..nm-1]
 * (sorted, unique). Returns 0, or -ENOMEM (parts unchanged). */
static int merge_parts(int32_t **parts, size_t *n, const int32_t *more, size_t nm)
{
    int32_t *u = malloc((*n + nm) * sizeof(*u));
    if (!u)
        return -ENOMEM;
    size_t i = 0, j = 0, k = 0;
    while (i < *n || j < nm) {
        if (j == nm || (i < *n && (*parts)[i] < more[j]))
            u[k++] = (*parts)[i++];
        else if (i == *n || more[j] < (*parts)[i])
            u[k++] = more[j++];
        else
            u[k++] = (*parts)[i++], j++;
    }
    free(*parts);
    *parts = u;
    *n = k;
    return 0;
}

int cm_store_agg_add_reply(const char *k, const struct redisReply *rep, struct cm_agg *ag,
                           struct cm_names *nm, char *err, size_t errlen)
{
    int r = 0;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements % 2) {
        cm_errf(err, errlen, "redis read of the aggregate %s failed: %s", k,
             rep->type == REDIS_REPLY_ERROR ? rep->str : "bad reply");
        return -EPROTO;
    }
    for (size_t j = 0; !r && j < rep->elements; j += 2) {
        redisReply *f = rep->element[j], *v = rep->element[j + 1];
        struct cm_agg_key key;
        int64_t x;
        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING ||
            cm_decimal_i64(v->str, v->len, &x) ||
            (r = cm_agg_key_parse(f->str, f->len, nm, &key)) != 0) {
            cm_errf(err, errlen, "%s: malformed aggregate field '%.*s'", k,
                 f->type == REDIS_REPLY_STRING ? (int)(f->len > 200 ? 200 : f->len) : 0,
                 f->type == REDIS_REPLY_STRING ? f->str : "");
            r = r == -ENOMEM ? r : -EPROTO;
        } else if ((r = cm_agg_add(ag, &key, x)) != 0) {
            cm_errf(err, errlen, "out of memory");
        }
    }
    return r;
}

int cm_store_read_agg(const struct cm_config *cfg, struct cm_agg *ag, struct cm_names *nm,
                      char *err, size_t errlen)
{
    if (cfg->redis_cluster) { /* SCAN sees one node: name the partitions */
        cm_errf(err, errlen, "with [redis] cluster = yes the partitions are read by name "
             "(cm_store_read_agg_of)");
        return -ENOTSUP;
    }
    redisContext *c = cm_store_connect_sync(cfg, err, errlen);
    if (!c)
        return -ECONNREFUSED;
    int32_t *parts = NULL;
    size_t n = 0;
    /* the partitions with a position, and any with only the aggregate hash
     * of earlier versions (written by hand: no apply writes one) */
    int32_t *old = NULL;
    size_t nold = 0;
    int r = scan_parts(c, cfg, ":pos", &parts, &n, err, errlen);
    if (!r)
        r = scan_parts(c, cfg, ":agg", &old, &nold, err, errlen);
    if (!r && nold && merge_parts(&parts, &n, old, nold) < 0) {
        cm_errf(err, errlen, "out of memory listing the partitions of %s", cfg->key_prefix);
        r = -ENOMEM;
    }
    free(old);
    for (size_t i = 0; !r && i < n; i++) {
        struct cm_agg_read rd;
        if (cm_agg_read_init(&rd, cfg->key_prefix, parts[i]) < 0) {
            r = -ENOMEM;
            break;
        }
        /* one script reads a partition's hashes atomically (HSCAN could
         * return a field twice while a hash is rehashed) */
        redisReply *rep = redisCommandArgv(c, rd.argc, rd.argv, rd.lens);
        if (!rep)
            cm_errf(err, errlen, "redis read of %s failed: %s", rd.keys[0], c->errstr);
        r = rep ? cm_store_agg_add_reply(rd.keys[0], rep, ag, nm, err, errlen) : -EPROTO;
        if (rep)
            freeReplyObject(rep);
        cm_agg_read_free(&rd);
    }
    free(parts);
    redisFree(c);
    return r;
}

/* Positions of parts[0..n-1] on c into pos[], one GET each. */
static int read_pos(redisContext *c, const char *prefix, const int32_t *parts, size_t n,
                    int64_t *pos, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        char *k = cm_store_key_pos(prefix, parts[i]);
        if (!k) {
            cm_errf(err, errlen, "out of memory");
            return -ENOMEM;
        }
        redisReply *rep = redisCommand(c, "GET %s", k);
        int r = 0;
        if (!rep || cm_store_pos_parse(rep, &pos[i]) < 0) {
            cm_errf(err, errlen, "redis GET %s failed: %s", k,
                 !rep                               ? c->errstr
                 : rep->type == REDIS_REPLY_ERROR ? rep->str
                                                    : "not a position (a decimal >= 0)");
            r = -EPROTO;
        }
        if (rep)
            freeReplyObject(rep);
        free(k);
        if (r)
            return r;
    }
    return 0;
}

int cm_store_read_positions_of(const struct cm_config *cfg, const int32_t *parts, size_t n,
                               int64_t *pos, char *err, size_t errlen)
{
    if (cfg->redis_cluster)
        return cm_store_read_positions_routed(cfg, parts, n, pos, err, errlen);
    redisContext *c = cm_store_connect_sync(cfg, err, errlen);
    if (!c)
        return -ECONNREFUSED;
    int r = read_pos(c, cfg->key_prefix, parts, n, pos, err, errlen);
    redisFree(c);
    return r;
}

int cm_store_read_positions(const struct cm_config *cfg, int32_t **parts_out, int64_t **pos_out,
                            size_t *n_out, char *err, size_t errlen)
{
    if (cfg->redis_cluster) {
        cm_errf(err, errlen, "with [redis] cluster = yes the partitions are read by name "
             "(cm_store_read_positions_of)");
        return -ENOTSUP;
    }
    redisContext *c = cm_store_connect_sync(cfg, err, errlen);
    if (!c)
        return -ECONNREFUSED;
    int32_t *parts = NULL;
    int64_t *pos = NULL;
    size_t n = 0;
    int r = scan_parts(c, cfg, ":pos", &parts, &n, err, errlen);
    if (!r && !(pos = calloc(n ? n : 1, sizeof(*pos)))) {
        cm_errf(err, errlen, "out of memory");
        r = -ENOMEM;
    }
    if (!r)
        r = read_pos(c, cfg->key_prefix, parts, n, pos, err, errlen);
    redisFree(c);
    if (r) {
        free(parts);
        free(pos);
        return r;
    }
    *parts_out = parts;
    *pos_out = pos;
    *n_out = n;
    return 0;
}
