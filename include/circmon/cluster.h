/* cluster.h - the Redis Cluster client behind cm_rconn when [redis] cluster = yes.
 *
 * Used by lib/redis_conn.c only; callers see struct cm_rconn (redis_conn.h).
 *
 * The slot map comes from CLUSTER SLOTS, asked of the seed nodes ([redis]
 * nodes) first and of any connected node later. Each master of the map gets
 * one cm_rconn (cm_rconn_new_node: AUTH, the user's prepare, deadlines,
 * reconnection with backoff). A command goes to the master of its key's
 * slot; its arguments are copied so that it can be sent again:
 * - MOVED: the slot is set to the named node, the map is read again, and the
 *   command is sent to the named node;
 * - ASK: ASKING then the command, on the named node, once;
 * - TRYAGAIN (a multi-key command while its slot migrates) and CLUSTERDOWN:
 *   sent again every CL_RETRY_MS until command_timeout_ms after its first
 *   send, then its last reply is delivered.
 * At most CL_REDIRECTS_MAX redirections per command. A redirection to a node
 * that is not connected, or the loss of a master's connection, makes the
 * client not ready (state_cb(0), the command fails with -ECONNRESET): it
 * reads the map again every 100 ms (doubling to 1 s) until every slot has a
 * connected master (a replica took over, or the master is back), then
 * state_cb(1). A command that fails with -ECONNRESET or -ETIMEDOUT is
 * always followed by state_cb(0) (if the client was up). The user
 * resynchronises from what Redis holds, as after a lost single connection.
 *
 * Bounds: the map is 16384 slot entries; at most CL_NODES_MAX nodes are
 * known (a map naming more is refused); commands in flight are those the
 * user sends (each node connection's own bound is the caller's in-flight
 * limit, as for one connection). */
#ifndef CIRCMON_CLUSTER_H
#define CIRCMON_CLUSTER_H

#include <stddef.h>

#include "circmon/config.h"
#include "circmon/redis_conn.h"

#define CL_NODES_MAX 256
#define CL_REDIRECTS_MAX 16
#define CL_RETRY_MS 20

struct event_base;
struct cm_rcluster;

/* A cluster client for top (the cm_rconn its callers hold: reply and state
 * callbacks get top, its errstr says what went wrong). It starts at once;
 * state_cb reports later from the loop. NULL when out of memory. */
struct cm_rcluster *cm_rcluster_new(struct event_base *base, const struct cm_config *cfg,
                                    struct cm_rconn *top, cm_rconn_prepare_cb prepare,
                                    cm_rconn_state_cb state_cb, void *ud);

/* Frees cl and its node connections: pending commands get -ECONNRESET
 * before it returns; state_cb is not called. Accepts NULL; returns NULL. */
struct cm_rcluster *cm_rcluster_free(struct cm_rcluster *cl);

/* 1 when the map covers every slot and each of its masters is connected. */
int cm_rcluster_ready(const struct cm_rcluster *cl);

/* Commands of the user not yet answered. */
size_t cm_rcluster_pending(const struct cm_rcluster *cl);

/* Drops every node connection (as a loss: see cm_rconn_drop). */
void cm_rcluster_drop(struct cm_rcluster *cl, const char *why);

/* What cl followed so far. */
void cm_rcluster_stats(const struct cm_rcluster *cl, struct cm_rcluster_stats *st);

/* cm_rconn_send, routed by the key's slot (see above). */
int cm_rcluster_send(struct cm_rcluster *cl, int argc, const char **argv, const size_t *lens,
                     cm_rconn_reply_cb cb, void *ud);

/* The key of a command as the router sees it (see redis_conn.h): 1 with
 * *key and *klen, or 0 when the command has none. Pure. */
int cm_rcluster_cmd_key(int argc, const char **argv, const size_t *lens, const char **key,
                        size_t *klen);

#endif
