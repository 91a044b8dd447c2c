/* fuzz_decode.c - libFuzzer target: one message through cm_decode (decode and
 * validate); an accepted event must meet INDICATORS.md section 2 step 1, and
 * "does not decode" must be what protobuf-c refuses (README, "Choices"), the
 * ids, instant and body of an accepted event those protobuf-c reads. */
#include <stdint.h>
#include <string.h>

#include "circmon/event.h"
#include "circmon/v1/events.pb-c.h"
#include "fuzz_common.h"

/* The body of ev as protobuf-c reads it, as a cm_ev_type (0: none). */
static int pb_type(const Circmon__V1__Event *ev)
{
    switch (ev->body_case) {
    case CIRCMON__V1__EVENT__BODY_ENTRY:
        return CM_EV_ENTRY;
    case CIRCMON__V1__EVENT__BODY_EXIT:
        return CM_EV_EXIT;
    case CIRCMON__V1__EVENT__BODY_PERMIT_GRANTED:
        return CM_EV_GRANTED;
    case CIRCMON__V1__EVENT__BODY_PERMIT_EXTENDED:
        return CM_EV_EXTENDED;
    case CIRCMON__V1__EVENT__BODY_PERMIT_REVOKED:
        return CM_EV_REVOKED;
    case CIRCMON__V1__EVENT__BODY_STATUS_CHANGED:
        return CM_EV_STATUS;
    default:
        return 0;
    }
}

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
    Circmon__V1__Event *pb = circmon__v1__event__unpack(NULL, size, data);
    if (!pb != (r == CM_REJ_DECODE))
        cmf_fail(pb ? "cm_decode refuses a message protobuf-c decodes"
                    : "cm_decode decodes a message protobuf-c refuses");
    if (r != CM_OK) {
        if (pb)
            circmon__v1__event__free_unpacked(pb, NULL);
        return 0;
    }
    if (strcmp(ev.event_id, pb->event_id) || strcmp(ev.migrant_id, pb->migrant_id) ||
        ev.occurred_at != pb->occurred_at || (int)ev.type != pb_type(pb))
        cmf_fail("cm_decode reads other ids, instant or body than protobuf-c");
    circmon__v1__event__free_unpacked(pb, NULL);
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
