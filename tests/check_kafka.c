/* check_kafka.c - circmon-broker, circmonctl publish and the Kafka helpers,
 * against a real circmon-broker process. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <check.h>
#include <librdkafka/rdkafka.h>

#include "circmon/config.h"
#include "circmon/framing.h"
#include "circmon/kafka.h"
#include "circmon/v1/events.pb-c.h"
#include "cm_bin.h"

#define N_PARTS 4
#define T_EVENTS "circmon.events"
#define T_DLQ "circmon.events.dlq"
#define T_TRUNC "check.trunc"

/* One broker per test case, started in the parent (unchecked fixture) so
 * that it outlives a failing test and is stopped by the teardown. */
static pid_t broker_pid = -1;
static pid_t owner_pid = -1; /* the process that started the broker */
static char bootstrap[256];
static char tmpdir[256];
static int group_seq;

/* Starts circmon-broker (cm_bin.h) with args and reads its bootstrap line
 * (the broker prints it once ready). Returns the pid, or -1. */
static pid_t broker_start(char *const extra[], char *line, size_t linesz)
{
    char path[512];
    char *argv[16];
    int fds[2], n = 0;
    pid_t pid;
    size_t got = 0;

    cm_bin_path(path, sizeof(path), "circmon-broker");
    argv[n++] = path;
    for (int i = 0; extra[i] && n < 15; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    if (pipe(fds))
        return -1;
    pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]);
        close(fds[1]);
        execv(path, argv);
        fprintf(stderr, "exec %s: %s\n", path, strerror(errno));
        _exit(127);
    }
    close(fds[1]);
    /* bounded wait for the line: a broker that never gets ready fails the test */
    while (got < linesz - 1) {
        struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
        ssize_t r;

        if (poll(&pfd, 1, 15000) <= 0)
            break;
        r = read(fds[0], line + got, 1);
        if (r <= 0)
            break;
        if (line[got] == '\n') {
            line[got] = '\0';
            close(fds[0]);
            return pid;
        }
        got++;
    }
    close(fds[0]);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

static void broker_stop(void)
{
    if (broker_pid > 0 && getpid() == owner_pid) {
        kill(broker_pid, SIGTERM);
        waitpid(broker_pid, NULL, 0);
        broker_pid = -1;
    }
}

static void rm_tmpdir(void)
{
    char cmd[300];

    if (tmpdir[0] && getpid() == owner_pid) {
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0)
            fprintf(stderr, "cannot remove %s\n", tmpdir);
        tmpdir[0] = '\0';
    }
}

/* atexit: a crash of the runner between setup and teardown still stops the
 * broker. Forked test children do not own it, so they leave it alone. */
static void cleanup_at_exit(void)
{
    broker_stop();
    rm_tmpdir();
}

static void setup_broker(void)
{
    char parts[16];
    char *args[] = {"--partitions", parts, "--topic", T_EVENTS, "--topic", T_DLQ,
                    "--topic", T_TRUNC, NULL};
    static int registered;
    const char *t = getenv("TMPDIR");

    owner_pid = getpid();
    if (!registered++)
        atexit(cleanup_at_exit);
    snprintf(parts, sizeof(parts), "%d", N_PARTS);
    snprintf(tmpdir, sizeof(tmpdir), "%s/check_kafka.XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(tmpdir)) {
        fprintf(stderr, "mkdtemp: %s\n", strerror(errno));
        abort();
    }
    broker_pid = broker_start(args, bootstrap, sizeof(bootstrap));
    if (broker_pid < 0) {
        fprintf(stderr, "cannot start %s/circmon-broker\n", cm_bin_dir());
        abort();
    }
}

static void teardown_broker(void)
{
    broker_stop();
    rm_tmpdir();
}

/* --- events ------------------------------------------------------------ */

struct rec {
    uint8_t buf[256];
    size_t len;
    char migrant[32]; /* "" when undecodable */
    int seq;          /* order of the migrant's events in the file */
    int seen;
};

/* Fills recs with n valid events over m migrants, then one undecodable
 * record; returns the count. */
static int make_events(struct rec *recs, int n, int m)
{
    int i;

    for (i = 0; i < n; i++) {
        Circmon__V1__Event ev = CIRCMON__V1__EVENT__INIT;
        Circmon__V1__Exit ex = CIRCMON__V1__EXIT__INIT;
        char eid[32];

        snprintf(eid, sizeof(eid), "ev-%d", i);
        snprintf(recs[i].migrant, sizeof(recs[i].migrant), "M%04d", i % m);
        ev.event_id = eid;
        ev.migrant_id = recs[i].migrant;
        ev.occurred_at = 1700000000 + i;
        ex.member_state = "AT";
        ex.border_point = "VIE";
        ev.body_case = CIRCMON__V1__EVENT__BODY_EXIT;
        ev.exit = &ex;
        recs[i].len = circmon__v1__event__get_packed_size(&ev);
        ck_assert_uint_le(recs[i].len, sizeof(recs[i].buf));
        circmon__v1__event__pack(&ev, recs[i].buf);
        recs[i].seq = i;
        recs[i].seen = 0;
    }
    /* field 1 with wire type 7: no decoder accepts it */
    memcpy(recs[i].buf, "\x0f\xff\xfe garbage", 11);
    recs[i].len = 11;
    recs[i].migrant[0] = '\0';
    recs[i].seq = i;
    recs[i].seen = 0;
    return n + 1;
}

static void write_events(const char *path, const struct rec *recs, int n, size_t cut)
{
    FILE *fp = fopen(path, "wb");

    ck_assert_ptr_nonnull(fp);
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(cm_frame_write(fp, recs[i].buf, recs[i].len), 0);
    ck_assert_int_eq(fclose(fp), 0);
    if (cut)
        ck_assert_int_eq(truncate(path, (off_t)cut), 0);
}

static void write_config(const char *path)
{
    FILE *fp = fopen(path, "w");

    ck_assert_ptr_nonnull(fp);
    fprintf(fp, "[kafka]\nbrokers = %s\ntopic = %s\n", bootstrap, T_EVENTS);
    ck_assert_int_eq(fclose(fp), 0);
}

/* Runs circmonctl (cm_bin.h) with args, its stderr into errpath; returns
 * its exit status. */
static int run_ctl(char *const args[], const char *errpath)
{
    char path[512];
    char *argv[16];
    int n = 0, st;
    pid_t pid;

    cm_bin_path(path, sizeof(path), "circmonctl");
    argv[n++] = path;
    for (int i = 0; args[i] && n < 15; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int fd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0)
            dup2(fd, STDERR_FILENO);
        execv(path, argv);
        _exit(127);
    }
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert(WIFEXITED(st));
    return WEXITSTATUS(st);
}

static char *slurp(const char *path)
{
    static char buf[8192];
    FILE *fp = fopen(path, "r");
    size_t n;

    ck_assert_ptr_nonnull(fp);
    n = fread(buf, 1, sizeof(buf) - 1, fp);
    buf[n] = '\0';
    fclose(fp);
    return buf;
}

/* --- consuming ------------------------------------------------------------ */

static rd_kafka_t *consumer_new(void)
{
    char errstr[512], group[64];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk;

    snprintf(group, sizeof(group), "check-kafka-%ld-%d", (long)getpid(), group_seq++);
    ck_assert_int_eq(rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, errstr,
                                       sizeof(errstr)), RD_KAFKA_CONF_OK);
    ck_assert_int_eq(rd_kafka_conf_set(conf, "group.id", group, errstr, sizeof(errstr)),
                     RD_KAFKA_CONF_OK);
    ck_assert_int_eq(rd_kafka_conf_set(conf, "session.timeout.ms", "6000", errstr,
                                       sizeof(errstr)), RD_KAFKA_CONF_OK);
    ck_assert_int_eq(rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr,
                                       sizeof(errstr)), RD_KAFKA_CONF_OK);
    rd_kafka_conf_set_log_cb(conf, cm_kafka_log_cb);
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    ck_assert_msg(rk != NULL, "consumer: %s", errstr);
    rd_kafka_poll_set_consumer(rk);
    return rk;
}

/* Consumes topic from the beginning of every partition until want messages
 * arrived (or 20 s passed), handing each to fn. Returns the count. */
static int consume(const char *topic, int want, void (*fn)(const rd_kafka_message_t *, void *),
                   void *arg)
{
    rd_kafka_t *rk = consumer_new();
    rd_kafka_topic_partition_list_t *tp = rd_kafka_topic_partition_list_new(N_PARTS);
    time_t deadline = time(NULL) + 20;
    int got = 0;

    for (int p = 0; p < N_PARTS; p++)
        rd_kafka_topic_partition_list_add(tp, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    ck_assert_int_eq(rd_kafka_assign(rk, tp), 0);
    rd_kafka_topic_partition_list_destroy(tp);
    while (got < want && time(NULL) < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            rd_kafka_message_destroy(m);
            continue;
        }
        ck_assert_msg(!m->err, "consume %s: %s", topic, rd_kafka_message_errstr(m));
        fn(m, arg);
        got++;
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return got;
}

/* Sum of the high watermarks: the number of messages in topic. */
static int64_t topic_count(const char *topic)
{
    rd_kafka_t *rk = consumer_new();
    int64_t sum = 0, lo, hi;

    for (int p = 0; p < N_PARTS; p++) {
        ck_assert_int_eq(rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, 10000), 0);
        sum += hi - lo;
    }
    rd_kafka_destroy(rk);
    return sum;
}

struct match {
    struct rec *recs;
    int n;
    int last_seq[64]; /* per migrant number, -1 before the first */
    int32_t part[64]; /* partition of each migrant */
};

static void match_msg(const rd_kafka_message_t *m, void *arg)
{
    struct match *mt = arg;
    int i;

    for (i = 0; i < mt->n; i++)
        if (mt->recs[i].len == m->len && !memcmp(mt->recs[i].buf, m->payload, m->len))
            break;
    ck_assert_msg(i < mt->n, "message at [%" PRId32 "]@%" PRId64 " matches no record",
                  m->partition, m->offset);
    ck_assert_msg(!mt->recs[i].seen, "record %d delivered twice", i);
    mt->recs[i].seen = 1;
    if (!mt->recs[i].migrant[0]) {
        ck_assert_ptr_null(m->key);
        return;
    }
    ck_assert_uint_eq(m->key_len, strlen(mt->recs[i].migrant));
    ck_assert(!memcmp(m->key, mt->recs[i].migrant, m->key_len));
    {
        int mig = atoi(mt->recs[i].migrant + 1);
        ck_assert_int_lt(mig, 64);
        /* one migrant: one partition, in file order */
        if (mt->last_seq[mig] >= 0)
            ck_assert_int_eq(mt->part[mig], m->partition);
        ck_assert_int_gt(mt->recs[i].seq, mt->last_seq[mig]);
        mt->last_seq[mig] = mt->recs[i].seq;
        mt->part[mig] = m->partition;
    }
}

static void match_init(struct match *mt, struct rec *recs, int n)
{
    mt->recs = recs;
    mt->n = n;
    for (int i = 0; i < 64; i++)
        mt->last_seq[i] = -1;
}

/* --- tests ------------------------------------------------------------------ */

START_TEST(test_publish_roundtrip)
{
    static struct rec recs[301];
    struct match mt;
    char evpath[300], cfgpath[300], errpath[300];
    int n = make_events(recs, 300, 40);

    snprintf(evpath, sizeof(evpath), "%s/events.bin", tmpdir);
    snprintf(cfgpath, sizeof(cfgpath), "%s/circmon.ini", tmpdir);
    snprintf(errpath, sizeof(errpath), "%s/publish.err", tmpdir);
    write_events(evpath, recs, n, 0);
    write_config(cfgpath);

    {
        char *args[] = {"publish", "--config", cfgpath, evpath, NULL};
        int rc = run_ctl(args, errpath);
        ck_assert_msg(rc == 0, "publish exited %d: %s", rc, slurp(errpath));
    }
    ck_assert_ptr_nonnull(strstr(slurp(errpath), "301 delivered, 0 failed, 1 without key"));

    match_init(&mt, recs, n);
    ck_assert_int_eq(consume(T_EVENTS, n, match_msg, &mt), n);
    for (int i = 0; i < n; i++)
        ck_assert_msg(recs[i].seen, "record %d never arrived", i);
    ck_assert_int_eq(topic_count(T_EVENTS), n);
}
END_TEST

START_TEST(test_publish_truncated)
{
    static struct rec recs[21];
    struct match mt;
    char evpath[300], cfgpath[300], errpath[300], want[64];
    int n = make_events(recs, 20, 5) - 1; /* valid ones only */
    size_t whole = 0;

    for (int i = 0; i < 10; i++)
        whole += 1 + recs[i].len; /* each length fits one varint byte */
    snprintf(evpath, sizeof(evpath), "%s/trunc.bin", tmpdir);
    snprintf(cfgpath, sizeof(cfgpath), "%s/circmon.ini", tmpdir);
    snprintf(errpath, sizeof(errpath), "%s/trunc.err", tmpdir);
    write_events(evpath, recs, n, whole + 5); /* record 10 cut short */
    write_config(cfgpath);

    {
        char *args[] = {"publish", "--config", cfgpath, "--topic", T_TRUNC, evpath, NULL};
        ck_assert_int_eq(run_ctl(args, errpath), 1);
    }
    snprintf(want, sizeof(want), "byte offset %zu", whole);
    ck_assert_msg(strstr(slurp(errpath), want) != NULL, "expected '%s' in: %s", want,
                  slurp(errpath));

    match_init(&mt, recs, 10);
    ck_assert_int_eq(consume(T_TRUNC, 10, match_msg, &mt), 10);
    ck_assert_int_eq(topic_count(T_TRUNC), 10);
}
END_TEST

START_TEST(test_publish_usage)
{
    char errpath[300];
    char *noconf[] = {"publish", "x.bin", NULL};
    char *missing[] = {"publish", "--config", "/nonexistent/circmon.ini", "x.bin", NULL};

    snprintf(errpath, sizeof(errpath), "%s/usage.err", tmpdir);
    ck_assert_int_eq(run_ctl(noconf, errpath), 2);
    ck_assert_int_eq(run_ctl(missing, errpath), 1);
}
END_TEST

static int dr_count, dr_errs;

static void dlq_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    dr_count++;
    if (m->err)
        dr_errs++;
}

static void check_header(rd_kafka_headers_t *h, const char *name, const char *want)
{
    const void *v;
    size_t len;

    ck_assert_msg(rd_kafka_header_get_last(h, name, &v, &len) == 0, "no header %s", name);
    ck_assert_uint_eq(len, strlen(want));
    ck_assert_msg(!memcmp(v, want, len), "header %s: got '%.*s', want '%s'", name, (int)len,
                  (const char *)v, want);
}

static void dlq_msg(const rd_kafka_message_t *m, void *arg)
{
    rd_kafka_headers_t *h = NULL;
    int *n = arg;

    ck_assert_int_eq(rd_kafka_message_headers(m, &h), 0);
    if (m->key) {
        ck_assert_uint_eq(m->key_len, 5);
        ck_assert(!memcmp(m->key, "M0042", 5));
        ck_assert_uint_eq(m->len, 4);
        ck_assert(!memcmp(m->payload, "\x0f\xff\x00\x01", 4));
        check_header(h, CM_DLQ_HDR_REASON, "decode");
        check_header(h, CM_DLQ_HDR_SRC_TOPIC, T_EVENTS);
        check_header(h, CM_DLQ_HDR_SRC_PARTITION, "3");
        check_header(h, CM_DLQ_HDR_SRC_OFFSET, "1234567890123");
    } else {
        ck_assert_ptr_null(m->payload);
        check_header(h, CM_DLQ_HDR_REASON, "no_migrant_id");
        check_header(h, CM_DLQ_HDR_SRC_PARTITION, "0");
        check_header(h, CM_DLQ_HDR_SRC_OFFSET, "0");
    }
    (*n)++;
}

START_TEST(test_dlq_headers)
{
    struct cm_config cfg;
    char err[256];
    rd_kafka_conf_t *conf;
    rd_kafka_t *rk;
    uint8_t key[] = "M0042", val[] = {0x0f, 0xff, 0x00, 0x01};
    int seen = 0;

    ck_assert_int_eq(cm_config_defaults(&cfg), 0);
    free(cfg.brokers);
    cfg.brokers = strdup(bootstrap);
    conf = cm_kafka_conf_new(&cfg, err, sizeof(err));
    ck_assert_msg(conf != NULL, "%s", err);
    rd_kafka_conf_set_dr_msg_cb(conf, dlq_dr);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    ck_assert_msg(rk != NULL, "%s", err);

    /* the helper copies: scribbling over the buffers afterwards is harmless */
    ck_assert_int_eq(cm_dlq_send(rk, T_DLQ, key, 5, val, sizeof(val), "decode", T_EVENTS, 3,
                                 INT64_C(1234567890123)), 0);
    memset(key, 'x', sizeof(key));
    memset(val, 0, sizeof(val));
    ck_assert_int_eq(cm_dlq_send(rk, T_DLQ, NULL, 0, NULL, 0, "no_migrant_id", T_EVENTS, 0, 0),
                     0);
    ck_assert_int_eq(cm_dlq_send(rk, T_DLQ, NULL, 0, NULL, 0, NULL, T_EVENTS, 0, 0), -EINVAL);
    ck_assert_int_eq(rd_kafka_flush(rk, 10000), 0);
    ck_assert_int_eq(dr_count, 2);
    ck_assert_int_eq(dr_errs, 0);
    rd_kafka_destroy(rk);
    cm_config_free(&cfg);

    ck_assert_int_eq(consume(T_DLQ, 2, dlq_msg, &seen), 2);
    ck_assert_int_eq(seen, 2);
}
END_TEST

struct seen {
    int n;
    int32_t part[8];
    int64_t off[8];
};

static int on_seen(int32_t part, int64_t off, void *ud)
{
    struct seen *s = ud;
    ck_assert_int_lt(s->n, 8);
    s->part[s->n] = part;
    s->off[s->n++] = off;
    return 0;
}

static int stop_at_first(int32_t part, int64_t off, void *ud)
{
    (void)part;
    (void)off;
    (void)ud;
    return 42;
}

START_TEST(test_dlq_scan)
{
    struct cm_config cfg;
    char err[256];
    rd_kafka_conf_t *conf;
    rd_kafka_t *prod, *rd;
    struct seen s = {0};
    int64_t base = -1, end = -1;

    ck_assert_int_eq(cm_config_defaults(&cfg), 0);
    free(cfg.brokers);
    cfg.brokers = strdup(bootstrap);
    rd = consumer_new();
    /* where the partition stands now (other tests write to the topic too) */
    ck_assert_int_eq(cm_dlq_scan(rd, T_DLQ, 2, INT64_MAX, T_EVENTS, 10000, on_seen, &s, &base,
                                 err, sizeof(err)), 0);
    ck_assert_int_eq(s.n, 0);
    ck_assert_int_ge(base, 0);

    conf = cm_kafka_conf_new(&cfg, err, sizeof(err));
    ck_assert_msg(conf != NULL, "%s", err);
    prod = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    ck_assert_msg(prod != NULL, "%s", err);
    ck_assert_int_eq(cm_dlq_send_opaque(prod, T_DLQ, "a", 1, "x", 1, "decode", T_EVENTS, 5, 17,
                                        2, NULL), 0);
    ck_assert_int_eq(cm_dlq_send_opaque(prod, T_DLQ, "b", 1, "y", 1, "decode", "other.topic",
                                        5, 18, 2, NULL), 0);
    ck_assert_int_eq(cm_dlq_send_opaque(prod, T_DLQ, "c", 1, "z", 1, "too_late", T_EVENTS, 6,
                                        INT64_C(9000000000), 2, NULL), 0);
    ck_assert_int_eq(rd_kafka_flush(prod, 10000), 0);
    /* a message without our headers is skipped */
    ck_assert_int_eq(rd_kafka_producev(prod, RD_KAFKA_V_TOPIC(T_DLQ), RD_KAFKA_V_PARTITION(2),
                                       RD_KAFKA_V_VALUE("w", 1), RD_KAFKA_V_END), 0);
    ck_assert_int_eq(rd_kafka_flush(prod, 10000), 0);
    rd_kafka_destroy(prod);

    /* from the mark: ours only, in order; end is the new high watermark */
    ck_assert_int_eq(cm_dlq_scan(rd, T_DLQ, 2, base, T_EVENTS, 10000, on_seen, &s, &end, err,
                                 sizeof(err)), 0);
    ck_assert_int_eq(end, base + 4);
    ck_assert_int_eq(s.n, 2);
    ck_assert_int_eq(s.part[0], 5);
    ck_assert_int_eq(s.off[0], 17);
    ck_assert_int_eq(s.part[1], 6);
    ck_assert(s.off[1] == INT64_C(9000000000));
    /* from later on: only what lies there */
    s.n = 0;
    ck_assert_int_eq(cm_dlq_scan(rd, T_DLQ, 2, base + 2, T_EVENTS, 10000, on_seen, &s, &end,
                                 err, sizeof(err)), 0);
    ck_assert_int_eq(s.n, 1);
    ck_assert_int_eq(s.part[0], 6);
    /* the callback can stop the scan */
    ck_assert_int_eq(cm_dlq_scan(rd, T_DLQ, 2, base, T_EVENTS, 10000, stop_at_first, NULL,
                                 &end, err, sizeof(err)), 42);
    /* an unknown partition is an error with a message */
    ck_assert_int_lt(cm_dlq_scan(rd, T_DLQ, 99, 0, T_EVENTS, 2000, on_seen, &s, &end, err,
                                 sizeof(err)), 0);
    ck_assert_ptr_nonnull(strstr(err, T_DLQ));
    rd_kafka_consumer_close(rd);
    rd_kafka_destroy(rd);
    cm_config_free(&cfg);
}
END_TEST

START_TEST(test_broker_lifecycle)
{
    char line[256], pfile[300], *args[] = {"--partitions", "2", "--port-file", pfile, NULL};
    int st;
    pid_t pid;
    char *content;

    snprintf(pfile, sizeof(pfile), "%s/broker.port", tmpdir);
    pid = broker_start(args, line, sizeof(line));
    ck_assert_int_gt(pid, 0);
    ck_assert_ptr_nonnull(strstr(line, "127.0.0.1:"));
    content = slurp(pfile);
    ck_assert_uint_eq(strlen(content), strlen(line) + 1);
    ck_assert(!strncmp(content, line, strlen(line)));
    ck_assert_int_eq(kill(pid, SIGTERM), 0);
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert(WIFEXITED(st));
    ck_assert_int_eq(WEXITSTATUS(st), 0);
    ck_assert_int_ne(access(pfile, F_OK), 0);

    {
        char *bad[] = {"--partitions", "0", NULL};
        pid = broker_start(bad, line, sizeof(line));
        ck_assert_int_eq(pid, -1);
    }
}
END_TEST

START_TEST(test_conf_errors)
{
    struct cm_config cfg;
    struct cm_kv kv[2];
    char err[256];
    rd_kafka_conf_t *conf;

    ck_assert_int_eq(cm_config_defaults(&cfg), 0);
    cfg.rdkafka = kv;
    cfg.n_rdkafka = 1;

    kv[0] = (struct cm_kv){"linger.ms", "soon", 0};
    ck_assert_ptr_null(cm_kafka_conf_new(&cfg, err, sizeof(err)));
    ck_assert_msg(strstr(err, "rdkafka.linger.ms") != NULL, "%s", err);

    kv[0] = (struct cm_kv){"no.such.property", "1", 0};
    ck_assert_ptr_null(cm_kafka_conf_new(&cfg, err, sizeof(err)));
    ck_assert_msg(strstr(err, "rdkafka.no.such.property") != NULL, "%s", err);

    /* read from a file: the error names the file and the line */
    cfg.path = strdup("/etc/x.conf");
    kv[0] = (struct cm_kv){"no.such.property", "1", 7};
    ck_assert_ptr_null(cm_kafka_conf_new(&cfg, err, sizeof(err)));
    ck_assert_str_eq(err, "/etc/x.conf:7: [kafka] rdkafka.no.such.property: unknown librdkafka "
                          "property");

    /* a valid pass-through wins over the program's default */
    kv[0] = (struct cm_kv){"linger.ms", "42", 0};
    conf = cm_kafka_conf_new(&cfg, err, sizeof(err));
    ck_assert_msg(conf != NULL, "%s", err);
    ck_assert_int_eq(cm_kafka_conf_default(conf, &cfg, "linger.ms", "5", err, sizeof(err)), 0);
    ck_assert_int_eq(cm_kafka_conf_default(conf, &cfg, "batch.num.messages", "77", err,
                                           sizeof(err)), 0);
    {
        char v[64];
        size_t vlen = sizeof(v);
        ck_assert_int_eq(rd_kafka_conf_get(conf, "linger.ms", v, &vlen), RD_KAFKA_CONF_OK);
        ck_assert_str_eq(v, "42");
        vlen = sizeof(v);
        ck_assert_int_eq(rd_kafka_conf_get(conf, "batch.num.messages", v, &vlen),
                         RD_KAFKA_CONF_OK);
        ck_assert_str_eq(v, "77");
        vlen = sizeof(v);
        ck_assert_int_eq(rd_kafka_conf_get(conf, "bootstrap.servers", v, &vlen),
                         RD_KAFKA_CONF_OK);
        ck_assert_str_eq(v, cfg.brokers);
    }
    rd_kafka_conf_destroy(conf);

    ck_assert(cm_kafka_prop_is_secret("sasl.password"));
    ck_assert(cm_kafka_prop_is_secret("ssl.key.password"));
    ck_assert(cm_kafka_prop_is_secret("ssl.key.pem"));
    ck_assert(cm_kafka_prop_is_secret("sasl.oauthbearer.client.secret"));
    ck_assert(!cm_kafka_prop_is_secret("sasl.username"));
    ck_assert(!cm_kafka_prop_is_secret("linger.ms"));

    cfg.rdkafka = NULL;
    cfg.n_rdkafka = 0;
    cm_config_free(&cfg);
}
END_TEST

static Suite *kafka_suite(void)
{
    Suite *s = suite_create("kafka");
    TCase *tc = tcase_create("broker");
    TCase *conf = tcase_create("conf");

    tcase_add_unchecked_fixture(tc, setup_broker, teardown_broker);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_publish_roundtrip);
    tcase_add_test(tc, test_publish_truncated);
    tcase_add_test(tc, test_publish_usage);
    tcase_add_test(tc, test_dlq_headers);
    tcase_add_test(tc, test_dlq_scan);
    tcase_add_test(tc, test_broker_lifecycle);
    suite_add_tcase(s, tc);
    tcase_add_test(conf, test_conf_errors);
    suite_add_tcase(s, conf);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(kafka_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
