/* fuzz_decode.c - libFuzzer target: one message through cm_decode (decode and
 * validate); an accepted event must meet INDICATORS.md section 2 step 1. */
#include <stdint.h>
#include <string.h>

#include "circmon/event.h"
#include "fuzz_common.h"

static struct cm_decoder *dec;

/* A string of an accepted event: present, at most CM_STR_MAX bytes, UTF-8. */
static void check_str(const char *s, int required, const char *what)
{
    if (!s)
        cmf_fail(what); /* never NULL, "" when absent */
    size_t n = strlen(s);
    if (required && n == 0)
        cmf_fail(what);
    if (n > CM_STR_MAX)
        cmf_fail("an accepted string is longer than 256 bytes");
    if (!cmf_utf8_ok(s, n))
        cmf_fail("an accepted string is not valid UTF-8");
}

static void check_instant(int64_t t, int64_t lo, const char *what)
{
    if (t < lo || t > CMF_TIME_MAX)
        cmf_fail(what);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cm_event ev;
    if (!dec && !(dec = cm_decoder_new()))
        cmf_fail("cm_decoder_new");
    enum cm_reject r = cm_decode(dec, data, size, &ev);
    if ((int)r < 0 || r >= CM_REJ__COUNT)
        cmf_fail("cm_decode returned no reason");
    if (!cm_reject_name(r))
        cmf_fail("a reason without a name");
    if (r != CM_OK)
        return 0;
    check_str(ev.event_id, 1, "an accepted event without event_id");
    check_str(ev.migrant_id, 1, "an accepted event without migrant_id");
    check_instant(ev.occurred_at, 1, "occurred_at of an accepted event outside [1, 9999-12-31]");
    switch (ev.type) {
    case CM_EV_ENTRY:
    case CM_EV_EXIT:
    case CM_EV_STATUS:
        break;
    case CM_EV_GRANTED:
        check_str(ev.permit_id, 1, "an accepted grant without permit_id");
        check_str(ev.scheme_id, 1, "an accepted grant without scheme_id");
        check_str(ev.nationality, 0, "nationality");
        check_instant(ev.valid_from, 0, "valid_from outside [0, 9999-12-31]");
        check_instant(ev.valid_until, 0, "valid_until outside [0, 9999-12-31]");
        if (ev.valid_until < ev.valid_from)
            cmf_fail("an accepted grant with valid_until < valid_from");
        break;
    case CM_EV_EXTENDED:
        check_str(ev.permit_id, 1, "an accepted extension without permit_id");
        check_instant(ev.valid_until, 1, "valid_until of an extension outside [1, 9999-12-31]");
        break;
    case CM_EV_REVOKED:
        check_str(ev.permit_id, 1, "an accepted revocation without permit_id");
        check_instant(ev.effective_at, 0, "effective_at outside [0, 9999-12-31]");
        break;
    default:
        cmf_fail("an accepted event of no known type");
    }
    return 0;
}
