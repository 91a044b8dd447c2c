/* ref_decode.c - the reference decoder of the tests (see ref_decode.h).
 *
 * protobuf-c unpacks the message; the string and instant rules of the
 * contract are then checked on the wire form, where protobuf-c's C strings
 * would hide bytes after a NUL and a replaced body would be gone. Slow and
 * obvious on purpose: it shares no code with lib/event.c. */
#include "ref_decode.h"

#include <string.h>

#include "circmon/v1/events.pb-c.h"

static int varint(const uint8_t *p, size_t len, size_t *i, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; shift < 64 && *i < len; shift += 7) {
        uint8_t b = p[(*i)++];
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return 1;
    }
    return 0;
}

/* Strict UTF-8 the plain way: decode each code point, then refuse the
 * overlong forms, the surrogates and what lies above U+10FFFF. */
static int utf8_ok(const uint8_t *p, size_t len)
{
    static const uint32_t least[5] = {0, 0, 0x80, 0x800, 0x10000};
    size_t i = 0;
    while (i < len) {
        uint8_t b = p[i];
        size_t n;
        uint32_t cp;
        if (b < 0x80)
            n = 1, cp = b;
        else if ((b & 0xe0) == 0xc0)
            n = 2, cp = b & 0x1f;
        else if ((b & 0xf0) == 0xe0)
            n = 3, cp = b & 0x0f;
        else if ((b & 0xf8) == 0xf0)
            n = 4, cp = b & 0x07;
        else
            return 0;
        if (len - i < n)
            return 0;
        for (size_t k = 1; k < n; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return 0;
            cp = cp << 6 | (p[i + k] & 0x3f);
        }
        if (n > 1 && cp < least[n])
            return 0;
        if ((cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
            return 0;
        i += n;
    }
    return 1;
}

/* The instants of the contract, by message and field name. */
static int is_instant(const ProtobufCMessageDescriptor *md, const ProtobufCFieldDescriptor *f)
{
    static const char *const inst[][2] = {
        {"circmon.v1.Event", "occurred_at"},         {"circmon.v1.Event", "recorded_at"},
        {"circmon.v1.PermitGranted", "valid_from"},  {"circmon.v1.PermitGranted", "valid_until"},
        {"circmon.v1.PermitExtended", "valid_until"}, {"circmon.v1.PermitRevoked", "effective_at"},
    };
    for (size_t k = 0; k < sizeof inst / sizeof inst[0]; k++)
        if (!strcmp(md->name, inst[k][0]) && !strcmp(f->name, inst[k][1]))
            return 1;
    return 0;
}

/* Field faults by the priority of event.h: a smaller number wins. */
static int rank(enum cm_reject r)
{
    switch (r) {
    case CM_REJ_STRING_TOO_LONG:
        return 1;
    case CM_REJ_NUL_IN_STRING:
        return 2;
    case CM_REJ_INVALID_UTF8:
        return 3;
    case CM_REJ_OUT_OF_RANGE:
        return 4;
    default:
        return 99;
    }
}

static void note(enum cm_reject *best, enum cm_reject r)
{
    if (rank(r) < rank(*best))
        *best = r;
}

/* The field fault of a message protobuf-c accepted: of every string and
 * instant on the wire, nested ones included, the one that ranks first. */
static enum cm_reject check_fields(const ProtobufCMessageDescriptor *md, const uint8_t *p,
                                   size_t len)
{
    enum cm_reject best = CM_OK;
    size_t i = 0;
    while (i < len) {
        uint64_t key, v;
        if (!varint(p, len, &i, &key))
            return best;
        const ProtobufCFieldDescriptor *f =
            key >> 3 <= UINT32_MAX
                ? protobuf_c_message_descriptor_get_field(md, (unsigned)(key >> 3))
                : NULL;
        switch (key & 7) {
        case 0:
            if (!varint(p, len, &i, &v))
                return best;
            if (f && is_instant(md, f) && ((int64_t)v < 0 || (int64_t)v > CM_TIME_MAX))
                note(&best, CM_REJ_OUT_OF_RANGE);
            break;
        case 1:
            i += 8;
            break;
        case 5:
            i += 4;
            break;
        case 2: {
            if (!varint(p, len, &i, &v) || v > len - i)
                return best;
            if (f && f->type == PROTOBUF_C_TYPE_STRING) {
                if (v > CM_STR_MAX)
                    note(&best, CM_REJ_STRING_TOO_LONG);
                else if (memchr(p + i, 0, (size_t)v))
                    note(&best, CM_REJ_NUL_IN_STRING);
                else if (!utf8_ok(p + i, (size_t)v))
                    note(&best, CM_REJ_INVALID_UTF8);
            } else if (f && f->type == PROTOBUF_C_TYPE_MESSAGE) {
                note(&best, check_fields(f->descriptor, p + i, (size_t)v));
            }
            i += (size_t)v;
            break;
        }
        default:
            return best;
        }
    }
    return best;
}

static const char *keep(char *dst, const char *s)
{
    strcpy(dst, s ? s : ""); /* checked: at most CM_STR_MAX bytes */
    return dst;
}

static enum cm_reject fill(const Circmon__V1__Event *m, struct cm_event *ev, struct ref_strings *s)
{
    ev->event_id = keep(s->event_id, m->event_id);
    ev->migrant_id = keep(s->migrant_id, m->migrant_id);
    ev->occurred_at = m->occurred_at;
    ev->permit_id = ev->scheme_id = ev->nationality = "";
    if (!ev->event_id[0])
        return CM_REJ_NO_EVENT_ID;
    if (!ev->migrant_id[0])
        return CM_REJ_NO_MIGRANT_ID;
    if (m->occurred_at <= 0)
        return CM_REJ_NO_OCCURRED_AT;
    switch (m->body_case) {
    case CIRCMON__V1__EVENT__BODY_ENTRY:
        ev->type = CM_EV_ENTRY;
        return CM_OK;
    case CIRCMON__V1__EVENT__BODY_EXIT:
        ev->type = CM_EV_EXIT;
        return CM_OK;
    case CIRCMON__V1__EVENT__BODY_PERMIT_GRANTED: {
        const Circmon__V1__PermitGranted *g = m->permit_granted;
        ev->type = CM_EV_GRANTED;
        ev->permit_id = keep(s->permit_id, g->permit_id);
        ev->scheme_id = keep(s->scheme_id, g->scheme_id);
        ev->nationality = keep(s->nationality, g->nationality);
        ev->kind = g->kind;
        ev->valid_from = g->valid_from;
        ev->valid_until = g->valid_until;
        if (!ev->permit_id[0])
            return CM_REJ_NO_PERMIT_ID;
        if (!ev->scheme_id[0])
            return CM_REJ_NO_SCHEME_ID;
        if (!g->valid_from)
            return CM_REJ_NO_VALID_FROM;
        if (!g->valid_until)
            return CM_REJ_NO_VALID_UNTIL;
        return g->valid_until < g->valid_from ? CM_REJ_VALIDITY_ORDER : CM_OK;
    }
    case CIRCMON__V1__EVENT__BODY_PERMIT_EXTENDED:
        ev->type = CM_EV_EXTENDED;
        ev->permit_id = keep(s->permit_id, m->permit_extended->permit_id);
        ev->valid_until = m->permit_extended->valid_until;
        if (!ev->permit_id[0])
            return CM_REJ_NO_PERMIT_ID;
        return ev->valid_until ? CM_OK : CM_REJ_NO_VALID_UNTIL;
    case CIRCMON__V1__EVENT__BODY_PERMIT_REVOKED:
        ev->type = CM_EV_REVOKED;
        ev->permit_id = keep(s->permit_id, m->permit_revoked->permit_id);
        ev->effective_at = m->permit_revoked->effective_at;
        return ev->permit_id[0] ? CM_OK : CM_REJ_NO_PERMIT_ID;
    case CIRCMON__V1__EVENT__BODY_STATUS_CHANGED:
        ev->type = CM_EV_STATUS;
        ev->status = m->status_changed->status;
        return CM_OK;
    default:
        return CM_REJ_NO_BODY;
    }
}

enum cm_reject ref_decode(const uint8_t *buf, size_t len, struct cm_event *ev,
                          struct ref_strings *s)
{
    memset(ev, 0, sizeof(*ev));
    Circmon__V1__Event *m = circmon__v1__event__unpack(NULL, len, buf);
    if (!m)
        return CM_REJ_DECODE;
    enum cm_reject r = check_fields(&circmon__v1__event__descriptor, buf, len);
    if (r == CM_OK)
        r = fill(m, ev, s);
    circmon__v1__event__free_unpacked(m, NULL);
    return r;
}
