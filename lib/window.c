/* window.c - the window of cohorts (INDICATORS.md section 5): a scheme's cohort counters over K months. */
#include <errno.h>
#include <string.h>

#include "circmon/indicators.h"
#include "circmon/timeutil.h"
#include "circmon/window.h"

static const char *const rate_names[CM_R__COUNT] = {
    "overstay_rate", "in_country_overstay_rate", "return_compliance_rate", "reentry_rate",
    "mean_overstay_days"};

const char *cm_rate_name(enum cm_rate r)
{
    return (unsigned)r < CM_R__COUNT ? rate_names[r] : "unknown";
}

int cm_rate_of(const int64_t *c, enum cm_rate r, double *v)
{
    int64_t num, den, over;
    if (__builtin_add_overflow(c[CM_C_LATE], c[CM_C_ICO], &over))
        return 0; /* only an altered aggregate comes near: no figure rather than a wrong one */
    switch (r) {
    case CM_R_OVERSTAY:
        num = over, den = c[CM_C_EXPECTED];
        break;
    case CM_R_IN_COUNTRY:
        num = c[CM_C_ICO], den = c[CM_C_EXPECTED];
        break;
    case CM_R_RETURN:
        num = c[CM_C_INTIME], den = c[CM_C_EXPECTED];
        break;
    case CM_R_REENTRY:
        num = c[CM_C_REENTRY], den = c[CM_C_INTIME];
        break;
    case CM_R_MEAN_DAYS:
        num = c[CM_C_OVERSTAY_DAYS], den = over;
        break;
    default:
        return 0;
    }
    if (!den)
        return 0;
    *v = (double)num / (double)den; /* the division of cm_indicators_json */
    return 1;
}

int cm_window_of_scheme(const json_t *scheme, int64_t as_of, int k, struct cm_window *w)
{
    if (k < 1 || k > CM_WINDOW_MAX_MONTHS || cm_indicators_as_of_check(as_of, NULL, 0) < 0 ||
        !json_is_object(scheme))
        return -EINVAL;
    struct cm_window r = {.last = cm_month_of_day(cm_day(as_of))};
    r.first = r.last - (k - 1);
    const json_t *coh = json_object_get(scheme, "by_cohort");
    if (coh && !json_is_object(coh))
        return -EINVAL;
    const char *key;
    const json_t *g;
    json_object_foreach((json_t *)coh, key, g) {
        int32_t m;
        if (cm_month_parse(key, &m) < 0 || !json_is_object(g))
            return -EINVAL;
        int in = m >= r.first && m <= r.last;
        for (int i = 0; i < CM_C__PUBLIC; i++) {
            const json_t *v = json_object_get(g, cm_ctr_name(i));
            if (!v)
                continue;
            if (!json_is_integer(v))
                return -EINVAL; /* checked outside the window too: one shape for all */
            if (in && __builtin_add_overflow(r.c[i], (int64_t)json_integer_value(v), &r.c[i]))
                return -ERANGE;
        }
    }
    *w = r;
    return 0;
}

int cm_window_rate(const struct cm_window *w, enum cm_rate r, double *v)
{
    return cm_rate_of(w->c, r, v);
}
