/* fuzz_state.c - libFuzzer target: arbitrary bytes as a stored migrant state
 * (cm_mstate_unpack), one more event folded into it (cm_fold_event), and the
 * state packed again.
 *
 * Input: a varint-delimited record, the state, then one message, the event;
 * when the rest does not decode to a valid event, a fixed Entry is folded.
 * What the fold leaves must unpack again, and pack to the same bytes. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "circmon/agg.h"
#include "circmon/event.h"
#include "circmon/fold.h"
#include "circmon/names.h"
#include "fuzz_common.h"

static struct cm_config cfg;
static struct cm_decoder *dec;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    cmf_load_conf(&cfg);
    if (!(dec = cm_decoder_new()))
        cmf_fail("cm_decoder_new");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *p = data, *end = data + size, *state = NULL, *msg = NULL;
    size_t slen = 0, mlen = 0;
    cmf_next_record(&p, end, &state, &slen);
    cmf_next_record(&p, end, &msg, &mlen);
    if (!state)
        state = data; /* empty input: an empty state */

    struct cm_names *nm = cm_names_new();
    struct cm_fold_ctx *fc = nm ? cm_fold_ctx_new(&cfg, nm) : NULL;
    if (!fc)
        cmf_fail("cm_fold_ctx_new");
    struct cm_mstate *st = NULL;
    int rc = cm_mstate_unpack(fc, state, slen, &st);
    if (rc != 0 && rc != -EINVAL)
        cmf_fail("cm_mstate_unpack: neither a state nor -EINVAL");
    if (rc != 0) {
        if (st)
            cmf_fail("cm_mstate_unpack failed but set the state");
        goto out;
    }

    struct cm_event ev;
    if (!msg || cm_decode(dec, msg, mlen, &ev) != CM_OK)
        ev = (struct cm_event){.type = CM_EV_ENTRY, .event_id = "fuzz-entry",
                               .migrant_id = "M-fuzz", .occurred_at = 1700000000,
                               .permit_id = "", .scheme_id = "", .nationality = ""};
    struct cm_item *items = NULL;
    size_t n = 0, cap = 0;
    int fr = cm_fold_event(fc, st, &ev, &items, &n, &cap);
    if (fr < 0)
        cmf_fail("cm_fold_event failed on a state it unpacked");
    if (fr != CM_FOLD_ACCEPTED && fr != CM_FOLD_DUPLICATE && fr != CM_FOLD_TOO_LATE)
        cmf_fail("cm_fold_event: no such result");
    struct cm_agg *ag = cm_agg_new();
    if (!ag || (n && cm_agg_add_items(ag, items, n) < 0))
        cmf_fail("the items of the fold do not aggregate");
    cm_agg_free(ag);
    free(items);

    uint8_t *b1 = NULL, *b2 = NULL;
    long l1 = cm_mstate_pack(fc, st, &b1);
    if (l1 < 0)
        cmf_fail("cm_mstate_pack failed");
    struct cm_mstate *again = NULL;
    if (cm_mstate_unpack(fc, b1, (size_t)l1, &again) != 0)
        cmf_fail("a state the fold left does not unpack again");
    long l2 = cm_mstate_pack(fc, again, &b2);
    if (l2 != l1 || (l1 && memcmp(b1, b2, (size_t)l1) != 0))
        cmf_fail("a state packs to other bytes after a round trip");
    free(b1);
    free(b2);
    cm_mstate_free(fc, again);
out:
    cm_mstate_free(fc, st);
    cm_fold_ctx_free(fc);
    cm_names_free(nm);
    return 0;
}
