/* store.h - the Redis store: per-partition state, applied atomically.
 *
 * Keys (all of partition P carry the hash tag {P}, DESIGN.md principle 2):
 *   <prefix>:{P}:pos           next offset to fold (the committed position)
 *   <prefix>:{P}:s:<n>         hash bucket n of migrant states: field <migrant>, value
 *                              the packed state (cm_mstate_pack); [redis] state_buckets
 *                              0: one string key <prefix>:{P}:m:<migrant> each instead
 *   <prefix>:{P}:layout        the layout of the states (store_layout.h)
 *   <prefix>:{P}:agg           hash: aggregate entries, fields by cm_agg_key_format
 *   <prefix>:{P}:dlq           the dead-letter mark (see struct cm_store_pos)
 *   <prefix>:{P}:epoch         owner epoch: INCR by each daemon that takes P
 * One batch is one Lua call: check of the owner epoch and of the layout, compare-and-set of pos,
 * writes of states (HSET/HDEL per bucket, or MSET/DEL),
 * HINCRBY of the aggregate delta (fields reaching 0 are deleted), new pos.
 * An absent pos reads as 0: the partition was never folded and starts from
 * the beginning of the topic.
 *
 * Two faces:
 * - an asynchronous store (struct cm_store) for circmond, on hiredis 0.14's
 *   async API and its libevent adapter: it connects (TCP or unix socket,
 *   AUTH, SELECT, SCRIPT LOAD), reconnects with backoff from a timer after a
 *   loss, and times commands out itself (hiredis 0.14 has no async
 *   timeouts); a timed-out command drops the connection, since its fate is
 *   unknown and later replies would be out of step; with [redis] cluster =
 *   yes the same over one connection per master, each command routed by
 *   the hash slot of its partition (redis_conn.h, cluster.h): the store is
 *   ready when every slot's master is;
 * - synchronous reads for circmonctl (cm_store_read_*), one blocking
 *   connection per call.
 *
 * Error convention: negative errno-style codes. -ENOTCONN: the store is not
 * connected (nothing was sent); -ETIMEDOUT: no reply within
 * command_timeout_ms; -ECONNRESET: the connection was lost before a reply
 * (the command may or may not have run); -EPROTO: Redis answered with an
 * error or an unexpected reply; -ENOMEM; -EINVAL for an empty request.
 *
 * Callbacks run from the event loop, each exactly once per accepted
 * request. They may send new requests but must not free the store. */
#ifndef CIRCMON_STORE_H
#define CIRCMON_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "circmon/agg.h"
#include "circmon/config.h"
#include "circmon/names.h"

struct event_base;

/* The Lua apply script (for tests and tools that want to call it by hand;
 * defined in store_layout.c).
 * KEYS[1] = pos key, KEYS[2] = the partition's aggregate hash of earlier
 * versions (<prefix>:{P}:agg), KEYS[3] = dead-letter mark key, KEYS[4] = owner
 * epoch key, KEYS[5] = layout key, then the state keys: one per migrant
 * (layout "strings") or one per bucket ("buckets B"), then the A aggregate
 * bucket keys the apply changes (<prefix>:{P}:agg:<n>).
 * ARGV[1] = expected pos, ARGV[2] = new pos, ARGV[3] = the mark ("" =
 * unchanged), ARGV[4] = the applier's owner epoch ("" = not checked),
 * ARGV[5] = the layout written (cm_layout_format), ARGV[6] = A, then the
 * states:
 *   "strings": ARGV[i + 1] for each state key KEYS[i] = its state ("" = DEL);
 *   buckets: for each bucket key in turn, the number S of fields set, the
 *   number D deleted, S field/value pairs, D fields;
 * then for each aggregate bucket key in turn the number N of its fields and N
 * field/increment pairs. A field whose value becomes 0 is deleted; a field
 * still in KEYS[2] moves into its bucket (their values added) when it changes.
 * Returns {1, new pos} when
 * applied, {-1, stored epoch} when refused because the stored epoch is
 * higher than ARGV[4] (checked first), an error reply "LAYOUT ..." when the
 * stored layout is another (none stored: "strings" if the partition has a
 * position; the first apply stores ARGV[5]), {0, stored pos} when refused
 * because stored pos != expected: a refused call changes nothing. */
extern const char cm_store_lua_apply[];

/* The read of states in buckets: KEYS = bucket keys; ARGV, for each key in
 * turn, a count N and N fields. Returns every value (nil when absent) in the
 * order of ARGV. */
extern const char cm_store_lua_read[];

/* The read of aggregate hashes: KEYS = hashes; returns the field/value pairs
 * of all of them, as one HGETALL would of their union (cm_agg_read_init). */
extern const char cm_store_lua_agg_read[];

/* Key names; each returns a malloc'd NUL-terminated string or NULL. */
char *cm_store_key_pos(const char *prefix, int32_t part);
char *cm_store_key_agg(const char *prefix, int32_t part);
char *cm_store_key_dlq(const char *prefix, int32_t part);
char *cm_store_key_epoch(const char *prefix, int32_t part);
/* The string key of a migrant's state in layout 0 ("strings"); the bucket
 * layout's keys are cm_layout_key_bucket's. */
char *cm_store_key_state(const char *prefix, int32_t part, const char *mid, size_t len);

/* ---------------------------------------------------------------- async */

struct cm_store;

/* Connection changes: up = 1 when the store became usable (connected,
 * authenticated, script loaded), 0 when it was lost or a connection attempt
 * failed (cm_store_errstr says why). The store reconnects by itself. */
typedef void (*cm_store_conn_cb)(struct cm_store *s, int up, void *ud);

/* A new store on base over cfg (both borrowed, they must outlive it). It
 * starts connecting at once; conn_cb reports the outcome later from the
 * loop, never from inside this call. Returns NULL when out of memory. */
struct cm_store *cm_store_new(struct event_base *base, const struct cm_config *cfg,
                              cm_store_conn_cb conn_cb, void *ud);

/* Closes the connection and frees s. Callbacks of pending requests are
 * called with -ECONNRESET before it returns; conn_cb is not called. Accepts
 * NULL; returns NULL. */
struct cm_store *cm_store_free(struct cm_store *s);

/* 1 when connected and ready for requests. */
int cm_store_ready(const struct cm_store *s);

/* Requests sent and not yet answered. */
size_t cm_store_pending(const struct cm_store *s);

/* Why the last connection attempt failed or the connection was lost. */
const char *cm_store_errstr(const struct cm_store *s);

/* Drops the connection now (as a lost connection: pending requests fail
 * with -ECONNRESET, conn_cb(0), reconnect after the backoff). For tests and
 * for callers that detect a protocol mismatch. */
void cm_store_drop(struct cm_store *s);

/* With [redis] cluster = yes: what the store's cluster client followed
 * (MOVED, ASK, TRYAGAIN, maps read) into *st, 0; else -ENOTSUP. */
struct cm_rcluster_stats;
int cm_store_cluster_stats(const struct cm_store *s, struct cm_rcluster_stats *st);

/* What Redis holds for a partition besides its states: the position, and the
 * dead-letter mark: every dead letter for an offset at or past the position
 * is at offset dlq_from or later of partition dlq_part of the dead-letter
 * topic (dlq_part -1 when no mark was ever written). */
struct cm_store_pos {
    int64_t pos; /* 0 when absent */
    int32_t dlq_part;
    int64_t dlq_from;
    int64_t epoch; /* cm_store_take_positions: the owner epoch taken; else 0 */
};

/* Positions and marks of parts[0..n-1] (n > 0), each partition read by a
 * command of its own hash slot. cb gets err = 0 and pos[i] for parts[i], or
 * err < 0 and pos NULL. pos is valid only during cb.
 * Returns 0 when sent (cb will be called exactly once, never from inside
 * this call), or -ENOTCONN/-ENOMEM/-EINVAL (cb will not be called). */
typedef void (*cm_store_pos_cb)(int err, const struct cm_store_pos *pos, size_t n, void *ud);
int cm_store_get_positions(struct cm_store *s, const int32_t *parts, size_t n,
                           cm_store_pos_cb cb, void *ud);

/* Both also read each partition's stored layout: one other than [redis]
 * state_buckets asks for (cm_layout_check) fails the read with -ESTALE and
 * the message, naming the fixes, in cm_store_errstr. */

/* cm_store_get_positions for a new owner of parts: each partition's owner
 * epoch is first incremented (INCR, sent before the read on the same
 * connection) and pos[i].epoch is the new value. From then on, an apply
 * carrying an older epoch is refused (cm_store_apply_epoch). */
int cm_store_take_positions(struct cm_store *s, const int32_t *parts, size_t n,
                            cm_store_pos_cb cb, void *ud);

/* One value of an MGET: data == NULL when the key is absent. */
struct cm_store_val {
    const uint8_t *data;
    size_t len;
};

/* States of the migrants mids[0..n-1] (n > 0, lens[i] bytes each) of partition part,
 * in the layout of [redis] state_buckets (one MGET, or one cm_store_lua_read).
 * cb gets err = 0 and vals[i] for mids[i] (valid only during cb), or err < 0
 * and vals NULL. Same return contract as cm_store_get_positions. */
typedef void (*cm_store_mget_cb)(int err, const struct cm_store_val *vals, size_t n, void *ud);
int cm_store_get_states(struct cm_store *s, int32_t part, const char *const *mids,
                        const size_t *lens, size_t n, cm_store_mget_cb cb, void *ud);

/* A batch apply being built: states and aggregate deltas of one partition. */
struct cm_store_apply;

/* A new apply for partition part that moves pos from expected to new_pos.
 * Returns NULL when out of memory. */
struct cm_store_apply *cm_store_apply_new(const char *prefix, int32_t part, int64_t expected,
                                          int64_t new_pos);

/* Sets the state of migrant mid (len bytes) to val (vlen bytes; vlen 0
 * deletes the key). Both are copied. Each migrant at most once per apply.
 * Returns 0 or -ENOMEM (the apply is then unusable: free it). */
int cm_store_apply_state(struct cm_store_apply *ap, const char *mid, size_t len,
                         const uint8_t *val, size_t vlen);

/* Sets the partition's dead-letter mark (see struct cm_store_pos), written
 * with the position. May be called at any time before sending, again to
 * replace the mark. Returns 0 or -ENOMEM (the apply is then unusable). */
int cm_store_apply_dlq_mark(struct cm_store_apply *ap, int32_t dlq_part, int64_t dlq_from);

/* Makes the apply conditional on the partition's owner epoch: refused when
 * Redis holds a higher one (the partition was taken by another owner since
 * epoch was taken). Returns 0 or -ENOMEM (the apply is then unusable). */
int cm_store_apply_epoch(struct cm_store_apply *ap, int64_t epoch);

/* Adds every entry of ag (names in nm) as a HINCRBY. Call at most once, and
 * before cm_store_apply_prepare. Returns 0, -EINVAL when called again or
 * after the prepare, -ENOENT for a name missing from nm, or -ENOMEM. */
int cm_store_apply_agg(struct cm_store_apply *ap, const struct cm_agg *ag,
                       const struct cm_names *nm);

/* Frees ap; accepts NULL; returns NULL. */
struct cm_store_apply *cm_store_apply_free(struct cm_store_apply *ap);

/* Lays out ap's states for s's state layout and its aggregate in buckets, as
 * cm_store_apply_send would: calling it first only moves that work (sorting
 * by bucket, naming the keys) out of the send. No state nor aggregate may be
 * added after it. Returns 0, -EINVAL or -ENOMEM (ap then goes to
 * cm_store_apply_free). */
int cm_store_apply_prepare(const struct cm_store *s, struct cm_store_apply *ap);

/* Sends ap (taken over in every case) as one EVALSHA; on NOSCRIPT (Redis
 * restarted, script cache flushed) it is sent again as EVAL, transparently.
 * cb gets err = 0 with applied = 1 and stored = new pos, or applied = 0 and
 * stored = the position Redis holds (the apply was refused and changed
 * nothing), or applied = -1 and stored = the owner epoch Redis holds (refused
 * by cm_store_apply_epoch's check, changed nothing), or err < 0 (-ECONNRESET/-ETIMEDOUT: it may or may not have been
 * applied; read the position to know). Same return contract as
 * cm_store_get_positions. */
typedef void (*cm_store_apply_cb)(int err, int applied, int64_t stored, void *ud);
int cm_store_apply_send(struct cm_store *s, struct cm_store_apply *ap, cm_store_apply_cb cb,
                        void *ud);

/* Redis's hash-max-listpack-value and hash-max-listpack-entries (CONFIG
 * GET), which decide whether state buckets stay compact (store_layout.h).
 * cb gets err = 0 and both, or err < 0: -EPROTO when Redis refused (an ACL
 * may forbid CONFIG) or did not name both, the reason in cm_store_errstr.
 * Same return contract as cm_store_get_positions. */
typedef void (*cm_store_listpack_cb)(int err, long long value, long long entries, void *ud);
int cm_store_get_listpack_limits(struct cm_store *s, cm_store_listpack_cb cb, void *ud);

/* ----------------------------------------------------------------- sync */

/* Reads the aggregate of every partition (SCAN for <prefix>:{*}:pos and
 * <prefix>:{*}:agg, then each partition's aggregate hashes in one script,
 * store_layout.h) and adds it into ag, interning names into nm. Returns 0, or a
 * negative code with a message in err (errlen bytes, always NUL-terminated;
 * never contains the password). ag may hold a part of the data on error. */
int cm_store_read_agg(const struct cm_config *cfg, struct cm_agg *ag, struct cm_names *nm,
                      char *err, size_t errlen);

/* A blocking connection to the configured Redis (TCP or unix socket,
 * connect_timeout_ms, then command_timeout_ms per command), authenticated
 * and on the configured db: the one way circmon's tools connect. Returns it
 * (free with redisFree), or NULL with err set (never the password). */
struct redisContext;
struct redisContext *cm_store_connect_sync(const struct cm_config *cfg, char *err,
                                           size_t errlen);

/* Stored positions of parts[0..n-1] into pos[] (0 when absent). Same error
 * contract as cm_store_read_agg; a value that is not a decimal >= 0 is
 * -EPROTO. */
int cm_store_read_positions_of(const struct cm_config *cfg, const int32_t *parts, size_t n,
                               int64_t *pos, char *err, size_t errlen);

/* Stored positions of every partition that has one (SCAN for
 * <prefix>:{*}:pos): *parts and *pos (malloc'd, caller frees both) get *n
 * entries sorted by partition. Same error contract as cm_store_read_agg. */
int cm_store_read_positions(const struct cm_config *cfg, int32_t **parts, int64_t **pos,
                            size_t *n, char *err, size_t errlen);

/* ----------------------------------------------- sync, by partition name
 * For both deployments (lib/store_read.c, over cluster_sync.h): each
 * partition's keys are read by name, routed by hash slot, never by SCAN.
 * With [redis] cluster = yes, cm_store_read_agg and cm_store_read_positions
 * (which SCAN) return -ENOTSUP and cm_store_read_positions_of routes. */

/* cm_store_read_agg over the named partitions parts[0..n-1] only. Same
 * error contract. */
int cm_store_read_agg_of(const struct cm_config *cfg, const int32_t *parts, size_t n,
                         struct cm_agg *ag, struct cm_names *nm, char *err, size_t errlen);

/* cm_store_read_positions_of through cluster_sync.h (any deployment). */
int cm_store_read_positions_routed(const struct cm_config *cfg, const int32_t *parts, size_t n,
                                   int64_t *pos, char *err, size_t errlen);

/* For lib/: adds a reply to HGETALL of aggregate key k into ag (0, or
 * -EPROTO/-ENOMEM with err set); parses a reply to GET of a position key
 * (absent is 0; 0, or -EINVAL for anything but a decimal >= 0). */
struct redisReply;
int cm_store_agg_add_reply(const char *k, const struct redisReply *rep, struct cm_agg *ag,
                           struct cm_names *nm, char *err, size_t errlen);
int cm_store_pos_parse(const struct redisReply *rep, int64_t *pos);

#endif
