/* cm_proc.h - the child processes of the integration suites (through
 * cm_svc.h and cm_e2e.h, or directly), header only: each started with
 * PR_SET_PDEATHSIG and recorded in pids[] (at most 32 at a time, else the
 * test fails), so that a teardown can kill what is left; waits poll with a
 * deadline. The suite that includes it owns dir (its directory) and the
 * pids. */
#ifndef CM_PROC_H
#define CM_PROC_H

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cm_bin.h"

#define CMP_UNUSED __attribute__((unused))

static CMP_UNUSED char dir[256];
static CMP_UNUSED pid_t pids[32];
static CMP_UNUSED int npids;

/* ------------------------------------------------------------ processes */

static CMP_UNUSED const char *top(void)
{
    const char *t = getenv("CM_TOP");
    return t && *t ? t : ".";
}

static CMP_UNUSED double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static CMP_UNUSED void nap_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

#define CMP_OWN_GROUP 1     /* the child leads a process group of its own */
#define CMP_TERM_ON_DEATH 2 /* SIGTERM, not SIGKILL, when the test process ends
                             * (Check's _exit: a service that must shut down
                             * cleanly, such as Prometheus) */
#define CMP_NO_SD_ENV 4     /* without the systemd variables of the test process
                             * (NOTIFY_SOCKET, WATCHDOG_*, JOURNAL_STREAM):
                             * only what env gives */

/* Starts argv (searched in PATH), stdout into out (or the pipe *pipe_fd),
 * stderr appended to err (NULL: /dev/null), with env (NAME=value,
 * NULL-terminated, may be NULL) added; flags CMP_*. Records the pid. */
static CMP_UNUSED pid_t spawn_ex(char *const argv[], const char *out, const char *err,
                                 int *pipe_fd, char *const env[], int flags)
{
    int fds[2] = {-1, -1};
    if (pipe_fd)
        ck_assert_int_eq(pipe(fds), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (flags & CMP_OWN_GROUP)
            setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, flags & CMP_TERM_ON_DEATH ? SIGTERM : SIGKILL);
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
        if (flags & CMP_NO_SD_ENV) {
            unsetenv("NOTIFY_SOCKET");
            unsetenv("WATCHDOG_USEC");
            unsetenv("WATCHDOG_PID");
            unsetenv("JOURNAL_STREAM");
        }
        for (int i = 0; env && env[i]; i++) {
            char kv[256];
            snprintf(kv, sizeof(kv), "%s", env[i]);
            char *eq = strchr(kv, '=');
            if (eq) {
                *eq = '\0';
                setenv(kv, eq + 1, 1);
            }
        }
        execvp(argv[0], argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    if (flags & CMP_OWN_GROUP)
        setpgid(pid, pid); /* both sides: no race with a kill of the group */
    if (pipe_fd) {
        close(fds[1]);
        *pipe_fd = fds[0];
    }
    ck_assert_int_lt(npids, (int)(sizeof(pids) / sizeof(pids[0])));
    pids[npids++] = pid;
    return pid;
}

/* spawn_ex without flags. */
static CMP_UNUSED pid_t spawn(char *const argv[], const char *out, const char *err, int *pipe_fd,
                              char *const env[])
{
    return spawn_ex(argv, out, err, pipe_fd, env, 0);
}

static CMP_UNUSED void forget(pid_t pid)
{
    for (int i = 0; i < npids; i++)
        if (pids[i] == pid)
            pids[i] = pids[--npids];
}

/* The wait status of pid within timeout_s, or -1 (then it is killed). */
static CMP_UNUSED int wait_pid(pid_t pid, double timeout_s)
{
    double end = now_s() + timeout_s;
    int st;
    for (;;) {
        if (waitpid(pid, &st, WNOHANG) == pid) {
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

static CMP_UNUSED int run_bin(const char *prog, char *const args[], const char *out, const char *err)
{
    char path[600];
    char *argv[32];
    int n = 0;
    cm_bin_path(path, sizeof(path), prog);
    argv[n++] = path;
    for (int i = 0; args[i] && n < 31; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    int st = wait_pid(spawn(argv, out, err, NULL, NULL), 120);
    return st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Whether pid is still running (not reaped yet). */
static CMP_UNUSED int alive(pid_t pid)
{
    int st;
    return waitpid(pid, &st, WNOHANG) == 0;
}

#endif
