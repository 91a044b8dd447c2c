/* event.c - decoding and validation of one circmon.v1.Event message. */
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <threads.h>

#include "circmon/event.h"
#include "circmon/framing.h"
#include "circmon/v1/events.pb-c.h"

/* Field numbers of events.proto that cm_decode reads. The contract fixes them
 * for ever; check_input.c compares what cm_decode reads with protobuf-c's
 * unpack of the same bytes. */
enum {
    F_EVENT_ID = 1,
    F_MIGRANT_ID = 2,
    F_OCCURRED_AT = 3,
    F_ENTRY = 10,
    F_EXIT = 11,
    F_GRANTED = 12,
    F_EXTENDED = 13,
    F_REVOKED = 14,
    F_STATUS = 15,
    /* inside the bodies */
    B_PERMIT_ID = 1,     /* PermitGranted, PermitExtended, PermitRevoked */
    B_SCHEME_ID = 2,     /* PermitGranted */
    B_KIND = 3,          /* PermitGranted */
    B_VALID_FROM = 4,    /* PermitGranted */
    B_VALID_UNTIL = 5,   /* PermitGranted */
    B_NATIONALITY = 7,   /* PermitGranted */
    B_EXT_UNTIL = 2,     /* PermitExtended.valid_until */
    B_EFFECTIVE_AT = 2,  /* PermitRevoked */
    B_STATUS = 1,        /* StatusChanged */
};

#define NF 16 /* fields numbered below NF are kept by the walk */

#define ONES UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080) /* the high bit of each byte of a word */

/* The last occurrence of each field of one message, as on the wire. */
struct fields {
    uint32_t has; /* bit n: field n was seen */
    const uint8_t *s[NF];
    uint32_t sl[NF];
    uint64_t v[NF];
};

#define NMSG 8 /* message types with a field table: Event and its bodies */

/* The fields of one message type by number, below NF (NULL: unknown). */
struct dtab {
    const ProtobufCMessageDescriptor *md;
    const ProtobufCFieldDescriptor *f[NF];
};

/* Built once, then only read: shared by every decoder and thread. */
static struct dtab tabs[NMSG];
static size_t ntabs;
static once_flag tabs_once = ONCE_FLAG_INIT;

struct cm_decoder {
    char s[5][CM_STR_MAX + 1]; /* the decoded strings, until the next decode */
};
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
    [CM_REJ_INVALID_UTF8] = "invalid_utf8",
    [CM_REJ_OUT_OF_RANGE] = "out_of_range",
};

int cm_utf8_valid(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str, *end = s + len;
    while (s < end) {
        /* ids are mostly ASCII: eight bytes at a time */
        while (end - s >= 8) {
            uint64_t w;
            memcpy(&w, s, 8);
            if (w & HIGHS)
                break;
            s += 8;
        }
        if (s == end)
            break;
        unsigned c = *s;
        if (c < 0x80) {
            s++;
            continue;
        }
        /* Unicode table 3-7: the lead byte fixes the length and the range
         * of the second byte; the others are 80..BF */
        size_t n;
        unsigned lo = 0x80, hi = 0xbf;
        if (c >= 0xc2 && c <= 0xdf)
            n = 1;
        else if (c == 0xe0)
            n = 2, lo = 0xa0; /* E0 80..9F: overlong */
        else if (c == 0xed)
            n = 2, hi = 0x9f; /* ED A0..BF: surrogates */
        else if (c >= 0xe1 && c <= 0xef)
            n = 2;
        else if (c == 0xf0)
            n = 3, lo = 0x90; /* F0 80..8F: overlong */
        else if (c >= 0xf1 && c <= 0xf3)
            n = 3;
        else if (c == 0xf4)
            n = 3, hi = 0x8f; /* F4 90..: above U+10FFFF */
        else
            return 0; /* 80..C1 (continuation, overlong), F5..FF */
        if ((size_t)(end - s) <= n || s[1] < lo || s[1] > hi)
            return 0;
        for (size_t k = 2; k <= n; k++)
            if ((s[k] & 0xc0) != 0x80)
                return 0;
        s += n + 1;
    }
    return 1;
}

const char *cm_reject_name(enum cm_reject r)
{
    if ((int)r < 0 || r >= CM_REJ__COUNT)
        return "unknown";
    return reject_names[r];
}

/* Adds the field table of md and of the message types its fields hold. */
static void add_tables(const ProtobufCMessageDescriptor *md)
{
    for (size_t i = 0; i < ntabs; i++)
        if (tabs[i].md == md)
            return;
    if (ntabs == NMSG)
        return; /* the walk asks protobuf-c for the fields of the others */
    struct dtab *t = &tabs[ntabs++];
    t->md = md;
    for (unsigned n = 0; n < NF; n++)
        t->f[n] = protobuf_c_message_descriptor_get_field(md, n);
    for (unsigned i = 0; i < md->n_fields; i++)
        if (md->fields[i].type == PROTOBUF_C_TYPE_MESSAGE)
            add_tables(md->fields[i].descriptor);
}

static void make_tables(void)
{
    add_tables(&circmon__v1__event__descriptor);
}

struct cm_decoder *cm_decoder_new(void)
{
    call_once(&tabs_once, make_tables);
    return malloc(sizeof(struct cm_decoder));
}

struct cm_decoder *cm_decoder_free(struct cm_decoder *d)
{
    free(d);
    return NULL;
}

/* ---- the wire form, read as protobuf-c 1.4 reads it ----
 *
 * protobuf-c's unpack allocates the message and every string, and hands the
 * strings over cut at their first NUL; this walk reads the same bytes in
 * place, refuses exactly what protobuf-c refuses, and keeps what the
 * contract needs. check_input.c holds it to protobuf-c on mutated input. */

/* A field key: at most 5 bytes, and a first byte without any field number
 * bits is refused (protobuf-c's parse_tag_and_wiretype). */
static int key_at(const uint8_t *p, size_t len, size_t *i, uint32_t *tag, unsigned *wt)
{
    const uint8_t *q = p + *i;
    size_t n = len - *i < 5 ? len - *i : 5;
    if (!(q[0] & 0xf8))
        return 0;
    *wt = q[0] & 7;
    uint32_t t = (q[0] & 0x7f) >> 3;
    if (!(q[0] & 0x80)) {
        *tag = t;
        *i += 1;
        return 1;
    }
    for (size_t k = 1, shift = 4; k < n; k++, shift += 7) {
        t |= (uint32_t)(q[k] & 0x7f) << shift;
        if (!(q[k] & 0x80)) {
            *tag = t;
            *i += k + 1;
            return 1;
        }
    }
    return 0;
}

/* A varint of at most max bytes at p[*i]. */
static int varint_max(const uint8_t *p, size_t len, size_t *i, size_t max, uint64_t *v)
{
    size_t k = cm_varint_get(p + *i, len - *i, max, v);
    *i += k;
    return k != 0;
}

/* A varint value: at most 10 bytes. */
static int varint_at(const uint8_t *p, size_t len, size_t *i, uint64_t *v)
{
    return varint_max(p, len, i, 10, v);
}

/* The length of a length-delimited field: at most 5 bytes, at most INT_MAX,
 * and within the message. */
static int length_at(const uint8_t *p, size_t len, size_t *i, size_t *l)
{
    uint64_t x;
    size_t j = *i;
    if (!varint_max(p, len, &j, 5, &x) || x > INT_MAX || x > len - j)
        return 0;
    *l = (size_t)x;
    *i = j;
    return 1;
}

/* The wire type a field of type t must come with; -1: any (protobuf-c 1.4
 * reads a bool from whatever bytes the field has). */
static int wire_type(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_BOOL:
        return -1;
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_FLOAT:
        return 5;
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return 1;
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_BYTES:
    case PROTOBUF_C_TYPE_MESSAGE:
        return 2;
    default:
        return 0; /* the varint types */
    }
}

#define FAULT(r) (UINT32_C(1) << (r))

/* FAULT() of the string fault of the l bytes at q (0: none): a NUL anywhere
 * first, then UTF-8. An ASCII string, the usual id, takes one pass. */
static uint32_t string_fault(const uint8_t *q, size_t l)
{
    size_t i = 0;
    for (; i + 8 <= l; i += 8) {
        uint64_t w;
        memcpy(&w, q + i, 8);
        if ((w | ((w - ONES) & ~w)) & HIGHS) /* a byte >= 0x80, or a zero byte */
            break;
    }
    while (i < l && q[i] && q[i] < 0x80)
        i++;
    if (i == l)
        return 0;
    /* what lies before i is ASCII: no sequence begins there */
    if (memchr(q + i, 0, l - i))
        return FAULT(CM_REJ_NUL_IN_STRING);
    return cm_utf8_valid((const char *)q + i, l - i) ? 0 : FAULT(CM_REJ_INVALID_UTF8);
}

struct walk {
    struct fields top, body; /* body: the last member of the oneof */
    uint32_t body_tag;       /* its field number, 0 = none */
    uint32_t faults;         /* FAULT(r): a field fault of reason r was seen */
};

/* Walks a message of type md. out (NULL: nothing kept) receives its fields;
 * a oneof message member of the top level goes to w->body, replacing any
 * earlier one whole, as protobuf-c 1.4 does. Returns 0 when protobuf-c
 * would refuse the bytes. */
static int walk(const ProtobufCMessageDescriptor *md, const uint8_t *p, size_t len,
                struct fields *out, struct walk *w)
{
    const struct dtab *dt = NULL;
    for (size_t k = 0; k < ntabs && !dt; k++)
        if (tabs[k].md == md)
            dt = &tabs[k];
    size_t i = 0;
    while (i < len) {
        uint32_t tag;
        unsigned wt;
        uint64_t v = 0;
        size_t l = 0;
        const uint8_t *q = NULL;
        if (!key_at(p, len, &i, &tag, &wt))
            return 0;
        switch (wt) {
        case 0:
            if (!varint_at(p, len, &i, &v))
                return 0;
            break;
        case 1:
        case 5: {
            size_t n = wt == 1 ? 8 : 4;
            if (len - i < n)
                return 0;
            i += n;
            break;
        }
        case 2:
            if (!length_at(p, len, &i, &l))
                return 0;
            q = p + i;
            i += l;
            break;
        default:
            return 0; /* groups and reserved wire types */
        }
        const ProtobufCFieldDescriptor *f =
            dt && tag < NF ? dt->f[tag] : protobuf_c_message_descriptor_get_field(md, tag);
        if (!f)
            continue; /* unknown: skipped */
        int want = wire_type(f->type);
        if (f->label == PROTOBUF_C_LABEL_REPEATED || (want >= 0 && (int)wt != want))
            return 0; /* the schema has no repeated field */
        int keep = out && tag < NF;
        switch (f->type) {
        case PROTOBUF_C_TYPE_STRING:
            /* one fault per string: the first that applies */
            if (l > CM_STR_MAX)
                w->faults |= FAULT(CM_REJ_STRING_TOO_LONG);
            else
                w->faults |= string_fault(q, l);
            if (keep) {
                out->s[tag] = q;
                out->sl[tag] = (uint32_t)l;
            }
            break;
        case PROTOBUF_C_TYPE_MESSAGE: {
            struct fields *sub = NULL;
            if (out == &w->top && (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)) {
                sub = &w->body;
                sub->has = 0;
                w->body_tag = tag;
            }
            if (!walk(f->descriptor, q, l, sub, w))
                return 0;
            break;
        }
        case PROTOBUF_C_TYPE_INT64:
            /* the int64 fields of events.proto are its instants; a negative
             * one is a 10-byte varint, above CM_TIME_MAX as unsigned */
            if (v > (uint64_t)CM_TIME_MAX)
                w->faults |= FAULT(CM_REJ_OUT_OF_RANGE);
            if (keep)
                out->v[tag] = v;
            break;
        default:
            if (keep)
                out->v[tag] = v;
            break;
        }
        if (keep)
            out->has |= UINT32_C(1) << tag;
    }
    return 1;
}

/* String field tag of fs, copied NUL-terminated into slot k of d ("" when
 * absent). The walk has checked its length, that it holds no NUL and that it
 * is UTF-8. */
static const char *str(struct cm_decoder *d, int k, const struct fields *fs, int tag)
{
    if (!(fs->has & UINT32_C(1) << tag))
        return "";
    memcpy(d->s[k], fs->s[tag], fs->sl[tag]);
    d->s[k][fs->sl[tag]] = 0;
    return d->s[k];
}

static uint64_t num(const struct fields *fs, int tag)
{
    return fs->has & UINT32_C(1) << tag ? fs->v[tag] : 0;
}

enum cm_reject cm_decode(struct cm_decoder *d, const uint8_t *buf, size_t len, struct cm_event *ev)
{
    struct walk w;
    w.top.has = w.body.has = 0;
    w.body_tag = 0;
    w.faults = 0;
    memset(ev, 0, sizeof(*ev));
    if (!walk(&circmon__v1__event__descriptor, buf, len, &w.top, &w))
        return CM_REJ_DECODE;
    /* Every string and instant of the message counts, optional ones
     * included; the order of event.h decides between faults. */
    if (w.faults) {
        static const enum cm_reject order[] = {CM_REJ_STRING_TOO_LONG, CM_REJ_NUL_IN_STRING,
                                               CM_REJ_INVALID_UTF8, CM_REJ_OUT_OF_RANGE};
        for (size_t k = 0; k < sizeof(order) / sizeof(order[0]); k++)
            if (w.faults & FAULT(order[k]))
                return order[k];
    }

    const struct fields *b = &w.body;
    ev->event_id = str(d, 0, &w.top, F_EVENT_ID);
    ev->migrant_id = str(d, 1, &w.top, F_MIGRANT_ID);
    ev->occurred_at = (int64_t)num(&w.top, F_OCCURRED_AT);
    ev->permit_id = ev->scheme_id = ev->nationality = "";
    if (!ev->event_id[0])
        return CM_REJ_NO_EVENT_ID;
    if (!ev->migrant_id[0])
        return CM_REJ_NO_MIGRANT_ID;
    if (ev->occurred_at <= 0)
        return CM_REJ_NO_OCCURRED_AT;

    switch (w.body_tag) {
    case F_ENTRY:
        ev->type = CM_EV_ENTRY;
        break;
    case F_EXIT:
        ev->type = CM_EV_EXIT;
        break;
    case F_GRANTED:
        ev->type = CM_EV_GRANTED;
        ev->permit_id = str(d, 2, b, B_PERMIT_ID);
        ev->scheme_id = str(d, 3, b, B_SCHEME_ID);
        ev->nationality = str(d, 4, b, B_NATIONALITY);
        ev->kind = (int32_t)(uint32_t)num(b, B_KIND); /* an enum: its low 32 bits */
        ev->valid_from = (int64_t)num(b, B_VALID_FROM);
        ev->valid_until = (int64_t)num(b, B_VALID_UNTIL);
        if (!ev->permit_id[0])
            return CM_REJ_NO_PERMIT_ID;
        if (!ev->scheme_id[0])
            return CM_REJ_NO_SCHEME_ID;
        if (!ev->valid_from)
            return CM_REJ_NO_VALID_FROM;
        if (!ev->valid_until)
            return CM_REJ_NO_VALID_UNTIL;
        if (ev->valid_until < ev->valid_from)
            return CM_REJ_VALIDITY_ORDER;
        break;
    case F_EXTENDED:
        ev->type = CM_EV_EXTENDED;
        ev->permit_id = str(d, 2, b, B_PERMIT_ID);
        ev->valid_until = (int64_t)num(b, B_EXT_UNTIL);
        if (!ev->permit_id[0])
            return CM_REJ_NO_PERMIT_ID;
        if (!ev->valid_until)
            return CM_REJ_NO_VALID_UNTIL;
        break;
    case F_REVOKED:
        ev->type = CM_EV_REVOKED;
        ev->permit_id = str(d, 2, b, B_PERMIT_ID);
        ev->effective_at = (int64_t)num(b, B_EFFECTIVE_AT);
        if (!ev->permit_id[0])
            return CM_REJ_NO_PERMIT_ID;
        break;
    case F_STATUS:
        ev->type = CM_EV_STATUS;
        ev->status = (int32_t)(uint32_t)num(b, B_STATUS);
        break;
    default:
        return CM_REJ_NO_BODY;
    }
    return CM_OK;
}
