/* cm_svc.h - the services of the integration suites, header only: a
 * redis-server on a unix socket in the suite's directory, a circmon-broker
 * (which binds a loopback port itself and prints it), Prometheus and
 * Alertmanager, a reader of a Kafka topic, a tiny HTTP GET, the suite's
 * directory with its paths, and file and stream probes. Built on
 * cm_proc.h: every service is a recorded child, killed by svc_dir_remove()
 * (the teardown) whatever happened. Waits poll with a deadline; every
 * failure fails the test with what went wrong. The suite that includes it
 * owns the state below. */
#ifndef CM_SVC_H
#define CM_SVC_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "circmon/config.h"
#include "circmon/framing.h"
#include "circmon/store.h"
#include "cm_proc.h"

static CMP_UNUSED char redis_sock[300]; /* dir/redis.sock, set by redis_start() */
static CMP_UNUSED pid_t redis_pid = -1;
static CMP_UNUSED pid_t broker_pid = -1;
static CMP_UNUSED char brokers[256]; /* host:port printed by circmon-broker */

/* ------------------------------------------------------------ services */

/* Kills (SIGKILL) and reaps every recorded child. */
static CMP_UNUSED void kill_all(void)
{
    while (npids > 0) {
        pid_t p = pids[npids - 1];
        kill(p, SIGKILL);
        waitpid(p, NULL, 0);
        npids--;
    }
}

/* A connection to redis_sock (1 s timeout), or NULL. The caller frees it. */
static CMP_UNUSED redisContext *redis_conn(void)
{
    struct timeval tv = {1, 0};
    redisContext *c = redisConnectUnixWithTimeout(redis_sock, tv);
    if (c && c->err) {
        redisFree(c);
        return NULL;
    }
    return c;
}

/* Starts redis-server on the unix socket dir/redis.sock (redis_sock), TCP
 * off, data in dir/redis (aof: append-only, fsync always), and waits up to
 * 15 s for its PING. Fails the test if it does not answer. */
static CMP_UNUSED void redis_start(int aof)
{
    char rdir[300], log[300];
    snprintf(redis_sock, sizeof(redis_sock), "%s/redis.sock", dir);
    ck_assert_msg(strlen(redis_sock) < 100, "socket path too long: %s", redis_sock);
    snprintf(rdir, sizeof(rdir), "%s/redis", dir);
    snprintf(log, sizeof(log), "%s/redis.log", dir);
    mkdir(rdir, 0755);
    char *argv[] = {"redis-server", "--port", "0", "--unixsocket", redis_sock,
                    "--unixsocketperm", "700", "--save", "",
                    "--appendonly", aof ? "yes" : "no", "--appendfsync", "always",
                    "--daemonize", "no", "--dir", rdir, NULL};
    redis_pid = spawn(argv, log, log, NULL, NULL);
    double end = now_s() + 15;
    for (;;) {
        redisContext *c = redis_conn();
        if (c) {
            redisReply *r = redisCommand(c, "PING");
            int ok = r && r->type == REDIS_REPLY_STATUS;
            if (r)
                freeReplyObject(r);
            redisFree(c);
            if (ok)
                return;
        }
        ck_assert_msg(now_s() < end, "redis-server did not start");
        ck_assert_msg(alive(redis_pid), "redis-server exited (see %s)", log);
        nap_ms(20);
    }
}

/* Stops redis-server (SIGTERM, so that it writes what it must). */
static CMP_UNUSED void redis_stop(void)
{
    kill(redis_pid, SIGTERM);
    ck_assert_int_ge(wait_pid(redis_pid, 15), 0);
    redis_pid = -1;
}

/* Starts circmon-broker with the topics circmon.events,
 * circmon.events.dlq and extra_topic (when not NULL) of parts partitions;
 * its address into brokers (15 s at most, else the test fails). Its stderr
 * goes to dir/broker.log. */
static CMP_UNUSED void broker_start_with(int parts, const char *extra_topic)
{
    char path[600], nparts[16], log[300];
    int fd;
    size_t got = 0;
    cm_bin_path(path, sizeof(path), "circmon-broker");
    snprintf(nparts, sizeof(nparts), "%d", parts);
    snprintf(log, sizeof(log), "%s/broker.log", dir);
    char *argv[] = {path, "--partitions", nparts, "--topic", "circmon.events", "--topic",
                    "circmon.events.dlq", extra_topic ? "--topic" : NULL, (char *)extra_topic,
                    NULL};
    broker_pid = spawn(argv, NULL, log, &fd, NULL);
    while (got < sizeof(brokers) - 1) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        ck_assert_msg(poll(&pfd, 1, 15000) > 0, "circmon-broker did not print its address");
        ck_assert_int_eq(read(fd, brokers + got, 1), 1);
        if (brokers[got] == '\n')
            break;
        got++;
    }
    brokers[got] = '\0';
    close(fd);
}

/* broker_start_with(parts, NULL). */
static CMP_UNUSED void broker_start(int parts)
{
    broker_start_with(parts, NULL);
}

/* Starts prometheus-alertmanager on 127.0.0.1:port (no cluster), routing
 * to a receiver that sends nothing; data and log in dir. */
static CMP_UNUSED pid_t alertmanager_start(int port)
{
    char path[300], log[300], a_cfg[320], a_listen[64], a_store[320];
    snprintf(path, sizeof path, "%s/alertmanager.yml", dir);
    FILE *fp = fopen(path, "w");
    ck_assert_msg(fp != NULL, "cannot write %s: %s", path, strerror(errno));
    fputs("route:\n  receiver: none\n  group_wait: 1s\nreceivers:\n  - name: none\n", fp);
    ck_assert_int_eq(fclose(fp), 0);
    snprintf(a_cfg, sizeof a_cfg, "--config.file=%s", path);
    snprintf(a_listen, sizeof a_listen, "--web.listen-address=127.0.0.1:%d", port);
    snprintf(a_store, sizeof a_store, "--storage.path=%s/am", dir);
    snprintf(log, sizeof log, "%s/alertmanager.log", dir);
    char *argv[] = {"prometheus-alertmanager", a_cfg, a_listen, a_store,
                    "--cluster.listen-address=", NULL};
    return spawn(argv, log, log, NULL, NULL);
}

/* Starts prometheus on 127.0.0.1:port with config/prometheus/circmon.rules.yml,
 * scraping 127.0.0.1:target every second and alerting the Alertmanager on
 * 127.0.0.1:am_port; data and log in dir. */
static CMP_UNUSED pid_t prometheus_rules_start(int port, int am_port, int target)
{
    char path[300], log[300], p_cfg[320], p_listen[64], p_store[320];
    snprintf(path, sizeof path, "%s/prometheus.yml", dir);
    FILE *fp = fopen(path, "w");
    ck_assert_msg(fp != NULL, "cannot write %s: %s", path, strerror(errno));
    fprintf(fp, "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                "rule_files:\n  - %s/config/prometheus/circmon.rules.yml\n"
                "alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['127.0.0.1:%d']\n"
                "scrape_configs:\n  - job_name: circmond\n    static_configs:\n"
                "      - targets: ['127.0.0.1:%d']\n", top(), am_port, target);
    ck_assert_int_eq(fclose(fp), 0);
    snprintf(p_cfg, sizeof p_cfg, "--config.file=%s", path);
    snprintf(p_listen, sizeof p_listen, "--web.listen-address=127.0.0.1:%d", port);
    snprintf(p_store, sizeof p_store, "--storage.tsdb.path=%s/tsdb", dir);
    snprintf(log, sizeof log, "%s/prometheus.log", dir);
    char *argv[] = {"prometheus", p_cfg, p_listen, p_store, NULL};
    return spawn(argv, log, log, NULL, NULL);
}

/* A consumer (in group, committing nothing) of partitions 0..parts-1 of
 * topic on brokers, from their beginning, that reports each partition's
 * end (enable.partition.eof). The caller closes and destroys it. */
static CMP_UNUSED rd_kafka_t *topic_reader(const char *topic, int parts, const char *group)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    ck_assert_ptr_nonnull(conf);
    ck_assert(rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err, sizeof(err)) ==
              RD_KAFKA_CONF_OK);
    ck_assert(rd_kafka_conf_set(conf, "enable.partition.eof", "true", err, sizeof(err)) ==
              RD_KAFKA_CONF_OK);
    ck_assert(rd_kafka_conf_set(conf, "group.id", group, err, sizeof(err)) == RD_KAFKA_CONF_OK);
    ck_assert(rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof(err)) ==
              RD_KAFKA_CONF_OK);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    ck_assert_msg(rk != NULL, "%s", err);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(parts);
    ck_assert_ptr_nonnull(l);
    for (int i = 0; i < parts; i++)
        rd_kafka_topic_partition_list_add(l, topic, i)->offset = RD_KAFKA_OFFSET_BEGINNING;
    ck_assert_int_eq(rd_kafka_assign(rk, l), 0);
    rd_kafka_topic_partition_list_destroy(l);
    return rk;
}

/* The next message of rk, a topic_reader of topic's parts partitions (the
 * caller destroys it), or NULL once every partition reported its end
 * (*eof counts them; start it at 0). The test fails on an error message
 * or when the end is not reached by end (now_s()). */
static CMP_UNUSED rd_kafka_message_t *topic_next(rd_kafka_t *rk, const char *topic, int parts,
                                                 int *eof, double end)
{
    while (*eof < parts) {
        ck_assert_msg(now_s() < end, "reading %s did not reach its end in time", topic);
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            ++*eof;
            rd_kafka_message_destroy(m);
            continue;
        }
        ck_assert_msg(!m->err, "reading %s: %s", topic, rd_kafka_message_errstr(m));
        return m;
    }
    return NULL;
}

/* ------------------------------------------------------------ HTTP */

/* GET path from 127.0.0.1:port (HTTP/1.0, closed by the server) into buf
 * (cap bytes, NUL-terminated): status line, headers and body; waits at
 * most 5 s for each read. Returns the bytes read, or -1 when nobody
 * listens or the request cannot be sent. */
static CMP_UNUSED int http_get_raw(int port, const char *path, char *buf, size_t cap)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        close(fd);
        return -1;
    }
    char req[512];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
    if (n < 0 || (size_t)n >= sizeof req || write(fd, req, (size_t)n) != n) {
        close(fd);
        return -1;
    }
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    size_t got = 0;
    while (got + 1 < cap && poll(&pfd, 1, 5000) > 0) {
        ssize_t r = read(fd, buf + got, cap - 1 - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    buf[got] = '\0';
    return (int)got;
}

/* Polls the Alertmanager on 127.0.0.1:port (90 s at most, while am and
 * prom run) until its CircmonSchemeAlert of alert for scheme arrives; the
 * last answer stays in buf (cap bytes). */
static CMP_UNUSED void alertmanager_wait(int port, const char *scheme, const char *alert,
                                         pid_t am, pid_t prom, char *buf, size_t cap)
{
    char want_s[200], want_a[200];
    snprintf(want_s, sizeof want_s, "\"scheme\":\"%s\"", scheme);
    snprintf(want_a, sizeof want_a, "\"alert\":\"%s\"", alert);
    double end = now_s() + 90;
    for (;;) {
        ck_assert_msg(alive(am), "alertmanager exited (logs in %s)", dir);
        ck_assert_msg(alive(prom), "prometheus exited (logs in %s)", dir);
        if (http_get_raw(port, "/api/v2/alerts?filter=alertname%3D%22CircmonSchemeAlert%22", buf,
                         cap) > 0 &&
            strstr(buf, " 200 ") && strstr(buf, want_s) && strstr(buf, want_a))
            return;
        ck_assert_msg(now_s() < end, "no CircmonSchemeAlert in Alertmanager after 90 s (logs in %s): %.2000s",
                      dir, buf);
        nap_ms(200); /* polling an outside service */
    }
}

/* ------------------------------------------------------------ directory */

static CMP_UNUSED char *paths[512]; /* made by path_in, freed by svc_dir_remove */
static CMP_UNUSED int npaths;

/* Puts the path of <prog> (cm_bin.h: $CM_BIN, else $CM_TOP/bin) into buf
 * (cap bytes); the test fails unless CM_TOP is set and the program is built. */
static CMP_UNUSED void svc_bin_needed(const char *prog, char *buf, size_t cap)
{
    const char *t = getenv("CM_TOP");
    ck_assert_msg(t && *t, "CM_TOP is not set (the repository top)");
    cm_bin_path(buf, cap, prog);
    ck_assert_msg(access(buf, X_OK) == 0, "%s is missing: build it first", buf);
}

/* Makes dir, $TMPDIR/<name>.XXXXXX (default /tmp); no child recorded yet. */
static CMP_UNUSED void svc_dir_make(const char *name)
{
    const char *t = getenv("TMPDIR");
    snprintf(dir, sizeof(dir), "%s/%s.XXXXXX", t && *t ? t : "/tmp", name);
    ck_assert_ptr_nonnull(mkdtemp(dir));
    npids = 0;
}

/* The teardown: kills every child, frees the paths, removes dir (unless
 * CM_KEEP_TMP is set). */
static CMP_UNUSED void svc_dir_remove(void)
{
    char cmd[400];
    kill_all();
    while (npaths > 0)
        free(paths[--npaths]);
    if (!getenv("CM_KEEP_TMP")) {
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            fprintf(stderr, "cannot remove %s\n", dir);
    }
}

/* dir/name, valid until the teardown. */
static CMP_UNUSED char *path_in(const char *name)
{
    char *p = malloc(strlen(dir) + strlen(name) + 2);
    ck_assert_ptr_nonnull(p);
    ck_assert_int_lt(npaths, 512);
    sprintf(p, "%s/%s", dir, name);
    return paths[npaths++] = p;
}

/* Whether file p holds the text needle on one line (0 if not written yet). */
static CMP_UNUSED int file_has(const char *p, const char *needle)
{
    FILE *fp = fopen(p, "r");
    if (!fp)
        return 0;
    char line[4096];
    int found = 0;
    while (!found && fgets(line, sizeof(line), fp))
        found = strstr(line, needle) != NULL;
    fclose(fp);
    return found;
}

/* How many lines of file p hold needle (0 if not written yet). */
static CMP_UNUSED int count_in_file(const char *p, const char *needle)
{
    FILE *fp = fopen(p, "r");
    if (!fp)
        return 0;
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof(line), fp))
        n += strstr(line, needle) != NULL;
    fclose(fp);
    return n;
}

/* The wall clock in ms (what circmond stamps its figures with). */
static CMP_UNUSED int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The JSON document in file p (the test fails if it is not one). */
static CMP_UNUSED json_t *load_json(const char *p)
{
    json_error_t e;
    json_t *j = json_load_file(p, 0, &e);
    ck_assert_msg(j != NULL, "%s: %s", p, e.text);
    return j;
}

/* The whole file path (malloc'd, NUL-terminated; its length into *len when
 * len is not NULL). The caller frees it. */
static CMP_UNUSED char *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    ck_assert_msg(fp != NULL, "cannot open %s: %s", path, strerror(errno));
    size_t cap = 4096, n = 0;
    char *s = malloc(cap);
    ck_assert_ptr_nonnull(s);
    size_t r;
    while ((r = fread(s + n, 1, cap - n - 1, fp)) > 0) {
        n += r;
        if (cap - n < 2) {
            cap *= 2;
            s = realloc(s, cap);
            ck_assert_ptr_nonnull(s);
        }
    }
    fclose(fp);
    s[n] = 0;
    if (len)
        *len = n;
    return s;
}

/* ------------------------------------------------------------ the stream */

/* How many framed records file in holds. */
static CMP_UNUSED long count_records(const char *in)
{
    FILE *fi = fopen(in, "rb");
    struct cm_frame_reader fr;
    const uint8_t *data;
    size_t len;
    long n = 0;
    ck_assert_msg(fi != NULL, "cannot open %s: %s", in, strerror(errno));
    cm_frame_reader_init(&fr, fi);
    while (cm_frame_read(&fr, &data, &len) == 1)
        n++;
    cm_frame_reader_free(&fr);
    fclose(fi);
    return n;
}

/* The sum of the positions stored in the Redis of configuration conf (the
 * records folded), or -1 while they cannot be read (Redis restarting). */
static CMP_UNUSED int64_t stored_sum(const char *conf)
{
    struct cm_config cfg = {0};
    char err[512];
    int32_t *parts = NULL;
    int64_t *pos = NULL, sum = 0;
    size_t n = 0;
    ck_assert_msg(cm_config_load(&cfg, conf, err, sizeof(err)) == 0, "%s", err);
    if (cm_store_read_positions(&cfg, &parts, &pos, &n, err, sizeof(err)) == 0) {
        for (size_t i = 0; i < n; i++)
            sum += pos[i];
        free(parts);
        free(pos);
    } else {
        sum = -1;
    }
    cm_config_free(&cfg);
    return sum;
}

#endif
