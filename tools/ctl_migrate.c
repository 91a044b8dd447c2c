/* ctl_migrate.c - circmonctl migrate-layout: the stored states of a prefix
 * from one string key per migrant into hash buckets (store_layout.h). */
#include <stdio.h>

#include "circmon/config.h"
#include "circmon/store_layout.h"
#include "ctl.h"

static const struct cm_ctl_cmd CMD = {
    .name = "migrate-layout",
    .usage = "usage: circmonctl migrate-layout --config FILE\n"
             "\n"
             "Moves the migrant states stored under [redis] key_prefix from one string key\n"
             "per migrant (<prefix>:{P}:m:<migrant>, the layout of earlier versions) into\n"
             "the [redis] state_buckets hash buckets of each partition (<prefix>:{P}:s:<n>),\n"
             "and stores the new layout. Stop every circmond of the prefix first: a partition\n"
             "being moved is fenced (its owner epoch is incremented) and a circmond refuses\n"
             "to start on it. Interrupted, run it again: it goes on where it stopped. A\n"
             "partition already in the wanted layout is left alone; one in another bucket\n"
             "count is an error (rebuild into a new key_prefix instead).\n",
    .opts = CM_CTL_CONFIG,
    .required = CM_CTL_CONFIG,
    .format = "table",
    .min_args = 0,
    .max_args = 0,
};

int cm_ctl_migrate_layout(int argc, char **argv)
{
    struct cm_ctl_args a;
    struct cm_config cfg = {0};
    int rc = cm_ctl_parse(&CMD, argc, argv, &a);
    if (rc >= 0)
        return rc;
    if (cm_ctl_config(&CMD, a.config, &cfg))
        return 1;
    struct cm_layout_migration m;
    char err[1024];
    int r = cm_layout_migrate(&cfg, &m, err, sizeof(err));
    if (r < 0) {
        cm_ctl_err(&CMD, "%s", err);
        fprintf(stderr,
                "circmonctl migrate-layout: stopped after %zu partitions converted, %zu states "
                "moved; run it again once the cause is fixed\n",
                m.parts_moved, m.states);
        cm_config_free(&cfg);
        return 1;
    }
    printf("%zu partitions converted to %d state buckets (%zu states moved), %zu in that layout "
           "already\n",
           m.parts_moved, cfg.state_buckets, m.states, m.parts_before);
    cm_config_free(&cfg);
    return fflush(stdout) ? 1 : 0;
}
