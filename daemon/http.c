/* http.c - circmond's HTTP endpoint: the evhttp server on the daemon's loop, its limits, its routes. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include "circmon/clock.h"
#include "circmon/indicators.h"
#include "circmon/timeutil.h"
#include "alerts.h"
#include "daemon.h"
#include "http.h"
#include "page.h"
#include "readside.h"

/* One connection evhttp accepted. evhttp 2.1 has no hook for a new or a
 * closed connection besides the bufferevent it asks us for (evhttp_set_bevcb),
 * so each connection's bufferevent carries one reference of ours: when evhttp
 * frees the connection its callbacks are cleared (bufferevent_free), which
 * the sweep notices; the sweep then drops our reference, which closes the
 * socket. The sweep runs right after every request and every HTTP_SWEEP_MS. */
struct http_conn {
    struct http_conn *next;
    struct bufferevent *bev;
    int64_t since_ms; /* accepted, or last request answered (monotonic) */
    int live;         /* counted against max_connections until evhttp frees it */
    int refused;      /* over max_connections: closed at the first sweep */
    int fresh;        /* its socket not yet tuned */
};

/* ------------------------------------------------------------ connections */

static int bev_freed(struct bufferevent *bev)
{
    bufferevent_data_cb rcb, wcb;
    bufferevent_event_cb ecb;
    void *arg;
    bufferevent_getcb(bev, &rcb, &wcb, &ecb, &arg);
    return !rcb && !wcb && !ecb;
}

static void sweep(struct cmd_http *h, int all)
{
    int64_t now = cm_clock_ms();
    int64_t limit = h->d->cfg->http_request_timeout_ms;
    struct http_conn **pp = &h->conns;
    while (*pp) {
        struct http_conn *c = *pp;
        if (all || bev_freed(c->bev)) {
            cm_log_debug("http: connection %p closed (%d open)", (void *)c->bev, h->n_conns - c->live);
            *pp = c->next;
            if (c->live)
                h->n_conns--;
            bufferevent_disable(c->bev, EV_READ | EV_WRITE);
            bufferevent_decref(c->bev); /* the last reference: closes the socket */
            free(c);
            continue;
        }
        evutil_socket_t fd = bufferevent_getfd(c->bev);
        if (fd >= 0 && c->fresh) {
            /* the head and the body go out in separate writes: without
             * this, Nagle and the client's delayed ACK hold the body 40 ms */
            int one = 1;
            c->fresh = 0;
            if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
                cm_log_debug("http: TCP_NODELAY: %s", strerror(errno));
        }
        if (fd >= 0 && (c->refused || now - c->since_ms > limit)) {
            /* evhttp sees the end of the stream and frees the connection;
             * the next sweep lets it go */
            shutdown(fd, SHUT_RDWR);
            c->refused = 0;
            c->since_ms = now;
            event_active(h->sweep_now, 0, 0);
        }
        pp = &c->next;
    }
}

static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct cmd_http *h = arg;
    sweep(h, 0);
    if (h->conns)
        cmd_timer_in(h->sweep_timer, HTTP_SWEEP_MS);
}

/* evhttp's new connection: a bufferevent of ours (evhttp sets its socket). */
static struct bufferevent *on_bev(struct event_base *base, void *arg)
{
    struct cmd_http *h = arg;
    struct http_conn *c = calloc(1, sizeof(*c));
    struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    /* requests take their turn with the batches' slices (LOOP_PRIO_WORK):
     * a client asking without pause does not starve the intake */
    if (bev && bufferevent_priority_set(bev, LOOP_PRIO_WORK) < 0)
        cm_log_warn("http: connection at the default loop priority");
    if (!c || !bev) {
        free(c);
        return bev; /* untracked: evhttp owns it alone */
    }
    bufferevent_incref(bev);
    c->bev = bev;
    c->fresh = 1;
    c->since_ms = cm_clock_ms();
    event_active(h->sweep_now, 0, 0); /* runs once evhttp has set the socket */
    if (h->n_conns >= h->d->cfg->http_max_connections) {
        c->refused = 1; /* not counted: it goes at the next sweep */
        h->conns_refused++;
    } else {
        c->live = 1;
        h->n_conns++;
    }
    cm_log_debug("http: connection %p accepted (%d open%s)", (void *)bev, h->n_conns,
                 c->refused ? ", refused" : "");
    c->next = h->conns;
    h->conns = c;
    if (!evtimer_pending(h->sweep_timer, NULL))
        cmd_timer_in(h->sweep_timer, HTTP_SWEEP_MS);
    return bev;
}

static void note_done(struct cmd_http *h, struct evhttp_request *req)
{
    struct evhttp_connection *evc = evhttp_request_get_connection(req);
    struct bufferevent *bev = evc ? evhttp_connection_get_bufferevent(evc) : NULL;
    for (struct http_conn *c = h->conns; bev && c; c = c->next)
        if (c->bev == bev) {
            c->since_ms = cm_clock_ms();
            break;
        }
    event_active(h->sweep_now, 0, 0); /* a connection closed after its answer goes now */
}

/* ------------------------------------------------------------ answers */

static void send_body(struct cmd_http *h, struct evhttp_request *req, int code,
                      const char *ctype, const char *body, size_t len)
{
    struct evkeyvalq *oh = evhttp_request_get_output_headers(req);
    struct evbuffer *out = evhttp_request_get_output_buffer(req);
    evhttp_add_header(oh, "Content-Type", ctype);
    evhttp_add_header(oh, "Cache-Control", "no-store");
    if (code == 405)
        evhttp_add_header(oh, "Allow", "GET, HEAD");
    if (evhttp_request_get_command(req) != EVHTTP_REQ_HEAD && len &&
        evbuffer_add(out, body, len) < 0) {
        evhttp_send_error(req, 500, "out of memory");
        note_done(h, req);
        return;
    }
    const char *reason = code == 200 ? "OK" : code == 400 ? "Bad Request" : code == 404 ? "Not Found"
                       : code == 405 ? "Method Not Allowed" : code == 503 ? "Service Unavailable"
                                                                        : "Error";
    evhttp_send_reply(req, code, reason, NULL);
    note_done(h, req);
}

static void send_json(struct cmd_http *h, struct evhttp_request *req, int code, json_t *j)
{
    char *s = j ? json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(17)) : NULL;
    if (j)
        json_decref(j);
    if (!s) {
        static const char oom[] = "{\"error\": \"out of memory making the answer\", \"status\": 500}\n";
        send_body(h, req, 500, "application/json", oom, sizeof(oom) - 1);
        return;
    }
    size_t n = strlen(s);
    char *t = realloc(s, n + 2);
    if (t) {
        s = t;
        s[n++] = '\n';
        s[n] = '\0';
    }
    send_body(h, req, code, "application/json", s, n);
    free(s);
}

static void send_error(struct cmd_http *h, struct evhttp_request *req, int code, const char *msg)
{
    send_json(h, req, code, json_pack("{s:s, s:i}", "error", msg, "status", code));
}

/* ------------------------------------------------------------ routes */

static void get_healthz(struct cmd_http *h, struct evhttp_request *req)
{
    send_json(h, req, 200, json_pack("{s:s}", "status", "ok"));
}

static void get_readyz(struct cmd_http *h, struct evhttp_request *req)
{
    json_t *reasons = json_array();
    int ok = reasons ? cmd_http_ready(h->d, reasons) : 0;
    json_t *j = reasons ? json_pack("{s:b, s:o}", "ready", ok, "reasons", reasons) : NULL;
    send_json(h, req, ok ? 200 : 503, j);
}

static void get_metrics(struct cmd_http *h, struct evhttp_request *req)
{
    const struct cmd_figures *f = cmd_readside_figures(h->rs);
    struct cm_strbuf b = {0};
    if ((f && cm_strbuf_append(&b, f->prom, f->prom_len) < 0) ||
        cmd_http_pipeline_metrics(h->d, &b) < 0 || cmd_alerts_metrics(h->d, &b) < 0) {
        cm_strbuf_free(&b);
        send_error(h, req, 500, "out of memory making the metrics");
        return;
    }
    send_body(h, req, 200, "text/plain; version=0.0.4; charset=utf-8", b.s ? b.s : "", b.len);
    cm_strbuf_free(&b);
}

/* The document of fig, as of as_of (or the cached one when have_as_of is 0),
 * keeping only scheme when given. */
static void get_indicators(struct cmd_http *h, struct evhttp_request *req, const char *query)
{
    const struct cmd_figures *f = cmd_readside_figures(h->rs);
    struct evkeyvalq q = {0};
    const char *as_of_s = NULL, *scheme = NULL;
    if (query && evhttp_parse_query_str(query, &q) < 0) {
        send_error(h, req, 400, "the query string does not parse");
        return;
    }
    for (struct evkeyval *kv = q.tqh_first; kv; kv = kv->next.tqe_next) {
        const char **slot = !strcmp(kv->key, "as_of") ? &as_of_s
                          : !strcmp(kv->key, "scheme") ? &scheme : NULL;
        char msg[200];
        if (!slot || *slot) {
            snprintf(msg, sizeof(msg), "%s parameter '%.60s' (known: as_of, scheme, each once)",
                     slot ? "repeated" : "unknown", kv->key);
            evhttp_clear_headers(&q);
            send_error(h, req, 400, msg);
            return;
        }
        *slot = kv->value;
    }
    int64_t as_of = 0;
    if (as_of_s && cm_time_parse(as_of_s, &as_of) < 0) {
        evhttp_clear_headers(&q);
        send_error(h, req, 400, "as_of: not a time (unix seconds, YYYY-MM-DD or "
                                "YYYY-MM-DDTHH:MM[:SS][Z], UTC)");
        return;
    }
    if (as_of_s && cm_indicators_as_of_check(as_of, NULL, 0) < 0) {
        evhttp_clear_headers(&q);
        send_error(h, req, 400, "as_of: outside the instants the contract knows, 0 "
                                "(1970-01-01T00:00:00Z) to 253402300799 (9999-12-31T23:59:59Z)");
        return;
    }
    if (!f) {
        evhttp_clear_headers(&q);
        send_error(h, req, 503, "the figures have not been read from Redis yet");
        return;
    }
    if (!as_of_s && !scheme) {
        evhttp_clear_headers(&q);
        send_body(h, req, 200, "application/json", f->json, f->json_len);
        return;
    }
    /* the settings the prefix read was folded with; cohorts per nationality
     * as in the refreshed document (the alias's settings hold no alert rules) */
    json_t *doc = as_of_s ? cm_indicators_json_ex(f->ag, f->nm, &f->al.fold, as_of,
                                                  f->nat_cohorts ? CM_IND_NAT_COHORTS : 0)
                          : json_copy(f->doc);
    if (doc && scheme) {
        json_t *all = json_object_get(doc, "schemes"), *one = json_object();
        json_t *s = all ? json_object_get(all, scheme) : NULL;
        if (!one || (s && json_object_set(one, scheme, s) < 0) ||
            json_object_set_new(doc, "schemes", one) < 0) {
            json_decref(doc);
            doc = NULL;
        }
    }
    evhttp_clear_headers(&q);
    if (!doc) {
        send_error(h, req, 500, "cannot make the indicators document (out of memory)");
        return;
    }
    send_json(h, req, 200, doc);
}

static void on_request(struct evhttp_request *req, void *arg)
{
    struct cmd_http *h = arg;
    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
    const char *path = u ? evhttp_uri_get_path(u) : NULL;
    const char *query = u ? evhttp_uri_get_query(u) : NULL;
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    h->requests++;
    if (!path || !*path)
        path = "/";
    size_t page_len; /* the status page (daemon/page.c) */
    const char *page_type;
    if (cmd_page_asset(path, &page_len, &page_type)) {
        cmd_page_serve(req);
        note_done(h, req);
        return;
    }
    static const char *const known[] = {"/healthz",     "/readyz",     "/metrics",
                                        "/v1/indicators", "/v1/schemes", "/v1/status",
                                        "/v1/alerts"};
    size_t i;
    for (i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (!strcmp(path, known[i]))
            break;
    if (i == sizeof(known) / sizeof(known[0])) {
        char msg[160];
        snprintf(msg, sizeof(msg), "no such path: %.100s", path);
        send_error(h, req, 404, msg);
        return;
    }
    if (m != EVHTTP_REQ_GET && m != EVHTTP_REQ_HEAD) {
        send_error(h, req, 405, "only GET and HEAD are served");
        return;
    }
    if (evbuffer_get_length(evhttp_request_get_input_buffer(req)) > 0) {
        send_error(h, req, 400, "a GET request has no body");
        return;
    }
    if (query && *query && i != 3) {
        send_error(h, req, 400, "this path takes no parameters");
        return;
    }
    switch (i) {
    case 0: get_healthz(h, req); break;
    case 1: get_readyz(h, req); break;
    case 2: get_metrics(h, req); break;
    case 3: get_indicators(h, req, query); break;
    case 4: send_json(h, req, 200, cmd_http_schemes_json(h->d)); break;
    case 6: send_json(h, req, 200, cmd_alerts_json(h->d)); break;
    default: send_json(h, req, 200, cmd_http_status_json(h->d)); break;
    }
}

/* ------------------------------------------------------------ hooks */

int cmd_http_start(struct daemon *d)
{
    const struct cm_config *cfg = d->cfg;
    if (cfg->http_port == 0) {
        cm_log_info("http endpoint disabled ([http] port = 0)");
        return 0;
    }
    struct cmd_http *h = calloc(1, sizeof(*h));
    if (!h) {
        cm_log_err("out of memory for the http endpoint");
        return -ENOMEM;
    }
    d->http = h;
    h->d = d;
    h->started_at = (int64_t)time(NULL);
    cm_hist_init(&h->h_apply, NULL, NULL);
    cm_hist_init(&h->h_events, NULL, NULL);
    h->h_refresh = cm_metrics_hist(d->m, "circmon_indicators_refresh_us",
                                   "how long a read of every partition's aggregate and its "
                                   "evaluation took, in microseconds");
    h->c_refresh_fail = cm_metrics_counter(d->m, "circmon_indicators_refresh_failures_total",
                                           "reads of the figures from Redis that failed");
    struct timeval tv;
    cm_clock_tv(cfg->http_request_timeout_ms, &tv);
    if (!h->h_refresh || !h->c_refresh_fail || !(h->eh = evhttp_new(d->base)) ||
        !(h->sweep_timer = evtimer_new(d->base, on_sweep, h)) ||
        !(h->sweep_now = event_new(d->base, -1, 0, on_sweep, h)) ||
        !(h->rs = cmd_readside_new(d->base, cfg, h->h_refresh, h->c_refresh_fail))) {
        cm_log_err("out of memory setting up the http endpoint");
        return -ENOMEM;
    }
    evhttp_set_max_headers_size(h->eh, HTTP_MAX_HEADERS);
    evhttp_set_max_body_size(h->eh, HTTP_MAX_BODY);
    evhttp_set_timeout_tv(h->eh, &tv);
    /* every method reaches on_request, which answers 405 with a JSON body */
    evhttp_set_allowed_methods(h->eh, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                          EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                          EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
                                          EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
    evhttp_set_gencb(h->eh, on_request, h);
    evhttp_set_bevcb(h->eh, on_bev, h);
    errno = 0;
    h->sock = evhttp_bind_socket_with_handle(h->eh, cfg->http_listen, (ev_uint16_t)cfg->http_port);
    if (!h->sock) {
        /* The pipeline does not depend on the endpoint: fold on without it
         * (and say so loudly) rather than stop the figures over a port. */
        int e = errno ? errno : EADDRNOTAVAIL;
        cm_log_err("http: cannot listen on %s port %d: %s; the HTTP endpoint is off, the "
                   "pipeline goes on",
                   cfg->http_listen, cfg->http_port, strerror(e));
        cmd_http_stop(d);
        return 0;
    }
    cm_log_info("http endpoint at http://%s%s%s:%d/ (refresh every %d ms)",
                strchr(cfg->http_listen, ':') ? "[" : "", cfg->http_listen,
                strchr(cfg->http_listen, ':') ? "]" : "", cfg->http_port, cfg->http_refresh_ms);
    return 0;
}

void cmd_http_topic_known(struct daemon *d, int n_parts)
{
    if (d->http && n_parts > 0)
        cmd_readside_start(d->http->rs, n_parts);
}

void cmd_http_stop(struct daemon *d)
{
    struct cmd_http *h = d->http;
    if (!h)
        return;
    if (h->eh)
        evhttp_free(h->eh); /* frees every connection: their callbacks are cleared */
    if (h->sweep_now)
        sweep(h, 1);
    if (h->sweep_timer)
        event_free(h->sweep_timer);
    if (h->sweep_now)
        event_free(h->sweep_now);
    cmd_readside_free(h->rs);
    free(h);
    d->http = NULL;
}

void cmd_http_apply_sent(struct daemon *d, struct batch *b)
{
    if (d->http)
        b->apply_t0_us = cm_clock_us();
}

static void count_reason(struct cmd_http *h, const char *reason)
{
    size_t i;
    for (i = 0; i < HTTP_REASONS_MAX && h->reasons[i]; i++)
        if (h->reasons[i] == reason || !strcmp(h->reasons[i], reason))
            break;
    if (i < HTTP_REASONS_MAX && !h->reasons[i])
        h->reasons[i] = reason;
    h->reason_n[i]++; /* i == HTTP_REASONS_MAX: other */
}

void cmd_http_applied(struct daemon *d, const struct batch *b)
{
    struct cmd_http *h = d->http;
    if (!h)
        return;
    if (b->apply_t0_us)
        cm_hist_observe(&h->h_apply, (uint64_t)(cm_clock_us() - b->apply_t0_us));
    cm_hist_observe(&h->h_events, b->n);
    /* the batch's own data-quality delta says how many it dropped as duplicates */
    struct cm_agg_key k = {.kind = CM_AK_DQ, .ctr = CM_DQ_DUPLICATES};
    int64_t dups = cm_agg_get(cm_batch_agg(b->cb), &k);
    uint64_t folded = cm_batch_folded(b->cb);
    if (dups < 0)
        dups = 0;
    if ((uint64_t)dups > folded)
        dups = (int64_t)folded;
    h->results[HR_FOLDED] += folded - (uint64_t)dups;
    h->results[HR_DUPLICATE] += (uint64_t)dups;
    for (size_t i = 0; i < b->n; i++) {
        const char *v = cm_batch_verdict(b->cb, i);
        if (!v)
            continue;
        if (!strcmp(v, "too_late"))
            h->results[HR_TOO_LATE]++;
        else if (!strcmp(v, "state_unreadable") || !strncmp(v, "limit_", 6))
            h->results[HR_REFUSED]++;
        else
            h->results[HR_INVALID]++;
        count_reason(h, v);
    }
}

void cmd_http_redis(struct daemon *d, int up)
{
    struct cmd_http *h = d->http;
    if (!h)
        return;
    if (!up) {
        h->redis_errors++;
        h->redis_was_down = 1;
    } else if (h->redis_was_down) {
        h->redis_reconnects++;
        h->redis_was_down = 0;
    }
}

void cmd_http_redis_error(struct daemon *d)
{
    if (d->http)
        d->http->redis_errors++;
}

void cmd_http_rebalance(struct daemon *d)
{
    if (d->http)
        d->http->rebalances++;
}

void cmd_http_reconfigure(struct daemon *d)
{
    struct timeval tv;
    if (!d->http || !d->http->eh)
        return;
    cm_clock_tv(d->cfg->http_request_timeout_ms, &tv);
    evhttp_set_timeout_tv(d->http->eh, &tv);
}
