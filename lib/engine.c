/* engine.c - the in-memory store: decode, fold and aggregate in one process. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "circmon/engine.h"
#include "circmon/fold.h"
#include "circmon/indicators.h"
#include "circmon/names.h"

struct mslot {
    char *id; /* NULL = empty */
    uint64_t hash;
    struct cm_mstate *st;
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
};

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h ^ (h >> 29);
}

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
    return en;
}

struct cm_engine *cm_engine_free(struct cm_engine *en)
{
    if (!en)
        return NULL;
    for (size_t i = 0; en->m && i < en->cap; i++)
        if (en->m[i].id) {
            free(en->m[i].id);
            cm_mstate_free(en->m[i].st);
        }
    free(en->m);
    free(en->items);
    cm_fold_ctx_free(en->fc);
    cm_decoder_free(en->dec);
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
    for (size_t i = 0; i < en->cap; i++) {
        if (!en->m[i].id)
            continue;
        size_t j = en->m[i].hash & (nc - 1);
        while (nm[j].id)
            j = (j + 1) & (nc - 1);
        nm[j] = en->m[i];
    }
    free(en->m);
    en->m = nm;
    en->cap = nc;
    return 0;
}

/* The state of migrant id, created empty when new; NULL when out of memory. */
static struct cm_mstate *migrant(struct cm_engine *en, const char *id)
{
    uint64_t h = hash_str(id);
    size_t j = h & (en->cap - 1);
    while (en->m[j].id) {
        if (en->m[j].hash == h && !strcmp(en->m[j].id, id))
            return en->m[j].st;
        j = (j + 1) & (en->cap - 1);
    }
    if ((en->n + 1) * 2 > en->cap) {
        if (grow_map(en) < 0)
            return NULL;
        j = h & (en->cap - 1);
        while (en->m[j].id)
            j = (j + 1) & (en->cap - 1);
    }
    char *copy = strdup(id);
    struct cm_mstate *st = cm_mstate_new();
    if (!copy || !st) {
        free(copy);
        cm_mstate_free(st);
        return NULL;
    }
    en->m[j] = (struct mslot){.id = copy, .hash = h, .st = st};
    en->n++;
    return st;
}

int cm_engine_fold(struct cm_engine *en, const struct cm_event *ev)
{
    struct cm_mstate *st = migrant(en, ev->migrant_id);
    if (!st)
        return -ENOMEM;
    en->nitems = 0;
    int r = cm_fold_event(en->fc, st, ev, &en->items, &en->nitems, &en->capitems);
    if (r < 0)
        return r;
    if (cm_agg_add_items(en->ag, en->items, en->nitems) < 0)
        return -ENOMEM;
    return r;
}

int cm_engine_feed(struct cm_engine *en, const uint8_t *buf, size_t len)
{
    struct cm_event ev;
    enum cm_reject rj = cm_decode(en->dec, buf, len, &ev);
    if (rj != CM_OK) {
        struct cm_agg_key k = {.kind = CM_AK_DQ, .ctr = CM_DQ_INVALID};
        if (cm_agg_add(en->ag, &k, 1) < 0)
            return -ENOMEM;
        return (int)rj;
    }
    int r = cm_engine_fold(en, &ev);
    return r < 0 ? r : CM_OK;
}

const struct cm_agg *cm_engine_agg(const struct cm_engine *en)
{
    return en->ag;
}

const struct cm_names *cm_engine_names(const struct cm_engine *en)
{
    return en->nm;
}

json_t *cm_engine_indicators(const struct cm_engine *en, int64_t as_of)
{
    return cm_indicators_json(en->ag, en->nm, en->cfg, as_of);
}

size_t cm_engine_migrants(const struct cm_engine *en)
{
    return en->n;
}

size_t cm_engine_state_bytes(const struct cm_engine *en)
{
    size_t s = en->cap * sizeof(*en->m);
    for (size_t i = 0; i < en->cap; i++)
        if (en->m[i].id)
            s += strlen(en->m[i].id) + 1 + cm_mstate_size(en->m[i].st);
    return s;
}
