/* ref_decode.h - the reference decoder of the tests: protobuf-c's own unpack
 * plus the contract's checks, written the plain way. cm_decode must agree
 * with it on every input (check_input.c). */
#ifndef CM_REF_DECODE_H
#define CM_REF_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "circmon/event.h"

/* The strings of a decoded event, owned by the caller. */
struct ref_strings {
    char event_id[CM_STR_MAX + 1], migrant_id[CM_STR_MAX + 1], permit_id[CM_STR_MAX + 1],
        scheme_id[CM_STR_MAX + 1], nationality[CM_STR_MAX + 1];
};

/* What cm_decode returns for buf; on CM_OK, ev is filled and its strings
 * point into *s. */
enum cm_reject ref_decode(const uint8_t *buf, size_t len, struct cm_event *ev,
                          struct ref_strings *s);

#endif
