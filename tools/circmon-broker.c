/* circmon-broker.c - librdkafka's mock Kafka cluster as a loopback process,
 * for the demo and the tests. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "circmon/kafka.h"

#define MAX_TOPICS 64

static void usage(FILE *fp)
{
    fputs("usage: circmon-broker [--brokers N] [--partitions N] [--topic NAME ...]\n"
          "                      [--port-file FILE]\n"
          "\n"
          "Runs librdkafka's mock Kafka cluster on 127.0.0.1 until SIGTERM or SIGINT.\n"
          "Prints the bootstrap address on stdout once the topics exist.\n"
          "\n"
          "  --brokers N     brokers in the cluster (default 1)\n"
          "  --partitions N  partitions per topic (default 16)\n"
          "  --topic NAME    topic to create, repeatable (default circmon.events,\n"
          "                  circmon.events.dlq, circmon.events.alerts)\n"
          "  --port-file F   also write the bootstrap address to F (atomically;\n"
          "                  removed at a clean exit)\n"
          "\n"
          "The mock keeps about 5 MiB per partition and drops older data silently:\n"
          "size --partitions to the backlog (64 hold about 3 million small events).\n",
          fp);
}

static int parse_count(const char *opt, const char *s, int max, int *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 1 || v > max) {
        fprintf(stderr, "circmon-broker: %s: expected an integer from 1 to %d, got '%s'\n",
                opt, max, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* Writes line to path through a temporary file and rename, so that readers
 * see either no file or the whole address. */
static int write_port_file(const char *path, const char *line)
{
    char tmp[PATH_MAX];
    FILE *fp;

    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= sizeof(tmp)) {
        fprintf(stderr, "circmon-broker: --port-file: path too long\n");
        return -1;
    }
    fp = fopen(tmp, "w");
    if (!fp) {
        fprintf(stderr, "circmon-broker: %s: %s\n", tmp, strerror(errno));
        return -1;
    }
    fprintf(fp, "%s\n", line);
    if (fflush(fp) || fsync(fileno(fp)) || ferror(fp)) {
        fprintf(stderr, "circmon-broker: %s: %s\n", tmp, strerror(errno));
        fclose(fp);
        unlink(tmp);
        return -1;
    }
    if (fclose(fp) || rename(tmp, path)) {
        fprintf(stderr, "circmon-broker: %s: %s\n", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"brokers", required_argument, NULL, 'b'},
        {"partitions", required_argument, NULL, 'p'},
        {"topic", required_argument, NULL, 't'},
        {"port-file", required_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *topics[MAX_TOPICS] = {"circmon.events", "circmon.events.dlq",
                                      "circmon.events.alerts"};
    int n_topics = 3, user_topics = 0, n_brokers = 1, n_parts = 16, c, sig, rc = 1;
    const char *port_file = NULL, *bootstraps;
    char errstr[512];
    rd_kafka_conf_t *conf = NULL;
    rd_kafka_t *rk = NULL;
    rd_kafka_mock_cluster_t *mc = NULL;
    sigset_t set;

    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'b':
            if (parse_count("--brokers", optarg, 32, &n_brokers) < 0)
                return 2;
            break;
        case 'p':
            if (parse_count("--partitions", optarg, 10000, &n_parts) < 0)
                return 2;
            break;
        case 't':
            if (!user_topics)
                n_topics = 0, user_topics = 1;
            if (n_topics == MAX_TOPICS) {
                fprintf(stderr, "circmon-broker: at most %d topics\n", MAX_TOPICS);
                return 2;
            }
            if (!*optarg) {
                fprintf(stderr, "circmon-broker: --topic: empty name\n");
                return 2;
            }
            topics[n_topics++] = optarg;
            break;
        case 'f':
            port_file = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "circmon-broker: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }

    /* Blocked before any librdkafka thread exists, so that every thread
     * inherits the mask and sigwait below is the only receiver. */
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    if (pthread_sigmask(SIG_BLOCK, &set, NULL)) {
        fprintf(stderr, "circmon-broker: cannot block signals\n");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);

    /* The mock cluster needs a client handle for its configuration and
     * logging; this producer never connects anywhere. */
    conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, cm_kafka_log_cb);
    if (rd_kafka_conf_set(conf, "client.id", "circmon-broker", errstr, sizeof(errstr)) ||
        rd_kafka_conf_set(conf, "log_level", "4", errstr, sizeof(errstr))) {
        fprintf(stderr, "circmon-broker: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        return 1;
    }
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!rk) {
        fprintf(stderr, "circmon-broker: cannot create the client handle: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        return 1;
    }
    mc = rd_kafka_mock_cluster_new(rk, n_brokers);
    if (!mc) {
        fprintf(stderr, "circmon-broker: cannot start the mock cluster\n");
        goto out;
    }
    for (int i = 0; i < n_topics; i++) {
        rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(
            mc, topics[i], n_parts, n_brokers < 3 ? n_brokers : 3);
        if (e) {
            fprintf(stderr, "circmon-broker: cannot create topic '%s': %s\n", topics[i],
                    rd_kafka_err2str(e));
            goto out;
        }
    }
    bootstraps = rd_kafka_mock_cluster_bootstraps(mc);
    if (port_file && write_port_file(port_file, bootstraps) < 0)
        goto out;
    printf("%s\n", bootstraps);
    if (fflush(stdout)) {
        fprintf(stderr, "circmon-broker: stdout: %s\n", strerror(errno));
        goto out;
    }

    for (;;) {
        if (sigwait(&set, &sig)) {
            fprintf(stderr, "circmon-broker: sigwait failed\n");
            goto out;
        }
        if (sig != SIGHUP)
            break;
    }
    rc = 0;

out:
    if (mc)
        rd_kafka_mock_cluster_destroy(mc);
    if (port_file && rc == 0)
        unlink(port_file);
    rd_kafka_destroy(rk);
    return rc;
}
