/* purge.c - a prefix's keys deleted in bounded steps (SCAN, then UNLINK per key). */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "circmon/cluster_sync.h"
#include "circmon/errbuf.h"
#include "circmon/purge.h"

char *cm_purge_pattern(const char *prefix)
{
    size_t j;
    char *p = cm_glob_escape(prefix, 3, &j);
    if (p)
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
        cm_errf(err, errlen, "redis SCAN failed: %s",
             !rep ? c->errstr : rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
        if (rep)
            freeReplyObject(rep);
        return -EPROTO;
    }
    memcpy(cursor, rep->element[0]->str, rep->element[0]->len + 1);
    *keys = rep;
    return 0;
}

/* A redirection or a retry asked by a cluster node: the key is elsewhere now
 * (a reshard), or its slot is moving. */
static int redirected(const redisReply *u)
{
    static const char *const codes[] = {"MOVED ", "ASK ", "TRYAGAIN", "CLUSTERDOWN"};
    if (u->type != REDIS_REPLY_ERROR)
        return 0;
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
        if (!strncmp(u->str, codes[i], strlen(codes[i])))
            return 1;
    return 0;
}

int cm_purge_step(redisContext *c, struct cm_rsync *route, const char *pattern, char *cursor,
                  size_t count, size_t *found, size_t *deleted, char *err, size_t errlen)
{
    redisReply *rep = NULL;
    *found = *deleted = 0;
    if (count < 1 || count > CM_PURGE_COUNT_MAX) {
        cm_errf(err, errlen, "step of %zu keys: 1..%d", count, CM_PURGE_COUNT_MAX);
        return -EINVAL;
    }
    int r = scan_once(c, pattern, cursor, count, &rep, err, errlen);
    if (r < 0)
        return r;
    redisReply *ks = rep->element[1];
    size_t sent = 0, n_again = 0;
    unsigned char *again = calloc(ks->elements ? ks->elements : 1, 1); /* redirected keys */
    if (!again) {
        freeReplyObject(rep);
        cm_errf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    size_t *sent_ix = calloc(ks->elements ? ks->elements : 1, sizeof(*sent_ix));
    if (!sent_ix) {
        free(again);
        freeReplyObject(rep);
        cm_errf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    for (size_t i = 0; i < ks->elements; i++) {
        const redisReply *k = ks->element[i];
        if (k->type != REDIS_REPLY_STRING)
            continue;
        const char *argv[] = {"UNLINK", k->str};
        size_t lens[] = {6, k->len};
        if (redisAppendCommandArgv(c, 2, argv, lens) != REDIS_OK) {
            cm_errf(err, errlen, "out of memory queuing UNLINK");
            r = -ENOMEM;
            break;
        }
        sent_ix[sent++] = i;
    }
    *found = ks->elements;
    /* every reply queued is read, even after an error, to keep c in step */
    for (size_t i = 0; i < sent; i++) {
        void *v = NULL;
        if (redisGetReply(c, &v) != REDIS_OK) {
            cm_errf(err, errlen, "redis UNLINK failed: %s", c->errstr);
            r = -EPROTO;
            break;
        }
        redisReply *u = v;
        if (u->type == REDIS_REPLY_INTEGER) {
            *deleted += (size_t)u->integer;
        } else if (route && redirected(u)) {
            again[sent_ix[i]] = 1;
            n_again++;
        } else if (!r) {
            cm_errf(err, errlen, "redis UNLINK failed: %s",
                 u->type == REDIS_REPLY_ERROR ? u->str : "unexpected reply");
            r = -EPROTO;
        }
        freeReplyObject(u);
    }
    /* keys whose slot moved since the SCAN: UNLINK where the cluster says */
    for (size_t i = 0; !r && n_again && i < ks->elements; i++) {
        if (!again[i])
            continue;
        const char *argv[] = {"UNLINK", ks->element[i]->str};
        size_t lens[] = {6, ks->element[i]->len};
        redisReply *u = cm_rsync_command(route, 2, argv, lens, err, errlen);
        if (!u) {
            r = -EPROTO;
        } else if (u->type == REDIS_REPLY_INTEGER) {
            *deleted += (size_t)u->integer;
        } else {
            cm_errf(err, errlen, "redis UNLINK failed: %s",
                 u->type == REDIS_REPLY_ERROR ? u->str : "unexpected reply");
            r = -EPROTO;
        }
        if (u)
            freeReplyObject(u);
    }
    free(again);
    free(sent_ix);
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

static void pause_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* One pass: every master of the current map, scanned to its end. */
static int purge_pass(struct cm_rsync *r, const char *pattern, size_t count, int64_t pause,
                      struct cm_purge_result *res, char *err, size_t errlen)
{
    char name[300];
    size_t nm = cm_rsync_n_masters(r);
    for (size_t m = 0; m < nm; m++) {
        char cursor[32] = "0", why[400];
        do {
            size_t found, deleted;
            redisContext *c = cm_rsync_master_conn(r, m, why, sizeof(why));
            int e = c ? cm_purge_step(c, r, pattern, cursor, count, &found, &deleted, why,
                                      sizeof(why))
                      : -ECONNREFUSED;
            if (e < 0) {
                cm_errf(err, errlen, "%s: %s", cm_rsync_master_name(r, m, name, sizeof(name)), why);
                return e;
            }
            res->deleted += deleted;
            res->steps++;
            if (strcmp(cursor, "0") && pause)
                pause_ms(pause);
        } while (strcmp(cursor, "0"));
    }
    return 0;
}

/* Keys of pattern left on every master (an upper bound: SCAN may return a
 * key twice). */
static int purge_left(struct cm_rsync *r, const char *pattern, size_t *left, char *err,
                      size_t errlen)
{
    char name[300], why[400];
    *left = 0;
    for (size_t m = 0; m < cm_rsync_n_masters(r); m++) {
        size_t n = 0;
        redisContext *c = cm_rsync_master_conn(r, m, why, sizeof(why));
        int e = c ? cm_purge_count(c, pattern, &n, why, sizeof(why)) : -ECONNREFUSED;
        if (e < 0) {
            cm_errf(err, errlen, "%s: %s", cm_rsync_master_name(r, m, name, sizeof(name)), why);
            return e;
        }
        *left += n;
    }
    return 0;
}

int cm_purge_prefix(struct cm_rsync *r, const char *pattern, size_t count, int64_t pause,
                    struct cm_purge_result *res, char *err, size_t errlen)
{
    memset(res, 0, sizeof(*res));
    if (count < 1 || count > CM_PURGE_COUNT_MAX || pause < 0) {
        cm_errf(err, errlen, "step of %zu keys: 1..%d", count, CM_PURGE_COUNT_MAX);
        return -EINVAL;
    }
    for (;;) {
        int e = cm_rsync_refresh(r, err, errlen);
        if (e >= 0)
            e = purge_pass(r, pattern, count, pause, res, err, errlen);
        if (e < 0)
            return e;
        res->passes++;
        /* verified when nothing is left on any master of a map read after
         * the pass, with no slot moving before or after the count and the
         * same map after it: a key moving between two masters while they
         * are counted could be seen by neither */
        int mv = 0, mv2 = 0, changed = 0;
        if ((e = cm_rsync_refresh(r, err, errlen)) < 0 ||
            (mv = cm_rsync_resharding(r, err, errlen)) < 0 ||
            (e = purge_left(r, pattern, &res->left, err, errlen)) < 0 ||
            (mv2 = cm_rsync_resharding(r, err, errlen)) < 0 ||
            (changed = cm_rsync_refresh(r, err, errlen)) < 0)
            return e < 0 ? e : mv < 0 ? mv : mv2 < 0 ? mv2 : changed;
        mv = mv || mv2 || changed;
        res->resharding = mv;
        if (!res->left && !mv)
            return 0;
        if (res->passes >= CM_PURGE_PASSES_MAX)
            return 1;
        if (pause)
            pause_ms(pause);
    }
}
