/* fold_codec.c - the state codec: a migrant's state to and from its packed
 * form (circmon.v1.MigrantState), as stored in Redis. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fold_int.h"


void *cm_fold_codec_alloc(void *ud, size_t size)
{
    struct cm_fold_ctx *fc = ud;
    size_t a = (size + 15) & ~(size_t)15;
    if (a >= size && a <= fc->arena_cap - fc->arena_used) {
        void *p = fc->arena + fc->arena_used;
        fc->arena_used += a;
        return p;
    }
    if (fc->nbigs == fc->capbigs) {
        size_t nc = fc->capbigs ? fc->capbigs * 2 : 16;
        void **nb = realloc(fc->bigs, nc * sizeof(*nb));
        if (!nb)
            return NULL;
        fc->bigs = nb;
        fc->capbigs = nc;
    }
    void *p = malloc(size);
    if (p)
        fc->bigs[fc->nbigs++] = p;
    return p;
}

void cm_fold_codec_free(void *ud, void *p)
{
    (void)ud;
    (void)p; /* everything goes at the next reset */
}

void cm_fold_codec_reset(struct cm_fold_ctx *fc)
{
    for (size_t i = 0; i < fc->nbigs; i++)
        free(fc->bigs[i]);
    fc->nbigs = 0;
    fc->arena_used = 0;
}

/* ---- packing ---- */

static char *name_of(const struct cm_fold_ctx *fc, int32_t id)
{
    const char *s = cm_names_get(fc->nm, id, NULL);
    return (char *)(s ? s : "");
}

long cm_mstate_pack(struct cm_fold_ctx *fc, const struct cm_mstate *st, uint8_t **buf)
{
    const struct fstate *fs = &st->snap;
    Circmon__V1__MigrantState m = CIRCMON__V1__MIGRANT_STATE__INIT;
    uint32_t ntombs = 0;
    for (uint32_t o = 0; o < fs->ltombs; o++)
        ntombs += fs->tombs[o] == '\0';
    /* every array of the message in one scratch block of the context */
    size_t np = fs->np + ntombs + 1, nsc = fs->nsc + 1, nr = (size_t)fs->nr * 4 + 1, nw = st->nw + 1;
    size_t need = np * (sizeof(Circmon__V1__StatePermit) + sizeof(void *)) +
                  nsc * (sizeof(Circmon__V1__StateScheme) + sizeof(void *)) + nr * sizeof(int32_t) +
                  nw * (sizeof(Circmon__V1__StateEvent) + sizeof(void *)) + 64;
    *buf = NULL;
    if (need > fc->pkcap) {
        void *n = realloc(fc->pk, need);
        if (!n)
            return -ENOMEM;
        fc->pk = n;
        fc->pkcap = need;
    }
    char *sp_ = fc->pk;
    Circmon__V1__StatePermit *pv = (void *)sp_;
    sp_ += np * sizeof(*pv);
    Circmon__V1__StateScheme *sv = (void *)sp_;
    sp_ += nsc * sizeof(*sv);
    Circmon__V1__StateEvent *wv = (void *)sp_;
    sp_ += nw * sizeof(*wv);
    Circmon__V1__StatePermit **pp = (void *)sp_;
    sp_ += np * sizeof(*pp);
    Circmon__V1__StateScheme **sp = (void *)sp_;
    sp_ += nsc * sizeof(*sp);
    Circmon__V1__StateEvent **wp = (void *)sp_;
    sp_ += nw * sizeof(*wp);
    int32_t *runs = (void *)sp_;
    uint64_t ring[RING];
    long len = -ENOMEM;
    for (uint32_t i = 0; i < fs->np; i++) {
        const struct permit *p = &fs->p[i];
        circmon__v1__state_permit__init(&pv[i]);
        pv[i].id = (char *)pid_str(&p->id);
        pv[i].flags = p->flags;
        pv[i].scheme = name_of(fc, p->scheme);
        pv[i].nationality = name_of(fc, p->nat);
        pv[i].valid_from_day = p->vf;
        pv[i].end_day = p->end;
        pv[i].last_exit_day = p->last_exit;
        pv[i].kind = p->kind;
        pp[i] = &pv[i];
    }
    uint32_t k = fs->np;
    for (uint32_t o = 0; o < fs->ltombs; o += (uint32_t)strlen(fs->tombs + o) + 1, k++) {
        circmon__v1__state_permit__init(&pv[k]);
        pv[k].id = fs->tombs + o;
        pv[k].flags = PF_PRUNED;
        pp[k] = &pv[k];
    }
    m.n_permits = k;
    m.permits = pp;
    int32_t *rp = runs;
    for (uint32_t i = 0; i < fs->nsc; i++) {
        circmon__v1__state_scheme__init(&sv[i]);
        sv[i].scheme = name_of(fc, fs->sc[i].scheme);
        sv[i].nationality = name_of(fc, fs->sc[i].nat);
        sv[i].runs = rp;
        for (uint32_t j = 0; j < fs->nr; j++)
            if (fs->r[j].sc == (int32_t)i) {
                *rp++ = fs->r[j].start;
                *rp++ = fs->r[j].end;
                *rp++ = fs->r[j].chk;
                *rp++ = fs->r[j].brk;
            }
        sv[i].n_runs = (size_t)(rp - sv[i].runs);
        sp[i] = &sv[i];
    }
    m.n_schemes = fs->nsc;
    m.schemes = sp;
    m.mode = fs->mode;
    m.current = fs->cur;
    m.latest = st->latest;
    m.snapshot_latest = st->snap_t;
    for (uint32_t i = 0; i < st->nw; i++) {
        const struct wev *e = &st->w[i];
        circmon__v1__state_event__init(&wv[i]);
        wv[i].id_hash = e->idh;
        wv[i].occurred_at = e->t;
        wv[i].type = e->type;
        wv[i].permit_id = (char *)pid_str(&e->pid);
        if (e->type == CM_EV_GRANTED) {
            wv[i].scheme = name_of(fc, e->scheme);
            wv[i].nationality = name_of(fc, e->nat);
        }
        wv[i].valid_from_day = e->vf;
        wv[i].end_day = e->end;
        wv[i].effective_day = e->eff;
        wv[i].kind = e->kind;
        wv[i].status = e->status;
        wp[i] = &wv[i];
    }
    m.n_window = st->nw;
    m.window = wp;
    /* the ring, oldest first */
    for (uint8_t i = 0; i < st->nring; i++)
        ring[i] = st->ring[(st->ringpos + RING - st->nring + i) % RING];
    m.n_recent_ids = st->nring;
    m.recent_ids = ring;
    size_t sz = circmon__v1__migrant_state__get_packed_size(&m);
    *buf = malloc(sz ? sz : 1);
    if (*buf)
        len = (long)circmon__v1__migrant_state__pack(&m, *buf);
    return len;
}

int cm_mstate_unpack(struct cm_fold_ctx *fc, const uint8_t *buf, size_t len, struct cm_mstate **out)
{
    cm_fold_codec_reset(fc);
    Circmon__V1__MigrantState *m = circmon__v1__migrant_state__unpack(&fc->alloc, len, buf);
    if (!m)
        return -EINVAL;
    int rc = -ENOMEM;
    struct cm_mstate *st = cm_mstate_new(fc);
    if (!st)
        goto out;
    struct fstate *fs = &st->snap;
    rc = -EINVAL;
    if (m->mode > M_EXEMPT || m->n_recent_ids > RING || m->n_permits > UINT32_MAX / 2)
        goto fail;
    rc = -ENOMEM;
    if (cm_fold_grow(fc->pool, (void **)&fs->p, &fs->capp, (uint32_t)m->n_permits, sizeof(*fs->p)) < 0)
        goto fail;
    for (size_t i = 0; i < m->n_permits; i++) {
        Circmon__V1__StatePermit *sp = m->permits[i];
        if (sp->flags & PF_PRUNED) {
            if (cm_fstate_add_tomb(fc->pool, fs, sp->id ? sp->id : "") < 0)
                goto fail;
            continue;
        }
        struct permit *p = &fs->p[fs->np];
        memset(p, 0, sizeof(*p));
        if (cm_pid_set(fc->pool, &p->id, sp->id ? sp->id : "") < 0)
            goto fail;
        fs->np++;
        p->flags = (uint8_t)sp->flags;
        const char *sch = sp->scheme ? sp->scheme : "", *nat = sp->nationality ? sp->nationality : "";
        p->scheme = cm_names_intern(fc->nm, sch, strlen(sch));
        p->nat = cm_names_intern(fc->nm, nat, strlen(nat));
        if (p->scheme < 0 || p->nat < 0 || !cm_fold_scheme_info(fc, p->scheme))
            goto fail;
        p->vf = sp->valid_from_day;
        p->end = sp->end_day;
        p->last_exit = sp->last_exit_day;
        p->kind = (uint8_t)sp->kind;
    }
    fs->mode = (uint8_t)m->mode;
    fs->cur = m->current;
    if (fs->mode == M_ON_PERMIT && (fs->cur < 0 || (uint32_t)fs->cur >= fs->np)) {
        rc = -EINVAL;
        goto fail;
    }
    for (size_t i = 0; i < m->n_schemes; i++) {
        Circmon__V1__StateScheme *ss = m->schemes[i];
        const char *sch = ss->scheme ? ss->scheme : "", *nat = ss->nationality ? ss->nationality : "";
        if (ss->n_runs % 4) {
            rc = -EINVAL;
            goto fail;
        }
        if (cm_fold_grow(fc->pool, (void **)&fs->sc, &fs->capsc, fs->nsc + 1, sizeof(*fs->sc)) < 0 ||
            cm_fold_grow(fc->pool, (void **)&fs->r, &fs->capr, (uint32_t)(fs->nr + ss->n_runs / 4), sizeof(*fs->r)) < 0)
            goto fail;
        struct sch *sc = &fs->sc[fs->nsc];
        sc->scheme = cm_names_intern(fc->nm, sch, strlen(sch));
        sc->nat = cm_names_intern(fc->nm, nat, strlen(nat));
        if (sc->scheme < 0 || sc->nat < 0 || !cm_fold_scheme_info(fc, sc->scheme))
            goto fail;
        for (size_t j = 0; j < ss->n_runs; j += 4)
            fs->r[fs->nr++] = (struct run){.sc = (int32_t)fs->nsc, .start = ss->runs[j],
                                           .end = ss->runs[j + 1], .chk = ss->runs[j + 2],
                                           .brk = ss->runs[j + 3]};
        fs->nsc++;
    }
    /* runs of all schemes back in chronological order per scheme: kept as packed */
    st->latest = m->latest;
    st->snap_t = m->snapshot_latest;
    if (cm_fold_grow(fc->pool, (void **)&st->w, &st->capw, (uint32_t)m->n_window, sizeof(*st->w)) < 0)
        goto fail;
    for (size_t i = 0; i < m->n_window; i++) {
        Circmon__V1__StateEvent *se = m->window[i];
        struct wev *e = &st->w[st->nw];
        memset(e, 0, sizeof(*e));
        e->idh = se->id_hash;
        e->t = se->occurred_at;
        e->type = (uint8_t)se->type;
        if (e->type < CM_EV_ENTRY || e->type > CM_EV_STATUS) {
            rc = -EINVAL;
            goto fail;
        }
        if (e->type == CM_EV_GRANTED || e->type == CM_EV_EXTENDED || e->type == CM_EV_REVOKED) {
            if (cm_pid_set(fc->pool, &e->pid, se->permit_id ? se->permit_id : "") < 0)
                goto fail;
        }
        st->nw++;
        if (e->type == CM_EV_GRANTED) {
            const char *sch = se->scheme ? se->scheme : "", *nat = se->nationality ? se->nationality : "";
            e->scheme = cm_names_intern(fc->nm, sch, strlen(sch));
            e->nat = cm_names_intern(fc->nm, nat, strlen(nat));
            if (e->scheme < 0 || e->nat < 0 || !cm_fold_scheme_info(fc, e->scheme))
                goto fail;
        }
        e->vf = se->valid_from_day;
        e->end = se->end_day;
        e->eff = se->effective_day;
        e->kind = (uint8_t)se->kind;
        e->status = (uint8_t)se->status;
    }
    if (m->n_recent_ids) {
        uint8_t nc = 4;
        while (nc < m->n_recent_ids)
            nc = (uint8_t)(nc * 2);
        if (!(st->ring = cm_pool_alloc(fc->pool, nc * sizeof(*st->ring))))
            goto fail;
        st->capring = nc;
        memcpy(st->ring, m->recent_ids, m->n_recent_ids * sizeof(*st->ring));
    }
    st->nring = (uint8_t)m->n_recent_ids;
    st->ringpos = (uint8_t)(m->n_recent_ids % RING);
    *out = st;
    cm_fold_codec_reset(fc);
    return 0;
fail:
    cm_mstate_free(fc, st);
out:
    cm_fold_codec_reset(fc);
    return rc;
}
