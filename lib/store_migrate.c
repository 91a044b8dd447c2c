/* store_migrate.c - circmonctl migrate-layout: a prefix's states from one
 * string key per migrant into the hash buckets of [redis] state_buckets. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "circmon/errbuf.h"
#include "circmon/store.h"
#include "circmon/store_layout.h"

/* Moves states: KEYS = string key, bucket key, ... in pairs; ARGV = the
 * migrant of each pair. Every key's type is checked before any write. */
static const char lua_move[] =
    "for i = 1, #KEYS, 2 do\n"
    "  local t, u = redis.call('TYPE', KEYS[i]).ok, redis.call('TYPE', KEYS[i + 1]).ok\n"
    "  if (t ~= 'string' and t ~= 'none') or (u ~= 'hash' and u ~= 'none') then\n"
    "    return redis.error_reply('WRONGTYPE ' .. KEYS[i] .. ' is a ' .. t .. ', ' ..\n"
    "                             KEYS[i + 1] .. ' a ' .. u)\n"
    "  end\n"
    "end\n"
    "local n = 0\n"
    "for i = 1, #KEYS, 2 do\n"
    "  local v = redis.call('GET', KEYS[i])\n"
    "  if v then\n"
    "    redis.call('HSET', KEYS[i + 1], ARGV[(i + 1) / 2], v)\n"
    "    redis.call('DEL', KEYS[i])\n"
    "    n = n + 1\n"
    "  end\n"
    "end\n"
    "return n\n";

#define MOVE_CHUNK 500 /* string keys per SCAN and per move script: ~1 ms of Redis */

static const char *reply_why(redisContext *c, const redisReply *r)
{
    return !r ? c->errstr : r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply";
}

/* The SCAN pattern of partition part's string keys, the prefix's glob
 * characters escaped. */
static char *string_pattern(const char *prefix, int32_t part)
{
    size_t j;
    char *p = cm_glob_escape(prefix, 31, &j);
    if (p)
        snprintf(p + j, 32, ":{%" PRId32 "}:m:*", part);
    return p;
}

/* Moves one chunk of string keys (ks, n of them) into their buckets. */
static int move_chunk(redisContext *c, const struct cm_config *cfg, int32_t part,
                      redisReply *const *ks, size_t n, size_t hl, size_t *moved, char *err,
                      size_t errlen)
{
    size_t argc = 3 + 3 * n;
    const char **argv = calloc(argc, sizeof(*argv));
    size_t *lens = calloc(argc, sizeof(*lens));
    char **bks = calloc(n ? n : 1, sizeof(*bks));
    char nk[32];
    int r = -ENOMEM;
    if (!argv || !lens || !bks) {
        cm_errf(err, errlen, "out of memory");
        goto out;
    }
    argv[0] = "EVAL";
    argv[1] = lua_move;
    lens[2] = (size_t)snprintf(nk, sizeof(nk), "%zu", 2 * n);
    argv[2] = nk;
    lens[0] = 4;
    lens[1] = strlen(lua_move);
    for (size_t i = 0; i < n; i++) {
        const char *mid = ks[i]->str + hl;
        size_t ml = ks[i]->len - hl;
        size_t bl;
        bks[i] = cm_layout_key_bucket(cfg->key_prefix, part,
                                      cm_layout_bucket(mid, ml, (uint32_t)cfg->state_buckets), &bl);
        if (!bks[i]) {
            cm_errf(err, errlen, "out of memory");
            goto out;
        }
        argv[3 + 2 * i] = ks[i]->str;
        lens[3 + 2 * i] = ks[i]->len;
        argv[4 + 2 * i] = bks[i];
        lens[4 + 2 * i] = bl;
        argv[3 + 2 * n + i] = mid;
        lens[3 + 2 * n + i] = ml;
    }
    redisReply *rep = redisCommandArgv(c, (int)argc, argv, lens);
    if (!rep || rep->type != REDIS_REPLY_INTEGER || rep->integer < 0) {
        cm_errf(err, errlen, "partition %" PRId32 ": moving states failed: %s", part,
             reply_why(c, rep));
        r = -EPROTO;
    } else {
        *moved += (size_t)rep->integer;
        r = 0;
    }
    if (rep)
        freeReplyObject(rep);
out:
    for (size_t i = 0; bks && i < n; i++)
        free(bks[i]);
    free(bks);
    free(argv);
    free(lens);
    return r;
}

/* One command of two or three NUL-terminated strings: its reply, or NULL. */
static redisReply *cmd(redisContext *c, const char *a0, const char *a1, const char *a2)
{
    const char *argv[] = {a0, a1, a2};
    return redisCommandArgv(c, a2 ? 3 : 2, argv, NULL);
}

static int migrate_part(redisContext *c, const struct cm_config *cfg, int32_t part,
                        struct cm_layout_migration *m, char *err, size_t errlen)
{
    char want[32], moving[48];
    cm_layout_format(cfg->state_buckets, want, sizeof(want));
    snprintf(moving, sizeof(moving), "moving to %s", want);
    char *kl = cm_layout_key(cfg->key_prefix, part), *ke = cm_store_key_epoch(cfg->key_prefix, part);
    char *pat = string_pattern(cfg->key_prefix, part);
    int r = -ENOMEM;
    redisReply *rep = NULL;
    if (!kl || !ke || !pat) {
        cm_errf(err, errlen, "out of memory");
        goto out;
    }
    r = -EPROTO;
    rep = cmd(c, "GET", kl, NULL);
    if (!rep || (rep->type != REDIS_REPLY_NIL && rep->type != REDIS_REPLY_STRING)) {
        cm_errf(err, errlen, "redis GET %s failed: %s", kl, reply_why(c, rep));
        goto out;
    }
    int32_t stored = -1;
    if (rep->type == REDIS_REPLY_STRING) {
        if (rep->len == strlen(want) && !memcmp(rep->str, want, rep->len)) {
            m->parts_before++; /* done already */
            r = 0;
            goto out;
        }
        int again = rep->len == strlen(moving) && !memcmp(rep->str, moving, rep->len);
        if (!again && (cm_layout_parse(rep->str, rep->len, &stored) < 0 || stored != 0)) {
            cm_errf(err, errlen,
                 "partition %" PRId32 ": %s is \"%.*s\": migrate-layout converts only from "
                 "one string key per migrant (a change of state_buckets needs a rebuild into "
                 "a new key_prefix)",
                 part, kl, (int)(rep->len > 64 ? 64 : rep->len), rep->str);
            goto out;
        }
    }
    freeReplyObject(rep);
    /* a circmond still owning the partition is fenced: its applies carry an
     * older owner epoch from now on */
    rep = cmd(c, "INCR", ke, NULL);
    if (!rep || rep->type != REDIS_REPLY_INTEGER) {
        cm_errf(err, errlen, "redis INCR %s failed: %s", ke, reply_why(c, rep));
        goto out;
    }
    freeReplyObject(rep);
    rep = cmd(c, "SET", kl, moving);
    if (!rep || rep->type != REDIS_REPLY_STATUS) {
        cm_errf(err, errlen, "redis SET %s failed: %s", kl, reply_why(c, rep));
        goto out;
    }
    freeReplyObject(rep);
    rep = NULL;
    char head[64]; /* the string keys' head: what the migrant follows */
    size_t hl = strlen(cfg->key_prefix) +
                (size_t)snprintf(head, sizeof(head), ":{%" PRId32 "}:m:", part);
    char cursor[32] = "0";
    do {
        char count[16];
        snprintf(count, sizeof(count), "%d", MOVE_CHUNK);
        const char *argv[] = {"SCAN", cursor, "MATCH", pat, "COUNT", count};
        rep = redisCommandArgv(c, 6, argv, NULL);
        if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
            rep->element[0]->type != REDIS_REPLY_STRING ||
            rep->element[1]->type != REDIS_REPLY_ARRAY || rep->element[0]->len >= sizeof(cursor)) {
            cm_errf(err, errlen, "redis SCAN failed: %s", reply_why(c, rep));
            goto out;
        }
        memcpy(cursor, rep->element[0]->str, rep->element[0]->len + 1);
        redisReply *ks = rep->element[1];
        for (size_t i = 0; i < ks->elements; i++)
            if (ks->element[i]->type != REDIS_REPLY_STRING || ks->element[i]->len < hl) {
                cm_errf(err, errlen, "redis SCAN: a key that is not %s", pat);
                goto out;
            }
        if (ks->elements &&
            (r = move_chunk(c, cfg, part, ks->element, ks->elements, hl, &m->states, err,
                            errlen)) < 0)
            goto out;
        r = -EPROTO;
        freeReplyObject(rep);
        rep = NULL;
    } while (strcmp(cursor, "0"));
    rep = cmd(c, "SET", kl, want);
    if (!rep || rep->type != REDIS_REPLY_STATUS) {
        cm_errf(err, errlen, "redis SET %s failed: %s", kl, reply_why(c, rep));
        goto out;
    }
    m->parts_moved++;
    r = 0;
out:
    if (rep)
        freeReplyObject(rep);
    free(kl);
    free(ke);
    free(pat);
    return r;
}

int cm_layout_migrate(const struct cm_config *cfg, struct cm_layout_migration *m, char *err,
                      size_t errlen)
{
    memset(m, 0, sizeof(*m));
    if (cfg->state_buckets < 1) {
        cm_errf(err, errlen, "[redis] state_buckets is 0 (one string key per migrant): there is "
                          "no layout to migrate to");
        return -EINVAL;
    }
    int32_t *parts = NULL;
    int64_t *pos = NULL;
    size_t n = 0;
    int r = cm_store_read_positions(cfg, &parts, &pos, &n, err, errlen);
    if (r < 0)
        return r;
    redisContext *c = cm_store_connect_sync(cfg, err, errlen);
    if (!c)
        r = -ECONNREFUSED;
    for (size_t i = 0; c && !r && i < n; i++)
        r = migrate_part(c, cfg, parts[i], m, err, errlen);
    if (c)
        redisFree(c);
    free(parts);
    free(pos);
    return r;
}
