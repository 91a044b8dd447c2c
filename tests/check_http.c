/* check_http.c - circmond's HTTP endpoint over real sockets, against a real redis-server and circmon-broker.
 *
 * Each test starts its own redis-server (on a unix socket), circmon-broker
 * and bin/circmond with [http] on a port below the ephemeral range (on a
 * taken port circmond logs "cannot listen": the test stops it and tries
 * another).
 * Figures are compared with `circmonctl replay` of the same stream; the
 * limits (slow clients, oversized headers, max_connections) are exercised
 * with raw sockets. Every child gets PR_SET_PDEATHSIG and the teardown kills
 * what is left. Synchronisation polls a condition with a deadline. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "circmon/config.h"
#include "circmon/framing.h"
#include "circmon/store.h"
#include "cm_svc.h"
#include "cm_test.h"

#define N_PARTS 4

static int http_port;
static pid_t daemon_pid = -1;

static void setup(void)
{
    svc_dir_make("check_http");
    redis_start(0);
    broker_start(N_PARTS);
}

static void teardown(void)
{
    svc_dir_remove();
}

/* ------------------------------------------------------------ circmond */

/* Writes a configuration with [http] on port and extra lines for [http]. */
static const char *write_conf(const char *redis, int port, const char *http_extra)
{
    const char *p = path_in("circmond.conf");
    FILE *fp = fopen(p, "w");
    ck_assert_ptr_nonnull(fp);
    fprintf(fp,
            "[circmon]\nbatch_size = 2000\nlog_level = debug\n"
            "[kafka]\nbrokers = %s\ngroup_id = g-http\nrdkafka.session.timeout.ms = 6000\n"
            "[redis]\nunix_socket = %s\ncommand_timeout_ms = 3000\nconnect_timeout_ms = 1000\n"
            "[scheme SAWP-ES]\ngrace_days = 7\n"
            "[http]\nlisten = 127.0.0.1\nport = %d\n%s",
            brokers, redis, port, http_extra ? http_extra : "");
    fclose(fp);
    return p;
}

/* A port below the ephemeral range (ip_local_port_range starts at 32768
 * here): an outgoing connection cannot take it between the choice and the
 * bind. */
static int pick_port(unsigned *seed)
{
    int lo = 20000, hi = 32000;
    FILE *fp = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    int a = 0, b = 0;
    if (fp) {
        if (fscanf(fp, "%d %d", &a, &b) == 2 && a > lo + 2000 && a <= 65535)
            hi = a - 1;
        fclose(fp);
    }
    return lo + (int)(rand_r(seed) % (unsigned)(hi - lo));
}

/* Starts circmond with [http] extra; retries on a taken port. Returns the
 * configuration's path; http_port is set. */
static const char *daemon_start(const char *redis, const char *extra)
{
    unsigned seed = (unsigned)getpid() ^ (unsigned)wall_ms();
    char path[600];
    cm_bin_path(path, sizeof(path), "circmond");
    for (int attempt = 0; attempt < 10; attempt++) {
        http_port = pick_port(&seed);
        const char *conf = write_conf(redis, http_port, extra);
        const char *log = path_in("circmond.log");
        unlink(log);
        char *argv[] = {path, "--config", (char *)conf, "--foreground", NULL};
        daemon_pid = spawn(argv, NULL, log, NULL, NULL);
        double end = now_s() + 20;
        for (;;) {
            if (file_has(log, "http endpoint at"))
                return conf;
            if (file_has(log, "cannot listen")) { /* the port is taken: another */
                kill(daemon_pid, SIGKILL);
                ck_assert_int_ge(wait_pid(daemon_pid, 10), 0);
                break;
            }
            ck_assert_msg(alive(daemon_pid), "circmond exited (see %s)", log);
            ck_assert_msg(now_s() < end, "circmond did not open its endpoint (see %s)", log);
            nap_ms(10);
        }
    }
    ck_abort_msg("no free port for circmond's endpoint in 10 tries");
    return NULL;
}

/* ------------------------------------------------------------ HTTP client */

static int tcp_connect(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)http_port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_ge(fd, 0);
    ck_assert_msg(connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0, "connect to %d: %s",
                  http_port, strerror(errno));
    return fd;
}

static void send_all(int fd, const char *s, size_t n)
{
    while (n) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        ck_assert_msg(w > 0, "send: %s", strerror(errno));
        s += w;
        n -= (size_t)w;
    }
}

/* Reads until the peer closes (within timeout_ms). Returns the bytes read
 * (malloc'd, NUL-terminated), *closed = 1 when it closed in time. */
static char *read_to_close(int fd, int timeout_ms, int *closed)
{
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    double end = now_s() + timeout_ms / 1000.0;
    ck_assert_ptr_nonnull(buf);
    *closed = 0;
    for (;;) {
        int left = (int)((end - now_s()) * 1000);
        if (left <= 0)
            break;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, left);
        if (r <= 0)
            break;
        if (len + 4096 + 1 > cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            ck_assert_ptr_nonnull(buf);
        }
        ssize_t n = recv(fd, buf + len, cap - len - 1, 0);
        if (n <= 0) {
            *closed = 1; /* EOF or reset */
            break;
        }
        len += (size_t)n;
    }
    buf[len] = '\0';
    return buf;
}

struct resp {
    int status;
    char *head; /* status line and headers */
    char *body;
    json_t *json; /* when the body is JSON */
};

static void resp_free(struct resp *r)
{
    free(r->head);
    if (r->json)
        json_decref(r->json);
    memset(r, 0, sizeof(*r));
}

/* One request (raw text), one answer (the connection closed after it). */
static struct resp http_raw(const char *req)
{
    struct resp r = {0};
    int fd = tcp_connect(), closed;
    send_all(fd, req, strlen(req));
    char *all = read_to_close(fd, 10000, &closed);
    close(fd);
    ck_assert_msg(closed, "no complete answer within 10 s to %.60s", req);
    if (!all[0]) { /* closed unanswered (max_connections) */
        r.head = all;
        r.body = all;
        return r;
    }
    char *sep = strstr(all, "\r\n\r\n");
    ck_assert_msg(sep && sscanf(all, "HTTP/1.%*d %d", &r.status) == 1, "not an HTTP answer: %.200s",
                  all);
    *sep = '\0';
    r.head = all;
    r.body = sep + 4;
    if (strstr(r.head, "application/json") && strncmp(req, "HEAD ", 5)) {
        json_error_t e;
        r.json = json_loads(r.body, 0, &e);
        ck_assert_msg(r.json != NULL, "not JSON (%s): %.200s", e.text, r.body);
    }
    return r;
}

static struct resp http_get(const char *path)
{
    char req[1024];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
             path);
    return http_raw(req);
}

static void expect_error(const char *req, int status)
{
    struct resp r = http_raw(req);
    ck_assert_msg(r.status == status, "%.40s: status %d, want %d", req, r.status, status);
    ck_assert_ptr_nonnull(r.json);
    ck_assert(json_is_string(json_object_get(r.json, "error")));
    ck_assert_int_eq(json_integer_value(json_object_get(r.json, "status")), status);
    resp_free(&r);
}

/* ------------------------------------------------------------ the stream */

static const char *gen_publish(const char *conf, int migrants, long *n)
{
    const char *ev = path_in("ev.bin");
    char m[16];
    snprintf(m, sizeof(m), "%d", migrants);
    char *g[] = {"--seed", "11", "--migrants", m, "--out", (char *)ev, NULL};
    ck_assert_int_eq(run_bin("circmon-gen", g, NULL, path_in("gen.log")), 0);
    *n = count_records(ev);
    char *p[] = {"publish", "--config", (char *)conf, (char *)ev, NULL};
    ck_assert_int_eq(run_bin("circmonctl", p, NULL, path_in("publish.log")), 0);
    return ev;
}

/* The totals of a /v1/status document agree with its partitions: "lag" is
 * the sum of the known lags of the partitions assigned here, "lag_unknown"
 * the number of those whose lag is not known (null). */
static void check_lag_totals(json_t *st)
{
    json_t *parts = json_object_get(st, "partitions");
    ck_assert(json_is_array(parts));
    json_int_t sum = 0, unknown = 0;
    for (size_t i = 0; i < json_array_size(parts); i++) {
        json_t *p = json_array_get(parts, i), *lag = json_object_get(p, "lag");
        if (!json_is_true(json_object_get(p, "assigned")))
            continue;
        if (json_is_integer(lag)) {
            sum += json_integer_value(lag);
        } else {
            ck_assert_msg(json_is_null(lag), "partition %zu: lag neither an integer nor null", i);
            unknown++;
        }
    }
    ck_assert(json_is_integer(json_object_get(st, "lag")));
    ck_assert(json_is_integer(json_object_get(st, "lag_unknown")));
    ck_assert_int_eq(json_integer_value(json_object_get(st, "lag")), sum);
    ck_assert_int_eq(json_integer_value(json_object_get(st, "lag_unknown")), unknown);
}

/* Waits until Redis holds every record and the endpoint serves figures read
 * after that. */
static void wait_figures_of_all(const char *conf, long total)
{
    double end = now_s() + 90;
    while (stored_sum(conf) != total) {
        ck_assert_msg(now_s() < end, "not caught up within 90 s");
        nap_ms(50);
    }
    int64_t caught = wall_ms();
    for (;;) {
        struct resp r = http_get("/v1/status");
        ck_assert_int_eq(r.status, 200);
        check_lag_totals(r.json);
        json_t *s = json_object_get(json_object_get(r.json, "figures"), "read_started_at_ms");
        int done = json_is_integer(s) && json_integer_value(s) > caught;
        resp_free(&r);
        if (done)
            return;
        ck_assert_msg(now_s() < end, "no figures read after the catch-up within 90 s");
        nap_ms(50);
    }
}

/* replay of ev as of as_of (a TIME of the CLI) into a JSON value. */
static json_t *replay(const char *conf, const char *ev, const char *as_of)
{
    const char *out = path_in("replay.json");
    char *a[] = {"replay", "--config", (char *)conf, "--as-of", (char *)as_of, "--format", "json",
                 (char *)ev, NULL};
    ck_assert_int_eq(run_bin("circmonctl", a, out, path_in("replay.log")), 0);
    return load_json(out);
}

static double metric(const char *text, const char *sample)
{
    size_t n = strlen(sample);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (!strncmp(p, sample, n) && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    }
    ck_abort_msg("no sample %s in /metrics", sample);
    return 0;
}

/* ------------------------------------------------------------ tests */

START_TEST(test_endpoints_equal_replay)
{
    setup();
    const char *conf = daemon_start(redis_sock, "refresh_ms = 200\n");
    long total;
    int64_t published_ms = wall_ms(); /* before the first CreateTime */
    const char *ev = gen_publish(conf, 3000, &total);
    wait_figures_of_all(conf, total);

    /* the cached document: exactly replay's as of the same instant */
    struct resp r = http_get("/v1/indicators");
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.head, "Content-Type: application/json"));
    json_t *as_of = json_object_get(r.json, "as_of");
    ck_assert(json_is_integer(as_of));
    char t[32];
    snprintf(t, sizeof(t), "%" JSON_INTEGER_FORMAT, json_integer_value(as_of));
    json_t *want = replay(conf, ev, t);
    ck_assert_msg(json_equal(r.json, want), "GET /v1/indicators differs from replay as of %s", t);
    json_decref(want);
    resp_free(&r);

    /* as_of in every form of the CLI */
    static const char *const forms[][2] = {{"2025-01-01", "2025-01-01"},
                                           {"2023-06-30T12:00:00Z", "2023-06-30T12:00:00Z"},
                                           {"2022-03-01T08:30", "2022-03-01T08:30"},
                                           {"1700000000", "1700000000"}};
    for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
        char path[128];
        snprintf(path, sizeof(path), "/v1/indicators?as_of=%s", forms[i][0]);
        r = http_get(path);
        ck_assert_int_eq(r.status, 200);
        want = replay(conf, ev, forms[i][1]);
        ck_assert_msg(json_equal(r.json, want), "%s differs from replay --as-of %s", path,
                      forms[i][1]);
        json_decref(want);
        resp_free(&r);
    }

    /* scheme filter: that scheme only, the same figures */
    want = replay(conf, ev, "2025-01-01");
    const char *sid;
    json_t *sv;
    int schemes = 0;
    json_object_foreach(json_object_get(want, "schemes"), sid, sv) {
        char path[400];
        snprintf(path, sizeof(path), "/v1/indicators?as_of=2025-01-01&scheme=%s", sid);
        r = http_get(path);
        ck_assert_int_eq(r.status, 200);
        json_t *got = json_object_get(r.json, "schemes");
        ck_assert_int_eq(json_object_size(got), 1);
        ck_assert(json_equal(json_object_get(got, sid), sv));
        ck_assert(json_equal(json_object_get(r.json, "data_quality"),
                             json_object_get(want, "data_quality")));
        resp_free(&r);
        schemes++;
    }
    ck_assert_int_ge(schemes, 2);
    r = http_get("/v1/indicators?scheme=NO-SUCH-SCHEME");
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(json_object_size(json_object_get(r.json, "schemes")), 0);
    resp_free(&r);
    json_decref(want);

    /* /healthz, /readyz */
    r = http_get("/healthz");
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(json_string_value(json_object_get(r.json, "status")), "ok");
    resp_free(&r);
    r = http_get("/readyz");
    ck_assert_int_eq(r.status, 200);
    ck_assert(json_is_true(json_object_get(r.json, "ready")));
    ck_assert_int_eq(json_array_size(json_object_get(r.json, "reasons")), 0);
    resp_free(&r);

    /* /v1/status: every partition, all assigned here, stored positions add up */
    r = http_get("/v1/status");
    ck_assert_int_eq(r.status, 200);
    json_t *parts = json_object_get(r.json, "partitions");
    ck_assert_int_eq(json_array_size(parts), N_PARTS);
    int64_t sum = 0;
    for (size_t i = 0; i < N_PARTS; i++) {
        json_t *p = json_array_get(parts, i);
        ck_assert_int_eq(json_integer_value(json_object_get(p, "partition")), (json_int_t)i);
        ck_assert(json_is_true(json_object_get(p, "assigned")));
        sum += json_integer_value(json_object_get(p, "stored_position"));
        ck_assert(json_is_integer(json_object_get(p, "high_watermark")));
        ck_assert_int_eq(json_integer_value(json_object_get(p, "lag")), 0);
    }
    ck_assert_int_eq(sum, total);
    ck_assert_int_eq(json_integer_value(json_object_get(r.json, "assigned_partitions")), N_PARTS);
    check_lag_totals(r.json);
    ck_assert_int_eq(json_integer_value(json_object_get(r.json, "lag_unknown")), 0);
    ck_assert(json_is_true(json_object_get(json_object_get(r.json, "redis"), "connected")));
    ck_assert(json_is_true(json_object_get(json_object_get(r.json, "kafka"), "topic_known")));
    ck_assert(json_is_true(json_object_get(r.json, "ready")));
    resp_free(&r);

    /* /v1/schemes: settings from the file, figures of the document */
    r = http_get("/v1/schemes");
    ck_assert_int_eq(r.status, 200);
    json_t *list = json_object_get(r.json, "schemes");
    ck_assert(json_is_array(list));
    ck_assert(json_is_false(json_object_get(r.json, "nationality_cohorts"))); /* the default */
    struct resp doc = http_get("/v1/indicators");
    int found_sawp = 0;
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *s = json_array_get(list, i);
        const char *id = json_string_value(json_object_get(s, "id"));
        ck_assert_ptr_nonnull(id);
        json_t *ds = json_object_get(json_object_get(doc.json, "schemes"), id);
        json_t *fig = json_object_get(s, "figures");
        ck_assert_int_eq(json_integer_value(json_object_get(fig, "expected_departures")),
                         ds ? json_integer_value(json_object_get(ds, "expected_departures")) : 0);
        if (!strcmp(id, "SAWP-ES")) {
            found_sawp = 1;
            ck_assert(json_is_true(json_object_get(s, "configured")));
            ck_assert_int_eq(
                json_integer_value(json_object_get(json_object_get(s, "settings"), "grace_days")), 7);
        }
    }
    ck_assert(found_sawp);
    resp_free(&doc);
    resp_free(&r);

    /* /metrics: the pipeline's counts add up to the stream */
    r = http_get("/metrics");
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.head, "Content-Type: text/plain; version=0.0.4"));
    double events = metric(r.body, "circmon_events_total{result=\"folded\"}") +
                    metric(r.body, "circmon_events_total{result=\"duplicate\"}") +
                    metric(r.body, "circmon_events_total{result=\"invalid\"}") +
                    metric(r.body, "circmon_events_total{result=\"too_late\"}") +
                    metric(r.body, "circmon_events_total{result=\"refused\"}");
    ck_assert_int_eq((long)events, total);
    ck_assert_int_eq((long)metric(r.body, "circmon_assigned_partitions"), N_PARTS);
    ck_assert_int_eq((long)metric(r.body, "circmon_ready"), 1);
    for (int i = 0; i < N_PARTS; i++) {
        char s[64];
        snprintf(s, sizeof(s), "circmon_partition_lag{partition=\"%d\"}", i);
        ck_assert_int_eq((long)metric(r.body, s), 0);
    }
    /* event-to-apply latency: one observation per folded event (duplicates
     * included, dead letters not), each between its CreateTime and now */
    double lat_n = metric(r.body, "circmon_event_apply_latency_seconds_count");
    double lat_sum = metric(r.body, "circmon_event_apply_latency_seconds_sum");
    ck_assert_int_eq((long)lat_n, (long)metric(r.body, "circmon_events_folded_total"));
    ck_assert_int_eq((long)lat_n, (long)(metric(r.body, "circmon_events_total{result=\"folded\"}") +
                                         metric(r.body, "circmon_events_total{result=\"duplicate\"}")));
    ck_assert_int_lt((long)lat_n, total); /* the stream has dead letters */
    ck_assert_int_eq((long)metric(r.body, "circmon_event_apply_latency_seconds_bucket{le=\"+Inf\"}"),
                     (long)lat_n);
    ck_assert_msg(lat_sum > 0 && lat_sum <= lat_n * (double)(wall_ms() - published_ms + 1) / 1000,
                  "latency sum %.3f s for %.0f events published %" PRId64 " ms ago", lat_sum,
                  lat_n, wall_ms() - published_ms);
    ck_assert(metric(r.body, "circmon_indicators_refresh_seconds_count") >= 1);
    ck_assert(metric(r.body, "process_resident_memory_bytes") > 0);
    ck_assert(metric(r.body, "circmon_indicators_as_of_seconds") > 0);
    resp_free(&r);

    /* HEAD: the headers only */
    r = http_raw("HEAD /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    ck_assert_int_eq(r.status, 200);
    resp_free(&r);
    teardown();
}
END_TEST

START_TEST(test_bad_requests)
{
    setup();
    daemon_start(redis_sock, "refresh_ms = 200\n");
    /* until figures are read, /v1/indicators is 503; wait for them (an empty store) */
    double end = now_s() + 30;
    for (;;) {
        struct resp r = http_get("/v1/indicators");
        int st = r.status;
        resp_free(&r);
        if (st == 200)
            break;
        ck_assert_int_eq(st, 503);
        ck_assert_msg(now_s() < end, "no figures within 30 s");
        nap_ms(20);
    }
    const char *h = " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    char req[512];
    static const char *const bad[] = {"/v1/indicators?as_of=yesterday",
                                      "/v1/indicators?as_of=2025-13-01",
                                      "/v1/indicators?as_of=-1",
                                      "/v1/indicators?as_of=253402300800",
                                      "/v1/indicators?as_of=10000-01-01",
                                      "/v1/indicators?frobnicate=1",
                                      "/v1/indicators?as_of=1&as_of=2",
                                      "/healthz?x=1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(req, sizeof(req), "GET %s%s", bad[i], h);
        expect_error(req, 400);
    }
    snprintf(req, sizeof(req), "GET /v1/indicators?as_of=253402300799%s", h);
    struct resp ok = http_raw(req);
    ck_assert_int_eq(ok.status, 200);
    resp_free(&ok);
    snprintf(req, sizeof(req), "GET /no/such/path%s", h);
    expect_error(req, 404);
    snprintf(req, sizeof(req), "GET /v1%s", h);
    expect_error(req, 404);
    snprintf(req, sizeof(req), "GET /v1/indicators/extra%s", h);
    expect_error(req, 404);
    snprintf(req, sizeof(req), "POST /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                               "Content-Length: 2\r\n\r\nhi");
    expect_error(req, 405);
    snprintf(req, sizeof(req), "DELETE /v1/status%s", h);
    expect_error(req, 405);
    /* headers past the bound: refused, and the daemon goes on */
    size_t big = 16384;
    char *huge = malloc(big + 200);
    ck_assert_ptr_nonnull(huge);
    int n = snprintf(huge, 200, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(huge + n, 'a', big);
    strcpy(huge + n + big, "\r\nConnection: close\r\n\r\n");
    struct resp r = http_raw(huge);
    free(huge);
    ck_assert_msg(r.status == 413 || r.status == 400, "oversized headers: status %d", r.status);
    resp_free(&r);
    /* a body past the bound */
    snprintf(req, sizeof(req), "POST /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                               "Content-Length: 100000\r\n\r\n");
    r = http_raw(req);
    ck_assert_msg(r.status == 413 || r.status == 400, "oversized body: status %d", r.status);
    resp_free(&r);
    /* garbage request line */
    r = http_raw("NOT-HTTP\r\n\r\n");
    ck_assert_int_eq(r.status, 400);
    resp_free(&r);
    r = http_get("/healthz");
    ck_assert_int_eq(r.status, 200);
    resp_free(&r);
    teardown();
}
END_TEST

START_TEST(test_not_ready_without_redis)
{
    setup();
    /* a socket where no Redis listens: the endpoint is up, not ready */
    daemon_start(path_in("no-redis.sock"), "");
    struct resp r = http_get("/healthz");
    ck_assert_int_eq(r.status, 200);
    resp_free(&r);
    r = http_get("/readyz");
    ck_assert_int_eq(r.status, 503);
    ck_assert(json_is_false(json_object_get(r.json, "ready")));
    json_t *reasons = json_object_get(r.json, "reasons");
    ck_assert_int_ge(json_array_size(reasons), 2);
    int redis = 0;
    for (size_t i = 0; i < json_array_size(reasons); i++)
        redis |= strstr(json_string_value(json_array_get(reasons, i)), "redis") != NULL;
    ck_assert(redis);
    resp_free(&r);
    r = http_get("/v1/indicators");
    ck_assert_int_eq(r.status, 503);
    ck_assert(json_is_string(json_object_get(r.json, "error")));
    resp_free(&r);
    r = http_get("/metrics");
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq((long)metric(r.body, "circmon_ready"), 0);
    resp_free(&r);
    r = http_get("/v1/status");
    ck_assert_int_eq(r.status, 200);
    ck_assert(json_is_false(json_object_get(json_object_get(r.json, "redis"), "connected")));
    ck_assert(json_is_false(json_object_get(json_object_get(r.json, "figures"), "read")));
    check_lag_totals(r.json);
    resp_free(&r);
    teardown();
}
END_TEST

/* 1 when the peer closed fd within timeout_ms (EOF or reset). */
static int closed_within(int fd, int timeout_ms)
{
    int closed;
    free(read_to_close(fd, timeout_ms, &closed));
    return closed;
}

START_TEST(test_slow_clients)
{
    setup();
    daemon_start(redis_sock, "request_timeout_ms = 1000\n");
    /* half a request line, then nothing */
    int loris = tcp_connect();
    send_all(loris, "GET /hea", 8);
    double t0 = now_s();
    /* a trickle: one byte every 250 ms, never a whole request */
    int trickle = tcp_connect();
    double t1 = now_s();
    /* meanwhile the daemon answers others */
    for (int i = 0; i < 5; i++) {
        struct resp r = http_get("/healthz");
        ck_assert_int_eq(r.status, 200);
        resp_free(&r);
    }
    int trickle_closed = 0;
    const char *line = "GET /healthz HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    for (size_t i = 0; i < strlen(line) && !trickle_closed; i++) {
        if (send(trickle, line + i, 1, MSG_NOSIGNAL) != 1) {
            trickle_closed = 1;
            break;
        }
        trickle_closed = closed_within(trickle, 250);
    }
    double t_trickle = now_s() - t1;
    ck_assert_msg(trickle_closed, "a client trickling a request was never dropped");
    ck_assert_msg(t_trickle >= 0.9 && t_trickle < 4.0,
                  "the trickling client was dropped after %.2f s (request_timeout_ms 1000)",
                  t_trickle);
    ck_assert_msg(closed_within(loris, 4000), "the slow-loris client was not dropped");
    double t_loris = now_s() - t0;
    ck_assert_msg(t_loris >= 0.9 && t_loris < 5.0, "the slow-loris client was dropped after %.2f s",
                  t_loris);
    close(loris);
    close(trickle);
    struct resp r = http_get("/healthz");
    ck_assert_int_eq(r.status, 200);
    resp_free(&r);
    teardown();
}
END_TEST

START_TEST(test_max_connections)
{
    setup();
    daemon_start(redis_sock, "max_connections = 3\nrequest_timeout_ms = 20000\n");
    int held[3];
    for (int i = 0; i < 3; i++)
        held[i] = tcp_connect();
    /* the fourth is closed unanswered, even with a whole request */
    double end = now_s() + 10;
    int refused = 0;
    while (!refused) {
        int fd = tcp_connect();
        const char *req = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        send(fd, req, strlen(req), MSG_NOSIGNAL);
        int closed;
        char *got = read_to_close(fd, 3000, &closed);
        ck_assert_msg(closed, "a connection past max_connections stayed open");
        refused = got[0] == '\0';
        free(got);
        close(fd);
        /* the three might not all be accepted yet: the first tries may be served */
        ck_assert_msg(now_s() < end, "a fourth connection was never refused");
    }
    /* the held ones are served */
    const char *req = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    send_all(held[0], req, strlen(req));
    int closed;
    char *got = read_to_close(held[0], 5000, &closed);
    ck_assert_msg(strncmp(got, "HTTP/1.1 200", 12) == 0, "a held connection got: %.80s", got);
    free(got);
    close(held[0]);
    /* one slot free again: a new client is served */
    end = now_s() + 10;
    for (;;) {
        struct resp r = http_get("/healthz"); /* status 0: closed unanswered */
        if (r.status == 200) {
            resp_free(&r);
            break;
        }
        resp_free(&r);
        ck_assert_msg(now_s() < end, "no slot came free after a connection closed");
        nap_ms(50);
    }
    close(held[1]);
    close(held[2]);
    teardown();
}
END_TEST

/* figures.read_at_ms of /v1/status (0 before the first read) and last_error. */
static int64_t last_error_at;

static int64_t figures_read_at(char *err, size_t errlen)
{
    struct resp r = http_get("/v1/status");
    ck_assert_int_eq(r.status, 200);
    json_t *f = json_object_get(r.json, "figures");
    int64_t at = json_is_integer(json_object_get(f, "read_at_ms"))
                     ? json_integer_value(json_object_get(f, "read_at_ms"))
                     : 0;
    const char *e = json_string_value(json_object_get(f, "last_error"));
    json_t *ea = json_object_get(f, "last_error_at_ms");
    last_error_at = json_is_integer(ea) ? json_integer_value(ea) : 0;
    if (err)
        snprintf(err, errlen, "%s", e ? e : "");
    resp_free(&r);
    return at;
}

static void redis_do(const char *fmt, const char *a, const char *b)
{
    redisContext *c = redisConnectUnix(redis_sock);
    ck_assert(c && !c->err);
    redisReply *r = redisCommand(c, fmt, a, b);
    ck_assert_msg(r && r->type != REDIS_REPLY_ERROR, "redis: %s", r ? r->str : c->errstr);
    freeReplyObject(r);
    redisFree(c);
}

START_TEST(test_malformed_aggregate_keeps_last_figures)
{
    setup();
    const char *conf = daemon_start(redis_sock, "refresh_ms = 200\n");
    long total;
    gen_publish(conf, 500, &total);
    wait_figures_of_all(conf, total);
    /* a field no apply writes, then a value that is not an integer */
    static const char *const bad[][2] = {{"zz:not-a-field", "1"}, {"q:over_limit", "12abc"}};
    for (size_t i = 0; i < 2; i++) {
        char key[64];
        snprintf(key, sizeof(key), "circmon:{%zu}:agg", i % N_PARTS);
        redisContext *c = redisConnectUnix(redis_sock);
        ck_assert(c && !c->err);
        redisReply *r = redisCommand(c, "HSET %s %s %s", key, bad[i][0], bad[i][1]);
        ck_assert(r && r->type == REDIS_REPLY_INTEGER);
        freeReplyObject(r);
        redisFree(c);
        char err[600] = "";
        double end = now_s() + 30;
        int64_t read_at = 0;
        while (!strstr(err, bad[i][0])) {
            read_at = figures_read_at(err, sizeof(err));
            ck_assert_msg(now_s() < end, "a malformed field (%s) was not reported", bad[i][0]);
            nap_ms(20);
        }
        /* from now on every refresh fails: the figures stay those of read_at */
        struct resp before = http_get("/v1/indicators");
        ck_assert_int_eq(before.status, 200);
        int64_t err_at = last_error_at;
        while (last_error_at <= err_at) { /* another failed refresh */
            int64_t at = figures_read_at(err, sizeof(err));
            ck_assert_msg(at == read_at, "figures replaced while the aggregate is malformed");
            ck_assert_msg(now_s() < end, "no second failed refresh");
            nap_ms(20);
        }
        struct resp now = http_get("/v1/indicators");
        ck_assert_int_eq(now.status, 200);
        ck_assert_msg(strcmp(now.body, before.body) == 0,
                      "the cached document changed while the aggregate is malformed");
        resp_free(&now);
        resp_free(&before);
        struct resp m = http_get("/metrics");
        ck_assert(metric(m.body, "circmon_indicators_refresh_failures_total") >= 2);
        resp_free(&m);
        /* the field removed: figures again */
        redis_do("HDEL %s %s", key, bad[i][0]);
        int64_t t0 = wall_ms();
        end = now_s() + 30;
        for (;;) {
            int64_t at = figures_read_at(err, sizeof(err));
            if (at > t0 && !err[0])
                break;
            ck_assert_msg(now_s() < end, "no figures after the malformed field went");
            nap_ms(20);
        }
    }
    teardown();
}
END_TEST

START_TEST(test_taken_port_pipeline_goes_on)
{
    setup();
    /* a port of ours, listening: circmond cannot have it */
    int lfd = socket(AF_INET, SOCK_STREAM, 0), one = 1, port = 0;
    ck_assert_int_ge(lfd, 0);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    unsigned seed = (unsigned)getpid();
    for (int i = 0; i < 20 && !port; i++) {
        int p = pick_port(&seed);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        if (bind(lfd, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(lfd, 4) == 0)
            port = p;
    }
    ck_assert_int_gt(port, 0);
    const char *conf = write_conf(redis_sock, port, "");
    const char *log = path_in("circmond.log");
    char path[600];
    cm_bin_path(path, sizeof(path), "circmond");
    char *argv[] = {path, "--config", (char *)conf, "--foreground", NULL};
    daemon_pid = spawn(argv, NULL, log, NULL, NULL);
    double end = now_s() + 20;
    while (!file_has(log, "cannot listen")) {
        ck_assert_msg(alive(daemon_pid), "circmond exited (see %s)", log);
        ck_assert_msg(now_s() < end, "no word about the taken port (see %s)", log);
        nap_ms(10);
    }
    ck_assert(file_has(log, "the HTTP endpoint is off"));
    long total;
    gen_publish(conf, 300, &total);
    end = now_s() + 60;
    while (stored_sum(conf) != total) {
        ck_assert_msg(alive(daemon_pid), "circmond exited (see %s)", log);
        ck_assert_msg(now_s() < end, "the pipeline did not fold without its endpoint");
        nap_ms(50);
    }
    close(lfd);
    teardown();
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("http");
    struct {
        const char *name;
        const TTest *t;
        int timeout;
    } cases[] = {
        {"endpoints", test_endpoints_equal_replay, 180},
        {"bad_requests", test_bad_requests, 60},
        {"not_ready", test_not_ready_without_redis, 60},
        {"slow_clients", test_slow_clients, 60},
        {"max_connections", test_max_connections, 60},
        {"malformed_aggregate", test_malformed_aggregate_keeps_last_figures, 120},
        {"taken_port", test_taken_port_pipeline_goes_on, 90},
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
