/* alert.h - alert rules and their evaluation (INDICATORS.md section 5), pure: no I/O, no clock.
 *
 * A rule is one [alert NAME] section. An instance is (rule, scheme,
 * nationality or none): the figures are those of the window of cohorts
 * (lib/window.c) of the scheme, or of the scheme and nationality, over the
 * rule's window_months as of S. Thresholds and hysteresis are decimals
 * with at most CM_ALERT_DECIMALS digits after the point, held exactly as
 * integers scaled by CM_ALERT_SCALE, and the conditions are decided on the
 * exact counters (num * SCALE against threshold * n in 128-bit integers):
 * an edge such as v = above - hysteresis is never lost to floating point.
 *
 * The window of one nationality is taken from the cohorts of its
 * by_nationality group, which the indicators document holds when a rule has
 * a nationality (cm_indicators_nat_cohorts_wanted). */
#ifndef CIRCMON_ALERT_H
#define CIRCMON_ALERT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "circmon/window.h"

#define CM_ALERT_NAME_MAX 64
#define CM_ALERT_SCHEME_MAX 256 /* as CM_ID_MAX */
#define CM_ALERT_DECIMALS 9
#define CM_ALERT_SCALE 1000000000LL
#define CM_ALERT_MAX_RULES 1024      /* [alert] sections accepted */
#define CM_ALERT_MAX_INSTANCES 4096  /* instances of one rule (scheme or nationality *) per evaluation */

enum cm_alert_state { CM_ALERT_OK = 0, CM_ALERT_FIRING = 1 };

/* Keys seen in a rule's section (cm_alert_rule_set) */
#define CM_AK_SET_SCHEME 0x01u
#define CM_AK_SET_INDICATOR 0x02u
#define CM_AK_SET_ABOVE 0x04u
#define CM_AK_SET_BELOW 0x08u
#define CM_AK_SET_NATIONALITY 0x10u

struct cm_alert_rule {
    char name[CM_ALERT_NAME_MAX + 1];
    char scheme[CM_ALERT_SCHEME_MAX + 1]; /* a scheme id, or "*" */
    char nationality[CM_ALERT_SCHEME_MAX + 1]; /* "" (all together), a code, or "*" */
    enum cm_rate indicator;  /* CM_R_OVERSTAY, CM_R_IN_COUNTRY or CM_R_RETURN */
    int below;               /* 0: fires at v >= threshold; 1: at v <= threshold */
    int64_t threshold;       /* above or below, scaled by CM_ALERT_SCALE, in [0, SCALE] */
    int64_t hysteresis;      /* scaled, in [0, SCALE], default 0.01 */
    int64_t min_expected;    /* >= 1, default 30 */
    int window_months;       /* 1..120, default 3 */
    unsigned set;            /* CM_AK_SET_* */
    int line;                /* line of its section header, 0 when not from a file */
};

/* 1 when name is a valid rule name (letters, digits, _ - .; 1..64 bytes). */
int cm_alert_name_ok(const char *name, size_t len);

/* A rule named name (valid, at most CM_ALERT_NAME_MAX bytes) with the defaults. */
void cm_alert_rule_init(struct cm_alert_rule *r, const char *name, int line);

/* Sets key to value in r. Returns 0; -ENOENT for an unknown key; -EINVAL for
 * a malformed or out-of-range value (a nationality: 1..256 bytes of UTF-8,
 * or *), -EEXIST for above after below (or the reverse); err (errlen bytes) then says why, after
 * "key: " (the caller prefixes file, line and section). */
int cm_alert_rule_set(struct cm_alert_rule *r, const char *key, const char *value, char *err,
                      size_t errlen);

/* Checks a complete rule: scheme, indicator and one of above/below set.
 * Returns 0 or -EINVAL with err naming the missing key. */
int cm_alert_rule_check(const struct cm_alert_rule *r, char *err, size_t errlen);

/* Parses a decimal in [0, 1] with at most CM_ALERT_DECIMALS digits after the
 * point ("0", "1", "0.05", ".5", "1.000") into *out scaled by CM_ALERT_SCALE.
 * Returns 0 or -EINVAL. */
int cm_alert_decimal_parse(const char *s, int64_t *out);

/* Writes a scaled decimal as the shortest text ("0.05"); buf of 32 bytes. */
void cm_alert_decimal_str(int64_t scaled, char *buf);

/* The figures of one instance: n = the window's expected departures, num the
 * numerator of the rule's indicator (its value is num / n, null when n is 0). */
struct cm_alert_figures {
    int64_t n, num;
};

/* The figures of r's indicator over w. Returns 0, or -ERANGE when a sum of
 * counters would overflow. */
int cm_alert_figures_of(const struct cm_alert_rule *r, const struct cm_window *w,
                        struct cm_alert_figures *f);

/* 1 when v = num / n is not null; then *v is set. */
int cm_alert_value(const struct cm_alert_figures *f, double *v);

/* Section 5's fire and clear conditions on f. Can't fail. */
int cm_alert_fire(const struct cm_alert_rule *r, const struct cm_alert_figures *f);
int cm_alert_clear(const struct cm_alert_rule *r, const struct cm_alert_figures *f);

/* The state after an evaluation in state prev (CM_ALERT_OK for an instance
 * never evaluated). Can't fail. */
enum cm_alert_state cm_alert_next(const struct cm_alert_rule *r, enum cm_alert_state prev,
                                  const struct cm_alert_figures *f);

/* One instance and its figures as of an instant. */
struct cm_alert_inst {
    const struct cm_alert_rule *rule; /* borrowed */
    char scheme[CM_ALERT_SCHEME_MAX + 1];
    char nationality[CM_ALERT_SCHEME_MAX + 1]; /* "" for a rule without nationality */
    struct cm_alert_figures f;
};

/* The instances of r over doc (an indicators document, cm_indicators_json)
 * as of as_of. Scheme and nationality both given (or the nationality
 * absent): exactly one (figures 0 when the group is absent). A "*" makes one
 * instance per scheme, or per nationality of the scheme(s), whose window has
 * an expected departure, in the document's key order; at most
 * CM_ALERT_MAX_INSTANCES (-E2BIG beyond). *out (freed by the caller with
 * free) holds *n of them. Returns 0, -EINVAL for a malformed document or
 * as_of out of range, -ENODATA for a nationality rule when a nationality
 * group of doc has no cohorts (by_cohort: see
 * cm_indicators_nat_cohorts_wanted), -ERANGE (a sum overflows), -ENOMEM. On
 * error *out is NULL and *n 0. */
int cm_alert_instances(const struct cm_alert_rule *r, const json_t *doc, int64_t as_of,
                       struct cm_alert_inst **out, size_t *n);

/* "ok" / "firing"; the protobuf names: "RESOLVED" / "FIRING". */
const char *cm_alert_state_name(enum cm_alert_state s);

/* A stable 64-bit identity of an instance (FNV-1a of name, NUL, scheme, NUL,
 * nationality, "" for a rule without one), for Redis keys. */
uint64_t cm_alert_instance_hash(const char *rule, const char *scheme, const char *nationality);

#endif
