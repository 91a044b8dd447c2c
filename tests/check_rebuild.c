/* check_rebuild.c - a rebuild without downtime, end to end: a second consumer group
 * folds a new prefix under other settings while the old one is served, one atomic
 * switch of the alias, the old prefix deleted in steps.
 *
 * Services: redis-server on a unix socket and circmon-broker (cm_svc.h);
 * circmond with [http] on ports below the ephemeral range (a taken port: the
 * daemon is stopped and another port tried). Every figure is compared with
 * `circmonctl replay` of the same events under the configuration the prefix
 * was folded with (config 1: grace 0; config 2: other grace days), never with
 * the daemon's own output; the two sets are checked to differ, or the test
 * would prove nothing. Every wait polls with a deadline. */
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "circmon/alias.h"
#include "circmon/config.h"
#include "circmon/purge.h"
#include "cm_e2e.h"

#define ALIAS "t:active"
/* An instant inside the stream: some permits are then due under one grace and
 * not yet under the other, so the figures depend on the settings they are
 * evaluated with when read, not only on those folded with. */
#define T_AS_OF "2025-06-15"
#define START_YEAR "2023" /* the stream runs 2023..2027: "now" is inside it too */
#define Q_AS_OF "/v1/indicators?as_of=" T_AS_OF

/* ------------------------------------------------------------ helpers */

/* conf for prefix, settings block `schemes` (INI text), HTTP on port;
 * batches of batch events, in_flight at once. */
static const char *conf_write_b(const char *name, const char *prefix, int port,
                                const char *schemes, int batch, int in_flight)
{
    const char *p = path_in(name);
    FILE *fp = fopen(p, "w");
    ck_assert_ptr_nonnull(fp);
    fprintf(fp,
            "[circmon]\nbatch_size = %d\nmax_in_flight = %d\nlog_level = info\n"
            "[kafka]\nbrokers = %s\ngroup_id = g\nrdkafka.session.timeout.ms = 6000\n"
            "[redis]\nunix_socket = %s\ncommand_timeout_ms = 3000\nconnect_timeout_ms = 1000\n"
            "key_prefix = %s\nalias = " ALIAS "\n"
            "[http]\nlisten = 127.0.0.1\nport = %d\nrefresh_ms = 100\n%s",
            batch, in_flight, brokers, redis_sock, prefix, port, schemes);
    fclose(fp);
    return p;
}

static const char *conf_write(const char *name, const char *prefix, int port, const char *schemes)
{
    return conf_write_b(name, prefix, port, schemes, 200, 4);
}

static int pick_port(unsigned *seed)
{
    return 20000 + (int)(rand_r(seed) % 12000u); /* below the ephemeral range (32768) */
}

/* Starts circmond on a fresh configuration (name, prefix, schemes), with
 * --rebuild when rebuild; tries other ports while the one picked is taken.
 * *port gets the port, *conf the configuration. */
static pid_t start_http(const char *name, const char *prefix, const char *schemes, int rebuild,
                        const char *log, int *port, const char **conf)
{
    static unsigned seed;
    if (!seed)
        seed = (unsigned)getpid() ^ (unsigned)wall_ms();
    char path[600];
    cm_bin_path(path, sizeof(path), "circmond");
    for (int attempt = 0; attempt < 10; attempt++) {
        *port = pick_port(&seed);
        /* the rebuild in small steps, so that it is seen half done */
        *conf = rebuild ? conf_write_b(name, prefix, *port, schemes, 50, 1)
                        : conf_write(name, prefix, *port, schemes);
        unlink(log);
        char *argv[] = {path, "--config", (char *)*conf, "--foreground",
                        rebuild ? "--rebuild" : NULL, NULL};
        pid_t pid = spawn(argv, NULL, log, NULL, NULL);
        double end = now_s() + 30;
        for (;;) {
            if (file_has(log, "http endpoint at"))
                return pid;
            if (file_has(log, "cannot listen")) {
                kill(pid, SIGKILL);
                ck_assert_int_ge(wait_pid(pid, 10), 0);
                forget(pid);
                break;
            }
            ck_assert_msg(alive(pid), "circmond exited (see %s)", log);
            ck_assert_msg(now_s() < end, "circmond did not open its endpoint (see %s)", log);
            nap_ms(10);
        }
    }
    ck_abort_msg("no free port in 10 tries");
    return -1;
}

/* The body of GET path (malloc'd) when the answer is 200, else NULL. */
static char *http_body(int port, const char *path)
{
    size_t cap = 1 << 22;
    char *buf = malloc(cap);
    if (!buf)
        return NULL;
    int n = http_get_raw(port, path, buf, cap);
    char *body = n > 0 ? strstr(buf, "\r\n\r\n") : NULL;
    char *out = NULL;
    int status = 0;
    if (body && sscanf(buf, "HTTP/1.%*d %d", &status) == 1 && status == 200)
        out = strdup(body + 4);
    free(buf);
    return out;
}

static json_t *http_json(int port, const char *path)
{
    char *b = http_body(port, path);
    json_t *j = b ? json_loads(b, 0, NULL) : NULL;
    free(b);
    return j;
}

/* A circmon-gen stream of START_YEAR and the 5 years after. */
static void gen_now(const char *out, int seed, int migrants)
{
    char sd[16], m[16];
    snprintf(sd, sizeof(sd), "%d", seed);
    snprintf(m, sizeof(m), "%d", migrants);
    char *args[] = {"--seed", sd, "--migrants", m, "--start-year", START_YEAR, "--years", "5",
                    "--out", (char *)out, NULL};
    ck_assert_int_eq(run_bin("circmon-gen", args, NULL, path_in("gen.log")), 0);
}

/* The cached document of port (GET /v1/indicators, as of its read instant)
 * equals the replay of files under conf as of that instant. */
static void cached_equals_replay(int port, const char *conf, const char *f1, const char *f2)
{
    json_t *h = http_json(port, "/v1/indicators");
    ck_assert_ptr_nonnull(h);
    char at[32];
    snprintf(at, sizeof(at), "%" JSON_INTEGER_FORMAT, json_integer_value(json_object_get(h, "as_of")));
    char *a[] = {"replay", "--config", (char *)conf, "--as-of", at, "--format", "json",
                 (char *)f1, (char *)f2, NULL};
    ck_assert_int_eq(run_bin("circmonctl", a, path_in("repnow.json"), path_in("ctl.log")), 0);
    json_t *r = load_json(path_in("repnow.json"));
    ck_assert_msg(json_equal(h, r), "the cached figures as of %s differ from replay under %s", at,
                  conf);
    json_decref(h);
    json_decref(r);
}

/* replay of files under conf as of T_AS_OF. */
static json_t *replay(const char *conf, const char *f1, const char *f2, const char *out)
{
    char *a[] = {"replay", "--config", (char *)conf, "--as-of", T_AS_OF, "--format", "json",
                 (char *)f1, (char *)f2, NULL};
    ck_assert_int_eq(run_bin("circmonctl", a, path_in(out), path_in("ctl.log")), 0);
    return load_json(path_in(out));
}

/* circmonctl indicators under conf as of T_AS_OF. */
static json_t *indicators(const char *conf)
{
    char *a[] = {"indicators", "--config", (char *)conf, "--as-of", T_AS_OF, "--format", "json",
                 NULL};
    ck_assert_int_eq(run_bin("circmonctl", a, path_in("ind.json"), path_in("ctl.log")), 0);
    return load_json(path_in("ind.json"));
}

static int ctl_rebuild(const char *action, const char *conf, const char *extra1,
                       const char *extra2)
{
    char *a[] = {"rebuild", (char *)action, "--config", (char *)conf, (char *)extra1,
                 (char *)extra2, NULL};
    return run_bin("circmonctl", a, path_in("rebuild.out"), path_in("rebuild.err"));
}

/* Polls GET Q_AS_OF on port until it equals want (deadline 30 s). */
static void wait_http_equals(int port, json_t *want, const char *what)
{
    double end = now_s() + 30;
    for (;;) {
        json_t *j = http_json(port, Q_AS_OF);
        int eq = j && json_equal(j, want);
        if (j)
            json_decref(j);
        if (eq)
            return;
        ck_assert_msg(now_s() < end, "%s: the read side did not serve the expected figures", what);
        nap_ms(20);
    }
}

/* Dead letters on the topic (every copy). */
static long dlq_count(void)
{
    rd_kafka_t *rk = topic_reader("circmon.events.dlq", N_PARTS, "t-dlq-count");
    int eof = 0;
    long n = 0;
    rd_kafka_message_t *m;
    while ((m = topic_next(rk, "circmon.events.dlq", N_PARTS, &eof, now_s() + 30))) {
        n++;
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return n;
}

static long keys_of(const char *prefix)
{
    redisContext *c = redis_conn();
    ck_assert_ptr_nonnull(c);
    char *pat = cm_purge_pattern(prefix), err[256];
    size_t n = 0;
    ck_assert_msg(cm_purge_count(c, pat, &n, err, sizeof(err)) == 0, "%s", err);
    free(pat);
    redisFree(c);
    return (long)n;
}

static char *alias_prefix(void)
{
    redisContext *c = redis_conn();
    ck_assert_ptr_nonnull(c);
    redisReply *r = redisCommand(c, "HGET " ALIAS " prefix");
    ck_assert_ptr_nonnull(r);
    char *s = r->type == REDIS_REPLY_STRING ? strdup(r->str) : NULL;
    freeReplyObject(r);
    redisFree(c);
    return s;
}

/* circmond on conf (with --rebuild when rebuild) must exit 1 at start-up,
 * saying needle. */
static void expect_refused(const char *conf, int rebuild, const char *needle)
{
    char path[600];
    cm_bin_path(path, sizeof(path), "circmond");
    char *argv[] = {path, "--config", (char *)conf, "--foreground", rebuild ? "--rebuild" : NULL,
                    NULL};
    const char *lr = path_in("refused.log");
    unlink(lr);
    pid_t r = spawn(argv, NULL, lr, NULL, NULL);
    int st = wait_pid(r, 30);
    forget(r);
    ck_assert_msg(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 1,
                  "circmond %s was not refused (status %d)", conf, st);
    ck_assert_msg(file_has(lr, needle), "circmond %s: no '%s' in %s", conf, needle, lr);
}

/* ------------------------------------------------------------ the poller */

/* Reads the read side during the switch, on its own thread: every answer
 * must be one of the two full figure sets, and once the new one was seen
 * the old one never again. */
struct poller {
    int port;
    json_t *j1, *j2;
    volatile int stop;
    long n1, n2, nmix, nback, nerr;
    char mix_file[300];
};

static void *poll_main(void *arg)
{
    struct poller *p = arg;
    while (!p->stop) {
        char *b = http_body(p->port, Q_AS_OF);
        json_t *j = b ? json_loads(b, 0, NULL) : NULL;
        if (!j) {
            p->nerr++;
        } else if (json_equal(j, p->j1)) {
            p->n1++;
            if (p->n2)
                p->nback++;
        } else if (json_equal(j, p->j2)) {
            p->n2++;
        } else {
            if (!p->nmix++) {
                FILE *fp = fopen(p->mix_file, "w");
                if (fp) {
                    fputs(b, fp);
                    fclose(fp);
                }
            }
        }
        if (j)
            json_decref(j);
        free(b);
    }
    return NULL;
}

/* ------------------------------------------------------------ tests */

#define SCHEMES2 "[scheme *]\ngrace_days = 21\n[scheme SAWP-ES]\ngrace_days = 3\n"

START_TEST(test_rebuild_end_to_end)
{
    svc_dir_make("check_rebuild");
    redis_start(0);
    broker_start(N_PARTS);
    int p1, p2, p3;
    const char *c1, *c2, *c3, *log1 = path_in("d1.log"), *log2 = path_in("d2.log");

    /* config 1 serves prefix old */
    pid_t d1 = start_http("c1.conf", "old", "", 0, log1, &p1, &c1);
    const char *evA = path_in("a.bin"), *evB = path_in("b.bin");
    gen_now(evA, 11, 1500);
    long nA = count_records(evA);
    publish(c1, evA);
    wait_caught_up(c1, nA, 120);
    /* config 2's file, written now to compute its replay (its daemon comes later) */
    const char *c2pre = conf_write("c2pre.conf", "new", 0, SCHEMES2);

    json_t *j1 = replay(c1, evA, NULL, "rep1.json"), *j2 = replay(c2pre, evA, NULL, "rep2.json");
    ck_assert_msg(!json_equal(j1, j2), "the two configurations give the same figures: the test "
                                       "could not tell the prefixes apart");
    long want_dl = (long)json_integer_value(
                       json_object_get(json_object_get(j1, "data_quality"), "invalid")) +
                   (long)json_integer_value(
                       json_object_get(json_object_get(j1, "data_quality"), "too_late"));
    ck_assert_int_gt(want_dl, 0);

    /* begin: the alias names old, with config 1's settings; twice is fine */
    ck_assert_int_eq(ctl_rebuild("begin", c1, NULL, NULL), 0);
    ck_assert_int_eq(ctl_rebuild("begin", c1, NULL, NULL), 0);
    char *ap = alias_prefix();
    ck_assert_str_eq(ap, "old");
    free(ap);
    wait_http_equals(p1, j1, "before the rebuild");
    cached_equals_replay(p1, c1, evA, NULL);
    double end = now_s() + 30;
    while (dlq_count() < want_dl) {
        ck_assert_msg(now_s() < end, "the dead letters of stream A did not arrive");
        nap_ms(100);
    }
    long dl_before = dlq_count();
    ck_assert_int_eq(dl_before, want_dl);

    /* nothing folded into new yet: the switch is refused and changes nothing */
    ck_assert_int_eq(ctl_rebuild("switch", c2pre, NULL, NULL), 1);
    ck_assert(file_has(path_in("rebuild.err"), "has not caught up"));
    ap = alias_prefix();
    ck_assert_str_eq(ap, "old");
    free(ap);

    /* a rebuild into the active prefix is refused */
    expect_refused(c1, 1, "is the active prefix");

    /* the rebuild: config 2, prefix new, group g.rebuild */
    pid_t d2 = start_http("c2.conf", "new", SCHEMES2, 1, log2, &p2, &c2);
    ck_assert(file_has(log2, "as group g.rebuild"));
    /* the prefix is being folded with config 2's settings: another rebuild run
     * of it with other settings is refused */
    const char *cbad = conf_write("cbad.conf", "new", 0, "[scheme *]\ngrace_days = 5\n");
    expect_refused(cbad, 1, "was begun with other fold settings");
    /* half done (frozen there by SIGSTOP, so that the readers are asked
     * while new holds part of the stream): every reader serves old */
    wait_progress(c2, 1, 60);
    ck_assert_int_eq(kill(d2, SIGSTOP), 0);
    int64_t half = stored_sum(c2);
    ck_assert_msg(half > 0 && half < nA, "the rebuild was not seen half done (%" PRId64 " of %ld)",
                  half, nA);
    {
        json_t *h1 = http_json(p1, Q_AS_OF), *i1 = indicators(c1), *i2 = indicators(c2);
        ck_assert_msg(h1 && json_equal(h1, j1), "d1 served other figures, the rebuild half done");
        ck_assert_msg(json_equal(i1, j1) && json_equal(i2, j1),
                      "circmonctl indicators, the rebuild half done");
        json_decref(h1);
        json_decref(i1);
        json_decref(i2);
    }
    ck_assert_int_eq(kill(d2, SIGCONT), 0);
    /* while it runs every reader serves old with config 1's settings: d1,
     * d2 (whose own settings are config 2's) and circmonctl under either file */
    int64_t s;
    long rounds = 0;
    end = now_s() + 120;
    do {
        s = stored_sum(c2);
        json_t *h1 = http_json(p1, Q_AS_OF), *h2 = http_json(p2, Q_AS_OF);
        json_t *i1 = indicators(c1);
        ck_assert_msg(h1 && json_equal(h1, j1), "d1 served other figures during the rebuild");
        ck_assert_msg(!h2 || json_equal(h2, j1), "d2 served other figures during the rebuild");
        ck_assert_msg(json_equal(i1, j1), "circmonctl indicators (config 1) during the rebuild");
        json_t *i2 = indicators(c2);
        ck_assert_msg(json_equal(i2, j1), "circmonctl indicators (config 2) during the rebuild");
        json_decref(h1);
        if (h2)
            json_decref(h2);
        json_decref(i1);
        json_decref(i2);
        rounds++;
        ck_assert_msg(now_s() < end, "the rebuild did not catch up: %" PRId64 " of %ld", s, nA);
    } while (s != nA);
    ck_assert_int_ge(rounds, 1);
    wait_http_equals(p2, j1, "d2 before the switch");
    cached_equals_replay(p2, c1, evA, NULL); /* old, with config 1's settings */
    /* the rebuild wrote no dead letter */
    ck_assert_int_eq(dlq_count(), dl_before);
    ck_assert_int_eq(ctl_rebuild("status", c2, "--format", "json"), 0);
    json_t *st = load_json(path_in("rebuild.out"));
    ck_assert(json_is_true(json_object_get(st, "caught_up")));
    ck_assert_str_eq(json_string_value(json_object_get(st, "active")), "old");
    json_decref(st);

    /* a switch with settings other than the rebuild's is refused */
    ck_assert_int_eq(ctl_rebuild("switch", cbad, NULL, NULL), 1);
    ck_assert(file_has(path_in("rebuild.err"), "rebuilt with other fold settings"));

    /* the switch, polled meanwhile: each answer is one whole set, never a mix */
    struct poller pl = {.port = p1, .j1 = j1, .j2 = j2};
    snprintf(pl.mix_file, sizeof(pl.mix_file), "%s/mix.json", dir);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, poll_main, &pl), 0);
    end = now_s() + 10;
    while (pl.n1 < 5 && now_s() < end)
        nap_ms(5);
    ck_assert_int_eq(ctl_rebuild("switch", c2, NULL, NULL), 0);
    end = now_s() + 30;
    while (pl.n2 < 5 && now_s() < end)
        nap_ms(5);
    pl.stop = 1;
    pthread_join(th, NULL);
    ck_assert_msg(pl.nmix == 0, "%ld answers were neither set (first in %s)", pl.nmix,
                  pl.mix_file);
    ck_assert_msg(pl.nback == 0, "the old figures came back %ld times after the new ones",
                  pl.nback);
    ck_assert_int_ge(pl.n1, 5);
    ck_assert_int_ge(pl.n2, 5);
    ck_assert_int_eq(pl.nerr, 0);

    /* after the switch: every reader serves new with config 2's settings */
    json_t *i1 = indicators(c1);
    ck_assert_msg(json_equal(i1, j2), "circmonctl indicators (config 1) after the switch");
    json_decref(i1);
    wait_http_equals(p2, j2, "d2 after the switch");
    wait_http_equals(p1, j2, "d1 after the switch");
    cached_equals_replay(p1, c2pre, evA, NULL); /* new, with config 2's settings */
    json_t *hs = http_json(p1, "/v1/status");
    ck_assert_ptr_nonnull(hs);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(hs, "figures"), "prefix")),
                     "new");
    json_decref(hs);
    json_t *sch = http_json(p1, "/v1/schemes");
    ck_assert_ptr_nonnull(sch);
    ck_assert_int_eq(json_integer_value(json_object_get(
                         json_object_get(sch, "defaults"), "grace_days")), 21);
    json_decref(sch);
    char *met = http_body(p1, "/metrics");
    ck_assert_ptr_nonnull(met);
    ck_assert_ptr_nonnull(strstr(met, "circmon_indicators_prefix{prefix=\"new\"} 1"));
    free(met);
    ck_assert(file_has(log2, "names this rebuild run's prefix new now"));
    ck_assert(file_has(log1, "not this daemon's key_prefix old"));
    /* a normal daemon on the active prefix with other settings is refused */
    const char *c1new = conf_write("c1new.conf", "new", 0, "");
    expect_refused(c1new, 0, "folded with other settings");

    /* the daemons move: both stop, config 2 runs normally on new */
    stop_daemon(d1);
    stop_daemon(d2);
    forget(d1);
    forget(d2);
    gen_now(evB, 12, 300);
    long nB = count_records(evB);
    publish(c2, evB);
    pid_t d3 = start_http("c3.conf", "new", SCHEMES2, 0, path_in("d3.log"), &p3, &c3);
    wait_caught_up(c3, nA + nB, 120);
    json_t *j2b = replay(c3, evA, evB, "rep2b.json");
    wait_http_equals(p3, j2b, "d3 on new");
    /* dead letters: A's were on the topic (not sent again), B's once each */
    long want_b = (long)json_integer_value(
                      json_object_get(json_object_get(j2b, "data_quality"), "invalid")) +
                  (long)json_integer_value(
                      json_object_get(json_object_get(j2b, "data_quality"), "too_late"));
    end = now_s() + 30;
    while (dlq_count() < want_b) {
        ck_assert_msg(now_s() < end, "the dead letters of stream B did not arrive");
        nap_ms(100);
    }
    ck_assert_int_eq(read_dlq(), want_b); /* each source offset once */

    /* the old prefix goes, in steps; new stays whole */
    long old_keys = keys_of("old"), new_keys = keys_of("new");
    ck_assert_int_gt(old_keys, 100);
    ck_assert_int_eq(ctl_rebuild("delete", c3, "--prefix", "new"), 1);
    ck_assert(file_has(path_in("rebuild.err"), "the active prefix"));
    ck_assert_int_eq(ctl_rebuild("delete", c3, "--step", "50"), 0);
    ck_assert(file_has(path_in("rebuild.out"), "keys of old deleted"));
    ck_assert_int_eq(keys_of("old"), 0);
    ck_assert_int_eq(keys_of("new"), new_keys);
    json_t *i3 = indicators(c1);
    ck_assert_msg(json_equal(i3, j2b), "indicators after the deletion");
    json_decref(i3);
    ck_assert_int_eq(ctl_rebuild("delete", c3, NULL, NULL), 0); /* nothing left: fine */
    stop_daemon(d3);
    json_decref(j1);
    json_decref(j2);
    json_decref(j2b);
    svc_dir_remove();
}
END_TEST

/* What a reader accepts from the alias key, and the switch's compare-and-set. */
START_TEST(test_alias_checked)
{
    svc_dir_make("check_rebuild");
    redis_start(0);
    struct cm_config cfg = {0};
    char err[512];
    ck_assert_int_eq(cm_config_defaults(&cfg), 0);
    free(cfg.redis_unix_socket);
    cfg.redis_unix_socket = strdup(redis_sock);
    cfg.redis_alias = strdup(ALIAS);
    redisContext *c = cm_store_connect_sync(&cfg, err, sizeof(err));
    ck_assert_msg(c != NULL, "%s", err);
    struct cm_alias al;

    /* absent: the configuration's own */
    ck_assert_int_eq(cm_alias_read_sync(c, &cfg, &al, err, sizeof(err)), 0);
    ck_assert_int_eq(al.from_alias, 0);
    ck_assert_str_eq(al.prefix, "circmon");
    cm_alias_free(&al);

    /* a switch from the wrong prefix is refused and tells what it found */
    struct cm_config c2 = {0};
    ck_assert_int_eq(cm_config_defaults(&c2), 0);
    c2.scheme_default.grace_days = 9;
    c2.schemes = calloc(1, sizeof(*c2.schemes));
    c2.n_schemes = 1;
    strcpy(c2.schemes[0].id, "SAWP-ES");
    c2.schemes[0].grace_days = 4;
    c2.schemes[0].stay_n = 90;
    c2.schemes[0].stay_w = 180;
    char *set = cm_alias_settings_format(&c2), *cur = NULL;
    ck_assert_ptr_nonnull(set);
    ck_assert_int_eq(cm_alias_switch_sync(c, &cfg, "", "p1", set, 100, &cur, err, sizeof(err)), 1);
    ck_assert_int_eq(cm_alias_switch_sync(c, &cfg, "", "p2", set, 101, &cur, err, sizeof(err)), 0);
    ck_assert_str_eq(cur, "p1");
    free(cur);
    ck_assert_int_eq(cm_alias_switch_sync(c, &cfg, "p1", "p2", set, 102, &cur, err, sizeof(err)),
                     1);
    ck_assert_int_eq(cm_alias_read_sync(c, &cfg, &al, err, sizeof(err)), 0);
    ck_assert_int_eq(al.from_alias, 1);
    ck_assert_str_eq(al.prefix, "p2");
    ck_assert_str_eq(al.previous, "p1");
    ck_assert_int_eq(al.since, 102);
    ck_assert(cm_alias_settings_equal(&al.fold, &c2));
    ck_assert(!cm_alias_settings_equal(&al.fold, &cfg));
    c2.reorder_window_days = 31; /* the window counts too */
    ck_assert(!cm_alias_settings_equal(&al.fold, &c2));
    c2.reorder_window_days = 30;
    ck_assert_int_eq(cm_config_scheme(&al.fold, "SAWP-ES")->grace_days, 4);
    ck_assert_int_eq(cm_config_scheme(&al.fold, "other")->grace_days, 9);
    cm_alias_free(&al);

    /* malformed values are refused, naming what is wrong */
    static const char *const bad[][3] = {
        {"prefix", "a{b", "not a key prefix"},
        {"prefix", "", "not a key prefix"},
        {"since", "-1", "since"},
        {"since", "x", "since"},
        {"settings", "{", "not JSON"},
        {"settings", "{\"v\":2,\"window\":[30,256],\"default\":[0,0,0],\"schemes\":[]}",
         "settings"},
        {"settings", "{\"v\":1,\"default\":[0,0,0],\"schemes\":[]}", "settings"},
        {"settings", "{\"v\":1,\"window\":[30,0],\"default\":[0,0,0],\"schemes\":[]}",
         "window"},
        {"settings", "{\"v\":1,\"window\":[3651,256],\"default\":[0,0,0],\"schemes\":[]}",
         "window"},
        {"settings", "{\"v\":1,\"window\":[30,256],\"default\":[3651,0,0],\"schemes\":[]}",
         "default"},
        {"settings", "{\"v\":1,\"window\":[30,256],\"default\":[0,90,0],\"schemes\":[]}",
         "default"},
        {"settings",
         "{\"v\":1,\"window\":[30,256],\"default\":[0,0,0],\"schemes\":[[\"a]\",1,0,0]]}",
         "scheme 0"},
        {"settings",
         "{\"v\":1,\"window\":[30,256],\"default\":[0,0,0],\"schemes\":[[\"a\",1,0,0],"
         "[\"a\",2,0,0]]}",
         "twice"},
        {"other", "1", "unknown field"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        redisReply *r = redisCommand(c, "HSET " ALIAS " prefix p2 settings %s previous p1 since 1",
                                     set);
        freeReplyObject(r);
        r = redisCommand(c, "HSET " ALIAS " %s %s", bad[i][0], bad[i][1]);
        ck_assert(r && r->type == REDIS_REPLY_INTEGER);
        freeReplyObject(r);
        err[0] = 0;
        ck_assert_msg(cm_alias_read_sync(c, &cfg, &al, err, sizeof(err)) == -EPROTO,
                      "%s = %s accepted", bad[i][0], bad[i][1]);
        ck_assert_msg(strstr(err, bad[i][2]) && strstr(err, ALIAS), "%s = %s: message '%s'",
                      bad[i][0], bad[i][1], err);
        r = redisCommand(c, "HDEL " ALIAS " other");
        freeReplyObject(r);
    }
    redisReply *r = redisCommand(c, "SET " ALIAS " x");
    freeReplyObject(r);
    ck_assert_int_eq(cm_alias_read_sync(c, &cfg, &al, err, sizeof(err)), -EPROTO);
    free(set);
    redisFree(c);
    cm_config_free(&c2);
    cm_config_free(&cfg);
    svc_dir_remove();
}
END_TEST

/* The purge deletes every key of its prefix and nothing else. */
START_TEST(test_purge_only_its_prefix)
{
    svc_dir_make("check_rebuild");
    redis_start(0);
    redisContext *c = redis_conn();
    ck_assert_ptr_nonnull(c);
    static const char *const keep[] = {"p:x:{0}:pos", "pp:{0}:pos", "p:active", "p", "p:", "q:{p}",
                                       "a*b:{1}:pos"};
    for (int part = 0; part < 16; part++)
        for (int k = 0; k < 40; k++) {
            redisReply *r = redisCommand(c, "SET p:{%d}:m:%d v", part, k);
            freeReplyObject(r);
        }
    redisReply *r = redisCommand(c, "SADD p:{alerts}:instances a");
    freeReplyObject(r);
    r = redisCommand(c, "HSET p:{alert:00ff}:st state ok");
    freeReplyObject(r);
    r = redisCommand(c, "SET a?b:{1}:pos 1"); /* another prefix that a glob 'a*b' would catch */
    freeReplyObject(r);
    for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++) {
        r = redisCommand(c, "SET %s 1", keep[i]);
        freeReplyObject(r);
    }
    char *pat = cm_purge_pattern("p"), cursor[32] = "0", err[256];
    size_t total = 0, steps = 0, found, del, left;
    ck_assert_int_eq(cm_purge_step(c, pat, cursor, 0, &found, &del, err, sizeof(err)), -EINVAL);
    do {
        ck_assert_int_eq(cm_purge_step(c, pat, cursor, 25, &found, &del, err, sizeof(err)), 0);
        ck_assert_int_le(found, 25 * 4); /* COUNT is a hint; bounded in practice */
        total += del;
        steps++;
    } while (strcmp(cursor, "0"));
    ck_assert_int_eq(total, 16 * 40 + 2);
    ck_assert_int_gt(steps, 1);
    ck_assert_int_eq(cm_purge_count(c, pat, &left, err, sizeof(err)), 0);
    ck_assert_int_eq(left, 0);
    for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++) {
        r = redisCommand(c, "EXISTS %s", keep[i]);
        ck_assert_int_eq(r->integer, 1);
        freeReplyObject(r);
    }
    free(pat);
    /* a prefix with glob characters matches itself only */
    pat = cm_purge_pattern("a*b");
    strcpy(cursor, "0");
    do
        ck_assert_int_eq(cm_purge_step(c, pat, cursor, 100, &found, &del, err, sizeof(err)), 0);
    while (strcmp(cursor, "0"));
    r = redisCommand(c, "EXISTS a?b:{1}:pos a*b:{1}:pos");
    ck_assert_int_eq(r->integer, 1);
    freeReplyObject(r);
    free(pat);
    redisFree(c);
    svc_dir_remove();
}
END_TEST

/* [redis] alias in the configuration, and what the commands refuse before
 * touching anything. */
START_TEST(test_config_and_usage)
{
    svc_dir_make("check_rebuild");
    struct cm_config cfg = {0};
    char err[512];
    static const char *const vals[][2] = {
        {"alias = a{b\n", "[redis] alias: must not contain braces"},
        {"alias = a b\n", "[redis] alias: must not contain braces"},
        {"alias = x\nalias = y\n", "alias"},
    };
    for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
        const char *p = path_in("bad.conf");
        FILE *fp = fopen(p, "w");
        ck_assert_ptr_nonnull(fp);
        fprintf(fp, "[redis]\n%s", vals[i][0]);
        fclose(fp);
        ck_assert_int_lt(cm_config_load(&cfg, p, err, sizeof(err)), 0);
        ck_assert_msg(strstr(err, vals[i][1]) && strstr(err, "bad.conf:"), "'%s': %s",
                      vals[i][0], err);
    }
    const char *p = path_in("ok.conf");
    FILE *fp = fopen(p, "w");
    ck_assert_ptr_nonnull(fp);
    fprintf(fp, "[redis]\nunix_socket = %s/none.sock\nalias = circmon:active\n", dir);
    fclose(fp);
    ck_assert_msg(cm_config_load(&cfg, p, err, sizeof(err)) == 0, "%s", err);
    ck_assert_str_eq(cfg.redis_alias, "circmon:active");
    cm_config_free(&cfg);
    const char *pn = path_in("none.conf");
    fp = fopen(pn, "w");
    ck_assert_ptr_nonnull(fp);
    fprintf(fp, "[redis]\nalias =\n");
    fclose(fp);
    ck_assert_msg(cm_config_load(&cfg, pn, err, sizeof(err)) == 0, "%s", err);
    ck_assert_ptr_null(cfg.redis_alias);
    cm_config_free(&cfg);

    /* usage errors: exit 2, before any connection */
    static const char *const usage[][4] = {
        {"rebuild", NULL, NULL, NULL},
        {"rebuild", "undo", NULL, NULL},
        {"rebuild", "delete", "--max-lag", "3"},
        {"rebuild", "switch", "--step", "0"},
        {"rebuild", "status", "--prefix", "a{"},
        {"rebuild", "switch", "--format", "json"},
    };
    for (size_t i = 0; i < sizeof(usage) / sizeof(usage[0]); i++) {
        char *a[8] = {0};
        int n = 0;
        for (int k = 0; k < 4 && usage[i][k]; k++)
            a[n++] = (char *)usage[i][k];
        a[n++] = "--config";
        a[n++] = (char *)p;
        ck_assert_msg(run_bin("circmonctl", a, NULL, path_in("usage.err")) == 2,
                      "case %zu: not a usage error", i);
    }
    /* without an alias: the rebuild commands and circmond --rebuild refuse */
    char *a[] = {"rebuild", "status", "--config", (char *)pn, NULL};
    ck_assert_int_eq(run_bin("circmonctl", a, NULL, path_in("noalias.err")), 1);
    ck_assert(file_has(path_in("noalias.err"), "[redis] alias is not set"));
    char path[600];
    cm_bin_path(path, sizeof(path), "circmond");
    char *argv[] = {path, "--config", (char *)pn, "--rebuild", NULL};
    pid_t r = spawn(argv, NULL, path_in("noalias.log"), NULL, NULL);
    int st = wait_pid(r, 30);
    forget(r);
    ck_assert(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 1);
    ck_assert(file_has(path_in("noalias.log"), "--rebuild needs [redis] alias"));
    svc_dir_remove();
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("rebuild");
    struct {
        const char *name;
        const TTest *t;
        int timeout;
    } cases[] = {
        {"end_to_end", test_rebuild_end_to_end, 400},
        {"alias_checked", test_alias_checked, 60},
        {"purge_only_its_prefix", test_purge_only_its_prefix, 60},
        {"config_and_usage", test_config_and_usage, 60},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_set_timeout(tc, cases[i].timeout);
        tcase_add_test(tc, cases[i].t);
        suite_add_tcase(s, tc);
    }
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
