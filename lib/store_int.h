/* store_int.h - internals shared by the Redis store (store.c) and the
 * apply it sends (store_apply.c). Private to lib/: not an interface. */
#ifndef CIRCMON_STORE_INT_H
#define CIRCMON_STORE_INT_H

#include <stddef.h>
#include <stdint.h>

#include "circmon/store.h"

/* A growable list of owned byte strings. */
struct strv {
    char **s;
    size_t *len;
    size_t n, cap;
};

struct cm_store_apply {
    char *prefix;
    int32_t part;
    int64_t new_pos;
    struct strv keys; /* pos, agg, dlq mark, epoch, layout */
    struct strv args; /* expected, new, mark ('' = unchanged), epoch ('' = unchecked),
                         then the layout and the number of aggregate buckets
                         once prepared */
    struct strv mids, vals; /* the states, in call order */
    struct strv aggs;       /* aggregate field/increment pairs */
    int agg_done;
    /* made by cm_store_apply_layout for the layout of the store sending it */
    int prepared;
    struct strv st_keys;  /* state keys: one per migrant, or one per bucket */
    struct strv st_nums;  /* per bucket: the numbers of fields set and deleted */
    const char **sa;      /* the state part of ARGV: into mids, vals, st_nums */
    size_t *sal, nsa;
    struct strv ag_keys;  /* the aggregate buckets it changes */
    struct strv ag_nums;  /* per aggregate bucket: its number of fields */
    const char **aa;      /* the aggregate part of ARGV: into aggs, ag_nums */
    size_t *aal, naa;
};

/* One state of an apply, by bucket (then call order). */
struct by_bucket {
    uint32_t b, i;
};

/* Appends a copy of the len bytes at p (NUL-terminated in v). Returns 0 or
 * -ENOMEM (v then holds what it held). */
int cm_strv_push(struct strv *v, const void *p, size_t len);

/* Appends the formatted string, which must be shorter than 64 bytes.
 * Returns 0, -EINVAL (too long) or -ENOMEM. */
int cm_strv_pushf(struct strv *v, const char *fmt, ...);

/* Frees v's strings and arrays; v is empty after. */
void cm_strv_free(struct strv *v);

/* qsort order of struct by_bucket: by bucket, then call order. */
int cm_store_cmp_bucket(const void *x, const void *y);

/* The state and aggregate parts of the apply for layout buckets (0: string
 * keys): keys and ARGV as cm_store_lua_apply reads them. Once per apply (a resend after
 * NOSCRIPT reuses it). Returns 0, -EINVAL or -ENOMEM. */
int cm_store_apply_layout(struct cm_store_apply *ap, int32_t buckets);

#endif
