/* redis_conn.c - one asynchronous Redis connection: handshake, deadlines, reconnection. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "circmon/clock.h"
#include "circmon/cluster.h"
#include "circmon/redis_conn.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

enum rc_state { RC_DOWN, RC_CONNECTING, RC_UP };

/* One command in flight. */
struct rcmd {
    struct cm_rconn *c;
    struct rcmd *prev, *next; /* in c->cmds (not handshake commands) */
    struct event *timer;      /* the deadline (not for handshake commands) */
    int handshake;
    int timed_out;
    cm_rconn_reply_cb cb;
    void *ud;
};

struct cm_rconn {
    struct event_base *base;
    const struct cm_config *cfg;
    cm_rconn_prepare_cb prepare;
    cm_rconn_state_cb state_cb;
    void *ud;

    redisAsyncContext *ac; /* NULL when down */
    enum rc_state state;
    int handshake_left; /* handshake replies still expected */
    char errstr[512]; /* the longest: a layout mismatch (store_layout.c), ~300 */

    struct rcmd *cmds; /* sent and not answered */
    size_t n_cmds;

    struct event *connect_timer; /* handshake deadline */
    struct event *retry_timer;   /* reconnect after backoff */
    struct event *notify_ev;     /* deferred state_cb(0) of a failed attempt */
    int backoff_ms;

    const char *host; /* a cluster node's address (owned by the cluster); NULL: cfg's */
    int port;
    struct cm_rcluster *cl; /* cfg->redis_cluster: the router; the fields above unused */
};

static void start_connect(struct cm_rconn *c);

static void set_errv(struct cm_rconn *c, const char *fmt, va_list ap)
{
    vsnprintf(c->errstr, sizeof(c->errstr), fmt, ap);
}

void cm_rconn_set_err(struct cm_rconn *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_errv(c, fmt, ap);
    va_end(ap);
}

/* Schedules the next attempt and doubles the backoff. */
static void schedule_retry(struct cm_rconn *c)
{
    struct timeval tv;
    cm_clock_tv(c->backoff_ms, &tv);
    if (evtimer_add(c->retry_timer, &tv) < 0)
        cm_rconn_set_err(c, "cannot arm the redis reconnection timer");
    c->backoff_ms = c->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : c->backoff_ms * 2;
}

/* The connection is gone or unusable: forget it, free it unless hiredis is
 * freeing it already (own == 0), tell the user, reconnect later. Pending
 * commands fail inside redisAsyncFree (or hiredis's own teardown). */
static void lose(struct cm_rconn *c, redisAsyncContext *ac, int own)
{
    if (c->ac != ac || !ac)
        return; /* an older context, already handled */
    c->ac = NULL;
    c->state = RC_DOWN;
    evtimer_del(c->connect_timer);
    if (own)
        redisAsyncFree(ac); /* deferred by hiredis when inside its callback */
    schedule_retry(c);
    if (c->state_cb)
        c->state_cb(c, 0, c->ud);
}

static void cmd_unlink(struct rcmd *q)
{
    struct cm_rconn *c = q->c;
    if (q->prev)
        q->prev->next = q->next;
    else if (c->cmds == q)
        c->cmds = q->next;
    if (q->next)
        q->next->prev = q->prev;
    q->prev = q->next = NULL;
    c->n_cmds--;
}

static void cmd_free(struct rcmd *q)
{
    if (q->timer)
        event_free(q->timer);
    free(q);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct rcmd *q = arg;
    struct cm_rconn *c = q->c;
    q->timed_out = 1;
    cm_rconn_set_err(c, "redis command timed out after %d ms", c->cfg->command_timeout_ms);
    lose(c, c->ac, 1);
}

static void on_handshake(redisAsyncContext *ac, void *r, void *privdata)
{
    struct rcmd *q = privdata;
    struct cm_rconn *c = q->c;
    redisReply *rep = r;
    cm_rconn_reply_cb cb = q->cb;
    void *ud = q->ud;
    cmd_free(q);
    if (!rep || c->ac != ac)
        return; /* the connection went away: lose() ran or will run */
    if (rep->type == REDIS_REPLY_ERROR) {
        cm_rconn_set_err(c, "redis handshake failed: %s", rep->str);
        lose(c, ac, 1);
        return;
    }
    if (cb)
        cb(c, rep, 0, ud);
    if (--c->handshake_left == 0) {
        c->state = RC_UP;
        c->backoff_ms = BACKOFF_MIN_MS;
        evtimer_del(c->connect_timer);
        if (c->state_cb)
            c->state_cb(c, 1, c->ud);
    }
}

static void on_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    struct rcmd *q = privdata;
    struct cm_rconn *c = q->c;
    redisReply *rep = r;
    (void)ac;
    if (q->timer)
        evtimer_del(q->timer);
    if (!rep)
        c->state = RC_DOWN; /* torn down: refuse new commands at once */
    cmd_unlink(q);
    int err = rep ? 0 : q->timed_out ? -ETIMEDOUT : -ECONNRESET;
    q->cb(c, rep, err, q->ud);
    cmd_free(q);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct cm_rconn *c = ac->data;
    if (status == REDIS_OK || c->ac != ac)
        return; /* success is reported when the handshake completes */
    cm_rconn_set_err(c, "cannot connect to redis: %s", ac->errstr[0] ? ac->errstr : "error");
    lose(c, (redisAsyncContext *)ac, 0); /* hiredis frees it after this callback */
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct cm_rconn *c = ac->data;
    if (c->ac != ac)
        return;
    cm_rconn_set_err(c, "redis connection lost: %s",
                     status == REDIS_OK ? "closed" : (ac->errstr[0] ? ac->errstr : "error"));
    lose(c, (redisAsyncContext *)ac, 0);
}

static void on_connect_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct cm_rconn *c = arg;
    cm_rconn_set_err(c, "redis did not answer within connect_timeout_ms (%d ms)",
                     c->cfg->connect_timeout_ms);
    lose(c, c->ac, 1);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    start_connect(arg);
}

static void on_notify(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct cm_rconn *c = arg;
    if (c->state == RC_DOWN && c->state_cb)
        c->state_cb(c, 0, c->ud);
}

/* Sends one command for q: a handshake step, or a command linked into
 * c->cmds with its own deadline. */
static int send_cmd(struct cm_rconn *c, struct rcmd *q, int argc, const char **argv,
                    const size_t *lens)
{
    if (!c->ac)
        return -ENOTCONN;
    /* the deadline first: a command without one could wait forever */
    if (!q->handshake && !(q->timer = evtimer_new(c->base, on_timeout, q)))
        return -ENOMEM;
    if (redisAsyncCommandArgv(c->ac, q->handshake ? on_handshake : on_reply, q, argc, argv,
                              lens) != REDIS_OK)
        return -ENOTCONN;
    if (q->handshake)
        return 0;
    q->next = c->cmds;
    q->prev = NULL;
    if (c->cmds)
        c->cmds->prev = q;
    c->cmds = q;
    c->n_cmds++;
    struct timeval tv;
    cm_clock_tv(c->cfg->command_timeout_ms, &tv);
    if (evtimer_add(q->timer, &tv) < 0) {
        /* sent without a deadline: its fate would be unknown, drop the
         * connection (its reply callback then fails q) */
        cm_rconn_set_err(c, "cannot arm the deadline of a redis command");
        lose(c, c->ac, 1);
    }
    return 0;
}

static struct rcmd *cmd_new(struct cm_rconn *c, int handshake, cm_rconn_reply_cb cb, void *ud)
{
    struct rcmd *q = calloc(1, sizeof(*q));
    if (q) {
        q->c = c;
        q->handshake = handshake;
        q->cb = cb;
        q->ud = ud;
    }
    return q;
}

int cm_rconn_handshake(struct cm_rconn *c, int argc, const char **argv, const size_t *lens,
                       cm_rconn_reply_cb cb, void *ud)
{
    struct rcmd *q = cmd_new(c, 1, cb, ud);
    if (!q)
        return -ENOMEM;
    int r = send_cmd(c, q, argc, argv, lens);
    if (r)
        cmd_free(q);
    else
        c->handshake_left++;
    return r;
}

static void start_connect(struct cm_rconn *c)
{
    const struct cm_config *cfg = c->cfg;
    redisAsyncContext *ac;
    if (c->host)
        ac = redisAsyncConnect(c->host, c->port);
    else if (cfg->redis_unix_socket && *cfg->redis_unix_socket)
        ac = redisAsyncConnectUnix(cfg->redis_unix_socket);
    else
        ac = redisAsyncConnect(cfg->redis_host, cfg->redis_port);
    if (!ac || ac->err) {
        cm_rconn_set_err(c, "cannot connect to redis: %s",
                         ac ? ac->errstr : "out of memory for the connection");
        if (ac)
            redisAsyncFree(ac);
        c->state = RC_DOWN;
        schedule_retry(c);
        event_active(c->notify_ev, 0, 0);
        return;
    }
    ac->data = c;
    c->ac = ac;
    c->state = RC_CONNECTING;
    c->handshake_left = 0;
    struct timeval tv;
    cm_clock_tv(cfg->connect_timeout_ms, &tv);
    if (redisLibeventAttach(ac, c->base) != REDIS_OK ||
        redisAsyncSetConnectCallback(ac, on_connect) != REDIS_OK ||
        redisAsyncSetDisconnectCallback(ac, on_disconnect) != REDIS_OK ||
        evtimer_add(c->connect_timer, &tv) < 0) {
        cm_rconn_set_err(c, "cannot attach the redis connection to the event loop");
        lose(c, ac, 1);
        return;
    }

    /* Commands queue up before the socket is connected; hiredis writes them
     * once it is. */
    int r = 0;
    char db[16];
    if (cfg->redis_password && *cfg->redis_password) {
        if (cfg->redis_user && *cfg->redis_user) {
            const char *a[] = {"AUTH", cfg->redis_user, cfg->redis_password};
            r = cm_rconn_handshake(c, 3, a, NULL, NULL, NULL);
        } else {
            const char *a[] = {"AUTH", cfg->redis_password};
            r = cm_rconn_handshake(c, 2, a, NULL, NULL, NULL);
        }
    }
    if (!r && cfg->redis_db && !c->host) {
        snprintf(db, sizeof(db), "%d", cfg->redis_db);
        const char *a[] = {"SELECT", db};
        r = cm_rconn_handshake(c, 2, a, NULL, NULL, NULL);
    }
    if (!r && c->prepare)
        r = c->prepare(c, c->ud);
    if (!r && c->handshake_left == 0) {
        const char *a[] = {"PING"}; /* the connection is up when something answers */
        r = cm_rconn_handshake(c, 1, a, NULL, NULL, NULL);
    }
    if (r) {
        cm_rconn_set_err(c, "cannot start the redis handshake: %s", strerror(-r));
        lose(c, ac, 1);
    }
}

static struct cm_rconn *rconn_new(struct event_base *base, const struct cm_config *cfg,
                                  const char *host, int port, cm_rconn_prepare_cb prepare,
                                  cm_rconn_state_cb state_cb, void *ud)
{
    struct cm_rconn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->host = host;
    c->port = port;
    c->base = base;
    c->cfg = cfg;
    c->prepare = prepare;
    c->state_cb = state_cb;
    c->ud = ud;
    c->backoff_ms = BACKOFF_MIN_MS;
    c->connect_timer = evtimer_new(base, on_connect_timeout, c);
    c->retry_timer = evtimer_new(base, on_retry, c);
    c->notify_ev = event_new(base, -1, 0, on_notify, c);
    if (!c->connect_timer || !c->retry_timer || !c->notify_ev) {
        c->state_cb = NULL;
        return cm_rconn_free(c);
    }
    start_connect(c);
    return c;
}

struct cm_rconn *cm_rconn_new_node(struct event_base *base, const struct cm_config *cfg,
                                   const char *host, int port, cm_rconn_prepare_cb prepare,
                                   cm_rconn_state_cb state_cb, void *ud)
{
    return rconn_new(base, cfg, host, port, prepare, state_cb, ud);
}

struct cm_rconn *cm_rconn_new(struct event_base *base, const struct cm_config *cfg,
                              cm_rconn_prepare_cb prepare, cm_rconn_state_cb state_cb,
                              void *ud)
{
    if (!cfg->redis_cluster)
        return rconn_new(base, cfg, NULL, 0, prepare, state_cb, ud);
    struct cm_rconn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->base = base;
    c->cfg = cfg;
    if (!(c->cl = cm_rcluster_new(base, cfg, c, prepare, state_cb, ud))) {
        free(c);
        return NULL;
    }
    return c;
}

struct cm_rconn *cm_rconn_free(struct cm_rconn *c)
{
    if (!c)
        return NULL;
    if (c->cl) {
        c->cl = cm_rcluster_free(c->cl);
        free(c);
        return NULL;
    }
    c->state_cb = NULL;
    if (c->ac) {
        redisAsyncContext *ac = c->ac;
        c->ac = NULL;
        redisAsyncFree(ac); /* fails every pending command */
    }
    if (c->connect_timer)
        event_free(c->connect_timer);
    if (c->retry_timer)
        event_free(c->retry_timer);
    if (c->notify_ev)
        event_free(c->notify_ev);
    free(c);
    return NULL;
}

int cm_rconn_cluster_stats(const struct cm_rconn *c, struct cm_rcluster_stats *st)
{
    if (!c->cl)
        return -ENOTSUP;
    cm_rcluster_stats(c->cl, st);
    return 0;
}

int cm_rconn_ready(const struct cm_rconn *c)
{
    if (c->cl)
        return cm_rcluster_ready(c->cl);
    return c->state == RC_UP && c->ac != NULL;
}

size_t cm_rconn_pending(const struct cm_rconn *c)
{
    if (c->cl)
        return cm_rcluster_pending(c->cl);
    return c->n_cmds;
}

const char *cm_rconn_errstr(const struct cm_rconn *c)
{
    return c->errstr;
}

void cm_rconn_drop(struct cm_rconn *c, const char *why)
{
    if (c->cl) {
        cm_rcluster_drop(c->cl, why);
        return;
    }
    if (c->ac) {
        cm_rconn_set_err(c, "%s", why ? why : "connection dropped on request");
        lose(c, c->ac, 1);
    }
}

int cm_rconn_send(struct cm_rconn *c, int argc, const char **argv, const size_t *lens,
                  cm_rconn_reply_cb cb, void *ud)
{
    if (c->cl)
        return cm_rcluster_send(c->cl, argc, argv, lens, cb, ud);
    if (!cm_rconn_ready(c))
        return -ENOTCONN;
    struct rcmd *q = cmd_new(c, 0, cb, ud);
    if (!q)
        return -ENOMEM;
    int r = send_cmd(c, q, argc, argv, lens);
    if (r)
        cmd_free(q);
    return r;
}
