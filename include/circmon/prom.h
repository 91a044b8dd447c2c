/* prom.h - Prometheus text exposition (format 0.0.4) of circmon's figures.
 *
 * Pure: text is appended to a caller's buffer; no I/O, no clock. The metric
 * names and labels are part of circmon's contract (README "Metrics
 * reference"). Label values are escaped as the format requires (\\, \", \n). */
#ifndef CIRCMON_PROM_H
#define CIRCMON_PROM_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "circmon/metrics.h"
#include "circmon/window.h"

/* A growable text buffer: s is NUL-terminated once anything was appended.
 * Start it zeroed ({0}); free with cm_strbuf_free. */
struct cm_strbuf {
    char *s;
    size_t len, cap;
};

/* Appends printf-formatted text. Returns 0, or -ENOMEM (b then holds what it
 * held before the call; also for an encoding error of vsnprintf). */
int cm_strbuf_printf(struct cm_strbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Appends len bytes of s. Returns 0 or -ENOMEM (b unchanged). */
int cm_strbuf_append(struct cm_strbuf *b, const char *s, size_t len);

/* Frees b's text and zeroes b. Accepts a zeroed b. */
void cm_strbuf_free(struct cm_strbuf *b);

/* Appends the indicator gauges of doc, an indicators document made by
 * cm_indicators_json as of as_of: circmon_indicators_as_of_seconds,
 * circmon_permit_outcomes{scheme,nationality,outcome},
 * circmon_reentries / circmon_overstay_days / circmon_stay_limit_breaches /
 * circmon_stay_limit_breach_days{scheme,nationality}, circmon_present{scheme},
 * circmon_rate{scheme,rate} (null rates left out),
 * circmon_cohort_permit_outcomes{scheme,cohort,outcome} for the cohort_months
 * calendar months ending with month(as_of),
 * circmon_window_rate{scheme,rate,window} and
 * circmon_window_expected_departures{scheme,window} for window="3m" and
 * "12m" (INDICATORS.md section 5, lib/window.c), and
 * circmon_data_quality{check} (every member of data_quality). Each family
 * once, with its HELP and TYPE lines; all gauges. Schemes, nationalities,
 * cohorts and checks come in sorted order; a group the document leaves out
 * has no sample, a group it holds has every outcome (0 included). A missing
 * counter reads as 0. as_of must be in [0, CM_AS_OF_MAX] and cohort_months in
 * [0, CM_WINDOW_MAX_MONTHS] (0: no cohort samples). Returns 0; -EINVAL when
 * an argument is out of range or doc does not have the shape of an
 * indicators document (a member of the wrong type, a cohort key that is not
 * a month); -ERANGE when a window's sum overflows; -ENOMEM. On error b holds
 * what it held before the call. */
int cm_prom_indicators(struct cm_strbuf *b, const json_t *doc, int64_t as_of, int cohort_months);

/* cm_prom_family appends one metric family header: "# HELP name help"
 * (help escaped: \\ and \n) and "# TYPE name type". cm_prom_sample appends one
 * sample "name{labels} value", where labels is a preformatted label list
 * without braces ("" or NULL for none; use cm_prom_label to build it); an
 * integral value below 1e18 is written as an integer, others with the
 * fewest digits (15 to 17) that read back as v, NaN and infinities as
 * NaN, +Inf, -Inf. Both return 0 or -ENOMEM (b then unchanged). */
int cm_prom_family(struct cm_strbuf *b, const char *name, const char *type, const char *help);
int cm_prom_sample(struct cm_strbuf *b, const char *name, const char *labels, double v);

/* Appends name="value" (value escaped), preceded by a comma when b is not
 * empty: builds the labels argument of cm_prom_sample. Returns 0 or -ENOMEM. */
int cm_prom_label(struct cm_strbuf *b, const char *name, const char *value);

/* Appends h as a Prometheus histogram family (HELP, TYPE histogram,
 * cumulative name_bucket{le="..."} lines for the n ascending bounds le and
 * +Inf, name_sum, name_count), unit being what one of h's units is in the
 * exposition (1e-6: h counts microseconds, the family is in seconds). h's
 * buckets are log-linear (metrics.h): the line le=B counts the buckets whose
 * largest value is at most B, so a value up to 1/8 below B may be counted
 * only from the next bound on; +Inf and _count are exact. A NULL h is an
 * empty histogram. Returns 0 or -ENOMEM (b then unchanged). */
int cm_prom_hist(struct cm_strbuf *b, const char *name, const char *help, const struct cm_hist *h,
                 const double *le, size_t n, double unit);

/* cm_prom_hist of h in microseconds as seconds, bounds 0.0001, 0.00025,
 * 0.0005, 0.001, ..., 2.5, 5, 10 (1-2.5-5 steps). */
int cm_prom_hist_seconds(struct cm_strbuf *b, const char *name, const char *help,
                         const struct cm_hist *h);

/* cm_prom_hist of h counting things (e.g. events per batch), bounds 1, 10,
 * 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000. */
int cm_prom_hist_count(struct cm_strbuf *b, const char *name, const char *help,
                       const struct cm_hist *h);

#endif
