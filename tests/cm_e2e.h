/* cm_e2e.h - what the end-to-end suites share (check_e2e.c, check_e2e_faults.c,
 * check_e2e_input.c): their services, fixture and helpers, header only.
 *
 * Each test starts its own redis-server, on a unix socket in its directory
 * (no port is picked, so none can be taken by another program in between),
 * and circmon-broker, which binds a loopback port itself and prints it;
 * publishes a circmon-gen stream with circmonctl publish,
 * runs bin/circmond and compares `circmonctl indicators` (read from Redis)
 * with `circmonctl replay` of the same events. Every child process gets
 * PR_SET_PDEATHSIG, so a test killed by its timeout takes its services with
 * it; the teardown kills whatever is left. Synchronisation is by polling a
 * condition with a deadline, never by fixed sleeps. Every suite that
 * includes this is its own program: the state below is its own. */
#ifndef CM_E2E_H
#define CM_E2E_H

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "circmon/agg.h"
#include "circmon/config.h"
#include "circmon/event.h"
#include "circmon/framing.h"
#include "circmon/kafka.h"
#include "circmon/names.h"
#include "circmon/store.h"
#include "circmon/store_layout.h"
#include "cm_proc.h"
#include "cm_svc.h"
#include "cm_test.h"

#define N_PARTS 8
#define AS_OF "2025-01-01"
#define AS_OF_MID "2022-06-15"

/* ------------------------------------------------------------ services: cm_svc.h */

/* ------------------------------------------------------------ fixture */

static CMT_UNUSED void setup(void)
{
    svc_dir_make("check_e2e");
    redis_start(0);
    broker_start(N_PARTS);
}

static CMT_UNUSED void teardown(void)
{
    svc_dir_remove();
}

/* setup in the test itself: the services belong to the forked test. */
#define SETUP()                                                                                \
    do {                                                                                       \
        setup();                                                                               \
    } while (0)

/* ------------------------------------------------------------ helpers */

/* Writes the configuration; returns its path. */
static CMT_UNUSED const char *write_conf(const char *name, const char *group, int batch_size,
                              int max_in_flight)
{
    const char *p = path_in(name);
    FILE *fp = fopen(p, "w");
    ck_assert_ptr_nonnull(fp);
    fprintf(fp,
            "[circmon]\nbatch_size = %d\nmax_in_flight = %d\nlog_level = info\n"
            "[kafka]\nbrokers = %s\ngroup_id = %s\nrdkafka.session.timeout.ms = 6000\n"
            "[redis]\nunix_socket = %s\ncommand_timeout_ms = 3000\n"
            "connect_timeout_ms = 1000\n"
            "[http]\nport = 0\n", /* several daemons per test: no endpoint (its default is 9464) */
            batch_size, max_in_flight, brokers, group, redis_sock);
    fclose(fp);
    return p;
}

static CMT_UNUSED void gen(const char *out, int seed, int migrants)
{
    char s[16], m[16];
    snprintf(s, sizeof(s), "%d", seed);
    snprintf(m, sizeof(m), "%d", migrants);
    char *args[] = {"--seed", s, "--migrants", m, "--out", (char *)out, NULL};
    ck_assert_int_eq(run_bin("circmon-gen", args, NULL, path_in("gen.log")), 0);
}

/* Splits a framed file: the first k records into a, the rest into b.
 * Returns the number of records. */
static CMT_UNUSED long split(const char *in, long k, const char *a, const char *b)
{
    FILE *fi = fopen(in, "rb"), *fa = fopen(a, "wb"), *fb = fopen(b, "wb");
    struct cm_frame_reader fr;
    const uint8_t *data;
    size_t len;
    long n = 0;
    ck_assert(fi && fa && fb);
    cm_frame_reader_init(&fr, fi);
    while (cm_frame_read(&fr, &data, &len) == 1) {
        ck_assert_int_eq(cm_frame_write(n < k ? fa : fb, data, len), 0);
        n++;
    }
    cm_frame_reader_free(&fr);
    fclose(fi);
    fclose(fa);
    fclose(fb);
    return n;
}

static CMT_UNUSED void publish(const char *conf, const char *file)
{
    char *args[] = {"publish", "--config", (char *)conf, (char *)file, NULL};
    ck_assert_int_eq(run_bin("circmonctl", args, NULL, path_in("publish.log")), 0);
}

/* Generates a stream of migrants (seed) into dir/ev.bin (*ev, when not
 * NULL), publishes it with conf; returns its number of records. */
static CMT_UNUSED long gen_publish(const char *conf, int seed, int migrants, const char **ev)
{
    const char *p = path_in("ev.bin");
    gen(p, seed, migrants);
    long n = count_records(p);
    publish(conf, p);
    if (ev)
        *ev = p;
    return n;
}

/* Starts circmond (cm_bin.h: $CM_BIN, else $CM_TOP/bin); CM_DAEMON_WRAPPER
 * (e.g. "valgrind -q --error-exitcode=9 --leak-check=full") is put in front
 * of it, words split on blanks. */
static CMT_UNUSED pid_t daemon_start(const char *conf, const char *log, char *const env[])
{
    char path[600], *argv[40], *w = NULL;
    int n = 0;
    const char *wrap = getenv("CM_DAEMON_WRAPPER");
    cm_bin_path(path, sizeof(path), "circmond");
    if (wrap && *wrap) {
        w = strdup(wrap);
        for (char *t = strtok(w, " "); t && n < 32; t = strtok(NULL, " "))
            argv[n++] = t;
    }
    argv[n++] = path;
    argv[n++] = "--config";
    argv[n++] = (char *)conf;
    argv[n++] = "--foreground";
    argv[n] = NULL;
    pid_t pid = spawn(argv, NULL, log, NULL, env);
    free(w);
    return pid;
}

/* Polls until the stored positions add up to total (every partition starts
 * at offset 0 in a fresh topic), within timeout_s. */
static CMT_UNUSED void wait_caught_up(const char *conf, int64_t total, double timeout_s)
{
    double end = now_s() + timeout_s;
    int64_t s;
    while ((s = stored_sum(conf)) != total) {
        ck_assert_msg(s <= total, "positions add up to %" PRId64 " > %" PRId64, s, total);
        ck_assert_msg(now_s() < end, "not caught up after %.0f s: %" PRId64 " of %" PRId64,
                      timeout_s, s, total);
        nap_ms(50);
    }
}

/* Waits until the stored positions reach at least min. */
static CMT_UNUSED void wait_progress(const char *conf, int64_t min, double timeout_s)
{
    double end = now_s() + timeout_s;
    while (stored_sum(conf) < min) {
        ck_assert_msg(now_s() < end, "no progress to %" PRId64 " in %.0f s", min, timeout_s);
        nap_ms(5);
    }
}

/* indicators from Redis == replay of files, as of as_of. */
static CMT_UNUSED void compare(const char *conf, const char *as_of, const char *f1, const char *f2)
{
    const char *ind = path_in("ind.json"), *rep = path_in("rep.json");
    char *a1[] = {"indicators", "--config", (char *)conf, "--as-of", (char *)as_of, "--format",
                  "json", NULL};
    ck_assert_int_eq(run_bin("circmonctl", a1, ind, path_in("ctl.log")), 0);
    char *a2[] = {"replay", "--config", (char *)conf, "--as-of", (char *)as_of, "--format",
                  "json", (char *)f1, (char *)f2, NULL};
    ck_assert_int_eq(run_bin("circmonctl", a2, rep, path_in("ctl.log")), 0);
    json_t *x = load_json(ind), *y = load_json(rep);
    ck_assert_msg(json_equal(x, y), "indicators from Redis differ from replay as of %s (%s, %s)",
                  as_of, ind, rep);
    json_decref(x);
    json_decref(y);
}

static CMT_UNUSED void stop_daemon(pid_t pid)
{
    kill(pid, SIGTERM);
    int st = wait_pid(pid, 30);
    ck_assert_msg(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
                  "circmond did not stop cleanly on SIGTERM (status %d)", st);
}

/* The group's committed offsets (the mirror for lag tools) equal the
 * positions in Redis, partition by partition. */
static CMT_UNUSED void check_committed(const char *conf, const char *group)
{
    struct cm_config cfg = {0};
    char err[512];
    int32_t *parts = NULL;
    int64_t *pos = NULL;
    size_t n = 0;
    ck_assert_msg(cm_config_load(&cfg, conf, err, sizeof(err)) == 0, "%s", err);
    ck_assert_msg(cm_store_read_positions(&cfg, &parts, &pos, &n, err, sizeof(err)) == 0, "%s",
                  err);
    ck_assert_int_eq(n, N_PARTS);
    rd_kafka_conf_t *kc = rd_kafka_conf_new();
    ck_assert(rd_kafka_conf_set(kc, "bootstrap.servers", brokers, err, sizeof(err)) ==
              RD_KAFKA_CONF_OK);
    ck_assert(rd_kafka_conf_set(kc, "group.id", group, err, sizeof(err)) == RD_KAFKA_CONF_OK);
    ck_assert(rd_kafka_conf_set(kc, "enable.auto.commit", "false", err, sizeof(err)) ==
              RD_KAFKA_CONF_OK);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, err, sizeof(err));
    ck_assert_msg(rk != NULL, "%s", err);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)n);
    for (size_t i = 0; i < n; i++)
        rd_kafka_topic_partition_list_add(l, "circmon.events", parts[i]);
    ck_assert_int_eq(rd_kafka_committed(rk, l, 10000), 0);
    for (size_t i = 0; i < n; i++) {
        ck_assert_int_eq(l->elems[i].err, 0);
        ck_assert_msg(l->elems[i].offset == pos[i],
                      "partition %d: committed %" PRId64 ", Redis holds %" PRId64,
                      (int)parts[i], l->elems[i].offset, pos[i]);
    }
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_destroy(rk);
    free(parts);
    free(pos);
    cm_config_free(&cfg);
}

/* Runs circmond (fresh group <prefix><i>, config c<i>.conf, small batches)
 * with test hook var=value, which must make it kill itself. A fresh group
 * per run: the dead member's session need not expire. */
static CMT_UNUSED void run_to_hook(const char *prefix, int i, const char *var, const char *value)
{
    char group[32], name[32], env[96];
    snprintf(group, sizeof(group), "%s%d", prefix, i);
    snprintf(name, sizeof(name), "c%d.conf", i);
    snprintf(env, sizeof(env), "%s=%s", var, value);
    const char *c = write_conf(name, group, 100, 2);
    char *envv[] = {env, NULL};
    pid_t d = daemon_start(c, path_in("d.log"), envv);
    int st = wait_pid(d, 60);
    ck_assert_msg(st >= 0 && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL,
                  "circmond was to kill itself with %s", env);
}

/* Dead letters the last compare's replay implies: its invalid and too-late
 * messages (at least one, or the test proves nothing). */
static CMT_UNUSED long expected_dead_letters(void)
{
    json_t *doc = load_json(path_in("rep.json"));
    json_t *dq = json_object_get(doc, "data_quality");
    long want = (long)json_integer_value(json_object_get(dq, "invalid")) +
                (long)json_integer_value(json_object_get(dq, "too_late"));
    json_decref(doc);
    ck_assert_int_gt(want, 0);
    return want;
}

/* ------------------------------------------------------------ tests */


static CMT_UNUSED void redis_cmd_ok(const char *cmd)
{
    redisContext *c = redis_conn();
    ck_assert_ptr_nonnull(c);
    redisReply *r = redisCommand(c, cmd);
    ck_assert_msg(r && r->type != REDIS_REPLY_ERROR, "%s: %s", cmd, r ? r->str : c->errstr);
    freeReplyObject(r);
    redisFree(c);
}

/* Reads the whole dead-letter topic; checks each source offset appears once
 * with its headers. Returns the number of messages; *n_reason (when
 * reason is not NULL) gets the number whose reason is reason. */
static CMT_UNUSED long read_dlq_reason(const char *reason, long *n_reason)
{
    rd_kafka_t *rk = topic_reader("circmon.events.dlq", N_PARTS, "dlq-reader");
    int eof = 0;
    long n = 0;
    char (*seen)[48] = calloc(100000, sizeof(*seen));
    double end = now_s() + 30;
    rd_kafka_message_t *m;
    while ((m = topic_next(rk, "circmon.events.dlq", N_PARTS, &eof, end))) {
        rd_kafka_headers_t *h = NULL;
        ck_assert_int_eq(rd_kafka_message_headers(m, &h), 0);
        const void *v[4];
        size_t vl[4];
        const char *names[] = {CM_DLQ_HDR_REASON, CM_DLQ_HDR_SRC_TOPIC,
                               CM_DLQ_HDR_SRC_PARTITION, CM_DLQ_HDR_SRC_OFFSET};
        for (int i = 0; i < 4; i++)
            ck_assert_msg(rd_kafka_header_get_last(h, names[i], &v[i], &vl[i]) == 0 &&
                              vl[i] > 0,
                          "dead letter without header %s", names[i]);
        char key[48];
        snprintf(key, sizeof(key), "%.*s/%.*s", (int)vl[2], (const char *)v[2], (int)vl[3],
                 (const char *)v[3]);
        if (reason && vl[0] == strlen(reason) && !memcmp(v[0], reason, vl[0]))
            ++*n_reason;
        for (long i = 0; i < n; i++)
            ck_assert_msg(strcmp(seen[i], key), "dead letter for %s twice", key);
        ck_assert(n < 100000);
        strcpy(seen[n++], key);
        rd_kafka_message_destroy(m);
    }
    free(seen);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return n;
}

static CMT_UNUSED long read_dlq(void)
{
    return read_dlq_reason(NULL, NULL);
}

/* --- the store's compare-and-set against a real redis-server ------------- */

struct apply_res {
    int done, err, applied;
    int64_t stored;
    struct event_base *base;
};

static CMT_UNUSED void on_up(struct cm_store *s, int up, void *ud)
{
    (void)s;
    if (up)
        event_base_loopbreak(ud);
}

static CMT_UNUSED void on_apply(int err, int applied, int64_t stored, void *ud)
{
    struct apply_res *r = ud;
    r->done = 1;
    r->err = err;
    r->applied = applied;
    r->stored = stored;
    event_base_loopbreak(r->base);
}

static CMT_UNUSED struct apply_res do_apply(struct event_base *base, struct cm_store *st,
                                 const struct cm_config *cfg, int64_t exp, int64_t np,
                                 const char *state, const struct cm_agg *ag,
                                 const struct cm_names *nm)
{
    struct apply_res r = {.base = base};
    struct cm_store_apply *ap = cm_store_apply_new(cfg->key_prefix, 3, exp, np);
    ck_assert_ptr_nonnull(ap);
    ck_assert_int_eq(cm_store_apply_state(ap, "mig-1", 5, (const uint8_t *)state, strlen(state)),
                     0);
    ck_assert_int_eq(cm_store_apply_agg(ap, ag, nm), 0);
    ck_assert_int_eq(cm_store_apply_send(st, ap, on_apply, &r), 0);
    event_base_dispatch(base);
    ck_assert(r.done);
    return r;
}

struct pos_res {
    int done, err;
    struct cm_store_pos p[2];
    struct event_base *base;
};

static CMT_UNUSED void on_pos(int err, const struct cm_store_pos *pos, size_t n, void *ud)
{
    struct pos_res *r = ud;
    r->done = 1;
    r->err = err;
    for (size_t i = 0; !err && i < n && i < 2; i++)
        r->p[i] = pos[i];
    event_base_loopbreak(r->base);
}

static CMT_UNUSED char *dump(void)
{
    redisContext *c = redis_conn();
    ck_assert_ptr_nonnull(c);
    redisReply *r = redisCommand(c, "EVAL %s 0",
                                 "local o = {} for _, k in ipairs(redis.call('KEYS', '*')) do "
                                 "local t = redis.call('TYPE', k).ok "
                                 "if t == 'string' then o[#o+1] = k .. '=' .. redis.call('GET', k) "
                                 "else local h = redis.call('HGETALL', k) table.sort(h) "
                                 "o[#o+1] = k .. '=' .. table.concat(h, ',') end end "
                                 "table.sort(o) return table.concat(o, ';')");
    ck_assert_msg(r && r->type == REDIS_REPLY_STRING, "dump failed");
    char *s = strdup(r->str);
    freeReplyObject(r);
    redisFree(c);
    return s;
}

/* ------------------------------------------------------------ robustness */

/* Writes the events evs[0..n-1] as a framed file; returns its path. */
static CMT_UNUSED const char *write_events(const char *name, const struct tev *evs, int n)
{
    const char *p = path_in(name);
    FILE *fp = fopen(p, "wb");
    ck_assert_ptr_nonnull(fp);
    for (int i = 0; i < n; i++) {
        struct msg m = tev_pack(&evs[i]);
        ck_assert_int_eq(cm_frame_write(fp, m.buf, m.len), 0);
    }
    ck_assert_int_eq(fclose(fp), 0);
    return p;
}

/* The loop latency circmond's stop line reports (p50, p99, max in ms); 0
 * when the line is missing. */
static CMT_UNUSED int loop_latency(const char *log, double *p50, double *p99, double *max)
{
    FILE *fp = fopen(log, "r");
    char line[4096];
    int found = 0;
    if (!fp)
        return 0;
    while (fgets(line, sizeof(line), fp)) {
        const char *k = strstr(line, "loop latency since the start p50/p99/max ");
        if (k && sscanf(k + strlen("loop latency since the start p50/p99/max "), "%lf/%lf/%lf",
                        p50, p99, max) == 3)
            found = 1;
    }
    fclose(fp);
    return found;
}

/* A test case of s with the teardown that stops every process it started. */

static CMT_UNUSED TCase *new_case(Suite *s, const char *name, int timeout_s)
{
    TCase *tc = tcase_create(name);
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_set_timeout(tc, timeout_s);
    suite_add_tcase(s, tc);
    return tc;
}

#endif
