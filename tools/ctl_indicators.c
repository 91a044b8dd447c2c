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
    int rc = cm_ctl_load_agg(&CMD, argc, argv, &a, &cfg, &ag, &nm);
    if (rc >= 0)
        return rc;
    rc = cm_ctl_print_indicators(&CMD, ag, nm, &cfg, a.as_of, a.format);
    cm_names_free(nm);
    cm_agg_free(ag);
    cm_config_free(&cfg);
    return rc;
}
