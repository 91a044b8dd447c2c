/* agg.h - aggregated indicator state: sums of every migrant's contribution.
 *
 * The fold turns one arriving event into a list of items (cm_item): changes
 * to counters that do not depend on the clock, plus the clock-dependent
 * entries that the read side resolves "as of" a time (permits not yet due,
 * open stays that breach the stay limit). An aggregate (cm_agg) is their sum;
 * it is what the in-memory store keeps, what one Redis batch writes, and what
 * the read side rebuilds from Redis before evaluating the indicators. */
#ifndef CIRCMON_AGG_H
#define CIRCMON_AGG_H

#include <stddef.h>
#include <stdint.h>

#include "circmon/names.h"

/* Outcome counters of INDICATORS.md section 4, plus hidden sums. */
enum cm_ctr {
    CM_C_EXPECTED = 0,
    CM_C_INTIME,
    CM_C_LATE,
    CM_C_ICO,          /* suspected in-country overstays */
    CM_C_STATUS,
    CM_C_NOSHOW,
    CM_C_REENTRY,
    CM_C_OVERSTAY_DAYS, /* stored: late departures only; ICO days added when read */
    CM_C_BREACHES,
    CM_C_BREACH_DAYS,
    CM_C_ICO_ESUM,     /* hidden: sum of E over in-country overstays */
    CM_C__COUNT
};
#define CM_C__PUBLIC CM_C_ICO_ESUM /* counters before this one are published */

/* Data-quality counters, over all schemes. */
enum cm_dq {
    CM_DQ_INVALID = 0,
    CM_DQ_DUPLICATES,
    CM_DQ_TOO_LATE,
    CM_DQ_OUT_OF_ORDER,
    CM_DQ_EXITS_WITHOUT_ENTRY,
    CM_DQ_ENTRIES_WHILE_PRESENT,
    CM_DQ_ENTRIES_WITHOUT_PERMIT,
    CM_DQ_UNKNOWN_PERMIT,
    CM_DQ_LATE_ADMIN,
    CM_DQ_OVER_LIMIT, /* not a contract counter: events past a limit (README "Limits");
                       * published only when not zero */
    CM_DQ__COUNT
};

/* Outcome class of a permit that is not yet due (pending entries). */
enum cm_pclass {
    CM_P_NOSHOW = 0,
    CM_P_INTIME,
    CM_P_INTIME_REENTRY,
    CM_P_ICO,
    CM_P_STATUS,
    CM_P__COUNT
};

/* JSON/metric names: "expected_departures", ..., "invalid", ... */
const char *cm_ctr_name(enum cm_ctr c);
const char *cm_dq_name(enum cm_dq q);

enum cm_item_kind {
    CM_IT_CTR = 1, /* counter ctr of (scheme, nat, month) += v */
    CM_IT_PEND,    /* pending permit (scheme, nat, E = day, class = ctr) += v */
    CM_IT_BREACH,  /* open stay-limit breach (scheme, nat, first breach day = day) += v */
    CM_IT_PRESENT, /* present on a permit of scheme += v */
    CM_IT_DQ,      /* data-quality counter ctr += v */
    CM_IT_BDAYS,   /* breach days of a closed run: each day of [day, day2] of (scheme, nat) += v */
};

/* scheme and nat are numbers of the cm_names table the fold was given. */
struct cm_item {
    uint8_t kind;
    uint8_t ctr;
    int32_t scheme;
    int32_t nat;
    int32_t day2; /* BDAYS: last breach day; 0 otherwise */
    int64_t day;  /* CTR: month index; PEND: E; BREACH, BDAYS: first breach day */
    int64_t v;
};

/* Aggregate keys, after projection: counters are kept per (scheme, nat), per
 * (scheme, month) and, when asked for ([circmon] nationality_cohorts,
 * cm_agg_set_nat_cohorts), per (scheme, nat, month); scheme totals are the
 * sums over nationalities. The (scheme, nat, month) entries make the window
 * of cohorts of one nationality (INDICATORS.md section 5) exact; a stored
 * aggregate folded (in part) without them lacks some, which the read side
 * detects (their sums over months differ from the (scheme, nat) entries). */
enum cm_agg_kind {
    CM_AK_NAT = 1,  /* (ctr, scheme, a = nat) */
    CM_AK_MONTH,    /* (ctr, scheme, a = month) */
    CM_AK_PEND,     /* (ctr = class, scheme, a = nat, b = E) */
    CM_AK_BREACH,   /* (scheme, a = nat, b = first breach day) */
    CM_AK_PRESENT,  /* (scheme) */
    CM_AK_DQ,       /* (ctr) */
    CM_AK_BDAYS,    /* (scheme, a = nat, b = day): change, from day b on, of the number of
                     * closed breaches of (scheme, nat) that day is a breach day of: a
                     * BDAYS item [f, l] += v is b = f += v and b = l + 1 += -v. The read
                     * side sweeps them into stay_limit_breach_days by month and nationality */
    CM_AK_NATMONTH, /* (ctr, scheme, a = nat, b = month): the cohort of a nationality */
};

/* a and b hold 32-bit values (numbers of names, months, days). */
struct cm_agg_key {
    uint8_t kind;
    uint8_t ctr;
    int32_t scheme;
    int64_t a;
    int64_t b;
};

struct cm_agg;

/* A new, empty aggregate, or NULL when out of memory. */
struct cm_agg *cm_agg_new(void);

/* Adds v to key; an entry that reaches 0 is removed. Returns 0 or -ENOMEM
 * (the aggregate is then unchanged). */
int cm_agg_add(struct cm_agg *ag, const struct cm_agg_key *k, int64_t v);

/* Whether cm_agg_add_items projects counter items onto the cohorts of each
 * nationality (CM_AK_NATMONTH) too: off in a new aggregate. Can't fail. */
void cm_agg_set_nat_cohorts(struct cm_agg *ag, int on);

/* Adds the items (projected onto aggregate keys; CM_AK_NATMONTH only when
 * cm_agg_set_nat_cohorts said so). Returns 0 or -ENOMEM; on -ENOMEM a
 * prefix of the items may have been added. */
int cm_agg_add_items(struct cm_agg *ag, const struct cm_item *it, size_t n);

/* Value of key (0 when absent). */
int64_t cm_agg_get(const struct cm_agg *ag, const struct cm_agg_key *k);

/* Calls fn for every non-zero entry, in unspecified order; stops and returns
 * fn's value when it is non-zero. */
int cm_agg_foreach(const struct cm_agg *ag,
                   int (*fn)(const struct cm_agg_key *k, int64_t v, void *ud), void *ud);

/* Number of non-zero entries. */
size_t cm_agg_count(const struct cm_agg *ag);

/* Frees ag; accepts NULL; returns NULL. */
struct cm_agg *cm_agg_free(struct cm_agg *ag);

/* Text form of a key, for Redis hash fields: strings are written with their
 * length so that any byte may occur in a scheme id or nationality. Writes at
 * most cap bytes into buf and returns the length (> cap: buf too small), or
 * -ENOENT when a number is not in nm. */
int cm_agg_key_format(const struct cm_agg_key *k, const struct cm_names *nm, char *buf, size_t cap);

/* Parses a field written by cm_agg_key_format, interning its strings into nm.
 * Returns 0, -EINVAL for a malformed field, or -ENOMEM. */
int cm_agg_key_parse(const char *s, size_t len, struct cm_names *nm, struct cm_agg_key *k);

#endif
