/* ctl_status.c - circmonctl status: per-partition stored position, high
 * watermark and lag. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "circmon/config.h"
#include "circmon/kafka.h"
#include "circmon/store.h"
#include "ctl.h"

#define part_row cm_ctl_part

static const struct cm_ctl_cmd CMD = {
    .name = "status",
    .usage = "usage: circmonctl status --config FILE [--format table|json]\n"
             "\n"
             "For each partition of the topic: the position stored in Redis (the next\n"
             "offset circmond will fold), Kafka's low and high watermarks, and the lag\n"
             "(high - position). A position below the low watermark means events were\n"
             "removed from Kafka before circmond read them; one above the high\n"
             "watermark means the topic was recreated under the stored state. With\n"
             "[redis] alias set, the positions are those of the prefix it names.\n",
    .opts = CM_CTL_CONFIG | CM_CTL_FORMAT,
    .required = CM_CTL_CONFIG,
    .format = "table",
    .min_args = 0,
    .max_args = 0,
};

int cm_ctl_positions_of(const struct cm_ctl_cmd *cmd, const struct cm_config *cfg,
                        struct cm_ctl_part *rows, int n)
{
    char err[512];
    int32_t *ids = calloc(n ? (size_t)n : 1, sizeof(*ids));
    int64_t *v = calloc(n ? (size_t)n : 1, sizeof(*v));
    int r = ids && v ? 0 : -1;
    if (r)
        cm_ctl_err(cmd, "out of memory for %d partitions", n);
    for (int i = 0; !r && i < n; i++)
        ids[i] = rows[i].partition;
    if (!r && n && cm_store_read_positions_of(cfg, ids, (size_t)n, v, err, sizeof(err)) < 0) {
        cm_ctl_err(cmd, "%s", err);
        r = -1;
    }
    for (int i = 0; !r && i < n; i++)
        rows[i].position = v[i];
    free(ids);
    free(v);
    return r;
}

/* Fills the rows' positions from Redis (0 where none is stored). */
static int read_positions(const struct cm_ctl_cmd *cmd, const struct cm_config *cfg,
                          struct part_row *rows, int n)
{
    int32_t *parts = NULL;
    int64_t *pos = NULL;
    size_t np = 0, extra = 0;
    char err[512];

    if (cfg->redis_cluster) /* by name: each partition's key routed by its slot */
        return cm_ctl_positions_of(cmd, cfg, rows, n);
    if (cm_store_read_positions(cfg, &parts, &pos, &np, err, sizeof(err)) < 0) {
        cm_ctl_err(cmd, "%s", err);
        return -1;
    }
    int ret = 0;
    for (size_t i = 0; i < np; i++) {
        if (parts[i] < 0 || parts[i] >= n) {
            extra++;
        } else if (pos[i] < 0) {
            cm_ctl_err(cmd, "redis %s:{%" PRId32 "}:pos: not a position: %" PRId64,
                       cfg->key_prefix, parts[i], pos[i]);
            ret = -1;
        } else {
            rows[parts[i]].position = pos[i];
        }
    }
    if (extra)
        cm_ctl_err(cmd,
                   "warning: Redis holds positions of %zu partitions that topic %s does not have",
                   extra, cfg->topic);
    free(parts);
    free(pos);
    return ret;
}

int cm_ctl_read_kafka(const struct cm_ctl_cmd *cmd, const struct cm_config *cfg,
                      struct cm_ctl_part **rows, int *n, cm_ctl_positions_fn *positions)
{
    char err[512];
    rd_kafka_conf_t *conf = cm_kafka_conf_new(cfg, err, sizeof(err));
    const struct rd_kafka_metadata *md = NULL;
    const struct rd_kafka_metadata_topic *mt = NULL;
    rd_kafka_t *rk = NULL;
    rd_kafka_resp_err_t e;
    int timeout = 10000, ret = -1;

    if (!conf) {
        cm_ctl_err(cmd, "%s", err);
        return -1;
    }
    char client[64];
    snprintf(client, sizeof(client), "circmonctl-%s", cmd->name);
    if (cm_kafka_conf_default(conf, cfg, "client.id", client, err, sizeof(err))) {
        cm_ctl_err(cmd, "%s", err);
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!rk) {
        cm_ctl_err(cmd, "cannot create the Kafka client: %s", err);
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    /* All topics rather than one: asking for one may auto-create it. */
    e = rd_kafka_metadata(rk, 1, NULL, &md, timeout);
    if (e) {
        cm_ctl_err(cmd, "Kafka %s: metadata: %s", cfg->brokers,
                rd_kafka_err2str(e));
        goto out;
    }
    for (int i = 0; i < md->topic_cnt && !mt; i++)
        if (!strcmp(md->topics[i].topic, cfg->topic))
            mt = &md->topics[i];
    if (!mt || mt->err) {
        cm_ctl_err(cmd, "topic %s: %s", cfg->topic,
                mt ? rd_kafka_err2str(mt->err) : "does not exist");
        goto out;
    }
    *n = mt->partition_cnt;
    *rows = calloc((size_t)*n ? (size_t)*n : 1, sizeof(**rows));
    if (!*rows) {
        cm_ctl_err(cmd, "out of memory for %d partition rows", *n);
        goto out;
    }
    /* metadata lists partitions in no promised order */
    for (int i = 0; i < *n; i++) {
        int32_t p = mt->partitions[i].id;
        if (p < 0 || p >= *n) {
            cm_ctl_err(cmd, "topic %s: unexpected partition id %" PRId32,
                    cfg->topic, p);
            goto out;
        }
        (*rows)[p].partition = p;
    }
    /* the positions before the watermarks: a lag is never below the true one */
    if (positions && positions(cmd, cfg, *rows, *n) < 0)
        goto out;
    for (int i = 0; i < *n; i++) {
        e = rd_kafka_query_watermark_offsets(rk, cfg->topic, (*rows)[i].partition,
                                             &(*rows)[i].low, &(*rows)[i].high, timeout);
        if (e) {
            cm_ctl_err(cmd, "topic %s [%" PRId32 "]: watermarks: %s",
                    cfg->topic, (*rows)[i].partition, rd_kafka_err2str(e));
            goto out;
        }
    }
    ret = 0;

out:
    if (ret < 0) {
        free(*rows);
        *rows = NULL;
    }
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_destroy(rk);
    return ret;
}

static int print_json(const struct cm_config *cfg, const struct part_row *rows, int n)
{
    json_t *doc = json_object(), *parts = json_array();
    int64_t tpos = 0, thigh = 0, tlag = 0;
    int rc;

    for (int i = 0; i < n; i++) {
        int64_t lag = rows[i].high - rows[i].position;
        json_array_append_new(
            parts, json_pack("{s:i, s:I, s:I, s:I, s:I}", "partition", (int)rows[i].partition,
                             "position", (json_int_t)rows[i].position, "low",
                             (json_int_t)rows[i].low, "high", (json_int_t)rows[i].high, "lag",
                             (json_int_t)lag));
        tpos += rows[i].position;
        thigh += rows[i].high;
        tlag += lag;
    }
    json_object_set_new(doc, "topic", json_string(cfg->topic));
    json_object_set_new(doc, "prefix", json_string(cfg->key_prefix));
    json_object_set_new(doc, "partitions", parts);
    json_object_set_new(doc, "total",
                        json_pack("{s:I, s:I, s:I}", "position", (json_int_t)tpos, "high",
                                  (json_int_t)thigh, "lag", (json_int_t)tlag));
    rc = json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    putchar('\n');
    json_decref(doc);
    return rc;
}

static void print_table(const struct cm_config *cfg, const struct part_row *rows, int n)
{
    int64_t tpos = 0, thigh = 0, tlag = 0;

    printf("topic %s, prefix %s\n", cfg->topic, cfg->key_prefix);
    printf("%9s %14s %14s %14s %12s\n", "partition", "position", "low", "high", "lag");
    for (int i = 0; i < n; i++) {
        int64_t lag = rows[i].high - rows[i].position;
        printf("%9" PRId32 " %14" PRId64 " %14" PRId64 " %14" PRId64 " %12" PRId64 "%s\n",
               rows[i].partition, rows[i].position, rows[i].low, rows[i].high, lag,
               rows[i].position < rows[i].low    ? "  (position below low watermark)"
               : rows[i].position > rows[i].high ? "  (position above high watermark)"
                                                 : "");
        tpos += rows[i].position;
        thigh += rows[i].high;
        tlag += lag;
    }
    printf("%9s %14" PRId64 " %14s %14" PRId64 " %12" PRId64 "\n", "total", tpos, "", thigh,
           tlag);
}

int cm_ctl_status(int argc, char **argv)
{
    struct cm_ctl_args a;
    struct cm_config cfg = {0};
    struct part_row *rows = NULL;
    int n = 0;
    int rc = cm_ctl_parse(&CMD, argc, argv, &a);
    if (rc >= 0)
        return rc;
    if (cm_ctl_config(&CMD, a.config, &cfg))
        return 1;
    rc = 1;
    if (cm_ctl_resolve(&CMD, &cfg))
        goto out;
    if (cm_ctl_read_kafka(&CMD, &cfg, &rows, &n, read_positions) < 0)
        goto out;
    if (!strcmp(a.format, "json")) {
        if (print_json(&cfg, rows, n) < 0)
            goto out;
    } else {
        print_table(&cfg, rows, n);
    }
    rc = fflush(stdout) ? 1 : 0;

out:
    free(rows);
    cm_config_free(&cfg);
    return rc;
}
