/* ctl_indicators.c - circmonctl indicators: the indicators read back from Redis. */
#include <stdio.h>
#include <time.h>

#include "circmon/agg.h"
#include "circmon/config.h"
#include "circmon/names.h"
#include "circmon/store.h"
#include "ctl.h"

static const struct cm_ctl_cmd CMD = {
    .name = "indicators",
    .usage = "usage: circmonctl indicators --config FILE [--as-of TIME] [--format json|table]\n"
             "\n"
             "Reads the aggregate of every partition from Redis and prints the indicators\n"
             "as of TIME (default: now; unix seconds, YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS]Z,\n"
             "UTC; 0 .. 253402300799): the same document 'circmonctl replay' prints for the\n"
             "same events.\n",
    .opts = CM_CTL_CONFIG | CM_CTL_AS_OF | CM_CTL_FORMAT,
    .required = CM_CTL_CONFIG,
    .format = "json",
    .min_args = 0,
    .max_args = 0,
};

int cm_ctl_indicators(int argc, char **argv)
{
    struct cm_ctl_args a;
    struct cm_config cfg = {0};
    struct cm_agg *ag = NULL;
    struct cm_names *nm = NULL;
    char err[512];
    int rc = cm_ctl_parse(&CMD, argc, argv, &a);
    if (rc >= 0)
        return rc;
    if (!a.have_as_of)
        a.as_of = (int64_t)time(NULL);
    if (cm_ctl_config(&CMD, a.config, &cfg))
        return 1;
    rc = 1;
    if (!(ag = cm_agg_new()) || !(nm = cm_names_new())) {
        cm_ctl_err(&CMD, "out of memory for the aggregate");
        goto out;
    }
    if (cm_store_read_agg(&cfg, ag, nm, err, sizeof(err)) < 0) {
        cm_ctl_err(&CMD, "%s", err);
        goto out;
    }
    rc = cm_ctl_print_indicators(&CMD, ag, nm, &cfg, a.as_of, a.format);
out:
    cm_names_free(nm);
    cm_agg_free(ag);
    cm_config_free(&cfg);
    return rc;
}
