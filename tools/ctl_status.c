/* ctl_status.c - circmonctl status: per-partition stored position, high
 * watermark and lag. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "circmon/config.h"
#include "circmon/kafka.h"
#include "ctl.h"

struct part_row {
    int32_t partition;
    int64_t position; /* next offset to fold, from Redis; 0 when absent */
    int64_t low, high; /* Kafka watermarks */
};

static void usage(FILE *fp)
{
    fputs("usage: circmonctl status --config FILE [--format table|json]\n"
          "\n"
          "For each partition of the topic: the position stored in Redis (the next\n"
          "offset circmond will fold), Kafka's low and high watermarks, and the lag\n"
          "(high - position). A position below the low watermark means events were\n"
          "removed from Kafka before circmond read them; one above the high\n"
          "watermark means the topic was recreated under the stored state.\n",
          fp);
}

static void timeval_ms(struct timeval *tv, int ms)
{
    tv->tv_sec = ms / 1000;
    tv->tv_usec = (ms % 1000) * 1000;
}

/* Sends cmd (argv form) and checks that the reply is not an error. */
static int redis_ok(redisContext *rc, const char *what, int argc, const char **argv)
{
    redisReply *rep = redisCommandArgv(rc, argc, argv, NULL);
    int ok = rep && rep->type != REDIS_REPLY_ERROR;

    if (!rep)
        fprintf(stderr, "circmonctl status: redis %s: %s\n", what, rc->errstr);
    else if (!ok)
        fprintf(stderr, "circmonctl status: redis %s: %s\n", what, rep->str);
    if (rep)
        freeReplyObject(rep);
    return ok ? 0 : -1;
}

static redisContext *redis_open(const struct cm_config *cfg)
{
    struct timeval tv;
    redisContext *rc;
    char db[16];

    timeval_ms(&tv, cfg->connect_timeout_ms);
    if (cfg->redis_unix_socket && *cfg->redis_unix_socket)
        rc = redisConnectUnixWithTimeout(cfg->redis_unix_socket, tv);
    else
        rc = redisConnectWithTimeout(cfg->redis_host, cfg->redis_port, tv);
    if (!rc || rc->err) {
        if (cfg->redis_unix_socket && *cfg->redis_unix_socket)
            fprintf(stderr, "circmonctl status: redis %s: %s\n", cfg->redis_unix_socket,
                    rc ? rc->errstr : "out of memory");
        else
            fprintf(stderr, "circmonctl status: redis %s:%d: %s\n", cfg->redis_host,
                    cfg->redis_port, rc ? rc->errstr : "out of memory");
        goto fail;
    }
    timeval_ms(&tv, cfg->command_timeout_ms);
    redisSetTimeout(rc, tv);
    if (cfg->redis_password) {
        const char *a[3] = {"AUTH", cfg->redis_user, cfg->redis_password};
        int fail = cfg->redis_user ? redis_ok(rc, "AUTH", 3, a)
                                   : redis_ok(rc, "AUTH", 2, (const char *[]){"AUTH", a[2]});
        if (fail)
            goto fail;
    }
    if (cfg->redis_db) {
        snprintf(db, sizeof(db), "%d", cfg->redis_db);
        if (redis_ok(rc, "SELECT", 2, (const char *[]){"SELECT", db}))
            goto fail;
    }
    return rc;

fail:
    if (rc)
        redisFree(rc);
    return NULL;
}

/* Reads every partition's stored position in one pipeline. */
static int read_positions(redisContext *rc, const char *prefix, struct part_row *rows, int n)
{
    char key[512];

    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "%s:{%" PRId32 "}:pos", prefix, rows[i].partition);
        if (redisAppendCommand(rc, "GET %s", key) != REDIS_OK) {
            fprintf(stderr, "circmonctl status: redis: %s\n", rc->errstr);
            return -1;
        }
    }
    for (int i = 0; i < n; i++) {
        redisReply *rep = NULL;
        char *end;

        if (redisGetReply(rc, (void **)&rep) != REDIS_OK || !rep) {
            fprintf(stderr, "circmonctl status: redis: %s\n", rc->errstr);
            return -1;
        }
        if (rep->type == REDIS_REPLY_NIL) {
            rows[i].position = 0;
        } else if (rep->type == REDIS_REPLY_STRING) {
            errno = 0;
            rows[i].position = strtoll(rep->str, &end, 10);
            if (errno || end == rep->str || *end || rows[i].position < 0) {
                fprintf(stderr, "circmonctl status: redis %s:{%" PRId32 "}:pos: not a position: '%.40s'\n",
                        prefix, rows[i].partition, rep->str);
                freeReplyObject(rep);
                return -1;
            }
        } else {
            fprintf(stderr, "circmonctl status: redis %s:{%" PRId32 "}:pos: %s\n", prefix,
                    rows[i].partition,
                    rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply type");
            freeReplyObject(rep);
            return -1;
        }
        freeReplyObject(rep);
    }
    return 0;
}

/* Fills *rows with the topic's partitions (sorted) and their watermarks. */
static int read_kafka(const struct cm_config *cfg, struct part_row **rows, int *n)
{
    char err[512];
    rd_kafka_conf_t *conf = cm_kafka_conf_new(cfg, err, sizeof(err));
    const struct rd_kafka_metadata *md = NULL;
    const struct rd_kafka_metadata_topic *mt = NULL;
    rd_kafka_t *rk = NULL;
    rd_kafka_resp_err_t e;
    int timeout = 10000, ret = -1;

    if (!conf) {
        fprintf(stderr, "circmonctl status: %s\n", err);
        return -1;
    }
    if (cm_kafka_conf_default(conf, cfg, "client.id", "circmonctl-status", err, sizeof(err))) {
        fprintf(stderr, "circmonctl status: %s\n", err);
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!rk) {
        fprintf(stderr, "circmonctl status: cannot create the Kafka client: %s\n", err);
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    /* All topics rather than one: asking for one may auto-create it. */
    e = rd_kafka_metadata(rk, 1, NULL, &md, timeout);
    if (e) {
        fprintf(stderr, "circmonctl status: Kafka %s: metadata: %s\n", cfg->brokers,
                rd_kafka_err2str(e));
        goto out;
    }
    for (int i = 0; i < md->topic_cnt && !mt; i++)
        if (!strcmp(md->topics[i].topic, cfg->topic))
            mt = &md->topics[i];
    if (!mt || mt->err) {
        fprintf(stderr, "circmonctl status: topic %s: %s\n", cfg->topic,
                mt ? rd_kafka_err2str(mt->err) : "does not exist");
        goto out;
    }
    *n = mt->partition_cnt;
    *rows = calloc((size_t)*n ? (size_t)*n : 1, sizeof(**rows));
    if (!*rows) {
        fprintf(stderr, "circmonctl status: out of memory\n");
        goto out;
    }
    /* metadata lists partitions in no promised order */
    for (int i = 0; i < *n; i++) {
        int32_t p = mt->partitions[i].id;
        if (p < 0 || p >= *n) {
            fprintf(stderr, "circmonctl status: topic %s: unexpected partition id %" PRId32 "\n",
                    cfg->topic, p);
            goto out;
        }
        (*rows)[p].partition = p;
    }
    for (int i = 0; i < *n; i++) {
        e = rd_kafka_query_watermark_offsets(rk, cfg->topic, (*rows)[i].partition,
                                             &(*rows)[i].low, &(*rows)[i].high, timeout);
        if (e) {
            fprintf(stderr, "circmonctl status: topic %s [%" PRId32 "]: watermarks: %s\n",
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

    printf("topic %s\n", cfg->topic);
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
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"format", required_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *config_path = NULL, *format = "table";
    struct cm_config cfg = {0};
    struct part_row *rows = NULL;
    redisContext *redis = NULL;
    char err[512];
    int c, n = 0, rc = 1;

    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config_path = optarg;
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
        fprintf(stderr, "circmonctl status: %s\n",
                !config_path      ? "--config FILE is required"
                : optind != argc ? "unexpected argument"
                                 : "--format must be table or json");
        usage(stderr);
        return 2;
    }
    if (cm_config_load(&cfg, config_path, err, sizeof(err)) < 0) {
        fprintf(stderr, "circmonctl status: %s\n", err);
        return 1;
    }
    if (read_kafka(&cfg, &rows, &n) < 0)
        goto out;
    if (!(redis = redis_open(&cfg)) || read_positions(redis, cfg.key_prefix, rows, n) < 0)
        goto out;
    if (!strcmp(format, "json")) {
        if (print_json(&cfg, rows, n) < 0)
            goto out;
    } else {
        print_table(&cfg, rows, n);
    }
    rc = fflush(stdout) ? 1 : 0;

out:
    if (redis)
        redisFree(redis);
    free(rows);
    cm_config_free(&cfg);
    return rc;
}
