/* circmond.c - the circmon daemon: command line, configuration, then the pipeline. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "circmon/config.h"
#include "daemon.h"
#include "rebuild.h"

#ifndef CIRCMON_VERSION
#define CIRCMON_VERSION "0.1.0"
#endif

static void usage(FILE *fp)
{
    fputs("usage: circmond --config FILE [--rebuild] [--foreground] [--check-config] [--version]\n"
          "\n"
          "Consumes the circmon event topic and folds it into Redis, exactly once.\n"
          "\n"
          "  --config FILE    the INI configuration (required)\n"
          "  --foreground     stay attached to the terminal (the only mode: circmond\n"
          "                   never forks; systemd runs it as Type=notify)\n"
          "  --rebuild        a rebuild run: fold FILE's key_prefix (a new one) from the\n"
          "                   beginning as group <group_id>.rebuild, without dead letters\n"
          "                   or alerts, while the prefix the alias names is served\n"
          "  --check-config   validate the configuration and exit 0 (valid) or 1\n"
          "  --version        print the version and exit\n"
          "\n"
          "Logs go to standard error (to journald, with fields, when standard error\n"
          "is the journal). SIGTERM or SIGINT stop it cleanly; SIGHUP reloads the\n"
          "configuration file. See circmond(8) and circmond.conf(5).\n",
          fp);
}

/* Validates what start-up would reject: the file, and every Kafka property
 * of each of circmond's clients. Errors about a line of the file name it. */
static int check_config(const struct cm_config *cfg)
{
    rd_kafka_conf_t *(*const builders[])(const struct cm_config *, char *, size_t) = {
        cmd_consumer_conf, cmd_producer_conf, cmd_scanner_conf};
    const char *p = cfg->path ? cfg->path : "config";
    char err[512];
    for (size_t i = 0; i < sizeof(builders) / sizeof(builders[0]); i++) {
        rd_kafka_conf_t *c = builders[i](cfg, err, sizeof(err));
        if (!c) {
            if (!strncmp(err, p, strlen(p)))
                fprintf(stderr, "circmond: %s\n", err);
            else
                fprintf(stderr, "circmond: %s: %s\n", p, err);
            return 1;
        }
        rd_kafka_conf_destroy(c);
    }
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"foreground", no_argument, NULL, 'f'},
        {"check-config", no_argument, NULL, 'k'},
        {"rebuild", no_argument, NULL, 'r'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *path = NULL;
    int check = 0, rebuild = 0, c, rc;
    cm_log_set_ident("circmond");
    struct cm_config cfg = {0};
    char err[512];

    while ((c = getopt_long(argc, argv, "c:fhV", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            path = optarg;
            break;
        case 'f':
            break; /* always in the foreground */
        case 'k':
            check = 1;
            break;
        case 'r':
            rebuild = 1;
            break;
        case 'V':
            printf("circmond %s (librdkafka %s)\n", CIRCMON_VERSION, rd_kafka_version_str());
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!path || optind != argc) {
        fprintf(stderr, "circmond: %s\n", !path ? "--config FILE is required" : "unexpected argument");
        usage(stderr);
        return 2;
    }
    if (cm_config_load(&cfg, path, err, sizeof(err)) < 0) {
        fprintf(stderr, "circmond: %s\n", err);
        return 1;
    }
    if (rebuild && cmd_rebuild_prepare(&cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "circmond: %s\n", err);
        cm_config_free(&cfg);
        return 1;
    }
    if (check) {
        rc = check_config(&cfg);
        if (!rc)
            printf("circmond: %s: configuration is valid\n", path);
        cm_config_free(&cfg);
        return rc;
    }
    if (cm_log_set_level(cfg.log_level) < 0)
        cm_log_warn("unknown log_level '%s'; using info", cfg.log_level);
    rc = check_config(&cfg);
    if (!rc && cmd_rebuild_check(&cfg, err, sizeof(err)) < 0) {
        cm_log_err("%s", err);
        rc = 1;
    }
    if (!rc && rebuild)
        cm_log_info("rebuild run: folding prefix %s from the beginning as group %s, without "
                    "dead letters or alerts; the readers serve what alias %s names",
                    cfg.key_prefix, cfg.group_id, cfg.redis_alias);
    if (!rc)
        rc = cmd_run(&cfg);
    cm_config_free(&cfg);
    return rc;
}
