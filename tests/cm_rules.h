/* cm_rules.h - the fixture of the rule suites (check_rules*.c), header only.
 *
 * Every expected figure is derived by hand from the contract; the comment
 * next to each assertion gives the derivation. Conventions: b is a base day
 * number, T(b + k) is noon UTC of day b + k, "as of b + k" means as_of =
 * T(b + k) so dS = b + k. Schemes of the default fixture (SCHEMES):
 *   A grace 0, B grace 0, G grace 5, L grace 0 stay limit 3/10,
 *   S grace 0 stay limit 90/180. */
#ifndef CM_RULES_H
#define CM_RULES_H

#include "cm_test.h"

#define SCHEMES "A:0 B:0 G:5 L:0:3/10 S:0:90/180"
#define B0 DN(2024, 3, 1) /* 2024-03-01, day 19783 */

static CMT_UNUSED struct fx *F;
static CMT_UNUSED void setup(void) { F = fx_new(30, SCHEMES); }
static CMT_UNUSED void teardown(void) { fx_free(F); F = NULL; }

/* A permit p of scheme sc valid on days [vf, e] (noon instants), granted at
 * noon of day g. */
#define GRANT(mid, g, pid, sc, nat, vf, e) \
    FEED(F, ev_grant(NULL, (mid), T(g), (pid), (sc), (nat), T(vf), T(e)))
#define ENTRY(mid, dd) FEED(F, ev_entry(NULL, (mid), T(dd)))
#define EXIT(mid, dd) FEED(F, ev_exit(NULL, (mid), T(dd)))

static CMT_UNUSED void invalid_one(struct tev e, int reason)
{
    ck_assert_int_eq(feed(F, e), reason);
}

#endif
