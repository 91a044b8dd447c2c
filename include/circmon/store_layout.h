/* store_layout.h - where the migrant states of a partition live in Redis.
 *
 * Two layouts, named by [redis] state_buckets (B):
 *   B = 0   one string key per migrant, <prefix>:{P}:m:<migrant> (the layout of
 *           versions before the layout key existed);
 *   B >= 1  B hash buckets per partition, <prefix>:{P}:s:<n>, field <migrant>,
 *           value the packed state; n = cm_layout_bucket(migrant, B).
 * The layout of partition P is stored in <prefix>:{P}:layout ("strings" or
 * "buckets B"), written by the first apply of P (an absent key on a partition
 * that has a position is the "strings" layout of earlier versions). Every apply
 * checks it (cm_store_lua_apply) and the position read of a new owner reports a
 * mismatch: the bucket count never changes under existing data.
 *
 * The aggregate of partition P is the sum of its hash <prefix>:{P}:agg (the
 * layout of earlier versions, no longer grown) and of CM_AGG_BUCKETS hashes
 * <prefix>:{P}:agg:<n>, n = cm_layout_bucket(field, CM_AGG_BUCKETS): an apply
 * writes the buckets and moves each field it changes out of the old hash;
 * readers add up the values of a field in all of them. */
#ifndef CIRCMON_STORE_LAYOUT_H
#define CIRCMON_STORE_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#define CM_LAYOUT_BUCKETS_MAX 65536 /* [redis] state_buckets at most */
#define CM_AGG_BUCKETS 64           /* aggregate buckets per partition: fixed */

/* The bucket of migrant mid (len bytes, any bytes) among buckets (>= 1):
 * FNV-1a 64 of the bytes, modulo buckets. Part of the stored layout: it never
 * changes. Returns 0 for buckets < 1. */
uint32_t cm_layout_bucket(const char *mid, size_t len, uint32_t buckets);

/* <prefix>:{P}:layout, malloc'd, or NULL when out of memory. */
char *cm_layout_key(const char *prefix, int32_t part);

/* The key of bucket n of partition part, malloc'd, its length in *klen when
 * klen is not NULL; NULL when out of memory. */
char *cm_layout_key_bucket(const char *prefix, int32_t part, uint32_t n, size_t *klen);

/* <prefix>:{P}:agg:<n>, aggregate bucket n of partition part, malloc'd, its
 * length in *klen when klen is not NULL; NULL when out of memory. */
char *cm_layout_key_agg_bucket(const char *prefix, int32_t part, uint32_t n, size_t *klen);

/* The read of one partition's whole aggregate: EVAL of cm_store_lua_agg_read
 * over <prefix>:{P}:agg and its CM_AGG_BUCKETS buckets, one atomic command
 * whose reply is shaped as an HGETALL's (field, value pairs; a field may come
 * twice, its values add up). */
struct cm_agg_read {
    int argc;
    const char *argv[4 + CM_AGG_BUCKETS];
    size_t lens[4 + CM_AGG_BUCKETS];
    char *keys[1 + CM_AGG_BUCKETS];
    char nk[8];
};

/* Fills rd for partition part of prefix. Returns 0, or -ENOMEM (rd then
 * holds nothing to free). */
int cm_agg_read_init(struct cm_agg_read *rd, const char *prefix, int32_t part);

/* Frees what cm_agg_read_init allocated. */
void cm_agg_read_free(struct cm_agg_read *rd);

/* <prefix>:{P}:m:<mid> (layout 0), malloc'd, its length in *klen when klen is
 * not NULL; NULL when out of memory. mid may hold any byte. */
char *cm_layout_key_string(const char *prefix, int32_t part, const char *mid, size_t len,
                           size_t *klen);

/* The stored form of a layout: "strings" (buckets 0) or "buckets B", into
 * buf (cap bytes, NUL-terminated). Returns its length, or -EINVAL when buckets
 * is out of 0..CM_LAYOUT_BUCKETS_MAX or buf too small. */
int cm_layout_format(int32_t buckets, char *buf, size_t cap);

/* Parses a stored layout value (s, len bytes: a value read back from Redis,
 * so anything): 0 and *buckets (0 for "strings"), or -EINVAL for anything
 * cm_layout_format does not write. */
int cm_layout_parse(const char *s, size_t len, int32_t *buckets);

/* Whether partition part may be written with layout want: stored is the
 * stored layout (-1 when the layout key is absent), has_pos whether the
 * partition has a position (it was written before). Returns 0 when it may
 * (nothing stored and no position: a new partition; or equal layouts; or no
 * layout key on a written partition and want 0), or -ESTALE with a message in
 * msg (cap bytes, NUL-terminated) naming the partition, both layouts and the
 * fixes. */
int cm_layout_check(int32_t part, int32_t stored, int has_pos, int32_t want, char *msg,
                    size_t cap);

/* What cm_layout_migrate did. */
struct cm_layout_migration {
    size_t parts_moved;  /* partitions converted by this call */
    size_t parts_before; /* partitions in the wanted layout already */
    size_t states;       /* states moved */
};

struct cm_config;

/* Converts every partition of cfg's prefix that has a position and holds one
 * string key per migrant (no layout key, "strings", or a conversion that was
 * interrupted: "moving to buckets B") into cfg->state_buckets (>= 1) buckets,
 * synchronously (circmonctl migrate-layout; every circmond of the prefix
 * stopped). Per partition: INCR of the owner epoch (a circmond still running
 * is fenced), layout "moving to buckets B" (a circmond refuses to start on
 * it), then SCAN of the string keys, moved by at most 500 per script call
 * (each key's type checked first), then the layout "buckets B". Interrupted,
 * it can be run again and goes on. Returns 0 with *m filled, or a negative
 * code with a message in err (errlen bytes): -EINVAL when state_buckets is 0,
 * -EPROTO when a partition holds another bucket layout (that needs a rebuild)
 * or Redis refused a command; what was moved stays moved. */
int cm_layout_migrate(const struct cm_config *cfg, struct cm_layout_migration *m, char *err,
                      size_t errlen);

#endif
