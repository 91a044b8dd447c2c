/* ctl_publish.c - circmonctl publish: produce an event file to the Kafka topic. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#include "circmon/config.h"
#include "circmon/framing.h"
#include "circmon/kafka.h"
#include "circmon/v1/events.pb-c.h"
#include "ctl.h"

struct pub_stats {
    uint64_t delivered;
    uint64_t failed;
    char first_err[256];
};

static const struct cm_ctl_cmd CMD = {
    .name = "publish",
    .usage = "usage: circmonctl publish --config FILE [--topic TOPIC] [--rate N] EVENTS_FILE\n"
             "\n"
             "Produces each length-delimited record of EVENTS_FILE ('-' for standard\n"
             "input) to the topic (default: [kafka] topic), keyed by its migrant_id;\n"
             "records that do not decode or have no migrant_id are produced without a\n"
             "key. Waits for every delivery report; exits 1 if any delivery failed or\n"
             "the file is truncated (the records before the damage are published).\n"
             "\n"
             "  --rate N  produce at most N records per second, at a steady pace\n"
             "            (record i is queued no earlier than i/N s after the first;\n"
             "            default: as fast as the producer takes them)\n",
    .opts = CM_CTL_CONFIG | CM_CTL_TOPIC | CM_CTL_RATE,
    .required = CM_CTL_CONFIG,
    .min_args = 1,
    .max_args = 1,
    .args_name = "EVENTS_FILE",
};

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    struct pub_stats *st = opaque;

    (void)rk;
    if (!m->err) {
        st->delivered++;
        return;
    }
    if (!st->failed++)
        snprintf(st->first_err, sizeof(st->first_err), "%s [%" PRId32 "]: %s",
                 rd_kafka_topic_name(m->rkt), m->partition, rd_kafka_err2str(m->err));
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The producer for cfg, tuned for throughput unless rdkafka.* says otherwise. */
static rd_kafka_t *producer_new(const struct cm_config *cfg, struct pub_stats *st)
{
    /* enable.idempotence keeps each partition in order across retries: one
     * migrant's events must arrive in the order of the file. */
    static const char *const defaults[][2] = {
        {"client.id", "circmonctl-publish"},
        {"enable.idempotence", "true"},
        {"linger.ms", "5"},
        {"batch.num.messages", "10000"},
        {"batch.size", "4000000"},
        {"queue.buffering.max.messages", "1000000"},
        {"message.timeout.ms", "60000"},
    };
    char err[512];
    rd_kafka_conf_t *conf = cm_kafka_conf_new(cfg, err, sizeof(err));
    rd_kafka_t *rk;

    if (!conf) {
        fprintf(stderr, "circmonctl publish: %s: %s\n", cfg->path ? cfg->path : "config", err);
        return NULL;
    }
    for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++)
        if (cm_kafka_conf_default(conf, cfg, defaults[i][0], defaults[i][1], err,
                                  sizeof(err)) < 0) {
            fprintf(stderr, "circmonctl publish: %s\n", err);
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
    rd_kafka_conf_set_opaque(conf, st);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!rk) {
        fprintf(stderr, "circmonctl publish: cannot create the producer: %s\n", err);
        rd_kafka_conf_destroy(conf);
    }
    return rk;
}

/* Checks that topic exists: producing to a missing one may auto-create it
 * with the broker's default partition count, which is never what is meant.
 * Also fails fast on an unreachable cluster. Returns 0 or -1 (reported). */
static int topic_check(rd_kafka_t *rk, const struct cm_config *cfg, const char *topic)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 1, NULL, &md, 10000);
    int found = 0;

    if (e) {
        fprintf(stderr, "circmonctl publish: Kafka %s: %s\n", cfg->brokers, rd_kafka_err2str(e));
        return -1;
    }
    for (int i = 0; i < md->topic_cnt && !found; i++)
        found = !strcmp(md->topics[i].topic, topic) && !md->topics[i].err;
    rd_kafka_metadata_destroy(md);
    if (!found)
        fprintf(stderr, "circmonctl publish: topic %s does not exist on %s\n", topic,
                cfg->brokers);
    return found ? 0 : -1;
}

/* Queues one record, waiting for room when the local queue is full.
 * Returns 0 or the librdkafka error. */
static rd_kafka_resp_err_t produce(rd_kafka_t *rk, const char *topic, const void *key,
                                   size_t keylen, const uint8_t *buf, size_t len)
{
    for (;;) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_KEY(key, keylen), RD_KAFKA_V_VALUE((void *)buf, len), RD_KAFKA_V_END);
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL)
            return e;
        rd_kafka_poll(rk, 100); /* serves delivery reports, which frees room */
    }
}

/* Waits, serving delivery reports, until due (now_s() time): record i of a
 * paced publish is queued at t0 + i / rate. Early by less than a
 * millisecond is on time: the pace holds over any millisecond, and a busy
 * wait would take the CPU the consumer measured beside it needs. */
static void pace(rd_kafka_t *rk, double due)
{
    for (double left = due - now_s(); left >= 0.001; left = due - now_s())
        rd_kafka_poll(rk, left > 0.1 ? 100 : (int)(left * 1000));
}

int cm_ctl_publish(int argc, char **argv)
{
    struct cm_ctl_args a;
    const char *topic, *path;
    struct cm_config cfg = {0};
    struct cm_frame_reader fr;
    struct pub_stats st = {0};
    uint64_t queued = 0, keyless = 0;
    rd_kafka_t *rk = NULL;
    FILE *fp = NULL;
    int r, rc = cm_ctl_parse(&CMD, argc, argv, &a);
    double t0;

    if (rc >= 0)
        return rc;
    rc = 1;
    path = a.args[0];
    topic = a.topic;
    if (cm_ctl_config(&CMD, a.config, &cfg))
        return 1;
    if (!topic)
        topic = cfg.topic;
    if (!strcmp(path, "-")) {
        fp = stdin;
    } else if (!(fp = fopen(path, "rb"))) {
        fprintf(stderr, "circmonctl publish: %s: %s\n", path, strerror(errno));
        goto out;
    }
    if (!(rk = producer_new(&cfg, &st)) || topic_check(rk, &cfg, topic) < 0)
        goto out;

    t0 = now_s();
    cm_frame_reader_init(&fr, fp);
    for (;;) {
        const uint8_t *buf;
        size_t len;
        Circmon__V1__Event *ev;
        const char *key = NULL;
        rd_kafka_resp_err_t e;
        uint64_t at = fr.offset;

        r = cm_frame_read(&fr, &buf, &len);
        if (r <= 0)
            break;
        if (a.rate)
            pace(rk, t0 + (double)queued / (double)a.rate);
        ev = circmon__v1__event__unpack(NULL, len, buf);
        if (ev && ev->migrant_id && *ev->migrant_id)
            key = ev->migrant_id;
        else
            keyless++;
        e = produce(rk, topic, key, key ? strlen(key) : 0, buf, len);
        if (ev)
            circmon__v1__event__free_unpacked(ev, NULL);
        if (e) {
            fprintf(stderr, "circmonctl publish: %s: record at byte %" PRIu64 ": %s\n", path,
                    at, rd_kafka_err2str(e));
            r = 1; /* reported */
            break;
        }
        queued++;
        rd_kafka_poll(rk, 0);
    }
    if (r == -EPROTO)
        fprintf(stderr,
                "circmonctl publish: %s: truncated or malformed record at byte offset %" PRIu64
                "; publishing the %" PRIu64 " records before it\n",
                path, fr.offset, queued);
    else if (r < 0)
        fprintf(stderr, "circmonctl publish: %s: %s\n", path, strerror(-r));
    cm_frame_reader_free(&fr);

    /* Every message ends in a delivery report, at the latest after
     * message.timeout.ms: wait for all of them. */
    while (rd_kafka_outq_len(rk) > 0)
        rd_kafka_flush(rk, 1000);

    {
        double dt = now_s() - t0;
        fprintf(stderr,
                "circmonctl publish: %" PRIu64 " records to %s: %" PRIu64 " delivered, %" PRIu64
                " failed, %" PRIu64 " without key; %.2f s (%.0f/s)\n",
                queued, topic, st.delivered, st.failed, keyless, dt,
                dt > 0 ? (double)st.delivered / dt : 0.0);
    }
    if (st.failed)
        fprintf(stderr, "circmonctl publish: first failure: %s\n", st.first_err);
    rc = r == 0 && !st.failed && st.delivered == queued ? 0 : 1;

out:
    if (rk)
        rd_kafka_destroy(rk);
    if (fp && fp != stdin)
        fclose(fp);
    cm_config_free(&cfg);
    return rc;
}
