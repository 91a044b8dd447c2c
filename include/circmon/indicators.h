/* indicators.h - the read side: an aggregate evaluated as of a time. */
#ifndef CIRCMON_INDICATORS_H
#define CIRCMON_INDICATORS_H

#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "circmon/agg.h"
#include "circmon/config.h"
#include "circmon/names.h"

/* Latest as-of the indicators are defined for: 9999-12-31T23:59:59Z, the
 * contract's latest instant (INDICATORS.md section 2, step 1). */
#define CM_AS_OF_MAX INT64_C(253402300799)

/* 0 when as_of is in [0, CM_AS_OF_MAX]; otherwise -ERANGE, with a message
 * saying so in err (errlen bytes, NUL-terminated; err may be NULL). */
int cm_indicators_as_of_check(int64_t as_of, char *err, size_t errlen);

/* The indicators document of INDICATORS.md as of instant as_of:
 * {"as_of", "schemes": {id: {counters, rates, "present", "by_nationality",
 * "by_cohort"}}, "data_quality": {...}} (by_nationality groups with their
 * own by_cohort when cm_indicators_nat_cohorts_wanted(cfg)). Groups where nothing was counted are
 * left out. Returns a new reference, or NULL when as_of is outside
 * [0, CM_AS_OF_MAX] (see cm_indicators_as_of_check) or out of memory. The
 * aggregate is not changed. Costs the aggregate's entries and the groups
 * printed, whatever the distance between as_of and the events. */
json_t *cm_indicators_json(const struct cm_agg *ag, const struct cm_names *nm,
                           const struct cm_config *cfg, int64_t as_of);

/* 1 when cfg has an alert rule with a nationality: the documents of
 * cm_indicators_json then also hold, in every by_nationality group, its
 * cohorts ("by_cohort": {"YYYY-MM": {counters, rates}}), which the windows of
 * those rules are taken from. A group whose cohorts would not sum to its own
 * counters (an aggregate folded, in part, by a version without cohorts per
 * nationality: README "Operations", rebuild) gets no by_cohort member at
 * all. Reads cfg's rules. Can't fail; cfg may be NULL (0). */
int cm_indicators_nat_cohorts_wanted(const struct cm_config *cfg);

#define CM_IND_NAT_COHORTS 0x1u /* by_cohort in every by_nationality group */

/* cm_indicators_json with the nationality cohorts decided by flags, not by
 * cfg's rules (cfg is read for the schemes' settings only): for a caller
 * whose rules may change meanwhile (circmond's read side, on a thread). */
json_t *cm_indicators_json_ex(const struct cm_agg *ag, const struct cm_names *nm,
                              const struct cm_config *cfg, int64_t as_of, unsigned flags);

/* Prints doc (as made by cm_indicators_json) as an aligned table for people:
 * one row per scheme with the main counters and rates, then data quality.
 * Returns 0 or -EIO. */
int cm_indicators_print_table(const json_t *doc, FILE *fp);

/* Prints doc in format "json" (indented, keys sorted, reals with 17
 * significant digits: the form replay and indicators share) or "table", and
 * flushes fp. Returns 0, -EINVAL for another format, or -EIO. */
int cm_indicators_print(const json_t *doc, const char *format, FILE *fp);

#endif
