/* check_alertmanager.c - config/prometheus/circmon.rules.yml: promtool's checks and unit tests, then a real Prometheus and Alertmanager on loopback that deliver a scheme alert. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cm_svc.h"

static pid_t kids[3] = {-1, -1, -1};

static void setup(void)
{
    const char *t = getenv("CM_TOP");
    ck_assert_msg(t && *t, "CM_TOP is not set (the repository top)");
    svc_dir_make("check_alertmanager");
}

static void teardown(void)
{
    for (int i = 0; i < 3; i++)
        if (kids[i] > 0) {
            kill(kids[i], SIGTERM);
            wait_pid(kids[i], 30); /* reaped and no longer recorded */
            kids[i] = -1;
        }
    svc_dir_remove();
}

START_TEST(test_promtool)
{
    char cmd[9000];
    snprintf(cmd, sizeof cmd, "promtool check rules '%s/config/prometheus/circmon.rules.yml' >'%s/out' 2>&1",
             top(), dir);
    ck_assert_msg(system(cmd) == 0, "promtool check rules failed: see %s/out", dir);
    snprintf(cmd, sizeof cmd, "cd '%s/tests/prometheus' && promtool test rules *.test.yml >'%s/out' 2>&1",
             top(), dir);
    int st = system(cmd);
    if (st != 0) {
        snprintf(cmd, sizeof cmd, "cat '%s/out' >&2", dir);
        (void)system(cmd);
    }
    ck_assert_msg(st == 0, "promtool test rules failed");
}
END_TEST

/* A loopback TCP port below the ephemeral range that is free now. */
static int free_port(int from)
{
    for (int p = from; p < from + 2000; p++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        ck_assert_int_ge(fd, 0);
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
        close(fd);
        if (ok)
            return p;
    }
    ck_abort_msg("no free port from %d", from);
    return -1;
}

/* A child that answers every connection on port with the metrics text body:
 * what circmond's /metrics shows while an instance fires. */
static pid_t serve_metrics(int port, const char *body)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(listen(fd, 16), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        char req[4096], head[256];
        /* Check's SIGTERM handler (inherited) would signal the whole process group */
        signal(SIGTERM, SIG_DFL);
        signal(SIGPIPE, SIG_IGN);
        for (;;) {
            int c = accept(fd, NULL, NULL);
            if (c < 0)
                continue;
            if (read(c, req, sizeof req) > 0) {
                int n = snprintf(head, sizeof head,
                                 "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
                                 "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                                 strlen(body));
                if (write(c, head, (size_t)n) < 0 || write(c, body, strlen(body)) < 0) {
                    /* the scraper went away; the next scrape asks again */
                }
            }
            close(c);
        }
    }
    close(fd);
    return pid;
}

START_TEST(test_alert_reaches_alertmanager)
{
    int mport = free_port(20000), aport = free_port(mport + 1), pport = free_port(aport + 1);
    char buf[65536];

    kids[0] = serve_metrics(mport,
                            "# TYPE circmon_alert_firing gauge\n"
                            "circmon_alert_firing{alert=\"over5\",scheme=\"SAWP\",nationality=\"\"} 1\n"
                            "circmon_alert_firing{alert=\"over5\",scheme=\"H2A\",nationality=\"\"} 0\n"
                            "# TYPE circmon_ready gauge\ncircmon_ready 1\n");

    kids[1] = alertmanager_start(aport);
    kids[2] = prometheus_rules_start(pport, aport, mport);

    /* Poll Alertmanager's API, bounded: the alert of SAWP arrives, H2A's never. */
    alertmanager_wait(aport, "SAWP", "over5", kids[1], kids[2], buf, sizeof buf);
    ck_assert_ptr_null(strstr(buf, "\"scheme\":\"H2A\""));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("alertmanager");
    TCase *tc = tcase_create("rules");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_promtool);
    tcase_add_test(tc, test_alert_reaches_alertmanager);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
