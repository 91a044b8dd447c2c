/* ctl_parts.c - the partition count of the events topic, from Kafka's metadata (for reads by partition name). */
#include <stdio.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "circmon/kafka.h"
#include "ctl.h"

#define PARTS_TIMEOUT_MS 10000

int cm_ctl_topic_parts(const struct cm_ctl_cmd *cmd, const struct cm_config *cfg)
{
    char err[512];
    rd_kafka_conf_t *conf = cm_kafka_conf_new(cfg, err, sizeof(err));
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_t *rk = NULL;
    int n = -1;
    if (!conf) {
        cm_ctl_err(cmd, "%s", err);
        return -1;
    }
    if (cm_kafka_conf_default(conf, cfg, "client.id", "circmonctl", err, sizeof(err))) {
        cm_ctl_err(cmd, "%s", err);
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    if (!(rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err)))) {
        cm_ctl_err(cmd, "cannot create the Kafka client: %s", err);
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    /* All topics rather than one: asking for one may auto-create it. */
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 1, NULL, &md, PARTS_TIMEOUT_MS);
    if (e) {
        cm_ctl_err(cmd, "Kafka %s: metadata: %s", cfg->brokers, rd_kafka_err2str(e));
    } else {
        const struct rd_kafka_metadata_topic *mt = NULL;
        for (int i = 0; i < md->topic_cnt && !mt; i++)
            if (!strcmp(md->topics[i].topic, cfg->topic))
                mt = &md->topics[i];
        if (!mt || mt->err)
            cm_ctl_err(cmd, "topic %s: %s", cfg->topic,
                       mt ? rd_kafka_err2str(mt->err) : "does not exist");
        else
            n = mt->partition_cnt;
        rd_kafka_metadata_destroy(md);
    }
    rd_kafka_destroy(rk);
    return n;
}
