/* circmonctl.c - circmon's control and replay command line. */
#include <stdio.h>
#include <string.h>

#include "ctl.h"

static void usage(FILE *fp)
{
    fputs("usage: circmonctl COMMAND [OPTIONS]\n"
          "\n"
          "commands:\n"
          "  replay      fold event files in memory and print the indicators\n"
          "  publish     produce an event file to the Kafka topic\n"
          "  indicators  read the indicators from Redis\n"
          "  status      show per-partition positions and lag\n"
          "  dlq         read the dead-letter topic, each dead letter once\n"
          "  alerts      evaluate the alert rules against Redis\n"
          "  rebuild     rebuild into a new key prefix, switch readers to it, delete the old\n"
          "  migrate-layout  move stored states into the hash buckets of state_buckets\n"
          "\n"
          "'circmonctl COMMAND --help' describes a command.\n",
          fp);
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } cmds[] = {
        {"replay", cm_ctl_replay},
        {"publish", cm_ctl_publish},
        {"indicators", cm_ctl_indicators},
        {"status", cm_ctl_status},
        {"dlq", cm_ctl_dlq},
        {"alerts", cm_ctl_alerts},
        {"rebuild", cm_ctl_rebuild},
        {"migrate-layout", cm_ctl_migrate_layout},
    };

    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
        if (!strcmp(argv[1], cmds[i].name))
            return cmds[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "circmonctl: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
