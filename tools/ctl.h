/* ctl.h - circmonctl's subcommands. Each parses its own arguments (argv[0] is
 * the subcommand's name), prints its own errors to stderr and returns the
 * process exit status: 0 success, 1 failure, 2 usage error. */
#ifndef CIRCMON_CTL_H
#define CIRCMON_CTL_H

int cm_ctl_replay(int argc, char **argv);     /* tools/ctl_replay.c */
int cm_ctl_publish(int argc, char **argv);    /* tools/ctl_publish.c */
int cm_ctl_indicators(int argc, char **argv); /* tools/ctl_indicators.c */
int cm_ctl_status(int argc, char **argv);     /* tools/ctl_status.c */
int cm_ctl_dlq(int argc, char **argv);        /* tools/ctl_dlq.c */

#endif
