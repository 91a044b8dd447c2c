/* batch.c - one batch of one partition's messages, folded without any I/O. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "circmon/batch.h"
#include "circmon/names.h"

/* One migrant of the batch. */
struct bmig {
    char *id; /* owned copy, NUL-terminated */
    size_t len;
    uint64_t hash;
    struct cm_mstate *st; /* NULL until the first event, or when unreadable */
    uint8_t *orig;        /* the stored bytes, to skip unchanged states */
    size_t olen;
    int given;      /* cm_batch_set_state was called */
    int unreadable; /* orig did not unpack */
};

/* One message and its verdict. */
struct bmsg {
    const uint8_t *payload;
    size_t len;
    enum cm_reject rej; /* CM_OK, or why it is invalid */
    const char *reason; /* the verdict: NULL = accepted or duplicate */
    int mig;            /* index into migs, or -1 */
};

struct cm_batch {
    struct cm_fold_ctx *fc;
    struct cm_decoder *dec;
    struct bmsg *msgs;
    size_t n, cap;
    struct bmig *migs;
    size_t n_migs;
    int *slots; /* open addressing: migrant id -> index, n_slots entries (a power of two) */
    size_t n_slots;
    struct cm_agg *ag;
    struct cm_item *items;
    size_t n_items, cap_items;
    size_t next;      /* the next message to fold */
    size_t next_pack; /* the next migrant to pack */
    size_t n_folded, n_rejected, n_unreadable;
};

struct cm_batch *cm_batch_new(struct cm_fold_ctx *fc, struct cm_decoder *dec, size_t cap)
{
    if (!fc || !dec || cap == 0)
        return NULL;
    struct cm_batch *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    size_t ns = 16;
    while (ns < 2 * cap)
        ns *= 2;
    b->fc = fc;
    b->dec = dec;
    b->cap = cap;
    b->n_slots = ns;
    if (!(b->msgs = calloc(cap, sizeof(*b->msgs))) || !(b->migs = calloc(cap, sizeof(*b->migs))) ||
        !(b->slots = malloc(ns * sizeof(*b->slots))) || !(b->ag = cm_agg_new()))
        return cm_batch_free(b);
    cm_agg_set_nat_cohorts(b->ag, cm_fold_ctx_nat_cohorts(fc));
    for (size_t i = 0; i < ns; i++)
        b->slots[i] = -1;
    return b;
}

struct cm_batch *cm_batch_free(struct cm_batch *b)
{
    if (!b)
        return NULL;
    for (size_t i = 0; i < b->n_migs; i++) {
        free(b->migs[i].id);
        cm_mstate_free(b->fc, b->migs[i].st);
        free(b->migs[i].orig);
    }
    free(b->msgs);
    free(b->migs);
    free(b->slots);
    free(b->items);
    cm_agg_free(b->ag);
    free(b);
    return NULL;
}

/* Index of migrant id in b, adding it. -ENOMEM when out of memory. */
static int mig_index(struct cm_batch *b, const char *id, size_t len)
{
    uint64_t h = cm_hash_bytes(id, len);
    size_t mask = b->n_slots - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        int s = b->slots[i];
        if (s < 0) {
            struct bmig *m = &b->migs[b->n_migs];
            if (!(m->id = malloc(len + 1)))
                return -ENOMEM;
            memcpy(m->id, id, len);
            m->id[len] = '\0';
            m->len = len;
            m->hash = h;
            b->slots[i] = (int)b->n_migs;
            return (int)b->n_migs++;
        }
        if (b->migs[s].hash == h && b->migs[s].len == len && !memcmp(b->migs[s].id, id, len))
            return s;
    }
}

int cm_batch_add(struct cm_batch *b, const void *key, size_t key_len, const void *payload,
                 size_t len)
{
    if (b->n == b->cap)
        return -ENOSPC;
    struct bmsg *r = &b->msgs[b->n];
    struct cm_event ev;
    r->payload = payload;
    r->len = len;
    r->mig = -1;
    r->reason = NULL;
    r->rej = cm_decode(b->dec, payload, len, &ev);
    if (r->rej == CM_OK) {
        size_t ml = strlen(ev.migrant_id);
        if (!key || key_len != ml || memcmp(key, ev.migrant_id, ml)) {
            r->rej = CM_REJ_KEY_MISMATCH;
        } else {
            int m = mig_index(b, ev.migrant_id, ml);
            if (m < 0)
                return m;
            r->mig = m;
        }
    }
    if (r->rej != CM_OK)
        r->reason = cm_reject_name(r->rej);
    b->n++;
    return 0;
}

size_t cm_batch_size(const struct cm_batch *b)
{
    return b->n;
}

size_t cm_batch_migrants(const struct cm_batch *b)
{
    return b->n_migs;
}

const char *cm_batch_migrant(const struct cm_batch *b, size_t i, size_t *len)
{
    if (i >= b->n_migs)
        return NULL;
    if (len)
        *len = b->migs[i].len;
    return b->migs[i].id;
}

int cm_batch_set_state(struct cm_batch *b, size_t i, const uint8_t *data, size_t len)
{
    if (i >= b->n_migs)
        return -EINVAL;
    struct bmig *m = &b->migs[i];
    m->given = 1;
    if (!data)
        return 0;
    if (!(m->orig = malloc(len ? len : 1)))
        return -ENOMEM;
    memcpy(m->orig, data, len);
    m->olen = len;
    return 0;
}

/* The state of m, unpacked (or made empty) at its first event. Returns 0
 * (m->st set, or m->unreadable), or -ENOMEM. */
static int mig_state(struct cm_batch *b, struct bmig *m)
{
    if (m->st || m->unreadable)
        return 0;
    if (!m->orig)
        return (m->st = cm_mstate_new(b->fc)) ? 0 : -ENOMEM;
    int r = cm_mstate_unpack(b->fc, m->orig, m->olen, &m->st);
    if (r == -EINVAL) {
        m->st = NULL;
        m->unreadable = 1;
        b->n_unreadable++;
        return 0;
    }
    return r;
}

int cm_batch_migrant_unreadable(const struct cm_batch *b, size_t i, size_t *len)
{
    if (i >= b->n_migs || !b->migs[i].unreadable)
        return 0;
    if (len)
        *len = b->migs[i].olen;
    return 1;
}

/* The dead-letter reason of a fold result that neither accepts nor drops
 * the event: the one place where new fold results get their name. */
/* The dead-letter reason of fold result fr: the fold names its own
 * (too_late, limit_*), so that a new result needs no change here. */
static const char *fold_reason(int fr)
{
    const char *s = cm_fold_result_name(fr);
    return s ? s : "fold_refused";
}

/* Folds message r; its items join the aggregate. */
static int fold_one(struct cm_batch *b, struct bmsg *r)
{
    struct cm_event ev;
    b->n_items = 0;
    if (r->rej != CM_OK) {
        struct cm_item it = {.kind = CM_IT_DQ, .ctr = CM_DQ_INVALID, .v = 1};
        return cm_agg_add_items(b->ag, &it, 1) < 0 ? -ENOMEM : 0;
    }
    struct bmig *m = &b->migs[r->mig];
    if (!m->given)
        return -EINVAL; /* cm_batch_set_state was not called: a caller's error */
    int e = mig_state(b, m);
    if (e < 0)
        return e;
    if (m->unreadable) {
        r->reason = CM_BATCH_REASON_STATE_UNREADABLE;
        return 0;
    }
    if (cm_decode(b->dec, r->payload, r->len, &ev) != CM_OK)
        return -EIO;
    int fr = cm_fold_event(b->fc, m->st, &ev, &b->items, &b->n_items, &b->cap_items);
    if (fr < 0)
        return fr;
    if (fr == CM_FOLD_ACCEPTED || fr == CM_FOLD_DUPLICATE)
        b->n_folded++;
    else
        r->reason = fold_reason(fr);
    if (b->n_items && cm_agg_add_items(b->ag, b->items, b->n_items) < 0)
        return -ENOMEM;
    return 0;
}

int cm_batch_fold(struct cm_batch *b, size_t max)
{
    size_t end = max && b->n - b->next > max ? b->next + max : b->n;
    while (b->next < end) {
        struct bmsg *r = &b->msgs[b->next];
        int e = fold_one(b, r);
        if (e < 0)
            return e;
        if (r->reason)
            b->n_rejected++;
        b->next++;
    }
    return b->next < b->n;
}

const struct cm_agg *cm_batch_agg(const struct cm_batch *b)
{
    return b->ag;
}

int cm_batch_each_changed(struct cm_batch *b, size_t max, cm_batch_state_cb cb, void *ud)
{
    size_t end = max && b->n_migs - b->next_pack > max ? b->next_pack + max : b->n_migs;
    for (size_t i = b->next_pack; i < end; i++) {
        struct bmig *m = &b->migs[i];
        b->next_pack = i + 1;
        if (!m->st)
            continue; /* unreadable: left as it is */
        uint8_t *buf = NULL;
        long len = cm_mstate_pack(b->fc, m->st, &buf);
        if (len < 0)
            return -ENOMEM;
        int r = 0;
        if ((size_t)len != m->olen || (len && memcmp(buf, m->orig, (size_t)len)))
            r = cb(m->id, m->len, buf, (size_t)len, ud);
        free(buf);
        if (r < 0)
            return r;
    }
    return b->next_pack < b->n_migs;
}

const char *cm_batch_verdict(const struct cm_batch *b, size_t i)
{
    return i < b->n ? b->msgs[i].reason : NULL;
}

size_t cm_batch_folded(const struct cm_batch *b)
{
    return b->n_folded;
}

size_t cm_batch_rejected(const struct cm_batch *b)
{
    return b->n_rejected;
}

size_t cm_batch_unreadable(const struct cm_batch *b)
{
    return b->n_unreadable;
}
