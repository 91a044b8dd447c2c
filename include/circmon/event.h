/* event.h - one decoded, validated event, and the decoder that makes it. */
#ifndef CIRCMON_EVENT_H
#define CIRCMON_EVENT_H

#include <stddef.h>
#include <stdint.h>

#define CM_STR_MAX 256 /* longest accepted string, in bytes */

/* The accepted instants, unix seconds: 1970-01-01T00:00:00Z ..
 * 9999-12-31T23:59:59Z (INDICATORS.md section 2, step 1). */
#define CM_TIME_MIN INT64_C(0)
#define CM_TIME_MAX INT64_C(253402300799)

enum cm_ev_type {
    CM_EV_ENTRY = 1,
    CM_EV_EXIT,
    CM_EV_GRANTED,
    CM_EV_EXTENDED,
    CM_EV_REVOKED,
    CM_EV_STATUS,
};

/* Why a message is not accepted; also the dead-letter reason. The numbers
 * and names are stable: new reasons are appended before CM_REJ__COUNT.
 *
 * When several apply, cm_decode returns the first of this order:
 *   decode; string_too_long, nul_in_string, invalid_utf8, out_of_range (each
 *   over every occurrence of every known field, bodies replaced by a later
 *   one included, whatever the order of the fields on the wire);
 *   missing_event_id, missing_migrant_id, missing_occurred_at, missing_body;
 *   then the fields of the body in the order of their enum values below.
 * key_mismatch and too_late are given by the daemon and the fold to messages
 * that cm_decode accepted. */
enum cm_reject {
    CM_OK = 0,
    CM_REJ_DECODE,       /* not a circmon.v1.Event */
    CM_REJ_NO_EVENT_ID,
    CM_REJ_NO_MIGRANT_ID,
    CM_REJ_NO_BODY,
    CM_REJ_NO_OCCURRED_AT, /* occurred_at == 0 (absent); below 0 is out_of_range */
    CM_REJ_NO_PERMIT_ID,
    CM_REJ_NO_SCHEME_ID,
    CM_REJ_NO_VALID_FROM,
    CM_REJ_NO_VALID_UNTIL,
    CM_REJ_VALIDITY_ORDER, /* valid_until < valid_from */
    CM_REJ_STRING_TOO_LONG,
    CM_REJ_KEY_MISMATCH,   /* Kafka key differs from migrant_id (daemon only) */
    CM_REJ_TOO_LATE,       /* older than the reorder window allows */
    CM_REJ_NUL_IN_STRING,  /* a string holding U+0000: ids would be cut short */
    CM_REJ_INVALID_UTF8,   /* a string that is not well-formed UTF-8 */
    CM_REJ_OUT_OF_RANGE,   /* an instant below CM_TIME_MIN or above CM_TIME_MAX */
    CM_REJ__COUNT
};

/* A short stable name for a reason ("decode", "too_late", ...). */
const char *cm_reject_name(enum cm_reject r);

/* 1 when the len bytes at s are well-formed UTF-8 (RFC 3629, Unicode
 * table 3-7: no overlong form, no surrogate U+D800..U+DFFF, nothing above
 * U+10FFFF, no sequence cut short), else 0. U+0000 is well-formed. This
 * function can't fail. */
int cm_utf8_valid(const char *s, size_t len);

/* The decoded event. Strings point into storage owned by the decoder context
 * and are NUL-terminated; empty strings are "" (never NULL). */
struct cm_event {
    enum cm_ev_type type;
    const char *event_id;
    const char *migrant_id;
    int64_t occurred_at;
    /* PermitGranted / PermitExtended / PermitRevoked */
    const char *permit_id;
    /* PermitGranted */
    const char *scheme_id;
    const char *nationality;
    int kind;
    int64_t valid_from;
    int64_t valid_until; /* also PermitExtended */
    /* PermitRevoked: 0 = occurred_at */
    int64_t effective_at;
    /* StatusChanged */
    int status;
};

struct cm_decoder; /* holds the strings of the last decoded event */

/* A new decoder, or NULL when out of memory. */
struct cm_decoder *cm_decoder_new(void);

/* Unpacks and validates buf per INDICATORS.md section 2 step 1. On CM_OK, ev
 * is filled and stays valid until the next call on d or its free. Any other
 * value is the reason the message is invalid; ev is then unspecified. Never
 * aborts on any input. */
enum cm_reject cm_decode(struct cm_decoder *d, const uint8_t *buf, size_t len,
                         struct cm_event *ev);

/* Frees d; accepts NULL; returns NULL. */
struct cm_decoder *cm_decoder_free(struct cm_decoder *d);

#endif
