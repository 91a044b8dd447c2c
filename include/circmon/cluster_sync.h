/* cluster_sync.h - blocking Redis commands for the tools, routed by hash slot with [redis] cluster = yes.
 *
 * One face for both deployments: with cluster = no, one connection from
 * cm_store_connect_sync; with cluster = yes, the slot map from CLUSTER
 * SLOTS (asked of the seed nodes in turn), a connection per node opened
 * when first needed (connect_timeout_ms, command_timeout_ms, AUTH), each
 * command sent to the master of its key's slot (cm_rcluster_cmd_key), MOVED
 * followed (the slot is updated), ASK followed with ASKING, TRYAGAIN and
 * CLUSTERDOWN sent again every 20 ms until command_timeout_ms has passed; a
 * node that does not answer (a master lost) makes it read the map from the
 * other nodes every 100 ms until a replica took over, within the same
 * deadline (this blocks: it is for the tools, never for circmond's loop). At
 * most CL_REDIRECTS_MAX redirections per command and CL_NODES_MAX nodes. */
#ifndef CIRCMON_CLUSTER_SYNC_H
#define CIRCMON_CLUSTER_SYNC_H

#include <stddef.h>

#include "circmon/config.h"

struct redisReply;
struct cm_rsync;

/* Connects (and reads the slot map) for cfg (borrowed: it must outlive the
 * result). Returns it, or NULL with a message in err (errlen bytes, always
 * NUL-terminated, never the password). */
struct cm_rsync *cm_rsync_open(const struct cm_config *cfg, char *err, size_t errlen);

/* Runs one command (argv with lens, or NUL-terminated strings when lens is
 * NULL). Returns its reply (the caller frees it with freeReplyObject; an
 * error reply other than a redirection is returned as it is), or NULL with
 * err set when no node answered. */
struct redisReply *cm_rsync_command(struct cm_rsync *r, int argc, const char **argv,
                                    const size_t *lens, char *err, size_t errlen);

/* The masters of the current slot map, for commands that each node answers
 * for its own keys only (SCAN): masters are numbered 0..n-1 in the order of
 * the first slot each serves. With cluster = no, the one Redis is master 0.
 * The numbering holds until the map is read again (cm_rsync_refresh, or a
 * redirection or lost node met by cm_rsync_command). */
size_t cm_rsync_n_masters(const struct cm_rsync *r);

/* "host:port" of master m (or the configured address with cluster = no)
 * into buf (cap bytes); returns buf. */
const char *cm_rsync_master_name(const struct cm_rsync *r, size_t m, char *buf, size_t cap);

/* The connection to master m (m < cm_rsync_n_masters), opened when first
 * needed; owned by r (never freed by the caller; invalid after the next
 * cm_rsync_* call that meets an I/O error on it: the caller reports and
 * stops). Commands on it are not routed: a key of a slot that moved gets a
 * MOVED or ASK error reply, which the caller sends again through
 * cm_rsync_command. NULL with err when it cannot connect. */
struct redisContext *cm_rsync_master_conn(struct cm_rsync *r, size_t m, char *err,
                                          size_t errlen);

/* Reads the slot map again (from any node that answers; with cluster = no,
 * nothing to do). 1 when it differs from the map held before, 0 when it is
 * the same, or -EPROTO with err when no node answered (the old map is then
 * kept). */
int cm_rsync_refresh(struct cm_rsync *r, char *err, size_t errlen);

/* 1 when some master of the current map has a slot MIGRATING or IMPORTING
 * (a reshard under way, from CLUSTER NODES of each master), 0 when none,
 * negative with err when a master did not answer. Always 0 with cluster =
 * no. */
int cm_rsync_resharding(struct cm_rsync *r, char *err, size_t errlen);

/* Closes every connection and frees r. Accepts NULL; returns NULL. */
struct cm_rsync *cm_rsync_close(struct cm_rsync *r);

#endif
