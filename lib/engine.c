/* engine.c - the in-memory store: decode, fold and aggregate in one process. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "circmon/engine.h"
#include "circmon/fold.h"
#include "circmon/indicators.h"
#include "circmon/names.h"
#include "circmon/pool.h"

#define INLINE_ID 23

/* A migrant: ids up to INLINE_ID bytes live in the slot itself, so that a
 * lookup touches one cache line before the state. */
struct mslot {
    struct cm_mstate *st; /* NULL = empty */
    uint64_t hash;
    union {
        char in[INLINE_ID + 1];
        char *out;
    } id;
    uint8_t outside;
};

struct cm_engine {
    const struct cm_config *cfg;
    struct cm_names *nm;
    struct cm_fold_ctx *fc;
    struct cm_decoder *dec;
    struct cm_agg *ag;
    struct mslot *m;
    size_t cap, n; /* cap: power of two */
    struct cm_item *items;
    size_t nitems, capitems;
    struct cm_decoder *decs[CM_ENGINE_BATCH]; /* for cm_engine_feed_batch */
    int64_t latest; /* latest occurred_at of the accepted events */
};

struct cm_engine *cm_engine_new(const struct cm_config *cfg)
{
    struct cm_engine *en = calloc(1, sizeof(*en));
    if (!en)
        return NULL;
    en->cfg = cfg;
    en->cap = 1024;
    en->nm = cm_names_new();
    en->dec = cm_decoder_new();
    en->ag = cm_agg_new();
    en->m = calloc(en->cap, sizeof(*en->m));
    if (en->nm)
        en->fc = cm_fold_ctx_new(cfg, en->nm);
    if (!en->nm || !en->dec || !en->ag || !en->m || !en->fc)
        return cm_engine_free(en);
    cm_agg_set_nat_cohorts(en->ag, cm_fold_ctx_nat_cohorts(en->fc)); /* as the daemon's batches */
    return en;
}

struct cm_engine *cm_engine_free(struct cm_engine *en)
{
    if (!en)
        return NULL;
    for (size_t i = 0; en->m && i < en->cap; i++)
        if (en->m[i].st) {
            if (en->m[i].outside)
                free(en->m[i].id.out);
            cm_mstate_free(en->fc, en->m[i].st);
        }
    free(en->m);
    free(en->items);
    cm_fold_ctx_free(en->fc);
    cm_decoder_free(en->dec);
    for (size_t i = 0; i < CM_ENGINE_BATCH; i++)
        cm_decoder_free(en->decs[i]);
    cm_agg_free(en->ag);
    cm_names_free(en->nm);
    free(en);
    return NULL;
}

static int grow_map(struct cm_engine *en)
{
    size_t nc = en->cap * 2;
    struct mslot *nm = calloc(nc, sizeof(*nm));
    if (!nm)
        return -ENOMEM;
    cm_mem_hint_huge(nm, nc * sizeof(*nm));
    for (size_t i = 0; i < en->cap; i++) {
        if (!en->m[i].st)
            continue;
        size_t j = en->m[i].hash & (nc - 1);
        while (nm[j].st)
            j = (j + 1) & (nc - 1);
        nm[j] = en->m[i];
    }
    free(en->m);
    en->m = nm;
    en->cap = nc;
    return 0;
}

/* The state of migrant id, created empty when new; NULL when out of memory. */
static struct cm_mstate *migrant_h(struct cm_engine *en, const char *id, uint64_t h)
{
    size_t j = h & (en->cap - 1);
    while (en->m[j].st) {
        struct mslot *s = &en->m[j];
        if (s->hash == h && !strcmp(s->outside ? s->id.out : s->id.in, id))
            return s->st;
        j = (j + 1) & (en->cap - 1);
    }
    if ((en->n + 1) * 2 > en->cap) {
        if (grow_map(en) < 0)
            return NULL;
        j = h & (en->cap - 1);
        while (en->m[j].st)
            j = (j + 1) & (en->cap - 1);
    }
    struct mslot s = {.hash = h};
    size_t len = strlen(id);
    if (len > INLINE_ID) {
        s.outside = 1;
        s.id.out = strdup(id);
        if (!s.id.out)
            return NULL;
    } else {
        memcpy(s.id.in, id, len + 1);
    }
    s.st = cm_mstate_new(en->fc);
    if (!s.st) {
        if (s.outside)
            free(s.id.out);
        return NULL;
    }
    en->m[j] = s;
    en->n++;
    return s.st;
}

static struct cm_mstate *migrant(struct cm_engine *en, const char *id)
{
    return migrant_h(en, id, cm_hash_str(id));
}

/* Folds ev into st; its items join those gathered in en->items. */
static int fold_into(struct cm_engine *en, struct cm_mstate *st, const struct cm_event *ev)
{
    int r = cm_fold_event(en->fc, st, ev, &en->items, &en->nitems, &en->capitems);
    if (r == CM_FOLD_ACCEPTED && ev->occurred_at > en->latest)
        en->latest = ev->occurred_at;
    return r;
}

/* Adds the items gathered to the aggregate. */
static int add_items(struct cm_engine *en)
{
    int r = cm_agg_add_items(en->ag, en->items, en->nitems);
    en->nitems = 0;
    return r;
}

int cm_engine_fold(struct cm_engine *en, const struct cm_event *ev)
{
    struct cm_mstate *st = migrant(en, ev->migrant_id);
    if (!st)
        return -ENOMEM;
    int r = fold_into(en, st, ev);
    return r < 0 || add_items(en) < 0 ? -ENOMEM : r;
}

/* Counts an invalid message. */
static int invalid(struct cm_engine *en)
{
    struct cm_agg_key k = {.kind = CM_AK_DQ, .ctr = CM_DQ_INVALID};
    return cm_agg_add(en->ag, &k, 1);
}

/* The events of a batch go through four passes, so that memory is being
 * fetched while other events are worked on: decode and ask for the table
 * slots, find the states and ask for them, fold in arrival order, then add
 * the items of all of them to the aggregate (sums: their order is free). */
int cm_engine_feed_batch(struct cm_engine *en, const uint8_t *const *bufs, const size_t *lens,
                         size_t n, int *results)
{
    struct cm_event ev[CM_ENGINE_BATCH];
    uint64_t h[CM_ENGINE_BATCH];
    struct cm_mstate *st[CM_ENGINE_BATCH];
    int rj[CM_ENGINE_BATCH];
    for (size_t base = 0; base < n; base += CM_ENGINE_BATCH) {
        size_t m = n - base < CM_ENGINE_BATCH ? n - base : CM_ENGINE_BATCH;
        for (size_t i = 0; i < m; i++) {
            if (!en->decs[i] && !(en->decs[i] = cm_decoder_new()))
                return -ENOMEM;
            rj[i] = (int)cm_decode(en->decs[i], bufs[base + i], lens[base + i], &ev[i]);
            if (rj[i] == CM_OK) {
                h[i] = cm_hash_str(ev[i].migrant_id);
                __builtin_prefetch(&en->m[h[i] & (en->cap - 1)]);
            }
        }
        for (size_t i = 0; i < m; i++)
            if (rj[i] == CM_OK) {
                if (!(st[i] = migrant_h(en, ev[i].migrant_id, h[i])))
                    return -ENOMEM;
                cm_mstate_prefetch(st[i], 0);
            }
        for (size_t i = 0; i < m; i++)
            if (rj[i] == CM_OK)
                cm_mstate_prefetch(st[i], 1);
        for (size_t i = 0; i < m; i++) {
            int r;
            if (rj[i] != CM_OK)
                r = invalid(en) < 0 ? -ENOMEM : rj[i];
            else if ((r = fold_into(en, st[i], &ev[i])) >= 0)
                r = CM_OK;
            if (r == -ENOMEM)
                return r;
            if (results)
                results[base + i] = r;
        }
        if (add_items(en) < 0)
            return -ENOMEM;
    }
    return 0;
}

int cm_engine_feed(struct cm_engine *en, const uint8_t *buf, size_t len)
{
    struct cm_event ev;
    enum cm_reject rj = cm_decode(en->dec, buf, len, &ev);
    if (rj != CM_OK)
        return invalid(en) < 0 ? -ENOMEM : (int)rj;
    int r = cm_engine_fold(en, &ev);
    return r < 0 ? r : CM_OK;
}

const struct cm_agg *cm_engine_agg(struct cm_engine *en)
{
    return en->ag;
}

const struct cm_names *cm_engine_names(const struct cm_engine *en)
{
    return en->nm;
}

json_t *cm_engine_indicators(struct cm_engine *en, int64_t as_of)
{
    return cm_indicators_json(en->ag, en->nm, en->cfg, as_of);
}

int64_t cm_engine_latest(const struct cm_engine *en)
{
    return en->latest;
}

size_t cm_engine_migrants(const struct cm_engine *en)
{
    return en->n;
}

size_t cm_engine_state_bytes(const struct cm_engine *en)
{
    size_t s = en->cap * sizeof(*en->m);
    for (size_t i = 0; i < en->cap; i++)
        if (en->m[i].st)
            s += (en->m[i].outside ? strlen(en->m[i].id.out) + 1 : 0) + cm_mstate_size(en->m[i].st);
    return s;
}
