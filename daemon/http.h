/* http.h - circmond's HTTP endpoint (libevent evhttp on the daemon's own loop) and what feeds it.
 *
 * GET /healthz, /readyz, /metrics, /v1/indicators, /v1/schemes, /v1/status
 * (README "HTTP API"). Every answer is made from memory: the figures come
 * from the read side's cache (readside.h), the pipeline's from the daemon's
 * own structures; nothing waits on Redis or Kafka. Limits: request line and
 * headers at most HTTP_MAX_HEADERS bytes (libevent answers 400 past it), a
 * body at most HTTP_MAX_BODY bytes (413 past it), max_connections connections at once (one more is
 * closed at once, unanswered), and request_timeout_ms: a connection that
 * sends nothing for that long, or has not finished a request that long after
 * its previous one (or its accept), is closed.
 *
 * The daemon calls the hooks below; each accepts d->http == NULL (the
 * endpoint disabled with port = 0) and then does nothing. */
#ifndef CIRCMOND_HTTP_H
#define CIRCMOND_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "circmon/metrics.h"
#include "circmon/prom.h"

#define HTTP_MAX_HEADERS 8192
#define HTTP_MAX_BODY 4096
#define HTTP_SWEEP_MS 100 /* how often connections are checked against their deadline */

struct daemon;
struct batch;
struct evhttp;
struct evhttp_bound_socket;
struct event;
struct cmd_readside;
struct http_conn;

/* Results of events (circmon_events_total{result}). */
enum http_result { HR_FOLDED, HR_DUPLICATE, HR_INVALID, HR_TOO_LATE, HR_REFUSED, HR__COUNT };
#define HTTP_REASONS_MAX 48 /* distinct dead-letter reasons counted (the rest: "other") */

struct cmd_http {
    struct daemon *d;
    struct evhttp *eh;
    struct evhttp_bound_socket *sock;
    struct event *sweep_timer, *sweep_now;
    struct http_conn *conns; /* every connection evhttp made, until its last reference */
    int n_conns;             /* of them, those evhttp still serves */
    struct cmd_readside *rs;
    int64_t started_at; /* unix s */

    /* pipeline metrics of this process */
    uint64_t results[HR__COUNT];
    const char *reasons[HTTP_REASONS_MAX]; /* static strings of cm_batch_verdict */
    uint64_t reason_n[HTTP_REASONS_MAX + 1]; /* the last: other */
    uint64_t redis_errors, redis_reconnects, rebalances, conns_refused, requests;
    int redis_was_down;
    struct cm_hist h_apply;  /* apply send to reply, us */
    struct cm_hist h_events; /* events per batch */
    struct cm_hist *h_refresh;
    struct cm_counter *c_refresh_fail;
};

/* Listens on [http] listen:port (unless port is 0: d->http stays NULL) and
 * creates the read side; registers the pipeline metrics in d->m. A port that
 * cannot be bound is logged (error) and leaves d->http NULL: the pipeline
 * runs without the endpoint. Returns 0, or -ENOMEM (logged). */
int cmd_http_start(struct daemon *d);

/* The topic's partition count is known: the read side starts reading. */
void cmd_http_topic_known(struct daemon *d, int n_parts);

/* A batch's apply was sent / landed (counts, histograms). */
void cmd_http_apply_sent(struct daemon *d, struct batch *b);
void cmd_http_applied(struct daemon *d, const struct batch *b);

/* Redis went down (up = 0) or came back (up = 1); an apply failed; a
 * rebalance happened. */
void cmd_http_redis(struct daemon *d, int up);
void cmd_http_redis_error(struct daemon *d);
void cmd_http_rebalance(struct daemon *d);

/* Applies the live [http] limits of d->cfg again after a reload
 * (request_timeout_ms; max_connections, refresh_ms and
 * metrics_cohort_months are read where used). Accepts d->http == NULL. */
void cmd_http_reconfigure(struct daemon *d);

/* Closes the listener and every connection, frees the read side. Accepts
 * d->http == NULL. */
void cmd_http_stop(struct daemon *d);

/* --- http_api.c: the bodies (internal to the endpoint) */

/* 1 when ready; else 0 with the reasons appended to reasons (a JSON array). */
int cmd_http_ready(struct daemon *d, json_t *reasons);

/* The pipeline part of /metrics, appended to b. Returns 0 or -ENOMEM. */
int cmd_http_pipeline_metrics(struct daemon *d, struct cm_strbuf *b);

/* JSON documents (new references, NULL when out of memory). */
json_t *cmd_http_status_json(struct daemon *d);
json_t *cmd_http_schemes_json(struct daemon *d);

#endif
