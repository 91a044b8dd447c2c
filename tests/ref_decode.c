/* ref_decode.c - the reference decoder of the tests (see ref_decode.h).
 *
 * protobuf-c unpacks the message; the string rules of the contract are then
 * checked on the wire form, where protobuf-c's C strings would hide bytes
 * after a NUL. Slow and obvious on purpose. */
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

/* The first string fault, in wire order, of a message protobuf-c accepted. */
static enum cm_reject check_strings(const ProtobufCMessageDescriptor *md, const uint8_t *p,
                                    size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint64_t key, v;
        if (!varint(p, len, &i, &key))
            return CM_OK;
        switch (key & 7) {
        case 0:
            if (!varint(p, len, &i, &v))
                return CM_OK;
            break;
        case 1:
            i += 8;
            break;
        case 5:
            i += 4;
            break;
        case 2: {
            if (!varint(p, len, &i, &v) || v > len - i)
                return CM_OK;
            const ProtobufCFieldDescriptor *f =
                key >> 3 <= UINT32_MAX
                    ? protobuf_c_message_descriptor_get_field(md, (unsigned)(key >> 3))
                    : NULL;
            if (f && f->type == PROTOBUF_C_TYPE_STRING) {
                if (v > CM_STR_MAX)
                    return CM_REJ_STRING_TOO_LONG;
                if (memchr(p + i, 0, (size_t)v))
                    return CM_REJ_NUL_IN_STRING;
            } else if (f && f->type == PROTOBUF_C_TYPE_MESSAGE) {
                enum cm_reject r = check_strings(f->descriptor, p + i, (size_t)v);
                if (r != CM_OK)
                    return r;
            }
            i += (size_t)v;
            break;
        }
        default:
            return CM_OK;
        }
    }
    return CM_OK;
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
    enum cm_reject r = check_strings(&circmon__v1__event__descriptor, buf, len);
    if (r == CM_OK)
        r = fill(m, ev, s);
    circmon__v1__event__free_unpacked(m, NULL);
    return r;
}
