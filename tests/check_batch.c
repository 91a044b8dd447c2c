/* check_batch.c - lib/batch.c alone: verdicts, unreadable states, slices, and the daemon's
 * batch-by-batch fold through packed states giving the in-memory figures. */
#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "circmon/agg.h"
#include "circmon/batch.h"
#include "circmon/config.h"
#include "circmon/engine.h"
#include "circmon/event.h"
#include "circmon/fold.h"
#include "circmon/indicators.h"
#include "circmon/names.h"
#include "cm_test.h"

/* A message as the daemon gets it: a key and a payload. */
struct kmsg {
    char key[TS];
    size_t klen;
    struct msg m;
};

static struct kmsg kmsg_of(const struct tev *e)
{
    struct kmsg k;
    memset(&k, 0, sizeof(k));
    snprintf(k.key, sizeof(k.key), "%s", e->mid);
    k.klen = strlen(k.key);
    k.m = tev_pack(e);
    return k;
}

/* The store of the test: packed states by migrant id. */
struct kv {
    char *id;
    uint8_t *v;
    size_t len;
};

struct store {
    struct kv *e;
    size_t n, cap;
};

static struct kv *store_find(struct store *s, const char *id)
{
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->e[i].id, id))
            return &s->e[i];
    return NULL;
}

static int n_puts; /* states written back */

static int store_put(const char *id, size_t id_len, const uint8_t *st, size_t len, void *ud)
{
    struct store *s = ud;
    n_puts++;
    ck_assert_uint_eq(strlen(id), id_len);
    struct kv *kv = store_find(s, id);
    if (!kv) {
        if (s->n == s->cap) {
            s->cap = s->cap ? s->cap * 2 : 64;
            s->e = realloc(s->e, s->cap * sizeof(*s->e));
            ck_assert_ptr_nonnull(s->e);
        }
        kv = &s->e[s->n++];
        kv->id = strdup(id);
        kv->v = NULL;
    }
    free(kv->v);
    kv->v = malloc(len ? len : 1);
    ck_assert_ptr_nonnull(kv->v);
    memcpy(kv->v, st, len);
    kv->len = len;
    return 0;
}

static void store_free(struct store *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->e[i].id);
        free(s->e[i].v);
    }
    free(s->e);
}

static int add_into(const struct cm_agg_key *k, int64_t v, void *ud)
{
    ck_assert_int_eq(cm_agg_add(ud, k, v), 0);
    return 0;
}

struct bfx {
    struct cm_config cfg;
    struct cm_names *nm;
    struct cm_fold_ctx *fc;
    struct cm_decoder *dec;
};

static void bfx_init(struct bfx *f)
{
    ck_assert_int_eq(cm_config_defaults(&f->cfg), 0);
    f->nm = cm_names_new();
    f->fc = cm_fold_ctx_new(&f->cfg, f->nm);
    f->dec = cm_decoder_new();
    ck_assert(f->nm && f->fc && f->dec);
}

static void bfx_done(struct bfx *f)
{
    cm_fold_ctx_free(f->fc);
    cm_names_free(f->nm);
    cm_decoder_free(f->dec);
    cm_config_free(&f->cfg);
}

/* Runs msgs[0..n-1] through one batch over st (folding in slices of
 * slice messages, 0 = all at once), writes back the changed states, adds
 * the delta into total. Returns the batch (free it). */
static struct cm_batch *run_batch(struct bfx *f, struct store *st, const struct kmsg *msgs,
                                  size_t n, size_t slice, struct cm_agg *total)
{
    struct cm_batch *b = cm_batch_new(f->fc, f->dec, n);
    ck_assert_ptr_nonnull(b);
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(cm_batch_add(b, msgs[i].key, msgs[i].klen, msgs[i].m.buf, msgs[i].m.len),
                         0);
    for (size_t i = 0; i < cm_batch_migrants(b); i++) {
        size_t len;
        const char *id = cm_batch_migrant(b, i, &len);
        ck_assert_uint_eq(strlen(id), len);
        struct kv *kv = store_find(st, id);
        int r = cm_batch_set_state(b, i, kv ? kv->v : NULL, kv ? kv->len : 0);
        ck_assert(r == 0 || r == -EINVAL);
    }
    int r;
    while ((r = cm_batch_fold(b, slice)) == 1)
        ck_assert_uint_ne(slice, 0);
    ck_assert_int_eq(r, 0);
    ck_assert_int_eq(cm_batch_each_changed(b, store_put, st), 0);
    ck_assert_int_eq(cm_agg_foreach(cm_batch_agg(b), add_into, total), 0);
    return b;
}

static const int64_t GRANT_T = 1609502400; /* 2021-01-01T12:00:00Z */

START_TEST(test_verdicts)
{
    struct bfx f;
    bfx_init(&f);
    struct store st = {0};
    struct tev evs[] = {
        ev_grant("g1", "m1", GRANT_T, "P1", "S1", "NA", GRANT_T, GRANT_T + 200 * DAY),
        ev_entry("e1", "m1", GRANT_T + 1 * DAY),
        ev_entry("e1", "m1", GRANT_T + 1 * DAY),          /* duplicate */
        ev_exit("x1", "m1", GRANT_T + 100 * DAY),
        ev_entry("late", "m1", GRANT_T + 2 * DAY),        /* 98 days behind: too late */
        ev_entry("e2", "m2", GRANT_T),
    };
    struct kmsg k[8];
    for (int i = 0; i < 6; i++)
        k[i] = kmsg_of(&evs[i]);
    k[6] = kmsg_of(&evs[5]);
    snprintf(k[6].key, sizeof(k[6].key), "not-m2"); /* key differs from migrant_id */
    k[6].klen = strlen(k[6].key);
    memset(&k[7], 0, sizeof(k[7]));
    snprintf(k[7].key, sizeof(k[7].key), "m3");
    k[7].klen = 2;
    memcpy(k[7].m.buf, "\xff\xff\xff", 3); /* does not decode */
    k[7].m.len = 3;
    struct cm_agg *total = cm_agg_new();
    struct cm_batch *b = run_batch(&f, &st, k, 8, 0, total);
    ck_assert_uint_eq(cm_batch_size(b), 8);
    ck_assert_uint_eq(cm_batch_migrants(b), 2); /* m1, m2: invalid messages have none */
    const char *want[] = {NULL, NULL, NULL, NULL, "too_late", NULL, "key_mismatch", "decode"};
    for (size_t i = 0; i < 8; i++) {
        const char *v = cm_batch_verdict(b, i);
        if (want[i])
            ck_assert_msg(v && !strcmp(v, want[i]), "message %zu: verdict %s, want %s", i,
                          v ? v : "(accepted)", want[i]);
        else
            ck_assert_msg(!v, "message %zu: verdict %s, want accepted", i, v);
    }
    ck_assert_ptr_null(cm_batch_verdict(b, 8));
    ck_assert_uint_eq(cm_batch_folded(b), 5); /* accepted or duplicate */
    ck_assert_uint_eq(cm_batch_rejected(b), 3);
    ck_assert_uint_eq(cm_batch_unreadable(b), 0);
    ck_assert_uint_eq(st.n, 2);
    /* the invalid messages are counted in the data quality, too_late by the fold */
    struct cm_agg_key ki = {.kind = CM_AK_DQ, .ctr = CM_DQ_INVALID};
    struct cm_agg_key kl = {.kind = CM_AK_DQ, .ctr = CM_DQ_TOO_LATE};
    struct cm_agg_key kd = {.kind = CM_AK_DQ, .ctr = CM_DQ_DUPLICATES};
    ck_assert_int_eq(cm_agg_get(total, &ki), 2);
    ck_assert_int_eq(cm_agg_get(total, &kl), 1);
    ck_assert_int_eq(cm_agg_get(total, &kd), 1);
    /* a batch of one duplicate changes no state: nothing is written back */
    int puts = n_puts;
    struct cm_batch *b2 = run_batch(&f, &st, &k[2], 1, 0, total);
    ck_assert_ptr_null(cm_batch_verdict(b2, 0));
    ck_assert_uint_eq(cm_batch_folded(b2), 1);
    ck_assert_int_eq(n_puts, puts);
    ck_assert_int_eq(cm_agg_get(total, &kd), 2);
    cm_batch_free(b2);
    /* past cap */
    ck_assert_int_eq(cm_batch_add(b, "m1", 2, k[0].m.buf, k[0].m.len), -ENOSPC);
    cm_batch_free(b);
    ck_assert_ptr_null(cm_batch_free(NULL));
    ck_assert_ptr_null(cm_batch_new(f.fc, f.dec, 0));
    cm_agg_free(total);
    store_free(&st);
    bfx_done(&f);
}
END_TEST

/* A stored state that does not unpack: its migrant's events get the
 * verdict state_unreadable and are not folded, its state is not written,
 * the other migrants of the batch are folded as usual. */
START_TEST(test_state_unreadable)
{
    struct bfx f;
    bfx_init(&f);
    struct store st = {0};
    static const uint8_t garbage[] = "\xff\xfe not a state \x01";
    ck_assert_int_eq(store_put("bad", 3, garbage, sizeof(garbage) - 1, &st), 0);
    struct tev evs[] = {
        ev_grant(NULL, "bad", GRANT_T, "P1", "S1", "NA", GRANT_T, GRANT_T + 200 * DAY),
        ev_grant(NULL, "good", GRANT_T, "P1", "S1", "NA", GRANT_T, GRANT_T + 200 * DAY),
        ev_entry(NULL, "bad", GRANT_T + DAY),
        ev_entry(NULL, "good", GRANT_T + DAY),
    };
    struct kmsg k[4];
    for (int i = 0; i < 4; i++)
        k[i] = kmsg_of(&evs[i]);
    struct cm_agg *total = cm_agg_new();
    struct cm_batch *b = run_batch(&f, &st, k, 4, 0, total);
    ck_assert_uint_eq(cm_batch_unreadable(b), 1);
    ck_assert_str_eq(cm_batch_verdict(b, 0), CM_BATCH_REASON_STATE_UNREADABLE);
    ck_assert_str_eq(cm_batch_verdict(b, 2), CM_BATCH_REASON_STATE_UNREADABLE);
    ck_assert_ptr_null(cm_batch_verdict(b, 1));
    ck_assert_ptr_null(cm_batch_verdict(b, 3));
    ck_assert_uint_eq(cm_batch_folded(b), 2);
    struct kv *kv = store_find(&st, "bad");
    ck_assert(kv && kv->len == sizeof(garbage) - 1 && !memcmp(kv->v, garbage, kv->len));
    ck_assert_ptr_nonnull(store_find(&st, "good"));
    /* what the aggregate holds is the good migrant's alone */
    struct fx *e = fx_new(30, "");
    FEED(e, evs[1]);
    FEED(e, evs[3]);
    json_t *x = cm_indicators_json(total, f.nm, &f.cfg, GRANT_T + 300 * DAY);
    json_t *y = doc_at(e, GRANT_T + 300 * DAY);
    ck_assert(json_equal(x, y));
    json_decref(x);
    json_decref(y);
    fx_free(e);
    cm_batch_free(b);
    cm_agg_free(total);
    store_free(&st);
    bfx_done(&f);
}
END_TEST

/* A random stream of many migrants' events (out of order, duplicates, bad
 * messages), cut into batches of every size and folded in slices of every
 * size through packed states, gives the figures of the in-memory engine
 * fed message by message; an unchanged state is never written again. */
START_TEST(test_batches_equal_engine)
{
    enum { N = 3000 };
    uint64_t seed = 0x5eed + (uint64_t)_i;
    struct kmsg *k = calloc(N, sizeof(*k));
    ck_assert_ptr_nonnull(k);
    struct fx *e = fx_new(30, "");
    int n_bad = 0, n_late = 0;
    for (int i = 0; i < N; i++) {
        char mid[32], eid[32], pid[32];
        int m = (int)rng_range(&seed, 0, 59);
        snprintf(mid, sizeof(mid), "mig-%d", m);
        snprintf(eid, sizeof(eid), "ev-%d", (int)rng_range(&seed, 0, N - 1));
        snprintf(pid, sizeof(pid), "P%d", m % 3);
        int64_t t = GRANT_T + rng_range(&seed, 0, 400) * DAY + (i % 7) * 3600;
        struct tev ev;
        switch (rng_range(&seed, 0, 5)) {
        case 0:
            ev = ev_grant(eid, mid, t, pid, m % 2 ? "S1" : "S2", m % 4 ? "NA" : "NB", t,
                          t + rng_range(&seed, 10, 200) * DAY);
            break;
        case 1:
        case 2:
            ev = ev_entry(eid, mid, t);
            break;
        case 3:
        case 4:
            ev = ev_exit(eid, mid, t);
            break;
        default:
            ev = ev_grant(eid, mid, t, "", "S1", "NA", t, t + DAY); /* invalid: no permit id */
            break;
        }
        k[i] = kmsg_of(&ev);
        if (rng_range(&seed, 0, 99) == 0) {
            k[i].m.len = 2; /* cut: does not decode (or lacks fields) */
            n_bad++;
        }
        int r = cm_engine_feed(e->en, k[i].m.buf, k[i].m.len);
        ck_assert_int_ge(r, 0);
    }
    (void)n_bad;
    size_t sizes[] = {1, 7, 64, 500, N};
    size_t slices[] = {0, 1, 5};
    for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
        struct bfx f;
        bfx_init(&f);
        struct store st = {0};
        struct cm_agg *total = cm_agg_new();
        size_t rejected = 0;
        n_late = 0;
        for (size_t off = 0, bi = 0; off < N; bi++) {
            size_t n = N - off < sizes[si] ? N - off : sizes[si];
            struct cm_batch *b = run_batch(&f, &st, k + off, n, slices[bi % 3], total);
            rejected += cm_batch_rejected(b);
            for (size_t i = 0; i < n; i++)
                n_late += cm_batch_verdict(b, i) && !strcmp(cm_batch_verdict(b, i), "too_late");
            cm_batch_free(b);
            off += n;
        }
        json_t *x = cm_indicators_json(total, f.nm, &f.cfg, GRANT_T + 800 * DAY);
        json_t *y = doc_at(e, GRANT_T + 800 * DAY);
        ck_assert_msg(json_equal(x, y), "batches of %zu differ from the engine", sizes[si]);
        /* the verdicts are the engine's invalid and too-late messages */
        ck_assert_int_eq((long)rejected, dq(y, "invalid") + dq(y, "too_late"));
        ck_assert_int_eq(n_late, dq(y, "too_late"));
        json_decref(x);
        json_decref(y);

        cm_agg_free(total);
        store_free(&st);
        bfx_done(&f);
    }
    /* the stream holds the cases it is for */
    json_t *y = doc_at(e, GRANT_T + 800 * DAY);
    ck_assert_int_gt(dq(y, "invalid"), 0);
    ck_assert_int_gt(dq(y, "too_late"), 0);
    ck_assert_int_gt(dq(y, "duplicates"), 0);
    json_decref(y);
    fx_free(e);
    free(k);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("batch");
    TCase *tc = tcase_create("batch");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_verdicts);
    tcase_add_test(tc, test_state_unreadable);
    tcase_add_loop_test(tc, test_batches_equal_engine, 0, 2);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
