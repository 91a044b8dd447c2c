/* cluster.c - a Redis Cluster client on cm_rconn: slot map, one connection per master, MOVED/ASK/TRYAGAIN. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "circmon/clock.h"
#include "circmon/cluster.h"
#include "circmon/decimal.h"
#include "circmon/slot.h"

#define REFRESH_MIN_MS 100
#define REFRESH_MAX_MS 1000

struct node {
    struct cm_rcluster *cl;
    char host[CM_NODE_HOST_MAX + 1];
    int port;
    struct cm_rconn *c;
    int master; /* owns slots in the map */
};

/* One command of the user, with its own copy of the arguments. */
struct ccmd {
    struct cm_rcluster *cl;
    struct ccmd *prev, *next; /* in cl->cmds */
    int argc;
    const char **argv;
    size_t *lens;
    int slot; /* -1: no key */
    int redirects;
    int64_t t0_ms;
    struct event *retry; /* TRYAGAIN/CLUSTERDOWN: sent again from this timer */
    cm_rconn_reply_cb cb;
    void *ud;
};

struct cm_rcluster {
    struct event_base *base;
    const struct cm_config *cfg;
    struct cm_rconn *top;
    cm_rconn_prepare_cb prepare;
    cm_rconn_state_cb state_cb;
    void *ud;

    struct node *nodes[CL_NODES_MAX];
    size_t n_nodes;
    uint16_t slot_node[CM_SLOTS]; /* index + 1 into nodes; 0: no owner known */
    int have_map, full;           /* a map was read; it covers every slot */
    int stale;                    /* a master was lost or a redirection failed since */
    int up;                       /* what state_cb last said */
    int freeing;

    struct event *refresh_timer;
    struct event *gc_ev; /* frees the nodes a new map no longer names */
    int refresh_ms;
    int refresh_inflight;
    size_t ask_next; /* the node asked for the map rotates */

    struct ccmd *cmds;
    size_t n_cmds;
    struct cm_rcluster_stats st;
};

static void schedule_refresh(struct cm_rcluster *cl, int ms);
static void on_retry(evutil_socket_t fd, short what, void *arg);

/* ------------------------------------------------------------ commands */

int cm_rcluster_cmd_key(int argc, const char **argv, const size_t *lens, const char **key,
                        size_t *klen)
{
    if (argc < 2)
        return 0;
    size_t l0 = lens ? lens[0] : strlen(argv[0]);
    int script = (l0 == 4 && !strncasecmp(argv[0], "EVAL", 4)) ||
                 (l0 == 7 && !strncasecmp(argv[0], "EVALSHA", 7));
    if (script) {
        uint64_t nk;
        if (argc < 4 || cm_decimal_u64(argv[2], lens ? lens[2] : strlen(argv[2]), INT32_MAX,
                                       &nk) || nk == 0)
            return 0;
        *key = argv[3];
        *klen = lens ? lens[3] : strlen(argv[3]);
        return 1;
    }
    *key = argv[1];
    *klen = lens ? lens[1] : strlen(argv[1]);
    return 1;
}

static struct ccmd *ccmd_new(struct cm_rcluster *cl, int argc, const char **argv,
                             const size_t *lens, cm_rconn_reply_cb cb, void *ud)
{
    size_t data = 0;
    for (int i = 0; i < argc; i++)
        data += (lens ? lens[i] : strlen(argv[i])) + 1;
    struct ccmd *q = calloc(1, sizeof(*q));
    char *blk = malloc((size_t)argc * (sizeof(char *) + sizeof(size_t)) + data);
    if (!q || !blk || !(q->retry = evtimer_new(cl->base, on_retry, q))) {
        free(blk);
        free(q);
        return NULL;
    }
    q->cl = cl;
    q->argc = argc;
    q->argv = (const char **)(void *)blk;
    q->lens = (size_t *)(void *)(blk + (size_t)argc * sizeof(char *));
    char *d = blk + (size_t)argc * (sizeof(char *) + sizeof(size_t));
    for (int i = 0; i < argc; i++) {
        size_t l = lens ? lens[i] : strlen(argv[i]);
        memcpy(d, argv[i], l);
        d[l] = '\0';
        q->argv[i] = d;
        q->lens[i] = l;
        d += l + 1;
    }
    const char *k;
    size_t kl;
    q->slot = cm_rcluster_cmd_key(argc, q->argv, q->lens, &k, &kl) ? cm_slot_of(k, kl) : -1;
    q->t0_ms = cm_clock_ms();
    q->cb = cb;
    q->ud = ud;
    return q;
}

static void ccmd_free(struct ccmd *q)
{
    if (q->retry)
        event_free(q->retry);
    free((void *)q->argv);
    free(q);
}

static void ccmd_link(struct ccmd *q)
{
    struct cm_rcluster *cl = q->cl;
    q->prev = NULL;
    q->next = cl->cmds;
    if (cl->cmds)
        cl->cmds->prev = q;
    cl->cmds = q;
    cl->n_cmds++;
}

static void ccmd_unlink(struct ccmd *q)
{
    struct cm_rcluster *cl = q->cl;
    if (q->prev)
        q->prev->next = q->next;
    else
        cl->cmds = q->next;
    if (q->next)
        q->next->prev = q->prev;
    cl->n_cmds--;
}

/* Hands the reply to the user and forgets q. */
static void deliver(struct ccmd *q, redisReply *rep, int err)
{
    struct cm_rcluster *cl = q->cl;
    ccmd_unlink(q);
    q->cb(cl->top, rep, err, q->ud);
    ccmd_free(q);
}

/* ---------------------------------------------------------------- state */

static void set_up(struct cm_rcluster *cl, int up)
{
    if (cl->up == up)
        return;
    cl->up = up;
    if (cl->state_cb && !cl->freeing)
        cl->state_cb(cl->top, up, cl->ud);
}

/* Not usable until a map read from now on shows every slot with a
 * connected master. */
static void mark_down(struct cm_rcluster *cl)
{
    cl->stale = 1;
    cl->refresh_ms = REFRESH_MIN_MS;
    schedule_refresh(cl, 0);
    set_up(cl, 0);
}

static void check_up(struct cm_rcluster *cl)
{
    if (cl->up || !cl->have_map || !cl->full || cl->stale)
        return;
    for (size_t i = 0; i < cl->n_nodes; i++)
        if (cl->nodes[i]->master && !cm_rconn_ready(cl->nodes[i]->c))
            return;
    set_up(cl, 1);
}

/* ---------------------------------------------------------------- nodes */

static int node_prepare(struct cm_rconn *c, void *ud)
{
    struct node *nd = ud;
    return nd->cl->prepare ? nd->cl->prepare(c, nd->cl->ud) : 0;
}

static void refresh(struct cm_rcluster *cl);

static void node_state(struct cm_rconn *c, int up, void *ud)
{
    struct node *nd = ud;
    struct cm_rcluster *cl = nd->cl;
    if (cl->freeing)
        return;
    if (up) {
        if (!cl->have_map || cl->stale)
            refresh(cl);
        check_up(cl);
        return;
    }
    if (nd->master) {
        cm_rconn_set_err(cl->top, "redis cluster master %s:%d: %s", nd->host, nd->port,
                         cm_rconn_errstr(c));
        mark_down(cl);
    }
}

/* The node at host:port, connected (or connecting) from now on; NULL when
 * CL_NODES_MAX nodes are known already or out of memory. */
static struct node *node_get(struct cm_rcluster *cl, const char *host, size_t hl, int port)
{
    for (size_t i = 0; i < cl->n_nodes; i++)
        if (cl->nodes[i]->port == port && strlen(cl->nodes[i]->host) == hl &&
            !memcmp(cl->nodes[i]->host, host, hl))
            return cl->nodes[i];
    if (cl->n_nodes == CL_NODES_MAX || hl == 0 || hl > CM_NODE_HOST_MAX)
        return NULL;
    struct node *nd = calloc(1, sizeof(*nd));
    if (!nd)
        return NULL;
    nd->cl = cl;
    memcpy(nd->host, host, hl);
    nd->host[hl] = '\0';
    nd->port = port;
    cl->nodes[cl->n_nodes++] = nd; /* before connecting: callbacks may look it up */
    if (!(nd->c = cm_rconn_new_node(cl->base, cl->cfg, nd->host, nd->port, node_prepare,
                                    node_state, nd))) {
        cl->n_nodes--;
        free(nd);
        return NULL;
    }
    return nd;
}

static size_t node_index(const struct cm_rcluster *cl, const struct node *nd)
{
    for (size_t i = 0; i < cl->n_nodes; i++)
        if (cl->nodes[i] == nd)
            return i;
    return 0; /* not reached: nd comes from cl->nodes */
}

/* The master of slot (any connected master when slot < 0), or NULL. */
static struct node *node_of(struct cm_rcluster *cl, int slot)
{
    if (slot >= 0)
        return cl->slot_node[slot] ? cl->nodes[cl->slot_node[slot] - 1] : NULL;
    for (size_t i = 0; i < cl->n_nodes; i++)
        if (cl->nodes[i]->master && cm_rconn_ready(cl->nodes[i]->c))
            return cl->nodes[i];
    return NULL;
}

/* ----------------------------------------------------------------- map */

/* One element of CLUSTER SLOTS: {start, end, {host, port, ...}, replicas...}. */
static int parse_range(const redisReply *e, long long *from, long long *to, const char **host,
                       size_t *hl, int *port)
{
    if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
        e->element[0]->type != REDIS_REPLY_INTEGER ||
        e->element[1]->type != REDIS_REPLY_INTEGER ||
        e->element[2]->type != REDIS_REPLY_ARRAY || e->element[2]->elements < 2)
        return -EPROTO;
    const redisReply *m = e->element[2];
    *from = e->element[0]->integer;
    *to = e->element[1]->integer;
    if (*from < 0 || *to < *from || *to >= CM_SLOTS || m->element[0]->type != REDIS_REPLY_STRING ||
        m->element[1]->type != REDIS_REPLY_INTEGER || m->element[1]->integer < 1 ||
        m->element[1]->integer > 65535 || m->element[0]->len > CM_NODE_HOST_MAX)
        return -EPROTO;
    *host = m->element[0]->str;
    *hl = m->element[0]->len;
    *port = (int)m->element[1]->integer;
    return 0;
}

static void on_slots(struct cm_rconn *c, redisReply *rep, int err, void *ud)
{
    struct node *asked = ud;
    struct cm_rcluster *cl = asked->cl;
    (void)c;
    cl->refresh_inflight = 0;
    if (cl->freeing)
        return;
    if (err || rep->type != REDIS_REPLY_ARRAY) {
        cm_rconn_set_err(cl->top, "redis cluster: CLUSTER SLOTS on %s:%d failed: %s",
                         asked->host, asked->port,
                         err ? strerror(-err)
                         : rep->type == REDIS_REPLY_ERROR ? rep->str : "not an array");
        return; /* the refresh timer asks again while not up */
    }
    uint16_t *map = calloc(CM_SLOTS, sizeof(*map));
    if (!map) {
        cm_rconn_set_err(cl->top, "redis cluster: out of memory for the slot map");
        return;
    }
    for (size_t i = 0; i < rep->elements; i++) {
        long long from, to;
        const char *host;
        size_t hl;
        int port;
        if (parse_range(rep->element[i], &from, &to, &host, &hl, &port)) {
            cm_rconn_set_err(cl->top, "redis cluster: CLUSTER SLOTS on %s:%d: malformed "
                             "entry %zu", asked->host, asked->port, i);
            free(map);
            return;
        }
        if (hl == 0 || (hl == 1 && host[0] == '?')) { /* endpoint unknown: the node asked */
            host = asked->host;
            hl = strlen(asked->host);
        }
        struct node *nd = node_get(cl, host, hl, port);
        if (!nd) {
            cm_rconn_set_err(cl->top, "redis cluster: more than %d nodes, or out of memory",
                             CL_NODES_MAX);
            free(map);
            return;
        }
        uint16_t ix = (uint16_t)(node_index(cl, nd) + 1);
        for (long long s = from; s <= to; s++)
            map[s] = ix;
    }
    memcpy(cl->slot_node, map, sizeof(cl->slot_node));
    free(map);
    for (size_t i = 0; i < cl->n_nodes; i++)
        cl->nodes[i]->master = 0;
    cl->full = 1;
    for (size_t s = 0; s < CM_SLOTS; s++) {
        if (cl->slot_node[s])
            cl->nodes[cl->slot_node[s] - 1]->master = 1;
        else
            cl->full = 0;
    }
    if (!cl->full)
        cm_rconn_set_err(cl->top, "redis cluster: some hash slots have no master (as %s:%d "
                         "sees it)", asked->host, asked->port);
    cl->have_map = 1;
    cl->stale = 0;
    cl->st.map_reads++;
    event_active(cl->gc_ev, 0, 0); /* not from here: we may be inside a node's callback */
    check_up(cl);
}

/* Frees the nodes that own no slot and have nothing in flight (a master
 * replaced by its replica, a seed), so that topology changes over a long run
 * never fill CL_NODES_MAX. Runs from the loop, outside any hiredis callback. */
static void on_gc(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct cm_rcluster *cl = arg;
    uint16_t remap[CL_NODES_MAX];
    size_t k = 0;
    for (size_t i = 0; i < cl->n_nodes; i++) {
        struct node *nd = cl->nodes[i];
        if (!nd->master && cm_rconn_pending(nd->c) == 0) {
            cm_rconn_free(nd->c); /* nothing pending: no callback runs */
            free(nd);
            remap[i] = 0;
            continue;
        }
        cl->nodes[k] = nd;
        remap[i] = (uint16_t)(k + 1);
        k++;
    }
    cl->n_nodes = k;
    for (size_t s = 0; s < CM_SLOTS; s++)
        if (cl->slot_node[s])
            cl->slot_node[s] = remap[cl->slot_node[s] - 1]; /* owners are masters: kept */
    cl->ask_next = 0;
}

/* Asks a connected node for the map (masters first, in turn); when none is
 * connected, connects to the seed nodes (their connection asks). */
static void refresh(struct cm_rcluster *cl)
{
    if (cl->refresh_inflight || cl->freeing)
        return;
    struct node *pick = NULL;
    for (int pass = 0; pass < 2 && !pick; pass++)
        for (size_t k = 0; k < cl->n_nodes && !pick; k++) {
            struct node *nd = cl->nodes[(cl->ask_next + k) % cl->n_nodes];
            if ((pass || nd->master) && cm_rconn_ready(nd->c))
                pick = nd;
        }
    if (!pick) {
        for (size_t i = 0; i < cl->cfg->n_redis_nodes; i++) {
            const struct cm_node_addr *a = &cl->cfg->redis_nodes[i];
            if (!node_get(cl, a->host, strlen(a->host), a->port))
                cm_rconn_set_err(cl->top, "redis cluster: cannot add seed node %s:%d", a->host,
                                 a->port);
        }
        return;
    }
    cl->ask_next++;
    const char *argv[] = {"CLUSTER", "SLOTS"};
    if (cm_rconn_send(pick->c, 2, argv, NULL, on_slots, pick) == 0)
        cl->refresh_inflight = 1;
}

static void on_refresh_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct cm_rcluster *cl = arg;
    refresh(cl);
    if (!cl->up) { /* poll until a replica took over or the master is back */
        int ms = cl->refresh_ms;
        cl->refresh_ms = ms * 2 > REFRESH_MAX_MS ? REFRESH_MAX_MS : ms * 2;
        schedule_refresh(cl, ms);
    }
}

static void schedule_refresh(struct cm_rcluster *cl, int ms)
{
    if (cl->freeing)
        return;
    struct timeval tv;
    cm_clock_tv(ms, &tv);
    if (evtimer_add(cl->refresh_timer, &tv) < 0)
        cm_rconn_set_err(cl->top, "redis cluster: cannot arm the map refresh timer");
}

/* -------------------------------------------------------------- routing */

static void on_node_reply(struct cm_rconn *c, redisReply *rep, int err, void *ud);

static void ignore_reply(struct cm_rconn *c, redisReply *rep, int err, void *ud)
{
    (void)c, (void)rep, (void)err, (void)ud;
}

static int dispatch(struct ccmd *q, struct node *nd, int asking)
{
    if (!nd || !cm_rconn_ready(nd->c))
        return -ENOTCONN;
    if (asking) {
        const char *a[] = {"ASKING"};
        int r = cm_rconn_send(nd->c, 1, a, NULL, ignore_reply, NULL);
        if (r)
            return r;
    }
    return cm_rconn_send(nd->c, q->argc, q->argv, q->lens, on_node_reply, q);
}

/* "MOVED <slot> <host>:<port>" or "ASK ...": 0 with the parts, or -EPROTO. */
static int parse_redirect(const char *s, size_t len, int *slot, const char **host, size_t *hl,
                          int *port)
{
    const char *sp1 = memchr(s, ' ', len);
    if (!sp1)
        return -EPROTO;
    const char *p = sp1 + 1, *end = s + len;
    const char *sp2 = memchr(p, ' ', (size_t)(end - p));
    if (!sp2)
        return -EPROTO;
    uint64_t v;
    if (cm_decimal_u64(p, (size_t)(sp2 - p), CM_SLOTS - 1, &v))
        return -EPROTO;
    *slot = (int)v;
    const char *a = sp2 + 1, *colon = NULL;
    for (const char *t = a; t < end; t++)
        if (*t == ':')
            colon = t;
    if (!colon || colon == a || cm_decimal_u64(colon + 1, (size_t)(end - colon - 1), 65535, &v) ||
        v == 0)
        return -EPROTO;
    *host = a;
    *hl = (size_t)(colon - a);
    if (*hl > 2 && a[0] == '[' && colon[-1] == ']') { /* [v6]:port */
        (*host)++;
        *hl -= 2;
    }
    *port = (int)v;
    return 0;
}

static int is_err(const redisReply *rep, const char *code)
{
    size_t n = strlen(code);
    return rep->len >= n && !memcmp(rep->str, code, n) && (rep->len == n || rep->str[n] == ' ');
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct ccmd *q = arg;
    struct cm_rcluster *cl = q->cl;
    if (dispatch(q, node_of(cl, q->slot), 0) == 0)
        return;
    cm_rconn_set_err(cl->top, "redis cluster: no connected master for slot %d", q->slot);
    deliver(q, NULL, -ECONNRESET);
    mark_down(cl);
}

static void on_node_reply(struct cm_rconn *c, redisReply *rep, int err, void *ud)
{
    struct ccmd *q = ud;
    struct cm_rcluster *cl = q->cl;
    (void)c;
    if (cl->freeing || err || rep->type != REDIS_REPLY_ERROR) {
        deliver(q, rep, err);
        /* A lost reply is always followed by a down notice (the user
         * resynchronises on the next up), also from a node that is not a
         * master (an ASK target). */
        if (err && !cl->freeing)
            mark_down(cl);
        return;
    }
    int moved = is_err(rep, "MOVED"), ask = is_err(rep, "ASK");
    if ((moved || ask) && q->redirects < CL_REDIRECTS_MAX) {
        int slot, port;
        const char *host;
        size_t hl;
        if (parse_redirect(rep->str, rep->len, &slot, &host, &hl, &port) == 0) {
            q->redirects++;
            struct node *nd = node_get(cl, host, hl, port);
            if (moved) {
                if (nd) {
                    cl->slot_node[slot] = (uint16_t)(node_index(cl, nd) + 1);
                    nd->master = 1; /* it owns a slot now: kept, and must be connected */
                }
                schedule_refresh(cl, 0); /* the rest of the map moved too, maybe */
            }
            if (dispatch(q, nd, ask) == 0) {
                if (moved)
                    cl->st.moved++;
                else
                    cl->st.ask++;
                return;
            }
            cm_rconn_set_err(cl->top, "redis cluster: redirected to %.*s:%d, not connected",
                             (int)hl, host, port);
            deliver(q, NULL, -ECONNRESET);
            mark_down(cl);
            return;
        }
    }
    if ((is_err(rep, "TRYAGAIN") || is_err(rep, "CLUSTERDOWN")) &&
        cm_clock_ms() - q->t0_ms < cl->cfg->command_timeout_ms) {
        struct timeval tv;
        cm_clock_tv(CL_RETRY_MS, &tv);
        if (is_err(rep, "CLUSTERDOWN"))
            schedule_refresh(cl, 0);
        q->redirects = 0; /* ASK, TRYAGAIN, ASK...: bounded by the deadline instead */
        if (evtimer_add(q->retry, &tv) == 0) {
            cl->st.tryagain++;
            return;
        }
    }
    deliver(q, rep, err);
}

int cm_rcluster_send(struct cm_rcluster *cl, int argc, const char **argv, const size_t *lens,
                     cm_rconn_reply_cb cb, void *ud)
{
    if (!cl->up)
        return -ENOTCONN;
    struct ccmd *q = ccmd_new(cl, argc, argv, lens, cb, ud);
    if (!q)
        return -ENOMEM;
    ccmd_link(q); /* first: a failure inside the send delivers q at once */
    int r = dispatch(q, node_of(cl, q->slot), 0);
    if (r) {
        ccmd_unlink(q);
        ccmd_free(q);
    }
    return r;
}

/* ---------------------------------------------------------------- setup */

struct cm_rcluster *cm_rcluster_new(struct event_base *base, const struct cm_config *cfg,
                                    struct cm_rconn *top, cm_rconn_prepare_cb prepare,
                                    cm_rconn_state_cb state_cb, void *ud)
{
    struct cm_rcluster *cl = calloc(1, sizeof(*cl));
    if (!cl)
        return NULL;
    cl->base = base;
    cl->cfg = cfg;
    cl->top = top;
    cl->prepare = prepare;
    cl->state_cb = state_cb;
    cl->ud = ud;
    cl->refresh_ms = REFRESH_MIN_MS;
    if (!(cl->refresh_timer = evtimer_new(base, on_refresh_timer, cl)) ||
        !(cl->gc_ev = event_new(base, -1, 0, on_gc, cl))) {
        if (cl->refresh_timer)
            event_free(cl->refresh_timer);
        free(cl);
        return NULL;
    }
    cm_rconn_set_err(top, "redis cluster: no slot map read yet");
    refresh(cl); /* no node yet: connects to the seeds, whose connection asks */
    schedule_refresh(cl, REFRESH_MIN_MS);
    return cl;
}

struct cm_rcluster *cm_rcluster_free(struct cm_rcluster *cl)
{
    if (!cl)
        return NULL;
    cl->freeing = 1;
    cl->up = 0; /* what callbacks send from here on is refused */
    for (size_t i = 0; i < cl->n_nodes; i++) {
        cm_rconn_free(cl->nodes[i]->c); /* fails what it has in flight */
        free(cl->nodes[i]);
    }
    while (cl->cmds) /* waiting for a retry */
        deliver(cl->cmds, NULL, -ECONNRESET);
    event_free(cl->refresh_timer);
    event_free(cl->gc_ev);
    free(cl);
    return NULL;
}

int cm_rcluster_ready(const struct cm_rcluster *cl)
{
    return cl->up;
}

void cm_rcluster_stats(const struct cm_rcluster *cl, struct cm_rcluster_stats *st)
{
    *st = cl->st;
}

size_t cm_rcluster_pending(const struct cm_rcluster *cl)
{
    return cl->n_cmds;
}

void cm_rcluster_drop(struct cm_rcluster *cl, const char *why)
{
    for (size_t i = 0; i < cl->n_nodes; i++)
        cm_rconn_drop(cl->nodes[i]->c, why);
}
