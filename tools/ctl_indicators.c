/* ctl_indicators.c - circmonctl indicators: the indicators read back from Redis. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "circmon/agg.h"
#include "circmon/config.h"
#include "circmon/indicators.h"
#include "circmon/names.h"
#include "circmon/store.h"
#include "circmon/timeutil.h"
#include "ctl.h"

static void usage(FILE *fp)
{
    fputs("usage: circmonctl indicators --config FILE [--as-of TIME] [--format json|table]\n"
          "\n"
          "Reads the aggregate of every partition from Redis and prints the indicators\n"
          "as of TIME (default: now; unix seconds, YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS]Z):\n"
          "the same document 'circmonctl replay' prints for the same events.\n",
          fp);
}

int cm_ctl_indicators(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"as-of", required_argument, NULL, 'a'},
        {"format", required_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *config_path = NULL, *as_of_s = NULL, *format = "json";
    struct cm_config cfg = {0};
    struct cm_agg *ag = NULL;
    struct cm_names *nm = NULL;
    json_t *doc = NULL;
    int64_t as_of = (int64_t)time(NULL);
    char err[512];
    int c, rc = 1;

    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config_path = optarg;
            break;
        case 'a':
            as_of_s = optarg;
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
    if (!config_path || optind != argc) {
        fprintf(stderr, "circmonctl indicators: %s\n",
                !config_path ? "--config FILE is required" : "unexpected argument");
        usage(stderr);
        return 2;
    }
    if (strcmp(format, "json") && strcmp(format, "table")) {
        fprintf(stderr, "circmonctl indicators: --format: '%s' is not json or table\n", format);
        return 2;
    }
    if (as_of_s && cm_time_parse(as_of_s, &as_of) < 0) {
        fprintf(stderr, "circmonctl indicators: --as-of: cannot parse '%s'\n", as_of_s);
        return 2;
    }
    char aerr[160];
    if (cm_indicators_as_of_check(as_of, aerr, sizeof(aerr)) < 0) {
        fprintf(stderr, "circmonctl indicators: --as-of: %s\n", aerr);
        return 2;
    }
    if (cm_config_load(&cfg, config_path, err, sizeof(err)) < 0) {
        fprintf(stderr, "circmonctl indicators: %s\n", err);
        return 1;
    }
    if (!(ag = cm_agg_new()) || !(nm = cm_names_new())) {
        fprintf(stderr, "circmonctl indicators: out of memory\n");
        goto out;
    }
    if (cm_store_read_agg(&cfg, ag, nm, err, sizeof(err)) < 0) {
        fprintf(stderr, "circmonctl indicators: %s\n", err);
        goto out;
    }
    if (!(doc = cm_indicators_json(ag, nm, &cfg, as_of))) {
        fprintf(stderr, "circmonctl indicators: out of memory\n");
        goto out;
    }
    if (cm_indicators_print(doc, format, stdout) < 0) {
        fprintf(stderr, "circmonctl indicators: cannot write the output\n");
        goto out;
    }
    rc = 0;
out:
    json_decref(doc);
    cm_names_free(nm);
    cm_agg_free(ag);
    cm_config_free(&cfg);
    return rc;
}
