/* readside.c - circmond's read side: every partition's aggregate read asynchronously, evaluated, cached. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "circmon/alias.h"
#include "circmon/clock.h"
#include "circmon/decimal.h"
#include "circmon/indicators.h"
#include "circmon/log.h"
#include "circmon/prom.h"
#include "circmon/redis_conn.h"
#include "circmon/store.h"
#include "circmon/store_layout.h"
#include "readside.h"

/* One refresh: a fresh aggregate filled partition by partition. */
struct rs_run {
    struct cmd_readside *rs;
    struct cm_alias al; /* the prefix read and its settings, resolved once for the whole run */
    struct cm_agg *ag;
    struct cm_names *nm;
    int64_t *pos;
    int n_parts;
    int next;     /* next partition to send */
    int replies;  /* replies still expected for the commands sent */
    int done;     /* partitions complete (both replies) */
    int *got;     /* replies per partition */
    int failed;   /* an error was recorded: the run is dropped at its last reply */
    int detached; /* the read side let go of it (freed or restarted) */
    int64_t t0_us;
    /* the evaluation, off the loop (evaluate() on its own thread) */
    const struct cm_config *cfg;
    int cohort_months; /* [http] metrics_cohort_months when the read ended (a reload may change cfg's) */
    int nat_cohorts;   /* an alert rule had a nationality when the read ended (likewise) */
    struct cmd_figures *fig; /* its result, or NULL with err set */
    char err[256];
};

struct cmd_readside {
    struct event_base *base;
    const struct cm_config *cfg;
    struct cm_rconn *rc;
    struct event *timer;
    struct cm_hist *h_refresh;
    struct cm_counter *c_fail;
    int n_parts;
    struct rs_run *run; /* the refresh in flight (reading, or being evaluated) */
    int evaluating;     /* run's evaluation thread runs: joined by on_evaluated or the free */
    pthread_t th;
    int fds[2];         /* the thread's "done" byte wakes the loop */
    struct event *done_ev;
    struct cmd_figures *fig;
    char err[512];
    char last_logged[512];
    int64_t err_at_ms;
};

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void figures_free(struct cmd_figures *f)
{
    if (!f)
        return;
    cm_agg_free(f->ag);
    cm_names_free(f->nm);
    if (f->doc)
        json_decref(f->doc);
    free(f->json);
    free(f->prom);
    free(f->pos);
    cm_alias_free(&f->al);
    free(f);
}

static void run_free(struct rs_run *r)
{
    if (!r)
        return;
    figures_free(r->fig);
    cm_agg_free(r->ag);
    cm_names_free(r->nm);
    free(r->pos);
    free(r->got);
    cm_alias_free(&r->al);
    free(r);
}

/* Records why the refresh failed; logged when it differs from the last. */
static void fail(struct cmd_readside *rs, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(struct cmd_readside *rs, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rs->err, sizeof(rs->err), fmt, ap);
    va_end(ap);
    rs->err_at_ms = wall_ms();
    cm_counter_add(rs->c_fail, 1);
    if (strcmp(rs->err, rs->last_logged)) {
        cm_log_warn("reading the figures from Redis: %s (the last good figures stay)", rs->err);
        snprintf(rs->last_logged, sizeof(rs->last_logged), "%s", rs->err);
    }
}

static void arm(struct cmd_readside *rs)
{
    struct timeval tv;
    cm_clock_tv(rs->cfg->http_refresh_ms, &tv);
    if (evtimer_add(rs->timer, &tv) < 0)
        cm_log_err("cannot arm the read side's refresh timer");
}

/* The evaluation of a complete read, on a thread of its own: it touches only
 * the run (its aggregate and names) and the configuration, both read-only
 * for the loop meanwhile; cm_indicators_json and cm_prom_indicators are pure.
 * Costs the aggregate's entries and the groups printed (tens of ms for a big
 * stream), which the loop would otherwise be held for. */
static void evaluate(struct rs_run *r)
{
    struct cmd_figures *f = calloc(1, sizeof(*f));
    struct cm_strbuf pb = {0};
    if (!f) {
        snprintf(r->err, sizeof(r->err), "out of memory for the figures");
        return;
    }
    f->as_of = (int64_t)time(NULL);
    f->nat_cohorts = r->nat_cohorts;
    f->doc = cm_indicators_json_ex(r->ag, r->nm, r->cfg, f->as_of,
                                   r->nat_cohorts ? CM_IND_NAT_COHORTS : 0);
    if (!f->doc) {
        snprintf(r->err, sizeof(r->err), "cannot make the indicators document (a scheme id or "
                 "nationality is not UTF-8, or out of memory)");
        goto bad;
    }
    f->json = json_dumps(f->doc, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(17));
    char *j = f->json ? realloc(f->json, strlen(f->json) + 2) : NULL;
    if (!j) {
        snprintf(r->err, sizeof(r->err), "out of memory rendering the indicators document");
        goto bad;
    }
    f->json = j;
    f->json_len = strlen(f->json);
    memcpy(f->json + f->json_len, "\n", 2); /* as circmonctl prints it */
    f->json_len++;
    int pr = cm_prom_indicators(&pb, f->doc, f->as_of, r->cohort_months);
    if (pr < 0) {
        snprintf(r->err, sizeof(r->err), "cannot render the indicator metrics: %s", strerror(-pr));
        cm_strbuf_free(&pb);
        goto bad;
    }
    f->prom = pb.s ? pb.s : calloc(1, 1);
    f->prom_len = pb.len;
    if (!f->prom) {
        snprintf(r->err, sizeof(r->err), "out of memory rendering the indicator metrics");
        goto bad;
    }
    r->fig = f;
    return;
bad:
    figures_free(f);
}

static void *eval_main(void *arg)
{
    struct rs_run *r = arg;
    evaluate(r);
    ssize_t w;
    do
        w = write(r->rs->fds[1], "e", 1);
    while (w < 0 && errno == EINTR);
    return NULL;
}

/* Keeps the evaluated figures (or records why there are none). */
static void install(struct cmd_readside *rs, struct rs_run *r)
{
    struct cmd_figures *f = r->fig;
    if (!f) {
        fail(rs, "%s", r->err);
        return;
    }
    r->fig = NULL;
    f->ag = r->ag;
    f->nm = r->nm;
    f->pos = r->pos;
    f->n_parts = r->n_parts;
    f->al = r->al;
    memset(&r->al, 0, sizeof(r->al));
    r->ag = NULL;
    r->nm = NULL;
    r->pos = NULL;
    f->read_at_ms = wall_ms();
    f->took_us = cm_clock_us() - r->t0_us;
    cm_hist_observe(rs->h_refresh, (uint64_t)f->took_us);
    figures_free(rs->fig);
    rs->fig = f;
    rs->err[0] = '\0';
    rs->last_logged[0] = '\0';
}

static void on_evaluated(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct cmd_readside *rs = arg;
    char b[16];
    while (read(fd, b, sizeof(b)) > 0)
        ;
    if (!rs->evaluating)
        return;
    pthread_join(rs->th, NULL);
    rs->evaluating = 0;
    struct rs_run *r = rs->run;
    rs->run = NULL;
    install(rs, r);
    run_free(r);
}

/* The read is complete: evaluate it off the loop (inline when no thread
 * can start). */
static void finish(struct cmd_readside *rs, struct rs_run *r)
{
    r->cfg = &r->al.fold; /* the settings the prefix read was folded with */
    r->cohort_months = rs->cfg->http_metrics_cohort_months;
    r->nat_cohorts = cm_indicators_nat_cohorts_wanted(rs->cfg);
    if (pthread_create(&rs->th, NULL, eval_main, r) == 0) {
        rs->evaluating = 1;
        return; /* rs->run stays r until on_evaluated */
    }
    evaluate(r);
    rs->run = NULL;
    install(rs, r);
    run_free(r);
}

static void send_more(struct rs_run *r);

/* One partition's replies are in: parse them into the run. */
static void on_reply(struct cm_rconn *c, struct redisReply *rep, int err, void *ud);

struct rs_cmd {
    struct rs_run *run;
    int part;
    int is_pos;
};

static int parse_agg(struct rs_run *r, int part, const redisReply *rep, char *why, size_t wl)
{
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements % 2) {
        snprintf(why, wl, "aggregate of partition %d: %s", part,
                 rep->type == REDIS_REPLY_ERROR ? rep->str : "not a list of field/value pairs");
        return -EPROTO;
    }
    for (size_t j = 0; j < rep->elements; j += 2) {
        const redisReply *f = rep->element[j], *v = rep->element[j + 1];
        struct cm_agg_key key;
        int64_t x, cur, sum;
        int pr = -EINVAL;
        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) {
            snprintf(why, wl, "partition %d: a field or value of its aggregate is not a string",
                     part);
            return -EPROTO;
        }
        if ((pr = cm_agg_key_parse(f->str, f->len, r->nm, &key)) < 0) {
            if (pr == -ENOMEM) {
                snprintf(why, wl, "out of memory for the aggregate of partition %d", part);
                return -ENOMEM;
            }
            snprintf(why, wl, "partition %d: malformed aggregate field '%.*s'", part,
                     (int)(f->len > 120 ? 120 : f->len), f->str);
            return -EPROTO;
        }
        if (cm_decimal_i64(v->str, v->len, &x) < 0) {
            snprintf(why, wl, "partition %d: aggregate field '%.*s' holds '%.*s', not an integer",
                     part, (int)(f->len > 120 ? 120 : f->len), f->str,
                     (int)(v->len > 40 ? 40 : v->len), v->str);
            return -EPROTO;
        }
        cur = cm_agg_get(r->ag, &key);
        if (__builtin_add_overflow(cur, x, &sum)) {
            snprintf(why, wl, "partition %d: aggregate field '%.*s' overflows the sum", part,
                     (int)(f->len > 120 ? 120 : f->len), f->str);
            return -EPROTO;
        }
        if (cm_agg_add(r->ag, &key, x) < 0) {
            snprintf(why, wl, "out of memory for the aggregate of partition %d", part);
            return -ENOMEM;
        }
    }
    return 0;
}

static void on_reply(struct cm_rconn *c, struct redisReply *rep, int err, void *ud)
{
    (void)c;
    struct rs_cmd *cmd = ud;
    struct rs_run *r = cmd->run;
    struct cmd_readside *rs = r->rs;
    int part = cmd->part, is_pos = cmd->is_pos;
    free(cmd);
    r->replies--;
    if (!r->detached && !r->failed) {
        char why[400] = "";
        if (err < 0) {
            snprintf(why, sizeof(why), "partition %d: %s", part,
                     err == -ETIMEDOUT ? "no reply within command_timeout_ms"
                                       : "connection lost before the reply");
        } else if (is_pos) {
            int64_t p = 0;
            if (rep->type == REDIS_REPLY_STRING) {
                if (cm_decimal_i64(rep->str, rep->len, &p) < 0 || p < 0)
                    snprintf(why, sizeof(why), "partition %d: stored position '%.*s' is not a "
                             "decimal >= 0", part, (int)(rep->len > 40 ? 40 : rep->len), rep->str);
            } else if (rep->type != REDIS_REPLY_NIL) {
                snprintf(why, sizeof(why), "partition %d: GET of its position: %s", part,
                         rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
            }
            r->pos[part] = p;
        } else {
            parse_agg(r, part, rep, why, sizeof(why));
        }
        if (why[0]) {
            r->failed = 1;
            fail(rs, "%s", why);
        } else if (++r->got[part] == 2) {
            r->done++;
        }
    }
    if (r->detached || r->failed) {
        if (r->replies == 0) {
            if (!r->detached)
                rs->run = NULL;
            run_free(r);
        }
        return;
    }
    if (r->done == r->n_parts) {
        finish(rs, r);
        return;
    }
    send_more(r);
}

static int send_one(struct rs_run *r, int part, int is_pos)
{
    struct cmd_readside *rs = r->rs;
    struct rs_cmd *cmd = calloc(1, sizeof(*cmd));
    struct cm_agg_read rd = {0};
    char *k = is_pos ? cm_store_key_pos(r->al.prefix, part) : NULL;
    int rc = -ENOMEM, rdok = !is_pos && cm_agg_read_init(&rd, r->al.prefix, part) == 0;
    if (cmd && (k || rdok)) {
        cmd->run = r;
        cmd->part = part;
        cmd->is_pos = is_pos;
        const char *argv[] = {"GET", k};
        rc = is_pos ? cm_rconn_send(rs->rc, 2, argv, NULL, on_reply, cmd)
                    : cm_rconn_send(rs->rc, rd.argc, rd.argv, rd.lens, on_reply, cmd);
    }
    free(k);
    if (rdok)
        cm_agg_read_free(&rd);
    if (rc < 0)
        free(cmd);
    else
        r->replies++;
    return rc;
}

/* Keeps RS_IN_FLIGHT partitions in flight. */
static void send_more(struct rs_run *r)
{
    struct cmd_readside *rs = r->rs;
    while (r->next < r->n_parts && (r->next - r->done) < RS_IN_FLIGHT) {
        int p = r->next++;
        int e = send_one(r, p, 0);
        if (!e)
            e = send_one(r, p, 1);
        if (e < 0) {
            r->failed = 1;
            fail(rs, "partition %d: %s", p,
                 e == -ENOTCONN ? "redis connection lost" : "out of memory sending the read");
            if (r->replies == 0) {
                rs->run = NULL;
                run_free(r);
            }
            return;
        }
    }
}

/* The alias's reply: the prefix (and settings) of the whole run. */
static void on_alias(struct cm_rconn *c, struct redisReply *rep, int err, void *ud)
{
    (void)c;
    struct rs_run *r = ud;
    struct cmd_readside *rs = r->rs;
    char why[600] = "";
    r->replies--;
    if (r->detached) {
        run_free(r);
        return;
    }
    if (err < 0)
        snprintf(why, sizeof(why), "alias %s: %s", rs->cfg->redis_alias,
                 err == -ETIMEDOUT ? "no reply within command_timeout_ms"
                                   : "connection lost before the reply");
    else
        cm_alias_from_reply(rep, rs->cfg, &r->al, why, sizeof(why));
    if (why[0]) {
        fail(rs, "%s", why);
        rs->run = NULL;
        run_free(r);
        return;
    }
    if (!rs->fig || strcmp(rs->fig->al.prefix, r->al.prefix)) {
        cm_log_info("read side: reading prefix %s%s%s", r->al.prefix,
                    r->al.from_alias ? ", named by alias " : "",
                    r->al.from_alias ? rs->cfg->redis_alias : "");
        if (!rs->cfg->rebuild_run && r->al.from_alias && strcmp(r->al.prefix, rs->cfg->key_prefix))
            cm_log_warn("alias %s names prefix %s, not this daemon's key_prefix %s: its figures "
                        "are served from %s; this daemon folds a prefix nobody reads: restart "
                        "it on %s (README, Operations, Rebuild)",
                        rs->cfg->redis_alias, r->al.prefix, rs->cfg->key_prefix, r->al.prefix,
                        r->al.prefix);
        if (rs->cfg->rebuild_run && !strcmp(r->al.prefix, rs->cfg->key_prefix))
            cm_log_warn("alias %s names this rebuild run's prefix %s now: stop the daemons of "
                        "%s, and restart this one without --rebuild (a rebuild run writes no "
                        "dead letters)",
                        rs->cfg->redis_alias, r->al.prefix, r->al.previous);
    }
    send_more(r);
}

static void refresh(struct cmd_readside *rs)
{
    if (rs->run || rs->n_parts <= 0)
        return;
    if (!cm_rconn_ready(rs->rc)) {
        fail(rs, "redis not connected: %s", cm_rconn_errstr(rs->rc));
        return;
    }
    struct rs_run *r = calloc(1, sizeof(*r));
    if (!r || !(r->ag = cm_agg_new()) || !(r->nm = cm_names_new()) ||
        !(r->pos = calloc((size_t)rs->n_parts, sizeof(*r->pos))) ||
        !(r->got = calloc((size_t)rs->n_parts, sizeof(*r->got)))) {
        run_free(r);
        fail(rs, "out of memory for a read of %d partitions", rs->n_parts);
        return;
    }
    r->rs = rs;
    r->n_parts = rs->n_parts;
    r->t0_us = cm_clock_us();
    rs->run = r;
    if (!rs->cfg->redis_alias) {
        char why[300] = "";
        if (cm_alias_from_reply(NULL, rs->cfg, &r->al, why, sizeof(why)) < 0) {
            rs->run = NULL;
            run_free(r);
            fail(rs, "%s", why);
            return;
        }
        send_more(r);
        return;
    }
    /* once per run: every partition of this run is read under the prefix it names */
    const char *argv[] = {"HGETALL", rs->cfg->redis_alias};
    int e = cm_rconn_send(rs->rc, 2, argv, NULL, on_alias, r);
    if (e < 0) {
        rs->run = NULL;
        run_free(r);
        fail(rs, "alias %s: %s", rs->cfg->redis_alias,
             e == -ENOTCONN ? "redis connection lost" : "out of memory sending the read");
        return;
    }
    r->replies++;
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct cmd_readside *rs = arg;
    refresh(rs);
    arm(rs);
}

static void on_state(struct cm_rconn *c, int up, void *ud)
{
    struct cmd_readside *rs = ud;
    if (!up) {
        cm_log_debug("read side: %s", cm_rconn_errstr(c));
        return;
    }
    if (!rs->fig)
        refresh(rs); /* the first figures as soon as possible */
}

struct cmd_readside *cmd_readside_new(struct event_base *base, const struct cm_config *cfg,
                                      struct cm_hist *h_refresh, struct cm_counter *c_fail)
{
    struct cmd_readside *rs = calloc(1, sizeof(*rs));
    if (!rs)
        return NULL;
    rs->base = base;
    rs->cfg = cfg;
    rs->h_refresh = h_refresh;
    rs->c_fail = c_fail;
    rs->fds[0] = rs->fds[1] = -1;
    if (pipe(rs->fds) < 0 || fcntl(rs->fds[0], F_SETFL, O_NONBLOCK) < 0 ||
        fcntl(rs->fds[1], F_SETFL, O_NONBLOCK) < 0 ||
        !(rs->done_ev = event_new(base, rs->fds[0], EV_READ | EV_PERSIST, on_evaluated, rs)) ||
        event_add(rs->done_ev, NULL) < 0 || !(rs->timer = evtimer_new(base, on_timer, rs)) ||
        !(rs->rc = cm_rconn_new(base, cfg, NULL, on_state, rs)))
        return cmd_readside_free(rs);
    return rs;
}

int cmd_readside_start(struct cmd_readside *rs, int n_parts)
{
    if (n_parts <= 0)
        return -EINVAL;
    if (rs->run && !rs->evaluating) {
        rs->run->detached = 1; /* its replies free it */
        rs->run = NULL;
    }
    rs->n_parts = n_parts;
    evtimer_del(rs->timer);
    refresh(rs);
    arm(rs);
    return 0;
}

void cmd_readside_kick(struct cmd_readside *rs)
{
    refresh(rs);
}

const struct cmd_figures *cmd_readside_figures(const struct cmd_readside *rs)
{
    return rs ? rs->fig : NULL;
}

int cmd_readside_connected(const struct cmd_readside *rs)
{
    return rs && cm_rconn_ready(rs->rc);
}

int cmd_readside_parts(const struct cmd_readside *rs)
{
    return rs ? rs->n_parts : 0;
}

const char *cmd_readside_error(const struct cmd_readside *rs, int64_t *at_ms)
{
    if (at_ms)
        *at_ms = rs ? rs->err_at_ms : 0;
    return rs ? rs->err : "";
}

struct cmd_readside *cmd_readside_free(struct cmd_readside *rs)
{
    if (!rs)
        return NULL;
    if (rs->evaluating) {
        pthread_join(rs->th, NULL); /* at most one evaluation's time */
        rs->evaluating = 0;
        run_free(rs->run);
        rs->run = NULL;
    }
    /* a run still reading is detached: its pending replies come back with
     * -ECONNRESET inside cm_rconn_free, and the last one frees it */
    if (rs->run)
        rs->run->detached = 1;
    rs->run = NULL;
    rs->rc = cm_rconn_free(rs->rc);
    if (rs->timer)
        event_free(rs->timer);
    if (rs->done_ev)
        event_free(rs->done_ev);
    for (int i = 0; i < 2; i++)
        if (rs->fds[i] >= 0)
            close(rs->fds[i]);
    figures_free(rs->fig);
    free(rs);
    return NULL;
}
