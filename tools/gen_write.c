/* gen_write.c - circmon-gen's output: each compact event as a
 * circmon.v1.Event, with the fault it is meant to carry, written in arrival
 * order and checked against the decoder. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "circmon/event.h"
#include "circmon/framing.h"
#include "circmon/grow.h"
#include "circmon/timeutil.h"
#include "circmon/v1/events.pb-c.h"
#include "gen.h"

static const char *const NATS[] = {
    "",    "MAR", "UKR", "SEN", "COL", "GTM", "HND", "IND", "CHN", "NGA", "VNM",
    "BRA", "TUN", "USA", "IRN", "ALB", "PHL", "EGY", "TUR", "ZAF", "KAZ", "GEO",
};
#define NAT_COUNT (sizeof NATS / sizeof NATS[0])

static const char *const REVOKE_REASONS[] = {
    "withdrawn before entry", "employer withdrew the offer", "studies abandoned",
    "conditions no longer met", "public order",
};

static const char *const STATUS_DETAILS[] = {
    "", "application for international protection", "EU long-term resident status",
    "death registered", "change to an employment permit",
};

struct key {
    int64_t arr;
    uint32_t idx;
};

static int key_cmp(const void *a, const void *b)
{
    const struct key *x = a, *y = b;
    if (x->arr != y->arr)
        return x->arr < y->arr ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

struct dupref {
    uint32_t target; /* sorted position it follows */
    uint32_t idx;
};

static int dupref_cmp(const void *a, const void *b)
{
    const struct dupref *x = a, *y = b;
    if (x->target != y->target)
        return x->target < y->target ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static int decodes(const uint8_t *buf, size_t len)
{
    Circmon__V1__Event *ev = circmon__v1__event__unpack(NULL, len, buf);
    if (!ev)
        return 0;
    circmon__v1__event__free_unpacked(ev, NULL);
    return 1;
}

struct writer {
    FILE *fp;
    uint8_t *buf;
    size_t cap;
    struct gen_written n;
    struct cm_decoder *dec; /* checks every record */
};

static void need(struct writer *w, size_t n)
{
    if (cm_grow(&w->buf, &w->cap, n, 1, 4096) != 0) {
        fprintf(stderr, "circmon-gen: out of memory\n");
        exit(1);
    }
}

static void put(struct writer *w, const uint8_t *b, size_t len)
{
    if (cm_frame_write(w->fp, b, len) < 0) {
        fprintf(stderr, "circmon-gen: write error: %s\n", strerror(errno ? errno : EIO));
        exit(1);
    }
    size_t hdr = 1;
    for (size_t v = len; v >= 0x80; v >>= 7)
        hdr++;
    w->n.bytes += hdr + len;
    w->n.records++;
}

static void write_rec(const struct gen *g, struct writer *w, const struct gev *e, uint32_t idx)
{
    const struct scheme *s = &gen_schemes[e->scheme];
    char mid[32], evid[48], pid[48], longs[640];
    Circmon__V1__Event ev = CIRCMON__V1__EVENT__INIT;
    Circmon__V1__Entry en = CIRCMON__V1__ENTRY__INIT;
    Circmon__V1__Exit ex = CIRCMON__V1__EXIT__INIT;
    Circmon__V1__PermitGranted pg = CIRCMON__V1__PERMIT_GRANTED__INIT;
    Circmon__V1__PermitExtended pe = CIRCMON__V1__PERMIT_EXTENDED__INIT;
    Circmon__V1__PermitRevoked pr = CIRCMON__V1__PERMIT_REVOKED__INIT;
    Circmon__V1__StatusChanged sc = CIRCMON__V1__STATUS_CHANGED__INIT;
    struct rng r = {mix64(g->seed ^ ((uint64_t)idx << 20) ^ 0x5eed)};

    snprintf(mid, sizeof mid, "M%04X%07" PRIu32, (unsigned)g->salt, e->m);
    snprintf(evid, sizeof evid, "%s-%u", mid, (unsigned)e->seq);
    snprintf(pid, sizeof pid, "%s-%07" PRIu32 "-%02u", s->prefix, e->m, (unsigned)e->permit);
    ev.event_id = evid;
    ev.migrant_id = mid;
    ev.occurred_at = e->occ;
    ev.recorded_at = e->arr;
    ev.source = (char *)(is_registry(e->kind) ? s->registry_src : s->border_src);

    switch (e->kind) {
    case K_ENTRY:
        en.member_state = (char *)s->ms;
        en.border_point = (char *)s->border[e->aux & 3];
        ev.body_case = CIRCMON__V1__EVENT__BODY_ENTRY;
        ev.entry = &en;
        break;
    case K_EXIT:
        ex.member_state = (char *)s->ms;
        ex.border_point = (char *)s->border[e->aux & 3];
        ev.body_case = CIRCMON__V1__EVENT__BODY_EXIT;
        ev.exit = &ex;
        break;
    case K_GRANT:
        pg.permit_id = pid;
        pg.scheme_id = (char *)s->id;
        pg.kind = (Circmon__V1__PermitKind)s->kind;
        pg.valid_from = e->t1;
        pg.valid_until = e->t2;
        pg.member_state = (char *)s->ms;
        pg.nationality = (char *)NATS[e->nat < NAT_COUNT ? e->nat : 0];
        pg.sector = (char *)s->sector[e->aux % 3];
        pg.multiple_entry = s->multiple_entry;
        ev.body_case = CIRCMON__V1__EVENT__BODY_PERMIT_GRANTED;
        ev.permit_granted = &pg;
        break;
    case K_EXTEND:
        pe.permit_id = pid;
        pe.valid_until = e->t1;
        ev.body_case = CIRCMON__V1__EVENT__BODY_PERMIT_EXTENDED;
        ev.permit_extended = &pe;
        break;
    case K_REVOKE:
        pr.permit_id = pid;
        pr.effective_at = e->t1;
        pr.reason = (char *)REVOKE_REASONS[e->aux % 5];
        ev.body_case = CIRCMON__V1__EVENT__BODY_PERMIT_REVOKED;
        ev.permit_revoked = &pr;
        break;
    case K_STATUS:
        sc.status = (Circmon__V1__Status)e->aux;
        sc.detail = (char *)STATUS_DETAILS[e->aux % 5];
        ev.body_case = CIRCMON__V1__EVENT__BODY_STATUS_CHANGED;
        ev.status_changed = &sc;
        break;
    }

    switch (e->fault) {
    case F_NO_EVID:
        ev.event_id = "";
        break;
    case F_NO_MIGRANT:
        ev.migrant_id = "";
        break;
    case F_NO_BODY:
        ev.body_case = CIRCMON__V1__EVENT__BODY__NOT_SET;
        break;
    case F_ZERO_TIME:
        ev.occurred_at = 0;
        break;
    case F_LONG_STRING: {
        size_t n = 257 + rng_below(&r, 300);
        for (size_t i = 0; i < n; i++)
            longs[i] = (char)('A' + rng_below(&r, 26));
        longs[n] = '\0';
        ev.source = longs;
        break;
    }
    case F_NO_SCHEME:
        pg.scheme_id = "";
        break;
    case F_BAD_RANGE:
        pg.valid_until = pg.valid_from - (int64_t)(1 + rng_below(&r, 90)) * CM_DAY;
        break;
    case F_NO_PERMIT_ID:
        pg.permit_id = pe.permit_id = pr.permit_id = "";
        break;
    case F_NO_VALID_UNTIL:
        pe.valid_until = 0;
        break;
    case F_BAD_UTF8: {
        /* what other encodings or careless cutting leave behind */
        static const char *const bad[] = {"R\xe9gistre", "\xed\xa0\x80", "\xc0\xaf",
                                          "caf\xe2\x82", "\xf4\x90\x80\x80"};
        const char *b = bad[rng_below(&r, 5)];
        snprintf(longs, sizeof longs, "%s%s", e->kind == K_GRANT ? s->id : "", b);
        if (e->kind == K_GRANT && rng_below(&r, 2))
            pg.scheme_id = longs;
        else if (e->kind == K_GRANT)
            pg.nationality = longs;
        else
            ev.source = longs;
        break;
    }
    case F_OUT_OF_RANGE: {
        /* a permit valid into the year 10000, a date in milliseconds, a sign lost */
        int64_t far = CM_TIME_MAX + 1 + (int64_t)rng_below(&r, 400) * CM_DAY;
        if (e->kind == K_GRANT)
            pg.valid_until = rng_below(&r, 2) ? far : pg.valid_until * 1000;
        else if (e->kind == K_EXTEND)
            pe.valid_until = far;
        else if (e->kind == K_REVOKE)
            pr.effective_at = pr.effective_at ? -pr.effective_at : -e->occ;
        else
            ev.occurred_at = -ev.occurred_at;
        break;
    }
    default:
        break;
    }

    size_t len = circmon__v1__event__get_packed_size(&ev);
    need(w, len + 64);
    circmon__v1__event__pack(&ev, w->buf + 32); /* room for a prefix */
    uint8_t *p = w->buf + 32;

    if (e->fault == F_GARBAGE || e->fault == F_TRUNC || e->fault == F_PREFIX) {
        /* Only what protobuf-c really refuses: a cut at a field boundary, or
         * bytes that happen to read as unknown fields, would decode. */
        int ok = 0;
        for (int tries = 0; tries < 16 && !ok; tries++) {
            if (e->fault == F_TRUNC && len > 2) {
                size_t cut = 1 + rng_below(&r, (uint32_t)(len - 1));
                ok = !decodes(p, cut);
                if (ok)
                    len = cut;
            } else if (e->fault == F_PREFIX) {
                size_t k = 1 + rng_below(&r, 24);
                for (size_t i = 0; i < k; i++)
                    w->buf[32 - k + i] = (uint8_t)rng_next(&r);
                ok = !decodes(w->buf + 32 - k, len + k);
                if (ok) {
                    p = w->buf + 32 - k;
                    len += k;
                }
            } else {
                break;
            }
        }
        if (!ok) {
            /* Random bytes opening with an invalid wire type (6 or 7). */
            size_t k = 8 + rng_below(&r, 120);
            need(w, k + 64);
            p = w->buf;
            for (size_t i = 0; i < k; i++)
                p[i] = (uint8_t)rng_next(&r);
            p[0] = (uint8_t)((p[0] & 0xf8) | 6 | (p[0] & 1));
            if (decodes(p, k))
                p[0] = 0x07;
            len = k;
        }
        w->n.undecodable++;
    } else if (e->fault >= F_NO_EVID) {
        w->n.invalid++;
    }
    if (e->fault < F_GARBAGE || e->fault > F_PREFIX)
        w->n.per_kind[e->kind]++;
    /* Each record is what it is meant to be: valid unless it carries a
     * fault, invalid with one. An instant out of the contract's range by
     * accident (a far --start-year, a long stay) would show here. */
    struct cm_event dev;
    enum cm_reject rej = cm_decode(w->dec, p, len, &dev);
    int meant_valid = e->fault == F_NONE || e->fault == F_DUP_NEXT || e->fault == F_DUP_LATER;
    if ((rej == CM_OK) != meant_valid) {
        fprintf(stderr, "circmon-gen: internal error: record %" PRIu64 " (fault %u) decodes as %s\n",
                w->n.records, (unsigned)e->fault, cm_reject_name(rej));
        exit(1);
    }
    put(w, p, len);
}

int gen_write(struct gen *g, const char *out, struct gen_written *wr)
{
    /* Order: arrival, then generation order; duplicates follow their original. */
    size_t n = g->all.n, nmain = n - g->ndup;
    struct key *keys = malloc(nmain * sizeof *keys + 1);
    uint32_t *pos = malloc(n * sizeof *pos + 1);
    struct dupref *dups = malloc(g->ndup * sizeof *dups + 1);
    if (!keys || !pos || !dups) {
        fprintf(stderr, "circmon-gen: out of memory\n");
        return 1;
    }
    size_t k = 0, kd = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t f = g->all.v[i].fault;
        if (f == F_DUP_NEXT || f == F_DUP_LATER)
            continue;
        keys[k].arr = g->all.v[i].arr;
        keys[k++].idx = (uint32_t)i;
    }
    qsort(keys, nmain, sizeof *keys, key_cmp);
    for (size_t i = 0; i < nmain; i++)
        pos[keys[i].idx] = (uint32_t)i;
    for (size_t i = 0; i < n; i++) {
        const struct gev *e = &g->all.v[i];
        if (e->fault != F_DUP_NEXT && e->fault != F_DUP_LATER)
            continue;
        uint64_t t = pos[g->dup_orig[kd++]] + (e->fault == F_DUP_LATER ? 20u : 0u);
        dups[kd - 1].target = (uint32_t)(t < nmain ? t : nmain - 1);
        dups[kd - 1].idx = (uint32_t)i;
    }
    qsort(dups, g->ndup, sizeof *dups, dupref_cmp);
    free(pos);
    free(g->dup_orig);
    g->dup_orig = NULL;

    /* Write. */
    struct writer w = {0};
    FILE *fp = strcmp(out, "-") ? fopen(out, "wb") : stdout;
    if (!fp) {
        fprintf(stderr, "circmon-gen: %s: %s\n", out, strerror(errno));
        return 1;
    }
    w.fp = fp;
    if (!(w.dec = cm_decoder_new())) {
        fprintf(stderr, "circmon-gen: out of memory\n");
        return 1;
    }
    setvbuf(fp, NULL, _IOFBF, 1 << 20);
    size_t d = 0;
    for (size_t i = 0; i < nmain; i++) {
        write_rec(g, &w, &g->all.v[keys[i].idx], keys[i].idx);
        while (d < g->ndup && dups[d].target == i) {
            write_rec(g, &w, &g->all.v[dups[d].idx], dups[d].idx);
            d++;
        }
    }
    if (fflush(fp) != 0 || ferror(fp) || (fp != stdout && fclose(fp) != 0)) {
        fprintf(stderr, "circmon-gen: %s: write error: %s\n", out, strerror(errno));
        return 1;
    }
    *wr = w.n;
    free(w.buf);
    cm_decoder_free(w.dec);
    free(keys);
    free(dups);
    return 0;
}
