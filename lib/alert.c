/* alert.c - alert rules and the fire/clear evaluation of INDICATORS.md section 5 (pure). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "circmon/alert.h"
#include "circmon/event.h"
#include "circmon/names.h"

static void say(char *err, size_t errlen, const char *fmt, const char *a)
{
    if (err && errlen)
        snprintf(err, errlen, fmt, a);
}

int cm_alert_name_ok(const char *name, size_t len)
{
    if (len == 0 || len > CM_ALERT_NAME_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.'))
            return 0;
    }
    return 1;
}

void cm_alert_rule_init(struct cm_alert_rule *r, const char *name, int line)
{
    size_t len = strlen(name);

    *r = (struct cm_alert_rule){
        .indicator = CM_R_OVERSTAY,
        .hysteresis = CM_ALERT_SCALE / 100,
        .min_expected = 30,
        .window_months = 3,
        .line = line,
    };
    if (len > CM_ALERT_NAME_MAX)
        len = CM_ALERT_NAME_MAX;
    memcpy(r->name, name, len);
    r->name[len] = '\0';
}

int cm_alert_decimal_parse(const char *s, int64_t *out)
{
    int64_t ip = 0, fp = 0;
    int nf = 0, digits = 0;
    const char *p = s;

    while (*p >= '0' && *p <= '9') {
        if (ip > 1)
            return -EINVAL;
        ip = ip * 10 + (*p++ - '0');
        digits++;
    }
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9') {
            if (nf == CM_ALERT_DECIMALS)
                return -EINVAL;
            fp = fp * 10 + (*p++ - '0');
            nf++;
            digits++;
        }
    }
    if (*p != '\0' || digits == 0)
        return -EINVAL;
    for (int i = nf; i < CM_ALERT_DECIMALS; i++)
        fp *= 10;
    int64_t v = ip * CM_ALERT_SCALE + fp;
    if (v > CM_ALERT_SCALE)
        return -EINVAL;
    *out = v;
    return 0;
}

void cm_alert_decimal_str(int64_t scaled, char *buf)
{
    int64_t ip = scaled / CM_ALERT_SCALE, fp = scaled % CM_ALERT_SCALE;
    int nf = CM_ALERT_DECIMALS;

    if (fp < 0)
        fp = -fp;
    while (nf > 0 && fp % 10 == 0 && fp != 0)
        fp /= 10, nf--;
    if (fp == 0)
        snprintf(buf, 32, "%lld", (long long)ip);
    else
        snprintf(buf, 32, "%lld.%0*lld", (long long)ip, nf, (long long)fp);
}

static int int_key(const char *value, long long lo, long long hi, int64_t *out)
{
    char *end;
    long long v;

    if (!(*value >= '0' && *value <= '9'))
        return -EINVAL;
    errno = 0;
    v = strtoll(value, &end, 10);
    if (*end != '\0' || errno == ERANGE || v < lo || v > hi)
        return -EINVAL;
    *out = v;
    return 0;
}

int cm_alert_rule_set(struct cm_alert_rule *r, const char *key, const char *value, char *err,
                      size_t errlen)
{
    int64_t v;

    if (strcmp(key, "scheme") == 0) {
        size_t len = strlen(value);
        if (len == 0 || len > CM_ALERT_SCHEME_MAX) {
            say(err, errlen, "not a scheme id of 1..256 bytes nor *: \"%s\"", value);
            return -EINVAL;
        }
        memcpy(r->scheme, value, len + 1);
        r->set |= CM_AK_SET_SCHEME;
        return 0;
    }
    if (strcmp(key, "nationality") == 0) {
        size_t len = strlen(value);
        if (len == 0 || len > CM_ALERT_SCHEME_MAX || !cm_utf8_valid(value, len)) {
            say(err, errlen, "not a nationality code of 1..256 bytes of UTF-8 nor *: \"%s\"",
                value);
            return -EINVAL;
        }
        memcpy(r->nationality, value, len + 1);
        r->set |= CM_AK_SET_NATIONALITY;
        return 0;
    }
    if (strcmp(key, "indicator") == 0) {
        static const enum cm_rate ok[] = {CM_R_OVERSTAY, CM_R_IN_COUNTRY, CM_R_RETURN};
        for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
            if (strcmp(value, cm_rate_name(ok[i])) == 0) {
                r->indicator = ok[i];
                r->set |= CM_AK_SET_INDICATOR;
                return 0;
            }
        say(err, errlen, "not overstay_rate, in_country_overstay_rate nor "
                         "return_compliance_rate: \"%s\"", value);
        return -EINVAL;
    }
    if (strcmp(key, "above") == 0 || strcmp(key, "below") == 0) {
        int below = key[0] == 'b';
        if (r->set & (below ? CM_AK_SET_ABOVE : CM_AK_SET_BELOW)) {
            say(err, errlen, "a rule has exactly one of above and below%s", "");
            return -EEXIST;
        }
        if (cm_alert_decimal_parse(value, &v) < 0) {
            say(err, errlen, "not a number in [0, 1] with at most 9 decimals: \"%s\"", value);
            return -EINVAL;
        }
        r->below = below;
        r->threshold = v;
        r->set |= below ? CM_AK_SET_BELOW : CM_AK_SET_ABOVE;
        return 0;
    }
    if (strcmp(key, "hysteresis") == 0) {
        if (cm_alert_decimal_parse(value, &v) < 0) {
            say(err, errlen, "not a number in [0, 1] with at most 9 decimals: \"%s\"", value);
            return -EINVAL;
        }
        r->hysteresis = v;
        return 0;
    }
    if (strcmp(key, "min_expected") == 0) {
        if (int_key(value, 1, INT64_MAX, &v) < 0) {
            say(err, errlen, "not an integer >= 1: \"%s\"", value);
            return -EINVAL;
        }
        r->min_expected = v;
        return 0;
    }
    if (strcmp(key, "window_months") == 0) {
        if (int_key(value, 1, 120, &v) < 0) {
            say(err, errlen, "not an integer in 1..120: \"%s\"", value);
            return -EINVAL;
        }
        r->window_months = (int)v;
        return 0;
    }
    say(err, errlen, "unknown key%s", "");
    return -ENOENT;
}

int cm_alert_rule_check(const struct cm_alert_rule *r, char *err, size_t errlen)
{
    if (!(r->set & CM_AK_SET_SCHEME)) {
        say(err, errlen, "missing key scheme%s", "");
        return -EINVAL;
    }
    if (!(r->set & CM_AK_SET_INDICATOR)) {
        say(err, errlen, "missing key indicator%s", "");
        return -EINVAL;
    }
    if (!(r->set & (CM_AK_SET_ABOVE | CM_AK_SET_BELOW))) {
        say(err, errlen, "missing key above or below%s", "");
        return -EINVAL;
    }
    return 0;
}

int cm_alert_figures_of(const struct cm_alert_rule *r, const struct cm_window *w,
                        struct cm_alert_figures *f)
{
    int64_t num;

    switch (r->indicator) {
    case CM_R_IN_COUNTRY: num = w->c[CM_C_ICO]; break;
    case CM_R_RETURN: num = w->c[CM_C_INTIME]; break;
    default:
        if (__builtin_add_overflow(w->c[CM_C_LATE], w->c[CM_C_ICO], &num))
            return -ERANGE;
        break;
    }
    f->n = w->c[CM_C_EXPECTED];
    f->num = num;
    return 0;
}

int cm_alert_value(const struct cm_alert_figures *f, double *v)
{
    if (f->n == 0)
        return 0;
    *v = (double)f->num / (double)f->n;
    return 1;
}

/* Sign of num / n - t / SCALE, exactly (n > 0). */
static int cmp_rate(const struct cm_alert_figures *f, int64_t t)
{
    __int128 a = (__int128)f->num * CM_ALERT_SCALE, b = (__int128)t * f->n;
    return a < b ? -1 : a > b;
}

int cm_alert_fire(const struct cm_alert_rule *r, const struct cm_alert_figures *f)
{
    if (f->n < r->min_expected || f->n <= 0)
        return 0;
    return r->below ? cmp_rate(f, r->threshold) <= 0 : cmp_rate(f, r->threshold) >= 0;
}

int cm_alert_clear(const struct cm_alert_rule *r, const struct cm_alert_figures *f)
{
    if (f->n < r->min_expected || f->n <= 0)
        return 1;
    return r->below ? cmp_rate(f, r->threshold + r->hysteresis) > 0
                    : cmp_rate(f, r->threshold - r->hysteresis) < 0;
}

enum cm_alert_state cm_alert_next(const struct cm_alert_rule *r, enum cm_alert_state prev,
                                  const struct cm_alert_figures *f)
{
    if (prev == CM_ALERT_FIRING)
        return cm_alert_clear(r, f) ? CM_ALERT_OK : CM_ALERT_FIRING;
    return cm_alert_fire(r, f) ? CM_ALERT_FIRING : CM_ALERT_OK;
}

/* Appends the instance (r, scheme, nat) whose window is that of obj (a
 * scheme or nationality group of the document; NULL: every sum 0). A
 * nationality group must hold its cohorts. skip_empty: none when the window
 * has no expected departure. */
static int push(const struct cm_alert_rule *r, const char *scheme, const char *nat,
                const json_t *obj, int64_t as_of, struct cm_alert_inst **v, size_t *n,
                size_t *cap, int skip_empty)
{
    struct cm_window w = {0};
    struct cm_alert_figures f = {0};
    int rc;

    if (obj) {
        if (nat[0] && !json_object_get(obj, "by_cohort"))
            return json_is_object(obj) ? -ENODATA : -EINVAL;
        rc = cm_window_of_scheme(obj, as_of, r->window_months, &w);
        if (rc < 0)
            return rc;
    }
    rc = cm_alert_figures_of(r, &w, &f);
    if (rc < 0)
        return rc;
    if (skip_empty && f.n == 0)
        return 0;
    size_t sl = strlen(scheme), nl = strlen(nat);
    if (sl > CM_ALERT_SCHEME_MAX || nl > CM_ALERT_SCHEME_MAX)
        return -EINVAL;
    if (*n == CM_ALERT_MAX_INSTANCES)
        return -E2BIG;
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 8;
        struct cm_alert_inst *nv = realloc(*v, c * sizeof *nv);
        if (!nv)
            return -ENOMEM;
        *v = nv;
        *cap = c;
    }
    struct cm_alert_inst *in = &(*v)[(*n)++];
    in->rule = r;
    memcpy(in->scheme, scheme, sl + 1);
    memcpy(in->nationality, nat, nl + 1);
    in->f = f;
    return 0;
}

/* The instances of r in one scheme (s its object, NULL when absent). */
static int of_scheme(const struct cm_alert_rule *r, const char *scheme, const json_t *s,
                     int64_t as_of, struct cm_alert_inst **v, size_t *n, size_t *cap,
                     int skip_empty)
{
    if (!r->nationality[0])
        return push(r, scheme, "", s, as_of, v, n, cap, skip_empty);
    const json_t *bn = s ? json_object_get(s, "by_nationality") : NULL;
    if (bn && !json_is_object(bn))
        return -EINVAL;
    if (strcmp(r->nationality, "*") != 0)
        return push(r, scheme, r->nationality, bn ? json_object_get(bn, r->nationality) : NULL,
                    as_of, v, n, cap, skip_empty);
    const char *key;
    const json_t *g;
    json_object_foreach((json_t *)bn, key, g) {
        int rc = push(r, scheme, key, g, as_of, v, n, cap, 1);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int cm_alert_instances(const struct cm_alert_rule *r, const json_t *doc, int64_t as_of,
                       struct cm_alert_inst **out, size_t *n)
{
    struct cm_alert_inst *v = NULL;
    size_t nv = 0, cap = 0;
    const json_t *schemes = json_object_get(doc, "schemes");
    int rc = 0;

    *out = NULL;
    *n = 0;
    if (!json_is_object(schemes))
        return -EINVAL;
    if (strcmp(r->scheme, "*") != 0) {
        rc = of_scheme(r, r->scheme, json_object_get(schemes, r->scheme), as_of, &v, &nv, &cap, 0);
    } else {
        const char *key;
        const json_t *s;
        json_object_foreach((json_t *)schemes, key, s) {
            rc = of_scheme(r, key, s, as_of, &v, &nv, &cap, 1);
            if (rc < 0)
                break;
        }
    }
    if (rc < 0) {
        free(v);
        return rc;
    }
    *out = v;
    *n = nv;
    return 0;
}

const char *cm_alert_state_name(enum cm_alert_state s)
{
    return s == CM_ALERT_FIRING ? "firing" : "ok";
}

uint64_t cm_alert_instance_hash(const char *rule, const char *scheme, const char *nationality)
{
    char buf[CM_ALERT_NAME_MAX + 2 * CM_ALERT_SCHEME_MAX + 3];
    size_t a = strnlen(rule, CM_ALERT_NAME_MAX), b = strnlen(scheme, CM_ALERT_SCHEME_MAX),
           c = strnlen(nationality, CM_ALERT_SCHEME_MAX);

    memcpy(buf, rule, a);
    buf[a] = '\0';
    memcpy(buf + a + 1, scheme, b);
    buf[a + 1 + b] = '\0';
    memcpy(buf + a + 2 + b, nationality, c); /* "" (all): the hash of earlier versions */
    buf[a + 2 + b + c] = '\0';
    return cm_hash_bytes(buf, a + b + c + 3);
}
