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

/* Closes every connection and frees r. Accepts NULL; returns NULL. */
struct cm_rsync *cm_rsync_close(struct cm_rsync *r);

#endif
