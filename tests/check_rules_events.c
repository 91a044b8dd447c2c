/* check_rules_events.c - INDICATORS.md, the fold of each event type rule by rule:
 * transfers, in-country grants, entries, exits, extensions, revocations,
 * status changes.
 *
 * Every expected figure is derived by hand from the contract; the comment
 * next to each assertion gives the derivation (conventions: cm_rules.h). */
#include "cm_rules.h"

/* ================= fold: PermitGranted ================= */

START_TEST(test_transfer)
{
    /* P (G, grace 5) days b..b+100; Q (A) from b+106 = E(P)+grace+1 */
    GRANT("m1", B0, "P", "G", "UKR", B0, B0 + 100);
    ENTRY("m1", B0 + 10);
    GRANT("m1", B0 + 50, "Q", "A", "UKR", B0 + 106, B0 + 300);
    json_t *d = doc_at(F, T(B0 + 60));
    /* transfer at b+50: present on Q (A), not on P */
    CHECK_GROUP(d, "A", NULL, "present=1");
    CHECK_GROUP(d, "G", NULL, "");
    json_decref(d);
    EXIT("m1", B0 + 150);
    /* as of b+310: P due (105 < 310), used, adjusted: status change.
     * Q due (300 < 310), used, its stay b+50..b+150 exits <= 300: in time */
    d = doc_at(F, T(B0 + 310));
    CHECK_GROUP(d, "G", NULL, "expected_departures=1 status_changes=1");
    CHECK_GROUP(d, "A", NULL, "expected_departures=1 in_time_departures=1");
    CHECK_DQ(d, "");
    json_decref(d);
}
END_TEST

START_TEST(test_transfer_vf_after_end_plus_grace_plus_one_is_not_transfer)
{
    GRANT("m1", B0, "P", "G", "UKR", B0, B0 + 100);
    ENTRY("m1", B0 + 10);
    GRANT("m1", B0 + 50, "Q", "A", "UKR", B0 + 107, B0 + 300); /* 107 > 100+5+1 */
    json_t *d = doc_at(F, T(B0 + 60));
    CHECK_GROUP(d, "G", NULL, "present=1"); /* still on P */
    CHECK_GROUP(d, "A", NULL, "");
    json_decref(d);
    EXIT("m1", B0 + 150);
    /* P: exit b+150 > E+grace = b+105: late, overstay days 150-100 = 50.
     * Q: never used, due as of b+310, not revoked: no-show */
    d = doc_at(F, T(B0 + 310));
    CHECK_GROUP(d, "G", NULL,
                "expected_departures=1 late_departures=1 overstay_days=50");
    CHECK_GROUP(d, "A", NULL, "no_shows=1");
    json_decref(d);
}
END_TEST

START_TEST(test_transfer_while_overstaying)
{
    /* present on P after E(P): a grant whose vf <= E+grace+1 still
     * transfers (the rule only looks at vf(Q)): P is a status change */
    GRANT("m1", B0, "P", "G", "UKR", B0, B0 + 100);
    ENTRY("m1", B0 + 10);
    GRANT("m1", B0 + 120, "Q", "A", "UKR", B0 + 90, B0 + 400);
    json_t *d = doc_at(F, T(B0 + 130));
    CHECK_GROUP(d, "G", NULL, "expected_departures=1 status_changes=1");
    CHECK_GROUP(d, "A", NULL, "present=1");
    json_decref(d);
}
END_TEST

START_TEST(test_transfer_needs_presence_on_permit)
{
    /* absent migrant: a grant does nothing; P's last stay decides */
    GRANT("m1", B0, "P", "A", "UKR", B0, B0 + 100);
    ENTRY("m1", B0 + 10);
    EXIT("m1", B0 + 20);
    GRANT("m1", B0 + 30, "Q", "B", "UKR", B0 + 30, B0 + 200);
    /* P in time; Q unused, not due as of b+101 */
    json_t *d = doc_at(F, T(B0 + 101));
    CHECK_GROUP(d, "A", NULL, "expected_departures=1 in_time_departures=1");
    CHECK_GROUP(d, "B", NULL, "");
    json_decref(d);
}
END_TEST

START_TEST(test_in_country_grant)
{
    ENTRY("m1", B0 + 10); /* no permit: entry without permit */
    GRANT("m1", B0 + 20, "Q", "A", "UKR", B0 + 5, B0 + 100); /* 5 <= 20 <= 100 */
    json_t *d = doc_at(F, T(B0 + 21));
    CHECK_GROUP(d, "A", NULL, "present=1");
    json_decref(d);
    EXIT("m1", B0 + 90);
    d = doc_at(F, T(B0 + 101));
    CHECK_DQ(d, "entries_without_permit=1");
    CHECK_GROUP(d, "A", NULL, "expected_departures=1 in_time_departures=1");
    json_decref(d);
}
END_TEST

START_TEST(test_in_country_grant_bounds)
{
    /* m1: vf(Q) = d: used. m2: d = E(Q): used. m3: vf(Q) = d + 1: not used.
     * m4: d = E(Q) + 1: not used. */
    ENTRY("m1", B0 + 10);
    GRANT("m1", B0 + 20, "Q", "A", "UKR", B0 + 20, B0 + 40);
    ENTRY("m2", B0 + 10);
    GRANT("m2", B0 + 20, "Q", "A", "UKR", B0 + 5, B0 + 20);
    ENTRY("m3", B0 + 10);
    GRANT("m3", B0 + 20, "Q", "A", "UKR", B0 + 21, B0 + 40);
    ENTRY("m4", B0 + 10);
    GRANT("m4", B0 + 20, "Q", "A", "UKR", B0 + 5, B0 + 19);
    /* as of b+20: m1, m2 present on Q; m4's Q (E b+19) is already due and
     * unused: a no-show */
    json_t *d = doc_at(F, T(B0 + 20));
    CHECK_GROUP(d, "A", NULL, "present=2 no_shows=1");
    json_decref(d);
    for (int i = 1; i <= 4; i++) {
        char m[8];
        snprintf(m, sizeof m, "m%d", i);
        EXIT(m, B0 + 30);
    }
    /* as of b+50 all due. m1: exit 30 <= 40 in time. m2: exit 30 > 20: late,
     * 10 days. m3, m4: unused, no-shows */
    d = doc_at(F, T(B0 + 50));
    CHECK_GROUP(d, "A", NULL,
                "expected_departures=2 in_time_departures=1 late_departures=1 "
                "overstay_days=10 no_shows=2");
    CHECK_DQ(d, "entries_without_permit=4");
    json_decref(d);
}
END_TEST

/* ================= fold: Entry ================= */

START_TEST(test_entry_while_present)
{
    /* m1 on a permit, m2 without a permit, m3 exempt: a second entry each */
    GRANT("m1", B0, "P", "A", "UKR", B0, B0 + 100);
    ENTRY("m1", B0 + 10);
    ENTRY("m1", B0 + 20);
    ENTRY("m2", B0 + 10);
    ENTRY("m2", B0 + 20);
    GRANT("m3", B0, "P", "A", "UKR", B0, B0 + 100);
    ENTRY("m3", B0 + 10);
    FEED(F, ev_status(NULL, "m3", T(B0 + 15), 2));
    ENTRY("m3", B0 + 20);
    json_t *d = doc_at(F, T(B0 + 30));
    CHECK_DQ(d, "entries_while_present=3 entries_without_permit=1");
    CHECK_GROUP(d, "A", NULL, "present=1"); /* m1 only */
    json_decref(d);
    /* the extra entry changed nothing: m1 exits b+90, in time */
    EXIT("m1", B0 + 90);
    d = doc_at(F, T(B0 + 101));
    CHECK_GROUP(d, "A", NULL,
                "expected_departures=2 in_time_departures=1 status_changes=1");
    json_decref(d);
}
END_TEST

START_TEST(test_entry_without_permit)
{
    /* G grace 5, P days b+10..b+20: entry at b+9 (before vf) and at b+21
     * (after E, grace does not extend it) find no permit */
    GRANT("m1", B0, "P", "G", "UKR", B0 + 10, B0 + 20);
    ENTRY("m1", B0 + 9);
    EXIT("m1", B0 + 9);
    ENTRY("m1", B0 + 21);
    json_t *d = doc_at(F, T(B0 + 22));
    CHECK_DQ(d, "entries_without_permit=2");
    CHECK_GROUP(d, "G", NULL, ""); /* permit-less: not present on G */
    json_decref(d);
    EXIT("m1", B0 + 22); /* exit of a permit-less presence: not w/o entry */
    d = doc_at(F, T(B0 + 30));
    /* P unused, due (20+5 < 30): no-show */
    CHECK_DQ(d, "entries_without_permit=2");
    CHECK_GROUP(d, "G", NULL, "no_shows=1");
    json_decref(d);
}
END_TEST

START_TEST(test_entry_attaches_on_vf_and_E)
{
    GRANT("m1", B0, "P", "A", "UKR", B0 + 10, B0 + 20);
    ENTRY("m1", B0 + 10); /* d = vf */
    EXIT("m1", B0 + 10);
    GRANT("m2", B0, "P", "A", "UKR", B0 + 10, B0 + 20);
    ENTRY("m2", B0 + 20); /* d = E */
    EXIT("m2", B0 + 20);
    json_t *d = doc_at(F, T(B0 + 21));
    CHECK_DQ(d, "");
    CHECK_GROUP(d, "A", NULL, "expected_departures=2 in_time_departures=2");
    json_decref(d);
}
END_TEST

START_TEST(test_entry_attaches_to_most_recent_valid_permit)
{
    GRANT("m1", B0 - 10, "P1", "A", "UKR", B0, B0 + 100);
    GRANT("m1", B0 - 5, "P2", "B", "UKR", B0, B0 + 100);
    GRANT("m1", B0 - 3, "P3", "A", "UKR", B0 + 50, B0 + 200); /* latest, not valid at b+10 */
    ENTRY("m1", B0 + 10);
    EXIT("m1", B0 + 60);
    /* entry attaches to P2 (latest valid). As of b+201 all due:
     * P1, P3 unused: 2 no-shows in A; P2 exit 60 <= 100: in time in B */
    json_t *d = doc_at(F, T(B0 + 201));
    CHECK_GROUP(d, "A", NULL, "no_shows=2");
    CHECK_GROUP(d, "B", NULL, "expected_departures=1 in_time_departures=1");
    json_decref(d);
}
END_TEST

START_TEST(test_entry_attaches_most_recent_in_folding_order)
{
    /* P1 (A) arrives first but occurred at b-3; P2 (B) arrives later but
     * occurred at b-5: in folding order P1 is the most recent */
    GRANT("m1", B0 - 3, "P1", "A", "UKR", B0, B0 + 100);
    GRANT("m1", B0 - 5, "P2", "B", "UKR", B0, B0 + 100);
    ENTRY("m1", B0 + 10);
    EXIT("m1", B0 + 60);
    json_t *d = doc_at(F, T(B0 + 101));
    CHECK_GROUP(d, "A", NULL, "expected_departures=1 in_time_departures=1");
    CHECK_GROUP(d, "B", NULL, "no_shows=1");
    CHECK_DQ(d, "out_of_order=1");
    json_decref(d);
}
END_TEST

/* ================= fold: Exit ================= */

START_TEST(test_exit_without_entry)
{
    EXIT("m1", B0);
    EXIT("m1", B0 + 1);
    GRANT("m1", B0 + 2, "P", "A", "UKR", B0, B0 + 100);
    ENTRY("m1", B0 + 3);
    EXIT("m1", B0 + 4);
    EXIT("m1", B0 + 5);
    json_t *d = doc_at(F, T(B0 + 6));
    CHECK_DQ(d, "exits_without_entry=3");
    json_decref(d);
}
END_TEST

START_TEST(test_exit_from_exempt_and_permitless)
{
    ENTRY("m1", B0); /* permit-less */
    EXIT("m1", B0 + 1);
    GRANT("m2", B0, "P", "A", "UKR", B0, B0 + 100);
    ENTRY("m2", B0 + 1);
    FEED(F, ev_status(NULL, "m2", T(B0 + 2), 1)); /* exempt */
    EXIT("m2", B0 + 3);
    ENTRY("m2", B0 + 4); /* absent again: attaches to P */
    json_t *d = doc_at(F, T(B0 + 5));
    CHECK_DQ(d, "entries_without_permit=1");
    CHECK_GROUP(d, "A", NULL, "present=1");
    json_decref(d);
}
END_TEST

/* ================= fold: PermitExtended / PermitRevoked ================= */

START_TEST(test_extend_unknown)
{
    FEED(F, ev_extend(NULL, "m1", T(B0), "nope", T(B0 + 10)));
    FEED(F, ev_revoke(NULL, "m1", T(B0), "nope", 0));
    GRANT("m2", B0, "P", "A", "UKR", B0, B0 + 100);
    FEED(F, ev_extend(NULL, "m1", T(B0 + 1), "P", T(B0 + 200))); /* m2's permit */
    json_t *d = doc_at(F, T(B0 + 2));
    CHECK_DQ(d, "unknown_permit=3");
    json_decref(d);
}
END_TEST

START_TEST(test_extend_late_admin)
{
    /* G grace 5, E = b+100. m1 extends at b+105 = E+grace: applied.
     * m2 at b+106 > E+grace: late admin event, ignored. */
    GRANT("m1", B0, "P", "G", "UKR", B0, B0 + 100);
    ENTRY("m1", B0 + 10);
    FEED(F, ev_extend(NULL, "m1", T(B0 + 105), "P", T(B0 + 200)));
    GRANT("m2", B0, "P", "G", "UKR", B0, B0 + 100);
    ENTRY("m2", B0 + 10);
    FEED(F, ev_extend(NULL, "m2", T(B0 + 106), "P", T(B0 + 200)));
    /* as of b+150: m1's P (E b+200) not due. m2's P due (105 < 150), no exit:
     * in-country overstay of 150 - 100 = 50 days */
    json_t *d = doc_at(F, T(B0 + 150));
    CHECK_DQ(d, "late_admin_events=1");
    CHECK_GROUP(d, "G", NULL,
                "expected_departures=1 in_country_overstays=1 overstay_days=50 present=2");
    json_decref(d);
}
END_TEST

START_TEST(test_extend_moves_cohort)
{
    GRANT("m1", DN(2024, 2, 20), "P", "A", "UKR", DN(2024, 3, 1), DN(2024, 5, 31));
    ENTRY("m1", DN(2024, 3, 5));
    FEED(F, ev_extend(NULL, "m1", D(2024, 5, 20), "P", D(2024, 7, 15)));
    EXIT("m1", DN(2024, 7, 10));
    /* final E = 2024-07-15: exit 07-10 in time, cohort 2024-07 */
    json_t *d = doc_at(F, D(2024, 8, 1));
    CHECK_GROUP(d, "A", "cohort:2024-07", "expected_departures=1 in_time_departures=1");
    CHECK_GROUP(d, "A", "cohort:2024-05", "");
    json_decref(d);
}
END_TEST

START_TEST(test_extend_can_shorten)
{
    GRANT("m1", B0, "P", "A", "UKR", DN(2024, 3, 1), DN(2024, 5, 31));
    ENTRY("m1", DN(2024, 3, 5));
    /* E = day(valid_until), also when earlier */
    FEED(F, ev_extend(NULL, "m1", D(2024, 4, 1), "P", D(2024, 4, 30)));
    EXIT("m1", DN(2024, 5, 10));
    /* exit 05-10 > 04-30: late, 10 days, cohort 2024-04 */
    json_t *d = doc_at(F, D(2024, 6, 1));
    CHECK_GROUP(d, "A", "cohort:2024-04",
                "expected_departures=1 late_departures=1 overstay_days=10");
    json_decref(d);
}
END_TEST

START_TEST(test_revoke_min_E_and_no_noshow)
{
    /* m1: unused P revoked at b+20: E = b+20, revoked: never a no-show.
     * m2: the same unrevoked: a no-show. */
    GRANT("m1", B0, "P", "A", "UKR", B0, B0 + 100);
    FEED(F, ev_revoke(NULL, "m1", T(B0 + 20), "P", 0));
    GRANT("m2", B0, "P", "A", "MDA", B0, B0 + 100);
    json_t *d = doc_at(F, T(B0 + 200));
    CHECK_GROUP(d, "A", NULL, "no_shows=1");
    CHECK_GROUP(d, "A", "nat:MDA", "no_shows=1");
    CHECK_GROUP(d, "A", "nat:UKR", "");
    json_decref(d);
}
END_TEST

START_TEST(test_revoke_effective_at)
{
    /* m1: used, revoked at b+30 effective b+40: E = min(100, 40) = 40; no exit:
     * as of b+60 an in-country overstay of 60 - 40 = 20 days (cohort of b+40
     * = 2024-04-10: 2024-04) */
    GRANT("m1", B0, "P", "A", "UKR", B0, B0 + 100);
    ENTRY("m1", B0 + 10);
    FEED(F, ev_revoke(NULL, "m1", T(B0 + 30), "P", T(B0 + 40)));
    /* m2: effective_at 0 = occurred_at: E = b+30; exit b+35: late, 5 days
     * (cohort of b+30 = 2024-03-31: 2024-03) */
    GRANT("m2", B0, "P", "A", "UKR", B0, B0 + 100);
    ENTRY("m2", B0 + 10);
    FEED(F, ev_revoke(NULL, "m2", T(B0 + 30), "P", 0));
    EXIT("m2", B0 + 35);
    /* m3: effective after E: E = min(100, 150) = 100 unchanged; exit b+90 in
     * time, as of b+160 */
    GRANT("m3", B0, "P", "B", "UKR", B0, B0 + 100);
    ENTRY("m3", B0 + 10);
    FEED(F, ev_revoke(NULL, "m3", T(B0 + 30), "P", T(B0 + 150)));
    EXIT("m3", B0 + 90);
    json_t *d = doc_at(F, T(B0 + 60));
    CHECK_GROUP(d, "A", NULL,
                "expected_departures=2 in_country_overstays=1 late_departures=1 "
                "overstay_days=25 present=1");
    CHECK_GROUP(d, "A", "cohort:2024-04",
                "expected_departures=1 in_country_overstays=1 overstay_days=20");
    CHECK_GROUP(d, "A", "cohort:2024-03",
                "expected_departures=1 late_departures=1 overstay_days=5");
    CHECK_GROUP(d, "B", NULL, "");
    json_decref(d);
    d = doc_at(F, T(B0 + 101));
    CHECK_GROUP(d, "B", NULL, "expected_departures=1 in_time_departures=1");
    json_decref(d);
}
END_TEST

START_TEST(test_revoke_late_admin)
{
    /* A grace 0, E = b+100: revocation at b+101 is a late admin event,
     * ignored: the unused permit stays unrevoked, a no-show */
    GRANT("m1", B0, "P", "A", "UKR", B0, B0 + 100);
    FEED(F, ev_revoke(NULL, "m1", T(B0 + 101), "P", T(B0 + 50)));
    /* at b+100 = E + grace it is still applied */
    GRANT("m2", B0, "P", "A", "UKR", B0, B0 + 100);
    FEED(F, ev_revoke(NULL, "m2", T(B0 + 100), "P", 0));
    json_t *d = doc_at(F, T(B0 + 102));
    CHECK_DQ(d, "late_admin_events=1");
    CHECK_GROUP(d, "A", NULL, "no_shows=1");
    json_decref(d);
}
END_TEST

/* ================= fold: StatusChanged ================= */

START_TEST(test_status_change_on_permit_exempt)
{
    GRANT("m1", B0, "P", "A", "UKR", B0, B0 + 100);
    ENTRY("m1", B0 + 10);
    FEED(F, ev_status(NULL, "m1", T(B0 + 20), 1));
    json_t *d = doc_at(F, T(B0 + 50));
    CHECK_GROUP(d, "A", NULL, ""); /* exempt: not present on a permit */
    json_decref(d);
    /* long after E: still no overstay, a status change */
    d = doc_at(F, T(B0 + 500));
    CHECK_GROUP(d, "A", NULL, "expected_departures=1 status_changes=1");
    CHECK_GROUP(d, "A", "nat:UKR", "expected_departures=1 status_changes=1");
    json_decref(d);
}
END_TEST

START_TEST(test_status_change_exempt_blocks_grants)
{
    /* exempt is not "present without a permit" nor "on a permit": a later
     * grant valid on its day is neither in-country nor a transfer */
    GRANT("m1", B0, "P", "A", "UKR", B0, B0 + 100);
    ENTRY("m1", B0 + 10);
    FEED(F, ev_status(NULL, "m1", T(B0 + 20), 1));
    GRANT("m1", B0 + 30, "Q", "B", "UKR", B0 + 25, B0 + 60);
    json_t *d = doc_at(F, T(B0 + 101));
    CHECK_GROUP(d, "A", NULL, "expected_departures=1 status_changes=1");
    CHECK_GROUP(d, "B", NULL, "no_shows=1");
    json_decref(d);
}
END_TEST

START_TEST(test_status_change_without_permit)
{
    /* m1: permit-less then exempt; Q valid on its grant day is not used.
     * m2: the same without status change: in-country grant, Q used. */
    ENTRY("m1", B0 + 10);
    FEED(F, ev_status(NULL, "m1", T(B0 + 15), 2));
    GRANT("m1", B0 + 20, "Q", "A", "UKR", B0 + 5, B0 + 60);
    ENTRY("m1", B0 + 25); /* exempt is present */
    ENTRY("m2", B0 + 10);
    GRANT("m2", B0 + 20, "Q", "A", "MDA", B0 + 5, B0 + 60);
    json_t *d = doc_at(F, T(B0 + 61));
    CHECK_DQ(d, "entries_without_permit=2 entries_while_present=1");
    /* m1's Q: no-show. m2's Q: used, no exit: in-country overstay 61-60 = 1 */
    CHECK_GROUP(d, "A", "nat:UKR", "no_shows=1");
    CHECK_GROUP(d, "A", "nat:MDA",
                "expected_departures=1 in_country_overstays=1 overstay_days=1");
    CHECK_GROUP(d, "A", NULL,
                "no_shows=1 expected_departures=1 in_country_overstays=1 overstay_days=1 "
                "present=1");
    json_decref(d);
}
END_TEST

START_TEST(test_status_change_when_absent)
{
    FEED(F, ev_status(NULL, "m1", T(B0 + 1), 4)); /* nothing */
    GRANT("m1", B0, "P", "A", "UKR", B0, B0 + 100);
    ENTRY("m1", B0 + 10); /* attaches normally */
    json_t *d = doc_at(F, T(B0 + 11));
    CHECK_DQ(d, "out_of_order=1");
    CHECK_GROUP(d, "A", NULL, "present=1");
    json_decref(d);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("rules_events");
    TCase *tc = tcase_create("rules");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_transfer);
    tcase_add_test(tc, test_transfer_vf_after_end_plus_grace_plus_one_is_not_transfer);
    tcase_add_test(tc, test_transfer_while_overstaying);
    tcase_add_test(tc, test_transfer_needs_presence_on_permit);
    tcase_add_test(tc, test_in_country_grant);
    tcase_add_test(tc, test_in_country_grant_bounds);
    tcase_add_test(tc, test_entry_while_present);
    tcase_add_test(tc, test_entry_without_permit);
    tcase_add_test(tc, test_entry_attaches_on_vf_and_E);
    tcase_add_test(tc, test_entry_attaches_to_most_recent_valid_permit);
    tcase_add_test(tc, test_entry_attaches_most_recent_in_folding_order);
    tcase_add_test(tc, test_exit_without_entry);
    tcase_add_test(tc, test_exit_from_exempt_and_permitless);
    tcase_add_test(tc, test_extend_unknown);
    tcase_add_test(tc, test_extend_late_admin);
    tcase_add_test(tc, test_extend_moves_cohort);
    tcase_add_test(tc, test_extend_can_shorten);
    tcase_add_test(tc, test_revoke_min_E_and_no_noshow);
    tcase_add_test(tc, test_revoke_effective_at);
    tcase_add_test(tc, test_revoke_late_admin);
    tcase_add_test(tc, test_status_change_on_permit_exempt);
    tcase_add_test(tc, test_status_change_exempt_blocks_grants);
    tcase_add_test(tc, test_status_change_without_permit);
    tcase_add_test(tc, test_status_change_when_absent);
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
