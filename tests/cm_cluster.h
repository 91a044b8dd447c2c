/* cm_cluster.h - a Redis Cluster of 3 masters and 3 replicas on loopback for the
 * integration suites (check_cluster, check_rebuild_cluster): the nodes started on
 * ports below the ephemeral range (another base when one is taken), stopped by the
 * suite's teardown with every other process spawned; commands to one node; slot
 * owners and moves the way redis-cli --cluster reshard does them; positions read
 * by name through the cluster. Include after cm_e2e.h. */
#ifndef CM_CLUSTER_H
#define CM_CLUSTER_H

#include "circmon/cluster.h"
#include "circmon/redis_conn.h"
#include "circmon/slot.h"

#define CL_N 6 /* 3 masters, 3 replicas */

static CMT_UNUSED int cl_port[CL_N];
static CMT_UNUSED pid_t cl_pid[CL_N];

static CMT_UNUSED redisContext *node_conn(int port)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (c && c->err) {
        redisFree(c);
        return NULL;
    }
    if (c)
        redisSetTimeout(c, tv);
    return c;
}

/* The reply of argv on the node at port (NULL when it does not answer). */
static CMT_UNUSED redisReply *node_cmdv(int port, int argc, const char **argv)
{
    redisContext *c = node_conn(port);
    if (!c)
        return NULL;
    redisReply *r = redisCommandArgv(c, argc, argv, NULL);
    redisFree(c);
    return r;
}

static CMT_UNUSED redisReply *node_cmd(int port, const char *a0, const char *a1, const char *a2,
                                       const char *a3, const char *a4, const char *a5)
{
    const char *argv[] = {a0, a1, a2, a3, a4, a5};
    int n = 0;
    while (n < 6 && argv[n])
        n++;
    return node_cmdv(port, n, argv);
}

static CMT_UNUSED void node_ok(int port, const char *a0, const char *a1, const char *a2,
                               const char *a3, const char *a4, const char *a5)
{
    redisReply *r = node_cmd(port, a0, a1, a2, a3, a4, a5);
    ck_assert_msg(r && r->type != REDIS_REPLY_ERROR, "node %d: %s %s %s: %s", port, a0,
                  a1 ? a1 : "", a2 ? a2 : "", r ? r->str : "no answer");
    freeReplyObject(r);
}

/* Whether the node at port answers CLUSTER INFO with cluster_state:ok. */
static CMT_UNUSED int node_state_ok(int port)
{
    redisReply *r = node_cmd(port, "CLUSTER", "INFO", NULL, NULL, NULL, NULL);
    int ok = r && r->type == REDIS_REPLY_STRING && strstr(r->str, "cluster_state:ok") &&
             strstr(r->str, "cluster_slots_ok:16384");
    freeReplyObject(r);
    return ok;
}

static CMT_UNUSED void node_id(int port, char *id, size_t cap)
{
    redisReply *r = node_cmd(port, "CLUSTER", "MYID", NULL, NULL, NULL, NULL);
    ck_assert_msg(r && r->type == REDIS_REPLY_STRING, "node %d: no id", port);
    snprintf(id, cap, "%s", r->str);
    freeReplyObject(r);
}

/* The port of slot's master as the node at ask sees it (-1 unknown). */
static CMT_UNUSED int slot_owner(int ask, int slot)
{
    redisReply *r = node_cmd(ask, "CLUSTER", "SLOTS", NULL, NULL, NULL, NULL);
    int port = -1;
    for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        redisReply *e = r->element[i];
        if (e->element[0]->integer <= slot && slot <= e->element[1]->integer)
            port = (int)e->element[2]->element[1]->integer;
    }
    freeReplyObject(r);
    return port;
}

/* Whether the node at port is a master (ROLE). */
static CMT_UNUSED int is_master(int port)
{
    redisReply *r = node_cmd(port, "ROLE", NULL, NULL, NULL, NULL, NULL);
    int m = r && r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
            r->element[0]->type == REDIS_REPLY_STRING && !strcmp(r->element[0]->str, "master");
    freeReplyObject(r);
    return m;
}

/* Starts the 6 nodes on ports base..base+5 (bus ports +10000, all below
 * the ephemeral range); 0, or -1 when one could not bind (then none runs). */
static CMT_UNUSED int nodes_start(int base)
{
    for (int i = 0; i < CL_N; i++) {
        char port[16], cfgf[400], rdir[300], log[300];
        cl_port[i] = base + i;
        snprintf(port, sizeof(port), "%d", cl_port[i]);
        snprintf(rdir, sizeof(rdir), "%s/r%d", dir, cl_port[i]);
        snprintf(cfgf, sizeof(cfgf), "%s/nodes.conf", rdir);
        snprintf(log, sizeof(log), "%s/redis-%d.log", dir, cl_port[i]);
        mkdir(rdir, 0755);
        char *argv[] = {"redis-server", "--port", port, "--bind", "127.0.0.1",
                        "--cluster-enabled", "yes", "--cluster-config-file", cfgf,
                        "--cluster-node-timeout", "1000", "--cluster-replica-validity-factor",
                        "0", "--save", "", "--appendonly", "no", "--daemonize", "no", "--dir",
                        rdir, NULL};
        cl_pid[i] = spawn(argv, log, log, NULL, NULL);
    }
    double end = now_s() + 15;
    for (int i = 0; i < CL_N; i++) {
        for (;;) {
            redisReply *r = node_cmd(cl_port[i], "PING", NULL, NULL, NULL, NULL, NULL);
            int ok = r && r->type == REDIS_REPLY_STATUS;
            freeReplyObject(r);
            if (ok)
                break;
            if (!alive(cl_pid[i]) || now_s() > end) { /* port taken: another base */
                for (int k = 0; k < CL_N; k++) {
                    kill(cl_pid[k], SIGKILL);
                    wait_pid(cl_pid[k], 10);
                }
                return -1;
            }
            nap_ms(20);
        }
    }
    return 0;
}

/* Starts a cluster of 3 masters and 3 replicas and waits until every node
 * says cluster_state:ok. */
static CMT_UNUSED void cluster_start(void)
{
    int base = -1;
    for (int attempt = 0; attempt < 8 && base < 0; attempt++) {
        int b = 10000 + (int)(((unsigned)getpid() * 7u + (unsigned)attempt * 131u) % 1200u) * 8;
        if (nodes_start(b) == 0)
            base = b;
    }
    ck_assert_msg(base > 0, "cannot start the cluster's nodes (ports taken?)");
    char addr[CL_N][32];
    char *argv[16];
    int n = 0;
    argv[n++] = "redis-cli";
    argv[n++] = "--cluster";
    argv[n++] = "create";
    for (int i = 0; i < CL_N; i++) {
        snprintf(addr[i], sizeof(addr[i]), "127.0.0.1:%d", cl_port[i]);
        argv[n++] = addr[i];
    }
    argv[n++] = "--cluster-replicas";
    argv[n++] = "1";
    argv[n++] = "--cluster-yes";
    argv[n] = NULL;
    int st = wait_pid(spawn(argv, path_in("create.log"), path_in("create.log"), NULL, NULL), 60);
    ck_assert_msg(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
                  "redis-cli --cluster create failed (see %s)", path_in("create.log"));
    double end = now_s() + 30;
    for (int i = 0; i < CL_N; i++)
        while (!node_state_ok(cl_port[i])) {
            ck_assert_msg(now_s() < end, "node %d: cluster not ok after 30 s", cl_port[i]);
            nap_ms(50);
        }
}


/* Sum of the stored positions of partitions 0..N_PARTS-1, read by name
 * through the cluster (-1 while they cannot be read). */
static CMT_UNUSED int64_t cl_stored_sum(const char *conf)
{
    struct cm_config cfg = {0};
    char err[512];
    int32_t parts[N_PARTS];
    int64_t pos[N_PARTS], sum = 0;
    ck_assert_msg(cm_config_load(&cfg, conf, err, sizeof(err)) == 0, "%s", err);
    for (int i = 0; i < N_PARTS; i++)
        parts[i] = i;
    if (cm_store_read_positions_of(&cfg, parts, N_PARTS, pos, err, sizeof(err)) == 0)
        for (int i = 0; i < N_PARTS; i++)
            sum += pos[i];
    else
        sum = -1;
    cm_config_free(&cfg);
    return sum;
}

static CMT_UNUSED void cl_wait_sum(const char *conf, int64_t min, int64_t max, double timeout_s)
{
    double end = now_s() + timeout_s;
    int64_t s;
    while ((s = cl_stored_sum(conf)) < min) {
        ck_assert_msg(now_s() < end, "positions at %" PRId64 ", not %" PRId64 " after %.0f s",
                      s, min, timeout_s);
        nap_ms(20);
    }
    ck_assert_msg(s <= max, "positions add up to %" PRId64 " > %" PRId64, s, max);
}

/* The hash slot of partition p's keys. */
static CMT_UNUSED int part_slot(int p)
{
    char k[32];
    int n = snprintf(k, sizeof(k), "circmon:{%d}:pos", p);
    return cm_slot_of(k, (size_t)n);
}

/* Number of keys of slot on the node at port. */
static CMT_UNUSED long slot_keys(int port, int slot)
{
    char s[16];
    snprintf(s, sizeof(s), "%d", slot);
    redisReply *r = node_cmd(port, "CLUSTER", "COUNTKEYSINSLOT", s, NULL, NULL, NULL);
    ck_assert_msg(r && r->type == REDIS_REPLY_INTEGER, "node %d: COUNTKEYSINSLOT", port);
    long n = (long)r->integer;
    freeReplyObject(r);
    return n;
}

/* The first half of a move of slot from the master at src to the master
 * at dst, as redis-cli --cluster reshard does it: IMPORTING on dst,
 * MIGRATING on src, then MIGRATE of at most max_keys of its keys (-1: all),
 * in batches of 20. Returns the keys moved. */
static CMT_UNUSED long migrate_slot_begin(int slot, int src, int dst, long max_keys)
{
    char s[16], sid[64], did[64], dp[16];
    long moved = 0;
    snprintf(s, sizeof(s), "%d", slot);
    snprintf(dp, sizeof(dp), "%d", dst);
    node_id(src, sid, sizeof(sid));
    node_id(dst, did, sizeof(did));
    node_ok(dst, "CLUSTER", "SETSLOT", s, "IMPORTING", sid, NULL);
    node_ok(src, "CLUSTER", "SETSLOT", s, "MIGRATING", did, NULL);
    while (max_keys < 0 || moved < max_keys) {
        char cnt[24];
        long want = max_keys < 0 || max_keys - moved > 20 ? 20 : max_keys - moved;
        snprintf(cnt, sizeof(cnt), "%ld", want);
        redisReply *r = node_cmd(src, "CLUSTER", "GETKEYSINSLOT", s, cnt, NULL, NULL);
        ck_assert(r && r->type == REDIS_REPLY_ARRAY);
        if (r->elements == 0) {
            freeReplyObject(r);
            break;
        }
        const char *argv[40] = {"MIGRATE", "127.0.0.1", dp, "", "0", "5000", "KEYS"};
        int n = 7;
        for (size_t i = 0; i < r->elements; i++)
            argv[n++] = r->element[i]->str;
        redisReply *m = node_cmdv(src, n, argv);
        ck_assert_msg(m && m->type != REDIS_REPLY_ERROR, "MIGRATE: %s", m ? m->str : "no answer");
        moved += (long)r->elements;
        freeReplyObject(m);
        freeReplyObject(r);
    }
    return moved;
}

/* The rest of a move begun by migrate_slot_begin: its other keys, then
 * SETSLOT NODE on every master. */
static CMT_UNUSED void migrate_slot_end(int slot, int src, int dst)
{
    char s[16], did[64];
    snprintf(s, sizeof(s), "%d", slot);
    node_id(dst, did, sizeof(did));
    migrate_slot_begin(slot, src, dst, -1); /* SETSLOT IMPORTING/MIGRATING again: the same */
    node_ok(dst, "CLUSTER", "SETSLOT", s, "NODE", did, NULL);
    node_ok(src, "CLUSTER", "SETSLOT", s, "NODE", did, NULL);
    for (int i = 0; i < CL_N; i++)
        if (cl_port[i] != src && cl_port[i] != dst && is_master(cl_port[i]))
            node_ok(cl_port[i], "CLUSTER", "SETSLOT", s, "NODE", did, NULL);
}

/* Moves slot from the master at src to the master at dst the way redis-cli
 * --cluster reshard does: IMPORTING/MIGRATING, MIGRATE of its keys in
 * batches, then SETSLOT NODE on every master. */
static CMT_UNUSED void migrate_slot(int slot, int src, int dst)
{
    migrate_slot_end(slot, src, dst);
}

#endif
