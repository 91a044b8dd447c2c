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

/* A growable text buffer: s is NUL-terminated once anything was appended.
 * Start it zeroed ({0}); free with cm_strbuf_free. */
struct cm_strbuf {
    char *s;
    size_t len, cap;
};

/* Appends printf-formatted text. Returns 0, or -ENOMEM (b then holds what it
 * held before the call). */
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
 * "12m" (INDICATORS.md section 5), and circmon_data_quality{check}. Each
 * family once, with its HELP and TYPE lines. Returns 0, -EINVAL when doc
 * does not have the shape of an indicators document, or -ENOMEM. */
int cm_prom_indicators(struct cm_strbuf *b, const json_t *doc, int64_t as_of, int cohort_months);

/* Appends one metric family header (# HELP, # TYPE type) and then one
 * sample: name{labels} value, where labels is a preformatted label list
 * without braces ("" or NULL for none; use cm_prom_label to build it).
 * Returns 0 or -ENOMEM. */
int cm_prom_family(struct cm_strbuf *b, const char *name, const char *type, const char *help);
int cm_prom_sample(struct cm_strbuf *b, const char *name, const char *labels, double v);

/* Appends name="value" (value escaped), preceded by a comma when b is not
 * empty: builds the labels argument of cm_prom_sample. Returns 0 or -ENOMEM. */
int cm_prom_label(struct cm_strbuf *b, const char *name, const char *value);

/* Appends h as a Prometheus histogram family name{labels} in seconds
 * (h counts microseconds): cumulative _bucket{le=...} lines over a fixed
 * set of bounds, _sum and _count. Returns 0 or -ENOMEM. */
int cm_prom_hist_seconds(struct cm_strbuf *b, const char *name, const char *help,
                         const struct cm_hist *h);

#endif
