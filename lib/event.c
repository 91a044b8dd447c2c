/* event.c - decoding and validation of one circmon.v1.Event message. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "circmon/event.h"
#include "circmon/v1/events.pb-c.h"

#define ARENA 1024

/* Allocations that did not fit in the arena, freed at the next decode. */
struct big {
    struct big *next;
    max_align_t data[];
};

/* protobuf-c allocates from a bump arena that each decode resets: one
 * message costs no malloc/free in the common case, and the decoded event
 * points into the arena until the next decode. */
struct cm_decoder {
    ProtobufCAllocator alloc;
    size_t used;
    struct big *bigs;
    _Alignas(max_align_t) unsigned char arena[ARENA];
};

static void *arena_alloc(void *ud, size_t size)
{
    struct cm_decoder *d = ud;
    size_t a = (size + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1);
    if (a >= size && a <= ARENA - d->used) {
        void *p = d->arena + d->used;
        d->used += a;
        return p;
    }
    if (size > SIZE_MAX - sizeof(struct big))
        return NULL;
    struct big *b = malloc(sizeof(*b) + size);
    if (!b)
        return NULL;
    b->next = d->bigs;
    d->bigs = b;
    return b->data;
}

static void arena_free(void *ud, void *p)
{
    (void)ud;
    (void)p; /* all of it goes at the next reset */
}

static void arena_reset(struct cm_decoder *d)
{
    while (d->bigs) {
        struct big *b = d->bigs;
        d->bigs = b->next;
        free(b);
    }
    d->used = 0;
}

static const char *const reject_names[CM_REJ__COUNT] = {
    [CM_OK] = "ok",
    [CM_REJ_DECODE] = "decode",
    [CM_REJ_NO_EVENT_ID] = "missing_event_id",
    [CM_REJ_NO_MIGRANT_ID] = "missing_migrant_id",
    [CM_REJ_NO_BODY] = "missing_body",
    [CM_REJ_NO_OCCURRED_AT] = "missing_occurred_at",
    [CM_REJ_NO_PERMIT_ID] = "missing_permit_id",
    [CM_REJ_NO_SCHEME_ID] = "missing_scheme_id",
    [CM_REJ_NO_VALID_FROM] = "missing_valid_from",
    [CM_REJ_NO_VALID_UNTIL] = "missing_valid_until",
    [CM_REJ_VALIDITY_ORDER] = "valid_until_before_valid_from",
    [CM_REJ_STRING_TOO_LONG] = "string_too_long",
    [CM_REJ_KEY_MISMATCH] = "key_mismatch",
    [CM_REJ_TOO_LATE] = "too_late",
    [CM_REJ_NUL_IN_STRING] = "nul_in_string",
};

const char *cm_reject_name(enum cm_reject r)
{
    if ((int)r < 0 || r >= CM_REJ__COUNT)
        return "unknown";
    return reject_names[r];
}

struct cm_decoder *cm_decoder_new(void)
{
    struct cm_decoder *d = malloc(sizeof(*d));
    if (!d)
        return NULL;
    d->used = 0;
    d->bigs = NULL;
    d->alloc = (ProtobufCAllocator){.alloc = arena_alloc, .free = arena_free, .allocator_data = d};
    return d;
}

struct cm_decoder *cm_decoder_free(struct cm_decoder *d)
{
    if (!d)
        return NULL;
    arena_reset(d);
    free(d);
    return NULL;
}

static const char *s_or_empty(const char *s)
{
    return s ? s : "";
}

/* Reads a varint at p[*i] (len bytes in all); 0 when cut or too long. */
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

/* Checks every string field, at any depth, of the wire form of a message of
 * type md as it stands on the wire: protobuf-c hands strings over as C
 * strings, which would hide their bytes from a NUL on. Returns
 * CM_REJ_STRING_TOO_LONG, CM_REJ_NUL_IN_STRING or CM_OK (malformed input is
 * protobuf-c's to refuse). */
static enum cm_reject check_strings(const ProtobufCMessageDescriptor *md, const uint8_t *p,
                                    size_t len, int depth)
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
            if (len - i < 8)
                return CM_OK;
            i += 8;
            break;
        case 5:
            if (len - i < 4)
                return CM_OK;
            i += 4;
            break;
        case 2: {
            if (!varint(p, len, &i, &v) || v > len - i)
                return CM_OK;
            const ProtobufCFieldDescriptor *f =
                key >> 3 <= UINT32_MAX ? protobuf_c_message_descriptor_get_field(
                                             md, (unsigned)(key >> 3))
                                       : NULL;
            if (f && f->type == PROTOBUF_C_TYPE_STRING) {
                if (v > CM_STR_MAX)
                    return CM_REJ_STRING_TOO_LONG;
                if (memchr(p + i, 0, (size_t)v))
                    return CM_REJ_NUL_IN_STRING;
            } else if (f && f->type == PROTOBUF_C_TYPE_MESSAGE && depth < 8) {
                enum cm_reject r = check_strings(f->descriptor, p + i, (size_t)v, depth + 1);
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

enum cm_reject cm_decode(struct cm_decoder *d, const uint8_t *buf, size_t len, struct cm_event *ev)
{
    arena_reset(d);
    Circmon__V1__Event *m = circmon__v1__event__unpack(&d->alloc, len, buf);
    if (!m)
        return CM_REJ_DECODE;

    memset(ev, 0, sizeof(*ev));
    ev->event_id = s_or_empty(m->event_id);
    ev->migrant_id = s_or_empty(m->migrant_id);
    ev->occurred_at = m->occurred_at;
    ev->permit_id = ev->scheme_id = ev->nationality = "";

    /* Every string of the message counts, optional ones included. */
    enum cm_reject sr = check_strings(&circmon__v1__event__descriptor, buf, len, 0);
    if (sr != CM_OK)
        return sr;

    if (!ev->event_id[0])
        return CM_REJ_NO_EVENT_ID;
    if (!ev->migrant_id[0])
        return CM_REJ_NO_MIGRANT_ID;
    if (m->occurred_at <= 0)
        return CM_REJ_NO_OCCURRED_AT;

    switch (m->body_case) {
    case CIRCMON__V1__EVENT__BODY_ENTRY:
        ev->type = CM_EV_ENTRY;
        break;
    case CIRCMON__V1__EVENT__BODY_EXIT:
        ev->type = CM_EV_EXIT;
        break;
    case CIRCMON__V1__EVENT__BODY_PERMIT_GRANTED: {
        Circmon__V1__PermitGranted *g = m->permit_granted;
        ev->type = CM_EV_GRANTED;
        ev->permit_id = s_or_empty(g->permit_id);
        ev->scheme_id = s_or_empty(g->scheme_id);
        ev->nationality = s_or_empty(g->nationality);
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
        if (g->valid_until < g->valid_from)
            return CM_REJ_VALIDITY_ORDER;
        break;
    }
    case CIRCMON__V1__EVENT__BODY_PERMIT_EXTENDED:
        ev->type = CM_EV_EXTENDED;
        ev->permit_id = s_or_empty(m->permit_extended->permit_id);
        ev->valid_until = m->permit_extended->valid_until;
        if (!ev->permit_id[0])
            return CM_REJ_NO_PERMIT_ID;
        if (!ev->valid_until)
            return CM_REJ_NO_VALID_UNTIL;
        break;
    case CIRCMON__V1__EVENT__BODY_PERMIT_REVOKED:
        ev->type = CM_EV_REVOKED;
        ev->permit_id = s_or_empty(m->permit_revoked->permit_id);
        ev->effective_at = m->permit_revoked->effective_at;
        if (!ev->permit_id[0])
            return CM_REJ_NO_PERMIT_ID;
        break;
    case CIRCMON__V1__EVENT__BODY_STATUS_CHANGED:
        ev->type = CM_EV_STATUS;
        ev->status = m->status_changed->status;
        break;
    default:
        return CM_REJ_NO_BODY;
    }
    return CM_OK;
}
