/* cluster_sync.c - blocking Redis commands for the tools, routed by hash slot in a Redis Cluster. */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "circmon/clock.h"
#include "circmon/cluster.h"
#include "circmon/cluster_sync.h"
#include "circmon/errbuf.h"
#include "circmon/slot.h"
#include "circmon/store.h"

#define RETRY_MS 20      /* after TRYAGAIN or CLUSTERDOWN */
#define MAP_RETRY_MS 100 /* after a node did not answer */

struct snode {
    char host[CM_NODE_HOST_MAX + 1];
    int port;
    redisContext *c; /* NULL until needed, or after an I/O error */
};

struct cm_rsync {
    const struct cm_config *cfg;
    redisContext *one; /* cluster = no */
    struct snode nodes[CL_NODES_MAX];
    size_t n_nodes;
    uint16_t slot_node[CM_SLOTS]; /* index + 1; 0: unknown */
    uint16_t next[CM_SLOTS];      /* the map being read */
    uint16_t masters[CL_NODES_MAX]; /* node indexes of the map's masters (cm_rsync_n_masters) */
    size_t n_masters;
    int changed; /* the map read differed from the one before (cm_rsync_refresh) */
};

/* The index of host:port in r->nodes (added, not connected), or -1 when
 * CL_NODES_MAX are known. */
static int node_index(struct cm_rsync *r, const char *host, size_t hl, int port)
{
    for (size_t i = 0; i < r->n_nodes; i++)
        if (r->nodes[i].port == port && strlen(r->nodes[i].host) == hl &&
            !memcmp(r->nodes[i].host, host, hl))
            return (int)i;
    if (r->n_nodes == CL_NODES_MAX || hl == 0 || hl > CM_NODE_HOST_MAX)
        return -1;
    struct snode *n = &r->nodes[r->n_nodes];
    memcpy(n->host, host, hl);
    n->host[hl] = '\0';
    n->port = port;
    n->c = NULL;
    return (int)r->n_nodes++;
}

/* A connection to node i, opened and authenticated when first needed. */
static redisContext *node_conn(struct cm_rsync *r, size_t i, char *err, size_t errlen)
{
    struct snode *n = &r->nodes[i];
    if (n->c)
        return n->c;
    const struct cm_config *cfg = r->cfg;
    struct timeval ct, tt;
    cm_clock_tv(cfg->connect_timeout_ms > 0 ? cfg->connect_timeout_ms : 2000, &ct);
    cm_clock_tv(cfg->command_timeout_ms > 0 ? cfg->command_timeout_ms : 5000, &tt);
    redisContext *c = redisConnectWithTimeout(n->host, n->port, ct);
    if (!c || c->err) {
        cm_errf(err, errlen, "cannot connect to redis cluster node %s:%d: %s", n->host, n->port,
             c ? c->errstr : "out of memory");
        if (c)
            redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tt);
    if (cfg->redis_password && *cfg->redis_password) {
        redisReply *rep = cfg->redis_user && *cfg->redis_user
                              ? redisCommand(c, "AUTH %s %s", cfg->redis_user, cfg->redis_password)
                              : redisCommand(c, "AUTH %s", cfg->redis_password);
        if (!rep || rep->type == REDIS_REPLY_ERROR) {
            cm_errf(err, errlen, "redis cluster node %s:%d: AUTH failed: %s", n->host, n->port,
                 rep ? rep->str : c->errstr);
            if (rep)
                freeReplyObject(rep);
            redisFree(c);
            return NULL;
        }
        freeReplyObject(rep);
    }
    return n->c = c;
}

static void node_close(struct cm_rsync *r, size_t i)
{
    if (r->nodes[i].c)
        redisFree(r->nodes[i].c);
    r->nodes[i].c = NULL;
}

/* Reads the map from node i. */
static int read_map(struct cm_rsync *r, size_t i, char *err, size_t errlen)
{
    redisContext *c = node_conn(r, i, err, errlen);
    if (!c)
        return -ECONNREFUSED;
    redisReply *rep = redisCommand(c, "CLUSTER SLOTS");
    if (!rep || rep->type != REDIS_REPLY_ARRAY) {
        cm_errf(err, errlen, "redis cluster node %s:%d: CLUSTER SLOTS failed: %s",
             r->nodes[i].host, r->nodes[i].port,
             !rep ? c->errstr : rep->type == REDIS_REPLY_ERROR ? rep->str : "not an array");
        if (!rep)
            node_close(r, i);
        else
            freeReplyObject(rep);
        return -EPROTO;
    }
    int ret = 0;
    memset(r->next, 0, sizeof(r->next));
    for (size_t k = 0; k < rep->elements && !ret; k++) {
        const redisReply *e = rep->element[k];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
            e->element[0]->type != REDIS_REPLY_INTEGER ||
            e->element[1]->type != REDIS_REPLY_INTEGER ||
            e->element[2]->type != REDIS_REPLY_ARRAY || e->element[2]->elements < 2 ||
            e->element[2]->element[0]->type != REDIS_REPLY_STRING ||
            e->element[2]->element[1]->type != REDIS_REPLY_INTEGER) {
            ret = -EPROTO;
            break;
        }
        long long from = e->element[0]->integer, to = e->element[1]->integer;
        long long port = e->element[2]->element[1]->integer;
        const char *host = e->element[2]->element[0]->str;
        size_t hl = e->element[2]->element[0]->len;
        if (hl == 0 || (hl == 1 && host[0] == '?')) {
            host = r->nodes[i].host;
            hl = strlen(host);
        }
        int ix;
        if (from < 0 || to < from || to >= CM_SLOTS || port < 1 || port > 65535 ||
            (ix = node_index(r, host, hl, (int)port)) < 0) {
            ret = -EPROTO;
            break;
        }
        for (long long s = from; s <= to; s++)
            r->next[s] = (uint16_t)(ix + 1);
    }
    if (ret)
        cm_errf(err, errlen, "redis cluster node %s:%d: malformed CLUSTER SLOTS reply (or more "
             "than %d nodes)", r->nodes[i].host, r->nodes[i].port, CL_NODES_MAX);
    freeReplyObject(rep);
    if (ret)
        return ret; /* the map in use stays */
    r->changed |= memcmp(r->slot_node, r->next, sizeof(r->slot_node)) != 0;
    memcpy(r->slot_node, r->next, sizeof(r->slot_node));
    /* the masters, in the order of their first slot */
    r->n_masters = 0;
    for (size_t s = 0; s < CM_SLOTS; s++) {
        uint16_t v = r->slot_node[s];
        size_t k = 0;
        if (!v)
            continue;
        while (k < r->n_masters && r->masters[k] != v - 1u)
            k++;
        if (k == r->n_masters && r->n_masters < CL_NODES_MAX)
            r->masters[r->n_masters++] = (uint16_t)(v - 1u);
    }
    return 0;
}

struct cm_rsync *cm_rsync_open(const struct cm_config *cfg, char *err, size_t errlen)
{
    struct cm_rsync *r = calloc(1, sizeof(*r));
    if (!r) {
        cm_errf(err, errlen, "out of memory");
        return NULL;
    }
    r->cfg = cfg;
    if (!cfg->redis_cluster) {
        if (!(r->one = cm_store_connect_sync(cfg, err, errlen))) {
            free(r);
            return NULL;
        }
        return r;
    }
    for (size_t i = 0; i < cfg->n_redis_nodes; i++) {
        const struct cm_node_addr *a = &cfg->redis_nodes[i];
        int ix = node_index(r, a->host, strlen(a->host), a->port);
        if (ix >= 0 && read_map(r, (size_t)ix, err, errlen) == 0)
            return r; /* else err says why; the next seed may answer */
    }
    if (!cfg->n_redis_nodes)
        cm_errf(err, errlen, "redis cluster: no seed nodes");
    return cm_rsync_close(r);
}

struct cm_rsync *cm_rsync_close(struct cm_rsync *r)
{
    if (!r)
        return NULL;
    if (r->one)
        redisFree(r->one);
    for (size_t i = 0; i < r->n_nodes; i++)
        node_close(r, i);
    free(r);
    return NULL;
}

size_t cm_rsync_n_masters(const struct cm_rsync *r)
{
    return r->one ? 1 : r->n_masters;
}

const char *cm_rsync_master_name(const struct cm_rsync *r, size_t m, char *buf, size_t cap)
{
    const struct cm_config *cfg = r->cfg;
    if (r->one && cfg->redis_unix_socket && *cfg->redis_unix_socket)
        snprintf(buf, cap, "%s", cfg->redis_unix_socket);
    else if (r->one)
        snprintf(buf, cap, "%s:%d", cfg->redis_host, cfg->redis_port);
    else if (m < r->n_masters)
        snprintf(buf, cap, "%s:%d", r->nodes[r->masters[m]].host, r->nodes[r->masters[m]].port);
    else
        snprintf(buf, cap, "master %zu (none)", m);
    return buf;
}

redisContext *cm_rsync_master_conn(struct cm_rsync *r, size_t m, char *err, size_t errlen)
{
    if (r->one)
        return r->one;
    if (m >= r->n_masters) {
        cm_errf(err, errlen, "redis cluster: no master %zu in the slot map", m);
        return NULL;
    }
    return node_conn(r, r->masters[m], err, errlen);
}

int cm_rsync_refresh(struct cm_rsync *r, char *err, size_t errlen)
{
    if (r->one)
        return 0;
    r->changed = 0;
    for (size_t k = 0; k < r->n_nodes; k++)
        if (read_map(r, k, err, errlen) == 0)
            return r->changed;
    if (!r->n_nodes)
        cm_errf(err, errlen, "redis cluster: no node known");
    return -EPROTO;
}

/* Whether the ll bytes at l contain w. */
static int has_word(const char *l, size_t ll, const char *w)
{
    size_t wl = strlen(w);
    for (size_t i = 0; i + wl <= ll; i++)
        if (!memcmp(l + i, w, wl))
            return 1;
    return 0;
}

int cm_rsync_resharding(struct cm_rsync *r, char *err, size_t errlen)
{
    if (r->one)
        return 0;
    for (size_t m = 0; m < r->n_masters; m++) {
        redisContext *c = cm_rsync_master_conn(r, m, err, errlen);
        if (!c)
            return -ECONNREFUSED;
        redisReply *rep = redisCommand(c, "CLUSTER NODES");
        if (!rep || rep->type != REDIS_REPLY_STRING) {
            char nm[CM_NODE_HOST_MAX + 16];
            cm_errf(err, errlen, "redis cluster node %s: CLUSTER NODES failed: %s",
                 cm_rsync_master_name(r, m, nm, sizeof(nm)),
                 !rep ? c->errstr : rep->type == REDIS_REPLY_ERROR ? rep->str : "not a string");
            if (rep)
                freeReplyObject(rep);
            else
                node_close(r, r->masters[m]);
            return -EPROTO;
        }
        /* its own line ("myself"): a slot being moved reads [slot->-id] or [slot-<-id] */
        int moving = 0;
        for (const char *l = rep->str; l && *l && !moving;) {
            const char *e = strchr(l, '\n');
            size_t ll = e ? (size_t)(e - l) : strlen(l);
            if (has_word(l, ll, "myself") && memchr(l, '[', ll))
                moving = 1;
            l = e ? e + 1 : NULL;
        }
        freeReplyObject(rep);
        if (moving)
            return 1;
    }
    return 0;
}

static int starts(const redisReply *rep, const char *code)
{
    size_t n = strlen(code);
    return rep->type == REDIS_REPLY_ERROR && rep->len >= n && !memcmp(rep->str, code, n) &&
           (rep->len == n || rep->str[n] == ' ');
}

/* "MOVED|ASK <slot> <host>:<port>" */
static int redirect_parse(struct cm_rsync *r, const redisReply *rep, int *slot, int *ix)
{
    const char *s = rep->str, *end = rep->str + rep->len;
    const char *a = memchr(s, ' ', rep->len);
    if (!a)
        return -EPROTO;
    char *e;
    long sl = strtol(a + 1, &e, 10);
    if (e == a + 1 || *e != ' ' || sl < 0 || sl >= CM_SLOTS)
        return -EPROTO;
    const char *h = e + 1, *colon = NULL;
    for (const char *t = h; t < end; t++)
        if (*t == ':')
            colon = t;
    if (!colon)
        return -EPROTO;
    long port = strtol(colon + 1, &e, 10);
    if (e != end || port < 1 || port > 65535)
        return -EPROTO;
    size_t hl = (size_t)(colon - h);
    if (hl > 2 && h[0] == '[' && colon[-1] == ']') {
        h++;
        hl -= 2;
    }
    *slot = (int)sl;
    *ix = node_index(r, h, hl, (int)port);
    return *ix < 0 ? -EPROTO : 0;
}

/* Sends (ASKING first when asking) and reads the command's reply on node i. */
static redisReply *run_on(struct cm_rsync *r, size_t i, int asking, int argc, const char **argv,
                          const size_t *lens, char *err, size_t errlen)
{
    redisContext *c = node_conn(r, i, err, errlen);
    if (!c)
        return NULL;
    void *rep = NULL;
    if ((asking && redisAppendCommand(c, "ASKING") != REDIS_OK) ||
        redisAppendCommandArgv(c, argc, argv, lens) != REDIS_OK)
        goto io;
    if (asking) {
        if (redisGetReply(c, &rep) != REDIS_OK)
            goto io;
        freeReplyObject(rep);
        rep = NULL;
    }
    if (redisGetReply(c, &rep) != REDIS_OK)
        goto io;
    return rep;
io:
    cm_errf(err, errlen, "redis cluster node %s:%d: %s", r->nodes[i].host, r->nodes[i].port,
         c->errstr[0] ? c->errstr : "I/O error");
    node_close(r, i);
    return NULL;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* Reads the map again from any node but avoid; 0 or -1. */
static int reread_map(struct cm_rsync *r, size_t avoid)
{
    char scratch[256];
    for (size_t k = 0; k < r->n_nodes; k++)
        if (k != avoid && read_map(r, k, scratch, sizeof(scratch)) == 0)
            return 0;
    return -1;
}

redisReply *cm_rsync_command(struct cm_rsync *r, int argc, const char **argv,
                             const size_t *lens, char *err, size_t errlen)
{
    if (r->one) {
        redisReply *rep = redisCommandArgv(r->one, argc, argv, lens);
        if (!rep)
            cm_errf(err, errlen, "redis: %s", r->one->errstr);
        return rep;
    }
    const char *k;
    size_t kl;
    int slot = cm_rcluster_cmd_key(argc, argv, lens, &k, &kl) ? cm_slot_of(k, kl) : 0;
    int64_t t0 = cm_clock_ms();
    int redirects = 0, asking = 0;
    size_t ix = r->slot_node[slot] ? r->slot_node[slot] - 1u : 0;
    if (!r->slot_node[slot] && r->n_nodes == 0) {
        cm_errf(err, errlen, "redis cluster: no node owns slot %d", slot);
        return NULL;
    }
    for (;;) {
        redisReply *rep = run_on(r, ix, asking, argc, argv, lens, err, errlen);
        if (!rep) { /* a node gone: until a replica took over, within the deadline */
            if (cm_clock_ms() - t0 >= r->cfg->command_timeout_ms)
                return NULL;
            sleep_ms(MAP_RETRY_MS);
            if (reread_map(r, ix) == 0 && r->slot_node[slot])
                ix = r->slot_node[slot] - 1u;
            redirects = 0;
            asking = 0;
            continue;
        }
        asking = 0;
        int moved = starts(rep, "MOVED"), ask = starts(rep, "ASK"), s, to;
        if ((moved || ask) && redirects < CL_REDIRECTS_MAX &&
            redirect_parse(r, rep, &s, &to) == 0) {
            redirects++;
            if (moved)
                r->slot_node[s] = (uint16_t)(to + 1);
            asking = ask;
            ix = (size_t)to;
            freeReplyObject(rep);
            continue;
        }
        if ((starts(rep, "TRYAGAIN") || starts(rep, "CLUSTERDOWN")) &&
            cm_clock_ms() - t0 < r->cfg->command_timeout_ms) {
            int down = starts(rep, "CLUSTERDOWN");
            freeReplyObject(rep);
            sleep_ms(RETRY_MS); /* a slot being migrated, or a failover: wait, then again */
            if (down)
                (void)reread_map(r, CL_NODES_MAX); /* any node */
            redirects = 0;
            ix = r->slot_node[slot] ? r->slot_node[slot] - 1u : ix;
            continue;
        }
        return rep;
    }
}
