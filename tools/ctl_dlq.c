/* ctl_dlq.c - circmonctl dlq: the dead-letter topic read exactly once (deduplicated by source offset, highest owner epoch kept). */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "circmon/config.h"
#include "circmon/dlq.h"
#include "circmon/kafka.h"
#include "ctl.h"

#define DLQ_TIMEOUT_MS 10000 /* metadata, watermarks, each next message */

static void usage(FILE *fp)
{
    fputs("usage: circmonctl dlq --config FILE [--partition P] [--format table|json]\n"
          "\n"
          "Reads the whole dead-letter topic and prints each dead letter of the source\n"
          "topic once: its source partition and offset, reason, owner epoch and how many\n"
          "copies the topic holds. A source offset can be on the topic more than once\n"
          "when an owner was frozen past its session (README, Dead letters): the copy\n"
          "with the highest owner epoch is kept, the others are counted as superseded.\n"
          "--partition keeps the dead letters of one source partition. The whole topic\n"
          "is held in memory while it is read (about 80 bytes per dead letter).\n",
          fp);
}

struct ctx {
    struct cm_dlq_set set;
    int32_t only; /* source partition to keep, -1: all */
};

static int on_rec(const struct cm_dlq_rec *r, void *ud)
{
    struct ctx *c = ud;
    if (c->only >= 0 && r->partition != c->only)
        return 0;
    return cm_dlq_set_add(&c->set, r);
}

/* The partition count of topic, or -1 (reported). */
static int partitions_of(rd_kafka_t *rk, const char *topic)
{
    const struct rd_kafka_metadata *md = NULL;
    /* all topics rather than one: asking for one may auto-create it */
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 1, NULL, &md, DLQ_TIMEOUT_MS);
    if (e) {
        fprintf(stderr, "circmonctl dlq: Kafka metadata: %s\n", rd_kafka_err2str(e));
        return -1;
    }
    int n = -1;
    for (int i = 0; i < md->topic_cnt; i++)
        if (!strcmp(md->topics[i].topic, topic))
            n = md->topics[i].err ? -1 : md->topics[i].partition_cnt;
    if (n <= 0)
        fprintf(stderr, "circmonctl dlq: topic %s: does not exist or has no partition\n",
                topic);
    rd_kafka_metadata_destroy(md);
    return n;
}

/* Reads every partition of the dead-letter topic into c. */
static int read_topic(const struct cm_config *cfg, struct ctx *c)
{
    char err[512], group[512];
    rd_kafka_conf_t *conf = cm_kafka_conf_new(cfg, err, sizeof(err));
    if (!conf) {
        fprintf(stderr, "circmonctl dlq: %s\n", err);
        return -1;
    }
    /* a group id only because librdkafka's consumer wants one: it never joins */
    snprintf(group, sizeof(group), "%s.dlq-ctl", cfg->group_id);
    const char *const set[][2] = {{"group.id", group},
                                  {"enable.auto.commit", "false"},
                                  {"enable.partition.eof", "true"}};
    if (cm_kafka_conf_default(conf, cfg, "client.id", "circmonctl-dlq", err, sizeof(err)))
        goto conf_fail;
    for (size_t i = 0; i < sizeof(set) / sizeof(set[0]); i++)
        if (rd_kafka_conf_set(conf, set[i][0], set[i][1], err, sizeof(err)) != RD_KAFKA_CONF_OK)
            goto conf_fail;
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (!rk) {
        fprintf(stderr, "circmonctl dlq: cannot create the Kafka client: %s\n", err);
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    int ret = -1, n = partitions_of(rk, cfg->dlq_topic);
    for (int32_t dp = 0; n > 0 && dp < n; dp++) {
        int64_t end;
        int r = cm_dlq_scan_recs(rk, cfg->dlq_topic, dp, 0, cfg->topic, DLQ_TIMEOUT_MS, NULL,
                                 on_rec, c, &end, err, sizeof(err));
        if (r < 0) {
            fprintf(stderr, "circmonctl dlq: %s\n",
                    r == -ENOMEM ? "out of memory holding the dead letters read" : err);
            goto out;
        }
    }
    ret = n > 0 ? 0 : -1;
out:
    rd_kafka_destroy_flags(rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    return ret;
conf_fail:
    fprintf(stderr, "circmonctl dlq: %s\n", err);
    rd_kafka_conf_destroy(conf);
    return -1;
}

static int print_json(const struct cm_config *cfg, const struct cm_dlq_set *s)
{
    json_t *doc = json_object(), *arr = json_array();
    if (!doc || !arr)
        goto oom;
    for (size_t i = 0; i < s->n; i++) {
        const struct cm_dlq_entry *e = &s->e[i];
        json_t *o = json_pack("{s:i, s:I, s:s%, s:o, s:I, s:i, s:I}", "partition",
                              (int)e->partition, "offset", (json_int_t)e->offset, "reason",
                              e->reason, strlen(e->reason), "epoch",
                              e->epoch >= 0 ? json_integer(e->epoch) : json_null(), "copies",
                              (json_int_t)e->copies, "dlq_partition", (int)e->dlq_partition,
                              "dlq_offset", (json_int_t)e->dlq_offset);
        if (!o || json_array_append_new(arr, o))
            goto oom;
    }
    json_object_set_new(doc, "topic", json_string(cfg->dlq_topic));
    json_object_set_new(doc, "source_topic", json_string(cfg->topic));
    json_object_set_new(doc, "dead_letters", arr);
    arr = NULL;
    json_object_set_new(doc, "distinct", json_integer((json_int_t)s->n));
    json_object_set_new(doc, "records", json_integer((json_int_t)s->records));
    json_object_set_new(doc, "superseded", json_integer((json_int_t)(s->lower + s->not_lower)));
    json_object_set_new(doc, "superseded_lower_epoch", json_integer((json_int_t)s->lower));
    int rc = json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    putchar('\n');
    json_decref(doc);
    return rc;
oom:
    fprintf(stderr, "circmonctl dlq: out of memory building the JSON document\n");
    json_decref(arr);
    json_decref(doc);
    return -1;
}

static void print_table(const struct cm_config *cfg, const struct cm_dlq_set *s)
{
    printf("dead-letter topic %s, source topic %s\n", cfg->dlq_topic, cfg->topic);
    printf("%9s %14s %-22s %10s %6s\n", "partition", "offset", "reason", "epoch", "copies");
    for (size_t i = 0; i < s->n; i++) {
        const struct cm_dlq_entry *e = &s->e[i];
        char ep[24] = "-";
        if (e->epoch >= 0)
            snprintf(ep, sizeof(ep), "%" PRId64, e->epoch);
        printf("%9" PRId32 " %14" PRId64 " %-22s %10s %6zu\n", e->partition, e->offset,
               e->reason, ep, e->copies);
    }
    printf("%zu dead letters in %zu records: %zu superseded copies (%zu with a lower epoch)\n",
           s->n, s->records, s->lower + s->not_lower, s->lower);
}

int cm_ctl_dlq(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"partition", required_argument, NULL, 'p'},
        {"format", required_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *config_path = NULL, *format = "table";
    struct cm_config cfg = {0};
    struct ctx c = {.only = -1};
    char err[512], *end;
    long v;
    int o, rc = 1;

    optind = 1;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case 'c':
            config_path = optarg;
            break;
        case 'p':
            errno = 0;
            v = strtol(optarg, &end, 10);
            if (errno || end == optarg || *end || v < 0 || v > INT32_MAX) {
                fprintf(stderr, "circmonctl dlq: --partition: not a partition number: '%s'\n",
                        optarg);
                return 2;
            }
            c.only = (int32_t)v;
            break;
        case 'f':
            format = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!config_path || optind != argc ||
        (strcmp(format, "table") && strcmp(format, "json"))) {
        fprintf(stderr, "circmonctl dlq: %s\n",
                !config_path      ? "--config FILE is required"
                : optind != argc ? "unexpected argument"
                                 : "--format must be table or json");
        usage(stderr);
        return 2;
    }
    if (cm_config_load(&cfg, config_path, err, sizeof(err)) < 0) {
        fprintf(stderr, "circmonctl dlq: %s\n", err);
        return 1;
    }
    if (read_topic(&cfg, &c) < 0)
        goto out;
    cm_dlq_set_finish(&c.set);
    if (!strcmp(format, "json")) {
        if (print_json(&cfg, &c.set) < 0)
            goto out;
    } else {
        print_table(&cfg, &c.set);
    }
    rc = fflush(stdout) ? 1 : 0;
out:
    cm_dlq_set_free(&c.set);
    cm_config_free(&cfg);
    return rc;
}
