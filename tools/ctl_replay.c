/* ctl_replay.c - circmonctl replay: fold event files in memory, print the indicators. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "circmon/engine.h"
#include "circmon/framing.h"
#include "ctl.h"

static const struct cm_ctl_cmd CMD = {
    .name = "replay",
    .usage = "usage: circmonctl replay [--config FILE] --as-of TIME [--format json|table] FILE...\n"
             "\n"
             "Reads events (varint-length-delimited circmon.v1.Event records; '-' is stdin),\n"
             "folds them in memory and prints the indicators as of TIME (unix seconds,\n"
             "YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS]Z, UTC; 0 .. 253402300799). Without --config\n"
             "the built-in defaults apply (every scheme: grace_days 0, no stay limit).\n",
    .opts = CM_CTL_CONFIG | CM_CTL_AS_OF | CM_CTL_FORMAT,
    .required = CM_CTL_AS_OF,
    .format = "json",
    .min_args = 1,
    .max_args = -1,
    .args_name = "event FILE",
};

/* Feeds one file; returns 0, or 1 when it was cut short (reported). */
static int feed_file(struct cm_engine *en, const char *path, uint64_t *records)
{
    FILE *fp = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!fp) {
        cm_ctl_err(&CMD, "%s: %s", path, strerror(errno));
        return 1;
    }
    struct cm_frame_reader r;
    const uint8_t *bufs[CM_ENGINE_BATCH];
    size_t lens[CM_ENGINE_BATCH];
    long rc;
    int bad = 1;
    cm_frame_reader_init(&r, fp);
    /* records go to the engine CM_ENGINE_BATCH at a time, where they lie in
     * the reader's buffer */
    while ((rc = cm_frame_read_many(&r, bufs, lens, CM_ENGINE_BATCH)) > 0) {
        *records += (uint64_t)rc;
        if (cm_engine_feed_batch(en, bufs, lens, (size_t)rc, NULL) < 0)
            break;
    }
    if (rc > 0)
        cm_ctl_err(&CMD,
                   "%s: out of memory while folding the records before byte offset %" PRIu64
                   " (%" PRIu64 " records read in all)",
                   path, r.offset, *records);
    else if (rc == -EPROTO)
        cm_ctl_err(&CMD,
                   "%s: truncated or malformed record at byte offset %" PRIu64
                   "; figures are those of the records before it",
                   path, r.offset);
    else if (rc < 0)
        cm_ctl_err(&CMD, "%s: cannot read the record at byte offset %" PRIu64 ": %s", path,
                   r.offset, strerror((int)-rc));
    else
        bad = 0;
    cm_frame_reader_free(&r);
    if (fp != stdin)
        fclose(fp);
    return bad;
}

int cm_ctl_replay(int argc, char **argv)
{
    struct cm_ctl_args a;
    int rc = cm_ctl_parse(&CMD, argc, argv, &a);
    if (rc >= 0)
        return rc;

    /* every file must be readable before anything is folded or printed */
    for (int i = 0; i < a.nargs; i++)
        if (strcmp(a.args[i], "-") && access(a.args[i], R_OK) < 0) {
            cm_ctl_err(&CMD, "%s: %s", a.args[i], strerror(errno));
            return 1;
        }

    struct cm_config cfg;
    if (cm_ctl_config(&CMD, a.config, &cfg))
        return 1;
    struct cm_engine *en = cm_engine_new(&cfg);
    if (!en) {
        cm_ctl_err(&CMD, "out of memory for the in-memory engine");
        cm_config_free(&cfg);
        return 1;
    }
    int bad = 0;
    uint64_t records = 0;
    for (int i = 0; i < a.nargs; i++)
        bad |= feed_file(en, a.args[i], &records);

    if (a.as_of < cm_engine_latest(en))
        cm_ctl_err(&CMD,
                   "warning: --as-of is earlier than the latest event folded (%" PRId64
                   "): the indicators are defined as of that instant or later",
                   cm_engine_latest(en));
    if (cm_ctl_print_indicators(&CMD, cm_engine_agg(en), cm_engine_names(en), &cfg, a.as_of,
                                a.format))
        bad = 1;
    cm_engine_free(en);
    cm_config_free(&cfg);
    return bad ? 1 : 0;
}
