/* check_alerts_e2e.c - alerts end to end: circmonctl alerts on a real redis-server; circmond with a real redis-server and broker, its alert events on alert_topic exactly once (crashes, two daemons, a restart). */
#include <check.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <librdkafka/rdkafka.h>
#include "circmon/framing.h"
#include "circmon/v1/alerts.pb-c.h"
#include "cm_svc.h"
#include "cm_test.h"
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "circmon/agg.h"
#include "circmon/alert.h"
#include "circmon/names.h"
#include "circmon/store_layout.h"

static char ctl[4096];

static void setup(void)
{
    svc_bin_needed("circmonctl", ctl, sizeof ctl);
    svc_dir_make("check_alerts_e2e");
}

static void teardown(void)
{
    svc_dir_remove();
}

/* Months since 1970-01 of y-m (INDICATORS.md section 1). */
static int64_t MON(int y, int m) { return (int64_t)(y - 1970) * 12 + (m - 1); }

/* Stores cohort counter ctr of (scheme, month) = v in partition part's aggregate. */
static void put(redisContext *c, int part, const char *scheme, int64_t month, enum cm_ctr ctr,
                int64_t v)
{
    struct cm_names *nm = cm_names_new();
    ck_assert_ptr_nonnull(nm);
    struct cm_agg_key k = {.kind = CM_AK_MONTH, .ctr = (uint8_t)ctr,
                           .scheme = cm_names_intern(nm, scheme, strlen(scheme)), .a = month};
    char f[1024];
    int n = cm_agg_key_format(&k, nm, f, sizeof f);
    ck_assert(n > 0 && (size_t)n <= sizeof f);
    redisReply *r = redisCommand(c, "HINCRBY circmon:{%d}:agg %b %lld", part, f, (size_t)n,
                                 (long long)v);
    ck_assert(r && r->type == REDIS_REPLY_INTEGER);
    freeReplyObject(r);
    cm_names_free(nm);
}

/* Runs circmonctl alerts, parses its JSON output. */
static json_t *alerts(const char *conf, const char *as_of)
{
    char cmd[13000], out[4400];
    snprintf(out, sizeof out, "%s/out", dir);
    snprintf(cmd, sizeof cmd, "'%s' alerts --config '%s' --as-of %s --format json >'%s'", ctl,
             conf, as_of, out);
    int st = system(cmd);
    ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "failed: %s", cmd);
    json_error_t je;
    json_t *doc = json_load_file(out, 0, &je);
    ck_assert_msg(doc != NULL, "output: %s", je.text);
    return doc;
}

static json_t *find(json_t *doc, const char *alert, const char *scheme)
{
    size_t i;
    json_t *o;
    json_array_foreach(json_object_get(doc, "instances"), i, o)
        if (!strcmp(json_string_value(json_object_get(o, "alert")), alert) &&
            !strcmp(json_string_value(json_object_get(o, "scheme")), scheme))
            return o;
    return NULL;
}

START_TEST(test_ctl_fire_condition)
{
    redis_start(0);
    const char *sock = redis_sock;
    redisContext *c = redisConnectUnix(sock);
    ck_assert(c && !c->err);
    /* S: 2026-10 40 expected, 1 late; 2026-12 20 expected, 2 in-country; 2026-09
     * (outside a 3-month window as of December 2026) 100 late of 100, in
     * another partition. T: 29 expected, all late (n = min_expected - 1). */
    put(c, 0, "S", MON(2026, 10), CM_C_EXPECTED, 40);
    put(c, 0, "S", MON(2026, 10), CM_C_LATE, 1);
    put(c, 1, "S", MON(2026, 12), CM_C_EXPECTED, 20);
    put(c, 1, "S", MON(2026, 12), CM_C_ICO, 2);
    put(c, 1, "S", MON(2026, 9), CM_C_EXPECTED, 100);
    put(c, 1, "S", MON(2026, 9), CM_C_LATE, 100);
    put(c, 2, "T", MON(2026, 11), CM_C_EXPECTED, 29);
    put(c, 2, "T", MON(2026, 11), CM_C_LATE, 29);
    redisFree(c);

    char conf[4400];
    snprintf(conf, sizeof conf, "%s/c.conf", dir);
    FILE *fp = fopen(conf, "w");
    ck_assert_ptr_nonnull(fp);
    fprintf(fp, "[redis]\nunix_socket = %s\n"
                "[alert over5]\nscheme = *\nindicator = overstay_rate\nabove = 0.05\n"
                "[alert ico]\nscheme = S\nindicator = in_country_overstay_rate\nabove = 0.034\n"
                "min_expected = 60\n"
                "[alert ret]\nscheme = S\nindicator = return_compliance_rate\nbelow = 0.5\n"
                "window_months = 4\n", sock);
    ck_assert_int_eq(fclose(fp), 0);

    json_t *doc = alerts(conf, "2026-12-15");
    /* over5 S: (1 + 2) / 60 = 0.05 >= 0.05, n = 60 >= 30: fires */
    json_t *o = find(doc, "over5", "S");
    ck_assert_ptr_nonnull(o);
    ck_assert_int_eq(json_integer_value(json_object_get(o, "expected_departures")), 60);
    ck_assert(json_is_true(json_object_get(o, "fire")));
    ck_assert(json_real_value(json_object_get(o, "value")) == 3.0 / 60.0);
    /* over5 T: v = 1 but n = 29 < 30: does not fire */
    o = find(doc, "over5", "T");
    ck_assert_ptr_nonnull(o);
    ck_assert(json_is_false(json_object_get(o, "fire")));
    /* ico S: 2 / 60 = 0.0333 < 0.034 */
    o = find(doc, "ico", "S");
    ck_assert_ptr_nonnull(o);
    ck_assert(json_is_false(json_object_get(o, "fire")));
    /* ret S over 4 months (2026-09 joins): in-time 0 / 160 = 0 <= 0.5 */
    o = find(doc, "ret", "S");
    ck_assert_ptr_nonnull(o);
    ck_assert_int_eq(json_integer_value(json_object_get(o, "expected_departures")), 160);
    ck_assert(json_is_true(json_object_get(o, "fire")));
    ck_assert_uint_eq(json_array_size(json_object_get(doc, "instances")), 4);
    json_decref(doc);

    /* As of February 2027 the window 2026-12..2027-02 holds S's 20 only: n < 30 */
    doc = alerts(conf, "2027-02-01");
    o = find(doc, "over5", "S");
    ck_assert_ptr_nonnull(o);
    ck_assert_int_eq(json_integer_value(json_object_get(o, "expected_departures")), 20);
    ck_assert(json_is_false(json_object_get(o, "fire")));
    ck_assert_ptr_null(find(doc, "over5", "T")); /* no expected departure in the window */
    json_decref(doc);
}
END_TEST

/* ------------------------------------------------------------ circmond */

#define D_PARTS 4
#define ALERT_TOPIC "circmon.events.alerts"

static void d_setup(void)
{
    setup();
    redis_start(0);
    broker_start_with(D_PARTS, ALERT_TOPIC);
}

static void d_teardown(void)
{
    teardown();
}

/* The [alert] sections of the daemons' configuration. */
static const char *d_rules = "[alert over]\nscheme = *\nindicator = overstay_rate\nabove = 0.5\n"
                             "min_expected = 2\nwindow_months = 3\nhysteresis = 0.01\n";

/* [circmon] nationality_cohorts of the daemons: yes where a rule has a nationality. */
static const char *d_cohorts = "no";

/* How many fields of the partitions' aggregates (all their hashes) start with pre ("c:": the
 * cohorts per nationality; "n:": the counters per nationality). */
static long agg_fields(const char *pre)
{
    redisContext *rc = redisConnectUnix(redis_sock);
    ck_assert(rc && !rc->err);
    long n = 0;
    for (int p = 0; p < D_PARTS; p++) {
        struct cm_agg_read rd;
        ck_assert_int_eq(cm_agg_read_init(&rd, "circmon", p), 0);
        redisReply *r = redisCommandArgv(rc, rd.argc, rd.argv, rd.lens);
        ck_assert(r && r->type == REDIS_REPLY_ARRAY);
        for (size_t i = 0; i < r->elements; i += 2)
            n += strncmp(r->element[i]->str, pre, strlen(pre)) == 0;
        freeReplyObject(r);
        cm_agg_read_free(&rd);
    }
    redisFree(rc);
    return n;
}

static const char *d_conf(int port)
{
    static char p[4400];
    snprintf(p, sizeof p, "%s/circmond-%d.conf", dir, port);
    FILE *fp = fopen(p, "w");
    ck_assert_ptr_nonnull(fp);
    fprintf(fp,
            "[circmon]\nbatch_size = 100\nlog_level = info\nnationality_cohorts = %s\n"
            "[kafka]\nbrokers = %s\ngroup_id = g-alerts\nrdkafka.session.timeout.ms = 6000\n"
            "[redis]\nunix_socket = %s\n"
            "[http]\nlisten = 127.0.0.1\nport = %d\nrefresh_ms = 200\n"
            "[alerts]\ninterval_s = 1\n%s",
            d_cohorts, brokers, redis_sock, port, d_rules);
    ck_assert_int_eq(fclose(fp), 0);
    return p;
}

/* A free loopback port below the ephemeral range. */
static int d_port(void)
{
    static int next = 21000;
    for (int tries = 0; tries < 2000; tries++) {
        int p = next++ + (int)(getpid() % 500) * 4;
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        ck_assert_int_ge(fd, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
        close(fd);
        if (ok)
            return p;
    }
    ck_abort_msg("no free port");
    return -1;
}

struct dmn {
    pid_t pid;
    int port;
    char log[4400];
};

/* Starts circmond with the extra environment; returns once its endpoint is open. */
static struct dmn d_start(const char *tag, char *const env[])
{
    struct dmn m;
    char path[4400];
    m.port = d_port();
    const char *conf = d_conf(m.port);
    snprintf(m.log, sizeof m.log, "%s/circmond-%s.log", dir, tag);
    cm_bin_path(path, sizeof path, "circmond");
    char *argv[] = {path, "--config", (char *)conf, "--foreground", NULL};
    m.pid = spawn(argv, NULL, m.log, NULL, env);
    double end = now_s() + 30;
    while (!file_has(m.log, "http endpoint at")) {
        ck_assert_msg(waitpid(m.pid, NULL, WNOHANG) == 0, "circmond exited (see %s)", m.log);
        ck_assert_msg(now_s() < end, "circmond did not open its endpoint (see %s)", m.log);
        nap_ms(20);
    }
    return m;
}

static void d_stop(struct dmn *m)
{
    kill(m->pid, SIGTERM);
    int st = wait_pid(m->pid, 30);
    ck_assert_msg(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
                  "circmond did not stop cleanly (see %s)", m->log);
}

static void d_publish(const struct tev *evs, int n, const char *name)
{
    char p[4400], log[4400], path[4400];
    snprintf(p, sizeof p, "%s/%s.bin", dir, name);
    snprintf(log, sizeof log, "%s/publish.log", dir);
    FILE *fp = fopen(p, "wb");
    ck_assert_ptr_nonnull(fp);
    for (int i = 0; i < n; i++) {
        struct msg m = tev_pack(&evs[i]);
        ck_assert_int_eq(cm_frame_write(fp, m.buf, m.len), 0);
    }
    ck_assert_int_eq(fclose(fp), 0);
    snprintf(path, sizeof path, "%s", ctl);
    char *argv[] = {path, "publish", "--config", (char *)d_conf(0), p, NULL};
    pid_t pid = spawn(argv, NULL, log, NULL, NULL);
    int st = wait_pid(pid, 60);
    ck_assert_msg(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "publish failed (%s)", log);
}

/* n migrants of scheme S: permit from now - 80 d to now - 20 d, entered now
 * - 70 d; with exits (now - 25 d: in time) or without (in-country
 * overstays). Each is an expected departure of the cohort of month(now - 20 d),
 * inside a window of 3 months as of now (INDICATORS.md sections 3, 5). */
static void migrants_of(const char *tag, int n, int exits, const char *nat)
{
    int64_t now = (int64_t)time(NULL);
    struct tev *ev = calloc((size_t)n * 3, sizeof *ev);
    int k = 0;
    ck_assert_ptr_nonnull(ev);
    for (int i = 0; i < n; i++) {
        char mid[64], pid[64];
        snprintf(mid, sizeof mid, "%s-m%d", tag, i);
        snprintf(pid, sizeof pid, "%s-p%d", tag, i);
        ev[k++] = ev_grant(NULL, mid, now - 85 * DAY, pid, "S", nat, now - 80 * DAY,
                           now - 20 * DAY);
        ev[k++] = ev_entry(NULL, mid, now - 70 * DAY);
        if (exits)
            ev[k++] = ev_exit(NULL, mid, now - 25 * DAY);
    }
    d_publish(ev, k, tag);
    free(ev);
}

static void migrants(const char *tag, int n, int exits)
{
    migrants_of(tag, n, exits, "MEX");
}

/* Every alert event on the alert topic, read from the start of each partition. */
struct seen {
    int n;
    char key[16][600];
    size_t key_len[16];
    char nat[16][300];
    char idem[16][64];
    int state[16];
    int64_t n_exp[16];
};

static struct seen topic_read(void)
{
    struct seen s = {0};
    rd_kafka_t *rk = topic_reader(ALERT_TOPIC, D_PARTS, "check-alerts-reader");
    int eof = 0;
    double end = now_s() + 30;
    rd_kafka_message_t *m;
    while ((m = topic_next(rk, ALERT_TOPIC, D_PARTS, &eof, end))) {
        ck_assert_int_lt(s.n, 16);
        Circmon__V1__Alert *a = circmon__v1__alert__unpack(NULL, m->len, m->payload);
        ck_assert_msg(a != NULL, "an alert event that does not decode");
        snprintf(s.key[s.n], sizeof s.key[0], "%.*s", (int)m->key_len, (const char *)m->key);
        s.key_len[s.n] = m->key_len < sizeof s.key[0] ? m->key_len : sizeof s.key[0];
        if (m->key)
            memcpy(s.key[s.n], m->key, s.key_len[s.n]);
        snprintf(s.nat[s.n], sizeof s.nat[0], "%s", a->nationality);
        snprintf(s.idem[s.n], sizeof s.idem[0], "%s", a->idempotency_key);
        s.state[s.n] = a->state;
        s.n_exp[s.n] = a->expected_departures;
        fprintf(stderr, "alert event on %s [%d] @%" PRId64 ": rule %s scheme %s state %s "
                        "value %g n %" PRId64 " threshold %g since %" PRId64 " key %s\n",
                ALERT_TOPIC, m->partition, m->offset, a->rule, a->scheme,
                a->state == CIRCMON__V1__ALERT_STATE__FIRING ? "FIRING" : "RESOLVED",
                a->value, a->expected_departures, a->threshold, a->since,
                a->idempotency_key);
        s.n++;
        circmon__v1__alert__free_unpacked(a, NULL);
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return s;
}

/* Polls (bounded) until the topic holds at least n events. */
static struct seen topic_wait(int n, pid_t watch, const char *log)
{
    double end = now_s() + 60;
    for (;;) {
        struct seen s = topic_read();
        if (s.n >= n)
            return s;
        if (watch > 0)
            ck_assert_msg(waitpid(watch, NULL, WNOHANG) == 0, "circmond exited (see %s)", log);
        ck_assert_msg(now_s() < end, "%d alert events after 60 s, want %d (see %s)", s.n, n, log);
        nap_ms(300);
    }
}

/* GET /v1/alerts of m, parsed. */
static json_t *v1_alerts(const struct dmn *m)
{
    char buf[65536];
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)m->port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    static const char req[] = "GET /v1/alerts HTTP/1.0\r\n\r\n";
    ck_assert_int_eq(write(fd, req, sizeof req - 1), (ssize_t)(sizeof req - 1));
    size_t got = 0;
    for (ssize_t r; got + 1 < sizeof buf && (r = read(fd, buf + got, sizeof buf - 1 - got)) > 0;)
        got += (size_t)r;
    close(fd);
    buf[got] = '\0';
    char *body = strstr(buf, "\r\n\r\n");
    ck_assert_msg(body && strstr(buf, " 200 "), "GET /v1/alerts: %s", buf);
    json_t *j = json_loads(body + 4, 0, NULL);
    ck_assert_msg(j != NULL, "GET /v1/alerts: not JSON: %s", body);
    return j;
}

/* GET /v1/schemes of m: its nationality_cohorts, 1 for true, 0 for false. */
static int schemes_nat_cohorts(const struct dmn *m)
{
    static char buf[65536];
    ck_assert_int_gt(http_get_raw(m->port, "/v1/schemes", buf, sizeof buf), 0);
    char *body = strstr(buf, "\r\n\r\n");
    ck_assert_msg(body && strstr(buf, " 200 "), "GET /v1/schemes: %.500s", buf);
    json_t *j = json_loads(body + 4, 0, NULL);
    ck_assert_msg(j != NULL, "GET /v1/schemes: not JSON: %.500s", body);
    json_t *v = json_object_get(j, "nationality_cohorts");
    ck_assert_msg(json_is_boolean(v), "GET /v1/schemes: no nationality_cohorts: %.500s", body);
    int r = json_is_true(v);
    json_decref(j);
    return r;
}

/* Polls m's /v1/alerts until instance (over, S) was evaluated at or after t. */
static void evaluated_since(const struct dmn *m, int64_t t, const char *state)
{
    double end = now_s() + 60;
    for (;;) {
        json_t *j = v1_alerts(m);
        size_t i;
        json_t *o;
        int ok = 0;
        json_array_foreach(json_object_get(j, "alerts"), i, o)
            if (!strcmp(json_string_value(json_object_get(o, "scheme")), "S") &&
                json_integer_value(json_object_get(o, "evaluated_at")) >= t)
                ok = !strcmp(json_string_value(json_object_get(o, "state")), state);
        json_decref(j);
        if (ok)
            return;
        ck_assert_msg(now_s() < end, "instance over/S not evaluated %s since %" PRId64 " (%s)",
                      state, t, m->log);
        nap_ms(200);
    }
}

static void assert_distinct(const struct seen *s)
{
    for (int i = 0; i < s->n; i++)
        for (int k = i + 1; k < s->n; k++)
            ck_assert_msg(strcmp(s->idem[i], s->idem[k]) != 0, "event %s twice on the topic",
                          s->idem[i]);
}

START_TEST(test_fire_restart_resolve)
{
    struct dmn m = d_start("a", NULL);
    /* 2 in-country overstays of 2 expected departures: v = 1 >= 0.5, n = 2 >= 2 */
    migrants("o", 2, 0);
    struct seen s = topic_wait(1, m.pid, m.log);
    ck_assert_int_eq(s.n, 1);
    ck_assert_int_eq(s.state[0], CIRCMON__V1__ALERT_STATE__FIRING);
    ck_assert_int_eq(s.n_exp[0], 2);
    ck_assert_int_eq(memcmp(s.key[0], "over", 5), 0); /* rule NUL scheme NUL */
    ck_assert(file_has(m.log, "warning: alert over scheme S: FIRING"));
    /* a restart with the alert still firing: evaluated again, nothing new */
    d_stop(&m);
    int64_t t = (int64_t)time(NULL) + 1;
    m = d_start("b", NULL);
    evaluated_since(&m, t + 1, "firing");
    s = topic_read();
    ck_assert_int_eq(s.n, 1);
    ck_assert(!file_has(m.log, "FIRING"));
    /* 6 in-time departures more: v = 2 / 8 = 0.25 < 0.5 - 0.01: one RESOLVED.
     * It may come from figures read while the batches were applied: 2 / n
     * < 0.49 holds from n = 5 on, so its n is 5..8. */
    migrants("t", 6, 1);
    s = topic_wait(2, m.pid, m.log);
    ck_assert_int_eq(s.n, 2);
    ck_assert_int_eq(s.state[1], CIRCMON__V1__ALERT_STATE__RESOLVED);
    ck_assert_msg(s.n_exp[1] >= 5 && s.n_exp[1] <= 8, "RESOLVED with n = %" PRId64, s.n_exp[1]);
    assert_distinct(&s);
    evaluated_since(&m, (int64_t)time(NULL) + 1, "ok");
    ck_assert_int_eq(topic_read().n, 2);
    d_stop(&m);
}
END_TEST

START_TEST(test_crashes_exactly_once)
{
    char *crash_cas[] = {"CIRCMOND_TEST_CRASH_AFTER_ALERT_CAS=1", NULL};
    char *crash_dlv[] = {"CIRCMOND_TEST_CRASH_AFTER_ALERT_DELIVERY=1",
                         "CIRCMOND_TEST_ALERT_LEASE_MS=1500", NULL};
    char *short_lease[] = {"CIRCMOND_TEST_ALERT_LEASE_MS=1500", NULL};

    /* A decides FIRING and is SIGKILLed before delivering it */
    struct dmn a = d_start("a", crash_cas);
    migrants("o", 2, 0);
    int st = wait_pid(a.pid, 60);
    ck_assert_msg(st >= 0 && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL,
                  "circmond A was not killed by its crash hook (see %s)", a.log);
    ck_assert(file_has(a.log, "alert over scheme S: FIRING"));
    ck_assert_int_eq(topic_read().n, 0);
    /* B and C evaluate the same rules: the outbox's FIRING goes out once */
    struct dmn b = d_start("b", short_lease), c = d_start("c", short_lease);
    struct seen s = topic_wait(1, b.pid, b.log);
    evaluated_since(&b, (int64_t)time(NULL) + 1, "firing");
    evaluated_since(&c, (int64_t)time(NULL) + 1, "firing");
    s = topic_read();
    ck_assert_int_eq(s.n, 1);
    ck_assert_int_eq(s.state[0], CIRCMON__V1__ALERT_STATE__FIRING);
    d_stop(&b);
    d_stop(&c);

    /* D decides RESOLVED, delivers it and is SIGKILLed before removing it
     * from the outbox; E reads the partition back and does not send it again */
    struct dmn d = d_start("d", crash_dlv);
    migrants("t", 6, 1);
    st = wait_pid(d.pid, 60);
    ck_assert_msg(st >= 0 && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL,
                  "circmond D was not killed by its crash hook (see %s)", d.log);
    s = topic_read();
    ck_assert_int_eq(s.n, 2);
    struct dmn e = d_start("e", short_lease), f = d_start("f", short_lease);
    double end = now_s() + 60;
    while (!file_has(e.log, "already on") && !file_has(f.log, "already on")) {
        ck_assert_msg(now_s() < end, "no read-back of the delivered RESOLVED (see %s, %s)",
                      e.log, f.log);
        nap_ms(100);
    }
    evaluated_since(&e, (int64_t)time(NULL) + 1, "ok");
    evaluated_since(&f, (int64_t)time(NULL) + 1, "ok");
    s = topic_read();
    ck_assert_int_eq(s.n, 2);
    ck_assert_int_eq(s.state[0], CIRCMON__V1__ALERT_STATE__FIRING);
    ck_assert_int_eq(s.state[1], CIRCMON__V1__ALERT_STATE__RESOLVED);
    assert_distinct(&s);
    /* the outbox is empty */
    redisContext *rc = redisConnectUnix(redis_sock);
    ck_assert(rc && !rc->err);
    char k[128];
    snprintf(k, sizeof k, "circmon:{alert:%016" PRIx64 "}:outbox", cm_alert_instance_hash("over", "S", ""));
    redisReply *r = redisCommand(rc, "LLEN %s", k);
    ck_assert(r && r->type == REDIS_REPLY_INTEGER);
    ck_assert_int_eq(r->integer, 0);
    freeReplyObject(r);
    redisFree(rc);
    d_stop(&e);
    d_stop(&f);
}
END_TEST

/* The instance of rule in j (a GET /v1/alerts document) for (scheme, nat). */
static json_t *v1_find(json_t *j, const char *rule, const char *scheme, const char *nat)
{
    size_t i;
    json_t *o;
    json_array_foreach(json_object_get(j, "alerts"), i, o)
        if (!strcmp(json_string_value(json_object_get(o, "alert")), rule) &&
            !strcmp(json_string_value(json_object_get(o, "scheme")), scheme) &&
            !strcmp(json_string_value(json_object_get(o, "nationality")), nat))
            return o;
    return NULL;
}

/* A nationality rule (section 5, nationality = *): one instance per
 * nationality with an expected departure in the window. GTM's 2 in-country
 * overstays of 2 fire it exactly once; MEX's 2 in-time departures (v = 0)
 * never do; the scheme as a whole (2 of 4) is not what the rule watches.
 * The figures equal those of circmonctl replay, and a restart sends nothing
 * again. */
START_TEST(test_nationality_fires_once)
{
    d_cohorts = "yes";
    d_rules = "[alert nat]\nscheme = S\nnationality = *\nindicator = in_country_overstay_rate\n"
              "above = 0.75\nmin_expected = 2\n";
    struct dmn m = d_start("a", NULL);
    migrants_of("g", 2, 0, "GTM");
    migrants_of("x", 2, 1, "MEX");
    struct seen s = topic_wait(1, m.pid, m.log);
    ck_assert_int_eq(s.n, 1);
    ck_assert_int_eq(s.state[0], CIRCMON__V1__ALERT_STATE__FIRING);
    ck_assert_int_eq(s.n_exp[0], 2);
    ck_assert_str_eq(s.nat[0], "GTM");
    ck_assert_int_gt(agg_fields("c:"), 0); /* nationality_cohorts = yes */
    ck_assert_int_eq(schemes_nat_cohorts(&m), 1);
    ck_assert_uint_eq(s.key_len[0], 9);
    ck_assert_int_eq(memcmp(s.key[0], "nat\0S\0GTM", 9), 0); /* rule NUL scheme NUL nationality */
    ck_assert(file_has(m.log, "warning: alert nat scheme S nationality GTM: FIRING"));
    /* the transition's evaluation instant is its own, not the state's previous one */
    ck_assert_msg(!file_has(m.log, "evaluated at -1"), "a transition logged as evaluated at -1 (%s)",
                  m.log);

    /* GET /v1/alerts: both instances, GTM firing with its figures, MEX ok */
    int64_t t = (int64_t)time(NULL) + 1;
    double end = now_s() + 60;
    json_t *j, *g, *x;
    for (;;) {
        j = v1_alerts(&m);
        g = v1_find(j, "nat", "S", "GTM");
        x = v1_find(j, "nat", "S", "MEX");
        if (g && x && json_integer_value(json_object_get(x, "evaluated_at")) >= t &&
            json_integer_value(json_object_get(x, "expected_departures")) == 2)
            break;
        json_decref(j);
        ck_assert_msg(now_s() < end, "no evaluation of nat/S/MEX with its 2 departures (%s)", m.log);
        nap_ms(200);
    }
    ck_assert_str_eq(json_string_value(json_object_get(g, "state")), "firing");
    ck_assert(json_real_value(json_object_get(g, "value")) == 1.0);
    ck_assert_int_eq(json_integer_value(json_object_get(g, "expected_departures")), 2);
    ck_assert_str_eq(json_string_value(json_object_get(x, "state")), "ok");
    ck_assert(json_real_value(json_object_get(x, "value")) == 0.0);
    ck_assert_ptr_null(v1_find(j, "nat", "S", "")); /* no all-nationalities instance */
    json_decref(j);
    static char buf[262144];
    ck_assert_int_gt(http_get_raw(m.port, "/metrics", buf, sizeof buf), 0);
    ck_assert_msg(strstr(buf, "circmon_alert_firing{alert=\"nat\",scheme=\"S\",nationality=\"GTM\"} 1") &&
                      strstr(buf, "circmon_alert_firing{alert=\"nat\",scheme=\"S\",nationality=\"MEX\"} 0") &&
                      strstr(buf, "circmon_alert_expected_departures{alert=\"nat\",scheme=\"S\",nationality=\"MEX\"} 2"),
                  "/metrics: %.3000s", strstr(buf, "circmon_alert") ? strstr(buf, "circmon_alert") : buf);

    /* the daemon's figures are those of the replay of the same events */
    char as_of[32], path[128], out[4400], cmd[16000];
    int64_t now = (int64_t)time(NULL);
    snprintf(as_of, sizeof as_of, "%" PRId64, now);
    snprintf(out, sizeof out, "%s/replay.json", dir);
    snprintf(cmd, sizeof cmd, "'%s' replay --config '%s' --as-of %s '%s/g.bin' '%s/x.bin' >'%s'",
             ctl, d_conf(0), as_of, dir, dir, out);
    int st = system(cmd);
    ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "failed: %s", cmd);
    json_t *rep = json_load_file(out, 0, NULL);
    ck_assert_ptr_nonnull(rep);
    json_t *coh = json_object_get(json_object_get(json_object_get(json_object_get(json_object_get(
                      rep, "schemes"), "S"), "by_nationality"), "GTM"), "by_cohort");
    ck_assert_msg(json_is_object(coh) && json_object_size(coh) == 1, "replay: no GTM cohorts");
    snprintf(path, sizeof path, "/v1/indicators?as_of=%s", as_of);
    ck_assert_int_gt(http_get_raw(m.port, path, buf, sizeof buf), 0);
    char *body = strstr(buf, "\r\n\r\n");
    ck_assert_msg(body && strstr(buf, " 200 "), "GET %s: %.500s", path, buf);
    json_t *dj = json_loads(body + 4, 0, NULL);
    ck_assert_msg(dj && json_equal(dj, rep), "daemon and replay differ: %.3000s", body + 4);
    json_decref(dj);
    json_decref(rep);

    /* a restart: evaluated again, nothing new on the topic */
    d_stop(&m);
    t = (int64_t)time(NULL) + 1;
    m = d_start("b", NULL);
    end = now_s() + 60;
    for (;;) {
        j = v1_alerts(&m);
        g = v1_find(j, "nat", "S", "GTM");
        int ok = g && json_integer_value(json_object_get(g, "evaluated_at")) >= t + 1 &&
                 !strcmp(json_string_value(json_object_get(g, "state")), "firing");
        json_decref(j);
        if (ok)
            break;
        ck_assert_msg(now_s() < end, "nat/S/GTM not evaluated firing after the restart (%s)", m.log);
        nap_ms(200);
    }
    s = topic_read();
    ck_assert_int_eq(s.n, 1);
    ck_assert(!file_has(m.log, "FIRING"));
    d_stop(&m);
}
END_TEST

/* A nationality rule brought by a reload (SIGHUP): the figures read before
 * it have no nationality cohorts; the rule waits for the next read instead
 * of reporting them missing (no "rebuild" in the log), then fires once. */
START_TEST(test_nationality_rule_reloaded)
{
    static const char over[] = "[alert over]\nscheme = *\nindicator = overstay_rate\n"
                               "above = 0.5\nmin_expected = 2\n";
    static char both[512];
    d_rules = over;
    d_cohorts = "yes"; /* kept from the start: a rule per nationality may come by a reload */
    struct dmn m = d_start("a", NULL);
    /* GTM first: over/S fires at n = 2, v = 1; MEX's in-time departures then
     * bring it to 2 of 3 and 2 of 4, never below 0.5 - 0.01: one event */
    migrants_of("g", 2, 0, "GTM");
    struct seen s = topic_wait(1, m.pid, m.log);
    ck_assert_int_eq(s.n, 1);
    ck_assert_str_eq(s.nat[0], "");
    ck_assert_int_eq(s.state[0], CIRCMON__V1__ALERT_STATE__FIRING);
    migrants_of("x", 2, 1, "MEX");
    double end = now_s() + 60;
    for (;;) {
        json_t *j = v1_alerts(&m);
        json_t *o = v1_find(j, "over", "S", "");
        int ok = o && json_integer_value(json_object_get(o, "expected_departures")) == 4;
        json_decref(j);
        if (ok)
            break;
        ck_assert_msg(now_s() < end, "over/S not evaluated on the 4 departures (%s)", m.log);
        nap_ms(200);
    }
    snprintf(both, sizeof both, "%s[alert nat]\nscheme = S\nnationality = GTM\n"
             "indicator = in_country_overstay_rate\nabove = 0.75\nmin_expected = 2\n", over);
    d_rules = both;
    d_conf(m.port); /* the daemon's own file, rewritten */
    ck_assert_int_eq(kill(m.pid, SIGHUP), 0);
    s = topic_wait(2, m.pid, m.log);
    ck_assert_int_eq(s.n, 2);
    /* read partition by partition: the order on the topic is not the order of events */
    int gtm = !strcmp(s.nat[1], "GTM") ? 1 : 0;
    ck_assert_str_eq(s.nat[gtm], "GTM");
    ck_assert_str_eq(s.nat[1 - gtm], "");
    ck_assert_int_eq(s.state[gtm], CIRCMON__V1__ALERT_STATE__FIRING);
    ck_assert_int_eq(s.state[1 - gtm], CIRCMON__V1__ALERT_STATE__FIRING);
    assert_distinct(&s);
    json_t *j = v1_alerts(&m);
    json_t *g = v1_find(j, "nat", "S", "GTM");
    ck_assert_ptr_nonnull(g);
    ck_assert_str_eq(json_string_value(json_object_get(g, "state")), "firing");
    json_decref(j);
    ck_assert_msg(!file_has(m.log, "rebuild") && !file_has(m.log, "cannot take its instances"),
                  "a reloaded nationality rule reported its figures missing (see %s)", m.log);
    d_stop(&m);
}
END_TEST

/* circmond's own /metrics, scraped by a real Prometheus with
 * config/prometheus/circmon.rules.yml, alerting a real Alertmanager: the
 * scheme alert of a firing instance arrives in Alertmanager's API. */
START_TEST(test_alertmanager_from_circmond)
{
    static char buf[262144];
    struct dmn m = d_start("a", NULL);
    migrants("o", 2, 0);
    topic_wait(1, m.pid, m.log);
    ck_assert_int_gt(http_get_raw(m.port, "/metrics", buf, sizeof buf), 0);
    ck_assert_msg(strstr(buf, "circmon_alert_firing{alert=\"over\",scheme=\"S\",nationality=\"\"} 1"),
                  "/metrics: %.3000s", strstr(buf, "circmon_alert") ? strstr(buf, "circmon_alert") : buf);
    ck_assert(strstr(buf, "circmon_alert_transitions_total{alert=\"over\",state=\"FIRING\"} 1"));
    ck_assert(strstr(buf, "circmon_alert_expected_departures{alert=\"over\",scheme=\"S\",nationality=\"\"} 2"));
    /* nationality_cohorts = no: counters per nationality, no cohorts per nationality */
    ck_assert_int_gt(agg_fields("n:"), 0);
    ck_assert_int_eq(agg_fields("c:"), 0);
    ck_assert_int_eq(schemes_nat_cohorts(&m), 0);

    int aport = d_port(), pport = d_port();
    pid_t am = alertmanager_start(aport);
    pid_t pr = prometheus_rules_start(pport, aport, m.port);

    alertmanager_wait(aport, "S", "over", am, pr, buf, sizeof buf);
    kill(pr, SIGTERM);
    ck_assert_int_ge(wait_pid(pr, 30), 0);
    kill(am, SIGTERM);
    ck_assert_int_ge(wait_pid(am, 30), 0);
    d_stop(&m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("alerts_e2e");
    TCase *tc = tcase_create("ctl");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_ctl_fire_condition);
    suite_add_tcase(s, tc);
    tc = tcase_create("daemon");
    tcase_add_checked_fixture(tc, d_setup, d_teardown);
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, test_fire_restart_resolve);
    tcase_add_test(tc, test_crashes_exactly_once);
    tcase_add_test(tc, test_alertmanager_from_circmond);
    tcase_add_test(tc, test_nationality_fires_once);
    tcase_add_test(tc, test_nationality_rule_reloaded);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
