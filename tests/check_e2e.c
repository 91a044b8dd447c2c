/* check_e2e.c - circmond end to end against a real redis-server and circmon-broker.
 *
 * Each test starts its own redis-server, on a unix socket in its directory
 * (no port is picked, so none can be taken by another program in between),
 * and circmon-broker, which binds a loopback port itself and prints it;
 * publishes a circmon-gen stream with circmonctl publish,
 * runs bin/circmond and compares `circmonctl indicators` (read from Redis)
 * with `circmonctl replay` of the same events. Every child process gets
 * PR_SET_PDEATHSIG, so a test killed by its timeout takes its services with
 * it; the teardown kills whatever is left. Synchronisation is by polling a
 * condition with a deadline, never by fixed sleeps. */
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
#include "cm_test.h"

#define N_PARTS 8
#define AS_OF "2025-01-01"
#define AS_OF_MID "2022-06-15"

static char dir[256];
static pid_t pids[32];
static int npids;
static char redis_sock[300]; /* dir/redis.sock */
static pid_t redis_pid = -1;
static pid_t broker_pid = -1;
static char brokers[256];

/* ------------------------------------------------------------ processes */

static const char *top(void)
{
    const char *t = getenv("CM_TOP");
    return t && *t ? t : ".";
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void nap_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Starts argv with stdout/stderr into files (NULL: /dev/null; "-" keeps
 * stdout as the pipe fd *pipe_fd when given). Returns the pid. */
static pid_t spawn(char *const argv[], const char *out, const char *err, int *pipe_fd,
                   char *const env[])
{
    int fds[2] = {-1, -1};
    if (pipe_fd)
        ck_assert_int_eq(pipe(fds), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (pipe_fd) {
            dup2(fds[1], STDOUT_FILENO);
            close(fds[0]);
            close(fds[1]);
        } else {
            int fd = open(out ? out : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0644);
            dup2(fd, STDOUT_FILENO);
            close(fd);
        }
        int fd = open(err ? err : "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(fd, STDERR_FILENO);
        close(fd);
        for (int i = 0; env && env[i]; i++) {
            char *eq = strchr(env[i], '=');
            *eq = '\0';
            setenv(env[i], eq + 1, 1);
        }
        execvp(argv[0], argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    if (pipe_fd) {
        close(fds[1]);
        *pipe_fd = fds[0];
    }
    if (npids < (int)(sizeof(pids) / sizeof(pids[0])))
        pids[npids++] = pid;
    return pid;
}

static void forget(pid_t pid)
{
    for (int i = 0; i < npids; i++)
        if (pids[i] == pid)
            pids[i] = pids[--npids];
}

/* Waits for pid within timeout_s; returns its wait status, or -1 (then it
 * is killed). */
static int wait_pid(pid_t pid, double timeout_s)
{
    double end = now_s() + timeout_s;
    int st;
    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) {
            forget(pid);
            return st;
        }
        if (now_s() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            forget(pid);
            return -1;
        }
        nap_ms(10);
    }
}

static int alive(pid_t pid)
{
    int st;
    return waitpid(pid, &st, WNOHANG) == 0;
}

/* Runs a bin/ program to completion; returns its exit status. */
static int run_bin(const char *prog, char *const args[], const char *out, const char *err)
{
    char path[600];
    char *argv[32];
    int n = 0;
    snprintf(path, sizeof(path), "%s/bin/%s", top(), prog);
    argv[n++] = path;
    for (int i = 0; args[i] && n < 31; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    pid_t pid = spawn(argv, out, err, NULL, NULL);
    int st = wait_pid(pid, 120);
    return st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void kill_all(void)
{
    while (npids > 0) {
        pid_t p = pids[npids - 1];
        kill(p, SIGKILL);
        waitpid(p, NULL, 0);
        npids--;
    }
}

static redisContext *redis_conn(void)
{
    struct timeval tv = {1, 0};
    redisContext *c = redisConnectUnixWithTimeout(redis_sock, tv);
    if (c && c->err) {
        redisFree(c);
        return NULL;
    }
    return c;
}

/* Starts redis-server on the unix socket redis_sock, TCP off (aof: persist
 * to dir/redis). */
static void redis_start(int aof)
{
    char rdir[300], log[300];
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

static void redis_stop(void)
{
    kill(redis_pid, SIGTERM);
    ck_assert_int_ge(wait_pid(redis_pid, 15), 0);
    redis_pid = -1;
}

static void broker_start(void)
{
    char path[600], parts[16], log[300];
    int fd;
    size_t got = 0;
    snprintf(path, sizeof(path), "%s/bin/circmon-broker", top());
    snprintf(parts, sizeof(parts), "%d", N_PARTS);
    snprintf(log, sizeof(log), "%s/broker.log", dir);
    char *argv[] = {path, "--partitions", parts, "--topic", "circmon.events", "--topic",
                    "circmon.events.dlq", NULL};
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

/* ------------------------------------------------------------ fixture */

static char *paths[512]; /* made by path_in, freed by the teardown */
static int npaths;

/* dir/name, valid until the teardown. */
static char *path_in(const char *name)
{
    char *p = malloc(strlen(dir) + strlen(name) + 2);
    ck_assert_ptr_nonnull(p);
    ck_assert_int_lt(npaths, 512);
    sprintf(p, "%s/%s", dir, name);
    return paths[npaths++] = p;
}


static void setup(void)
{
    const char *t = getenv("TMPDIR");
    snprintf(dir, sizeof(dir), "%s/check_e2e.XXXXXX", t && *t ? t : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    npids = 0;
    snprintf(redis_sock, sizeof(redis_sock), "%s/redis.sock", dir);
    redis_start(0);
    broker_start();
}

static void teardown(void)
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

/* setup in the test itself: the services belong to the forked test. */
#define SETUP()                                                                                \
    do {                                                                                       \
        setup();                                                                               \
    } while (0)

/* ------------------------------------------------------------ helpers */

/* Writes the configuration; returns its path. */
static const char *write_conf(const char *name, const char *group, int batch_size,
                              int max_in_flight)
{
    const char *p = path_in(name);
    FILE *fp = fopen(p, "w");
    ck_assert_ptr_nonnull(fp);
    fprintf(fp,
            "[circmon]\nbatch_size = %d\nmax_in_flight = %d\nlog_level = info\n"
            "[kafka]\nbrokers = %s\ngroup_id = %s\nrdkafka.session.timeout.ms = 6000\n"
            "[redis]\nunix_socket = %s\ncommand_timeout_ms = 3000\n"
            "connect_timeout_ms = 1000\n",
            batch_size, max_in_flight, brokers, group, redis_sock);
    fclose(fp);
    return p;
}

static void gen(const char *out, int seed, int migrants)
{
    char s[16], m[16];
    snprintf(s, sizeof(s), "%d", seed);
    snprintf(m, sizeof(m), "%d", migrants);
    char *args[] = {"--seed", s, "--migrants", m, "--out", (char *)out, NULL};
    ck_assert_int_eq(run_bin("circmon-gen", args, NULL, path_in("gen.log")), 0);
}

/* Splits a framed file: the first k records into a, the rest into b.
 * Returns the number of records. */
static long split(const char *in, long k, const char *a, const char *b)
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

static long count_records(const char *in)
{
    return split(in, 0, "/dev/null", "/dev/null");
}

static void publish(const char *conf, const char *file)
{
    char *args[] = {"publish", "--config", (char *)conf, (char *)file, NULL};
    ck_assert_int_eq(run_bin("circmonctl", args, NULL, path_in("publish.log")), 0);
}

/* Generates a stream of migrants (seed) into dir/ev.bin (*ev, when not
 * NULL), publishes it with conf; returns its number of records. */
static long gen_publish(const char *conf, int seed, int migrants, const char **ev)
{
    const char *p = path_in("ev.bin");
    gen(p, seed, migrants);
    long n = count_records(p);
    publish(conf, p);
    if (ev)
        *ev = p;
    return n;
}

/* Starts bin/circmond; CM_DAEMON_WRAPPER (e.g. "valgrind -q --error-exitcode=9
 * --leak-check=full") is put in front of it, words split on blanks. */
static pid_t daemon_start(const char *conf, const char *log, char *const env[])
{
    char path[600], *argv[40], *w = NULL;
    int n = 0;
    const char *wrap = getenv("CM_DAEMON_WRAPPER");
    snprintf(path, sizeof(path), "%s/bin/circmond", top());
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

static int64_t stored_sum(const char *conf)
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
        sum = -1; /* Redis restarting */
    }
    cm_config_free(&cfg);
    return sum;
}

/* Polls until the stored positions add up to total (every partition starts
 * at offset 0 in a fresh topic), within timeout_s. */
static void wait_caught_up(const char *conf, int64_t total, double timeout_s)
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
static void wait_progress(const char *conf, int64_t min, double timeout_s)
{
    double end = now_s() + timeout_s;
    while (stored_sum(conf) < min) {
        ck_assert_msg(now_s() < end, "no progress to %" PRId64 " in %.0f s", min, timeout_s);
        nap_ms(5);
    }
}

static json_t *load_json(const char *p)
{
    json_error_t e;
    json_t *j = json_load_file(p, 0, &e);
    ck_assert_msg(j != NULL, "%s: %s", p, e.text);
    return j;
}

/* indicators from Redis == replay of files, as of as_of. */
static void compare(const char *conf, const char *as_of, const char *f1, const char *f2)
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

static void stop_daemon(pid_t pid)
{
    kill(pid, SIGTERM);
    int st = wait_pid(pid, 30);
    ck_assert_msg(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
                  "circmond did not stop cleanly on SIGTERM (status %d)", st);
}

/* The group's committed offsets (the mirror for lag tools) equal the
 * positions in Redis, partition by partition. */
static void check_committed(const char *conf, const char *group)
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
static void run_to_hook(const char *prefix, int i, const char *var, const char *value)
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
static long expected_dead_letters(void)
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

START_TEST(test_end_to_end)
{
    SETUP();
    const char *conf = write_conf("c.conf", "e2e", 500, 4);
    const char *ev;
    long n = gen_publish(conf, 1, 3000, &ev);
    pid_t d = daemon_start(conf, path_in("d.log"), NULL);
    wait_caught_up(conf, n, 60);
    compare(conf, AS_OF, ev, NULL);
    compare(conf, AS_OF_MID, ev, NULL);
    ck_assert(alive(d));
    stop_daemon(d);
    /* a clean stop commits the last applied positions */
    check_committed(conf, "e2e");
}
END_TEST

START_TEST(test_crash)
{
    SETUP();
    /* Small batches: many applies, so that the kills land mid-stream. */
    const char *conf = write_conf("c0.conf", "crash0", 100, 2);
    const char *ev;
    long n = gen_publish(conf, 2, 4000, &ev);

    /* Killed right after an apply landed, before anything else. */
    const char *hooks[] = {"3", "17", "40"};
    for (int i = 0; i < 3; i++)
        run_to_hook("crash", i + 1, "CIRCMOND_TEST_CRASH_AFTER_APPLIES", hooks[i]);
    /* Killed from outside at arbitrary instants. */
    int64_t marks[] = {n / 2, (3 * n) / 4};
    for (int i = 0; i < 2; i++) {
        char group[32], name[32];
        snprintf(group, sizeof(group), "crash%d", i + 4);
        snprintf(name, sizeof(name), "c%d.conf", i + 4);
        const char *c = write_conf(name, group, 100, 2);
        pid_t d = daemon_start(c, path_in("d.log"), NULL);
        wait_progress(c, marks[i], 60);
        kill(d, SIGKILL);
        wait_pid(d, 10);
    }
    const char *c = write_conf("c9.conf", "crash9", 100, 2);
    pid_t d = daemon_start(c, path_in("d.log"), NULL);
    wait_caught_up(c, n, 60);
    compare(c, AS_OF, ev, NULL);
    compare(c, AS_OF_MID, ev, NULL);
    stop_daemon(d);
}
END_TEST

START_TEST(test_rebalance)
{
    SETUP();
    const char *ev = path_in("ev.bin"), *a = path_in("a.bin"), *b = path_in("b.bin");
    gen(ev, 3, 4000);
    long n = count_records(ev);
    split(ev, n / 2, a, b);
    const char *conf = write_conf("c.conf", "rebal", 100, 2);
    publish(conf, a);
    pid_t d1 = daemon_start(conf, path_in("d1.log"), NULL);
    pid_t d2 = daemon_start(conf, path_in("d2.log"), NULL);
    wait_caught_up(conf, n / 2, 90);
    /* Second half in, one member killed mid-stream and started again. */
    publish(conf, b);
    wait_progress(conf, n / 2 + 1, 30);
    kill(d2, SIGKILL);
    wait_pid(d2, 10);
    d2 = daemon_start(conf, path_in("d2.log"), NULL);
    wait_caught_up(conf, n, 120);
    compare(conf, AS_OF, a, b);
    ck_assert(alive(d1) && alive(d2));
    stop_daemon(d1);
    stop_daemon(d2);
}
END_TEST

START_TEST(test_redis_restart)
{
    SETUP();
    /* Persisting Redis: a restart loses only the script cache. */
    redis_stop();
    redis_start(1);
    const char *ev = path_in("ev.bin"), *a = path_in("a.bin"), *b = path_in("b.bin"),
               *b1 = path_in("b1.bin"), *b2 = path_in("b2.bin");
    gen(ev, 4, 3000);
    long n = count_records(ev);
    split(ev, n / 3, a, b);
    split(b, n / 3, b1, b2);
    const char *conf = write_conf("c.conf", "redis", 200, 4);
    publish(conf, a);
    pid_t d = daemon_start(conf, path_in("d.log"), NULL);
    wait_caught_up(conf, n / 3, 60);

    /* Script cache flushed under the daemon. */
    redisContext *c = redis_conn();
    ck_assert_ptr_nonnull(c);
    redisReply *r = redisCommand(c, "SCRIPT FLUSH");
    ck_assert(r && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    redisFree(c);
    publish(conf, b1);
    wait_caught_up(conf, 2 * (n / 3), 60);

    /* Redis down while events arrive, then back. */
    redis_stop();
    publish(conf, b2);
    ck_assert(alive(d));
    redis_start(1);
    wait_caught_up(conf, n, 90);
    ck_assert(alive(d));
    compare(conf, AS_OF, a, b);
    stop_daemon(d);
}
END_TEST

/* Occurrences of needle in the file at path. */
static int count_in_file(const char *path, const char *needle)
{
    FILE *fp = fopen(path, "r");
    char line[4096];
    int n = 0;
    if (!fp)
        return 0;
    while (fgets(line, sizeof(line), fp))
        n += strstr(line, needle) != NULL;
    fclose(fp);
    return n;
}

static void redis_cmd_ok(const char *cmd)
{
    redisContext *c = redis_conn();
    ck_assert_ptr_nonnull(c);
    redisReply *r = redisCommand(c, cmd);
    ck_assert_msg(r && r->type != REDIS_REPLY_ERROR, "%s: %s", cmd, r ? r->str : c->errstr);
    freeReplyObject(r);
    redisFree(c);
}

/* Redis refuses the applies for a while (out of memory): resyncs back off;
 * then the connection drops and comes back. The backed-off read of the
 * positions must not assign the partitions a second time (it would fold
 * events twice: the data-quality counters would show it). */
START_TEST(test_redis_refusals_then_reconnect)
{
    SETUP();
    const char *ev = path_in("ev.bin"), *a = path_in("a.bin"), *b = path_in("b.bin");
    gen(ev, 5, 3000);
    long n = count_records(ev);
    split(ev, n / 2, a, b);
    const char *conf = write_conf("c.conf", "refusals", 200, 4);
    const char *log = path_in("d.log");
    publish(conf, a);
    pid_t d = daemon_start(conf, log, NULL);
    wait_caught_up(conf, n / 2, 60);

    redis_cmd_ok("CONFIG SET maxmemory 1");
    publish(conf, b);
    double end = now_s() + 60;
    int before = count_in_file(log, "resynchronising"), now;
    while ((now = count_in_file(log, "resynchronising")) < before + 4) {
        ck_assert_msg(now_s() < end, "no resyncs while Redis refused the applies");
        nap_ms(20);
    }
    redis_cmd_ok("CONFIG SET maxmemory 0");
    /* drop every client connection: the daemon reconnects and resyncs at once */
    redisContext *c = redis_conn();
    ck_assert_ptr_nonnull(c);
    freeReplyObject(redisCommand(c, "CLIENT KILL TYPE normal"));
    redisFree(c);
    wait_caught_up(conf, n, 90);
    /* A stale backoff timer would fire within the longest backoff (5 s) and
     * assign again: watch for that long (this waits for something that must
     * not happen, so it can only be bounded by time), then let the daemon
     * settle and compare, data quality included. */
    const char *assigned = "partitions from the positions in Redis";
    int assigns = count_in_file(log, assigned);
    end = now_s() + 6;
    while (now_s() < end) {
        ck_assert_msg(count_in_file(log, assigned) == assigns,
                      "the partitions were assigned again after the reconnection (%s)", log);
        nap_ms(100);
    }
    wait_caught_up(conf, n, 30);
    ck_assert(alive(d));
    compare(conf, AS_OF, a, b);
    stop_daemon(d);
}
END_TEST

/* Reads the whole dead-letter topic; checks each source offset appears once
 * with its headers. Returns the number of messages; *n_reason (when
 * reason is not NULL) gets the number whose reason is reason. */
static long read_dlq_reason(const char *reason, long *n_reason)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    ck_assert(rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err, sizeof(err)) ==
              RD_KAFKA_CONF_OK);
    ck_assert(rd_kafka_conf_set(conf, "enable.partition.eof", "true", err, sizeof(err)) ==
              RD_KAFKA_CONF_OK);
    ck_assert(rd_kafka_conf_set(conf, "group.id", "dlq-reader", err, sizeof(err)) ==
              RD_KAFKA_CONF_OK);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    ck_assert_msg(rk != NULL, "%s", err);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(N_PARTS);
    for (int i = 0; i < N_PARTS; i++)
        rd_kafka_topic_partition_list_add(l, "circmon.events.dlq", i)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    ck_assert_int_eq(rd_kafka_assign(rk, l), 0);
    rd_kafka_topic_partition_list_destroy(l);
    int eof = 0;
    long n = 0;
    char (*seen)[48] = calloc(100000, sizeof(*seen));
    double end = now_s() + 30;
    while (eof < N_PARTS) {
        ck_assert_msg(now_s() < end, "reading the dead-letter topic timed out");
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            eof++;
        } else {
            ck_assert_msg(!m->err, "%s", rd_kafka_message_errstr(m));
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
        }
        rd_kafka_message_destroy(m);
    }
    free(seen);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return n;
}

static long read_dlq(void)
{
    return read_dlq_reason(NULL, NULL);
}

START_TEST(test_bad_input)
{
    SETUP();
    const char *conf = write_conf("c.conf", "bad", 300, 4);
    const char *ev;
    long n = gen_publish(conf, 5, 3000, &ev);
    pid_t d = daemon_start(conf, path_in("d.log"), NULL);
    wait_caught_up(conf, n, 60);
    ck_assert(alive(d));
    compare(conf, AS_OF, ev, NULL);
    stop_daemon(d);
    ck_assert_int_eq(read_dlq(), expected_dead_letters());
}
END_TEST

/* Whether file p holds the text needle. */
static int file_has(const char *p, const char *needle)
{
    FILE *fp = fopen(p, "r");
    if (!fp)
        return 0; /* not written yet */
    char line[4096];
    int found = 0;
    while (!found && fgets(line, sizeof(line), fp))
        found = strstr(line, needle) != NULL;
    fclose(fp);
    return found;
}

/* Caught up and idle for longer than max.poll.interval.ms: circmond keeps
 * polling, so librdkafka never leaves the group (no revoke, no rejoin). */
START_TEST(test_idle_stays_in_group)
{
    SETUP();
    const char *conf = write_conf("c.conf", "idle", 500, 4);
    FILE *fp = fopen(conf, "a");
    ck_assert_ptr_nonnull(fp);
    fputs("[kafka]\nrdkafka.max.poll.interval.ms = 6000\n", fp);
    fclose(fp);
    long n = gen_publish(conf, 8, 300, NULL);
    const char *log = path_in("d.log");
    pid_t d = daemon_start(conf, log, NULL);
    wait_caught_up(conf, n, 60);
    /* an observation window of twice the interval: nothing may happen */
    double end = now_s() + 13;
    while (now_s() < end && !file_has(log, "revoked"))
        nap_ms(200);
    ck_assert_msg(!file_has(log, "revoked") && !file_has(log, "MAXPOLL"),
                  "circmond left the group while idle (see %s)", log);
    ck_assert(alive(d));
    stop_daemon(d);
}
END_TEST

/* A stored position past the topic's end (the topic was recreated): Kafka
 * restarts the partition lower, and circmond says so instead of skipping
 * in silence. */
START_TEST(test_position_past_topic_end_is_reported)
{
    SETUP();
    const char *conf = write_conf("c.conf", "past", 500, 4);
    gen_publish(conf, 9, 300, NULL);
    redisContext *c = redis_conn();
    freeReplyObject(redisCommand(c, "SET circmon:{0}:pos 1000000"));
    redisFree(c);
    const char *log = path_in("d.log");
    pid_t d = daemon_start(conf, log, NULL);
    double end = now_s() + 60;
    while (now_s() < end && !file_has(log, "restarts at offset"))
        nap_ms(100);
    ck_assert_msg(file_has(log, "partition 0: Redis holds position 1000000 but the topic "
                                "restarts at offset 0"),
                  "no error about partition 0 (see %s)", log);
    stop_daemon(d);
}
END_TEST

/* librdkafka settings circmond forces are refused where the operator wrote
 * them, not overridden in silence. */
START_TEST(test_check_config_forced_kafka_settings)
{
    SETUP();
    const char *bad[][2] = {
        {"rdkafka.group.id = other", "rdkafka.group.id: circmond sets it itself (use group_id)"},
        {"rdkafka.enable.auto.offset.store = true",
         "rdkafka.enable.auto.offset.store: circmond sets it itself"},
        {"rdkafka.acks = 1", "rdkafka.acks: circmond sets it itself"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *conf = write_conf("f.conf", "forced", 500, 4);
        FILE *fp = fopen(conf, "a+");
        ck_assert_ptr_nonnull(fp);
        int lines = 0, ch; /* the bad key goes on line lines + 2 */
        rewind(fp);
        while ((ch = fgetc(fp)) != EOF)
            lines += ch == '\n';
        fprintf(fp, "[kafka]\n%s\n", bad[i][0]);
        fclose(fp);
        char want[512];
        snprintf(want, sizeof(want), "%s:%d: [kafka] %s", conf, lines + 2, bad[i][1]);
        char *args[] = {"--config", (char *)conf, "--check-config", NULL};
        const char *log = path_in("check.log");
        ck_assert_int_eq(run_bin("circmond", args, NULL, log), 1);
        ck_assert_msg(file_has(log, want), "expected \"%s\" in %s", want, log);
    }
}
END_TEST

/* Stopped while Kafka and Redis go away too (a cleanup that signals every
 * process at once): circmond still exits, it does not wait for a consumer
 * close that can no longer finish. */
START_TEST(test_stop_with_services_gone)
{
    SETUP();
    const char *conf = write_conf("c.conf", "gone", 500, 4);
    long n = gen_publish(conf, 7, 2000, NULL);
    pid_t d = daemon_start(conf, path_in("d.log"), NULL);
    wait_caught_up(conf, n, 60);
    kill(d, SIGTERM);
    kill(broker_pid, SIGTERM);
    kill(redis_pid, SIGTERM);
    int st = wait_pid(d, 45);
    ck_assert_msg(st >= 0 && WIFEXITED(st), "circmond did not stop (status %d)", st);
}
END_TEST

/* Dead letters sent, then the daemon dies before its apply: the next one
 * reads them back and does not send them again. */
START_TEST(test_bad_input_crash)
{
    SETUP();
    const char *conf = write_conf("c0.conf", "dlqcrash0", 100, 2);
    const char *ev;
    long n = gen_publish(conf, 6, 3000, &ev);
    const char *hooks[] = {"1", "5"};
    for (int i = 0; i < 2; i++)
        run_to_hook("dlqcrash", i + 1, "CIRCMOND_TEST_CRASH_AFTER_DLQ", hooks[i]);
    const char *c = write_conf("c9.conf", "dlqcrash9", 100, 2);
    pid_t d = daemon_start(c, path_in("d.log"), NULL);
    wait_caught_up(c, n, 60);
    compare(c, AS_OF, ev, NULL);
    stop_daemon(d);
    ck_assert_int_eq(read_dlq(), expected_dead_letters());
}
END_TEST

/* --- the store's compare-and-set against a real redis-server ------------- */

struct apply_res {
    int done, err, applied;
    int64_t stored;
    struct event_base *base;
};

static void on_up(struct cm_store *s, int up, void *ud)
{
    (void)s;
    if (up)
        event_base_loopbreak(ud);
}

static void on_apply(int err, int applied, int64_t stored, void *ud)
{
    struct apply_res *r = ud;
    r->done = 1;
    r->err = err;
    r->applied = applied;
    r->stored = stored;
    event_base_loopbreak(r->base);
}

static struct apply_res do_apply(struct event_base *base, struct cm_store *st,
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

static void on_pos(int err, const struct cm_store_pos *pos, size_t n, void *ud)
{
    struct pos_res *r = ud;
    r->done = 1;
    r->err = err;
    for (size_t i = 0; !err && i < n && i < 2; i++)
        r->p[i] = pos[i];
    event_base_loopbreak(r->base);
}

static char *dump(void)
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

START_TEST(test_zombie)
{
    const char *t = getenv("TMPDIR");
    snprintf(dir, sizeof(dir), "%s/check_e2e.XXXXXX", t && *t ? t : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(redis_sock, sizeof(redis_sock), "%s/redis.sock", dir);
    redis_start(0);
    strcpy(brokers, "127.0.0.1:9"); /* unused here */
    const char *conf = write_conf("c.conf", "z", 10, 1);
    struct cm_config cfg = {0};
    char err[512];
    ck_assert_msg(cm_config_load(&cfg, conf, err, sizeof(err)) == 0, "%s", err);
    struct event_base *base = event_base_new();
    struct cm_store *st = cm_store_new(base, &cfg, on_up, base);
    event_base_dispatch(base);
    ck_assert(cm_store_ready(st));

    struct cm_names *nm = cm_names_new();
    struct cm_agg *ag = cm_agg_new();
    int32_t sch = cm_names_intern(nm, "SEASONAL-X", 10), nat = cm_names_intern(nm, "MA", 2);
    struct cm_agg_key k1 = {.kind = CM_AK_NAT, .ctr = CM_C_EXPECTED, .scheme = sch, .a = nat};
    struct cm_agg_key k2 = {.kind = CM_AK_DQ, .ctr = CM_DQ_INVALID};
    cm_agg_add(ag, &k1, 5);
    cm_agg_add(ag, &k2, 2);

    /* First writer: 0 -> 10. */
    struct apply_res r = do_apply(base, st, &cfg, 0, 10, "state-A", ag, nm);
    ck_assert_int_eq(r.err, 0);
    ck_assert_int_eq(r.applied, 1);
    ck_assert_int_eq(r.stored, 10);
    char *before = dump();

    /* A zombie still believing the partition stands at 0: refused, nothing
     * changed. */
    r = do_apply(base, st, &cfg, 0, 7, "state-Z", ag, nm);
    ck_assert_int_eq(r.err, 0);
    ck_assert_int_eq(r.applied, 0);
    ck_assert_int_eq(r.stored, 10);
    char *after = dump();
    ck_assert_str_eq(before, after);
    free(after);

    /* After SCRIPT FLUSH the apply still goes through (NOSCRIPT -> EVAL), and
     * a counter that returns to 0 leaves the hash. */
    redisContext *c = redis_conn();
    freeReplyObject(redisCommand(c, "SCRIPT FLUSH"));
    redisFree(c);
    struct cm_agg *neg = cm_agg_new();
    cm_agg_add(neg, &k2, -2);
    r = do_apply(base, st, &cfg, 10, 20, "state-B", neg, nm);
    ck_assert_int_eq(r.err, 0);
    ck_assert_int_eq(r.applied, 1);

    /* The read side sees what was applied. */
    struct cm_agg *rag = cm_agg_new();
    struct cm_names *rnm = cm_names_new();
    ck_assert_msg(cm_store_read_agg(&cfg, rag, rnm, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(cm_agg_count(rag), 1);
    int32_t rs = cm_names_intern(rnm, "SEASONAL-X", 10), rn = cm_names_intern(rnm, "MA", 2);
    struct cm_agg_key rk1 = {.kind = CM_AK_NAT, .ctr = CM_C_EXPECTED, .scheme = rs, .a = rn};
    ck_assert_int_eq(cm_agg_get(rag, &rk1), 5);
    int32_t *parts;
    int64_t *pos;
    size_t np;
    ck_assert_int_eq(cm_store_read_positions(&cfg, &parts, &pos, &np, err, sizeof(err)), 0);
    ck_assert_int_eq(np, 1);
    ck_assert_int_eq(parts[0], 3);
    ck_assert_int_eq(pos[0], 20);
    free(parts);
    free(pos);

    /* The dead-letter mark goes with the position, only when applied. */
    struct cm_agg *none = cm_agg_new();
    struct cm_store_apply *ap = cm_store_apply_new(cfg.key_prefix, 3, 0, 99);
    ck_assert_int_eq(cm_store_apply_dlq_mark(ap, 1, 5), 0);
    r = (struct apply_res){.base = base};
    ck_assert_int_eq(cm_store_apply_send(st, ap, on_apply, &r), 0);
    event_base_dispatch(base);
    ck_assert(r.done && r.err == 0 && r.applied == 0);
    ap = cm_store_apply_new(cfg.key_prefix, 3, 20, 30);
    ck_assert_int_eq(cm_store_apply_dlq_mark(ap, 1, 5), 0);
    ck_assert_int_eq(cm_store_apply_dlq_mark(ap, 2, 77), 0); /* replaces */
    ck_assert_int_eq(cm_store_apply_agg(ap, none, nm), 0);
    r = (struct apply_res){.base = base};
    ck_assert_int_eq(cm_store_apply_send(st, ap, on_apply, &r), 0);
    event_base_dispatch(base);
    ck_assert(r.done && r.err == 0 && r.applied == 1);
    struct pos_res pr = {.base = base};
    int32_t ids[] = {3, 4};
    ck_assert_int_eq(cm_store_get_positions(st, ids, 2, on_pos, &pr), 0);
    event_base_dispatch(base);
    ck_assert(pr.done && pr.err == 0);
    ck_assert_int_eq(pr.p[0].pos, 30);
    ck_assert_int_eq(pr.p[0].dlq_part, 2);
    ck_assert_int_eq(pr.p[0].dlq_from, 77);
    ck_assert_int_eq(pr.p[1].pos, 0);
    ck_assert_int_eq(pr.p[1].dlq_part, -1);
    /* a mark that is not ours is an error, not a guess */
    c = redis_conn();
    freeReplyObject(redisCommand(c, "SET %s:{4}:dlq garbage", cfg.key_prefix));
    redisFree(c);
    pr = (struct pos_res){.base = base};
    ck_assert_int_eq(cm_store_get_positions(st, ids, 2, on_pos, &pr), 0);
    event_base_dispatch(base);
    ck_assert(pr.done && pr.err == -EPROTO);

    /* A key of the wrong type under the prefix: the apply fails before any
     * write (Redis would not roll back a half-run script). */
    c = redis_conn();
    freeReplyObject(redisCommand(c, "SET %s:{5}:agg not-a-hash", cfg.key_prefix));
    ap = cm_store_apply_new(cfg.key_prefix, 5, 0, 10);
    ck_assert_int_eq(cm_store_apply_state(ap, "mig-9", 5, (const uint8_t *)"s", 1), 0);
    ck_assert_int_eq(cm_store_apply_agg(ap, ag, nm), 0);
    r = (struct apply_res){.base = base};
    ck_assert_int_eq(cm_store_apply_send(st, ap, on_apply, &r), 0);
    event_base_dispatch(base);
    ck_assert(r.done && r.err == -EPROTO);
    ck_assert_ptr_nonnull(strstr(cm_store_errstr(st), "WRONGTYPE"));
    redisReply *ex = redisCommand(c, "EXISTS %s:{5}:m:mig-9 %s:{5}:pos", cfg.key_prefix,
                                  cfg.key_prefix);
    ck_assert(ex && ex->type == REDIS_REPLY_INTEGER && ex->integer == 0);
    freeReplyObject(ex);
    redisFree(c);
    cm_agg_free(none);

    free(before);
    cm_agg_free(rag);
    cm_names_free(rnm);
    cm_agg_free(neg);
    cm_agg_free(ag);
    cm_names_free(nm);
    cm_store_free(st);
    event_base_free(base);
    cm_config_free(&cfg);
}
END_TEST

/* Non-UTF-8 and far-future messages through Kafka (issue 8, section 1): each
 * ends in the dead-letter topic with its own reason (invalid_utf8,
 * out_of_range), and the figures read from Redis still equal replay. */
START_TEST(test_hostile_values_dead_lettered)
{
    SETUP();
    /* by hand: a grant valid until 10000-02-09 (cohort "10000-02" once), a
     * grant of scheme "S\xe9JOUR" (Latin-1), an entry whose migrant id (and
     * so Kafka key) is not UTF-8 */
    static const uint8_t y10000[] = {
        0x0a, 0x09, 'h', 'o', 's', 't', 'i', 'l', 'e', '-', '1', 0x12, 0x04, 'h', 'm', '-',
        '1', 0x18, 0x80, 0x81, 0xc8, 0xac, 0x06, 0x62, 0x21, 0x0a, 0x04, 'h', 'p', '-', '1',
        0x12, 0x07, 'S', 'A', 'W', 'P', '-', 'E', 'S', 0x20, 0x80, 0x81, 0xc8, 0xac, 0x06,
        0x28, 0xff, 0xfa, 0xa3, 0x81, 0xb0, 0x07, 0x3a, 0x03, 'U', 'K', 'R'};
    static const uint8_t latin1[] = {
        0x0a, 0x09, 'h', 'o', 's', 't', 'i', 'l', 'e', '-', '2', 0x12, 0x04, 'h', 'm', '-',
        '2', 0x18, 0x80, 0x81, 0xc8, 0xac, 0x06, 0x62, 0x1f, 0x0a, 0x04, 'h', 'p', '-', '1',
        0x12, 0x06, 'S', 0xe9, 'J', 'O', 'U', 'R', 0x20, 0x80, 0x81, 0xc8, 0xac, 0x06, 0x28,
        0x80, 0xcf, 0xa2, 0xb0, 0x06, 0x3a, 0x03, 'U', 'K', 'R'};
    static const uint8_t badkey[] = {0x0a, 0x09, 'h', 'o', 's',  't',  'i',  'l',  'e',
                                     '-',  '3',  0x12, 0x04, 'h',  'm',  0xff, '3',  0x18,
                                     0x80, 0x81, 0xc8, 0xac, 0x06, 0x52, 0x00};
    struct {
        const uint8_t *b;
        size_t n;
        enum cm_reject why;
        int seen;
    } hand[] = {{y10000, sizeof y10000, CM_REJ_OUT_OF_RANGE, 0},
                {latin1, sizeof latin1, CM_REJ_INVALID_UTF8, 0},
                {badkey, sizeof badkey, CM_REJ_INVALID_UTF8, 0}};
    const int nhand = 3;

    /* a generated stream (its own faults include both reasons), the hand
     * records in its middle; what each record should be, by cm_decode */
    const char *conf = write_conf("c.conf", "hostile", 300, 4);
    const char *gev = path_in("gen.bin"), *ev = path_in("ev.bin");
    gen(gev, 12, 1500);
    long ngen = count_records(gev), n = 0;
    long want[CM_REJ__COUNT] = {0}, got[CM_REJ__COUNT] = {0};
    struct cm_decoder *dec = cm_decoder_new();
    ck_assert_ptr_nonnull(dec);
    FILE *fi = fopen(gev, "rb"), *fo = fopen(ev, "wb");
    ck_assert(fi && fo);
    struct cm_frame_reader fr;
    const uint8_t *data;
    size_t len;
    struct cm_event cev;
    cm_frame_reader_init(&fr, fi);
    while (cm_frame_read(&fr, &data, &len) == 1) {
        ck_assert_int_eq(cm_frame_write(fo, data, len), 0);
        want[cm_decode(dec, data, len, &cev)]++;
        if (++n == ngen / 2)
            for (int i = 0; i < nhand; i++) {
                ck_assert_int_eq(cm_frame_write(fo, hand[i].b, hand[i].n), 0);
                ck_assert_int_eq(cm_decode(dec, hand[i].b, hand[i].n, &cev), hand[i].why);
                want[hand[i].why]++;
                n++;
            }
    }
    cm_frame_reader_free(&fr);
    fclose(fi);
    ck_assert_int_eq(fclose(fo), 0);
    cm_decoder_free(dec);
    ck_assert_int_eq(n, ngen + nhand);
    /* the seed gives both reasons besides the hand records */
    ck_assert_int_gt(want[CM_REJ_INVALID_UTF8], 2 + 2);
    ck_assert_int_gt(want[CM_REJ_OUT_OF_RANGE], 1 + 2);

    publish(conf, ev);
    pid_t d = daemon_start(conf, path_in("d.log"), NULL);
    wait_caught_up(conf, n, 90);
    ck_assert(alive(d));
    compare(conf, AS_OF, ev, NULL);
    compare(conf, "9999-12-31T23:59:59Z", ev, NULL);
    stop_daemon(d);
    /* each source offset once, invalid + too late of replay in all */
    ck_assert_int_eq(read_dlq(), expected_dead_letters());

    /* and each with its reason: the hand records found by their bytes */
    char err[512];
    rd_kafka_conf_t *kc = rd_kafka_conf_new();
    ck_assert(rd_kafka_conf_set(kc, "bootstrap.servers", brokers, err, sizeof(err)) ==
                  RD_KAFKA_CONF_OK &&
              rd_kafka_conf_set(kc, "enable.partition.eof", "true", err, sizeof(err)) ==
                  RD_KAFKA_CONF_OK &&
              rd_kafka_conf_set(kc, "group.id", "dlq-reasons", err, sizeof(err)) ==
                  RD_KAFKA_CONF_OK);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, err, sizeof(err));
    ck_assert_msg(rk != NULL, "%s", err);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(N_PARTS);
    for (int i = 0; i < N_PARTS; i++)
        rd_kafka_topic_partition_list_add(l, "circmon.events.dlq", i)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    ck_assert_int_eq(rd_kafka_assign(rk, l), 0);
    rd_kafka_topic_partition_list_destroy(l);
    int eof = 0;
    double end = now_s() + 30;
    while (eof < N_PARTS) {
        ck_assert_msg(now_s() < end, "reading the dead-letter topic timed out");
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            eof++;
            rd_kafka_message_destroy(m);
            continue;
        }
        ck_assert_msg(!m->err, "%s", rd_kafka_message_errstr(m));
        rd_kafka_headers_t *h = NULL;
        const void *v;
        size_t vl;
        ck_assert(rd_kafka_message_headers(m, &h) == 0 &&
                  rd_kafka_header_get_last(h, CM_DLQ_HDR_REASON, &v, &vl) == 0);
        int r = -1;
        for (int k = 0; k < CM_REJ__COUNT && r < 0; k++)
            if (strlen(cm_reject_name(k)) == vl && !memcmp(cm_reject_name(k), v, vl))
                r = k;
        ck_assert_msg(r > 0, "unknown reason '%.*s'", (int)vl, (const char *)v);
        got[r]++;
        for (int i = 0; i < nhand; i++)
            if (m->len == hand[i].n && !memcmp(m->payload, hand[i].b, m->len)) {
                ck_assert_int_eq(r, hand[i].why);
                hand[i].seen++;
            }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    for (int i = 0; i < nhand; i++)
        ck_assert_msg(hand[i].seen == 1, "hand record %d: %d dead letters", i, hand[i].seen);
    for (int k = 1; k < CM_REJ__COUNT; k++)
        if (k != CM_REJ_TOO_LATE)
            ck_assert_msg(got[k] == want[k], "reason %s: %ld dead letters, %ld records",
                          cm_reject_name(k), got[k], want[k]);
}
END_TEST

/* ------------------------------------------------------------ robustness */

/* Writes the events evs[0..n-1] as a framed file; returns its path. */
static const char *write_events(const char *name, const struct tev *evs, int n)
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
static int loop_latency(const char *log, double *p50, double *p99, double *max)
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

/* Kafka not there at start-up (nothing listens on port 1): circmond retries
 * within its start-up budget, then exits 1 naming the brokers and the
 * topic. It never takes an error for a partition count and goes on
 * "consuming". */
START_TEST(test_kafka_down_at_start)
{
    SETUP();
    const char *conf = path_in("down.conf");
    FILE *fp = fopen(conf, "w");
    ck_assert_ptr_nonnull(fp);
    fprintf(fp,
            "[kafka]\nbrokers = 127.0.0.1:1\ngroup_id = down\n"
            "[redis]\nunix_socket = %s\n",
            redis_sock);
    fclose(fp);
    const char *log = path_in("d.log");
    char budget[] = "CIRCMOND_TEST_STARTUP_BUDGET_MS=4000"; /* spawn writes into it */
    char *env[] = {budget, NULL};
    double t0 = now_s();
    pid_t d = daemon_start(conf, log, env);
    int st = wait_pid(d, 40);
    double dt = now_s() - t0;
    ck_assert_msg(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 1,
                  "circmond was to exit 1 with Kafka down (status %d, %s)", st, log);
    ck_assert_msg(dt >= 4.0, "gave up after %.1f s, before its 4 s budget", dt);
    ck_assert_msg(file_has(log, "kafka at 127.0.0.1:1, topic circmon.events: ") &&
                      file_has(log, "; retrying"),
                  "no retry logged (%s)", log);
    ck_assert_msg(file_has(log, "giving up after 4.0 s"), "no clear final message (%s)", log);
    ck_assert_msg(!file_has(log, "consuming"), "circmond went on consuming (%s)", log);
}
END_TEST

/* A stored state that does not unpack (garbage bytes SET by hand): its
 * migrant's events go to the dead-letter topic as state_unreadable, the
 * state stays as it is, the error names the migrant and the partition, and
 * every other migrant's figures are exact. Neither the partition nor the
 * daemon stops. */
START_TEST(test_state_unreadable)
{
    SETUP();
    const char *conf = write_conf("c.conf", "unreadable", 200, 4);
    const char *ev = path_in("ev.bin");
    gen(ev, 11, 1500);
    struct tev bad[] = {
        ev_grant(NULL, "broken-state", D(2021, 3, 1), "P1", "SAWP-ES", "MA", D(2021, 4, 1),
                 D(2021, 9, 30)),
        ev_entry(NULL, "broken-state", D(2021, 4, 2)),
        ev_exit(NULL, "broken-state", D(2021, 9, 20)),
        ev_entry(NULL, "broken-state", D(2022, 4, 2)),
    };
    const char *x = write_events("x.bin", bad, 4);
    /* The garbage is set under every partition's hash tag: whichever
     * partition the key lands in reads it. */
    static const char garbage[] = "\xff\xfe garbage, not a MigrantState \x01\x02";
    redisContext *c = redis_conn();
    ck_assert_ptr_nonnull(c);
    for (int p = 0; p < N_PARTS; p++) {
        redisReply *r = redisCommand(c, "SET circmon:{%d}:m:broken-state %b", p, garbage,
                                     sizeof(garbage) - 1);
        ck_assert(r && r->type == REDIS_REPLY_STATUS);
        freeReplyObject(r);
    }
    publish(conf, ev);
    publish(conf, x);
    long n = count_records(ev) + 4;
    const char *log = path_in("d.log");
    pid_t d = daemon_start(conf, log, NULL);
    wait_caught_up(conf, n, 60);
    ck_assert(alive(d));
    /* Redis holds the figures of the other migrants, exactly. */
    compare(conf, AS_OF, ev, NULL);
    compare(conf, AS_OF_MID, ev, NULL);
    for (int p = 0; p < N_PARTS; p++) {
        redisReply *r = redisCommand(c, "GET circmon:{%d}:m:broken-state", p);
        ck_assert(r && r->type == REDIS_REPLY_STRING && r->len == sizeof(garbage) - 1 &&
                  !memcmp(r->str, garbage, r->len));
        freeReplyObject(r);
    }
    redisFree(c);
    ck_assert_msg(file_has(log, "the state of migrant 'broken-state' in Redis"),
                  "the unreadable state is not reported (%s)", log);
    stop_daemon(d);
    long unreadable = 0;
    long want = expected_dead_letters() + 4;
    ck_assert_int_eq(read_dlq_reason("state_unreadable", &unreadable), want);
    ck_assert_int_eq(unreadable, 4);
}
END_TEST

/* Redis stops answering (SIGSTOP) for longer than command_timeout_ms while
 * events arrive: circmond drops the connection, reconnects once Redis
 * answers again, resynchronises, and the figures are exact. */
START_TEST(test_redis_command_timeout)
{
    SETUP();
    const char *ev = path_in("ev.bin"), *a = path_in("a.bin"), *b = path_in("b.bin");
    gen(ev, 12, 3000);
    long n = count_records(ev);
    split(ev, n / 2, a, b);
    const char *conf = write_conf("c.conf", "timeout", 200, 4);
    const char *log = path_in("d.log");
    publish(conf, a);
    pid_t d = daemon_start(conf, log, NULL);
    wait_caught_up(conf, n / 2, 60);
    ck_assert_int_eq(kill(redis_pid, SIGSTOP), 0);
    publish(conf, b);
    double end = now_s() + 30;
    while (!file_has(log, "redis command timed out after 3000 ms")) {
        if (now_s() > end)
            kill(redis_pid, SIGCONT);
        ck_assert_msg(now_s() < end, "no command timed out while Redis was stopped (%s)", log);
        nap_ms(50);
    }
    ck_assert_int_eq(kill(redis_pid, SIGCONT), 0);
    wait_caught_up(conf, n, 90);
    ck_assert(alive(d));
    ck_assert_msg(file_has(log, "resynchronising from the positions in Redis (redis reconnected)"),
                  "no resync after the reconnection (%s)", log);
    compare(conf, AS_OF, a, b);
    compare(conf, AS_OF_MID, a, b);
    stop_daemon(d);
}
END_TEST

/* One heavy migrant (4000 events within one reorder window, so that each
 * arrival folds a long window again) among ordinary ones: figures exact,
 * and the loop latency circmond reports at its stop. */
START_TEST(test_heavy_migrant)
{
    SETUP();
    const char *conf = write_conf("c.conf", "heavy", 1000, 4);
    const char *ev = path_in("ev.bin");
    gen(ev, 13, 1000);
    enum { N_HEAVY = 4000 };
    struct tev *h = calloc(N_HEAVY, sizeof(*h));
    ck_assert_ptr_nonnull(h);
    h[0] = ev_grant(NULL, "heavy-1", D(2021, 1, 1), "P1", "SAWP-ES", "MA", D(2021, 1, 2),
                    D(2021, 12, 31));
    /* an entry and an exit every 10 minutes from 2021-01-02: 4000 events in 14 days */
    for (int i = 1; i < N_HEAVY; i++)
        h[i] = i % 2 ? ev_entry(NULL, "heavy-1", D(2021, 1, 2) + (int64_t)i * 600)
                     : ev_exit(NULL, "heavy-1", D(2021, 1, 2) + (int64_t)i * 600);
    const char *x = write_events("heavy.bin", h, N_HEAVY);
    free(h);
    publish(conf, ev);
    publish(conf, x);
    long n = count_records(ev) + N_HEAVY;
    const char *log = path_in("d.log");
    pid_t d = daemon_start(conf, log, NULL);
    wait_caught_up(conf, n, 120);
    ck_assert(alive(d));
    compare(conf, AS_OF, ev, x);
    compare(conf, AS_OF_MID, ev, x);
    stop_daemon(d);
    double p50, p99, max;
    ck_assert_msg(loop_latency(log, &p50, &p99, &max), "no loop latency at the stop (%s)", log);
    fprintf(stderr, "test_heavy_migrant: loop latency p50/p99/max %.1f/%.1f/%.1f ms\n", p50, p99,
            max);
}
END_TEST

/* The one reader of stored positions: absent is 0, a decimal >= 0 is the
 * position, anything else is refused. */
START_TEST(test_positions_read)
{
    SETUP();
    const char *conf = write_conf("c.conf", "pos", 100, 1);
    struct cm_config cfg = {0};
    char err[512];
    ck_assert_msg(cm_config_load(&cfg, conf, err, sizeof(err)) == 0, "%s", err);
    redis_cmd_ok("SET circmon:{3}:pos 42");
    redis_cmd_ok("SET circmon:{5}:pos -1");
    redis_cmd_ok("SET circmon:{6}:pos 12x");
    int32_t parts[] = {3, 4};
    int64_t pos[2] = {-7, -7};
    ck_assert_msg(cm_store_read_positions_of(&cfg, parts, 2, pos, err, sizeof(err)) == 0, "%s",
                  err);
    ck_assert_int_eq(pos[0], 42);
    ck_assert_int_eq(pos[1], 0);
    int32_t neg[] = {5}, bad[] = {6};
    ck_assert_int_eq(cm_store_read_positions_of(&cfg, neg, 1, pos, err, sizeof(err)), -EPROTO);
    ck_assert_msg(strstr(err, "circmon:{5}:pos") != NULL, "%s", err);
    ck_assert_int_eq(cm_store_read_positions_of(&cfg, bad, 1, pos, err, sizeof(err)), -EPROTO);
    cm_config_free(&cfg);
}
END_TEST

/* A test case of s with the teardown that stops every process it started. */
static TCase *new_case(Suite *s, const char *name, int timeout_s)
{
    TCase *tc = tcase_create(name);
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_set_timeout(tc, timeout_s);
    suite_add_tcase(s, tc);
    return tc;
}

static Suite *suite(void)
{
    Suite *s = suite_create("e2e");
    TCase *tc = new_case(s, "store", 60);
    tcase_add_test(tc, test_zombie);
    tcase_add_test(tc, test_positions_read);

    tc = new_case(s, "daemon", 240);
    tcase_add_test(tc, test_end_to_end);
    tcase_add_test(tc, test_crash);
    tcase_add_test(tc, test_rebalance);
    tcase_add_test(tc, test_redis_restart);
    tcase_add_test(tc, test_redis_refusals_then_reconnect);

    tc = new_case(s, "operations", 120);
    tcase_add_test(tc, test_stop_with_services_gone);
    tcase_add_test(tc, test_idle_stays_in_group);
    tcase_add_test(tc, test_check_config_forced_kafka_settings);
    tcase_add_test(tc, test_position_past_topic_end_is_reported);

    tc = new_case(s, "robustness", 240);
    tcase_add_test(tc, test_kafka_down_at_start);
    tcase_add_test(tc, test_state_unreadable);
    tcase_add_test(tc, test_redis_command_timeout);
    tcase_add_test(tc, test_heavy_migrant);

    tc = new_case(s, "dead letters", 240);
    tcase_add_test(tc, test_bad_input);
    tcase_add_test(tc, test_bad_input_crash);
    tcase_add_test(tc, test_hostile_values_dead_lettered);
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
