/* check_rules.c - INDICATORS.md, the indicators rule by rule: no-shows, due
 * and in-time departures, overstays, grace, re-entries, cohorts, nationality,
 * rates, presence, data quality.
 *
 * Every expected figure is derived by hand from the contract; the comment
 * next to each assertion gives the derivation (conventions: cm_rules.h). */
#include "cm_rules.h"

/* ================= 3. outcomes ================= */

START_TEST(test_noshow)
{
    GRANT("m1", B0, "P", "G", "UKR", B0, B0 + 100);
    /* due when E + grace < dS: 105 < dS */
    json_t *d = doc_at(F, T(B0 + 105));
    CHECK_GROUP(d, "G", NULL, "");
    json_decref(d);
    d = doc_at(F, T(B0 + 106));
    CHECK_GROUP(d, "G", NULL, "no_shows=1");
    CHECK_GROUP(d, "G", "nat:UKR", "no_shows=1");
    CHECK_GROUP(d, "G", "cohort:2024-06", "no_shows=1"); /* b+100 = 2024-06-09 */
    CHECK_RATE(d, "G", NULL, "overstay_rate", RNULL);
    json_decref(d);
}
END_TEST

START_TEST(test_due_boundary)
{
    GRANT("m1", B0, "P", "A", "UKR", B0, B0 + 100);
    ENTRY("m1", B0 + 10);
    /* E + grace = b+100: not due on day b+100, even at its last second */
    json_t *d = doc_at(F, T(B0 + 100));
    CHECK_GROUP(d, "A", NULL, "present=1");
    json_decref(d);
    d = doc_at(F, (B0 + 101) * DAY - 1);
    CHECK_GROUP(d, "A", NULL, "present=1");
    json_decref(d);
    /* due from 00:00:00 of b+101: in-country overstay, 101 - 100 = 1 day */
    d = doc_at(F, (B0 + 101) * DAY);
    CHECK_GROUP(d, "A", NULL,
                "expected_departures=1 in_country_overstays=1 overstay_days=1 present=1");
    json_decref(d);
}
END_TEST

START_TEST(test_intime)
{
    /* G grace 5: exit on E + grace = b+105 is in time */
    GRANT("m1", B0, "P", "G", "UKR", B0, B0 + 100);
    ENTRY("m1", B0 + 10);
    EXIT("m1", B0 + 105);
    json_t *d = doc_at(F, T(B0 + 106));
    CHECK_GROUP(d, "G", NULL, "expected_departures=1 in_time_departures=1");
    CHECK_RATE(d, "G", NULL, "return_compliance_rate", 1.0);
    CHECK_RATE(d, "G", NULL, "mean_overstay_days", RNULL);
    json_decref(d);
}
END_TEST

START_TEST(test_late_departure_days)
{
    /* exit on E + grace + 1 = b+106: late, overstay days = exit - E = 6 */
    GRANT("m1", B0, "P", "G", "UKR", B0, B0 + 100);
    ENTRY("m1", B0 + 10);
    EXIT("m1", B0 + 106);
    json_t *d = doc_at(F, T(B0 + 200));
    CHECK_GROUP(d, "G", NULL, "expected_departures=1 late_departures=1 overstay_days=6");
    CHECK_RATE(d, "G", NULL, "mean_overstay_days", 6.0);
    CHECK_RATE(d, "G", NULL, "overstay_rate", 1.0);
    CHECK_RATE(d, "G", NULL, "in_country_overstay_rate", 0.0);
    json_decref(d);
}
END_TEST

START_TEST(test_in_country_overstay_days_grow_with_as_of)
{
    GRANT("m1", B0, "P", "G", "UKR", B0, B0 + 100);
    ENTRY("m1", B0 + 10);
    json_t *d = doc_at(F, T(B0 + 105)); /* not due */
    CHECK_GROUP(d, "G", NULL, "present=1");
    json_decref(d);
    d = doc_at(F, T(B0 + 106)); /* dS - E = 6 */
    CHECK_GROUP(d, "G", NULL,
                "expected_departures=1 in_country_overstays=1 overstay_days=6 present=1");
    json_decref(d);
    d = doc_at(F, T(B0 + 200)); /* 100 */
    CHECK_GROUP(d, "G", NULL,
                "expected_departures=1 in_country_overstays=1 overstay_days=100 present=1");
    CHECK_RATE(d, "G", NULL, "in_country_overstay_rate", 1.0);
    CHECK_RATE(d, "G", NULL, "mean_overstay_days", 100.0);
    json_decref(d);
}
END_TEST

START_TEST(test_grace_days)
{
    /* same history under A (grace 0) and G (grace 5): exit at E+3 */
    GRANT("m1", B0, "P", "A", "UKR", B0, B0 + 100);
    ENTRY("m1", B0 + 10);
    EXIT("m1", B0 + 103);
    GRANT("m2", B0, "P", "G", "UKR", B0, B0 + 100);
    ENTRY("m2", B0 + 10);
    EXIT("m2", B0 + 103);
    /* as of b+104: A due (100 < 104): late 3 days; G not due (105 >= 104) */
    json_t *d = doc_at(F, T(B0 + 104));
    CHECK_GROUP(d, "A", NULL, "expected_departures=1 late_departures=1 overstay_days=3");
    CHECK_GROUP(d, "G", NULL, "");
    json_decref(d);
    d = doc_at(F, T(B0 + 106));
    CHECK_GROUP(d, "G", NULL, "expected_departures=1 in_time_departures=1");
    json_decref(d);
}
END_TEST

START_TEST(test_scheme_default_grace)
{
    /* a scheme without its own section takes [scheme *] (scheme_default) */
    struct fx *f = fx_new(30, "A:0");
    f->cfg.scheme_default.grace_days = 4;
    cm_engine_free(f->en); /* a new engine over the changed configuration */
    f->en = cm_engine_new(&f->cfg);
    ck_assert_ptr_nonnull(f->en);
    ck_assert_int_eq(feed(f, ev_grant(NULL, "m1", T(B0), "P", "Z", "UKR", T(B0), T(B0 + 10))),
                     CM_OK);
    ck_assert_int_eq(feed(f, ev_entry(NULL, "m1", T(B0 + 1))), CM_OK);
    ck_assert_int_eq(feed(f, ev_exit(NULL, "m1", T(B0 + 14))), CM_OK);
    /* exit at E+4 in time under grace 4; due only when 14 < dS */
    json_t *d = doc_at(f, T(B0 + 14));
    CHECK_GROUP(d, "Z", NULL, "");
    json_decref(d);
    d = doc_at(f, T(B0 + 15));
    CHECK_GROUP(d, "Z", NULL, "expected_departures=1 in_time_departures=1");
    json_decref(d);
    fx_free(f);
}
END_TEST

START_TEST(test_last_stay_decides)
{
    /* m1: stays b+10..b+20 and b+30..b+110 on P: the last one is late (10) */
    GRANT("m1", B0, "P", "A", "UKR", B0, B0 + 100);
    ENTRY("m1", B0 + 10);
    EXIT("m1", B0 + 20);
    ENTRY("m1", B0 + 30);
    EXIT("m1", B0 + 110);
    /* m2: stay on P b+10..b+50, then a stay on Q (B) with no exit: P's last
     * stay exited in time */
    GRANT("m2", B0, "P", "A", "UKR", B0, B0 + 100);
    GRANT("m2", B0 + 1, "Q", "B", "UKR", B0 + 60, B0 + 300);
    ENTRY("m2", B0 + 10); /* Q not valid yet: P */
    EXIT("m2", B0 + 50);
    ENTRY("m2", B0 + 60); /* Q */
    json_t *d = doc_at(F, T(B0 + 120));
    CHECK_GROUP(d, "A", NULL,
                "expected_departures=2 late_departures=1 overstay_days=10 "
                "in_time_departures=1");
    CHECK_GROUP(d, "B", NULL, "present=1");
    json_decref(d);
}
END_TEST

START_TEST(test_reentry_window_365)
{
    /* Every migrant: P (A) days b..b+100 granted b, Q granted b+5 (absent:
     * no transfer) valid b+90..b+600; stay on P b+10..b+90 (Q not valid at
     * b+10), x = b+90, in time. Entry on day k >= x attaches to Q (the most
     * recent valid permit):
     * m1 k = x+365 (re-entry), m2 x+366 (no), m3 x (no: same day),
     * m5 x+1 (re-entry); m4: Q is of scheme B, k = x+10 (no);
     * m6: Q (A) granted only at b+110 (valid from b+100); entry at b+105
     * (P expired, no permit), Q used by in-country grant at b+110: not an
     * Entry event on Q (no). */
    struct {
        const char *m;
        int k;
        const char *qs;
    } c[] = {{"m1", 90 + 365, "A"}, {"m2", 90 + 366, "A"}, {"m3", 90, "A"},
             {"m4", 100, "B"},      {"m5", 91, "A"}};
    for (size_t i = 0; i < 5; i++) {
        GRANT(c[i].m, B0, "P", "A", "UKR", B0, B0 + 100);
        GRANT(c[i].m, B0 + 5, "Q", c[i].qs, "UKR", B0 + 90, B0 + 600);
        ENTRY(c[i].m, B0 + 10);
        EXIT(c[i].m, B0 + 90);
        ENTRY(c[i].m, B0 + c[i].k); /* m3: same instant as the exit, after it */
    }
    GRANT("m6", B0, "P", "A", "UKR", B0, B0 + 100);
    ENTRY("m6", B0 + 10);
    EXIT("m6", B0 + 90);
    ENTRY("m6", B0 + 105);
    GRANT("m6", B0 + 110, "Q", "A", "UKR", B0 + 100, B0 + 600);
    /* as of b+460: every P due, in time (6); Q not due. Re-entries m1, m5.
     * present on A: m1 m2 m3 m5 m6 (Q of A); on B: m4 */
    json_t *d = doc_at(F, T(B0 + 460));
    CHECK_GROUP(d, "A", NULL,
                "expected_departures=6 in_time_departures=6 reentries=2 present=5");
    CHECK_GROUP(d, "B", NULL, "present=1");
    CHECK_RATE(d, "A", NULL, "reentry_rate", 2.0 / 6.0);
    CHECK_DQ(d, "entries_without_permit=1");
    json_decref(d);
}
END_TEST

START_TEST(test_reentry_only_for_in_time)
{
    /* P late (exit b+105 > 100), entry on Q (A) b+200: no re-entry */
    GRANT("m1", B0, "P", "A", "UKR", B0, B0 + 100);
    ENTRY("m1", B0 + 10);
    EXIT("m1", B0 + 105);
    GRANT("m1", B0 + 150, "Q", "A", "UKR", B0 + 150, B0 + 600);
    ENTRY("m1", B0 + 200);
    json_t *d = doc_at(F, T(B0 + 201));
    CHECK_GROUP(d, "A", NULL,
                "expected_departures=1 late_departures=1 overstay_days=5 present=1");
    CHECK_RATE(d, "A", NULL, "reentry_rate", RNULL);
    json_decref(d);
}
END_TEST

START_TEST(test_reentry_counted_in_cohort_and_nat_of_first_permit)
{
    /* P (A, MDA, E 2024-03-31) in time (exit 03-20); Q (A, UKR, E 2024-12-31)
     * entered 2024-05-01: the re-entry is P's outcome: cohort 2024-03, MDA */
    GRANT("m1", DN(2024, 1, 1), "P", "A", "MDA", DN(2024, 1, 1), DN(2024, 3, 31));
    ENTRY("m1", DN(2024, 1, 10));
    EXIT("m1", DN(2024, 3, 20));
    GRANT("m1", DN(2024, 4, 1), "Q", "A", "UKR", DN(2024, 4, 1), DN(2024, 12, 31));
    ENTRY("m1", DN(2024, 5, 1));
    json_t *d = doc_at(F, D(2024, 6, 1));
    CHECK_GROUP(d, "A", "cohort:2024-03",
                "expected_departures=1 in_time_departures=1 reentries=1");
    CHECK_GROUP(d, "A", "nat:MDA", "expected_departures=1 in_time_departures=1 reentries=1");
    CHECK_GROUP(d, "A", "nat:UKR", "");
    CHECK_RATE(d, "A", "nat:MDA", "reentry_rate", 1.0);
    json_decref(d);
}
END_TEST

START_TEST(test_cohort_month_of_final_E)
{
    /* unused permits (no-shows) with various final E:
     * P1 E 2024-01-31 extended (at 01-20) to 2024-02-01: cohort 2024-02;
     * P2 valid_until 2024-03-31T23:59:59Z: day 03-31, cohort 2024-03;
     * P3 valid_until 2024-04-01T00:00:00Z: cohort 2024-04 */
    GRANT("m1", DN(2024, 1, 1), "P1", "A", "UKR", DN(2024, 1, 10), DN(2024, 1, 31));
    FEED(F, ev_extend(NULL, "m1", D(2024, 1, 20), "P1", D(2024, 2, 1)));
    FEED(F, ev_grant(NULL, "m1", D(2024, 1, 2), "P2", "A", "UKR", D(2024, 1, 10),
                     DN(2024, 4, 1) * DAY - 1));
    FEED(F, ev_grant(NULL, "m1", D(2024, 1, 3), "P3", "A", "UKR", D(2024, 1, 10),
                     DN(2024, 4, 1) * DAY));
    json_t *d = doc_at(F, D(2024, 6, 1));
    CHECK_GROUP(d, "A", NULL, "no_shows=3");
    CHECK_GROUP(d, "A", "cohort:2024-01", "");
    CHECK_GROUP(d, "A", "cohort:2024-02", "no_shows=1");
    CHECK_GROUP(d, "A", "cohort:2024-03", "no_shows=1");
    CHECK_GROUP(d, "A", "cohort:2024-04", "no_shows=1");
    json_decref(d);
}
END_TEST

START_TEST(test_nationality_XXX)
{
    GRANT("m1", B0, "P", "A", "", B0, B0 + 10);
    GRANT("m2", B0, "P", "A", "UKR", B0, B0 + 10);
    GRANT("m3", B0, "P", "A", "UKR", B0, B0 + 10);
    json_t *d = doc_at(F, T(B0 + 11));
    CHECK_GROUP(d, "A", "nat:XXX", "no_shows=1");
    CHECK_GROUP(d, "A", "nat:UKR", "no_shows=2");
    CHECK_GROUP(d, "A", NULL, "no_shows=3");
    json_decref(d);
}
END_TEST

START_TEST(test_rates_null_and_values)
{
    /* B: only no-shows: every rate null */
    GRANT("n1", B0, "P", "B", "UKR", B0, B0 + 100);
    /* A: 2 in time, 1 late (3 days), 1 in-country (as of b+105: 5 days) */
    for (int i = 0; i < 4; i++) {
        char m[8];
        snprintf(m, sizeof m, "m%d", i);
        GRANT(m, B0, "P", "A", "UKR", B0, B0 + 100);
        ENTRY(m, B0 + 10);
    }
    EXIT("m0", B0 + 50);
    EXIT("m1", B0 + 100);
    EXIT("m2", B0 + 103);
    json_t *d = doc_at(F, T(B0 + 105));
    CHECK_GROUP(d, "A", NULL,
                "expected_departures=4 in_time_departures=2 late_departures=1 "
                "in_country_overstays=1 overstay_days=8 present=1");
    CHECK_RATE(d, "A", NULL, "overstay_rate", 0.5);            /* (1+1)/4 */
    CHECK_RATE(d, "A", NULL, "in_country_overstay_rate", 0.25); /* 1/4 */
    CHECK_RATE(d, "A", NULL, "return_compliance_rate", 0.5);    /* 2/4 */
    CHECK_RATE(d, "A", NULL, "reentry_rate", 0.0);              /* 0/2 */
    CHECK_RATE(d, "A", NULL, "mean_overstay_days", 4.0);        /* (3+5)/2 */
    CHECK_RATE(d, "A", "nat:UKR", "overstay_rate", 0.5);
    CHECK_RATE(d, "A", "cohort:2024-06", "mean_overstay_days", 4.0); /* b+100 = 06-09 */
    for (int i = 0; i < N_RATE; i++)
        CHECK_RATE(d, "B", NULL, RATE_NAMES[i], RNULL);
    CHECK_GROUP(d, "B", NULL, "no_shows=1");
    json_decref(d);
}
END_TEST

START_TEST(test_present)
{
    GRANT("m1", B0, "P", "A", "UKR", B0, B0 + 300); /* on A, not due */
    ENTRY("m1", B0 + 1);
    GRANT("m2", B0, "P", "A", "UKR", B0, B0 + 10); /* overstayer on A */
    ENTRY("m2", B0 + 1);
    GRANT("m3", B0, "P", "A", "UKR", B0, B0 + 300); /* exempt */
    ENTRY("m3", B0 + 1);
    FEED(F, ev_status(NULL, "m3", T(B0 + 2), 1));
    ENTRY("m4", B0 + 1); /* permit-less */
    GRANT("m5", B0, "P", "A", "UKR", B0, B0 + 300); /* left */
    ENTRY("m5", B0 + 1);
    EXIT("m5", B0 + 2);
    GRANT("m6", B0, "P", "B", "UKR", B0, B0 + 300); /* on B */
    ENTRY("m6", B0 + 1);
    json_t *d = doc_at(F, T(B0 + 20));
    CHECK_GROUP(d, "A", NULL,
                "present=2 expected_departures=1 in_country_overstays=1 overstay_days=10");
    CHECK_GROUP(d, "B", NULL, "present=1");
    ck_assert_int_eq(json_integer_value(json_object_get(d, "as_of")), T(B0 + 20));
    json_decref(d);
}
END_TEST

START_TEST(test_dq_all_counters)
{
    invalid_one(ev_entry("", "m1", T(B0)), CM_REJ_NO_EVENT_ID);
    FEED(F, ev_exit("x", "m1", T(B0 + 100))); /* exit without entry */
    FEED(F, ev_exit("x", "m1", T(B0 + 100))); /* duplicate */
    FEED(F, ev_exit(NULL, "m1", T(B0 + 60))); /* too late */
    FEED(F, ev_entry(NULL, "m1", T(B0 + 90))); /* out of order, entry w/o permit */
    FEED(F, ev_entry(NULL, "m1", T(B0 + 101))); /* entry while present */
    FEED(F, ev_extend(NULL, "m1", T(B0 + 102), "zz", T(B0 + 200))); /* unknown */
    GRANT("m1", B0 + 103, "P", "A", "UKR", B0, B0 + 103);
    FEED(F, ev_extend(NULL, "m1", T(B0 + 104), "P", T(B0 + 200))); /* late admin */
    /* order of occurrence: entry90 (w/o permit), exit100, entry101 (w/o
     * permit!), ... The exit at b+100 follows the entry at b+90 now: it is
     * not an exit without entry; the entry at b+101 finds the migrant absent:
     * entry without permit, not while present. */
    json_t *d = doc_at(F, T(B0 + 105));
    CHECK_DQ(d, "invalid=1 duplicates=1 too_late=1 out_of_order=1 entries_without_permit=2 "
                "unknown_permit=1 late_admin_events=1");
    json_decref(d);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("rules");
    TCase *tc = tcase_create("rules");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_noshow);
    tcase_add_test(tc, test_due_boundary);
    tcase_add_test(tc, test_intime);
    tcase_add_test(tc, test_late_departure_days);
    tcase_add_test(tc, test_in_country_overstay_days_grow_with_as_of);
    tcase_add_test(tc, test_grace_days);
    tcase_add_test(tc, test_scheme_default_grace);
    tcase_add_test(tc, test_last_stay_decides);
    tcase_add_test(tc, test_reentry_window_365);
    tcase_add_test(tc, test_reentry_only_for_in_time);
    tcase_add_test(tc, test_reentry_counted_in_cohort_and_nat_of_first_permit);
    tcase_add_test(tc, test_cohort_month_of_final_E);
    tcase_add_test(tc, test_nationality_XXX);
    tcase_add_test(tc, test_rates_null_and_values);
    tcase_add_test(tc, test_present);
    tcase_add_test(tc, test_dq_all_counters);
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
