/* check_prometheus.c - a real Prometheus scrapes circmon's exposition; the Grafana dashboard's queries run on it.
 *
 * Two cases (the dashboard's structure is check_grafana.c's):
 * - "exposition": cm_prom_indicators of a `circmonctl replay` document,
 *   served by a tiny server of the test, passes `promtool check metrics`, is
 *   scraped by Prometheus (Debian's `prometheus`, 1 s scrape interval,
 *   generated configuration, TSDB in a temporary directory, port below the
 *   ephemeral range with a retry), and Prometheus's HTTP API gives
 *   `sum by (scheme) (circmon_permit_outcomes{outcome!="no_show"})` equal to
 *   the replay's expected departures; every indicator query of the dashboard
 *   returns data.
 * - "circmond": the same against a running circmond's /metrics (redis-server
 *   and circmon-broker started by the test), the sum equal to circmond's
 *   /v1/indicators, and every query of the dashboard returns data.
 *
 * Every wait polls a condition with a deadline. The test stops what it
 * started (Prometheus with SIGTERM, then SIGKILL after 20 s); when it fails
 * (Check then ends it with _exit), every child gets PR_SET_PDEATHSIG
 * (SIGTERM for Prometheus) and the temporary directory is left for its logs. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
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

#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <jansson.h>

#include "circmon/config.h"
#include "circmon/framing.h"
#include "circmon/prom.h"
#include "circmon/store.h"
#include "cm_dash.h"
#include "cm_svc.h"

#define N_PARTS 4
#define AS_OF "2025-01-01"

/* ------------------------------------------------------------ processes (cm_proc.h) */

/* dir/name into buf. */
static const char *in_dir(char *buf, size_t cap, const char *name)
{
    int n = snprintf(buf, cap, "%s/%s", dir, name);
    ck_assert(n > 0 && (size_t)n < cap);
    return buf;
}

/* Stops pid: SIGTERM, up to timeout_s, then SIGKILL. */
static void stop(pid_t pid, double timeout_s)
{
    if (pid <= 0)
        return;
    kill(pid, SIGTERM);
    wait_pid(pid, timeout_s);
}

/* Runs argv to completion (at most 120 s); returns its exit status. */
static int run(char *const argv[], const char *out, const char *err)
{
    pid_t pid = spawn(argv, out, err, NULL, NULL);
    int st = wait_pid(pid, 120);
    return st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void put_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    ck_assert_msg(fp != NULL, "cannot write %s", path);
    ck_assert_int_eq(fputs(text, fp) >= 0, 1);
    ck_assert_int_eq(fclose(fp), 0);
}

/* A port in [20000, 32000): below the ephemeral range (32768-60999 here),
 * so no outgoing connection takes it between our pick and the bind. */
static int pick_port(void)
{
    static unsigned seed;
    if (!seed)
        seed = (unsigned)getpid() * 2654435761u ^ (unsigned)time(NULL);
    seed = seed * 1103515245u + 12345u;
    return 20000 + (int)((seed >> 8) % 12000);
}

/* ------------------------------------------------------------ HTTP */

/* GET path from 127.0.0.1:port (HTTP/1.0, the connection closed by the
 * server). Returns the status code (0: no connection) and the body in *body
 * (malloc'd, NUL-terminated), at most 64 MiB, within 15 s. */
static int http_get(int port, const char *path, char **body)
{
    *body = NULL;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        close(fd);
        return 0;
    }
    char req[8192];
    int rl = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: 127.0.0.1:%d\r\n\r\n", path, port);
    ck_assert(rl > 0 && (size_t)rl < sizeof(req));
    ck_assert_int_eq(write(fd, req, (size_t)rl), rl);
    size_t cap = 65536, n = 0;
    char *s = malloc(cap);
    ck_assert_ptr_nonnull(s);
    double end = now_s() + 15;
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int left = (int)((end - now_s()) * 1000);
        ck_assert_msg(left > 0 && poll(&p, 1, left) == 1, "GET %s: no answer within 15 s", path);
        if (cap - n < 2) {
            ck_assert_uint_lt(cap, (size_t)64 << 20);
            cap *= 2;
            s = realloc(s, cap);
            ck_assert_ptr_nonnull(s);
        }
        ssize_t r = read(fd, s + n, cap - n - 1);
        if (r < 0 && errno == ECONNRESET && n)
            break;
        ck_assert_int_ge(r, 0);
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    s[n] = 0;
    int code = 0;
    ck_assert_msg(sscanf(s, "HTTP/1.%*d %d", &code) == 1, "GET %s: not an HTTP answer", path);
    char *b = strstr(s, "\r\n\r\n");
    ck_assert_ptr_nonnull(b);
    *body = strdup(b + 4);
    ck_assert_ptr_nonnull(*body);
    free(s);
    return code;
}

/* s with every byte but unreserved ones %-encoded, into buf. */
static void url_encode(const char *s, char *buf, size_t cap)
{
    size_t n = 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        ck_assert_uint_lt(n + 4, cap);
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~')
            buf[n++] = (char)c;
        else
            n += (size_t)snprintf(buf + n, cap - n, "%%%02X", c);
    }
    buf[n] = 0;
}

/* ------------------------------------------------------------ a tiny server of a file */

/* Serves the file path at every request on 127.0.0.1:*port (picked below
 * 32768, retried while in use), from a child process. */
static pid_t serve_file(const char *path, int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)), 0);
    for (int tries = 0;; tries++) {
        *port = pick_port();
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)*port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
            break;
        ck_assert_msg(errno == EADDRINUSE && tries < 50, "bind: %s", strerror(errno));
    }
    ck_assert_int_eq(listen(fd, 16), 0);
    size_t len;
    char *body = slurp(path, &len);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        char head[256], req[8192];
        int hl = snprintf(head, sizeof(head),
                          "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4; "
                          "charset=utf-8\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
                          len);
        for (;;) {
            int c = accept(fd, NULL, NULL);
            if (c < 0)
                continue;
            size_t got = 0;
            while (got < sizeof(req) - 1) { /* the request's head, then the answer */
                struct pollfd p = {.fd = c, .events = POLLIN};
                if (poll(&p, 1, 5000) != 1)
                    break;
                ssize_t r = read(c, req + got, sizeof(req) - 1 - got);
                if (r <= 0)
                    break;
                got += (size_t)r;
                req[got] = 0;
                if (strstr(req, "\r\n\r\n"))
                    break;
            }
            if (write(c, head, (size_t)hl) == hl) {
                size_t off = 0;
                while (off < len) {
                    ssize_t w = write(c, body + off, len - off);
                    if (w <= 0)
                        break;
                    off += (size_t)w;
                }
            }
            close(c);
        }
    }
    free(body);
    close(fd);
    ck_assert_int_lt(npids, (int)(sizeof(pids) / sizeof(pids[0])));
    pids[npids++] = pid;
    return pid;
}

/* ------------------------------------------------------------ Prometheus */

static pid_t prom_pid = -1;
static int prom_port;

/* Starts Prometheus scraping 127.0.0.1:target every second (job "circmond"),
 * its TSDB in dir/tsdb; a port in use is retried with another. Returns once
 * /-/ready answers 200 (within 60 s). */
static void prom_start(int target)
{
    char conf[300], log[300], tsdb[300], listen[64], cflag[320], tflag[320], yml[1024];
    in_dir(conf, sizeof(conf), "prometheus.yml");
    in_dir(log, sizeof(log), "prometheus.log");
    in_dir(tsdb, sizeof(tsdb), "tsdb");
    snprintf(yml, sizeof(yml),
             "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
             "scrape_configs:\n  - job_name: circmond\n    static_configs:\n"
             "      - targets: ['127.0.0.1:%d']\n",
             target);
    put_file(conf, yml);
    snprintf(cflag, sizeof(cflag), "--config.file=%s", conf);
    snprintf(tflag, sizeof(tflag), "--storage.tsdb.path=%s", tsdb);
    for (int tries = 0;; tries++) {
        ck_assert_msg(tries < 10, "Prometheus did not find a free port in 10 tries (see %s)", log);
        prom_port = pick_port();
        snprintf(listen, sizeof(listen), "--web.listen-address=127.0.0.1:%d", prom_port);
        unlink(log);
        char *argv[] = {"prometheus", cflag, tflag, listen, "--log.level=warn",
                        "--storage.tsdb.retention.time=1h", NULL};
        prom_pid = spawn_ex(argv, log, log, NULL, NULL, CMP_TERM_ON_DEATH);
        double end = now_s() + 60;
        int up = 0;
        while (!up) {
            if (!alive(prom_pid)) {
                forget(prom_pid);
                prom_pid = -1;
                break;
            }
            char *b;
            int code = http_get(prom_port, "/-/ready", &b);
            free(b);
            if (code == 200)
                up = 1;
            else
                ck_assert_msg(now_s() < end, "Prometheus not ready within 60 s (see %s)", log);
            if (!up)
                nap_ms(50);
        }
        if (up)
            return;
        char *l = slurp(log, NULL);
        int in_use = strstr(l, "address already in use") != NULL;
        free(l);
        ck_assert_msg(in_use, "Prometheus exited (see %s)", log);
    }
}

static void prom_stop(void)
{
    stop(prom_pid, 20);
    prom_pid = -1;
}

/* The result array of an instant query (a new reference), or NULL when the
 * API answers an error; *err gets its text. */
static json_t *prom_query(const char *expr, char *err, size_t errlen)
{
    char enc[8192], path[8300];
    url_encode(expr, enc, sizeof(enc));
    snprintf(path, sizeof(path), "/api/v1/query?query=%s", enc);
    char *b;
    int code = http_get(prom_port, path, &b);
    json_error_t je;
    json_t *j = json_loads(b, 0, &je), *res = NULL;
    if (code == 200 && j && !strcmp(json_string_value(json_object_get(j, "status")) ?: "", "success"))
        res = json_incref(json_object_get(json_object_get(j, "data"), "result"));
    else
        snprintf(err, errlen, "HTTP %d: %.300s", code, b ? b : "");
    json_decref(j);
    free(b);
    return res;
}

/* Polls expr until it returns a non-empty result (within timeout_s): an
 * error of the API fails at once. Returns the result. */
static json_t *prom_wait_data(const char *expr, double timeout_s)
{
    double end = now_s() + timeout_s;
    for (;;) {
        char err[512] = "";
        json_t *r = prom_query(expr, err, sizeof(err));
        ck_assert_msg(r != NULL, "query %s: %s", expr, err);
        if (json_array_size(r) > 0)
            return r;
        json_decref(r);
        ck_assert_msg(now_s() < end, "query %s: no data within %.0f s (logs in %s)", expr, timeout_s, dir);
        nap_ms(200);
    }
}

/* The value of a vector sample. */
static double sample_value(const json_t *s)
{
    const char *v = json_string_value(json_array_get(json_object_get(s, "value"), 1));
    ck_assert_ptr_nonnull(v);
    return strtod(v, NULL);
}

/* Polls the sum by scheme of the outcomes but no_show until it equals the
 * expected departures of every scheme of the document (absent reads 0),
 * within 60 s. The document is doc, or when fetch is set a new one it gives
 * at every poll (circmond's figures are as of their read instant). */
static void check_expected(const json_t *doc0, json_t *(*fetch)(void), const char *what)
{
    const char *q = "sum by (scheme) (circmon_permit_outcomes{outcome!=\"no_show\"})";
    double end = now_s() + 60;
    char diff[1024];
    for (;;) {
        json_t *r = prom_wait_data(q, 60);
        json_t *doc = fetch ? fetch() : json_incref((json_t *)doc0);
        diff[0] = 0;
        size_t dl = 0, seen = 0;
        const char *sid;
        json_t *s;
        json_object_foreach(json_object_get(doc, "schemes"), sid, s) {
            json_int_t want = json_integer_value(json_object_get(s, "expected_departures"));
            double got = 0;
            size_t i;
            json_t *e;
            json_array_foreach(r, i, e) {
                const char *l = json_string_value(json_object_get(json_object_get(e, "metric"), "scheme"));
                if (l && !strcmp(l, sid)) {
                    got = sample_value(e);
                    seen++;
                }
            }
            if (got != (double)want && dl < sizeof(diff) - 100)
                dl += (size_t)snprintf(diff + dl, sizeof(diff) - dl, " %s: %.0f (want %lld)", sid, got,
                                       (long long)want);
        }
        if (seen != json_array_size(r) && dl < sizeof(diff) - 100)
            snprintf(diff + dl, sizeof(diff) - dl, " %zu schemes in Prometheus, %zu in %s",
                     json_array_size(r), seen, what);
        json_decref(r);
        json_decref(doc);
        if (!diff[0])
            return;
        ck_assert_msg(now_s() < end, "Prometheus's %s differs from %s:%s (logs in %s)", q, what, diff, dir);
        nap_ms(200);
    }
}

/* ------------------------------------------------------------ promtool */

/* The lint problems promtool may report on circmon's exposition: the names
 * the contract fixes (issue 9) count days, not seconds. */
static const char *const lint_allowed[] = {
    "circmon_overstay_days use base unit \"seconds\" instead of \"days\"",
    "circmon_stay_limit_breach_days use base unit \"seconds\" instead of \"days\"",
};

/* `promtool check metrics` on the file: no parse error (exit 1), and no
 * lint problem beyond lint_allowed. */
static void promtool_check(const char *file)
{
    char out[300], err[300];
    in_dir(out, sizeof(out), "promtool.out");
    in_dir(err, sizeof(err), "promtool.err");
    char cmd[1200];
    snprintf(cmd, sizeof(cmd), "promtool check metrics < '%s'", file);
    char *argv[] = {"sh", "-c", cmd, NULL};
    int st = run(argv, out, err);
    char *e = slurp(err, NULL);
    ck_assert_msg(st == 0 || st == 3, "promtool check metrics: exit %d: %s", st, e);
    for (char *line = strtok(e, "\n"); line; line = strtok(NULL, "\n")) {
        int ok = 0;
        for (size_t i = 0; i < sizeof(lint_allowed) / sizeof(lint_allowed[0]); i++)
            ok |= !strcmp(line, lint_allowed[i]);
        ck_assert_msg(ok, "promtool check metrics on %s: %s", file, line);
    }
    free(e);
}

/* ------------------------------------------------------------ running the dashboard's queries */

/* Whether the exposition text has a sample of series name (a name as a
 * query gives it), with scheme="scheme" when the sample has a scheme label
 * and scheme is not NULL. */
static int exposed(const char *text, const char *name, const char *scheme)
{
    size_t nl = strlen(name);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, name, nl) || (p[nl] != '{' && p[nl] != ' '))
            continue;
        const char *end = strchr(p, '\n'), *l = strstr(p, "scheme=\"");
        if (!scheme || !l || (end && l > end))
            return 1;
        l += 8;
        if (!strncmp(l, scheme, strlen(scheme)) && l[strlen(scheme)] == '"')
            return 1;
    }
    return 0;
}

struct run_ck {
    const char *scheme; /* NULL: every scheme */
    const char *text;   /* the exposition Prometheus scrapes */
    int ran, with_data, dated;
};

struct need {
    const struct run_ck *c;
    int missing, dated;
};

static void need_one(const char *name, void *ud)
{
    struct need *n = ud;
    n->missing |= !exposed(n->c->text, name, n->c->scheme);
    /* the families whose samples depend on the as-of month */
    n->dated |= !strcmp(name, "circmon_window_rate") || !strcmp(name, "circmon_cohort_permit_outcomes");
}

/* Runs one expression: without error always; with data whenever the
 * exposition has samples of every series it names (for the scheme). */
static void run_expr(const char *expr, const char *title, void *ud)
{
    struct run_ck *c = ud;
    char *q = fill(expr, c->scheme ? c->scheme : ".*", "circmond");
    struct need n = {.c = c};
    each_metric(expr, need_one, &n);
    if (!n.missing) {
        json_t *r = prom_wait_data(q, 60);
        json_decref(r);
        c->with_data++;
    } else {
        char err[512] = "";
        json_t *r = prom_query(q, err, sizeof(err)); /* runs without error, data or not */
        ck_assert_msg(r != NULL, "panel \"%s\": %s: %s", title, q, err);
        json_decref(r);
    }
    c->dated += n.dated;
    c->ran++;
    free(q);
}

/* Every expression of the dashboard, with $scheme a scheme of the data and
 * every scheme (".*"), and the variables' own queries (label_values(expr,
 * label): expr returns data holding label). An expression whose series are
 * in the exposition must return data; returns how many of them did not
 * (over both runs), all expressions but those on month-dependent families
 * (windows, cohorts) counted when every_undated is set. */
static int run_dashboard(const char *scheme, const char *text, int every_undated)
{
    json_t *d = dashboard();
    const char *schemes[] = {scheme, NULL};
    int without = 0;
    for (int k = 0; k < 2; k++) {
        struct run_ck c = {.scheme = schemes[k], .text = text};
        each_expr(json_object_get(d, "panels"), run_expr, &c);
        ck_assert_int_ge(c.ran, 20);
        if (every_undated)
            ck_assert_msg(c.with_data >= c.ran - c.dated, "%d of %d queries (%d on windows or cohorts) with data",
                          c.with_data, c.ran, c.dated);
        without += c.ran - c.with_data;
    }
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(json_object_get(d, "templating"), "list"), i, v) {
        const char *q = var_query(v);
        if (!q || strncmp(q, "label_values(", 13))
            continue;
        char expr[512], label[64];
        ck_assert_msg(sscanf(q, "label_values(%511[^,], %63[^)])", expr, label) == 2, "variable query %s", q);
        if (!exposed(text, expr, NULL))
            continue;
        json_t *r = prom_wait_data(expr, 60);
        ck_assert_msg(json_object_get(json_object_get(json_array_get(r, 0), "metric"), label) != NULL,
                      "variable %s: no label %s", q, label);
        json_decref(r);
    }
    json_decref(d);
    return without;
}

/* ------------------------------------------------------------ fixture */

static void setup(void)
{
    svc_dir_make("check_prometheus");
    prom_pid = -1;
}

static void teardown(void)
{
    if (!dir[0])
        return;
    if (prom_pid > 0)
        prom_stop();
    svc_dir_remove();
    dir[0] = 0;
}

/* A circmon-gen stream of migrants into dir/ev.bin and its replay document
 * as of AS_OF into dir/replay.json (loaded into *doc). */
static const char *gen_replay(int migrants, json_t **doc)
{
    static char ev[300];
    char rep[300], log[300], m[16], conf[600];
    in_dir(ev, sizeof(ev), "ev.bin");
    in_dir(rep, sizeof(rep), "replay.json");
    in_dir(log, sizeof(log), "ctl.log");
    snprintf(m, sizeof(m), "%d", migrants);
    snprintf(conf, sizeof(conf), "%s/config/demo.conf", top());
    char *g[] = {"--seed", "1", "--migrants", m, "--out", ev, NULL};
    ck_assert_int_eq(run_bin("circmon-gen", g, NULL, log), 0);
    char *r[] = {"replay", "--config", conf, "--as-of", AS_OF, "--format", "json", ev, NULL};
    ck_assert_int_eq(run_bin("circmonctl", r, rep, log), 0);
    *doc = load_json(rep);
    return ev;
}

/* The first scheme of doc with an expected departure. */
static const char *a_scheme(const json_t *doc)
{
    const char *sid;
    json_t *s;
    json_object_foreach(json_object_get(doc, "schemes"), sid, s) {
        if (json_integer_value(json_object_get(s, "expected_departures")) > 0)
            return sid;
    }
    ck_abort_msg("no scheme with expected departures");
    return NULL;
}

/* ------------------------------------------------------------ case "exposition" */

struct pipeline_count {
    int n;
};

static void count_pipeline(const char *expr, const char *title, void *ud)
{
    (void)title;
    ((struct pipeline_count *)ud)->n += !indicator_only(expr);
}

START_TEST(test_exposition)
{
    setup();
    json_t *doc;
    gen_replay(2000, &doc);
    json_int_t as_of = json_integer_value(json_object_get(doc, "as_of"));
    struct cm_strbuf b = {0};
    ck_assert_int_eq(cm_prom_indicators(&b, doc, as_of, 24), 0);
    char file[300];
    in_dir(file, sizeof(file), "metrics.prom");
    put_file(file, b.s);
    promtool_check(file);
    int port;
    serve_file(file, &port);
    prom_start(port);
    json_t *up = prom_wait_data("up{job=\"circmond\"} == 1", 60);
    json_decref(up);
    check_expected(doc, NULL, "circmonctl replay");
    /* as of 2025-01-01 the stream has cohorts in every window: every query
     * on indicator gauges returns data, only the pipeline's have none here */
    int without = run_dashboard(a_scheme(doc), b.s, 0);
    json_t *d = dashboard();
    struct pipeline_count pc = {0};
    each_expr(json_object_get(d, "panels"), count_pipeline, &pc);
    json_decref(d);
    ck_assert_int_eq(without, 2 * pc.n);
    cm_strbuf_free(&b);
    prom_stop();
    json_decref(doc);
    teardown();
}
END_TEST

/* ------------------------------------------------------------ case "circmond" */

static int http_port;
static pid_t daemon_pid = -1;

/* Starts circmond (the demo's schemes, [http] on a port below 32768,
 * figures read every 200 ms); a taken port is retried with another.
 * Returns the configuration's path. */
static const char *daemon_start(void)
{
    static char conf[300];
    char path[600], log[300], demo[600];
    in_dir(conf, sizeof(conf), "circmond.conf");
    in_dir(log, sizeof(log), "circmond.log");
    cm_bin_path(path, sizeof(path), "circmond");
    snprintf(demo, sizeof(demo), "%s/config/demo.conf", top());
    char *schemes = slurp(demo, NULL), *sc = strstr(schemes, "[scheme");
    ck_assert_ptr_nonnull(sc);
    for (int attempt = 0; attempt < 10; attempt++) {
        http_port = pick_port();
        char text[8192];
        snprintf(text, sizeof(text),
                 "[circmon]\nbatch_size = 2000\n"
                 "[kafka]\nbrokers = %s\ngroup_id = g-prometheus\nrdkafka.session.timeout.ms = 6000\n"
                 "[redis]\nunix_socket = %s\ncommand_timeout_ms = 3000\nconnect_timeout_ms = 1000\n"
                 "[http]\nlisten = 127.0.0.1\nport = %d\nrefresh_ms = 200\n%s",
                 brokers, redis_sock, http_port, sc);
        put_file(conf, text);
        unlink(log);
        char *argv[] = {path, "--config", conf, "--foreground", NULL};
        daemon_pid = spawn(argv, NULL, log, NULL, NULL);
        double end = now_s() + 20;
        for (;;) {
            if (file_has(log, "http endpoint at")) {
                free(schemes);
                return conf;
            }
            if (!alive(daemon_pid)) {
                forget(daemon_pid);
                ck_assert_msg(file_has(log, "cannot listen"), "circmond exited (see %s)", log);
                break; /* the port is taken: another */
            }
            ck_assert_msg(now_s() < end, "circmond did not open its endpoint (see %s)", log);
            nap_ms(10);
        }
    }
    ck_abort_msg("no free port for circmond's endpoint in 10 tries");
    return NULL;
}

/* A JSON answer of circmond (200 expected). */
static json_t *api_get(const char *path)
{
    char *b;
    int code = http_get(http_port, path, &b);
    ck_assert_msg(code == 200, "GET %s: %d", path, code);
    json_error_t e;
    json_t *j = json_loads(b, 0, &e);
    ck_assert_msg(j != NULL, "GET %s: %s", path, e.text);
    free(b);
    return j;
}

static json_t *indicators_doc(void)
{
    return api_get("/v1/indicators");
}

/* Polls until the stored positions reach total and circmond has read its
 * figures after that, and answers /readyz 200 (within 90 s). */
static void wait_figures(const char *conf, long total)
{
    double end = now_s() + 90;
    while (stored_sum(conf) != total) {
        ck_assert_msg(now_s() < end, "circmond not caught up within 90 s");
        nap_ms(50);
    }
    int64_t caught = wall_ms();
    for (;;) {
        json_t *st = api_get("/v1/status");
        json_t *s = json_object_get(json_object_get(st, "figures"), "read_started_at_ms");
        int done = json_is_integer(s) && json_integer_value(s) > caught;
        json_decref(st);
        char *b;
        if (done && http_get(http_port, "/readyz", &b) == 200) {
            free(b);
            return;
        }
        if (done)
            free(b);
        ck_assert_msg(now_s() < end, "no figures read after the catch-up, or not ready, within 90 s");
        nap_ms(50);
    }
}

START_TEST(test_circmond)
{
    setup();
    redis_start(0);
    broker_start(N_PARTS);
    const char *conf = daemon_start();
    char ev[300], log[300], scrape[300];
    in_dir(ev, sizeof(ev), "ev.bin");
    in_dir(log, sizeof(log), "ctl.log");
    /* six years ending with the last one, whatever today is */
    char year[16];
    time_t t = time(NULL);
    struct tm tm;
    ck_assert_ptr_nonnull(gmtime_r(&t, &tm));
    snprintf(year, sizeof(year), "%d", tm.tm_year + 1900 - 6);
    char *g[] = {"--seed", "1", "--migrants", "2000", "--start-year", year, "--years", "6", "--out", ev, NULL};
    ck_assert_int_eq(run_bin("circmon-gen", g, NULL, log), 0);
    char *p[] = {"publish", "--config", (char *)conf, ev, NULL};
    ck_assert_int_eq(run_bin("circmonctl", p, NULL, log), 0);
    wait_figures(conf, count_records(ev));

    /* one scrape through promtool */
    char *body;
    ck_assert_int_eq(http_get(http_port, "/metrics", &body), 200);
    in_dir(scrape, sizeof(scrape), "scrape.prom");
    put_file(scrape, body);
    free(body);
    promtool_check(scrape);

    prom_start(http_port);
    json_t *up = prom_wait_data("up{job=\"circmond\"} == 1", 60);
    json_decref(up);
    json_t *doc = api_get("/v1/indicators");
    ck_assert_int_ge(json_object_size(json_object_get(doc, "schemes")), 2);
    check_expected(NULL, indicators_doc, "circmond's /v1/indicators");
    /* the figures are as of now: the windows and cohorts of the last months
     * may be empty, every other query returns data */
    char *text;
    ck_assert_int_eq(http_get(http_port, "/metrics", &text), 200);
    run_dashboard(a_scheme(doc), text, 1);
    free(text);
    json_decref(doc);
    prom_stop();
    stop(daemon_pid, 20);
    teardown();
}
END_TEST

/* ------------------------------------------------------------ main */

int main(void)
{
    Suite *s = suite_create("prometheus");
    TCase *tc = tcase_create("exposition");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, test_exposition);
    suite_add_tcase(s, tc);
    tc = tcase_create("circmond");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_circmond);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
