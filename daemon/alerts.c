/* alerts.c - circmond's alert evaluation: instances, the compare-and-set of their states in Redis, /v1/alerts and the alert metrics. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "alerts_int.h"
#include "circmon/clock.h"
#include "circmon/log.h"
#include "circmon/redis_conn.h"
#include "circmon/v1/alerts.pb-c.h"
#include "http.h"
#include "readside.h"

/* KEYS st outbox hist; ARGV seq_expected as_of target("" none) v n event hist_entry.
 * Reply {code, state, seq, at, since, outbox length, hist...}: code 2 the
 * transition was made, 1 the figures were recorded, 0 seq differs (nothing
 * done), -1 the stored figures are fresher (nothing done). */
static const char CAS_LUA[] =
    "local c = redis.call('HMGET', KEYS[1], 'state', 'seq', 'at', 'since')\n"
    "local state = c[1] or 'ok'\n"
    "local seq = tonumber(c[2]) or 0\n"
    "local at = tonumber(c[3]) or -1\n"
    "local since = c[4] or '0'\n"
    "local code = 1\n"
    "if seq ~= tonumber(ARGV[1]) then code = 0\n"
    "elseif at > tonumber(ARGV[2]) then code = -1\n"
    "elseif ARGV[3] ~= '' and ARGV[3] ~= state then\n"
    "  seq = seq + 1\n"
    "  state = ARGV[3]\n"
    "  since = ARGV[2]\n"
    "  redis.call('HSET', KEYS[1], 'state', state, 'seq', seq, 'since', since, 'at', ARGV[2],\n"
    "             'v', ARGV[4], 'n', ARGV[5])\n"
    "  at = tonumber(ARGV[2])\n"
    "  redis.call('RPUSH', KEYS[2], ARGV[6])\n"
    "  redis.call('LPUSH', KEYS[3], ARGV[7])\n"
    "  redis.call('LTRIM', KEYS[3], 0, 4)\n"
    "  code = 2\n"
    "else\n"
    "  redis.call('HSET', KEYS[1], 'at', ARGV[2], 'v', ARGV[4], 'n', ARGV[5])\n"
    "  if at < tonumber(ARGV[2]) then at = tonumber(ARGV[2]) end\n"
    "end\n"
    "local r = {tostring(code), state, tostring(seq), tostring(at), since,\n"
    "           tostring(redis.call('LLEN', KEYS[2]))}\n"
    "for _, h in ipairs(redis.call('LRANGE', KEYS[3], 0, 4)) do r[#r + 1] = h end\n"
    "return r\n";

static const struct cm_alert_rule *rule_of(const struct cmd_alerts *a, const struct al_inst *in)
{
    return in->rule < a->cfg->n_alerts ? &a->cfg->alerts[in->rule] : NULL;
}

void al_key(const struct cmd_alerts *a, const struct al_inst *in, const char *what, char *buf,
            size_t cap)
{
    snprintf(buf, cap, "%s:{alert:%s}:%s", a->cfg->key_prefix, in->hex, what);
}

static struct al_inst *find_or_add(struct cmd_alerts *a, size_t rule, const char *scheme,
                                   const char *nat)
{
    const char *name = a->cfg->alerts[rule].name;
    for (size_t i = 0; i < a->n; i++)
        if (a->v[i].rule == rule && !strcmp(a->v[i].scheme, scheme) &&
            !strcmp(a->v[i].nationality, nat))
            return &a->v[i];
    if (a->n == AL_MAX_INSTANCES) {
        if (!a->full_logged)
            cm_log_warn("alerts: more than %d instances; rule %s, scheme %s, nationality \"%s\" "
                        "not evaluated", AL_MAX_INSTANCES, name, scheme, nat);
        a->full_logged = 1;
        return NULL;
    }
    if (a->n == a->cap) {
        size_t c = a->cap ? a->cap * 2 : 16;
        struct al_inst *nv = realloc(a->v, c * sizeof *nv);
        if (!nv) {
            cm_log_err("alerts: out of memory for instance %s/%s/%s", name, scheme, nat);
            return NULL;
        }
        a->v = nv;
        a->cap = c;
    }
    struct al_inst *in = &a->v[a->n];
    memset(in, 0, sizeof *in);
    in->rule = rule;
    snprintf(in->name, sizeof in->name, "%s", name);
    snprintf(in->scheme, sizeof in->scheme, "%s", scheme);
    snprintf(in->nationality, sizeof in->nationality, "%s", nat);
    snprintf(in->hex, sizeof in->hex, "%016" PRIx64, cm_alert_instance_hash(name, scheme, nat));
    in->id = ++a->next_id;
    a->n++;
    /* the instance registry: a restarted daemon finds firing instances whose
     * scheme (or nationality) has left the figures, and resolves them. A
     * member is name NUL scheme, and NUL nationality for a nationality rule */
    char set[512], member[CM_ALERT_NAME_MAX + 2 * CM_ALERT_SCHEME_MAX + 3];
    snprintf(set, sizeof set, "%s:{alerts}:instances", a->cfg->key_prefix);
    size_t ml = strlen(name), sl = strlen(scheme), nl = strlen(nat);
    memcpy(member, name, ml);
    member[ml] = '\0';
    memcpy(member + ml + 1, scheme, sl);
    size_t len = ml + 1 + sl;
    if (nl) {
        member[len++] = '\0';
        memcpy(member + len, nat, nl);
        len += nl;
    }
    const char *argv[] = {"SADD", set, member};
    size_t lens[] = {4, strlen(set), len};
    if (cm_rconn_ready(a->rc))
        (void)cm_rconn_send(a->rc, 3, argv, lens, al_ignore_reply, NULL);
    return in;
}

void al_ignore_reply(struct cm_rconn *c, struct redisReply *rep, int err, void *ud)
{
    (void)c, (void)rep, (void)err, (void)ud;
}

/* The event of in entering target with its figures, packed (malloc'd). */
static uint8_t *make_event(struct cmd_alerts *a, const struct al_inst *in, int target,
                           int64_t seq, int64_t as_of, size_t *len)
{
    const struct cm_alert_rule *r = rule_of(a, in);
    Circmon__V1__Alert ev = CIRCMON__V1__ALERT__INIT;
    char idem[64];
    double v = 0;
    snprintf(idem, sizeof idem, "%s-%" PRId64, in->hex, seq);
    ev.rule = (char *)r->name;
    ev.scheme = (char *)in->scheme;
    ev.nationality = (char *)in->nationality;
    ev.indicator = (char *)cm_rate_name(r->indicator);
    ev.state = target == CM_ALERT_FIRING ? CIRCMON__V1__ALERT_STATE__FIRING
                                         : CIRCMON__V1__ALERT_STATE__RESOLVED;
    ev.has_value = cm_alert_value(&in->f, &v);
    ev.value = ev.has_value ? v : 0;
    ev.expected_departures = in->f.n;
    ev.threshold = (double)r->threshold / (double)CM_ALERT_SCALE;
    ev.below = r->below;
    ev.hysteresis = (double)r->hysteresis / (double)CM_ALERT_SCALE;
    ev.window_months = r->window_months;
    ev.min_expected = r->min_expected;
    ev.evaluated_at = as_of;
    ev.since = as_of;
    ev.idempotency_key = idem;
    *len = circmon__v1__alert__get_packed_size(&ev);
    uint8_t *buf = malloc(*len ? *len : 1);
    if (buf)
        circmon__v1__alert__pack(&ev, buf);
    return buf;
}

static void send_cas(struct cmd_alerts *a, struct al_inst *in);

struct cas_ctx {
    struct cmd_alerts *a;
    uint64_t id;  /* the instance (indices move when rules are re-applied) */
    uint64_t gen; /* the rules' generation */
    int target;
    int64_t as_of;
};

static struct al_inst *by_id(struct cmd_alerts *a, uint64_t id)
{
    for (size_t i = 0; i < a->n; i++)
        if (a->v[i].id == id)
            return &a->v[i];
    return NULL;
}

static int64_t int_of(const redisReply *e)
{
    if (!e || e->type != REDIS_REPLY_STRING)
        return 0;
    return strtoll(e->str, NULL, 10);
}

static void log_transition(const struct cmd_alerts *a, const struct al_inst *in, int64_t seq)
{
    const struct cm_alert_rule *r = rule_of(a, in);
    char thr[32], hy[32], val[32];
    double v;
    cm_alert_decimal_str(r->threshold, thr);
    cm_alert_decimal_str(r->hysteresis, hy);
    if (cm_alert_value(&in->f, &v))
        snprintf(val, sizeof val, "%.6f", v);
    else
        snprintf(val, sizeof val, "null");
    const struct cm_log_field f[] = {{"CIRCMON_ALERT", r->name},
                                     {"CIRCMON_SCHEME", in->scheme},
                                     {"CIRCMON_NATIONALITY", in->nationality[0] ? in->nationality : NULL}};
    cm_log_ev(CM_LOG_WARNING, CM_LOGID_ALERT, f, NELEM(f),
              "alert %s scheme %s%s%s: %s: %s %s (%s %s, hysteresis %s) over %d months, "
              "expected departures %" PRId64 " (min %" PRId64 "), evaluated at %" PRId64
              ", since %" PRId64 ", key %s-%" PRId64,
              r->name, in->scheme, in->nationality[0] ? " nationality " : "", in->nationality,
              in->state == CM_ALERT_FIRING ? "FIRING" : "RESOLVED", cm_rate_name(r->indicator),
              val, r->below ? "below" : "above", thr, hy, r->window_months, in->f.n,
              r->min_expected, in->at, in->since, in->hex, seq);
}

static void on_cas(struct cm_rconn *c, struct redisReply *rep, int err, void *ud)
{
    struct cas_ctx *x = ud;
    struct cmd_alerts *a = x->a;
    (void)c;
    if (x->gen == a->gen)
        a->pending--; /* replies of an older generation were uncounted by cmd_alerts_apply */
    struct al_inst *in = x->gen == a->gen ? by_id(a, x->id) : NULL;
    if (!in) {
        free(x);
        return;
    }
    in->in_flight = 0;
    if (err || !rep || rep->type != REDIS_REPLY_ARRAY || rep->elements < 6) {
        a->redis_errors++;
        if (!a->err_logged)
            cm_log_err("alerts: the state of %s/%s%s%s could not be compared and set: %s",
                       in->name, in->scheme, in->nationality[0] ? "/" : "", in->nationality,
                       err ? strerror(-err) : rep && rep->type == REDIS_REPLY_ERROR ? rep->str
                                                                                  : "bad reply");
        a->err_logged = 1;
        free(x);
        return;
    }
    a->err_logged = 0;
    int code = (int)int_of(rep->element[0]);
    in->known = 1;
    in->state = rep->element[1]->type == REDIS_REPLY_STRING &&
                        !strcmp(rep->element[1]->str, "firing")
                    ? CM_ALERT_FIRING
                    : CM_ALERT_OK;
    in->seq = int_of(rep->element[2]);
    in->at = int_of(rep->element[3]);
    in->since = int_of(rep->element[4]);
    in->outbox = int_of(rep->element[5]);
    in->n_hist = 0;
    for (size_t i = 6; i < rep->elements && in->n_hist < AL_HIST; i++)
        if (rep->element[i]->type == REDIS_REPLY_STRING)
            snprintf(in->hist[in->n_hist++], sizeof in->hist[0], "%s", rep->element[i]->str);
    if (code == 2) {
        a->trans[in->rule][in->state == CM_ALERT_FIRING] += 1;
        log_transition(a, in, in->seq);
        if (a->crash_after_cas)
            raise(SIGKILL); /* test hook: decided, not delivered */
        al_pub_kick(a);
    } else if (code == 0 && x->target >= 0 && in->tries++ < 3) {
        send_cas(a, in); /* the state moved since it was read: decide again */
    } else if (code == 0 && x->target < 0 && !in->tries++) {
        send_cas(a, in); /* first read of this instance */
    }
    if (in->outbox > 0)
        al_pub_kick(a);
    free(x);
}

static void send_cas(struct cmd_alerts *a, struct al_inst *in)
{
    const struct cm_alert_rule *r = rule_of(a, in);
    int target = -1;
    if (!r || in->in_flight || !cm_rconn_ready(a->rc))
        return;
    if (in->known) {
        enum cm_alert_state next = cm_alert_next(r, in->state, &in->f);
        if ((int)next != in->state)
            target = next;
    }
    char k_st[600], k_ob[600], k_hi[600], seq[32], at[32], v[40], n[32], hist[300];
    double dv;
    al_key(a, in, "st", k_st, sizeof k_st);
    al_key(a, in, "outbox", k_ob, sizeof k_ob);
    al_key(a, in, "hist", k_hi, sizeof k_hi);
    snprintf(seq, sizeof seq, "%" PRId64, in->known ? in->seq : (int64_t)-1);
    snprintf(at, sizeof at, "%" PRId64, in->eval_at);
    if (cm_alert_value(&in->f, &dv))
        snprintf(v, sizeof v, "%.17g", dv);
    else
        snprintf(v, sizeof v, "null");
    snprintf(n, sizeof n, "%" PRId64, in->f.n);
    size_t ev_len = 0;
    uint8_t *ev = NULL;
    if (target >= 0) {
        ev = make_event(a, in, target, in->seq + 1, in->eval_at, &ev_len);
        if (!ev) {
            cm_log_err("alerts: out of memory for the event of %s/%s%s%s", in->name, in->scheme,
                       in->nationality[0] ? "/" : "", in->nationality);
            return;
        }
        snprintf(hist, sizeof hist,
                 "{\"state\":\"%s\",\"at\":%" PRId64 ",\"value\":%s,\"n\":%" PRId64
                 ",\"idempotency_key\":\"%s-%" PRId64 "\"}",
                 target == CM_ALERT_FIRING ? "FIRING" : "RESOLVED", in->eval_at, v, in->f.n,
                 in->hex, in->seq + 1);
    } else {
        hist[0] = '\0';
    }
    struct cas_ctx *x = malloc(sizeof *x);
    if (!x) {
        free(ev);
        cm_log_err("alerts: out of memory for a compare-and-set");
        return;
    }
    *x = (struct cas_ctx){a, in->id, a->gen, target, in->eval_at};
    const char *tname = target < 0 ? "" : target == CM_ALERT_FIRING ? "firing" : "ok";
    const char *argv[] = {"EVAL", CAS_LUA, "3", k_st, k_ob, k_hi, seq, at, tname, v, n,
                          ev ? (const char *)ev : "", hist};
    size_t lens[NELEM(argv)];
    for (size_t i = 0; i < NELEM(argv); i++) /* the event is binary: its own length */
        lens[i] = i == 11 ? ev_len : strlen(argv[i]);
    if (cm_rconn_send(a->rc, (int)NELEM(argv), argv, lens, on_cas, x) < 0) {
        free(x);
    } else {
        in->in_flight = 1;
        a->pending++;
    }
    free(ev);
}

/* The instances of rule r are not evaluated this time: they keep their
 * state and last figures (no compare-and-set). */
static void hold(struct cmd_alerts *a, size_t r)
{
    for (size_t i = 0; i < a->n; i++)
        if (a->v[i].rule == r)
            a->v[i].present = 2;
}

/* One evaluation of every rule on the read side's figures. */
static void evaluate(struct cmd_alerts *a, const struct cmd_figures *fig)
{
    for (size_t i = 0; i < a->n; i++)
        a->v[i].present = 0;
    for (size_t r = 0; r < a->cfg->n_alerts; r++) {
        struct cm_alert_inst *iv = NULL;
        size_t n = 0;
        if (a->cfg->alerts[r].nationality[0] && !fig->nat_cohorts) {
            /* figures made before a reload brought the first nationality
             * rule: evaluated from the next read on */
            hold(a, r);
            continue;
        }
        int rc = cm_alert_instances(&a->cfg->alerts[r], fig->doc, fig->as_of, &iv, &n);
        if (rc == -ENODATA) {
            cm_log_err("alerts: rule %s: the stored aggregate has no cohorts per nationality "
                       "for some of its data (folded by a version before them, or with "
                       "nationality_cohorts = no): rebuild the "
                       "aggregate (README \"Operations\"); the rule is not evaluated",
                       a->cfg->alerts[r].name);
            hold(a, r);
            continue;
        }
        if (rc < 0) {
            cm_log_err("alerts: rule %s: cannot take its instances from the figures: %s",
                       a->cfg->alerts[r].name, strerror(-rc));
            hold(a, r); /* not evaluated: not resolved either */
            continue;
        }
        for (size_t j = 0; j < n; j++) {
            struct al_inst *in = find_or_add(a, r, iv[j].scheme, iv[j].nationality);
            if (!in)
                continue;
            in->f = iv[j].f;
            in->present = 1;
        }
        free(iv);
    }
    for (size_t i = 0; i < a->n; i++) {
        struct al_inst *in = &a->v[i];
        if (in->present == 2)
            continue;
        if (!in->present) /* a scheme (or nationality) with no expected departure in the window */
            in->f = (struct cm_alert_figures){0, 0};
        in->eval_at = fig->as_of;
        in->evaluated = 1;
        in->tries = 0;
        send_cas(a, in);
    }
    a->last_eval_ms = cm_clock_ms();
    a->last_read_at = fig->read_at_ms;
    a->last_applies = cm_counter_get(a->d->c_applies);
    a->evaluations++;
}

static void on_members(struct cm_rconn *c, struct redisReply *rep, int err, void *ud)
{
    struct cmd_alerts *a = ud;
    (void)c;
    if (err || !rep || rep->type != REDIS_REPLY_ARRAY)
        return; /* asked again at the next tick */
    a->members_read = 1;
    for (size_t i = 0; i < rep->elements; i++) {
        const redisReply *e = rep->element[i];
        if (e->type != REDIS_REPLY_STRING)
            continue;
        /* name NUL scheme [NUL nationality] */
        size_t nl = strnlen(e->str, e->len);
        if (nl >= e->len)
            continue;
        const char *sp = e->str + nl + 1;
        size_t rest = e->len - nl - 1, sl = strnlen(sp, rest);
        size_t tl = sl < rest ? rest - sl - 1 : 0;
        if (sl > CM_ALERT_SCHEME_MAX || tl > CM_ALERT_SCHEME_MAX || (sl < rest && !tl) ||
            memchr(sp + sl + (sl < rest), 0, tl))
            continue;
        char scheme[CM_ALERT_SCHEME_MAX + 1], nat[CM_ALERT_SCHEME_MAX + 1];
        memcpy(scheme, sp, sl);
        scheme[sl] = '\0';
        if (tl)
            memcpy(nat, sp + sl + 1, tl);
        nat[tl] = '\0';
        for (size_t r = 0; r < a->cfg->n_alerts; r++) {
            const struct cm_alert_rule *ru = &a->cfg->alerts[r];
            if (!strcmp(ru->name, e->str) &&
                (!strcmp(ru->scheme, "*") || !strcmp(ru->scheme, scheme)) &&
                (ru->nationality[0] ? !strcmp(ru->nationality, "*") || !strcmp(ru->nationality, nat)
                                    : !nat[0]))
                (void)find_or_add(a, r, scheme, nat);
        }
    }
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct cmd_alerts *a = arg;
    (void)fd, (void)what;
    cmd_timer_in(a->tick, a->tick_ms);
    if (!cm_rconn_ready(a->rc) || !a->d->http)
        return;
    if (!a->members_read) {
        char set[512];
        snprintf(set, sizeof set, "%s:{alerts}:instances", a->cfg->key_prefix);
        const char *argv[] = {"SMEMBERS", set};
        (void)cm_rconn_send(a->rc, 2, argv, NULL, on_members, a);
        return;
    }
    al_pub_kick(a);
    const struct cmd_figures *fig = cmd_readside_figures(a->d->http->rs);
    if (!fig || a->pending)
        return;
    int64_t now = cm_clock_ms();
    int due = !a->evaluations || now - a->last_eval_ms >= (int64_t)a->cfg->alerts_interval_s * 1000;
    int changed = fig->read_at_ms != a->last_read_at &&
                  cm_counter_get(a->d->c_applies) != a->last_applies;
    if (due || changed)
        evaluate(a, fig);
}

static int on_prepare(struct cm_rconn *c, void *ud)
{
    (void)c, (void)ud;
    return 0;
}

static void on_state(struct cm_rconn *c, int up, void *ud)
{
    struct cmd_alerts *a = ud;
    if (!up) {
        a->redis_errors++;
        cm_log_warn("alerts: redis connection down: %s", cm_rconn_errstr(c));
    }
}

static int env_int(const char *name, int def)
{
    const char *s = getenv(name);
    return s && *s ? atoi(s) : def;
}

static int start(struct daemon *d, const struct cm_config *cfg)
{
    if (!cfg->n_alerts)
        return 0;
    if (!d->http) {
        cm_log_warn("alerts: %zu rules, but [http] port is 0: the alerts need the read side "
                    "and are not evaluated", cfg->n_alerts);
        return 0;
    }
    struct cmd_alerts *a = calloc(1, sizeof *a);
    if (!a) {
        cm_log_err("alerts: out of memory");
        return -ENOMEM;
    }
    a->d = d;
    a->cfg = cfg;
    a->gen = 1;
    a->tick_ms = a->cfg->alerts_interval_s * 100 < 100 ? 100 : a->cfg->alerts_interval_s * 100;
    a->crash_after_cas = env_int("CIRCMOND_TEST_CRASH_AFTER_ALERT_CAS", 0);
    a->trans = calloc(a->cfg->n_alerts, sizeof *a->trans);
    a->rc = cm_rconn_new(d->base, cfg, on_prepare, on_state, a);
    a->tick = evtimer_new(d->base, on_tick, a);
    d->alerts = a;
    if (!a->trans || !a->rc || !a->tick) {
        cm_log_err("alerts: out of memory setting up");
        return -ENOMEM;
    }
    int r = al_pub_setup(a);
    if (r < 0)
        return r;
    cmd_timer_in(a->tick, 100);
    cm_log_info("alerts: %zu rules, evaluated every %d s (and after applies, at most every "
                "%d ms), events to %s", a->cfg->n_alerts, a->cfg->alerts_interval_s,
                a->tick_ms, a->cfg->alert_topic);
    return 0;
}

int cmd_alerts_start(struct daemon *d)
{
    return start(d, d->cfg);
}

/* Moves the rules of nc into live. */
static void move_rules(struct cm_config *live, struct cm_config *nc)
{
    free(live->alerts);
    live->alerts = nc->alerts;
    live->n_alerts = nc->n_alerts;
    live->alerts_interval_s = nc->alerts_interval_s;
    nc->alerts = NULL;
    nc->n_alerts = 0;
}

int cmd_alerts_apply(struct daemon *d, struct cm_config *live, struct cm_config *nc)
{
    struct cmd_alerts *a = d->alerts;
    if (!a) {
        move_rules(live, nc);
        int r = start(d, live); /* started without rules */
        if (r < 0)
            cmd_alerts_free(d);
        return r;
    }
    uint64_t (*trans)[2] = calloc(nc->n_alerts ? nc->n_alerts : 1, sizeof *trans);
    if (!trans)
        return -ENOMEM;
    /* keep the instances of rules that stay (by name), renumbered */
    size_t k = 0;
    for (size_t i = 0; i < a->n; i++) {
        for (size_t r = 0; r < nc->n_alerts; r++)
            if (!strcmp(nc->alerts[r].name, a->v[i].name)) {
                uint64_t t0 = a->trans[a->v[i].rule][0], t1 = a->trans[a->v[i].rule][1];
                a->v[k] = a->v[i];
                a->v[k].rule = r;
                a->v[k].in_flight = 0;
                trans[r][0] = t0;
                trans[r][1] = t1;
                k++;
                break;
            }
    }
    a->n = k;
    free(a->trans);
    a->trans = trans;
    cm_log_info("reload: alerts: %zu rules (were %zu), evaluated every %d s", nc->n_alerts,
                live->n_alerts, nc->alerts_interval_s);
    move_rules(live, nc);
    a->cfg = live;
    a->tick_ms = live->alerts_interval_s * 100 < 100 ? 100 : live->alerts_interval_s * 100;
    a->gen++;
    a->pending = 0; /* replies of the old generation are ignored */
    a->evaluations = 0;
    al_pub_reset(a);
    return 0;
}

json_t *cmd_alerts_json(struct daemon *d)
{
    struct cmd_alerts *a = d->alerts;
    json_t *arr = json_array();
    if (!arr)
        return NULL;
    for (size_t i = 0; a && i < a->n; i++) {
        const struct al_inst *in = &a->v[i];
        const struct cm_alert_rule *r = rule_of(a, in);
        if (!r || !in->known)
            continue;
        char thr[32], hy[32];
        double v;
        cm_alert_decimal_str(r->threshold, thr);
        cm_alert_decimal_str(r->hysteresis, hy);
        json_t *hist = json_array();
        for (int h = 0; hist && h < in->n_hist; h++) {
            json_t *e = json_loads(in->hist[h], 0, NULL);
            if (e)
                json_array_append_new(hist, e);
        }
        int has = cm_alert_value(&in->f, &v);
        json_t *o = json_pack("{sssssssssssosIsssssIsisIsIsIsI}", "alert", r->name, "scheme",
                              in->scheme, "nationality", in->nationality, "indicator",
                              cm_rate_name(r->indicator), "state",
                              in->state == CM_ALERT_FIRING ? "firing" : "ok", "value",
                              has ? json_real(v) : json_null(), "expected_departures",
                              (json_int_t)in->f.n, r->below ? "below" : "above", thr,
                              "hysteresis", hy, "min_expected", (json_int_t)r->min_expected,
                              "window_months", r->window_months, "since", (json_int_t)in->since,
                              "evaluated_at", (json_int_t)in->at, "transitions",
                              (json_int_t)in->seq, "outbox", (json_int_t)in->outbox);
        if (o && json_object_set_new(o, "last_transitions", hist ? hist : json_array()) < 0) {
            json_decref(o);
            o = NULL;
        }
        if (!o || json_array_append_new(arr, o) < 0) {
            json_decref(arr);
            return NULL;
        }
    }
    json_t *doc = json_pack("{sosb}", "alerts", arr, "evaluating", a != NULL);
    return doc;
}

/* One sample of name with the labels name=value pairs (n of them). */
static int sample(struct cm_strbuf *b, const char *name, const char *const (*kv)[2], size_t n,
                  double v)
{
    struct cm_strbuf l = {0};
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = cm_prom_label(&l, kv[i][0], kv[i][1]);
    if (rc == 0)
        rc = cm_prom_sample(b, name, l.s ? l.s : "", v);
    cm_strbuf_free(&l);
    return rc < 0 ? -ENOMEM : 0;
}

int cmd_alerts_metrics(struct daemon *d, struct cm_strbuf *b)
{
    struct cmd_alerts *a = d->alerts;
    static const struct {
        const char *name, *help;
    } fam[] = {
        {"circmon_alert_firing", "1 while the alert instance fires (its state in Redis)"},
        {"circmon_alert_value", "the instance's indicator over its window (absent when null)"},
        {"circmon_alert_expected_departures", "expected departures in the instance's window"},
    };
    if (!a)
        return 0;
    for (size_t f = 0; f < NELEM(fam); f++) {
        if (cm_prom_family(b, fam[f].name, "gauge", fam[f].help) < 0)
            return -ENOMEM;
        for (size_t i = 0; i < a->n; i++) {
            const struct al_inst *in = &a->v[i];
            double v;
            if (!in->known || !rule_of(a, in))
                continue;
            if (f == 1 && !cm_alert_value(&in->f, &v))
                continue;
            double x = f == 0 ? (in->state == CM_ALERT_FIRING) : f == 1 ? v : (double)in->f.n;
            const char *const kv[][2] = {{"alert", in->name}, {"scheme", in->scheme},
                                         {"nationality", in->nationality}};
            if (sample(b, fam[f].name, kv, 3, x) < 0)
                return -ENOMEM;
        }
    }
    if (cm_prom_family(b, "circmon_alert_transitions_total", "counter",
                       "alert transitions this process made, by state entered") < 0)
        return -ENOMEM;
    for (size_t r = 0; r < a->cfg->n_alerts; r++)
        for (int st = 0; st < 2; st++) {
            const char *const kv[][2] = {{"alert", a->cfg->alerts[r].name},
                                         {"state", st ? "FIRING" : "RESOLVED"}};
            if (sample(b, "circmon_alert_transitions_total", kv, 2, (double)a->trans[r][st]) < 0)
                return -ENOMEM;
        }
    if (cm_prom_family(b, "circmon_alert_redis_errors_total", "counter",
                       "alert compare-and-sets and publisher steps that failed in Redis") < 0 ||
        cm_prom_sample(b, "circmon_alert_redis_errors_total", "", (double)a->redis_errors) < 0)
        return -ENOMEM;
    return 0;
}

void cmd_alerts_free(struct daemon *d)
{
    struct cmd_alerts *a = d->alerts;
    if (!a)
        return;
    al_pub_free(a);
    if (a->tick)
        event_free(a->tick);
    a->rc = cm_rconn_free(a->rc);
    free(a->v);
    free(a->trans);
    free(a);
    d->alerts = NULL;
}
