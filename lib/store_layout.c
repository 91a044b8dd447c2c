/* store_layout.c - the layout of migrant states and aggregates in Redis:
 * bucket of a migrant or a field, key names, the stored layout and its check,
 * and the Lua scripts that write and read them. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "circmon/decimal.h"
#include "circmon/store.h"
#include "circmon/store_layout.h"

/* The apply. String states go out in chunked MSET/DEL calls (one redis.call
 * per state costs more than the SET itself; unpack() fails at 8000+ values,
 * so chunks stay at 1000 pairs), bucket states in one HSET (and one HDEL) per
 * bucket, chunked the same way; the caller sends each bucket's states
 * together. Aggregate deltas stay one HINCRBY per field (into the field's
 * bucket; the caller sends each bucket's fields together): measured, HMGET +
 * add in Lua + HSET per chunk costs ~35% more. A field still in the hash of
 * earlier versions (KEYS[2]) is moved into its bucket by the HINCRBY of its
 * old value; those values are read and checked (an integer HINCRBY takes)
 * before any write; the sum of old value, bucket and increment is not
 * checked for overflow, as no counter comes near 2^63. Positions
 * are compared as the decimal strings we write. Redis does not roll back a
 * script that fails half-way, so the writes that can fail (HINCRBY or HSET
 * on a key of another type, put there by hand) are checked before any write. The owner epoch is
 * checked first: a deposed owner's apply is refused even before its
 * successor's first apply has moved the position. Then the layout: an apply
 * never writes a partition in a layout other than the stored one. */
const char cm_store_lua_apply[] =
    "if ARGV[4] ~= '' then\n"
    "  local ep = redis.call('GET', KEYS[4]) or '0'\n"
    "  if not tonumber(ep) then\n"
    "    return redis.error_reply('owner epoch ' .. KEYS[4] .. ' is not a number')\n"
    "  end\n"
    "  if tonumber(ep) > tonumber(ARGV[4]) then return {-1, ep} end\n"
    "end\n"
    "local cur = redis.call('GET', KEYS[1])\n"
    "local lay = redis.call('GET', KEYS[5])\n"
    "if lay then\n"
    "  if lay ~= ARGV[5] then\n"
    "    return redis.error_reply('LAYOUT ' .. KEYS[5] .. ' is \"' .. lay .. '\", this apply writes \"' ..\n"
    "                             ARGV[5] .. '\"')\n"
    "  end\n"
    "elseif cur and ARGV[5] ~= 'strings' then\n"
    "  return redis.error_reply('LAYOUT the partition of ' .. KEYS[1] .. ' holds one string key per' ..\n"
    "                           ' migrant (no ' .. KEYS[5] .. '), this apply writes \"' .. ARGV[5] .. '\"')\n"
    "end\n"
    "if not cur then cur = '0' end\n"
    "if cur ~= ARGV[1] then return {0, cur} end\n"
    "local nk = #KEYS\n"
    "local bk = ARGV[5] ~= 'strings'\n"
    "local function hash_or_none(k)\n"
    "  local t = redis.call('TYPE', k).ok\n"
    "  if t ~= 'hash' and t ~= 'none' then\n"
    "    return redis.error_reply('WRONGTYPE ' .. k .. ' is a ' .. t .. ', not a hash')\n"
    "  end\n"
    "end\n"
    "local e = hash_or_none(KEYS[2])\n"
    "if e then return e end\n"
    "local na = tonumber(ARGV[6])\n"
    "local ns = nk - na\n"
    "for i = 6, nk do\n"
    "  if i > ns or bk then\n"
    "    e = hash_or_none(KEYS[i])\n"
    "    if e then return e end\n"
    "  end\n"
    "end\n"
    "local ja = ns + 2\n"
    "if bk then\n"
    "  ja = 7\n"
    "  for i = 6, ns do\n"
    "    ja = ja + 2 + 2 * tonumber(ARGV[ja]) + tonumber(ARGV[ja + 1])\n"
    "  end\n"
    "end\n"
    "local function is_int(o)\n"
    "  if o == '0' then return true end\n"
    "  local d = string.match(o, '^-?([1-9]%d*)$')\n"
    "  if not d or #d > 19 then return false end\n"
    "  if #d < 19 then return true end\n"
    "  return d <= (string.sub(o, 1, 1) == '-' and '9223372036854775808' or\n"
    "               '9223372036854775807')\n"
    "end\n"
    "local olds = {}\n"
    "if redis.call('EXISTS', KEYS[2]) == 1 then\n"
    "  local x = ja\n"
    "  for i = ns + 1, nk do\n"
    "    local last = x + 2 * tonumber(ARGV[x])\n"
    "    x = x + 1\n"
    "    while x < last do\n"
    "      local o = redis.call('HGET', KEYS[2], ARGV[x])\n"
    "      if o and not is_int(o) then\n"
    "        return redis.error_reply('ERR field ' .. ARGV[x] .. ' of ' .. KEYS[2] ..\n"
    "                                 ' is not an integer')\n"
    "      end\n"
    "      olds[x] = o\n"
    "      x = x + 2\n"
    "    end\n"
    "  end\n"
    "end\n"
    "if ARGV[3] ~= '' then redis.call('SET', KEYS[3], ARGV[3]) end\n"
    "if not lay then redis.call('SET', KEYS[5], ARGV[5]) end\n"
    "local j\n"
    "if bk then\n"
    "  j = 7\n"
    "  for i = 6, ns do\n"
    "    local nset, ndel = tonumber(ARGV[j]), tonumber(ARGV[j + 1])\n"
    "    j = j + 2\n"
    "    local last = j + 2 * nset - 1\n"
    "    while j <= last do\n"
    "      local c = math.min(j + 1999, last)\n"
    "      redis.call('HSET', KEYS[i], unpack(ARGV, j, c))\n"
    "      j = c + 1\n"
    "    end\n"
    "    last = j + ndel - 1\n"
    "    while j <= last do\n"
    "      local c = math.min(j + 1999, last)\n"
    "      redis.call('HDEL', KEYS[i], unpack(ARGV, j, c))\n"
    "      j = c + 1\n"
    "    end\n"
    "  end\n"
    "else\n"
    "  local set, del = {}, {}\n"
    "  local function flush_set()\n"
    "    if #set > 0 then redis.call('MSET', unpack(set)); set = {} end\n"
    "  end\n"
    "  local function flush_del()\n"
    "    if #del > 0 then redis.call('DEL', unpack(del)); del = {} end\n"
    "  end\n"
    "  for i = 6, ns do\n"
    "    local v = ARGV[i + 1]\n"
    "    if v == '' then\n"
    "      del[#del + 1] = KEYS[i]\n"
    "      if #del >= 2000 then flush_del() end\n"
    "    else\n"
    "      set[#set + 1] = KEYS[i]\n"
    "      set[#set + 1] = v\n"
    "      if #set >= 2000 then flush_set() end\n"
    "    end\n"
    "  end\n"
    "  flush_set()\n"
    "  flush_del()\n"
    "end\n"
    "j = ja\n"
    "for i = ns + 1, nk do\n"
    "  local k = KEYS[i]\n"
    "  local last = j + 2 * tonumber(ARGV[j])\n"
    "  j = j + 1\n"
    "  while j < last do\n"
    "    local f = ARGV[j]\n"
    "    if olds[j] then\n"
    "      redis.call('HINCRBY', k, f, olds[j])\n"
    "      redis.call('HDEL', KEYS[2], f)\n"
    "    end\n"
    "    if redis.call('HINCRBY', k, f, ARGV[j + 1]) == 0 then\n"
    "      redis.call('HDEL', k, f)\n"
    "    end\n"
    "    j = j + 2\n"
    "  end\n"
    "end\n"
    "redis.call('SET', KEYS[1], ARGV[2])\n"
    "return {1, ARGV[2]}\n";

/* The read of states in buckets: one HMGET per bucket (chunks of 4000
 * fields: unpack() fails at 8000 values), the values in the order asked. */
const char cm_store_lua_read[] =
    "local out, n, j = {}, 0, 1\n"
    "for i = 1, #KEYS do\n"
    "  local last = j + tonumber(ARGV[j])\n"
    "  j = j + 1\n"
    "  while j <= last do\n"
    "    local c = math.min(j + 3999, last)\n"
    "    local r = redis.call('HMGET', KEYS[i], unpack(ARGV, j, c))\n"
    "    for x = 1, #r do n = n + 1; out[n] = r[x] end\n"
    "    j = c + 1\n"
    "  end\n"
    "end\n"
    "return out\n";

/* The read of aggregate hashes: every field/value pair of every key. The
 * count n, not #out (a search of the table's border at each append): ~15%
 * less Redis CPU on 65 hashes of ~60 fields. */
const char cm_store_lua_agg_read[] =
    "local out, n = {}, 0\n"
    "for i = 1, #KEYS do\n"
    "  local r = redis.call('HGETALL', KEYS[i])\n"
    "  for x = 1, #r do n = n + 1; out[n] = r[x] end\n"
    "end\n"
    "return out\n";

uint32_t cm_layout_bucket(const char *mid, size_t len, uint32_t buckets)
{
    if (buckets < 1)
        return 0;
    uint64_t h = UINT64_C(14695981039346656037);
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)mid[i];
        h *= UINT64_C(1099511628211);
    }
    return (uint32_t)(h % buckets);
}

char *cm_layout_key(const char *prefix, int32_t part)
{
    size_t n = strlen(prefix) + 32;
    char *k = malloc(n);
    if (k)
        snprintf(k, n, "%s:{%" PRId32 "}:layout", prefix, part);
    return k;
}

/* <prefix>:{<part>}:<kind>:<n>, malloc'd, its length in *klen. */
static char *bucket_key(const char *prefix, int32_t part, const char *kind, uint32_t n,
                        size_t *klen)
{
    size_t sz = strlen(prefix) + strlen(kind) + 40;
    char *k = malloc(sz);
    if (!k)
        return NULL;
    int w = snprintf(k, sz, "%s:{%" PRId32 "}:%s:%" PRIu32, prefix, part, kind, n);
    if (klen)
        *klen = (size_t)w;
    return k;
}

char *cm_layout_key_bucket(const char *prefix, int32_t part, uint32_t b, size_t *klen)
{
    return bucket_key(prefix, part, "s", b, klen);
}

char *cm_layout_key_agg_bucket(const char *prefix, int32_t part, uint32_t n, size_t *klen)
{
    return bucket_key(prefix, part, "agg", n, klen);
}

int cm_agg_read_init(struct cm_agg_read *rd, const char *prefix, int32_t part)
{
    memset(rd, 0, sizeof(*rd));
    rd->keys[0] = cm_store_key_agg(prefix, part);
    if (!rd->keys[0])
        return -ENOMEM;
    rd->argv[0] = "EVAL";
    rd->argv[1] = cm_store_lua_agg_read;
    snprintf(rd->nk, sizeof(rd->nk), "%d", 1 + CM_AGG_BUCKETS);
    rd->argv[2] = rd->nk;
    rd->argv[3] = rd->keys[0];
    rd->lens[3] = strlen(rd->keys[0]);
    for (uint32_t b = 0; b < CM_AGG_BUCKETS; b++) {
        if (!(rd->keys[b + 1] = cm_layout_key_agg_bucket(prefix, part, b, &rd->lens[b + 4]))) {
            cm_agg_read_free(rd);
            return -ENOMEM;
        }
        rd->argv[b + 4] = rd->keys[b + 1];
    }
    for (int i = 0; i < 3; i++)
        rd->lens[i] = strlen(rd->argv[i]);
    rd->argc = 4 + CM_AGG_BUCKETS;
    return 0;
}

void cm_agg_read_free(struct cm_agg_read *rd)
{
    for (size_t i = 0; i < sizeof(rd->keys) / sizeof(rd->keys[0]); i++)
        free(rd->keys[i]);
    memset(rd, 0, sizeof(*rd));
}

char *cm_layout_key_string(const char *prefix, int32_t part, const char *mid, size_t len,
                           size_t *klen)
{
    char head[64];
    int h = snprintf(head, sizeof(head), ":{%" PRId32 "}:m:", part);
    size_t pl = strlen(prefix);
    char *k = malloc(pl + (size_t)h + len + 1);
    if (!k)
        return NULL;
    memcpy(k, prefix, pl);
    memcpy(k + pl, head, (size_t)h);
    if (len)
        memcpy(k + pl + (size_t)h, mid, len);
    k[pl + (size_t)h + len] = '\0';
    if (klen)
        *klen = pl + (size_t)h + len;
    return k;
}

int cm_layout_format(int32_t buckets, char *buf, size_t cap)
{
    if (buckets < 0 || buckets > CM_LAYOUT_BUCKETS_MAX)
        return -EINVAL;
    int n = buckets ? snprintf(buf, cap, "buckets %" PRId32, buckets)
                    : snprintf(buf, cap, "strings");
    return n < 0 || (size_t)n >= cap ? -EINVAL : n;
}

int cm_layout_parse(const char *s, size_t len, int32_t *buckets)
{
    if (len == 7 && !memcmp(s, "strings", 7)) {
        *buckets = 0;
        return 0;
    }
    uint64_t v;
    if (len < 9 || memcmp(s, "buckets ", 8) || s[8] == '0' ||
        cm_decimal_u64(s + 8, len - 8, CM_LAYOUT_BUCKETS_MAX, &v) || v < 1)
        return -EINVAL;
    *buckets = (int32_t)v;
    return 0;
}

static void layout_name(int32_t b, char *buf, size_t cap)
{
    if (b < 0)
        snprintf(buf, cap, "one string key per migrant (no layout key)");
    else if (b == 0)
        snprintf(buf, cap, "one string key per migrant");
    else
        snprintf(buf, cap, "%" PRId32 " hash buckets", b);
}

int cm_layout_check(int32_t part, int32_t stored, int has_pos, int32_t want, char *msg,
                    size_t cap)
{
    if (stored == want || (stored < 0 && (!has_pos || want == 0)))
        return 0;
    char s[64], w[64];
    layout_name(stored, s, sizeof(s));
    layout_name(want, w, sizeof(w));
    snprintf(msg, cap,
             "partition %" PRId32 ": Redis holds its states in %s, [redis] state_buckets = %" PRId32
             " asks for %s: set state_buckets = %" PRId32 "%s, or rebuild into a new key_prefix",
             part, s, want, w, stored < 0 ? 0 : stored,
             stored <= 0 && want > 0 ? ", or convert with circmonctl migrate-layout (circmond stopped)"
                                     : "");
    return -ESTALE;
}
