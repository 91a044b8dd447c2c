/* purge.h - deleting every key of a prefix in bounded steps.
 *
 * Every key circmon writes under a prefix P starts with `P:{` (partition
 * keys `P:{7}:...`, whatever follows the hash tag, and the alert keys
 * `P:{alert:...}`, `P:{alerts}:...`), and no other prefix's key does
 * (prefixes hold no braces), nor the alias key. A step is one SCAN of
 * MATCH `P:{*` with COUNT count, then one UNLINK per key found (pipelined,
 * one key per command: each command touches one hash slot, as on Redis
 * Cluster, where the caller runs the steps on every node). UNLINK frees the
 * values off Redis's main thread. The caller pauses between steps, so Redis
 * serves everyone else in between: a step costs O(count) on Redis.
 *
 * On Redis Cluster each master holds its own keys and SCAN sees only them:
 * cm_purge_prefix scans every master of the slot map, sends the UNLINK of a
 * key that moved meanwhile (MOVED, ASK, TRYAGAIN from a reshard) where the
 * cluster says, and verifies after each pass (see there). */
#ifndef CIRCMON_PURGE_H
#define CIRCMON_PURGE_H

#include <stddef.h>
#include <stdint.h>

struct redisContext;
struct cm_rsync;

#define CM_PURGE_COUNT_MAX 100000 /* largest COUNT of one step */
#define CM_PURGE_PASSES_MAX 8     /* passes of cm_purge_prefix before it gives up */

/* The SCAN pattern `<prefix>:{*` with the glob characters of prefix escaped:
 * malloc'd, or NULL when out of memory. */
char *cm_purge_pattern(const char *prefix);

/* One step on c (one Redis, or one master of a cluster): SCAN from cursor
 * (a decimal string, "0" to start; updated in place, "0" again when the
 * scan is complete; cursor holds 32 bytes) with COUNT count
 * (1..CM_PURGE_COUNT_MAX) and UNLINK of the keys it returns, pipelined on
 * c; a UNLINK that c answers with MOVED, ASK, TRYAGAIN or CLUSTERDOWN is
 * sent again through route (routed by slot; NULL: such a reply is an
 * error). *found gets the keys returned, *deleted those UNLINK removed.
 * Returns 0, or -EPROTO (Redis refused, with err, errlen bytes) / -ENOMEM /
 * -EINVAL (count out of range). */
int cm_purge_step(struct redisContext *c, struct cm_rsync *route, const char *pattern,
                  char *cursor, size_t count, size_t *found, size_t *deleted, char *err,
                  size_t errlen);

/* Counts the keys matching pattern on c (a full SCAN, read only). Returns
 * 0 with *n, or a negative code with err. */
int cm_purge_count(struct redisContext *c, const char *pattern, size_t *n, char *err,
                   size_t errlen);

/* What cm_purge_prefix did. */
struct cm_purge_result {
    size_t deleted;  /* keys UNLINK removed */
    size_t steps;    /* SCAN steps, over every master and pass */
    size_t passes;   /* passes over every master */
    size_t left;     /* keys counted after the last pass (an upper bound) */
    int resharding;  /* a slot was moving (or the map changed) at the last verification */
};

/* Deletes every key of pattern through r (one Redis, or every master of a
 * cluster), in steps of count keys with pause_ms between steps (blocking:
 * for the tools). A pass reads the slot map, then runs cm_purge_step to the
 * end of the SCAN of each master. After a pass the map is read again and
 * every master counted (full SCAN); the deletion is verified when nothing is
 * left, no master had a slot MIGRATING or IMPORTING before or after the
 * count and the map read after the count is the one before it (a key
 * moving between masters while they are counted could be seen by neither).
 * Otherwise another pass, at most CM_PURGE_PASSES_MAX in all.
 * Returns 0 (verified), 1 (not verified after CM_PURGE_PASSES_MAX passes:
 * res->left keys remain, or res->resharding), or a negative code with err
 * (res says what was done before). */
int cm_purge_prefix(struct cm_rsync *r, const char *pattern, size_t count, int64_t pause_ms,
                    struct cm_purge_result *res, char *err, size_t errlen);

#endif
