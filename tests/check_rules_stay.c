/* check_rules_stay.c - INDICATORS.md, the stay limit (N days in any W) rule by rule.
 *
 * Every expected figure is derived by hand from the contract; the comment
 * next to each assertion gives the derivation (conventions: cm_rules.h). */
#include "cm_rules.h"

/* ================= stay limit ================= */

START_TEST(test_stay_limit_worked_example)
{
    /* S: 90/180. Stays 2013-09-01..09-30, 2014-02-21..04-20 (59 days),
     * 2014-05-01..06-09 (40 days). On 2014-06-01 the window 2013-12-04..
     * 2014-06-01 holds 59 + 32 = 91 > 90 present days (05-31: 90, no
     * breach); up to 06-09 (59 + 40 = 99): breach days 06-01..06-09 = 9,
     * one run: 1 breach, month 2014-06, nationality PHL. Permit valid to
     * 2014-12-31: not due as of 2014-07-01. */
    GRANT("m1", DN(2013, 8, 1), "P", "S", "PHL", DN(2013, 8, 1), DN(2014, 12, 31));
    ENTRY("m1", DN(2013, 9, 1));
    EXIT("m1", DN(2013, 9, 30));
    ENTRY("m1", DN(2014, 2, 21));
    EXIT("m1", DN(2014, 4, 20));
    ENTRY("m1", DN(2014, 5, 1));
    EXIT("m1", DN(2014, 6, 9));
    json_t *d = doc_at(F, D(2014, 7, 1));
    CHECK_GROUP(d, "S", NULL, "stay_limit_breaches=1 stay_limit_breach_days=9");
    CHECK_GROUP(d, "S", "cohort:2014-06", "stay_limit_breaches=1 stay_limit_breach_days=9");
    CHECK_GROUP(d, "S", "nat:PHL", "stay_limit_breaches=1 stay_limit_breach_days=9");
    CHECK_DQ(d, "");
    json_decref(d);
}
END_TEST

START_TEST(test_stay_limit_worked_example_open)
{
    /* the same, the last stay still open as of 2014-06-05: breach days
     * 06-01..06-05 = 5; present on S */
    GRANT("m1", DN(2013, 8, 1), "P", "S", "PHL", DN(2013, 8, 1), DN(2014, 12, 31));
    ENTRY("m1", DN(2013, 9, 1));
    EXIT("m1", DN(2013, 9, 30));
    ENTRY("m1", DN(2014, 2, 21));
    EXIT("m1", DN(2014, 4, 20));
    ENTRY("m1", DN(2014, 5, 1));
    json_t *d = doc_at(F, D(2014, 5, 31));
    CHECK_GROUP(d, "S", NULL, "present=1");
    json_decref(d);
    d = doc_at(F, D(2014, 6, 5));
    CHECK_GROUP(d, "S", NULL, "stay_limit_breaches=1 stay_limit_breach_days=5 present=1");
    json_decref(d);
}
END_TEST

START_TEST(test_stay_limit_no_breach_after_window_moves_on)
{
    /* S: 90/180, window 30 days. P valid b-40..b+1000 (extended to b+1001
     * on b+190, d <= E: applied). Stays b-30 (1 day), b+100..b+145 (46),
     * b+150..b+192 (43). For D in the last stay the window [D-179, D]
     * starts after b-30 once D >= b+150: at most 46 + 43 = 89 <= 90; for D
     * in the second stay it holds at most 1 + 46 = 47. No breach day, no
     * breach; P not due; absent. Events of each stay leave the reorder
     * window long before the next stay ends, so runs are scanned and
     * dropped on the way (a drop must not hide a run from another's scan). */
    GRANT("m1", B0 - 40, "P", "S", "UKR", B0 - 40, B0 + 1000);
    ENTRY("m1", B0 - 30);
    EXIT("m1", B0 - 30);
    ENTRY("m1", B0 + 100);
    EXIT("m1", B0 + 145);
    ENTRY("m1", B0 + 150);
    FEED(F, ev_extend(NULL, "m1", T(B0 + 190), "P", T(B0 + 1001)));
    EXIT("m1", B0 + 192);
    for (int k = 193; k <= 200; k += 7) {
        json_t *d = doc_at(F, T(B0 + k));
        CHECK_GROUP(d, "S", NULL, "");
        CHECK_GROUP(d, "S", "nat:UKR", "");
        CHECK_DQ(d, "");
        json_decref(d);
    }
}
END_TEST

START_TEST(test_stay_limit_open_stay_counts_to_as_of)
{
    /* L 3/10, b = 2024-03-01, P valid b..b+100. Open stay from b+1.
     * as of b+3: 3 days, no breach. b+4: 4 > 3: 1 day, 1 breach.
     * b+50: breach days b+4..b+50 = 47: b+4..b+30 in 2024-03 (27),
     * b+31..b+50 in 2024-04 (20); the breach in 2024-03 (first day). */
    GRANT("m1", B0, "P", "L", "UKR", B0, B0 + 100);
    ENTRY("m1", B0 + 1);
    json_t *d = doc_at(F, T(B0 + 3));
    CHECK_GROUP(d, "L", NULL, "present=1");
    json_decref(d);
    d = doc_at(F, T(B0 + 4));
    CHECK_GROUP(d, "L", NULL, "stay_limit_breaches=1 stay_limit_breach_days=1 present=1");
    json_decref(d);
    d = doc_at(F, T(B0 + 50));
    CHECK_GROUP(d, "L", NULL, "stay_limit_breaches=1 stay_limit_breach_days=47 present=1");
    CHECK_GROUP(d, "L", "cohort:2024-03", "stay_limit_breaches=1 stay_limit_breach_days=27");
    CHECK_GROUP(d, "L", "cohort:2024-04", "stay_limit_breach_days=20");
    CHECK_GROUP(d, "L", "nat:UKR", "stay_limit_breaches=1 stay_limit_breach_days=47");
    json_decref(d);
    /* b+120: P due (100 < 120), still present: in-country overstay of 20
     * days, and the stay keeps counting: breach days b+4..b+120 = 117 */
    d = doc_at(F, T(B0 + 120));
    CHECK_GROUP(d, "L", NULL,
                "stay_limit_breaches=1 stay_limit_breach_days=117 present=1 "
                "expected_departures=1 in_country_overstays=1 overstay_days=20");
    json_decref(d);
}
END_TEST

START_TEST(test_stay_limit_breach_runs)
{
    /* L 3/10. Stay b+1..b+5: breach days b+4, b+5. Stay b+20..b+24: window of
     * b+23 = b+14..b+23 holds b+20..b+23 = 4: breach days b+23, b+24.
     * Two runs: 2 breaches, 4 breach days, all in 2024-03 */
    GRANT("m1", B0, "P", "L", "UKR", B0, B0 + 100);
    ENTRY("m1", B0 + 1);
    EXIT("m1", B0 + 5);
    ENTRY("m1", B0 + 20);
    EXIT("m1", B0 + 24);
    json_t *d = doc_at(F, T(B0 + 30));
    CHECK_GROUP(d, "L", NULL, "stay_limit_breaches=2 stay_limit_breach_days=4");
    CHECK_GROUP(d, "L", "cohort:2024-03", "stay_limit_breaches=2 stay_limit_breach_days=4");
    json_decref(d);
}
END_TEST

START_TEST(test_stay_limit_run_spans_exit_and_next_day_entry)
{
    /* L 3/10. Stays b+1..b+5 and b+6..b+8: present days b+1..b+8 are
     * consecutive: one run, breach days b+4..b+8 = 5, one breach */
    GRANT("m1", B0, "P", "L", "UKR", B0, B0 + 100);
    ENTRY("m1", B0 + 1);
    EXIT("m1", B0 + 5);
    ENTRY("m1", B0 + 6);
    EXIT("m1", B0 + 8);
    json_t *d = doc_at(F, T(B0 + 30));
    CHECK_GROUP(d, "L", NULL, "stay_limit_breaches=1 stay_limit_breach_days=5");
    json_decref(d);
}
END_TEST

START_TEST(test_stay_limit_same_day_counted_once)
{
    /* L 3/10. m1: exit and re-entry on b+2: days b+1..b+3 = 3 (no breach).
     * m2: transfer P -> Q (both L) on b+2 (vf(Q) = b+3 = E(P)+0+1): P's stay
     * b+1..b+2, Q's b+2..b+3: days b+1..b+3 = 3: no breach; m3 the same with
     * exit at b+4: 4 days, breach day b+4 */
    GRANT("m1", B0, "P", "L", "UKR", B0, B0 + 100);
    ENTRY("m1", B0 + 1);
    FEED(F, ev_exit(NULL, "m1", T(B0 + 2)));
    FEED(F, ev_entry(NULL, "m1", T(B0 + 2) + 60));
    EXIT("m1", B0 + 3);
    for (int i = 2; i <= 3; i++) {
        char m[8];
        snprintf(m, sizeof m, "m%d", i);
        GRANT(m, B0, "P", "L", "UKR", B0, B0 + 2);
        ENTRY(m, B0 + 1);
        GRANT(m, B0 + 2, "Q", "L", "UKR", B0 + 3, B0 + 50);
        EXIT(m, B0 + 1 + i);
    }
    /* as of b+5: m2/m3's P due (2 < 5): used, adjusted: 2 status changes */
    json_t *d = doc_at(F, T(B0 + 5));
    CHECK_GROUP(d, "L", NULL,
                "stay_limit_breaches=1 stay_limit_breach_days=1 expected_departures=2 "
                "status_changes=2");
    json_decref(d);
}
END_TEST

START_TEST(test_stay_limit_nationality_latest_permit)
{
    /* breach on UKR permit P1 (b+1..b+5: 2 breach days), then P2 (L, MDA)
     * granted b+10, then P3 (A, GEO) b+11: the breach counts under MDA, the
     * nationality of the latest permit of L */
    GRANT("m1", B0, "P1", "L", "UKR", B0, B0 + 100);
    ENTRY("m1", B0 + 1);
    EXIT("m1", B0 + 5);
    GRANT("m1", B0 + 10, "P2", "L", "MDA", B0 + 200, B0 + 300);
    GRANT("m1", B0 + 11, "P3", "A", "GEO", B0 + 200, B0 + 300);
    json_t *d = doc_at(F, T(B0 + 20));
    CHECK_GROUP(d, "L", "nat:MDA", "stay_limit_breaches=1 stay_limit_breach_days=2");
    CHECK_GROUP(d, "L", "nat:UKR", "");
    CHECK_GROUP(d, "A", NULL, "");
    json_decref(d);
}
END_TEST

START_TEST(test_stay_limit_only_days_on_scheme_permits)
{
    /* L 3/10: on L b+1..b+3 (3 days), then on A b+4..b+10, then permit-less
     * b+11..b+20: L never exceeds 3 */
    GRANT("m1", B0, "PL", "L", "UKR", B0, B0 + 3);
    GRANT("m1", B0, "PA", "A", "UKR", B0 + 4, B0 + 10);
    ENTRY("m1", B0 + 1);
    EXIT("m1", B0 + 3);
    ENTRY("m1", B0 + 4);
    EXIT("m1", B0 + 10);
    ENTRY("m1", B0 + 11);
    EXIT("m1", B0 + 20);
    /* also a scheme without stay limit never breaches (A: 7 days) */
    json_t *d = doc_at(F, T(B0 + 30));
    CHECK_GROUP(d, "L", NULL, "expected_departures=1 in_time_departures=1");
    CHECK_GROUP(d, "A", NULL, "expected_departures=1 in_time_departures=1");
    CHECK_DQ(d, "entries_without_permit=1");
    json_decref(d);
}
END_TEST

START_TEST(test_stay_limit_month_of_each_day)
{
    /* L 3/10, b' = 2024-03-25. Stay b'+1..b'+10 (03-26..04-04): breach days
     * b'+4..b'+10 = 03-29,30,31 (3) and 04-01..04 (4); breach in 2024-03 */
    int64_t b = DN(2024, 3, 25);
    GRANT("m1", b, "P", "L", "UKR", b, b + 100);
    ENTRY("m1", b + 1);
    EXIT("m1", b + 10);
    json_t *d = doc_at(F, T(b + 11));
    CHECK_GROUP(d, "L", NULL, "stay_limit_breaches=1 stay_limit_breach_days=7");
    CHECK_GROUP(d, "L", "cohort:2024-03", "stay_limit_breaches=1 stay_limit_breach_days=3");
    CHECK_GROUP(d, "L", "cohort:2024-04", "stay_limit_breach_days=4");
    json_decref(d);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("rules_stay");
    TCase *tc = tcase_create("rules");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_stay_limit_worked_example);
    tcase_add_test(tc, test_stay_limit_worked_example_open);
    tcase_add_test(tc, test_stay_limit_no_breach_after_window_moves_on);
    tcase_add_test(tc, test_stay_limit_open_stay_counts_to_as_of);
    tcase_add_test(tc, test_stay_limit_breach_runs);
    tcase_add_test(tc, test_stay_limit_run_spans_exit_and_next_day_entry);
    tcase_add_test(tc, test_stay_limit_same_day_counted_once);
    tcase_add_test(tc, test_stay_limit_nationality_latest_permit);
    tcase_add_test(tc, test_stay_limit_only_days_on_scheme_permits);
    tcase_add_test(tc, test_stay_limit_month_of_each_day);
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
