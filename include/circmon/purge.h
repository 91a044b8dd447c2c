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
 * serves everyone else in between: a step costs O(count) on Redis. */
#ifndef CIRCMON_PURGE_H
#define CIRCMON_PURGE_H

#include <stddef.h>

struct redisContext;

#define CM_PURGE_COUNT_MAX 100000 /* largest COUNT of one step */

/* The SCAN pattern `<prefix>:{*` with the glob characters of prefix escaped:
 * malloc'd, or NULL when out of memory. */
char *cm_purge_pattern(const char *prefix);

/* One step on c: SCAN from cursor (a decimal string, "0" to start; updated
 * in place, "0" again when the scan is complete; cursor holds 32 bytes)
 * with COUNT count (1..CM_PURGE_COUNT_MAX) and UNLINK of the keys it
 * returns; *found gets the keys returned, *deleted those UNLINK removed.
 * Returns 0, or -EPROTO (Redis refused, with err, errlen bytes) / -ENOMEM /
 * -EINVAL (count out of range). */
int cm_purge_step(struct redisContext *c, const char *pattern, char *cursor, size_t count,
                  size_t *found, size_t *deleted, char *err, size_t errlen);

/* Counts the keys matching pattern on c (a full SCAN, read only). Returns
 * 0 with *n, or a negative code with err. */
int cm_purge_count(struct redisContext *c, const char *pattern, size_t *n, char *err,
                   size_t errlen);

#endif
