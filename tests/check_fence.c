/* check_fence.c - an owner frozen past its session: owner epochs, dead letters read exactly once.
 *
 * Against a real redis-server (unix socket) and circmon-broker, each test
 * started by the test itself and stopped by the teardown whatever happens
 * (children get PR_SET_PDEATHSIG). Two circmond share a group; the test hook
 * CIRCMOND_TEST_STOP_AFTER_DLQ makes one of them SIGSTOP itself at a batch
 * with dead letters; the test waits, by polling Redis and the logs, until
 * the other has taken the partition, thaws the frozen one and lets it leave.
 * What must hold (README, Dead letters): every dead letter is on the topic,
 * exactly once after deduplication by source offset, every extra copy
 * carries a lower owner epoch than the kept one, the deposed owner's apply
 * is refused, and the figures equal a replay. */
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

#include "circmon/config.h"
#include "circmon/dlq.h"
#include "circmon/framing.h"
#include "circmon/kafka.h"
#include "circmon/store.h"
#include "circmon/store_layout.h"
#include "cm_proc.h"
#include "cm_svc.h"

#define N_PARTS 8
#define AS_OF "2025-01-01"

/* 'T' when pid is stopped, 'Z' when it exited, else its state letter. */
static char proc_state(pid_t pid)
{
    char p[64], buf[512];
    snprintf(p, sizeof(p), "/proc/%d/stat", (int)pid);
    FILE *fp = fopen(p, "r");
    if (!fp)
        return 'Z';
    size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    char *rp = strrchr(buf, ')');
    return rp && rp[1] == ' ' ? rp[2] : '?';
}

static void setup(void)
{
    svc_dir_make("check_fence");
    redis_start(0);
}

static void teardown(void)
{
    for (int i = 0; i < npids; i++)
        kill(pids[i], SIGCONT); /* a stopped child would not die of SIGKILL later */
    svc_dir_remove();
}

/* ------------------------------------------------------------ helpers */

/* A configuration of group; one batch in flight when single (no other
 * Redis request of a frozen daemon can time out under its apply). */
static const char *write_conf_(const char *name, const char *group, const char *extra,
                               int single)
{
    const char *p = path_in(name);
    FILE *fp = fopen(p, "w");
    ck_assert_ptr_nonnull(fp);
    fprintf(fp,
            "[circmon]\nbatch_size = 100\nmax_in_flight = %d\nlog_level = info\n"
            "[kafka]\nbrokers = %s\ngroup_id = %s\nrdkafka.session.timeout.ms = 6000\n%s"
            "[redis]\nunix_socket = %s\ncommand_timeout_ms = 3000\nconnect_timeout_ms = 1000\n"
            "[http]\nport = 0\n", /* two daemons per test: no endpoint */
            single ? 1 : 2, brokers[0] ? brokers : "127.0.0.1:1", group, extra ? extra : "",
            redis_sock);
    fclose(fp);
    return p;
}

static const char *write_conf(const char *name, const char *group, const char *extra)
{
    return write_conf_(name, group, extra, 0);
}

static pid_t daemon_start(const char *conf, const char *log, char *const env[])
{
    char path[600];
    cm_bin_path(path, sizeof(path), "circmond");
    char *argv[] = {path, "--config", (char *)conf, "--foreground", NULL};
    return spawn(argv, NULL, log, NULL, env);
}

/* The first line of p holding needle, copied into out; 0 when none. */
static int line_with(const char *p, const char *needle, char *out, size_t outlen)
{
    FILE *fp = fopen(p, "r");
    if (!fp)
        return 0;
    char line[4096];
    int found = 0;
    while (!found && fgets(line, sizeof(line), fp))
        if (strstr(line, needle)) {
            snprintf(out, outlen, "%s", line);
            found = 1;
        }
    fclose(fp);
    return found;
}

static void wait_lines(const char *log, const char *needle, int n, double timeout_s)
{
    double end = now_s() + timeout_s;
    while (count_in_file(log, needle) < n) {
        ck_assert_msg(now_s() < end, "no %d lines '%s' in %s after %.0f s", n, needle, log,
                      timeout_s);
        nap_ms(20);
    }
}

/* GET of key as an integer, 0 when absent. */
static int64_t redis_int(const char *key)
{
    redisContext *c = redis_conn();
    ck_assert_ptr_nonnull(c);
    redisReply *r = redisCommand(c, "GET %s", key);
    ck_assert_ptr_nonnull(r);
    int64_t v = r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10) : 0;
    freeReplyObject(r);
    redisFree(c);
    return v;
}

/* The sum of the partitions' positions, read key by key. */
static int64_t stored_pos_sum(void)
{
    int64_t s = 0;
    char k[64];
    for (int p = 0; p < N_PARTS; p++) {
        snprintf(k, sizeof(k), "circmon:{%d}:pos", p);
        s += redis_int(k);
    }
    return s;
}

/* indicators from Redis == replay of ev; returns the replay's dead letters
 * (invalid + too late), asserted > 0. */
static long compare(const char *conf, const char *ev)
{
    const char *ind = path_in("ind.json"), *rep = path_in("rep.json");
    char *a1[] = {"indicators", "--config", (char *)conf, "--as-of", AS_OF, "--format", "json",
                  NULL};
    ck_assert_int_eq(run_bin("circmonctl", a1, ind, path_in("ctl.log")), 0);
    char *a2[] = {"replay", "--config", (char *)conf, "--as-of", AS_OF, "--format", "json",
                  (char *)ev, NULL};
    ck_assert_int_eq(run_bin("circmonctl", a2, rep, path_in("ctl.log")), 0);
    json_t *x = load_json(ind), *y = load_json(rep);
    ck_assert_msg(json_equal(x, y), "indicators from Redis differ from replay (%s, %s)", ind,
                  rep);
    json_t *dq = json_object_get(y, "data_quality");
    long want = (long)json_integer_value(json_object_get(dq, "invalid")) +
                (long)json_integer_value(json_object_get(dq, "too_late"));
    json_decref(x);
    json_decref(y);
    ck_assert_int_gt(want, 0);
    return want;
}

/* ------------------------------------------------ the dead-letter topic */

struct copy {
    int32_t part;
    int64_t off, epoch; /* epoch -1: no header */
};

static int cmp_copy(const void *a, const void *b)
{
    const struct copy *x = a, *y = b;
    if (x->part != y->part)
        return x->part < y->part ? -1 : 1;
    if (x->off != y->off)
        return x->off < y->off ? -1 : 1;
    return (x->epoch < y->epoch) - (x->epoch > y->epoch); /* highest epoch first */
}

static int64_t hdr_i64(rd_kafka_headers_t *h, const char *name)
{
    const void *v;
    size_t len;
    char buf[32];
    if (rd_kafka_header_get_last(h, name, &v, &len) || len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, v, len);
    buf[len] = '\0';
    return strtoll(buf, NULL, 10);
}

/* Every message of the dead-letter topic as (source partition, offset,
 * epoch), sorted; *n gets their number. Read with plain librdkafka. */
static struct copy *read_copies(size_t *n)
{
    rd_kafka_t *rk = topic_reader("circmon.events.dlq", N_PARTS, "fence-reader");
    size_t cap = 1024;
    struct copy *c = malloc(cap * sizeof(*c));
    ck_assert_ptr_nonnull(c);
    *n = 0;
    int eof = 0;
    double end = now_s() + 30;
    rd_kafka_message_t *m;
    while ((m = topic_next(rk, "circmon.events.dlq", N_PARTS, &eof, end))) {
        rd_kafka_headers_t *h = NULL;
        ck_assert_int_eq(rd_kafka_message_headers(m, &h), 0);
        if (*n == cap) {
            cap *= 2;
            c = realloc(c, cap * sizeof(*c));
            ck_assert_ptr_nonnull(c);
        }
        c[*n].part = (int32_t)hdr_i64(h, CM_DLQ_HDR_SRC_PARTITION);
        c[*n].off = hdr_i64(h, CM_DLQ_HDR_SRC_OFFSET);
        c[*n].epoch = hdr_i64(h, CM_DLQ_HDR_OWNER_EPOCH);
        ck_assert(c[*n].part >= 0 && c[*n].off >= 0);
        (*n)++;
        rd_kafka_message_destroy(m);
    }
    rd_kafka_destroy_flags(rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    qsort(c, *n, sizeof(*c), cmp_copy);
    return c;
}

/* The dead-letter topic read exactly once: want distinct source offsets,
 * each extra copy with an epoch lower than the kept one; circmonctl dlq
 * says the same. Returns the number of extra copies. */
static size_t check_dead_letters(const char *conf, long want)
{
    size_t n, distinct = 0, extra = 0;
    struct copy *c = read_copies(&n);
    for (size_t i = 0; i < n; i++) {
        if (i == 0 || c[i].part != c[i - 1].part || c[i].off != c[i - 1].off) {
            distinct++;
            continue;
        }
        extra++;
        const struct copy *kept = &c[i - 1];
        while (kept > c && kept[-1].part == c[i].part && kept[-1].off == c[i].off)
            kept--;
        ck_assert_msg(c[i].epoch >= 0 && c[i].epoch < kept->epoch,
                      "source %d/%" PRId64 ": a copy with epoch %" PRId64
                      " besides the kept one's %" PRId64 " (not lower)",
                      (int)c[i].part, c[i].off, c[i].epoch, kept->epoch);
    }
    free(c);
    ck_assert_int_eq((long)distinct, want);

    const char *out = path_in("dlq.json");
    char *args[] = {"dlq", "--config", (char *)conf, "--format", "json", NULL};
    ck_assert_int_eq(run_bin("circmonctl", args, out, path_in("ctl.log")), 0);
    json_t *doc = load_json(out);
    ck_assert_int_eq(json_integer_value(json_object_get(doc, "distinct")), want);
    ck_assert_int_eq(json_integer_value(json_object_get(doc, "records")), (long)n);
    ck_assert_int_eq(json_integer_value(json_object_get(doc, "superseded")), (long)extra);
    ck_assert_int_eq(json_integer_value(json_object_get(doc, "superseded_lower_epoch")),
                     (long)extra);
    ck_assert_int_eq(json_array_size(json_object_get(doc, "dead_letters")), (size_t)want);
    json_decref(doc);
    return extra;
}

/* ------------------------------------------------------------ the store */

struct res {
    int done, err, applied;
    int64_t stored, epoch, pos;
};

static void on_up(struct cm_store *s, int up, void *ud)
{
    (void)s;
    if (up)
        event_base_loopbreak(ud);
}

static void on_apply(int err, int applied, int64_t stored, void *ud)
{
    struct res *r = ud;
    r->done = 1;
    r->err = err;
    r->applied = applied;
    r->stored = stored;
}

static void on_pos(int err, const struct cm_store_pos *pos, size_t n, void *ud)
{
    struct res *r = ud;
    r->done = 1;
    r->err = err;
    if (!err && n == 1) {
        r->epoch = pos[0].epoch;
        r->pos = pos[0].pos;
    }
}

static void run_until(struct event_base *base, struct res *r)
{
    double end = now_s() + 10;
    while (!r->done) {
        ck_assert_msg(now_s() < end, "no store reply in 10 s");
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        nap_ms(1);
    }
}

static struct res apply(struct event_base *base, struct cm_store *st, int64_t expected,
                        int64_t new_pos, int64_t epoch)
{
    struct res r = {0};
    struct cm_store_apply *ap = cm_store_apply_new("circmon", 3, expected, new_pos);
    ck_assert_ptr_nonnull(ap);
    ck_assert_int_eq(cm_store_apply_state(ap, "m1", 2, (const uint8_t *)"s", 1), 0);
    if (epoch)
        ck_assert_int_eq(cm_store_apply_epoch(ap, epoch), 0);
    ck_assert_int_eq(cm_store_apply_send(st, ap, on_apply, &r), 0);
    run_until(base, &r);
    ck_assert_int_eq(r.err, 0);
    return r;
}

static struct res take(struct event_base *base, struct cm_store *st, int get_only)
{
    struct res r = {0};
    int32_t id = 3;
    ck_assert_int_eq(get_only ? cm_store_get_positions(st, &id, 1, on_pos, &r)
                              : cm_store_take_positions(st, &id, 1, on_pos, &r),
                     0);
    run_until(base, &r);
    ck_assert_int_eq(r.err, 0);
    return r;
}

/* Each take increments the owner epoch; an apply of an older epoch is
 * refused even when its position is right (the window before the new
 * owner's first apply) and changes nothing; the current epoch applies; an
 * apply without an epoch is not checked (tools). */
START_TEST(test_epoch_in_the_compare_and_set)
{
    setup();
    struct cm_config cfg = {0};
    char err[512];
    ck_assert_msg(cm_config_load(&cfg, write_conf("c.conf", "g", NULL), err, sizeof(err)) == 0,
                  "%s", err);
    struct event_base *base = event_base_new();
    struct cm_store *st = cm_store_new(base, &cfg, on_up, base);
    ck_assert_ptr_nonnull(st);
    double end = now_s() + 10;
    while (!cm_store_ready(st)) {
        ck_assert(now_s() < end);
        event_base_loop(base, EVLOOP_ONCE);
    }
    struct res a = take(base, st, 0), b = take(base, st, 0);
    ck_assert_int_eq(a.epoch, 1);
    ck_assert_int_eq(b.epoch, 2);
    ck_assert_int_eq(take(base, st, 1).epoch, 0); /* a plain read takes nothing */
    ck_assert_int_eq(redis_int("circmon:{3}:epoch"), 2);

    struct res r = apply(base, st, 0, 10, a.epoch); /* the deposed owner, position right */
    ck_assert_int_eq(r.applied, -1);
    ck_assert_int_eq(r.stored, 2);
    ck_assert_int_eq(redis_int("circmon:{3}:pos"), 0);
    redisContext *c = redis_conn();
    char *bk = cm_layout_key_bucket("circmon", 3, cm_layout_bucket("m1", 2, (uint32_t)cfg.state_buckets),
                                    NULL);
    redisReply *rep = redisCommand(c, "EXISTS %s circmon:{3}:layout", bk);
    free(bk);
    ck_assert_int_eq(rep->integer, 0);
    freeReplyObject(rep);

    r = apply(base, st, 0, 10, b.epoch);
    ck_assert_int_eq(r.applied, 1);
    ck_assert_int_eq(redis_int("circmon:{3}:pos"), 10);
    r = apply(base, st, 0, 20, b.epoch); /* the position is still compared */
    ck_assert_int_eq(r.applied, 0);
    ck_assert_int_eq(r.stored, 10);
    r = apply(base, st, 10, 20, 0);
    ck_assert_int_eq(r.applied, 1);

    /* a stored epoch that is not a number is an error, not a pass */
    freeReplyObject(redisCommand(c, "SET circmon:{3}:epoch x"));
    struct res e = {0};
    struct cm_store_apply *ap = cm_store_apply_new("circmon", 3, 20, 30);
    ck_assert_int_eq(cm_store_apply_epoch(ap, 5), 0);
    ck_assert_int_eq(cm_store_apply_send(st, ap, on_apply, &e), 0);
    run_until(base, &e);
    ck_assert_int_eq(e.err, -EPROTO);
    ck_assert_ptr_nonnull(strstr(cm_store_errstr(st), "not a number"));
    redisFree(c);
    cm_store_free(st);
    event_base_free(base);
    cm_config_free(&cfg);
}
END_TEST

/* The dead-letter producer's delivery timeout must stay below the session
 * timeout minus the heartbeat interval: a longer rdkafka override is
 * refused with the reason, a shorter one is taken. */
START_TEST(test_delivery_timeout_below_session)
{
    setup();
    const char *bad = write_conf("bad.conf", "g", "rdkafka.message.timeout.ms = 30000\n");
    const char *alias = write_conf("alias.conf", "g", "rdkafka.delivery.timeout.ms = 3000\n");
    const char *good = write_conf("good.conf", "g", "rdkafka.message.timeout.ms = 2500\n");
    const char *dflt = write_conf("dflt.conf", "g", NULL);
    const char *log = path_in("check.log");
    char *a1[] = {"--config", (char *)bad, "--check-config", NULL};
    ck_assert_int_eq(run_bin("circmond", a1, NULL, log), 1);
    ck_assert_int_eq(count_in_file(log, "rdkafka.message.timeout.ms = 30000: must be"), 1);
    ck_assert_int_eq(count_in_file(log, "heartbeat.interval.ms = 3000"), 1);
    char *a2[] = {"--config", (char *)alias, "--check-config", NULL};
    ck_assert_int_eq(run_bin("circmond", a2, NULL, log), 1); /* 6000 - 3000 is not above 3000 */
    char *a3[] = {"--config", (char *)good, "--check-config", NULL};
    ck_assert_int_eq(run_bin("circmond", a3, NULL, log), 0);
    char *a4[] = {"--config", (char *)dflt, "--check-config", NULL};
    ck_assert_int_eq(run_bin("circmond", a4, NULL, log), 0);
}
END_TEST

/* ------------------------------------------------------------ the freeze */

/* B runs; A joins with the hook; once both hold partitions the events are
 * published; A stops itself at a batch with dead letters. Returns A's pid
 * and fills the partition, offset and epoch of its frozen batch (epoch -1
 * when its hook line names none: a tree without epochs). */
static pid_t freeze_one(const char *conf, const char *hook, const char *loga, const char *logb,
                        pid_t *b, int32_t *part, int64_t *off, int64_t *epoch, long *n,
                        const char **ev)
{
    *b = daemon_start(conf, logb, NULL);
    wait_lines(logb, "partitions from the positions in Redis", 1, 60);
    static char env[96];
    snprintf(env, sizeof(env), "CIRCMOND_TEST_STOP_AFTER_DLQ=%s", hook);
    char *envv[] = {env, NULL};
    pid_t a = daemon_start(write_conf_("a.conf", "fence", NULL, 1), loga, envv);
    /* both hold partitions: A assigned, B assigned again after the rebalance */
    wait_lines(loga, "partitions from the positions in Redis", 1, 60);
    wait_lines(logb, "partitions from the positions in Redis", 2, 60);

    const char *p = path_in("ev.bin");
    char *g[] = {"--seed", "5", "--migrants", "3000", "--out", (char *)p, NULL};
    ck_assert_int_eq(run_bin("circmon-gen", g, NULL, path_in("gen.log")), 0);
    *n = count_records(p);
    *ev = p;
    char *pub[] = {"publish", "--config", (char *)conf, (char *)p, NULL};
    ck_assert_int_eq(run_bin("circmonctl", pub, NULL, path_in("publish.log")), 0);

    double end = now_s() + 60;
    while (proc_state(a) != 'T') {
        ck_assert_msg(proc_state(a) != 'Z', "circmond A exited (%s)", loga);
        ck_assert_msg(now_s() < end, "circmond A did not stop itself (%s)", loga);
        nap_ms(10);
    }
    char line[4096];
    ck_assert(line_with(loga, "test hook: stopping myself: partition", line, sizeof(line)));
    const char *s = strstr(line, "partition ");
    ck_assert(sscanf(s, "partition %" SCNd32 " batch at %" SCNd64, part, off) == 2);
    const char *e = strstr(line, " epoch ");
    *epoch = e ? strtoll(e + 7, NULL, 10) : -1;
    return a;
}

/* Thawed, A notices it lost its partitions (revoke), then stops cleanly;
 * B catches up alone. */
static void thaw_and_leave(pid_t a, const char *conf, const char *loga, long n, pid_t b)
{
    int revokes = count_in_file(loga, "group revoked");
    ck_assert_int_eq(kill(a, SIGCONT), 0);
    wait_lines(loga, "group revoked", revokes + 1, 60);
    kill(a, SIGTERM);
    int st = wait_pid(a, 30);
    ck_assert_msg(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
                  "circmond A did not stop cleanly (status %d, %s)", st, loga);
    double end = now_s() + 90;
    int64_t s;
    while ((s = stored_pos_sum()) != n) {
        ck_assert_msg(s <= n, "positions add up to %" PRId64 " > %ld", s, n);
        ck_assert_msg(now_s() < end, "B not caught up: %" PRId64 " of %ld", s, n);
        nap_ms(50);
    }
    ck_assert_msg(proc_state(b) != 'Z', "circmond B died");
    (void)conf;
}

/* Frozen with its dead letters queued, not delivered, past its session:
 * B takes the partition and applies past the batch; A's dead letters time
 * out when it wakes (message.timeout.ms below the session) or land as
 * copies with a lower epoch; A applies nothing. */
START_TEST(test_freeze_with_dead_letters_in_flight)
{
    setup();
    broker_start(N_PARTS);
    const char *conf = write_conf("c.conf", "fence", NULL);
    const char *loga = path_in("a.log"), *logb = path_in("b.log"), *ev;
    pid_t b;
    int32_t part;
    int64_t off, epoch;
    long n;
    pid_t a = freeze_one(conf, "1", loga, logb, &b, &part, &off, &epoch, &n, &ev);
    char key[64];
    snprintf(key, sizeof(key), "circmon:{%d}:pos", (int)part);
    double end = now_s() + 60;
    while (redis_int(key) <= off) { /* B took the partition and applied past the batch */
        ck_assert_msg(now_s() < end, "partition %d not applied past %" PRId64 " by B",
                      (int)part, off);
        ck_assert(proc_state(a) == 'T');
        nap_ms(20);
    }
    thaw_and_leave(a, conf, loga, n, b);
    long want = compare(conf, ev);
    char lb[64];
    snprintf(lb, sizeof(lb), "circmon:{%d}:epoch", (int)part);
    ck_assert_int_gt(redis_int(lb), epoch); /* B's epoch is newer */
    kill(b, SIGTERM);
    ck_assert_int_ge(wait_pid(b, 30), 0);
    size_t extra = check_dead_letters(conf, want);
    /* the deposed owner applied nothing: its batch failed or was refused */
    ck_assert_msg(count_in_file(loga, "not delivered") + count_in_file(loga, "apply refused") > 0,
                  "A's frozen batch neither failed nor was refused (%s)", loga);
    fprintf(stderr, "check_fence: in flight: %ld dead letters, %zu extra copies\n", want, extra);
}
END_TEST

/* Frozen with its dead letters delivered and its apply not yet sent: as
 * soon as B has taken the partition (its epoch in Redis), A is thawed and
 * sends the apply at once, maybe before B's first apply: it is refused for
 * its epoch (or, when the revoke reaches it first, it drops the batch). */
START_TEST(test_freeze_before_the_apply)
{
    setup();
    broker_start(N_PARTS);
    const char *conf = write_conf("c.conf", "fence", NULL);
    const char *loga = path_in("a.log"), *logb = path_in("b.log"), *ev;
    pid_t b;
    int32_t part;
    int64_t off, epoch;
    long n;
    pid_t a = freeze_one(conf, "1:delivered", loga, logb, &b, &part, &off, &epoch, &n, &ev);
    ck_assert_int_gt(epoch, 0);
    char key[64];
    snprintf(key, sizeof(key), "circmon:{%d}:epoch", (int)part);
    double end = now_s() + 60;
    while (redis_int(key) <= epoch) {
        ck_assert_msg(now_s() < end, "partition %d not taken by B", (int)part);
        nap_ms(5);
    }
    thaw_and_leave(a, conf, loga, n, b);
    /* On waking, A either sends its apply first (refused for its epoch) or
     * meets the group's revoke first and drops the batch: which comes first
     * is the scheduler's. Either way it applied nothing after it froze. What
     * it folded before (batches of other partitions without dead letters)
     * is in the hook's line. */
    char line[4096], stopped[96];
    ck_assert(line_with(loga, "test hook: stopping myself: partition", line, sizeof(line)));
    const char *f = strstr(line, " events folded so far");
    ck_assert_ptr_nonnull(f);
    while (f > line && f[-1] >= '0' && f[-1] <= '9')
        f--;
    unsigned long long folded = strtoull(f, NULL, 10);
    snprintf(stopped, sizeof(stopped), "stopped: %llu events folded,", folded);
    ck_assert_msg(count_in_file(loga, "apply refused: owner epoch") >= 1 ||
                      count_in_file(loga, stopped) == 1,
                  "the deposed owner applied its batch: %llu events folded when it froze, "
                  "more when it stopped (%s)",
                  folded, loga);
    long want = compare(conf, ev);
    kill(b, SIGTERM);
    ck_assert_int_ge(wait_pid(b, 30), 0);
    check_dead_letters(conf, want);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("fence");
    TCase *tc = tcase_create("store");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_epoch_in_the_compare_and_set);
    tcase_add_test(tc, test_delivery_timeout_below_session);
    suite_add_tcase(s, tc);

    tc = tcase_create("freeze");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, test_freeze_with_dead_letters_in_flight);
    tcase_add_test(tc, test_freeze_before_the_apply);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
