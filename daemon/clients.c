/* clients.c - circmond's librdkafka configurations and consumer, loop wake-ups, topic metadata. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "circmon/clock.h"
#include "circmon/kafka.h"
#include "daemon.h"

void cmd_timer_in(struct event *ev, int ms)
{
    struct timeval tv;
    cm_clock_tv(ms, &tv);
    if (evtimer_add(ev, &tv) < 0)
        cm_log_err("cannot arm a timer of %d ms", ms); /* libevent fails only on bad input */
}

rd_kafka_conf_t *cmd_conf_build(const struct cm_config *cfg, const char *const (*defaults)[2],
                                size_t nd, const char *const (*forced)[2], size_t nf,
                                int strict, char *err, size_t errlen)
{
    for (size_t i = 0; strict && i < nf; i++)
        for (size_t k = 0; k < cfg->n_rdkafka; k++)
            if (!strcmp(cfg->rdkafka[k].key, forced[i][0])) {
                char where[300] = "";
                if (cfg->path && cfg->rdkafka[k].line > 0)
                    snprintf(where, sizeof(where), "%s:%d: ", cfg->path, cfg->rdkafka[k].line);
                snprintf(err, errlen, "%s[kafka] rdkafka.%s: circmond sets it itself%s", where,
                         forced[i][0],
                         !strcmp(forced[i][0], "group.id") ? " (use group_id)" : "");
                return NULL;
            }
    rd_kafka_conf_t *conf = cm_kafka_conf_new(cfg, err, errlen);
    if (!conf)
        return NULL;
    for (size_t i = 0; i < nd; i++)
        if (cm_kafka_conf_default(conf, cfg, defaults[i][0], defaults[i][1], err, errlen) < 0)
            goto fail;
    for (size_t i = 0; i < nf; i++)
        if (rd_kafka_conf_set(conf, forced[i][0], forced[i][1], err, errlen) !=
            RD_KAFKA_CONF_OK)
            goto fail;
    return conf;
fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

rd_kafka_conf_t *cmd_consumer_conf(const struct cm_config *cfg, char *err, size_t errlen)
{
    static const char *const defaults[][2] = {
        {"client.id", "circmond"},
        {"partition.assignment.strategy", "range,roundrobin"},
        {"queued.min.messages", "200000"}, /* 1000000: no faster here, +80 MB RSS */
        {"fetch.wait.max.ms", "100"},
        /* mirrors the applied positions to the group's committed offsets,
         * for lag tools; never read back */
        {"enable.auto.commit", "true"},
    };
    /* Forced: Redis holds the positions; a reset must never skip events.
     * Only applied positions are stored for the commits. */
    const char *const forced[][2] = {
        {"group.id", cfg->group_id},
        {"enable.auto.offset.store", "false"},
        {"auto.offset.reset", "earliest"},
        {"enable.partition.eof", "false"},
    };
    return cmd_conf_build(cfg, defaults, NELEM(defaults), forced, NELEM(forced), 1, err, errlen);
}

rd_kafka_t *cmd_client_new(rd_kafka_type_t kind, rd_kafka_conf_t *conf, const char *what)
{
    char err[512];
    rd_kafka_t *rk = rd_kafka_new(kind, conf, err, sizeof(err));
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        cm_log_err("kafka %s: %s", what, err);
    }
    return rk;
}

static int make_pipe(int fds[2])
{
    if (pipe(fds) < 0)
        return -errno;
    for (int i = 0; i < 2; i++) {
        int fl = fcntl(fds[i], F_GETFL);
        if (fl < 0 || fcntl(fds[i], F_SETFL, fl | O_NONBLOCK) < 0 ||
            fcntl(fds[i], F_SETFD, FD_CLOEXEC) < 0)
            return -errno;
    }
    return 0;
}

void cmd_drain_pipe(int fd)
{
    char buf[256];
    while (read(fd, buf, sizeof(buf)) > 0)
        ;
}

int cmd_wake_on(struct daemon *d, rd_kafka_queue_t *q, int fds[2], struct event **ev,
                event_callback_fn cb, const char *byte, int prio)
{
    int r = make_pipe(fds);
    if (r < 0)
        return r;
    if (!(*ev = event_new(d->base, fds[0], EV_READ | EV_PERSIST, cb, d)))
        return -ENOMEM;
    if (event_priority_set(*ev, prio) < 0)
        return -EINVAL;
    rd_kafka_queue_io_event_enable(q, fds[1], byte, 1);
    if (event_add(*ev, NULL) < 0)
        return -EIO;
    return 0;
}

int cmd_consumer_setup(struct daemon *d)
{
    char err[512];
    rd_kafka_conf_t *conf = cmd_consumer_conf(d->cfg, err, sizeof(err));
    if (!conf) {
        cm_log_err("kafka consumer configuration: %s", err);
        return -EINVAL;
    }
    rd_kafka_conf_set_rebalance_cb(conf, cmd_on_rebalance);
    rd_kafka_conf_set_opaque(conf, d);
    if (!(d->rk = cmd_client_new(RD_KAFKA_CONSUMER, conf, "consumer")))
        return -EINVAL;
    rd_kafka_resp_err_t e = rd_kafka_poll_set_consumer(d->rk);
    if (e) {
        cm_log_err("kafka consumer: serving its events from the consumer queue: %s",
                   rd_kafka_err2str(e));
        return -EIO;
    }
    d->rkq = rd_kafka_queue_get_consumer(d->rk);
    int r = d->rkq ? cmd_wake_on(d, d->rkq, d->kpipe, &d->kev, cmd_on_kafka, "k", LOOP_PRIO_WORK) : -ENOMEM;
    if (r < 0) {
        cm_log_err("waking the loop for the consumer: %s", strerror(-r));
        return r;
    }
    return 0;
}

/* The partition count of topic (> 0), or 0 with *err set: a broker's
 * error for the topic, or librdkafka's own (negative) one, such as
 * __TIMED_OUT when no broker answers within timeout_ms. Blocks: called
 * from the metadata thread only. */
static int topic_partitions(rd_kafka_t *rk, const char *topic, int timeout_ms,
                            rd_kafka_resp_err_t *err)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    if (!rkt) {
        *err = rd_kafka_last_error();
        if (!*err)
            *err = RD_KAFKA_RESP_ERR__FAIL;
        return 0;
    }
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms);
    if (!e && md->topic_cnt == 1 && md->topics[0].err)
        e = md->topics[0].err;
    if (!e && (md->topic_cnt != 1 || md->topics[0].partition_cnt < 1))
        e = RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
    int n = e ? 0 : md->topics[0].partition_cnt;
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    *err = e;
    return n;
}

/* The metadata thread: one query of each topic, then a byte on the pipe. */
static void *meta_main(void *arg)
{
    struct cmd_meta *mt = arg;
    mt->res.topic = mt->topics[0];
    mt->res.n = topic_partitions(mt->rk, mt->topics[0], mt->timeout_ms, &mt->res.err);
    if (mt->res.n > 0) {
        mt->res.n_topic = mt->res.n;
        mt->res.topic = mt->topics[1];
        mt->res.n = topic_partitions(mt->rk, mt->topics[1], mt->timeout_ms, &mt->res.err);
    }
    char c = 'm';
    while (write(mt->fds[1], &c, 1) < 0 && errno == EINTR)
        ;
    return NULL;
}

static void on_meta(evutil_socket_t fd, short what, void *arg)
{
    struct cmd_meta *mt = arg;
    (void)what;
    cmd_drain_pipe(fd);
    if (!mt->running)
        return;
    pthread_join(mt->th, NULL); /* it has written its byte: it is ending */
    mt->running = 0;
    mt->done(mt->d, &mt->res);
}

struct cmd_meta *cmd_meta_new(struct daemon *d, const char *topic, const char *dlq_topic,
                              cmd_meta_fn done)
{
    struct cmd_meta *mt = calloc(1, sizeof(*mt));
    if (!mt)
        return NULL;
    mt->fds[0] = mt->fds[1] = -1;
    mt->d = d;
    mt->rk = d->rk;
    mt->topics[0] = topic;
    mt->topics[1] = dlq_topic;
    mt->done = done;
    if (make_pipe(mt->fds) < 0 ||
        !(mt->ev = event_new(d->base, mt->fds[0], EV_READ | EV_PERSIST, on_meta, mt)) ||
        event_add(mt->ev, NULL) < 0)
        return cmd_meta_free(mt);
    return mt;
}

int cmd_meta_query(struct cmd_meta *mt, int timeout_ms)
{
    if (mt->running)
        return -EBUSY;
    memset(&mt->res, 0, sizeof(mt->res));
    mt->timeout_ms = timeout_ms;
    int e = pthread_create(&mt->th, NULL, meta_main, mt);
    if (e)
        return -e;
    mt->running = 1;
    return 0;
}

struct cmd_meta *cmd_meta_free(struct cmd_meta *mt)
{
    if (!mt)
        return NULL;
    if (mt->running)
        pthread_join(mt->th, NULL); /* at most its query's timeout */
    if (mt->ev)
        event_free(mt->ev);
    for (int i = 0; i < 2; i++)
        if (mt->fds[i] >= 0)
            close(mt->fds[i]);
    free(mt);
    return NULL;
}
