/* check_state.c - packed migrant states: folding through pack/unpack after
 * every event (as the Redis store does) gives the in-memory figures. */
#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "circmon/agg.h"
#include "circmon/config.h"
#include "circmon/engine.h"
#include "circmon/event.h"
#include "circmon/fold.h"
#include "circmon/framing.h"
#include "circmon/indicators.h"
#include "circmon/names.h"
#include "circmon/pool.h"
#include "circmon/v1/state.pb-c.h"
#include "cm_bin.h"

#include <sys/resource.h>

struct packed {
    char *id;
    uint8_t *buf;
    long len;
};

struct pmap {
    struct packed *v;
    size_t cap, n;
};

static struct packed *pmap_get(struct pmap *m, const char *id)
{
    size_t h = 5381;
    for (const char *s = id; *s; s++)
        h = h * 33 + (unsigned char)*s;
    if ((m->n + 1) * 2 > m->cap) {
        struct pmap nm = {.cap = m->cap ? m->cap * 2 : 1024};
        nm.v = calloc(nm.cap, sizeof(*nm.v));
        ck_assert_ptr_nonnull(nm.v);
        for (size_t i = 0; i < m->cap; i++)
            if (m->v[i].id) {
                size_t g = 5381;
                for (const char *s = m->v[i].id; *s; s++)
                    g = g * 33 + (unsigned char)*s;
                size_t j = g & (nm.cap - 1);
                while (nm.v[j].id)
                    j = (j + 1) & (nm.cap - 1);
                nm.v[j] = m->v[i];
            }
        free(m->v);
        m->v = nm.v;
        m->cap = nm.cap;
    }
    size_t j = h & (m->cap - 1);
    while (m->v[j].id && strcmp(m->v[j].id, id))
        j = (j + 1) & (m->cap - 1);
    if (!m->v[j].id) {
        m->v[j].id = strdup(id);
        m->n++;
    }
    return &m->v[j];
}

static const char *gen_file(int seed, int migrants)
{
    static char path[64];
    const char *top = getenv("CM_TOP");
    ck_assert_msg(top != NULL, "CM_TOP is not set");
    char gen[4096], cmd[8192];
    cm_bin_path(gen, sizeof(gen), "circmon-gen");
    ck_assert_msg(access(gen, X_OK) == 0, "%s is missing: run make", gen);
    strcpy(path, "/tmp/cm_state_XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    snprintf(cmd, sizeof(cmd), "'%s' --seed %d --migrants %d --out '%s' 2>/dev/null", gen, seed,
             migrants, path);
    ck_assert_int_eq(system(cmd), 0);
    return path;
}

static void config_demo(struct cm_config *cfg)
{
    ck_assert_int_eq(cm_config_defaults(cfg), 0);
    cfg->schemes = calloc(3, sizeof(*cfg->schemes));
    ck_assert_ptr_nonnull(cfg->schemes);
    strcpy(cfg->schemes[0].id, "SAWP-ES");
    cfg->schemes[0].grace_days = 7;
    strcpy(cfg->schemes[1].id, "SHORTSTAY");
    cfg->schemes[1].stay_n = 90;
    cfg->schemes[1].stay_w = 180;
    strcpy(cfg->schemes[2].id, "STUDY-DE");
    cfg->schemes[2].grace_days = 30;
    cfg->n_schemes = 3;
}

START_TEST(test_pack_every_event_equals_memory)
{
    const char *path = gen_file(7, 3000);
    struct cm_config cfg;
    config_demo(&cfg);

    struct cm_engine *en = cm_engine_new(&cfg);
    struct cm_names *nm = cm_names_new();
    struct cm_agg *ag = cm_agg_new();
    struct cm_decoder *dec = cm_decoder_new();
    ck_assert(en && nm && ag && dec);
    struct cm_fold_ctx *fc = cm_fold_ctx_new(&cfg, nm);
    ck_assert_ptr_nonnull(fc);
    struct pmap map = {0};
    struct cm_item *items = NULL;
    size_t nitems = 0, capitems = 0, records = 0, repacked = 0;

    FILE *fp = fopen(path, "rb");
    ck_assert_ptr_nonnull(fp);
    struct cm_frame_reader r;
    const uint8_t *data;
    size_t len;
    cm_frame_reader_init(&r, fp);
    while (cm_frame_read(&r, &data, &len) == 1) {
        records++;
        ck_assert_int_ge(cm_engine_feed(en, data, len), 0);
        struct cm_event ev;
        if (cm_decode(dec, data, len, &ev) != CM_OK) {
            struct cm_agg_key k = {.kind = CM_AK_DQ, .ctr = CM_DQ_INVALID};
            ck_assert_int_eq(cm_agg_add(ag, &k, 1), 0);
            continue;
        }
        struct packed *p = pmap_get(&map, ev.migrant_id);
        struct cm_mstate *st = NULL;
        if (p->buf) {
            ck_assert_int_eq(cm_mstate_unpack(fc, p->buf, (size_t)p->len, &st), 0);
            repacked++;
        } else {
            st = cm_mstate_new(fc);
        }
        ck_assert_ptr_nonnull(st);
        nitems = 0;
        ck_assert_int_ge(cm_fold_event(fc, st, &ev, &items, &nitems, &capitems), 0);
        ck_assert_int_eq(cm_agg_add_items(ag, items, nitems), 0);
        free(p->buf);
        p->len = cm_mstate_pack(fc, st, &p->buf);
        ck_assert_int_gt(p->len, 0);
        cm_mstate_free(fc, st);
    }
    cm_frame_reader_free(&r);
    fclose(fp);
    ck_assert_uint_gt(records, 20000);
    ck_assert_uint_gt(repacked, 15000);

    static const int64_t as_of[] = {1546300800 /* 2019-01-01 */, 1640995200 /* 2022-01-01 */,
                                    1735689600 /* 2025-01-01 */, 1893456000 /* 2030-01-01 */};
    for (size_t i = 0; i < sizeof(as_of) / sizeof(as_of[0]); i++) {
        json_t *a = cm_engine_indicators(en, as_of[i]);
        json_t *b = cm_indicators_json(ag, nm, &cfg, as_of[i]);
        ck_assert(a && b);
        if (!json_equal(a, b)) {
            char *sa = json_dumps(a, JSON_SORT_KEYS | JSON_INDENT(1));
            char *sb = json_dumps(b, JSON_SORT_KEYS | JSON_INDENT(1));
            ck_abort_msg("as of %lld, memory:\n%s\npacked:\n%s", (long long)as_of[i], sa, sb);
        }
        json_decref(a);
        json_decref(b);
    }
    for (size_t i = 0; i < map.cap; i++) {
        free(map.v[i].id);
        free(map.v[i].buf);
    }
    free(map.v);
    free(items);
    cm_fold_ctx_free(fc);
    cm_decoder_free(dec);
    cm_agg_free(ag);
    cm_names_free(nm);
    cm_engine_free(en);
    cm_config_free(&cfg);
    unlink(path);
}
END_TEST

START_TEST(test_unpack_garbage_is_refused)
{
    struct cm_config cfg;
    config_demo(&cfg);
    struct cm_names *nm = cm_names_new();
    struct cm_fold_ctx *fc = cm_fold_ctx_new(&cfg, nm);
    uint64_t s = 12345;
    uint8_t buf[256];
    int refused = 0, taken = 0;
    for (int i = 0; i < 20000; i++) {
        size_t len = (size_t)(i % 200);
        for (size_t j = 0; j < len; j++) {
            s = s * 6364136223846793005ULL + 1442695040888963407ULL;
            buf[j] = (uint8_t)(s >> 56);
        }
        struct cm_mstate *st = NULL;
        int rc = cm_mstate_unpack(fc, buf, len, &st);
        ck_assert(rc == 0 || rc == -EINVAL);
        if (rc == 0) {
            /* whatever decoded must be usable: fold an event into it */
            struct cm_event ev = {.type = CM_EV_EXIT, .event_id = "x", .migrant_id = "m",
                                  .occurred_at = 1700000000, .permit_id = "", .scheme_id = "",
                                  .nationality = ""};
            struct cm_item *items = NULL;
            size_t n = 0, cap = 0;
            ck_assert_int_ge(cm_fold_event(fc, st, &ev, &items, &n, &cap), 0);
            free(items);
            cm_mstate_free(fc, st);
            taken++;
        } else {
            refused++;
        }
    }
    ck_assert_int_gt(refused, 1000);
    /* the branch that folds into what decoded must run too (the empty
     * buffers are the empty state, at least) */
    ck_assert_int_gt(taken, 0);
    cm_fold_ctx_free(fc);
    cm_names_free(nm);
    cm_config_free(&cfg);
}
END_TEST

/* ---- mutated valid states ---- */

#define DAYS 86400LL
#define T0 1709294400LL /* 2024-03-01T12:00:00Z */

/* A state has one encoding: what unpack gives back packs to the bytes it came
 * from. Found by fuzz_state (tests/fuzz/regress/fuzz_state/current-after-exit):
 * an entry on the second permit and the exit that ends the stay, folded into
 * the snapshot, left the snapshot's current permit at 1 while absent; pack
 * wrote it, unpack keeps 0 for an absent migrant, so the bytes differed. */
START_TEST(test_pack_unpack_pack_same_bytes)
{
    struct cm_config cfg;
    config_demo(&cfg);
    struct cm_names *nm = cm_names_new();
    struct cm_fold_ctx *fc = cm_fold_ctx_new(&cfg, nm);
    ck_assert(nm && fc);
    struct cm_mstate *st = cm_mstate_new(fc);
    ck_assert_ptr_nonnull(st);
    const int64_t t0 = T0;
    const struct cm_event evs[] = {
        {.type = CM_EV_GRANTED, .event_id = "g1", .migrant_id = "m", .occurred_at = t0,
         .permit_id = "P1", .scheme_id = "SAWP-ES", .nationality = "TUR", .kind = 1,
         .valid_from = t0, .valid_until = t0 + 10 * DAYS},
        {.type = CM_EV_GRANTED, .event_id = "g2", .migrant_id = "m",
         .occurred_at = t0 + 20 * DAYS, .permit_id = "P2", .scheme_id = "SAWP-ES",
         .nationality = "TUR", .kind = 1, .valid_from = t0 + 20 * DAYS,
         .valid_until = t0 + 100 * DAYS},
        {.type = CM_EV_ENTRY, .event_id = "e1", .migrant_id = "m", .occurred_at = t0 + 30 * DAYS,
         .permit_id = "", .scheme_id = "", .nationality = ""},
        {.type = CM_EV_EXIT, .event_id = "x1", .migrant_id = "m", .occurred_at = t0 + 40 * DAYS,
         .permit_id = "", .scheme_id = "", .nationality = ""},
        /* far later: the stay leaves the window for the snapshot */
        {.type = CM_EV_ENTRY, .event_id = "e2", .migrant_id = "m", .occurred_at = t0 + 400 * DAYS,
         .permit_id = "", .scheme_id = "", .nationality = ""},
    };
    struct cm_item *items = NULL;
    size_t n = 0, cap = 0;
    for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++) {
        n = 0;
        ck_assert_int_eq(cm_fold_event(fc, st, &evs[i], &items, &n, &cap), CM_FOLD_ACCEPTED);
        uint8_t *b1 = NULL, *b2 = NULL;
        long l1 = cm_mstate_pack(fc, st, &b1);
        ck_assert_int_gt(l1, 0);
        struct cm_mstate *again = NULL;
        ck_assert_int_eq(cm_mstate_unpack(fc, b1, (size_t)l1, &again), 0);
        long l2 = cm_mstate_pack(fc, again, &b2);
        ck_assert_msg(l2 == l1 && memcmp(b1, b2, (size_t)l1) == 0,
                      "after event %zu: %ld bytes packed, %ld after a round trip, not the same",
                      i, l1, l2);
        free(b1);
        free(b2);
        cm_mstate_free(fc, again);
    }
    free(items);
    cm_mstate_free(fc, st);
    cm_fold_ctx_free(fc);
    cm_names_free(nm);
    cm_config_free(&cfg);
}
END_TEST


struct sample {
    uint8_t *buf[64];
    long len[64];
    int n;
};

static void fold1(struct cm_fold_ctx *fc, struct cm_mstate *st, int type, int64_t t, const char *pid,
                  const char *scheme, const char *nat, int64_t vf, int64_t vu)
{
    static int k;
    char eid[32];
    snprintf(eid, sizeof eid, "ev%d", k++);
    struct cm_event ev = {.type = type, .event_id = eid, .migrant_id = "m", .occurred_at = t,
                          .permit_id = pid ? pid : "", .scheme_id = scheme ? scheme : "",
                          .nationality = nat ? nat : "", .valid_from = vf, .valid_until = vu};
    struct cm_item *items = NULL;
    size_t n = 0, cap = 0;
    ck_assert_int_ge(cm_fold_event(fc, st, &ev, &items, &n, &cap), 0);
    free(items);
}

static void keep(struct cm_fold_ctx *fc, struct cm_mstate *st, struct sample *s)
{
    ck_assert_int_lt(s->n, 64);
    s->len[s->n] = cm_mstate_pack(fc, st, &s->buf[s->n]);
    ck_assert_int_gt(s->len[s->n], 0);
    s->n++;
}

/* Real states of the fold: stays under a stay limit with breaches, open and
 * closed runs, pruned permits, a transfer, a heavy migrant whose events
 * joined the snapshot by max_window_events, a window of many events. */
static void sample_states(struct cm_fold_ctx *fc, struct sample *s)
{
    struct cm_mstate *st = cm_mstate_new(fc);
    fold1(fc, st, CM_EV_GRANTED, T0, "p1", "SHORTSTAY", "UKR", T0, T0 + 900 * DAYS);
    keep(fc, st, s);
    fold1(fc, st, CM_EV_ENTRY, T0 + DAYS, NULL, NULL, NULL, 0, 0);
    keep(fc, st, s);
    fold1(fc, st, CM_EV_EXIT, T0 + 120 * DAYS, NULL, NULL, NULL, 0, 0); /* 29 breach days */
    fold1(fc, st, CM_EV_ENTRY, T0 + 150 * DAYS, NULL, NULL, NULL, 0, 0);
    keep(fc, st, s);
    fold1(fc, st, CM_EV_GRANTED, T0 + 200 * DAYS, "p2", "SHORTSTAY", "MDA", T0 + 200 * DAYS,
          T0 + 400 * DAYS); /* a transfer */
    fold1(fc, st, CM_EV_EXTENDED, T0 + 201 * DAYS, "p2", NULL, NULL, 0, T0 + 500 * DAYS);
    keep(fc, st, s);
    fold1(fc, st, CM_EV_EXIT, T0 + 300 * DAYS, NULL, NULL, NULL, 0, 0);
    fold1(fc, st, CM_EV_GRANTED, T0 + 310 * DAYS, "p3", "SAWP-ES", "", T0 + 320 * DAYS,
          T0 + 330 * DAYS);
    fold1(fc, st, CM_EV_ENTRY, T0 + 321 * DAYS, NULL, NULL, NULL, 0, 0);
    fold1(fc, st, CM_EV_STATUS, T0 + 325 * DAYS, NULL, NULL, NULL, 0, 0);
    keep(fc, st, s);
    fold1(fc, st, CM_EV_EXIT, T0 + 900 * DAYS, NULL, NULL, NULL, 0, 0);
    fold1(fc, st, CM_EV_REVOKED, T0 + 1500 * DAYS, "p1", NULL, NULL, 0, 0); /* late admin */
    keep(fc, st, s); /* pruned permits */
    /* many events: some join the snapshot by max_window_events (4 here) */
    for (int i = 0; i < 40; i++)
        fold1(fc, st, i % 2 ? CM_EV_EXIT : CM_EV_ENTRY, T0 + 1600 * DAYS + i * 60, NULL, NULL, NULL,
              0, 0);
    keep(fc, st, s);
    fold1(fc, st, CM_EV_EXIT, T0 + 1600 * DAYS + 37 * 60 + 1, NULL, NULL, NULL, 0, 0); /* out of order */
    keep(fc, st, s);
    cm_mstate_free(fc, st);
}

/* Unpacks buf; a state that is not refused must take one more event of each
 * kind and pack into a state that unpacks again. Returns 1 when refused. */
static int try_state(struct cm_fold_ctx *fc, const uint8_t *buf, size_t len)
{
    struct cm_mstate *st = NULL;
    int rc = cm_mstate_unpack(fc, buf, len, &st);
    ck_assert_msg(rc == 0 || rc == -EINVAL, "cm_mstate_unpack: %d", rc);
    if (rc)
        return 1;
    static const int types[] = {CM_EV_ENTRY, CM_EV_EXIT, CM_EV_EXTENDED, CM_EV_REVOKED,
                                CM_EV_GRANTED, CM_EV_STATUS};
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        fold1(fc, st, types[i], T0 + 1700 * DAYS + (int64_t)i, "p1", "SHORTSTAY", "UKR",
              T0 + 1650 * DAYS, T0 + 1900 * DAYS);
        ck_assert_uint_lt(cm_mstate_size(st), 1 << 20);
    }
    uint8_t *out = NULL;
    long n = cm_mstate_pack(fc, st, &out);
    ck_assert_int_gt(n, 0);
    cm_mstate_free(fc, st);
    st = NULL;
    ck_assert_int_eq(cm_mstate_unpack(fc, out, (size_t)n, &st), 0);
    cm_mstate_free(fc, st);
    free(out);
    return 0;
}

/* A mutation of field f (a numbered value in message order) to value k of
 * a list of extremes; returns 0 when m has no such field. */
static const int64_t EXT[] = {INT64_MIN, INT32_MIN, -1, 0, 1, 2932896, 2932897, INT32_MAX - 1,
                              INT32_MAX, UINT32_MAX, 253402300799LL, 253402300800LL, INT64_MAX};
#define NEXT (sizeof(EXT) / sizeof(EXT[0]))

static int set_i32(int32_t *p, int64_t v) { *p = (int32_t)v; return 1; }
static int set_u32(uint32_t *p, int64_t v) { *p = (uint32_t)v; return 1; }

static int mutate_num(Circmon__V1__MigrantState *m, int f, int64_t v)
{
    int i = f / 16, g = f % 16;
    switch (g) {
    case 0: m->latest = v; return f == 0;
    case 1: m->snapshot_latest = v; return f == 1;
    case 2: m->mode = (uint32_t)v; return f == 2;
    case 3: m->current = (int32_t)v; return f == 3;
    }
    if (g >= 4 && g <= 8) {
        if ((size_t)i >= m->n_permits)
            return 0;
        Circmon__V1__StatePermit *p = m->permits[i];
        int32_t *d[] = {&p->valid_from_day, &p->end_day, &p->last_exit_day};
        if (g < 7)
            return set_i32(d[g - 4], v);
        return set_u32(g == 7 ? &p->flags : &p->kind, v);
    }
    if (g >= 9 && g <= 14) {
        if ((size_t)i >= m->n_window)
            return 0;
        Circmon__V1__StateEvent *e = m->window[i];
        switch (g) {
        case 9: e->occurred_at = v; return 1;
        case 10: return set_u32(&e->type, v);
        case 11: return set_i32(&e->valid_from_day, v);
        case 12: return set_i32(&e->end_day, v);
        case 13: return set_i32(&e->effective_day, v);
        default: return set_u32(&e->kind, v);
        }
    }
    /* g == 15: one value of the runs */
    size_t k = (size_t)i;
    for (size_t s = 0; s < m->n_schemes; s++) {
        if (k < m->schemes[s]->n_runs) {
            m->schemes[s]->runs[k] = (int32_t)v;
            return 1;
        }
        k -= m->schemes[s]->n_runs;
    }
    return 0;
}

static void repack_try(struct cm_fold_ctx *fc, Circmon__V1__MigrantState *m, int *refused, int *taken)
{
    size_t sz = circmon__v1__migrant_state__get_packed_size(m);
    uint8_t *b = malloc(sz ? sz : 1);
    ck_assert_ptr_nonnull(b);
    circmon__v1__migrant_state__pack(m, b);
    if (try_state(fc, b, sz))
        (*refused)++;
    else
        (*taken)++;
    free(b);
}

START_TEST(test_unpack_mutated_valid_states)
{
#if !defined(__SANITIZE_ADDRESS__)
    /* an allocation of gigabytes fails instead of succeeding slowly (the
     * sanitizers reserve terabytes of address space: not with them) */
    struct rlimit rl = {.rlim_cur = 1ULL << 30, .rlim_max = 1ULL << 30};
    ck_assert_int_eq(setrlimit(RLIMIT_AS, &rl), 0);
#endif
    struct cm_config cfg;
    config_demo(&cfg);
    cfg.max_window_events = 4;
    struct cm_names *nm = cm_names_new();
    struct cm_fold_ctx *fc = cm_fold_ctx_new(&cfg, nm);
    ck_assert(nm && fc);
    static struct sample s;
    sample_states(fc, &s);
    int refused = 0, taken = 0;
    for (int i = 0; i < s.n; i++) {
        ck_assert_int_eq(try_state(fc, s.buf[i], (size_t)s.len[i]), 0); /* the real ones */
        for (int f = 0; f < 16 * 48; f++)
            for (size_t k = 0; k < NEXT; k++) {
                Circmon__V1__MigrantState *m =
                    circmon__v1__migrant_state__unpack(NULL, (size_t)s.len[i], s.buf[i]);
                ck_assert_ptr_nonnull(m);
                if (mutate_num(m, f, EXT[k]))
                    repack_try(fc, m, &refused, &taken);
                circmon__v1__migrant_state__free_unpacked(m, NULL);
            }
        /* strings and counts */
        for (int f = 0; f < 12; f++) {
            Circmon__V1__MigrantState *m =
                circmon__v1__migrant_state__unpack(NULL, (size_t)s.len[i], s.buf[i]);
            static char longs[300], bad[] = "\xff\xfe", empty[] = "";
            memset(longs, 'x', sizeof longs - 1);
            int done = 1;
            char **str = NULL, *orig = NULL; /* a string swapped in, put back before the free */
            size_t nw = m->n_window, np = m->n_permits, ns = m->n_schemes;
            size_t nr = ns ? m->schemes[0]->n_runs : 0;
            switch (f) {
            case 0: if (np) { str = &m->permits[0]->id; orig = *str; *str = empty; } else done = 0; break;
            case 1: if (np) { str = &m->permits[0]->id; orig = *str; *str = longs; } else done = 0; break;
            case 2: if (np) { str = &m->permits[0]->scheme; orig = *str; *str = bad; } else done = 0; break;
            case 3: if (np > 1) { str = &m->permits[1]->id; orig = *str; *str = m->permits[0]->id; } else done = 0; break;
            case 4: if (ns) m->schemes[0]->n_runs--; else done = 0; break;
            case 5: if (ns) { str = &m->schemes[0]->nationality; orig = *str; *str = empty; } else done = 0; break;
            case 6: if (nw) { str = &m->window[0]->permit_id; orig = *str; *str = empty; } else done = 0; break;
            case 7: if (m->n_window) m->window[m->n_window - 1]->occurred_at++; else done = 0; break;
            case 8: if (m->n_window > 1) m->n_window--; else done = 0; break;
            case 9: m->n_permits = 0; break;
            case 10: m->n_schemes = 0; break;
            case 11: if (m->n_schemes && m->schemes[0]->n_runs >= 4) {
                         m->schemes[0]->runs[0] = 0; /* the run of (0, 2^31 - 2, ...) */
                         m->schemes[0]->runs[1] = INT32_MAX - 1;
                     } else done = 0;
                     break;
            }
            if (done)
                repack_try(fc, m, &refused, &taken);
            if (str)
                *str = orig;
            m->n_window = nw, m->n_permits = np, m->n_schemes = ns;
            if (ns)
                m->schemes[0]->n_runs = nr;
            circmon__v1__migrant_state__free_unpacked(m, NULL);
        }
    }
    fprintf(stderr, "mutated states: %d refused, %d taken (from %d real states)\n", refused, taken, s.n);
    /* both outcomes occurred, often */
    ck_assert_int_gt(refused, 500);
    ck_assert_int_gt(taken, 500);
    for (int i = 0; i < s.n; i++)
        free(s.buf[i]);
    cm_fold_ctx_free(fc);
    cm_names_free(nm);
    cm_config_free(&cfg);
}
END_TEST

/* The two states of the fuzz run, as such. */
START_TEST(test_unpack_refuses_far_run_and_latest_int64_min)
{
    struct cm_config cfg;
    config_demo(&cfg);
    struct cm_names *nm = cm_names_new();
    struct cm_fold_ctx *fc = cm_fold_ctx_new(&cfg, nm);
    static struct sample s;
    sample_states(fc, &s);
    Circmon__V1__MigrantState *m = circmon__v1__migrant_state__unpack(NULL, (size_t)s.len[2], s.buf[2]);
    ck_assert_ptr_nonnull(m);
    ck_assert_uint_gt(m->n_schemes, 0);
    ck_assert_uint_ge(m->schemes[0]->n_runs, 4);
    int32_t r0 = m->schemes[0]->runs[0], r1 = m->schemes[0]->runs[1];
    m->schemes[0]->runs[0] = 0;
    m->schemes[0]->runs[1] = INT32_MAX - 1;
    uint8_t b[4096];
    size_t n = circmon__v1__migrant_state__pack(m, b);
    struct cm_mstate *st = NULL;
    ck_assert_int_eq(cm_mstate_unpack(fc, b, n, &st), -EINVAL);
    m->schemes[0]->runs[0] = r0;
    m->schemes[0]->runs[1] = r1;
    m->latest = INT64_MIN;
    n = circmon__v1__migrant_state__pack(m, b);
    ck_assert_int_eq(cm_mstate_unpack(fc, b, n, &st), -EINVAL);
    circmon__v1__migrant_state__free_unpacked(m, NULL);
    for (int i = 0; i < s.n; i++)
        free(s.buf[i]);
    cm_fold_ctx_free(fc);
    cm_names_free(nm);
    cm_config_free(&cfg);
}
END_TEST

/* A stay-limit run starts and ends on the day of an event folded, never after
 * the latest one, and its scan stops at start + N (N <= 3650) whether it is
 * open or closed. Found by fuzz_state
 * (tests/fuzz/regress/fuzz_state/run-ends-after-latest): a stored closed run
 * of 1992-2917 scanned to 2019 was taken; an entry the day after reopened it,
 * open with a scan past start + 3650, and the state the fold left did not
 * unpack again. Each of the two is refused now; the same state with the run
 * within both bounds is taken, folds, and what it leaves unpacks again. */

/* m0 with its first scheme's runs replaced by runs[0..3] and the snapshot's
 * latest event at snapshot_latest, packed, then unpacked into *st. */
static int unpack_with_runs(struct cm_fold_ctx *fc, const Circmon__V1__MigrantState *m0,
                            int32_t *runs, int64_t snapshot_latest, struct cm_mstate **st)
{
    Circmon__V1__MigrantState m = *m0;
    Circmon__V1__StateScheme sc = *m0->schemes[0], *scp = &sc;
    m.snapshot_latest = snapshot_latest;
    sc.runs = runs;
    m.schemes = &scp;
    uint8_t b[4096];
    ck_assert_uint_le(circmon__v1__migrant_state__get_packed_size(&m), sizeof b);
    size_t n = circmon__v1__migrant_state__pack(&m, b);
    return cm_mstate_unpack(fc, b, n, st);
}

/* m0 with its only run from start to end, its scan as stored, and a
 * snapshot one second before the window's only event (the same day): the
 * snapshot's runs are bounded by its own latest event, see
 * test_unpack_refuses_run_after_snapshot. */
static int unpack_with_run(struct cm_fold_ctx *fc, const Circmon__V1__MigrantState *m0,
                           int32_t start, int32_t end, struct cm_mstate **st)
{
    int32_t runs[4] = {start, end, m0->schemes[0]->runs[2], m0->schemes[0]->runs[3]};
    return unpack_with_runs(fc, m0, runs, m0->latest - 1, st);
}

/* An entry folded into st, then what the fold leaves packs and unpacks
 * again. Frees st. */
static void entry_folds_and_unpacks(struct cm_fold_ctx *fc, struct cm_mstate *st, int want)
{
    struct cm_event ev = {.type = CM_EV_ENTRY, .event_id = "e", .migrant_id = "m",
                          .occurred_at = 1700000000, .permit_id = "", .scheme_id = "",
                          .nationality = ""};
    struct cm_item *items = NULL;
    size_t ni = 0, cap = 0;
    int r = cm_fold_event(fc, st, &ev, &items, &ni, &cap);
    if (want >= 0)
        ck_assert_int_eq(r, want);
    else
        ck_assert_int_ge(r, 0);
    uint8_t *b1 = NULL;
    long l1 = cm_mstate_pack(fc, st, &b1);
    ck_assert_int_gt(l1, 0);
    struct cm_mstate *again = NULL;
    ck_assert_int_eq(cm_mstate_unpack(fc, b1, (size_t)l1, &again), 0);
    free(b1);
    free(items);
    cm_mstate_free(fc, again);
    cm_mstate_free(fc, st);
}

/* The state of tests/fuzz/regress/fuzz_state/NAME (the fuzzer's record: a
 * varint length, cut to what the file holds), after checking that
 * cm_mstate_unpack refuses it; free with free_unpacked. */
static Circmon__V1__MigrantState *refused_regress_state(struct cm_fold_ctx *fc, const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/fuzz/regress/fuzz_state/%s", getenv("CM_TOP"), name);
    FILE *fp = fopen(path, "rb");
    ck_assert_msg(fp != NULL, "%s: %s", path, strerror(errno));
    uint8_t raw[4096];
    size_t got = fread(raw, 1, sizeof raw, fp);
    fclose(fp);
    uint64_t v = 0;
    size_t h = cm_varint_get(raw, got, 10, &v);
    ck_assert_uint_gt(h, 0);
    size_t len = v < got - h ? (size_t)v : got - h;
    struct cm_mstate *st = NULL;
    ck_assert_int_eq(cm_mstate_unpack(fc, raw + h, len, &st), -EINVAL);
    ck_assert_ptr_null(st);
    Circmon__V1__MigrantState *m = circmon__v1__migrant_state__unpack(NULL, len, raw + h);
    ck_assert_ptr_nonnull(m);
    return m;
}

/* m0 with its only run open from day start, scanned to the day before it
 * (nothing checked yet), no breach found; the snapshot as stored. */
static int unpack_with_run_at(struct cm_fold_ctx *fc, const Circmon__V1__MigrantState *m0,
                              int32_t start, struct cm_mstate **st)
{
    int32_t runs[4] = {start, INT32_MAX, start - 1, INT32_MAX};
    return unpack_with_runs(fc, m0, runs, m0->snapshot_latest, st);
}

START_TEST(test_unpack_refuses_run_after_latest)
{
    struct cm_config cfg;
    config_demo(&cfg);
    struct cm_names *nm = cm_names_new();
    struct cm_fold_ctx *fc = cm_fold_ctx_new(&cfg, nm);
    ck_assert(nm && fc);
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/fuzz/regress/fuzz_state/run-ends-after-latest",
             getenv("CM_TOP"));
    FILE *fp = fopen(path, "rb");
    ck_assert_msg(fp != NULL, "%s: %s", path, strerror(errno));
    struct cm_frame_reader r;
    const uint8_t *data;
    size_t len;
    cm_frame_reader_init(&r, fp);
    ck_assert_int_eq(cm_frame_read(&r, &data, &len), 1);
    struct cm_mstate *st = NULL;
    ck_assert_int_eq(cm_mstate_unpack(fc, data, len, &st), -EINVAL);
    ck_assert_ptr_null(st);
    Circmon__V1__MigrantState *m = circmon__v1__migrant_state__unpack(NULL, len, data);
    ck_assert_ptr_nonnull(m);
    cm_frame_reader_free(&r);
    fclose(fp);
    ck_assert_uint_eq(m->n_schemes, 1);
    ck_assert_uint_eq(m->schemes[0]->n_runs, 4);
    ck_assert_uint_eq(m->n_window, 1);
    ck_assert_int_eq((m->latest - 1) / 86400, m->latest / 86400);
    int32_t last = (int32_t)(m->latest / 86400), chk = m->schemes[0]->runs[2];
    ck_assert_int_gt(m->schemes[0]->runs[1], last);
    ck_assert_int_gt(chk, m->schemes[0]->runs[0] + 3650);
    /* the scan within start + 3650, the end after the latest day: refused */
    ck_assert_int_eq(unpack_with_run(fc, m, chk - 100, last + 1, &st), -EINVAL);
    /* the end on the latest day, the scan past start + 3650: refused */
    ck_assert_int_eq(unpack_with_run(fc, m, chk - 3651, last, &st), -EINVAL);
    ck_assert_ptr_null(st);
    /* both within: taken; an entry later, and what the fold leaves unpacks */
    ck_assert_int_eq(unpack_with_run(fc, m, chk - 3650, last, &st), 0);
    circmon__v1__migrant_state__free_unpacked(m, NULL);
    entry_folds_and_unpacks(fc, st, CM_FOLD_ACCEPTED);
    cm_fold_ctx_free(fc);
    cm_names_free(nm);
    cm_config_free(&cfg);
}
END_TEST

/* The snapshot holds the fold of the events up to snapshot_latest, so its
 * runs start and end on or before that day; the window's events come after
 * it and may still be folded in an order that changes. Found by fuzz_state
 * (tests/fuzz/regress/fuzz_state/run-after-snapshot): a snapshot with no
 * event (snapshot_latest 0) held an open run from day 19497, the window an
 * exit on day 13477 and an entry on day 19701; the bound was the window's
 * latest day, so it was taken. One entry more moved the exit into the
 * snapshot, which closed the run on day 13477, before its start, and the
 * state the fold left did not unpack. Refused now; the same state with its
 * run on the snapshot's day is taken, folds, and what it leaves unpacks. */
START_TEST(test_unpack_refuses_run_after_snapshot)
{
    struct cm_config cfg;
    config_demo(&cfg);
    struct cm_names *nm = cm_names_new();
    struct cm_fold_ctx *fc = cm_fold_ctx_new(&cfg, nm);
    ck_assert(nm && fc);
    struct cm_mstate *st = NULL;
    Circmon__V1__MigrantState *m = refused_regress_state(fc, "run-after-snapshot");
    /* what the finding needs: a run after the snapshot's day, before the
     * window's latest, and an exit in the window before the run */
    ck_assert_uint_eq(m->n_schemes, 1);
    ck_assert_uint_eq(m->schemes[0]->n_runs, 4);
    ck_assert_uint_eq(m->n_window, 2);
    /* no snapshot_latest, as a state written before it was kept: the
     * snapshot's events are before the window's first */
    ck_assert_int_eq(m->snapshot_latest, 0);
    int64_t snap_day = (m->window[0]->occurred_at - 1) / 86400, run0 = m->schemes[0]->runs[0];
    ck_assert_int_gt(run0, snap_day);
    ck_assert_int_le(run0, m->latest / 86400);
    ck_assert_int_eq(m->window[0]->type, CM_EV_EXIT);
    ck_assert_int_lt(m->window[0]->occurred_at / 86400, run0);
    /* the run on the snapshot's day (scan and breach moved with it): taken */
    ck_assert_int_eq(unpack_with_run_at(fc, m, (int32_t)snap_day + 1, &st), -EINVAL);
    ck_assert_ptr_null(st);
    ck_assert_int_eq(unpack_with_run_at(fc, m, (int32_t)snap_day, &st), 0);
    entry_folds_and_unpacks(fc, st, -1);
    st = NULL;
    /* with a snapshot_latest, the bound is its day: a day before the
     * window's first event, the run on the window's first day is refused */
    int64_t before = m->window[0]->occurred_at - 86400;
    int32_t runs_at[4] = {(int32_t)(before / 86400) + 1, INT32_MAX, (int32_t)(before / 86400), INT32_MAX};
    ck_assert_int_le(runs_at[0], m->window[0]->occurred_at / 86400);
    ck_assert_int_eq(unpack_with_runs(fc, m, runs_at, before, &st), -EINVAL);
    ck_assert_ptr_null(st);
    runs_at[0] = (int32_t)(before / 86400);
    runs_at[2] = runs_at[0] - 1;
    ck_assert_int_eq(unpack_with_runs(fc, m, runs_at, before, &st), 0);
    circmon__v1__migrant_state__free_unpacked(m, NULL);
    entry_folds_and_unpacks(fc, st, -1);
    cm_fold_ctx_free(fc);
    cm_names_free(nm);
    cm_config_free(&cfg);
}
END_TEST

/* The latest event never leaves the window, so a state with a latest has a
 * window. Found by fuzz_state
 * (tests/fuzz/regress/fuzz_state/empty-window-under-latest): a state with
 * no event in its window and none in its snapshot, but a latest of
 * 2023-11-29T22:58Z, took an Entry of 2023-11-14 (within the reorder
 * window) as out of order; the state the fold left had that entry as its
 * window's last event under the same latest, and did not unpack. Refused
 * now; the same state without a latest is taken, and what the fold of the
 * entry leaves unpacks. */
START_TEST(test_unpack_refuses_empty_window_under_latest)
{
    struct cm_config cfg;
    config_demo(&cfg);
    struct cm_names *nm = cm_names_new();
    struct cm_fold_ctx *fc = cm_fold_ctx_new(&cfg, nm);
    ck_assert(nm && fc);
    struct cm_mstate *st = NULL;
    Circmon__V1__MigrantState *m = refused_regress_state(fc, "empty-window-under-latest");
    ck_assert_uint_eq(m->n_window, 0);
    ck_assert_int_gt(m->latest, 1700000000);
    ck_assert_int_lt(m->latest - 1700000000, (int64_t)cfg.reorder_window_days * 86400);
    /* the same state with a latest one second on: refused too */
    Circmon__V1__MigrantState m2 = *m;
    uint8_t b[4096];
    m2.latest = m->latest + 1;
    ck_assert_uint_le(circmon__v1__migrant_state__get_packed_size(&m2), sizeof b);
    size_t n = circmon__v1__migrant_state__pack(&m2, b);
    ck_assert_int_eq(cm_mstate_unpack(fc, b, n, &st), -EINVAL);
    ck_assert_ptr_null(st);
    /* without a latest (and so without a snapshot's): taken, and the entry
     * folds to a state that unpacks */
    m2.latest = 0;
    m2.snapshot_latest = 0;
    n = circmon__v1__migrant_state__pack(&m2, b);
    ck_assert_int_eq(cm_mstate_unpack(fc, b, n, &st), 0);
    circmon__v1__migrant_state__free_unpacked(m, NULL);
    entry_folds_and_unpacks(fc, st, CM_FOLD_ACCEPTED);
    cm_fold_ctx_free(fc);
    cm_names_free(nm);
    cm_config_free(&cfg);
}
END_TEST

/* ---- the memory of the states (pool.h) ---- */

/* Whether block b of block number i holds its pattern in its first n bytes. */
static int holds(const unsigned char *b, size_t n, int i)
{
    for (size_t k = 0; k < n; k++)
        if (b[k] != (unsigned char)(i + k))
            return 0;
    return 1;
}

START_TEST(test_pool_blocks_keep_their_bytes)
{
    /* many live blocks of every size, grown and shrunk across the size
     * classes and past the largest: none overlaps another, none loses its
     * bytes, every one is aligned for any object */
    enum { N = 3000 };
    struct cm_pool *pl = cm_pool_new();
    ck_assert_ptr_nonnull(pl);
    static unsigned char *blk[N];
    static size_t len[N];
    uint64_t r = 99;
    for (int round = 0; round < 6; round++)
        for (int i = 0; i < N; i++) {
            r = r * 6364136223846793005ULL + 1442695040888963407ULL;
            size_t n = 1 + (size_t)(r >> 33) % (i % 50 ? 700 : 9000);
            if (!blk[i])
                blk[i] = cm_pool_alloc(pl, n);
            else if (round == 5 && i % 3 == 0) {
                cm_pool_release(pl, blk[i], len[i]);
                blk[i] = NULL;
                continue;
            } else {
                ck_assert(holds(blk[i], len[i], i));
                blk[i] = cm_pool_realloc(pl, blk[i], len[i], n);
                ck_assert_ptr_nonnull(blk[i]);
                ck_assert(holds(blk[i], len[i] < n ? len[i] : n, i));
            }
            ck_assert_ptr_nonnull(blk[i]);
            ck_assert_uint_eq((uintptr_t)blk[i] % 16, 0);
            len[i] = n;
            for (size_t k = 0; k < n; k++)
                blk[i][k] = (unsigned char)(i + k);
        }
    for (int i = 0; i < N; i++) {
        ck_assert(!blk[i] || holds(blk[i], len[i], i));
        cm_pool_release(pl, blk[i], len[i]);
        blk[i] = NULL;
    }
    cm_pool_free(pl);
}
END_TEST

/* as pool.c decides: with AddressSanitizer, every block is malloc's own */
#if defined(__SANITIZE_ADDRESS__)
#define POOL_IS_MALLOC 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define POOL_IS_MALLOC 1
#endif
#endif

START_TEST(test_pool_reuses_what_is_released)
{
    /* a released block serves the next block of its size: a replay's memory
     * is bounded by what is live, not by what was ever allocated */
    struct cm_pool *pl = cm_pool_new();
    ck_assert_ptr_nonnull(pl);
    size_t before = 0;
    for (int round = 0; round < 50; round++) {
        void *b[1000];
        for (int i = 0; i < 1000; i++)
            ck_assert_ptr_nonnull(b[i] = cm_pool_alloc(pl, 200 + (size_t)i % 300));
        for (int i = 0; i < 1000; i++)
            cm_pool_release(pl, b[i], 200 + (size_t)i % 300);
        if (!round)
            before = cm_pool_footprint(pl);
    }
#ifndef POOL_IS_MALLOC
    ck_assert_uint_gt(before, 0);
#endif
    ck_assert_uint_eq(cm_pool_footprint(pl), before);
    cm_pool_free(pl);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("state");
    TCase *tc = tcase_create("pack");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_pack_every_event_equals_memory);
    tcase_add_test(tc, test_unpack_garbage_is_refused);
    tcase_add_test(tc, test_pack_unpack_pack_same_bytes);
    tcase_add_test(tc, test_unpack_mutated_valid_states);
    tcase_add_test(tc, test_unpack_refuses_far_run_and_latest_int64_min);
    tcase_add_test(tc, test_unpack_refuses_run_after_latest);
    tcase_add_test(tc, test_unpack_refuses_run_after_snapshot);
    tcase_add_test(tc, test_unpack_refuses_empty_window_under_latest);
    suite_add_tcase(s, tc);
    tc = tcase_create("pool");
    tcase_add_test(tc, test_pool_blocks_keep_their_bytes);
    tcase_add_test(tc, test_pool_reuses_what_is_released);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
