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
    snprintf(gen, sizeof(gen), "%s/bin/circmon-gen", top);
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
    int refused = 0;
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
        } else {
            refused++;
        }
    }
    ck_assert_int_gt(refused, 1000);
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
