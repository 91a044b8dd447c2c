/* redis_conn.h - one asynchronous Redis connection on a libevent loop.
 *
 * On hiredis 0.14's async API and its libevent adapter: it connects (TCP or
 * unix socket, within connect_timeout_ms), runs the handshake (AUTH and
 * SELECT from the configuration, then the user's own commands, e.g. SCRIPT
 * LOAD), gives every command a deadline of command_timeout_ms (hiredis 0.14
 * has none: a timed-out command drops the connection, since its fate is
 * unknown and later replies would be out of step), and reconnects from a
 * timer with a backoff of 100 ms doubling up to 5 s after any loss.
 *
 * With [redis] cluster = yes the same object is a Redis Cluster client
 * (lib/cluster.c): one such connection per master, each command sent to the
 * owner of its key's hash slot, MOVED/ASK/TRYAGAIN followed; it is ready
 * when every slot has a master whose connection is ready. The key of a
 * command is argv[1], or argv[3] for EVAL/EVALSHA (argv[2] keys); commands
 * without a key go to any master. The prepare callback runs for each node's
 * connection (SCRIPT LOAD per node), with that node's connection as c.
 *
 * Callbacks run from the loop, never from inside the call that queued them;
 * they may send commands but must not free the connection. */
#ifndef CIRCMON_REDIS_CONN_H
#define CIRCMON_REDIS_CONN_H

#include <stddef.h>
#include <stdint.h>

#include "circmon/config.h"

struct event_base;
struct redisReply;
struct cm_rconn;

/* Connection changes: up = 1 once the handshake completed, 0 when the
 * connection was lost or an attempt failed (cm_rconn_errstr says why). */
typedef void (*cm_rconn_state_cb)(struct cm_rconn *c, int up, void *ud);

/* Called for each new connection, after AUTH and SELECT are queued: queue
 * the program's own handshake commands with cm_rconn_handshake. Return 0,
 * or a negative errno to fail the attempt. */
typedef int (*cm_rconn_prepare_cb)(struct cm_rconn *c, void *ud);

/* A reply: rep (valid only during the call; never NULL when err is 0), or
 * rep NULL and err -ETIMEDOUT (no reply within command_timeout_ms) or
 * -ECONNRESET (the connection was lost first: the command may or may not
 * have run). An error reply comes as a REDIS_REPLY_ERROR rep with err 0. */
typedef void (*cm_rconn_reply_cb)(struct cm_rconn *c, struct redisReply *rep, int err,
                                  void *ud);

/* A new connection over cfg on base (both borrowed: they must outlive it);
 * it starts connecting at once, and state_cb reports the outcome later.
 * Returns NULL when out of memory. */
struct cm_rconn *cm_rconn_new(struct event_base *base, const struct cm_config *cfg,
                              cm_rconn_prepare_cb prepare, cm_rconn_state_cb state_cb,
                              void *ud);

/* A connection to host:port (borrowed, must outlive it), never a cluster:
 * cm_rconn_new for one node of a cluster (cfg's host, port, unix_socket and
 * db unused; AUTH from cfg). */
struct cm_rconn *cm_rconn_new_node(struct event_base *base, const struct cm_config *cfg,
                                   const char *host, int port, cm_rconn_prepare_cb prepare,
                                   cm_rconn_state_cb state_cb, void *ud);

/* What a cluster client followed since it started (see cluster.h). */
struct cm_rcluster_stats {
    uint64_t moved;     /* MOVED redirections followed */
    uint64_t ask;       /* ASK redirections followed */
    uint64_t tryagain;  /* TRYAGAIN and CLUSTERDOWN replies waited out */
    uint64_t map_reads; /* slot maps read (CLUSTER SLOTS answered) */
};

/* Fills *st for a cluster client and returns 0; -ENOTSUP for a connection
 * to one Redis (st untouched). */
int cm_rconn_cluster_stats(const struct cm_rconn *c, struct cm_rcluster_stats *st);

/* Closes and frees c: the callbacks of pending commands get -ECONNRESET
 * before it returns; state_cb is not called. Accepts NULL; returns NULL. */
struct cm_rconn *cm_rconn_free(struct cm_rconn *c);

/* 1 when the handshake completed and commands may be sent. */
int cm_rconn_ready(const struct cm_rconn *c);

/* Commands sent and not yet answered (handshake excluded). */
size_t cm_rconn_pending(const struct cm_rconn *c);

/* Why the last attempt failed or the connection was lost, or the last
 * error set with cm_rconn_set_err. */
const char *cm_rconn_errstr(const struct cm_rconn *c);
void cm_rconn_set_err(struct cm_rconn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Drops the connection now, as a loss (pending commands get -ECONNRESET,
 * state_cb(0), reconnection after the backoff). */
void cm_rconn_drop(struct cm_rconn *c, const char *why);

/* Queues a handshake command (only from prepare). An error reply fails the
 * attempt; cb (may be NULL) sees the others. Returns 0 or a negative errno. */
int cm_rconn_handshake(struct cm_rconn *c, int argc, const char **argv, const size_t *lens,
                       cm_rconn_reply_cb cb, void *ud);

/* Sends a command (argv with lens, or NUL-terminated when lens is NULL)
 * with its deadline. Returns 0 when sent (cb is called exactly once,
 * later), -ENOTCONN (not ready: nothing sent) or -ENOMEM. */
int cm_rconn_send(struct cm_rconn *c, int argc, const char **argv, const size_t *lens,
                  cm_rconn_reply_cb cb, void *ud);

#endif
