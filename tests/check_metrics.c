/* check_metrics.c - the registry of counters and histograms (lib/metrics.c). */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "circmon/metrics.h"

/* Every value lies in its bucket, buckets are ordered and contiguous, and
 * a bucket's width is at most 1/8 of its lower bound. */
START_TEST(test_buckets)
{
    uint64_t vals[] = {0, 1, 15, 16, 17, 18, 31, 32, 1000, 1023, 1024, 999999, UINT64_MAX / 3,
                       UINT64_MAX - 1, UINT64_MAX};
    for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
        size_t b = cm_hist_bucket(vals[i]);
        ck_assert_uint_lt(b, CM_HIST_BUCKETS);
        ck_assert_uint_le(vals[i], cm_hist_bucket_upper(b));
        if (b > 0)
            ck_assert_uint_gt(vals[i], cm_hist_bucket_upper(b - 1));
    }
    for (size_t b = 1; b < CM_HIST_BUCKETS; b++) {
        uint64_t lo = cm_hist_bucket_upper(b - 1) + 1, hi = cm_hist_bucket_upper(b);
        ck_assert_uint_eq(cm_hist_bucket(lo), b);
        ck_assert_uint_eq(cm_hist_bucket(hi), b);
        if (lo >= 16)
            ck_assert_uint_le(hi - lo, lo / 8);
    }
    ck_assert_uint_eq(cm_hist_bucket_upper(CM_HIST_BUCKETS - 1), UINT64_MAX);
}
END_TEST

START_TEST(test_quantiles)
{
    struct cm_hist h;
    cm_hist_init(&h, NULL, NULL);
    ck_assert_uint_eq(cm_hist_quantile(&h, 0.5), 0);
    for (uint64_t v = 1; v <= 1000; v++)
        cm_hist_observe(&h, v);
    ck_assert_uint_eq(h.count, 1000);
    ck_assert_uint_eq(h.sum, 500500);
    ck_assert_uint_eq(h.max, 1000);
    /* the q-quantile of 1..1000 is 1000q, reported up to 1/8 above it */
    double qs[] = {0.01, 0.5, 0.9, 0.99};
    for (size_t i = 0; i < 4; i++) {
        uint64_t want = (uint64_t)(qs[i] * 1000), got = cm_hist_quantile(&h, qs[i]);
        ck_assert_msg(got >= want && got <= want + want / 8 + 1, "q %.2f: %lu, want %lu", qs[i],
                      (unsigned long)got, (unsigned long)want);
    }
    ck_assert_uint_eq(cm_hist_quantile(&h, 1), 1000); /* never above the maximum */
    cm_hist_observe(NULL, 5);                         /* ignored */
    cm_hist_reset(&h);
    ck_assert_uint_eq(h.count, 0);
    ck_assert_uint_eq(cm_hist_quantile(&h, 0.99), 0);
}
END_TEST

static int count_each(const struct cm_counter *c, const struct cm_hist *h, void *ud)
{
    ck_assert((c != NULL) != (h != NULL));
    ++*(int *)ud;
    return 0;
}

START_TEST(test_registry)
{
    struct cm_metrics *m = cm_metrics_new();
    ck_assert_ptr_nonnull(m);
    struct cm_counter *c = cm_metrics_counter(m, "c_total", "a counter");
    ck_assert_ptr_nonnull(c);
    ck_assert_ptr_null(cm_metrics_counter(m, "c_total", "again")); /* names are unique */
    ck_assert_ptr_null(cm_metrics_hist(m, "c_total", "again"));
    cm_counter_add(c, 3);
    cm_counter_add(c, 4);
    cm_counter_add(NULL, 4);
    ck_assert_uint_eq(cm_counter_get(c), 7);
    ck_assert_uint_eq(cm_counter_get(NULL), 0);
    ck_assert_ptr_nonnull(cm_metrics_hist(m, "h_us", "a histogram"));
    static char names[CM_METRICS_MAX][16];
    int made = 2;
    for (int i = 0; i < CM_METRICS_MAX; i++) {
        snprintf(names[i], sizeof(names[i]), "m%d", i);
        if (cm_metrics_counter(m, names[i], ""))
            made++;
    }
    ck_assert_int_eq(made, CM_METRICS_MAX); /* bounded */
    int n = 0;
    ck_assert_int_eq(cm_metrics_each(m, count_each, &n), 0);
    ck_assert_int_eq(n, CM_METRICS_MAX);
    ck_assert_ptr_null(cm_metrics_free(m));
    ck_assert_ptr_null(cm_metrics_free(NULL));
    ck_assert_ptr_null(cm_metrics_counter(NULL, "x", ""));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("metrics");
    tcase_add_test(tc, test_buckets);
    tcase_add_test(tc, test_quantiles);
    tcase_add_test(tc, test_registry);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
