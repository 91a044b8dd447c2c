/* check_systemd.c - circmond under a fake systemd: sd_notify messages, the watchdog, SIGHUP reloads.
 *
 * Each test starts its own redis-server (unix socket) and circmon-broker,
 * binds an AF_UNIX datagram socket and hands it to bin/circmond as
 * NOTIFY_SOCKET, then reads what circmond tells systemd. Every child gets
 * PR_SET_PDEATHSIG and the teardown kills whatever is left. Waiting is for
 * a message or a condition with a deadline, never a fixed sleep; the only
 * timed window is the one that checks the watchdog stays silent. */
#include <check.h>
#include <inttypes.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <sys/uio.h>
#include <unistd.h>

#include "circmon/log.h"
#include "cm_svc.h"

static int nfd = -1; /* the notify socket */

#define MAXMSG 4096
static char *msgs[MAXMSG]; /* every datagram received, in order */
static int nmsgs;

/* argv with stdout (or a pipe, *pipe_fd) to /dev/null and stderr into err;
 * env: extra NAME=VALUE, nothing of the test's own systemd variables. */
static pid_t sd_spawn(char *const argv[], const char *err, int *pipe_fd, char *const env[])
{
    return spawn_ex(argv, NULL, err, pipe_fd, env, CMP_NO_SD_ENV);
}

static void notify_open(void)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    ck_assert_int_lt(strlen(dir) + 13, sizeof(a.sun_path));
    memcpy(a.sun_path, dir, strlen(dir));
    memcpy(a.sun_path + strlen(dir), "/notify.sock", 13);
    nfd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(nfd, 0);
    ck_assert_int_eq(bind(nfd, (struct sockaddr *)&a, sizeof(a)), 0);
}

static void setup(void)
{
    svc_dir_make("check_systemd");
    nmsgs = 0;
    redis_start(0);
    broker_start(2);
    notify_open();
}

static void teardown(void)
{
    kill_all();
    if (nfd >= 0)
        close(nfd);
    nfd = -1;
    while (nmsgs > 0)
        free(msgs[--nmsgs]);
    svc_dir_remove();
}

/* Receives one datagram within timeout_s into msgs[]; its index or -1. */
static int recv_one(double timeout_s)
{
    struct pollfd pfd = {.fd = nfd, .events = POLLIN};
    int ms = (int)(timeout_s * 1000);
    if (poll(&pfd, 1, ms < 0 ? 0 : ms) <= 0)
        return -1;
    char buf[4096];
    ssize_t n = recv(nfd, buf, sizeof(buf) - 1, 0);
    ck_assert_int_gt(n, 0);
    buf[n] = '\0';
    ck_assert_int_lt(nmsgs, MAXMSG);
    msgs[nmsgs] = strdup(buf);
    ck_assert_ptr_nonnull(msgs[nmsgs]);
    return nmsgs++;
}

/* Waits for a message holding the line `line` (e.g. "READY=1"); its index. */
static int expect(const char *line, double timeout_s, pid_t daemon)
{
    double end = now_s() + timeout_s;
    for (;;) {
        double left = end - now_s();
        ck_assert_msg(left > 0, "no %s within %.0f s (last: %s)", line, timeout_s,
                      nmsgs ? msgs[nmsgs - 1] : "none");
        int i = recv_one(left < 0.2 ? left : 0.2);
        if (i < 0) {
            ck_assert_msg(alive(daemon), "circmond exited while waiting for %s", line);
            continue;
        }
        const char *p = msgs[i];
        size_t l = strlen(line);
        while (p) {
            if (!strncmp(p, line, l))
                return i;
            p = strchr(p, '\n');
            if (p)
                p++;
        }
    }
}

static int has_line(int i, const char *line)
{
    size_t l = strlen(line);
    for (const char *p = msgs[i]; p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (!strncmp(p, line, l))
            return 1;
    return 0;
}

/* file_has of a file that must exist (a log the test wrote). */
static int log_has(const char *path, const char *needle)
{
    ck_assert_msg(access(path, R_OK) == 0, "cannot read %s", path);
    return file_has(path, needle);
}

/* The base configuration, with extra text appended (a section or keys). */
static void write_conf(const char *path, const char *circmon_extra, const char *extra)
{
    FILE *fp = fopen(path, "w");
    ck_assert_ptr_nonnull(fp);
    fprintf(fp,
            "[circmon]\nlog_level = info\n%s"
            "[kafka]\nbrokers = %s\ngroup_id = sysd\nrdkafka.session.timeout.ms = 6000\n"
            "[redis]\nunix_socket = %s\ncommand_timeout_ms = 3000\nconnect_timeout_ms = 1000\n"
            "[http]\nport = 0\n%s",
            circmon_extra, brokers, redis_sock, extra);
    ck_assert_int_eq(fclose(fp), 0);
}

static pid_t daemon_start(const char *conf, const char *log, const char *wd_usec,
                          const char *stall_ms)
{
    static char env_sock[400], env_wd[64], env_stall[80];
    char path[600];
    char *env[4];
    int n = 0;
    snprintf(env_sock, sizeof(env_sock), "NOTIFY_SOCKET=%s/notify.sock", dir);
    env[n++] = env_sock;
    if (wd_usec) {
        snprintf(env_wd, sizeof(env_wd), "WATCHDOG_USEC=%s", wd_usec);
        env[n++] = env_wd;
    }
    if (stall_ms) {
        snprintf(env_stall, sizeof(env_stall), "CIRCMOND_TEST_WATCHDOG_STALL_MS=%s", stall_ms);
        env[n++] = env_stall;
    }
    env[n] = NULL;
    cm_bin_path(path, sizeof(path), "circmond");
    char *argv[] = {path, "--config", (char *)conf, "--foreground", NULL};
    return sd_spawn(argv, log, NULL, env);
}

static void stop_daemon(pid_t pid)
{
    ck_assert_int_eq(kill(pid, SIGTERM), 0);
    int st = wait_pid(pid, 30);
    ck_assert_msg(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
                  "circmond did not stop cleanly (status %d)", st);
}

/* READY, STATUS, WATCHDOG, RELOADING (+MONOTONIC_USEC), READY, STOPPING, in
 * this order; the reload applies the new log level (info lines stop). */
START_TEST(test_notify_sequence)
{
    setup();
    char conf[300], log[300];
    snprintf(conf, sizeof(conf), "%s/c.conf", dir);
    snprintf(log, sizeof(log), "%s/d.log", dir);
    write_conf(conf, "", "");
    pid_t d = daemon_start(conf, log, "1000000", NULL);
    int r1 = expect("READY=1", 60, d);
    ck_assert_msg(has_line(r1, "STATUS="), "READY=1 without STATUS=: %s", msgs[r1]);
    int w1 = expect("WATCHDOG=1", 5, d);
    int w2 = expect("WATCHDOG=1", 5, d);
    ck_assert_int_gt(w1, r1);
    ck_assert_int_gt(w2, w1);
    ck_assert(log_has(log, "info: "));

    /* the same file with log_level = warning, and a password (restart-only) */
    write_conf(conf, "", "[redis]\npassword = s3cr3t-XYZ\n");
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "sed -i 's/^log_level = info/log_level = warning/' '%s'", conf);
    ck_assert_int_eq(system(cmd), 0);
    ck_assert_int_eq(kill(d, SIGHUP), 0);
    int rl = expect("RELOADING=1", 10, d);
    ck_assert_msg(has_line(rl, "MONOTONIC_USEC="), "RELOADING=1 without MONOTONIC_USEC=: %s",
                  msgs[rl]);
    int r2 = expect("READY=1", 10, d);
    ck_assert_int_gt(r2, rl);
    ck_assert(!log_has(log, "reload refused"));
    ck_assert(log_has(log, "[redis] password changed: takes effect at the next start"));
    ck_assert_msg(!log_has(log, "s3cr3t"), "a secret reached the log");

    ck_assert_int_eq(kill(d, SIGTERM), 0);
    int sp = expect("STOPPING=1", 30, d);
    ck_assert_int_gt(sp, r2);
    int st = wait_pid(d, 30);
    ck_assert_msg(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %d", st);
    /* at warning, the info lines of the stop are gone */
    ck_assert_msg(!log_has(log, "info: signal"), "info lines still logged after the reload");
    ck_assert_msg(!log_has(log, "info: stopped:"), "info lines still logged after the reload");
}
END_TEST

/* A loop that stops making progress (the test hook stops the loop-latency
 * probe) stops feeding the watchdog. */
START_TEST(test_watchdog_stall)
{
    setup();
    char conf[300], log[300];
    snprintf(conf, sizeof(conf), "%s/c.conf", dir);
    snprintf(log, sizeof(log), "%s/d.log", dir);
    write_conf(conf, "", "");
    /* the hook's delay counts from READY=1 */
    pid_t d = daemon_start(conf, log, "1000000", "1500");
    int r = expect("READY=1", 60, d);
    int w = expect("WATCHDOG=1", 5, d);
    ck_assert_int_gt(w, r);
    /* the stall the hook made (not one of a loaded machine before it) */
    int s;
    do
        s = expect("STATUS=stalled", 10, d);
    while (!log_has(log, "the loop-latency probe stops\n"));
    /* fed every 0.5 s before: nothing in 6 intervals now */
    double end = now_s() + 3.0;
    while (now_s() < end) {
        int i = recv_one(end - now_s());
        if (i >= 0)
            ck_assert_msg(!has_line(i, "WATCHDOG=1"), "WATCHDOG=1 after the stall (%d, %d)", s,
                          i);
    }
    ck_assert(alive(d));
    ck_assert(log_has(log, "WATCHDOG=1 withheld"));
    stop_daemon(d);
}
END_TEST

static void reload_expect(pid_t d, const char *conf, const char *circmon_extra,
                          const char *extra, const char *log, const char *needle)
{
    write_conf(conf, circmon_extra, extra);
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "sed -i 's/^log_level = info/log_level = warning/' '%s'", conf);
    ck_assert_int_eq(system(cmd), 0);
    ck_assert_int_eq(kill(d, SIGHUP), 0);
    int rl = expect("RELOADING=1", 10, d);
    int r = expect("READY=1", 10, d);
    ck_assert_int_gt(r, rl);
    ck_assert_msg(log_has(log, needle), "no \"%s\" in %s", needle, log);
}

/* An invalid file and each refused key leave everything as it was (the log
 * level stays info); the error names the key. */
START_TEST(test_reload_refused)
{
    setup();
    char conf[300], log[300];
    snprintf(conf, sizeof(conf), "%s/c.conf", dir);
    snprintf(log, sizeof(log), "%s/d.log", dir);
    write_conf(conf, "", "[scheme SAWP]\ngrace_days = 3\n");
    pid_t d = daemon_start(conf, log, NULL, NULL);
    expect("READY=1", 60, d);
    reload_expect(d, conf, "no_such_key = 1\n", "[scheme SAWP]\ngrace_days = 3\n", log,
                  "[circmon] no_such_key: unknown key");
    reload_expect(d, conf, "", "[scheme SAWP]\ngrace_days = 4\n", log,
                  "reload refused: [scheme SAWP] grace_days");
    reload_expect(d, conf, "", "[scheme SAWP]\ngrace_days = 3\n[scheme *]\ngrace_days = 1\n",
                  log, "reload refused: [scheme *] grace_days");
    reload_expect(d, conf, "", "[scheme SAWP]\ngrace_days = 3\nstay_limit = 90/180\n", log,
                  "reload refused: [scheme SAWP] stay_limit");
    reload_expect(d, conf, "reorder_window_days = 10\n", "[scheme SAWP]\ngrace_days = 3\n", log,
                  "reload refused: [circmon] reorder_window_days");
    reload_expect(d, conf, "max_window_events = 100\n", "[scheme SAWP]\ngrace_days = 3\n", log,
                  "reload refused: [circmon] max_window_events");
    reload_expect(d, conf, "nationality_cohorts = yes\n", "[scheme SAWP]\ngrace_days = 3\n", log,
                  "reload refused: [circmon] nationality_cohorts");
    /* a nationality rule while the fold keeps no cohorts per nationality */
    reload_expect(d, conf, "", "[scheme SAWP]\ngrace_days = 3\n[alert n]\nscheme = SAWP\n"
                  "nationality = MEX\nindicator = overstay_rate\nabove = 0.1\n", log,
                  "[alert n] nationality: needs [circmon] nationality_cohorts = yes");
    /* a section may be reopened: these keys go after the scheme */
    reload_expect(d, conf, "", "[scheme SAWP]\ngrace_days = 3\n[kafka]\ntopic = other\n", log,
                  "reload refused: [kafka] topic");
    reload_expect(d, conf, "", "[scheme SAWP]\ngrace_days = 3\n[kafka]\ndlq_topic = o.dlq\n",
                  log, "reload refused: [kafka] dlq_topic");
    reload_expect(d, conf, "", "[scheme SAWP]\ngrace_days = 3\n[redis]\nkey_prefix = other\n",
                  log, "reload refused: [redis] key_prefix");
    ck_assert(alive(d));
    stop_daemon(d);
    /* every reload was refused: the level stayed info */
    ck_assert_msg(log_has(log, "info: stopped:"), "a refused reload changed the log level");
    ck_assert(!log_has(log, "reload: [circmon] log_level"));
}
END_TEST

/* ------------------------------------------------------------ journald */

static char jbuf[16][600];
static int jn, jcalls;

static int capture(const struct iovec *iov, int n)
{
    jcalls++;
    jn = 0;
    for (int i = 0; i < n && i < 16; i++, jn++)
        snprintf(jbuf[i], sizeof(jbuf[i]), "%.*s", (int)iov[i].iov_len, (const char *)iov[i].iov_base);
    return 0;
}

static int jhas(const char *field)
{
    for (int i = 0; i < jn; i++)
        if (!strcmp(jbuf[i], field))
            return 1;
    return 0;
}

/* stderr is the journal when JOURNAL_STREAM names it: entries carry
 * PRIORITY (syslog's), MESSAGE_ID and the fields; otherwise the line. */
START_TEST(test_journal_fields)
{
    struct stat sb;
    char js[64], mid[64];
    const char *t = getenv("TMPDIR");
    snprintf(dir, sizeof(dir), "%s/check_systemd.XXXXXX", t && *t ? t : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char err[300];
    snprintf(err, sizeof(err), "%s/stderr", dir);
    int fd = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_ge(dup2(fd, STDERR_FILENO), 0);
    close(fd);
    ck_assert_int_eq(fstat(STDERR_FILENO, &sb), 0);
    snprintf(js, sizeof(js), "%ju:%ju", (uintmax_t)sb.st_dev, (uintmax_t)sb.st_ino);
    setenv("JOURNAL_STREAM", js, 1);
    cm_log_set_journal_sink(capture);
    cm_log_set_ident("circmond");
    ck_assert_int_eq(cm_log_detect_journal(), 1);
    const struct cm_log_field f[] = {{"CIRCMON_PARTITION", "3"}, {"CIRCMON_SCHEME", NULL}};
    cm_log_ev(CM_LOG_WARNING, CM_LOGID_REDIS_DOWN, f, 2, "redis %s", "down");
    ck_assert_int_eq(jcalls, 1);
    ck_assert(jhas("MESSAGE=redis down"));
    ck_assert(jhas("PRIORITY=4"));
    ck_assert(jhas("SYSLOG_IDENTIFIER=circmond"));
    ck_assert(jhas("CIRCMON_PARTITION=3"));
    snprintf(mid, sizeof(mid), "MESSAGE_ID=%s", cm_log_id_str(CM_LOGID_REDIS_DOWN));
    ck_assert(jhas(mid));
    ck_assert_uint_eq(strlen(cm_log_id_str(CM_LOGID_REDIS_DOWN)), 32);
    cm_log_err("plain");
    ck_assert_int_eq(jcalls, 2);
    ck_assert(jhas("PRIORITY=3"));
    ck_assert(!jhas(mid));
    /* the ids differ from each other */
    for (int a = 1; a < CM_LOGID_COUNT; a++)
        for (int b = a + 1; b < CM_LOGID_COUNT; b++)
            ck_assert_str_ne(cm_log_id_str((enum cm_log_id)a), cm_log_id_str((enum cm_log_id)b));
    /* another stream: lines on stderr, the journal untouched */
    snprintf(js, sizeof(js), "%ju:%ju", (uintmax_t)sb.st_dev, (uintmax_t)sb.st_ino + 1);
    setenv("JOURNAL_STREAM", js, 1);
    ck_assert_int_eq(cm_log_detect_journal(), 0);
    cm_log_ev(CM_LOG_WARNING, CM_LOGID_REDIS_UP, f, 1, "back");
    ck_assert_int_eq(jcalls, 2);
    ck_assert(log_has(err, "circmond["));
    ck_assert(log_has(err, "]: warning: back"));
    unsetenv("JOURNAL_STREAM");
    cm_log_set_journal_sink(NULL);
    snprintf(err, sizeof(err), "rm -rf '%s'", dir);
    ck_assert_int_eq(system(err), 0);
}
END_TEST

/* A reload hands new alert rules to the alerts: a daemon started without
 * rules takes the one the file now has (here without an HTTP endpoint, so
 * it says the rule waits for the read side). */
START_TEST(test_reload_alert_rules)
{
    setup();
    char conf[300], log[300];
    snprintf(conf, sizeof(conf), "%s/c.conf", dir);
    snprintf(log, sizeof(log), "%s/d.log", dir);
    write_conf(conf, "", "");
    pid_t d = daemon_start(conf, log, NULL, NULL);
    int r1 = expect("READY=1", 60, d);
    ck_assert(!log_has(log, "alerts: 1 rules"));
    write_conf(conf, "",
               "[alerts]\ninterval_s = 60\n"
               "[alert over]\nscheme = *\nindicator = overstay_rate\nabove = 0.05\n");
    ck_assert_int_eq(kill(d, SIGHUP), 0);
    int rl = expect("RELOADING=1", 10, d);
    int r2 = expect("READY=1", 10, d);
    ck_assert_int_gt(rl, r1);
    ck_assert_int_gt(r2, rl);
    ck_assert_msg(!log_has(log, "reload refused"), "the rule was refused (%s)", log);
    ck_assert_msg(log_has(log, "alerts: 1 rules"), "the new rule did not reach the alerts (%s)",
                  log);
    stop_daemon(d);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("systemd");
    TCase *tc = tcase_create("notify");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_journal_fields);
    tcase_add_test(tc, test_notify_sequence);
    tcase_add_test(tc, test_watchdog_stall);
    tcase_add_test(tc, test_reload_refused);
    tcase_add_test(tc, test_reload_alert_rules);
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
