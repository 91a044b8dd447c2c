/* window.h - the window of cohorts (INDICATORS.md section 5): a scheme's cohort counters over K months.
 *
 * Pure: reads an indicators document (cm_indicators_json), no I/O, no clock.
 * The figures of a scheme over the last K months as of S are the sums of its
 * cohort counters ("by_cohort") over the K calendar months ending with
 * month(day(S)), that month included; rates over a window use the formulas of
 * section 4 on those sums, null where the denominator is 0. The document
 * holds cohorts per scheme, not per scheme and nationality, so a window of
 * one nationality cannot be taken from it. */
#ifndef CIRCMON_WINDOW_H
#define CIRCMON_WINDOW_H

#include <stdint.h>

#include <jansson.h>

#include "circmon/agg.h"

/* Largest K: ten years, as alert rules' window_months (1..120), with room. */
#define CM_WINDOW_MAX_MONTHS 1200

/* The five rates of INDICATORS.md section 4. */
enum cm_rate {
    CM_R_OVERSTAY = 0,    /* (late + in-country) / expected */
    CM_R_IN_COUNTRY,      /* in-country / expected */
    CM_R_RETURN,          /* in-time / expected */
    CM_R_REENTRY,         /* re-entries / in-time */
    CM_R_MEAN_DAYS,       /* overstay days / (late + in-country) */
    CM_R__COUNT
};

/* "overstay_rate", "in_country_overstay_rate", "return_compliance_rate",
 * "reentry_rate", "mean_overstay_days"; "unknown" for another value. */
const char *cm_rate_name(enum cm_rate r);

/* Rate r of the counters c (indexed by enum cm_ctr, CM_C__PUBLIC of them).
 * Returns 1 and sets *v, or 0 when the rate is null (its denominator is 0;
 * *v is then untouched). An unknown r is null. This function can't fail. */
int cm_rate_of(const int64_t *c, enum cm_rate r, double *v);

/* A window: months first..last (months since 1970-01) and the sums of the
 * cohort counters over them. */
struct cm_window {
    int32_t first, last;
    int64_t c[CM_C__PUBLIC];
};

/* Fills w with the window of k months (1..CM_WINDOW_MAX_MONTHS) ending with
 * month(day(as_of)), as_of in [0, CM_AS_OF_MAX], for scheme, one scheme
 * object of an indicators document (its "by_cohort" member; absent: every
 * sum is 0). A missing counter reads as 0. Returns 0; -EINVAL when k or as_of
 * is out of range, scheme is not an object, or by_cohort is not an object of
 * month keys ("YYYY-MM") holding objects whose counters, where present, are
 * integers; -ERANGE when a sum would overflow. w is filled only on success.
 * Costs the scheme's cohorts. */
int cm_window_of_scheme(const json_t *scheme, int64_t as_of, int k, struct cm_window *w);

/* Rate r over w: as cm_rate_of on w's sums. */
int cm_window_rate(const struct cm_window *w, enum cm_rate r, double *v);

#endif
