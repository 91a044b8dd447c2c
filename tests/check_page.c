/* check_page.c - circmond's status page (GET /) in a real headless Chromium.
 *
 * The test starts its own redis-server (unix socket), circmon-broker and
 * circmond with the HTTP endpoint on a free loopback port, publishes a
 * circmon-gen stream, waits until the figures circmond serves were read after
 * the catch-up, then runs Debian's chromium headless on /: the DOM it dumps
 * must hold, cell by cell (data- attributes), the figures of
 * /v1/indicators?as_of=<the page's as_of>, the data quality and the
 * partitions of /v1/status, and exactly the firing alert instances of
 * /v1/alerts (a nationality = * rule that fires for every scheme and
 * nationality with an expected departure, a rule that never fires).
 * Screenshots at 1280x800 and 390x844 go to
 * build/artefacts/page-*.png. Every wait has a deadline; every process the
 * test starts (chromium with its whole process group) is killed whatever
 * happens. */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <jansson.h>

#include "circmon/config.h"
#include "circmon/framing.h"
#include "circmon/store.h"
#include "cm_svc.h"

#define N_PARTS 4
#define MIGRANTS 2000
#define CHROMIUM_TIMEOUT_S 90

static int http_port;
static char profile[320]; /* chromium's --user-data-dir of the current run */

/* ------------------------------------------------------------ processes */

/* Kills every process whose command line names the current chromium
 * profile directory: the helpers chromium started, even one that left its
 * process group. Only processes of this test carry that fresh temp path. */
static void kill_profile_procs(void)
{
    DIR *d;
    struct dirent *e;
    if (!profile[0] || !(d = opendir("/proc")))
        return;
    while ((e = readdir(d))) {
        char p[64], buf[4096];
        pid_t pid = (pid_t)atoi(e->d_name);
        if (pid <= 0 || pid == getpid())
            continue;
        snprintf(p, sizeof(p), "/proc/%d/cmdline", (int)pid);
        int fd = open(p, O_RDONLY);
        if (fd < 0)
            continue;
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n <= 0)
            continue;
        for (ssize_t i = 0; i < n; i++)
            if (!buf[i])
                buf[i] = ' ';
        buf[n] = '\0';
        if (strstr(buf, profile))
            kill(pid, SIGKILL);
    }
    closedir(d);
}

/* Kills every child with its process group, then the chromium helpers. */
static void kill_groups(void)
{
    while (npids > 0) {
        pid_t p = pids[npids - 1];
        kill(-p, SIGKILL); /* its group, when it has one */
        kill(p, SIGKILL);
        waitpid(p, NULL, 0);
        npids--;
    }
    kill_profile_procs();
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof(a);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &l), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* ------------------------------------------------------------ files */

static const char *in_dir(const char *name, char *buf, size_t n)
{
    snprintf(buf, n, "%s/%s", dir, name);
    return buf;
}

static void write_conf(const char *path)
{
    FILE *fp = fopen(path, "w");
    ck_assert_ptr_nonnull(fp);
    fprintf(fp,
            "[circmon]\nreorder_window_days = 30\nlog_level = info\nnationality_cohorts = yes\n"
            "[kafka]\nbrokers = %s\ngroup_id = check-page\nrdkafka.session.timeout.ms = 6000\n"
            "[redis]\nunix_socket = %s\ncommand_timeout_ms = 3000\nconnect_timeout_ms = 1000\n"
            "[http]\nlisten = 127.0.0.1\nport = %d\nrefresh_ms = 300\n"
            "[scheme *]\ngrace_days = 0\n[scheme SAWP-ES]\ngrace_days = 7\n"
            "[scheme STUDY-DE]\ngrace_days = 30\n[scheme SHORTSTAY]\nstay_limit = 90/180\n"
            "[alerts]\ninterval_s = 1\n"
            "[alert every-nat]\nscheme = *\nnationality = *\nindicator = overstay_rate\n"
            "above = 0\nmin_expected = 1\nwindow_months = 120\n"
            "[alert never]\nscheme = *\nindicator = return_compliance_rate\nbelow = 1\n"
            "min_expected = 1000000000\nwindow_months = 120\n",
            brokers, redis_sock, http_port);
    ck_assert_int_eq(fclose(fp), 0);
}

/* ------------------------------------------------------------ HTTP */

struct resp {
    int status;
    char *head; /* status line and headers, NUL-terminated */
    char *body; /* NUL-terminated */
    size_t body_len;
};

static void resp_free(struct resp *r)
{
    free(r->head);
    free(r->body);
    memset(r, 0, sizeof(*r));
}

/* method path to circmond (Connection: close), whole answer within 10 s. */
static struct resp http_req(const char *method, const char *path)
{
    struct resp r = {0};
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)http_port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    char req[1024];
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    double end = now_s() + 10;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert(buf && fd >= 0);
    ck_assert_msg(connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0, "connect to port %d: %s",
                  http_port, strerror(errno));
    int n = snprintf(req, sizeof(req),
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Length: 0\r\n"
                     "Connection: close\r\n\r\n",
                     method, path, http_port);
    ck_assert_int_eq(write(fd, req, (size_t)n), n);
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int left = (int)((end - now_s()) * 1000);
        ck_assert_msg(left > 0 && poll(&pfd, 1, left) > 0, "%s %s: no full answer in 10 s", method, path);
        if (len + 4096 > cap) {
            ck_assert_uint_lt(cap, 64u << 20);
            cap *= 2;
            buf = realloc(buf, cap);
            ck_assert_ptr_nonnull(buf);
        }
        ssize_t k = read(fd, buf + len, cap - len - 1);
        ck_assert_int_ge(k, 0);
        if (k == 0)
            break;
        len += (size_t)k;
    }
    close(fd);
    buf[len] = '\0';
    char *sep = strstr(buf, "\r\n\r\n");
    ck_assert_msg(sep != NULL, "%s %s: no end of headers", method, path);
    *sep = '\0';
    ck_assert_int_eq(sscanf(buf, "HTTP/1.%*d %d", &r.status), 1);
    r.head = strdup(buf);
    r.body_len = len - (size_t)(sep + 4 - buf);
    r.body = malloc(r.body_len + 1);
    ck_assert(r.head && r.body);
    memcpy(r.body, sep + 4, r.body_len);
    r.body[r.body_len] = '\0';
    free(buf);
    return r;
}

/* The value of header name in head (case-insensitive name), copied into
 * out; 0 when absent. */
static int header(const char *head, const char *name, char *out, size_t n)
{
    size_t nl = strlen(name);
    for (const char *l = strstr(head, "\r\n"); l; l = strstr(l + 2, "\r\n")) {
        const char *h = l + 2;
        if (!strncasecmp(h, name, nl) && h[nl] == ':') {
            h += nl + 1;
            while (*h == ' ')
                h++;
            size_t k = strcspn(h, "\r\n");
            snprintf(out, n, "%.*s", (int)k, h);
            return 1;
        }
    }
    return 0;
}

static struct resp http_get(const char *path)
{
    return http_req("GET", path);
}

static json_t *get_json(const char *path)
{
    struct resp r = http_get(path);
    json_error_t e;
    ck_assert_msg(r.status == 200, "GET %s: status %d", path, r.status);
    json_t *j = json_loadb(r.body, r.body_len, 0, &e);
    ck_assert_msg(j != NULL, "GET %s: not JSON: %s", path, e.text);
    resp_free(&r);
    return j;
}

/* ------------------------------------------------------------ the DOM */

/* The value of attribute name in the tag that starts at tag (up to its
 * '>'), unescaped, into out; 0 when the tag has no such attribute. */
static int attr(const char *tag, const char *name, char *out, size_t n)
{
    const char *end = strchr(tag, '>');
    char pat[64];
    snprintf(pat, sizeof(pat), " %s=\"", name);
    const char *p = strstr(tag, pat);
    if (!p || !end || p > end)
        return 0;
    p += strlen(pat);
    size_t k = 0;
    while (*p && *p != '"' && k + 1 < n) {
        static const struct {
            const char *ent;
            char c;
        } ents[] = {{"&amp;", '&'}, {"&quot;", '"'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&#39;", '\''}};
        size_t i;
        for (i = 0; i < sizeof(ents) / sizeof(ents[0]); i++)
            if (!strncmp(p, ents[i].ent, strlen(ents[i].ent)))
                break;
        if (i < sizeof(ents) / sizeof(ents[0])) {
            out[k++] = ents[i].c;
            p += strlen(ents[i].ent);
        } else {
            out[k++] = *p++;
        }
    }
    out[k] = '\0';
    return 1;
}

/* The data-value of the cell data-field=field between from and to. */
static int cell(const char *from, const char *to, const char *field, char *out, size_t n)
{
    char pat[96];
    snprintf(pat, sizeof(pat), "data-field=\"%s\"", field);
    const char *p = strstr(from, pat);
    if (!p || p > to)
        return 0;
    while (p > from && *p != '<')
        p--;
    return attr(p, "data-value", out, n);
}

static long jcount(const json_t *o, const char *k)
{
    const json_t *v = json_object_get(o, k);
    ck_assert_msg(!v || json_is_integer(v), "%s is not an integer", k);
    return v ? (long)json_integer_value(v) : 0; /* a missing counter reads as 0 */
}

static const char *const COUNTS[] = {"expected_departures", "in_time_departures",
                                     "late_departures", "in_country_overstays",
                                     "status_changes", "no_shows", "reentries",
                                     "stay_limit_breaches", "present"};
static const char *const RATES[] = {"overstay_rate", "in_country_overstay_rate",
                                    "return_compliance_rate", "reentry_rate"};
static const char *const DQ[] = {"invalid", "duplicates", "too_late", "out_of_order",
                                 "exits_without_entry", "entries_while_present",
                                 "entries_without_permit", "unknown_permit",
                                 "late_admin_events"};

/* Every scheme of doc has its row in dom with every figure equal; the page
 * has no other row. Returns the number of rows. */
static int check_table(const char *dom, const json_t *doc)
{
    const json_t *schemes = json_object_get(doc, "schemes");
    const char *tb = strstr(dom, "<table id=\"schemes\"");
    ck_assert_msg(tb != NULL, "no scheme table in the DOM");
    const char *tb_end = strstr(tb, "</table>");
    ck_assert_ptr_nonnull(tb_end);
    int rows = 0;
    for (const char *p = strstr(tb, "<tr data-scheme=\""); p && p < tb_end;
         p = strstr(p + 1, "<tr data-scheme=\"")) {
        char id[512], v[128];
        const char *end = strstr(p, "</tr>");
        ck_assert(end && end < tb_end);
        ck_assert(attr(p, "data-scheme", id, sizeof(id)));
        const json_t *s = json_object_get(schemes, id);
        ck_assert_msg(s != NULL, "the page shows scheme %s, the API has no such scheme", id);
        for (size_t i = 0; i < sizeof(COUNTS) / sizeof(COUNTS[0]); i++) {
            ck_assert_msg(cell(p, end, COUNTS[i], v, sizeof(v)), "%s: no %s cell", id, COUNTS[i]);
            char *e;
            long got = strtol(v, &e, 10);
            ck_assert_msg(*v && !*e, "%s %s: '%s' is not a count", id, COUNTS[i], v);
            ck_assert_msg(got == jcount(s, COUNTS[i]), "%s %s: page %ld, API %ld", id, COUNTS[i],
                          got, jcount(s, COUNTS[i]));
        }
        for (size_t i = 0; i < sizeof(RATES) / sizeof(RATES[0]); i++) {
            const json_t *r = json_object_get(s, RATES[i]);
            ck_assert_msg(cell(p, end, RATES[i], v, sizeof(v)), "%s: no %s cell", id, RATES[i]);
            if (!r || json_is_null(r)) {
                ck_assert_msg(!strcmp(v, "null"), "%s %s: page %s, API null", id, RATES[i], v);
            } else {
                char *e;
                double got = strtod(v, &e);
                ck_assert_msg(json_is_number(r), "%s %s: not a number in the API", id, RATES[i]);
                ck_assert_msg(*v && !*e, "%s %s: '%s' is not a number", id, RATES[i], v);
                /* The page writes the shortest text that reads back as the same double. */
                ck_assert_msg(got == json_number_value(r), "%s %s: page %s, API %.17g", id,
                              RATES[i], v, json_number_value(r));
            }
        }
        rows++;
    }
    ck_assert_int_eq(rows, (int)json_object_size(schemes));
    return rows;
}

static void check_dq(const char *dom, const json_t *doc)
{
    const json_t *dq = json_object_get(doc, "data_quality");
    for (size_t i = 0; i < sizeof(DQ) / sizeof(DQ[0]); i++) {
        char pat[96], v[64];
        snprintf(pat, sizeof(pat), "data-dq=\"%s\"", DQ[i]);
        const char *p = strstr(dom, pat);
        ck_assert_msg(p != NULL, "no data-quality cell %s", DQ[i]);
        while (*p != '<')
            p--;
        ck_assert(attr(p, "data-value", v, sizeof(v)));
        ck_assert_msg(atol(v) == jcount(dq, DQ[i]), "%s: page %s, API %ld", DQ[i], v,
                      jcount(dq, DQ[i]));
    }
}

/* The partitions of /v1/status: one row each, every scalar field equal. */
static void check_partitions(const char *dom, const json_t *st)
{
    const json_t *parts = json_object_get(st, "partitions");
    const char *tb = strstr(dom, "<table id=\"partitions\"");
    size_t i;
    json_t *p;
    ck_assert_msg(json_is_array(parts), "/v1/status has no partitions array");
    ck_assert_ptr_nonnull(tb);
    const char *tb_end = strstr(tb, "</table>");
    ck_assert_ptr_nonnull(tb_end);
    int rows = 0;
    for (const char *q = strstr(tb, "<tr data-partition="); q && q < tb_end;
         q = strstr(q + 1, "<tr data-partition="))
        rows++;
    ck_assert_int_eq(rows, (int)json_array_size(parts));
    json_array_foreach(parts, i, p) {
        char pat[64], v[128];
        const char *k;
        json_t *x;
        ck_assert(json_is_integer(json_object_get(p, "partition")));
        snprintf(pat, sizeof(pat), "<tr data-partition=\"%" JSON_INTEGER_FORMAT "\"",
                 json_integer_value(json_object_get(p, "partition")));
        const char *row = strstr(tb, pat);
        ck_assert_msg(row && row < tb_end, "no row for partition %s", pat);
        const char *end = strstr(row, "</tr>");
        json_object_foreach(p, k, x) {
            if (json_is_null(x)) { /* e.g. the lag of a partition assigned elsewhere */
                ck_assert_msg(cell(row, end, k, v, sizeof(v)) && !strcmp(v, "null"),
                              "partition %zu %s: page '%s', API null", i, k, v);
                continue;
            }
            if (!json_is_integer(x))
                continue;
            ck_assert_msg(cell(row, end, k, v, sizeof(v)), "partition row %zu: no %s", i, k);
            ck_assert_msg(atoll(v) == json_integer_value(x), "partition %zu %s: page %s, API %"
                          JSON_INTEGER_FORMAT, i, k, v, json_integer_value(x));
        }
    }
}

/* The firing instances of /v1/alerts al are the rows of the page's alert
 * table, field by field (evaluated_at: the page's is not later than the
 * API's, read after it); returns the number of rows. */
static int check_alerts(const char *dom, const json_t *al)
{
    const char *tb = strstr(dom, "<table id=\"alerts\"");
    ck_assert_msg(tb != NULL, "no alert table in the DOM");
    const char *tb_end = strstr(tb, "</table>");
    ck_assert_ptr_nonnull(tb_end);
    int rows = 0, firing = 0;
    size_t i;
    json_t *o;
    json_array_foreach(json_object_get(al, "alerts"), i, o) {
        const char *st = json_string_value(json_object_get(o, "state"));
        ck_assert_ptr_nonnull(st);
        firing += !strcmp(st, "firing");
    }
    for (const char *p = strstr(tb, "<tr data-alert=\""); p && p < tb_end;
         p = strstr(p + 1, "<tr data-alert=\"")) {
        char name[128], sch[512], nat[512], v[128];
        const char *end = strstr(p, "</tr>");
        ck_assert(end && end < tb_end);
        ck_assert(attr(p, "data-alert", name, sizeof(name)));
        ck_assert(attr(p, "data-scheme", sch, sizeof(sch)));
        ck_assert(attr(p, "data-nationality", nat, sizeof(nat)));
        const json_t *in = NULL;
        json_array_foreach(json_object_get(al, "alerts"), i, o)
            if (!strcmp(json_string_value(json_object_get(o, "alert")), name) &&
                !strcmp(json_string_value(json_object_get(o, "scheme")), sch) &&
                !strcmp(json_string_value(json_object_get(o, "nationality")), nat))
                in = o;
        ck_assert_msg(in != NULL, "the page shows alert %s/%s/%s, the API has no such instance",
                      name, sch, nat);
        ck_assert_msg(!strcmp(json_string_value(json_object_get(in, "state")), "firing"),
                      "the page shows %s/%s/%s, which is not firing", name, sch, nat);
        ck_assert(cell(p, end, "value", v, sizeof(v)));
        const json_t *jv = json_object_get(in, "value");
        ck_assert_msg(json_is_number(jv) && strtod(v, NULL) == json_number_value(jv),
                      "%s/%s/%s value: page %s", name, sch, nat, v);
        static const char *const ints[] = {"expected_departures", "since"};
        for (size_t k = 0; k < 2; k++) {
            ck_assert_msg(cell(p, end, ints[k], v, sizeof(v)), "%s/%s/%s: no %s", name, sch, nat,
                          ints[k]);
            ck_assert_msg(atoll(v) == json_integer_value(json_object_get(in, ints[k])),
                          "%s/%s/%s %s: page %s, API %" JSON_INTEGER_FORMAT, name, sch, nat,
                          ints[k], v, json_integer_value(json_object_get(in, ints[k])));
        }
        ck_assert(cell(p, end, "evaluated_at", v, sizeof(v)));
        ck_assert_msg(atoll(v) > 0 && atoll(v) <= json_integer_value(json_object_get(in, "evaluated_at")),
                      "%s/%s/%s evaluated_at: page %s", name, sch, nat, v);
        ck_assert_str_eq(name, "every-nat");
        ck_assert_msg(nat[0], "every-nat/%s: an instance without nationality", sch);
        rows++;
    }
    ck_assert_int_eq(rows, firing);
    return rows;
}

/* Polls /v1/alerts until every instance was evaluated after t and the
 * rules' instances are there; returns the document. */
static json_t *alerts_after(json_int_t t)
{
    double end = now_s() + 60;
    for (;;) {
        json_t *al = get_json("/v1/alerts");
        size_t i, n = 0, fresh = 0, never = 0;
        json_t *o;
        json_array_foreach(json_object_get(al, "alerts"), i, o) {
            n++;
            fresh += json_integer_value(json_object_get(o, "evaluated_at")) > t;
            never += !strcmp(json_string_value(json_object_get(o, "alert")), "never");
        }
        if (n && fresh == n && never)
            return al;
        json_decref(al);
        ck_assert_msg(now_s() < end, "alerts not evaluated after %" JSON_INTEGER_FORMAT
                      " within 60 s", t);
        nap_ms(200);
    }
}

/* ------------------------------------------------------------ chromium */

/* Runs chromium headless on url with extra (one flag) at w x h; its
 * stdout into out. Fails unless it exits 0 in time; kills all it started. */
static void chromium(const char *url, int w, int h, const char *extra, const char *out)
{
    static int run;
    char size[64], log[300], udd[400];
    snprintf(profile, sizeof(profile), "%s/chromium-profile-%d", dir, run++);
    ck_assert_int_eq(mkdir(profile, 0700), 0);
    snprintf(udd, sizeof(udd), "--user-data-dir=%s", profile);
    snprintf(size, sizeof(size), "--window-size=%d,%d", w, h);
    snprintf(log, sizeof(log), "%s/chromium.log", dir);
    char *argv[] = {"chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--disable-extensions",
                    "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio", udd, size,
                    "--virtual-time-budget=5000", (char *)extra, (char *)url, NULL};
    pid_t pid = spawn_ex(argv, out, log, NULL, NULL, CMP_OWN_GROUP);
    int st = wait_pid(pid, CHROMIUM_TIMEOUT_S);
    kill(-pid, SIGKILL); /* what it left in its group */
    kill_profile_procs();
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", profile); /* tens of MB each */
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", profile);
    profile[0] = '\0';
    ck_assert_msg(st >= 0, "chromium did not finish in %d s (see %s)", CHROMIUM_TIMEOUT_S, log);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "chromium failed (status %d, see %s)",
                  st, log);
}

/* The PNG's width and height from its IHDR chunk. */
static void png_size(const char *path, unsigned *w, unsigned *h)
{
    size_t len;
    unsigned char *b = (unsigned char *)slurp(path, &len);
    ck_assert_msg(len > 33 && !memcmp(b, "\x89PNG\r\n\x1a\n", 8) && !memcmp(b + 12, "IHDR", 4),
                  "%s is not a PNG", path);
    *w = (unsigned)b[16] << 24 | (unsigned)b[17] << 16 | (unsigned)b[18] << 8 | b[19];
    *h = (unsigned)b[20] << 24 | (unsigned)b[21] << 16 | (unsigned)b[22] << 8 | b[23];
    free(b);
}

/* ------------------------------------------------------------ the test */

static void setup(void)
{
    svc_dir_make("check_page");
    profile[0] = '\0';
    /* A failed assertion exits the forked test: its processes go with it. */
    ck_assert_int_eq(atexit(kill_groups), 0);
    redis_start(0);
    broker_start_with(N_PARTS, "circmon.events.alerts");
}

static void teardown(void)
{
    kill_groups();
    svc_dir_remove();
}

/* Starts circmond on the published stream and waits until the figures it
 * serves were read after it caught up. Returns its pid. */
static pid_t daemon_up(void)
{
    char conf[300], ev[300], log[300], path[600], m[16];
    in_dir("circmond.conf", conf, sizeof(conf));
    in_dir("ev.bin", ev, sizeof(ev));
    in_dir("circmond.log", log, sizeof(log));
    http_port = free_port();
    write_conf(conf);
    snprintf(m, sizeof(m), "%d", MIGRANTS);
    char *ga[] = {"--seed", "1", "--migrants", m, "--out", ev, NULL};
    ck_assert_int_eq(run_bin("circmon-gen", ga, NULL, NULL), 0);
    long total = count_records(ev);
    char *pa[] = {"publish", "--config", conf, ev, NULL};
    ck_assert_int_eq(run_bin("circmonctl", pa, NULL, NULL), 0);

    cm_bin_path(path, sizeof(path), "circmond");
    char *da[] = {path, "--config", conf, "--foreground", NULL};
    pid_t pid = spawn(da, NULL, log, NULL, NULL);
    double end = now_s() + 60;
    int64_t s;
    while ((s = stored_sum(conf)) != total) {
        ck_assert_msg(alive(pid), "circmond exited (see %s)", log);
        ck_assert_msg(now_s() < end, "not caught up in 60 s: %" PRId64 " of %ld", s, total);
        nap_ms(50);
    }
    /* Figures read from Redis after the catch-up: as of a later second. */
    json_int_t caught = (json_int_t)time(NULL);
    for (;;) {
        json_t *doc = get_json("/v1/indicators");
        json_int_t as_of = json_integer_value(json_object_get(doc, "as_of"));
        json_decref(doc);
        if (as_of > caught)
            break;
        ck_assert_msg(now_s() < end, "/v1/indicators still as of %" JSON_INTEGER_FORMAT
                      " after 60 s", as_of);
        nap_ms(100);
    }
    return pid;
}

START_TEST(page_headers)
{
    setup();
    daemon_up();
    static const struct {
        const char *path, *type, *file;
    } files[] = {{"/", "text/html", "index.html"},
                 {"/page.js", "text/javascript", "page.js"},
                 {"/page.css", "text/css", "page.css"}};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        char v[512] = "", src[600];
        size_t src_len;
        struct resp r = http_get(files[i].path);
        ck_assert_msg(r.status == 200, "GET %s: %d", files[i].path, r.status);
        /* Served byte for byte as in daemon/page/. */
        snprintf(src, sizeof(src), "%s/daemon/page/%s", top(), files[i].file);
        char *want = slurp(src, &src_len);
        ck_assert_msg(r.body_len == src_len && !memcmp(r.body, want, src_len),
                      "GET %s: not the bytes of %s", files[i].path, src);
        free(want);
        ck_assert_msg(header(r.head, "Content-Type", v, sizeof(v)) &&
                          !strncmp(v, files[i].type, strlen(files[i].type)),
                      "GET %s: Content-Type '%s'", files[i].path, v);
        ck_assert_msg(header(r.head, "Content-Security-Policy", v, sizeof(v)) &&
                          strstr(v, "default-src 'self'"),
                      "GET %s: no CSP default-src 'self'", files[i].path);
        ck_assert_msg(header(r.head, "Cache-Control", v, sizeof(v)), "GET %s: no Cache-Control",
                      files[i].path);
        ck_assert_uint_gt(r.body_len, 100);
        /* No external asset: no other origin is named (the SVG namespace
         * is a name, not a load), no protocol-relative or CSS import. */
        int origins = 0;
        for (const char *p = strstr(r.body, "http"); p; p = strstr(p + 1, "http"))
            origins += strncmp(p, "http://www.w3.org/2000/svg", 26) != 0;
        ck_assert_msg(origins == 0 && !strstr(r.body, "=\"//") && !strstr(r.body, "@import") &&
                          !strstr(r.body, "url("),
                      "GET %s names an external origin", files[i].path);
        resp_free(&r);
    }
    struct resp r = http_get("/page.missing");
    ck_assert_int_eq(r.status, 404);
    resp_free(&r);
    /* Read-only: another method is refused, with the methods it takes. */
    char v[64] = "";
    r = http_req("POST", "/");
    ck_assert_int_eq(r.status, 405);
    ck_assert_msg(header(r.head, "Allow", v, sizeof(v)) && !strcmp(v, "GET, HEAD"), "Allow '%s'",
                  v);
    resp_free(&r);
    teardown();
}
END_TEST

START_TEST(page_in_chromium)
{
    char url[128], dom_path[300], art[600], shot[700];
    unsigned w, h;
    setup();
    daemon_up();
    json_decref(alerts_after((json_int_t)time(NULL)));
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", http_port);
    in_dir("dom.html", dom_path, sizeof(dom_path));
    chromium(url, 1280, 800, "--dump-dom", dom_path);
    char *dom = slurp(dom_path, NULL);
    char v[64] = "";
    const char *body = strstr(dom, "<body");
    ck_assert_msg(body != NULL, "no body in the DOM (%s)", dom_path);
    ck_assert_msg(attr(body, "data-state", v, sizeof(v)) && !strcmp(v, "loaded"),
                  "the page did not load its figures (state '%s', see %s)", v, dom_path);
    ck_assert(attr(body, "data-as-of", v, sizeof(v)));
    char q[128];
    snprintf(q, sizeof(q), "/v1/indicators?as_of=%s", v);
    json_t *doc = get_json(q);
    ck_assert_int_eq(json_integer_value(json_object_get(doc, "as_of")), atoll(v));
    ck_assert_int_gt(check_table(dom, doc), 0);
    check_dq(dom, doc);
    json_decref(doc);
    ck_assert_msg(attr(body, "data-status", v, sizeof(v)) && !strcmp(v, "loaded"),
                  "the page did not load /v1/status");
    json_t *st = get_json("/v1/status");
    check_partitions(dom, st);
    json_decref(st);
    ck_assert_msg(attr(body, "data-alerts", v, sizeof(v)) && !strcmp(v, "loaded"),
                  "the page did not load /v1/alerts");
    json_t *al = get_json("/v1/alerts");
    ck_assert_int_gt(check_alerts(dom, al), 0);
    json_decref(al);
    /* One chart per scheme. */
    int charts = 0;
    for (const char *p = strstr(dom, "<figure class=\"chart\""); p; p = strstr(p + 1, "<figure class=\"chart\""))
        charts++;
    ck_assert_int_gt(charts, 0);
    free(dom);

    snprintf(art, sizeof(art), "%s/build/artefacts", top());
    if (mkdir(art, 0755) != 0)
        ck_assert_msg(errno == EEXIST, "%s: %s", art, strerror(errno));
    static const int sizes[][2] = {{1280, 800}, {390, 844}};
    for (size_t i = 0; i < 2; i++) {
        char flag[800];
        snprintf(shot, sizeof(shot), "%s/page-%dx%d.png", art, sizes[i][0], sizes[i][1]);
        unlink(shot);
        snprintf(flag, sizeof(flag), "--screenshot=%s", shot);
        chromium(url, sizes[i][0], sizes[i][1], flag, NULL);
        png_size(shot, &w, &h);
        ck_assert_uint_eq(w, (unsigned)sizes[i][0]);
        ck_assert_uint_eq(h, (unsigned)sizes[i][1]);
    }
    teardown();
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("page");
    TCase *tc = tcase_create("headers");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, page_headers);
    suite_add_tcase(s, tc);
    tc = tcase_create("chromium");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, page_in_chromium);
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
