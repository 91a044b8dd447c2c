/* check_rules.c - one named test per rule of INDICATORS.md.
 *
 * Every expected figure is derived by hand from the contract; the comment
 * next to each assertion gives the derivation. Conventions: b is a base day
 * number, T(b + k) is noon UTC of day b + k, "as of b + k" means as_of =
 * T(b + k) so dS = b + k. Schemes of the default fixture (SCHEMES):
 *   A grace 0, B grace 0, G grace 5, L grace 0 stay limit 3/10,
 *   S grace 0 stay limit 90/180. */
#include "cm_test.h"

#define SCHEMES "A:0 B:0 G:5 L:0:3/10 S:0:90/180"
#define B0 DN(2024, 3, 1) /* 2024-03-01, day 19783 */

static struct fx *F;
static void setup(void) { F = fx_new(30, SCHEMES); }
static void teardown(void) { fx_free(F); F = NULL; }

/* A permit p of scheme sc valid on days [vf, e] (noon instants), granted at
 * noon of day g. */
#define GRANT(mid, g, pid, sc, nat, vf, e) \
    FEED(F, ev_grant(NULL, (mid), T(g), (pid), (sc), (nat), T(vf), T(e)))
#define ENTRY(mid, dd) FEED(F, ev_entry(NULL, (mid), T(dd)))
#define EXIT(mid, dd) FEED(F, ev_exit(NULL, (mid), T(dd)))

/* ================= 1. validate ================= */

static void invalid_one(struct tev e, int reason)
{
    ck_assert_int_eq(feed(F, e), reason);
}

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
    invalid_one(ev_entry("e2", "m1", -86400), CM_REJ_NO_OCCURRED_AT);
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
