/* purge.c - a prefix's keys deleted in bounded steps (SCAN, then UNLINK per key). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "circmon/purge.h"

static void errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void errf(char *err, size_t errlen, const char *fmt, ...)
{
    if (!errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

char *cm_purge_pattern(const char *prefix)
{
    size_t pl = strlen(prefix);
    char *p = malloc(2 * pl + 4);
    if (!p)
        return NULL;
    size_t j = 0;
    for (size_t i = 0; i < pl; i++) {
        if (strchr("*?[]\\", prefix[i]))
            p[j++] = '\\';
        p[j++] = prefix[i];
    }
    memcpy(p + j, ":{*", 4);
    return p;
}

/* One SCAN; *keys is the reply (caller frees) whose element[1] lists keys. */
static int scan_once(redisContext *c, const char *pattern, char *cursor, size_t count,
                     redisReply **keys, char *err, size_t errlen)
{
    redisReply *rep = redisCommand(c, "SCAN %s MATCH %s COUNT %d", cursor, pattern, (int)count);
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
        rep->element[0]->type != REDIS_REPLY_STRING ||
        rep->element[1]->type != REDIS_REPLY_ARRAY || rep->element[0]->len >= 32) {
        errf(err, errlen, "redis SCAN failed: %s",
             !rep ? c->errstr : rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
        if (rep)
            freeReplyObject(rep);
        return -EPROTO;
    }
    memcpy(cursor, rep->element[0]->str, rep->element[0]->len + 1);
    *keys = rep;
    return 0;
}

int cm_purge_step(redisContext *c, const char *pattern, char *cursor, size_t count,
                  size_t *found, size_t *deleted, char *err, size_t errlen)
{
    redisReply *rep = NULL;
    *found = *deleted = 0;
    if (count < 1 || count > CM_PURGE_COUNT_MAX) {
        errf(err, errlen, "step of %zu keys: 1..%d", count, CM_PURGE_COUNT_MAX);
        return -EINVAL;
    }
    int r = scan_once(c, pattern, cursor, count, &rep, err, errlen);
    if (r < 0)
        return r;
    redisReply *ks = rep->element[1];
    size_t sent = 0;
    for (size_t i = 0; i < ks->elements; i++) {
        const redisReply *k = ks->element[i];
        if (k->type != REDIS_REPLY_STRING)
            continue;
        const char *argv[] = {"UNLINK", k->str};
        size_t lens[] = {6, k->len};
        if (redisAppendCommandArgv(c, 2, argv, lens) != REDIS_OK) {
            errf(err, errlen, "out of memory queuing UNLINK");
            r = -ENOMEM;
            break;
        }
        sent++;
    }
    *found = ks->elements;
    /* every reply queued is read, even after an error, to keep c in step */
    for (size_t i = 0; i < sent; i++) {
        void *v = NULL;
        if (redisGetReply(c, &v) != REDIS_OK) {
            errf(err, errlen, "redis UNLINK failed: %s", c->errstr);
            r = -EPROTO;
            break;
        }
        redisReply *u = v;
        if (u->type == REDIS_REPLY_INTEGER)
            *deleted += (size_t)u->integer;
        else if (!r) {
            errf(err, errlen, "redis UNLINK failed: %s",
                 u->type == REDIS_REPLY_ERROR ? u->str : "unexpected reply");
            r = -EPROTO;
        }
        freeReplyObject(u);
    }
    freeReplyObject(rep);
    return r;
}

int cm_purge_count(redisContext *c, const char *pattern, size_t *n, char *err, size_t errlen)
{
    char cursor[32] = "0";
    *n = 0;
    do {
        redisReply *rep = NULL;
        int r = scan_once(c, pattern, cursor, 1000, &rep, err, errlen);
        if (r < 0)
            return r;
        *n += rep->element[1]->elements; /* SCAN may return a key twice: an upper bound */
        freeReplyObject(rep);
    } while (strcmp(cursor, "0"));
    return 0;
}
