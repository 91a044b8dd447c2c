/* cm_rebuild.h - helpers of the rebuild suites (check_rebuild, check_rebuild_cluster):
 * configurations with [redis] alias for a prefix and its fold settings, circmond
 * with or without --rebuild on a free HTTP port, the read side and circmonctl
 * (indicators, replay, rebuild) asked, a poller thread that classifies every
 * answer during a switch. Include after cm_e2e.h. */
#ifndef CM_REBUILD_H
#define CM_REBUILD_H

#include <pthread.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "circmon/purge.h"

#define ALIAS "t:active"
/* An instant inside the stream: some permits are then due under one grace and
 * not yet under the other, so the figures depend on the settings they are
 * evaluated with when read, not only on those folded with. */
#define T_AS_OF "2025-06-15"
#define START_YEAR "2023" /* the stream runs 2023..2027: "now" is inside it too */
#define Q_AS_OF "/v1/indicators?as_of=" T_AS_OF

/* ------------------------------------------------------------ helpers */

/* How the configurations reach Redis: NULL for the suite's redis-server on
 * its unix socket, else the [redis] lines to use (a cluster's). */
static CMT_UNUSED const char *rb_redis;

/* conf for prefix, settings block `schemes` (INI text), HTTP on port;
 * batches of batch events, in_flight at once. */
static CMT_UNUSED const char *conf_write_b(const char *name, const char *prefix, int port,
                                           const char *schemes, int batch, int in_flight)
{
    const char *p = path_in(name);
    FILE *fp = fopen(p, "w");
    ck_assert_ptr_nonnull(fp);
    fprintf(fp,
            "[circmon]\nbatch_size = %d\nmax_in_flight = %d\nlog_level = info\n"
            "[kafka]\nbrokers = %s\ngroup_id = g\nrdkafka.session.timeout.ms = 6000\n"
            "[redis]\n%s%s\ncommand_timeout_ms = 3000\nconnect_timeout_ms = 1000\n"
            "key_prefix = %s\nalias = " ALIAS "\n"
            "[http]\nlisten = 127.0.0.1\nport = %d\nrefresh_ms = 100\n%s",
            batch, in_flight, brokers, rb_redis ? "" : "unix_socket = ",
            rb_redis ? rb_redis : redis_sock, prefix, port, schemes);
    fclose(fp);
    return p;
}

static CMT_UNUSED const char *conf_write(const char *name, const char *prefix, int port,
                                         const char *schemes)
{
    return conf_write_b(name, prefix, port, schemes, 200, 4);
}

static CMT_UNUSED int pick_port(unsigned *seed)
{
    return 20000 + (int)(rand_r(seed) % 12000u); /* below the ephemeral range (32768) */
}

/* Starts circmond on a fresh configuration (name, prefix, schemes), with
 * --rebuild when rebuild; tries other ports while the one picked is taken.
 * *port gets the port, *conf the configuration. */
static CMT_UNUSED pid_t start_http(const char *name, const char *prefix, const char *schemes,
                                   int rebuild, const char *log, int *port, const char **conf)
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
static CMT_UNUSED char *http_body(int port, const char *path)
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

static CMT_UNUSED json_t *http_json(int port, const char *path)
{
    char *b = http_body(port, path);
    json_t *j = b ? json_loads(b, 0, NULL) : NULL;
    free(b);
    return j;
}

/* A circmon-gen stream of START_YEAR and the 5 years after. */
static CMT_UNUSED void gen_now(const char *out, int seed, int migrants)
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
static CMT_UNUSED void cached_equals_replay(int port, const char *conf, const char *f1,
                                            const char *f2)
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
static CMT_UNUSED json_t *replay(const char *conf, const char *f1, const char *f2, const char *out)
{
    char *a[] = {"replay", "--config", (char *)conf, "--as-of", T_AS_OF, "--format", "json",
                 (char *)f1, (char *)f2, NULL};
    ck_assert_int_eq(run_bin("circmonctl", a, path_in(out), path_in("ctl.log")), 0);
    return load_json(path_in(out));
}

/* circmonctl indicators under conf as of T_AS_OF. */
static CMT_UNUSED json_t *indicators(const char *conf)
{
    char *a[] = {"indicators", "--config", (char *)conf, "--as-of", T_AS_OF, "--format", "json",
                 NULL};
    ck_assert_int_eq(run_bin("circmonctl", a, path_in("ind.json"), path_in("ctl.log")), 0);
    return load_json(path_in("ind.json"));
}

static CMT_UNUSED int ctl_rebuild(const char *action, const char *conf, const char *extra1,
                                  const char *extra2)
{
    char *a[] = {"rebuild", (char *)action, "--config", (char *)conf, (char *)extra1,
                 (char *)extra2, NULL};
    return run_bin("circmonctl", a, path_in("rebuild.out"), path_in("rebuild.err"));
}

/* Polls GET Q_AS_OF on port until it equals want (deadline 30 s). */
static CMT_UNUSED void wait_http_equals(int port, json_t *want, const char *what)
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
static CMT_UNUSED long dlq_count(void)
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

static CMT_UNUSED long keys_of(const char *prefix)
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

static CMT_UNUSED char *alias_prefix(void)
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
static CMT_UNUSED void expect_refused(const char *conf, int rebuild, const char *needle)
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

static CMT_UNUSED void *poll_main(void *arg)
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


#define SCHEMES2 "[scheme *]\ngrace_days = 21\n[scheme SAWP-ES]\ngrace_days = 3\n"

#endif
