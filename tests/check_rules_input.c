/* check_rules_input.c - INDICATORS.md section 2, steps 1-3, rule by rule:
 * validation, duplicates, lateness and order.
 *
 * Every expected figure is derived by hand from the contract; the comment
 * next to each assertion gives the derivation (conventions: cm_rules.h). */
#include "cm_rules.h"

/* ================= 1. validate ================= */

START_TEST(test_validate_missing_event_id)
{
    invalid_one(ev_entry("", "m1", T(B0)), CM_REJ_NO_EVENT_ID);
    json_t *d = doc_at(F, T(B0 + 1));
    CHECK_DQ(d, "invalid=1"); /* the entry never reached the fold */
    ck_assert_uint_eq(cm_engine_migrants(F->en), 0);
    json_decref(d);
}
END_TEST

START_TEST(test_validate_missing_migrant_id)
{
    invalid_one(ev_entry("e1", "", T(B0)), CM_REJ_NO_MIGRANT_ID);
    json_t *d = doc_at(F, T(B0 + 1));
    CHECK_DQ(d, "invalid=1");
    json_decref(d);
}
END_TEST

START_TEST(test_validate_missing_body)
{
    invalid_one(ev_nobody("e1", "m1", T(B0)), CM_REJ_NO_BODY);
    json_t *d = doc_at(F, T(B0 + 1));
    CHECK_DQ(d, "invalid=1");
    json_decref(d);
}
END_TEST

START_TEST(test_validate_occurred_at_not_positive)
{
    invalid_one(ev_entry("e1", "m1", 0), CM_REJ_NO_OCCURRED_AT);
    invalid_one(ev_entry("e2", "m1", -86400), CM_REJ_OUT_OF_RANGE); /* below 0: out of range first */
    FEED(F, ev_exit("e3", "m1", 1)); /* occurred_at = 1 > 0 is valid: exit w/o entry */
    json_t *d = doc_at(F, T(B0));
    CHECK_DQ(d, "invalid=2 exits_without_entry=1");
    json_decref(d);
}
END_TEST

START_TEST(test_validate_granted_fields)
{
    int64_t t = T(B0);
    invalid_one(ev_grant("g1", "m1", t, "", "A", "UKR", t, t + 10 * DAY), CM_REJ_NO_PERMIT_ID);
    invalid_one(ev_grant("g2", "m1", t, "p", "", "UKR", t, t + 10 * DAY), CM_REJ_NO_SCHEME_ID);
    invalid_one(ev_grant("g3", "m1", t, "p", "A", "UKR", 0, t + 10 * DAY), CM_REJ_NO_VALID_FROM);
    invalid_one(ev_grant("g4", "m1", t, "p", "A", "UKR", t, 0), CM_REJ_NO_VALID_UNTIL);
    /* valid_until < valid_from, by one second */
    invalid_one(ev_grant("g5", "m1", t, "p", "A", "UKR", t, t - 1), CM_REJ_VALIDITY_ORDER);
    /* valid_until == valid_from is valid; nationality is optional */
    FEED(F, ev_grant("g6", "m1", t, "p", "A", "", t, t));
    /* none of the invalid grants created permit p: g6 granted it, so an
     * extension of p is known (applied: d = b <= E + 0 = b) */
    FEED(F, ev_extend("x1", "m1", t, "p", t + 5 * DAY));
    /* p unused, E = b + 5, due as of b + 6: one no-show in cohort 2024-03,
     * nationality XXX */
    json_t *d = doc_at(F, T(B0 + 6));
    CHECK_DQ(d, "invalid=5");
    CHECK_GROUP(d, "A", NULL, "no_shows=1");
    CHECK_GROUP(d, "A", "nat:XXX", "no_shows=1");
    CHECK_GROUP(d, "A", "cohort:2024-03", "no_shows=1");
    json_decref(d);
}
END_TEST

START_TEST(test_validate_extended_fields)
{
    GRANT("m1", B0, "p", "A", "UKR", B0, B0 + 10);
    invalid_one(ev_extend("x1", "m1", T(B0 + 1), "", T(B0 + 20)), CM_REJ_NO_PERMIT_ID);
    invalid_one(ev_extend("x2", "m1", T(B0 + 1), "p", 0), CM_REJ_NO_VALID_UNTIL);
    /* p keeps E = b + 10: an unused permit due as of b + 11 */
    json_t *d = doc_at(F, T(B0 + 11));
    CHECK_DQ(d, "invalid=2");
    CHECK_GROUP(d, "A", NULL, "no_shows=1");
    json_decref(d);
}
END_TEST

START_TEST(test_validate_revoked_fields)
{
    GRANT("m1", B0, "p", "A", "UKR", B0, B0 + 10);
    invalid_one(ev_revoke("r1", "m1", T(B0 + 1), "", 0), CM_REJ_NO_PERMIT_ID);
    /* effective_at is optional: a valid revocation with effective_at 0 */
    FEED(F, ev_revoke("r2", "m1", T(B0 + 2), "p", 0));
    /* p revoked (E = b + 2), unused: due as of b + 11 but revoked, so no
     * no-show and nothing at all */
    json_t *d = doc_at(F, T(B0 + 11));
    CHECK_DQ(d, "invalid=1");
    CHECK_GROUP(d, "A", NULL, "");
    json_decref(d);
}
END_TEST

START_TEST(test_validate_status_body_may_be_empty)
{
    /* StatusChanged and Entry/Exit have no required field: empty bodies are valid */
    FEED(F, ev_status("s1", "m1", T(B0), 0));
    FEED(F, ev_exit("s2", "m1", T(B0 + 1)));
    json_t *d = doc_at(F, T(B0 + 2));
    CHECK_DQ(d, "exits_without_entry=1");
    json_decref(d);
}
END_TEST

/* Sets field k of e to a string of n bytes 'x'. */
static void set_long(struct tev *e, int k, size_t n)
{
    char *f[] = {e->eid, e->mid, e->source, e->ms, e->bp, e->pid, e->scheme, e->nat,
                 e->sector, e->reason, e->detail};
    memset(f[k], 'x', n);
    f[k][n] = 0;
}

START_TEST(test_validate_string_257_invalid_256_valid)
{
    /* every string field of every body: 257 bytes invalid, 256 valid.
     * field k: 0 eid 1 mid 2 source 3 member_state 4 border_point 5 permit_id
     * 6 scheme 7 nationality 8 sector 9 reason 10 detail */
    struct {
        int type, k;
    } cases[] = {
        {TE_EXIT, 0},    {TE_EXIT, 1},    {TE_EXIT, 2},    {TE_ENTRY, 3},   {TE_ENTRY, 4},
        {TE_EXIT, 3},    {TE_EXIT, 4},    {TE_GRANT, 5},   {TE_GRANT, 6},   {TE_GRANT, 7},
        {TE_GRANT, 8},   {TE_GRANT, 3},   {TE_EXTEND, 5},  {TE_REVOKE, 5},  {TE_REVOKE, 9},
        {TE_STATUS, 10},
    };
    size_t nc = sizeof cases / sizeof cases[0];
    for (size_t i = 0; i < nc; i++) {
        for (int len = 257; len >= 256; len--) {
            char mid[32], eid[32];
            snprintf(mid, sizeof mid, "m%zu-%d", i, len);
            snprintf(eid, sizeof eid, "e%zu-%d", i, len);
            struct tev e = ev_base(cases[i].type, eid, mid, T(B0));
            snprintf(e.pid, TS, "p");
            snprintf(e.scheme, TS, "A");
            e.vf = T(B0);
            e.vu = T(B0 + 10);
            set_long(&e, cases[i].k, (size_t)len);
            int rc = feed(F, e);
            if (len == 257)
                ck_assert_msg(rc == CM_REJ_STRING_TOO_LONG, "case %zu: 257 bytes gave %d", i,
                              rc);
            else
                ck_assert_msg(rc == CM_OK, "case %zu: 256 bytes gave %d", i, rc);
        }
    }
    json_t *d = doc_at(F, T(B0 + 100));
    /* 16 invalid. Valid ones: exits (cases 0,1,2,5,6) are exits without entry
     * = 5; the entries (3,4) are entries without permit = 2 (their migrants
     * hold nothing); extend (256-byte id), revoke (256-byte id) and revoke
     * (of "p", which that migrant does not hold) = 3 unknown permits. */
    CHECK_DQ(d, "invalid=16 exits_without_entry=5 entries_without_permit=2 unknown_permit=3");
    json_decref(d);
}
END_TEST

START_TEST(test_validate_invalid_event_not_folded)
{
    /* an invalid grant does not create its permit, an invalid entry does not
     * make the migrant present */
    struct tev g = ev_grant("g1", "m1", T(B0), "p", "A", "UKR", T(B0), T(B0 + 10));
    set_long(&g, 8, 300);
    invalid_one(g, CM_REJ_STRING_TOO_LONG);
    struct tev e = ev_entry("e1", "m1", T(B0 + 1));
    snprintf(e.source, TS, "%s", "");
    e.eid[0] = 0;
    invalid_one(e, CM_REJ_NO_EVENT_ID);
    EXIT("m1", B0 + 2);                                      /* exit without entry */
    FEED(F, ev_extend(NULL, "m1", T(B0 + 3), "p", T(B0 + 20))); /* unknown permit */
    json_t *d = doc_at(F, T(B0 + 30));
    CHECK_DQ(d, "invalid=2 exits_without_entry=1 unknown_permit=1");
    CHECK_GROUP(d, "A", NULL, "");
    json_decref(d);
}
END_TEST

/* ================= 2. deduplicate ================= */

START_TEST(test_dedupe_event_id)
{
    GRANT("m1", B0, "p", "A", "UKR", B0, B0 + 100);
    FEED(F, ev_entry("e1", "m1", T(B0 + 10)));
    FEED(F, ev_entry("e1", "m1", T(B0 + 10))); /* the same message again */
    /* same id, other content: still a duplicate, dropped (no exit happens) */
    FEED(F, ev_exit("e1", "m1", T(B0 + 20)));
    json_t *d = doc_at(F, T(B0 + 30));
    /* no entry while present: the copy took no further step; still present */
    CHECK_DQ(d, "duplicates=2");
    CHECK_GROUP(d, "A", NULL, "present=1");
    json_decref(d);
}
END_TEST

START_TEST(test_dedupe_scoped_to_migrant)
{
    FEED(F, ev_grant("g", "m1", T(B0), "p", "A", "UKR", T(B0), T(B0 + 100)));
    FEED(F, ev_grant("g", "m2", T(B0), "p", "A", "UKR", T(B0), T(B0 + 100)));
    FEED(F, ev_entry("e", "m1", T(B0 + 1)));
    FEED(F, ev_entry("e", "m2", T(B0 + 1)));
    json_t *d = doc_at(F, T(B0 + 2));
    /* ids and permit ids are the migrant's: nothing is a duplicate */
    CHECK_DQ(d, "");
    CHECK_GROUP(d, "A", NULL, "present=2");
    json_decref(d);
}
END_TEST

START_TEST(test_dedupe_permit_granted_same_id)
{
    GRANT("m1", B0, "p", "A", "UKR", B0, B0 + 10);
    /* the same permit id again, new event id, other scheme and validity:
     * dropped as a duplicate, the first grant stands */
    FEED(F, ev_grant("g2", "m1", T(B0 + 1), "p", "B", "MDA", T(B0), T(B0 + 50)));
    /* p (A, E = b + 10) unused: as of b + 11 a no-show in A, nat UKR;
     * nothing in B */
    json_t *d = doc_at(F, T(B0 + 11));
    CHECK_DQ(d, "duplicates=1");
    CHECK_GROUP(d, "A", NULL, "no_shows=1");
    CHECK_GROUP(d, "A", "nat:UKR", "no_shows=1");
    CHECK_GROUP(d, "B", NULL, "");
    json_decref(d);
}
END_TEST

START_TEST(test_dedupe_before_lateness)
{
    FEED(F, ev_exit("e1", "m1", T(B0)));
    FEED(F, ev_exit("e2", "m1", T(B0 + 100)));
    /* e1 again: it is among the last 32 accepted, so a duplicate, which takes
     * no further step: not too late, not out of order */
    FEED(F, ev_exit("e1", "m1", T(B0)));
    json_t *d = doc_at(F, T(B0 + 101));
    CHECK_DQ(d, "duplicates=1 exits_without_entry=2");
    json_decref(d);
}
END_TEST

START_TEST(test_dedupe_only_accepted_events)
{
    /* an invalid event does not reserve its id */
    struct tev x = ev_exit("e1", "m1", T(B0));
    set_long(&x, 2, 257);
    invalid_one(x, CM_REJ_STRING_TOO_LONG);
    FEED(F, ev_exit("e1", "m1", T(B0))); /* accepted: exit without entry */
    /* a too-late event does not reserve its id either: sent twice, too late twice */
    FEED(F, ev_exit("e2", "m1", T(B0 + 100)));
    FEED(F, ev_exit("e3", "m1", T(B0 + 50)));
    FEED(F, ev_exit("e3", "m1", T(B0 + 50)));
    json_t *d = doc_at(F, T(B0 + 101));
    CHECK_DQ(d, "invalid=1 too_late=2 exits_without_entry=2");
    json_decref(d);
}
END_TEST

START_TEST(test_dedupe_last_32)
{
    /* m1: e0 then 32 more accepted events one hour apart (all within the
     * window): copies of e0 and e32 are duplicates */
    for (int i = 0; i <= 32; i++) {
        char id[16];
        snprintf(id, sizeof id, "e%d", i);
        FEED(F, ev_exit(id, "m1", T(B0) + i * 3600));
    }
    FEED(F, ev_exit("e0", "m1", T(B0)));
    FEED(F, ev_exit("e32", "m1", T(B0) + 32 * 3600));
    /* m2: "old" at b, then 31 accepted events 40 days later: "old" is out of
     * the window but among the last 32 accepted: its copy is a duplicate
     * (dedupe comes before lateness), not too late */
    FEED(F, ev_exit("old", "m2", T(B0)));
    for (int i = 0; i < 31; i++)
        FEED(F, ev_exit(NULL, "m2", T(B0 + 40) + i * 60));
    FEED(F, ev_exit("old", "m2", T(B0)));
    json_t *d = doc_at(F, T(B0 + 41));
    /* exits without entry: 33 (m1) + 32 (m2) */
    CHECK_DQ(d, "duplicates=3 exits_without_entry=65");
    json_decref(d);
}
END_TEST

/* ================= 3/4. lateness, accept, out of order ================= */

START_TEST(test_too_late)
{
    int64_t t0 = T(B0) + 1234; /* seconds matter: the window is in seconds */
    FEED(F, ev_exit("a", "m1", t0));
    /* exactly L - 30 * 86400: accepted, out of order; folded before a */
    FEED(F, ev_exit("b", "m1", t0 - 30 * DAY));
    /* one second earlier: too late, set aside, counted, not folded */
    ck_assert_int_eq(feed(F, ev_exit("c", "m1", t0 - 30 * DAY - 1)), CM_OK);
    json_t *d = doc_at(F, t0);
    CHECK_DQ(d, "too_late=1 out_of_order=1 exits_without_entry=2");
    json_decref(d);
}
END_TEST

START_TEST(test_too_late_per_migrant_and_L_of_accepted_only)
{
    FEED(F, ev_exit(NULL, "m1", T(B0 + 100)));
    /* another migrant's L is its own: m2 at b is not late */
    FEED(F, ev_exit(NULL, "m2", T(B0)));
    /* too late for m1 (b + 50 < b + 100 - 30) */
    FEED(F, ev_exit(NULL, "m1", T(B0 + 50)));
    /* duplicates and invalid events do not move L: m2 stays at L = b */
    FEED(F, ev_exit("zz", "m2", T(B0 + 1)));
    FEED(F, ev_exit("zz", "m2", T(B0 + 400))); /* duplicate, no further step */
    struct tev bad = ev_exit("yy", "m2", T(B0 + 400));
    set_long(&bad, 4, 300);
    invalid_one(bad, CM_REJ_STRING_TOO_LONG);
    FEED(F, ev_exit(NULL, "m2", T(B0 + 2))); /* not too late: L = b + 1 */
    json_t *d = doc_at(F, T(B0 + 400));
    CHECK_DQ(d, "invalid=1 duplicates=1 too_late=1 exits_without_entry=4");
    json_decref(d);
}
END_TEST

START_TEST(test_reorder_window_configurable)
{
    struct fx *f = fx_new(5, SCHEMES);
    ck_assert_int_eq(feed(f, ev_exit(NULL, "m1", T(B0 + 10))), CM_OK);
    ck_assert_int_eq(feed(f, ev_exit(NULL, "m1", T(B0 + 5))), CM_OK);  /* = L - 5 d: accepted */
    ck_assert_int_eq(feed(f, ev_exit(NULL, "m1", T(B0 + 4))), CM_OK);  /* too late */
    json_t *d = doc_at(f, T(B0 + 10));
    CHECK_DQ(d, "too_late=1 out_of_order=1 exits_without_entry=2");
    json_decref(d);
    fx_free(f);
}
END_TEST

START_TEST(test_out_of_order_counted_and_refolded)
{
    /* the entry arrives before the grant that precedes it */
    ENTRY("m1", B0 + 10);
    GRANT("m1", B0 + 5, "p", "A", "UKR", B0 + 1, B0 + 60);
    /* in order of occurrence: grant (b+5), entry (b+10) attaches to p: no
     * entry without permit; present on p */
    json_t *d = doc_at(F, T(B0 + 20));
    CHECK_DQ(d, "out_of_order=1");
    CHECK_GROUP(d, "A", NULL, "present=1");
    json_decref(d);
    EXIT("m1", B0 + 50);
    /* exit b+50 <= E = b+60: in time, as of b+61 */
    d = doc_at(F, T(B0 + 61));
    CHECK_DQ(d, "out_of_order=1");
    CHECK_GROUP(d, "A", NULL, "expected_departures=1 in_time_departures=1");
    json_decref(d);
}
END_TEST

START_TEST(test_refold_counts_nothing_twice)
{
    EXIT("m1", B0 + 20);  /* alone: exit without entry */
    ENTRY("m1", B0 + 15); /* lands before it: entry w/o permit (b+15), exit (b+20) */
    json_t *d = doc_at(F, T(B0 + 21));
    CHECK_DQ(d, "out_of_order=1 entries_without_permit=1");
    json_decref(d);
    EXIT("m1", B0 + 25); /* exit without entry */
    EXIT("m1", B0 + 22); /* order: entry15 exit20 exit22 exit25: 2 w/o entry */
    d = doc_at(F, T(B0 + 26));
    CHECK_DQ(d, "out_of_order=2 entries_without_permit=1 exits_without_entry=2");
    json_decref(d);
}
END_TEST

START_TEST(test_out_of_order_equal_time_is_not)
{
    FEED(F, ev_exit(NULL, "m1", T(B0)));
    FEED(F, ev_exit(NULL, "m1", T(B0))); /* occurred_at == L: not < L */
    json_t *d = doc_at(F, T(B0));
    CHECK_DQ(d, "exits_without_entry=2");
    json_decref(d);
}
END_TEST

START_TEST(test_ties_in_arrival_order)
{
    GRANT("m1", B0, "p", "A", "UKR", B0, B0 + 15);
    ENTRY("m1", B0 + 10);
    EXIT("m1", B0 + 20);
    /* an exit at the very instant of the entry, arriving after it: the tie is
     * folded in arrival order, entry then exit. Order: grant, entry@10,
     * exit@10, exit@20 (without entry). p: last stay exit day b+10 <= E =
     * b+15: in time. (Folding the tie the other way would give a late
     * departure of 5 days.) */
    EXIT("m1", B0 + 10);
    json_t *d = doc_at(F, T(B0 + 30));
    CHECK_DQ(d, "out_of_order=1 exits_without_entry=1");
    CHECK_GROUP(d, "A", NULL, "expected_departures=1 in_time_departures=1");
    json_decref(d);
}
END_TEST

START_TEST(test_feed_result_codes)
{
    ck_assert_int_eq(feed(F, ev_exit("a", "m1", T(B0 + 100))), CM_OK);
    ck_assert_int_eq(feed(F, ev_exit("a", "m1", T(B0 + 100))), CM_OK); /* duplicate */
    ck_assert_int_eq(feed(F, ev_exit("b", "m1", T(B0))), CM_OK);       /* too late */
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("rules_input");
    TCase *tc = tcase_create("rules");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_validate_missing_event_id);
    tcase_add_test(tc, test_validate_missing_migrant_id);
    tcase_add_test(tc, test_validate_missing_body);
    tcase_add_test(tc, test_validate_occurred_at_not_positive);
    tcase_add_test(tc, test_validate_granted_fields);
    tcase_add_test(tc, test_validate_extended_fields);
    tcase_add_test(tc, test_validate_revoked_fields);
    tcase_add_test(tc, test_validate_status_body_may_be_empty);
    tcase_add_test(tc, test_validate_string_257_invalid_256_valid);
    tcase_add_test(tc, test_validate_invalid_event_not_folded);
    tcase_add_test(tc, test_dedupe_event_id);
    tcase_add_test(tc, test_dedupe_scoped_to_migrant);
    tcase_add_test(tc, test_dedupe_permit_granted_same_id);
    tcase_add_test(tc, test_dedupe_before_lateness);
    tcase_add_test(tc, test_dedupe_only_accepted_events);
    tcase_add_test(tc, test_dedupe_last_32);
    tcase_add_test(tc, test_too_late);
    tcase_add_test(tc, test_too_late_per_migrant_and_L_of_accepted_only);
    tcase_add_test(tc, test_reorder_window_configurable);
    tcase_add_test(tc, test_out_of_order_counted_and_refolded);
    tcase_add_test(tc, test_refold_counts_nothing_twice);
    tcase_add_test(tc, test_out_of_order_equal_time_is_not);
    tcase_add_test(tc, test_ties_in_arrival_order);
    tcase_add_test(tc, test_feed_result_codes);
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
