/* check_bounds.c - the bounds of one migrant, rule by rule: max_window_events
 * (INDICATORS.md section 2, step 3), the limits of README "Limits" (permits,
 * stay-limit runs, names: dead letter and over_limit), far instants (a stay
 * to the year 9005 costs what a short one costs; the as-of range).
 *
 * Conventions as in check_rules.c: b is a base day number, T(b + k) is noon
 * UTC of day b + k. Schemes: A grace 0, B grace 0, G grace 5, L grace 0 stay
 * limit 3/10, S grace 0 stay limit 90/180. */
#include "cm_test.h"

#include <errno.h>

#include "circmon/fold.h"
#include "circmon/indicators.h"

#define SCHEMES "A:0 B:0 G:5 L:0:3/10 S:0:90/180"
#define B0 DN(2024, 3, 1) /* 2024-03-01, day 19783 */

static struct fx *F;
static void setup(void) { F = fx_new(30, SCHEMES); }
static void teardown(void) { fx_free(F); F = NULL; }

#define GRANT(mid, g, pid, sc, nat, vf, e) \
    FEED(F, ev_grant(NULL, (mid), T(g), (pid), (sc), (nat), T(vf), T(e)))
#define ENTRY(mid, dd) FEED(F, ev_entry(NULL, (mid), T(dd)))
#define EXIT(mid, dd) FEED(F, ev_exit(NULL, (mid), T(dd)))

/* Step 3: too late also when at least max_window_events accepted events have
 * a greater occurred_at. N = 3: exits at +100, +200, +300 (seconds after
 * noon of b), in order. */
START_TEST(test_max_window_events_n_minus_1_and_n)
{
    F->cfg.max_window_events = 3;
    int64_t t = T(B0);
    FEED(F, ev_exit(NULL, "m1", t + 100));
    FEED(F, ev_exit(NULL, "m1", t + 200));
    FEED(F, ev_exit(NULL, "m1", t + 300));
    /* +150: 2 = N - 1 later events (+200, +300): accepted, out of order */
    FEED(F, ev_exit(NULL, "m1", t + 150));
    /* +120: 3 = N later (+150, +200, +300): too late */
    FEED(F, ev_exit(NULL, "m1", t + 120));
    /* +100, equal to the first: later are +150, +200, +300 = N: too late */
    FEED(F, ev_exit(NULL, "m1", t + 100));
    /* +50, far inside the 30-day window: too late (4 later) */
    FEED(F, ev_exit(NULL, "m1", t + 50));
    /* another migrant is not behind m1's events */
    FEED(F, ev_exit(NULL, "m2", t + 50));
    json_t *d = doc_at(F, t + DAY);
    /* accepted: m1 at +100, +200, +300, +150 and m2: 5 exits without entry */
    CHECK_DQ(d, "too_late=3 out_of_order=1 exits_without_entry=5");
    json_decref(d);
}
END_TEST

/* Ties: an equal occurred_at is not greater. N = 2. */
START_TEST(test_max_window_events_ties_do_not_count)
{
    F->cfg.max_window_events = 2;
    int64_t t = T(B0);
    FEED(F, ev_exit(NULL, "m1", t + 100));
    FEED(F, ev_exit(NULL, "m1", t + 200));
    FEED(F, ev_exit(NULL, "m1", t + 200));
    /* +200: 0 greater (two equal): accepted, not out of order (= L) */
    FEED(F, ev_exit(NULL, "m1", t + 200));
    /* +100: three greater: too late although one equal event precedes it */
    FEED(F, ev_exit(NULL, "m1", t + 100));
    FEED(F, ev_exit(NULL, "m1", t + 300));
    /* +200: 1 = N - 1 greater (+300), three equal: accepted, out of order */
    FEED(F, ev_exit(NULL, "m1", t + 200));
    /* +199: +200 x 4 and +300 greater: too late */
    FEED(F, ev_exit(NULL, "m1", t + 199));
    json_t *d = doc_at(F, t + DAY);
    CHECK_DQ(d, "too_late=2 out_of_order=1 exits_without_entry=6");
    json_decref(d);
}
END_TEST

/* Events behind max_window_events later ones can no longer move: a migrant
 * with 5,000 events in one day holds a window of fewer than 2N events, so
 * its state stays small (each event in the window is 64 bytes). */
START_TEST(test_max_window_events_bounds_state)
{
    F->cfg.max_window_events = 4;
    int64_t t = T(B0);
    size_t b0 = 0;
    for (int i = 0; i < 5000; i++) {
        FEED(F, ev_exit(NULL, "m1", t + i));
        if (i == 15)
            b0 = cm_engine_state_bytes(F->en);
    }
    /* 5,000 events in the window would be 320,000 bytes */
    ck_assert_uint_le(cm_engine_state_bytes(F->en), b0 + 1024);
    /* one behind 4 later ones: too late, and figures as if in order */
    FEED(F, ev_exit(NULL, "m1", t + 4995));
    FEED(F, ev_exit(NULL, "m1", t + 4996));
    json_t *d = doc_at(F, t + DAY);
    CHECK_DQ(d, "too_late=1 out_of_order=1 exits_without_entry=5001");
    json_decref(d);
}
END_TEST

START_TEST(test_max_window_events_default_256)
{
    /* the default: 256 later events make one too late, 255 do not */
    int64_t t = T(B0);
    for (int i = 1; i <= 256; i++)
        FEED(F, ev_exit(NULL, "m1", t + 1000 + i));
    FEED(F, ev_exit(NULL, "m1", t + 1001)); /* 255 later (+1002..+1256): accepted */
    FEED(F, ev_exit(NULL, "m1", t + 1000)); /* 257 later: too late */
    json_t *d = doc_at(F, t + DAY);
    CHECK_DQ(d, "too_late=1 out_of_order=1 exits_without_entry=257");
    json_decref(d);
}
END_TEST

/* ================= limits (README "Limits") ================= */

static int fold_tev(struct fx *f, struct tev e)
{
    struct cm_event c;
    tev_to_cm(&e, &c);
    return cm_engine_fold(f->en, &c);
}

START_TEST(test_limit_permits_per_migrant)
{
    /* 256 permits (finished ones included) are kept; the 257th grant is set
     * aside: dead letter limit_permits, counted over_limit, not folded */
    char pid[16];
    for (int i = 0; i < CM_FOLD_PERMITS_MAX; i++) {
        snprintf(pid, sizeof pid, "p%d", i);
        ck_assert_int_eq(fold_tev(F, ev_grant(NULL, "m1", T(B0 + i), pid, "A", "UKR", T(B0 + i),
                                              T(B0 + i))),
                         CM_FOLD_ACCEPTED);
    }
    ck_assert_int_eq(fold_tev(F, ev_grant(NULL, "m1", T(B0 + 300), "p-last", "A", "UKR", T(B0 + 300),
                                          T(B0 + 300))),
                     CM_FOLD_LIMIT_PERMITS);
    ck_assert_str_eq(cm_fold_result_name(CM_FOLD_LIMIT_PERMITS), "limit_permits");
    /* another migrant is not concerned */
    ck_assert_int_eq(fold_tev(F, ev_grant(NULL, "m2", T(B0 + 300), "p-last", "A", "UKR", T(B0 + 300),
                                          T(B0 + 300))),
                     CM_FOLD_ACCEPTED);
    /* 257 unused permits due as of b + 400: the refused one is not among them */
    json_t *d = doc_at(F, T(B0 + 400));
    CHECK_GROUP(d, "A", NULL, "no_shows=257");
    ck_assert_int_eq(dq(d, "over_limit"), 1);
    json_decref(d);
}
END_TEST

START_TEST(test_limit_runs_per_migrant)
{
    /* L is 3/10: stays of 5 days a week apart, each with a breach: kept for
     * ever. The first has breach days 4 and 5 (4 > 3 present days); in each
     * later one, every day's window [D - 9, D] also holds the 5 days of the
     * stay before: 5 breach days. The stay that would open run 1025 is set
     * aside (limit_runs); its exit is then an exit without entry. */
    GRANT("m1", B0, "P", "L", "UKR", B0, B0 + 20000);
    for (int i = 0; i < CM_FOLD_RUNS_MAX; i++) {
        ck_assert_int_eq(fold_tev(F, ev_entry(NULL, "m1", T(B0 + 7 * i))), CM_FOLD_ACCEPTED);
        ck_assert_int_eq(fold_tev(F, ev_exit(NULL, "m1", T(B0 + 7 * i + 4))), CM_FOLD_ACCEPTED);
    }
    int64_t b = B0 + 7 * CM_FOLD_RUNS_MAX;
    ck_assert_int_eq(fold_tev(F, ev_entry(NULL, "m1", T(b))), CM_FOLD_LIMIT_RUNS);
    ck_assert_str_eq(cm_fold_result_name(CM_FOLD_LIMIT_RUNS), "limit_runs");
    ck_assert_int_eq(fold_tev(F, ev_exit(NULL, "m1", T(b + 4))), CM_FOLD_ACCEPTED);
    json_t *d = doc_at(F, T(b + 10));
    ck_assert_int_eq(get(d, "L", NULL, "stay_limit_breaches"), CM_FOLD_RUNS_MAX);
    ck_assert_int_eq(get(d, "L", NULL, "stay_limit_breach_days"), 2 + 5 * (CM_FOLD_RUNS_MAX - 1));
    ck_assert_int_eq(dq(d, "over_limit"), 1);
    ck_assert_int_eq(dq(d, "exits_without_entry"), 1);
    json_decref(d);
}
END_TEST

START_TEST(test_limit_names)
{
    /* the fold interns at most 65,536 scheme ids and nationalities ("XXX"
     * and the fixture's are among them): a grant that needs one more is set
     * aside (limit_names); one with known names still folds */
    char mid[16], nat[16];
    int i = 0, r;
    for (;; i++) {
        snprintf(mid, sizeof mid, "m%d", i);
        snprintf(nat, sizeof nat, "N%d", i);
        r = fold_tev(F, ev_grant(NULL, mid, T(B0), "p", "A", nat, T(B0), T(B0 + 10)));
        if (r != CM_FOLD_ACCEPTED)
            break;
        ck_assert_int_lt(i, CM_FOLD_NAMES_MAX);
    }
    ck_assert_int_eq(r, CM_FOLD_LIMIT_NAMES);
    ck_assert_str_eq(cm_fold_result_name(CM_FOLD_LIMIT_NAMES), "limit_names");
    ck_assert_uint_eq(cm_names_count(cm_engine_names(F->en)), CM_FOLD_NAMES_MAX);
    ck_assert_int_gt(i, CM_FOLD_NAMES_MAX - 10);
    ck_assert_int_eq(fold_tev(F, ev_grant(NULL, "x", T(B0), "p", "A", "N7", T(B0), T(B0 + 10))),
                     CM_FOLD_ACCEPTED);
    json_t *d = doc_at(F, T(B0 + 20));
    ck_assert_int_eq(dq(d, "over_limit"), 1);
    ck_assert_int_eq(get(d, "A", NULL, "no_shows"), i + 1);
    json_decref(d);
    ck_assert_ptr_null(cm_fold_result_name(CM_FOLD_ACCEPTED));
    ck_assert_str_eq(cm_fold_result_name(CM_FOLD_TOO_LATE), "too_late");
}
END_TEST

/* A late grant before 40 others: the migrant's contribution changes for
 * every permit at once (the before/after lists are long and merged by
 * sorting); the figures stay those of the fold in order: 41 unused permits,
 * all with E = b + 11, due as of b + 20. */
START_TEST(test_out_of_order_before_many_permits)
{
    char pid[16];
    for (int i = 0; i < 40; i++) {
        snprintf(pid, sizeof pid, "p%d", i);
        FEED(F, ev_grant(NULL, "m1", T(B0 + 10) + i * 60, pid, i % 2 ? "A" : "B", i % 3 ? "UKR" : "MDA",
                         T(B0 + 10), T(B0 + 11)));
    }
    FEED(F, ev_grant(NULL, "m1", T(B0 + 10) - 60, "late", "A", "GEO", T(B0 + 10), T(B0 + 11)));
    json_t *d = doc_at(F, T(B0 + 20));
    CHECK_GROUP(d, "A", NULL, "no_shows=21");
    CHECK_GROUP(d, "B", NULL, "no_shows=20");
    CHECK_GROUP(d, "A", "nat:GEO", "no_shows=1");
    CHECK_GROUP(d, "A", "cohort:2024-03", "no_shows=21");
    CHECK_DQ(d, "out_of_order=1");
    json_decref(d);
    /* and not yet due as of b + 11 (E + 0 < dS is false): nothing */
    d = doc_at(F, T(B0 + 11));
    CHECK_GROUP(d, "A", NULL, "");
    CHECK_GROUP(d, "B", NULL, "");
    json_decref(d);
}
END_TEST

/* A stay to the year 9005 under 90/180: present every day from b, so day
 * b + k holds k + 1 present days in its window while k < 180: breach days run
 * from b + 90 (2024-05-30) to the exit day 9005-06-01, one breach. Each full
 * month between counts all its days (5000-02: 28, 5000 is no leap year;
 * 2400-02: 29). The fold's output must not grow with the months spanned. */
START_TEST(test_stay_limit_far_exit)
{
    int64_t ex = DN(9005, 6, 1);
    GRANT("m1", B0, "P", "S", "PHL", B0, DN(9005, 12, 31));
    ENTRY("m1", B0);
    EXIT("m1", ex);
    /* a few aggregate entries (counters, the breach's steps, the pending
     * permit), not one per month: 7,000 years are 84,000 months */
    ck_assert_uint_lt(cm_agg_count(cm_engine_agg(F->en)), 40);
    json_t *d = doc_at(F, T(ex + 1));
    long days = (long)(ex - (B0 + 90) + 1);
    ck_assert_int_eq(get(d, "S", NULL, "stay_limit_breach_days"), days);
    ck_assert_int_eq(get(d, "S", NULL, "stay_limit_breaches"), 1);
    ck_assert_int_eq(get(d, "S", "nat:PHL", "stay_limit_breach_days"), days);
    ck_assert_int_eq(get(d, "S", "cohort:2024-05", "stay_limit_breaches"), 1);
    ck_assert_int_eq(get(d, "S", "cohort:2024-05", "stay_limit_breach_days"), 2); /* 30, 31 */
    ck_assert_int_eq(get(d, "S", "cohort:2024-06", "stay_limit_breach_days"), 30);
    ck_assert_int_eq(get(d, "S", "cohort:5000-02", "stay_limit_breach_days"), 28);
    ck_assert_int_eq(get(d, "S", "cohort:2400-02", "stay_limit_breach_days"), 29);
    ck_assert_int_eq(get(d, "S", "cohort:9005-05", "stay_limit_breach_days"), 31);
    ck_assert_int_eq(get(d, "S", "cohort:9005-06", "stay_limit_breach_days"), 1);
    ck_assert_int_eq(get(d, "S", "cohort:9005-07", "stay_limit_breach_days"), 0);
    json_decref(d);
}
END_TEST

/* The same stay still open: breach days run to the as-of day, up to the
 * last instant of the contract; an as-of outside [0, 253402300799] is
 * refused, with a message. */
START_TEST(test_stay_limit_open_to_far_as_of_and_as_of_range)
{
    GRANT("m1", B0, "P", "S", "PHL", B0, DN(9999, 12, 31));
    ENTRY("m1", B0);
    int64_t last = 253402300799LL; /* 9999-12-31T23:59:59Z */
    json_t *d = doc_at(F, last);
    long days = (long)(DN(9999, 12, 31) - (B0 + 90) + 1);
    ck_assert_int_eq(get(d, "S", NULL, "stay_limit_breach_days"), days);
    ck_assert_int_eq(get(d, "S", "cohort:9999-12", "stay_limit_breach_days"), 31);
    ck_assert_int_eq(get(d, "S", NULL, "present"), 1);
    json_decref(d);
    ck_assert_ptr_null(cm_engine_indicators(F->en, last + 1));
    ck_assert_ptr_null(cm_engine_indicators(F->en, -1));
    ck_assert_ptr_null(cm_engine_indicators(F->en, INT64_MAX));
    char err[200];
    ck_assert_int_eq(cm_indicators_as_of_check(last + 1, err, sizeof err), -ERANGE);
    ck_assert_ptr_nonnull(strstr(err, "253402300800"));
    ck_assert_ptr_nonnull(strstr(err, "outside"));
    ck_assert_int_eq(cm_indicators_as_of_check(0, err, sizeof err), 0);
    ck_assert_int_eq(cm_indicators_as_of_check(last, err, sizeof err), 0);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("bounds");
    TCase *tc = tcase_create("bounds");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_max_window_events_n_minus_1_and_n);
    tcase_add_test(tc, test_max_window_events_ties_do_not_count);
    tcase_add_test(tc, test_max_window_events_bounds_state);
    tcase_add_test(tc, test_max_window_events_default_256);
    tcase_add_test(tc, test_limit_permits_per_migrant);
    tcase_add_test(tc, test_limit_runs_per_migrant);
    tcase_add_test(tc, test_limit_names);
    tcase_add_test(tc, test_out_of_order_before_many_permits);
    tcase_add_test(tc, test_stay_limit_far_exit);
    tcase_add_test(tc, test_stay_limit_open_to_far_as_of_and_as_of_range);
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
