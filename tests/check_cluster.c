/* check_cluster.c - circmon on a Redis Cluster: hash slots against the spec and
 * redis-server's CLUSTER KEYSLOT, the configuration, and end to end on a
 * cluster of 3 masters and 3 replicas on loopback (started by each test,
 * stopped by the teardown whatever happens): figures equal replay, also when
 * slots holding partitions move to another master during ingestion and when
 * a master is SIGKILLed and its replica takes over. Shared helpers:
 * cm_e2e.h (broker, circmon-gen, publish, replay), cm_cluster.h (the cluster). */
#include "cm_e2e.h"

#include "circmon/cluster.h"
#include "circmon/redis_conn.h"
#include "circmon/slot.h"

#include "cm_cluster.h"

/* ------------------------------------------------------------ slots */

START_TEST(test_crc16_and_slots_from_the_spec)
{
    /* The spec's test vector of its CRC16 ("XMODEM"). */
    ck_assert_uint_eq(cm_slot_crc16("123456789", 9), 0x31C3);
    ck_assert_uint_eq(cm_slot_crc16("", 0), 0);
    /* The spec's hash tag rules. */
    ck_assert_int_eq(cm_slot_of("{user1000}.following", 20), cm_slot_of("user1000", 8));
    ck_assert_int_eq(cm_slot_of("{user1000}.followers", 20), cm_slot_of("user1000", 8));
    ck_assert_int_eq(cm_slot_of("foo{}{bar}", 10),
                     cm_slot_crc16("foo{}{bar}", 10) & 16383); /* empty tag: whole key */
    ck_assert_int_eq(cm_slot_of("foo{{bar}}zap", 13),
                     cm_slot_crc16("{bar", 4) & 16383); /* the tag is "{bar" */
    ck_assert_int_eq(cm_slot_of("foo{bar}{zap}", 13), cm_slot_crc16("bar", 3) & 16383);
    ck_assert_int_eq(cm_slot_of("{", 1), cm_slot_crc16("{", 1) & 16383);   /* no '}' */
    ck_assert_int_eq(cm_slot_of("a}b{", 4), cm_slot_crc16("a}b{", 4) & 16383); /* '}' first */
    /* A NUL byte is data. */
    ck_assert_int_eq(cm_slot_of("{a\0b}x", 6), cm_slot_crc16("a\0b", 3) & 16383);
    for (int i = 0; i < 1000; i++) {
        char k[32];
        int n = snprintf(k, sizeof(k), "key:%d", i);
        ck_assert_int_lt(cm_slot_of(k, (size_t)n), CM_SLOTS);
        ck_assert_int_ge(cm_slot_of(k, (size_t)n), 0);
    }
}
END_TEST

/* The key the router takes of a command. */
START_TEST(test_cmd_key)
{
    const char *k;
    size_t kl;
    const char *get[] = {"GET", "circmon:{3}:pos"};
    ck_assert_int_eq(cm_rcluster_cmd_key(2, get, NULL, &k, &kl), 1);
    ck_assert_ptr_eq(k, get[1]);
    ck_assert_uint_eq(kl, strlen(get[1]));
    const char *ev[] = {"evalsha", "sha", "2", "k1", "k2", "a"};
    ck_assert_int_eq(cm_rcluster_cmd_key(6, ev, NULL, &k, &kl), 1);
    ck_assert_str_eq(k, "k1");
    const char *ev0[] = {"EVAL", "return 1", "0"};
    ck_assert_int_eq(cm_rcluster_cmd_key(3, ev0, NULL, &k, &kl), 0);
    const char *evbad[] = {"EVAL", "s", "x", "k"};
    ck_assert_int_eq(cm_rcluster_cmd_key(4, evbad, NULL, &k, &kl), 0);
    const char *ping[] = {"PING"};
    ck_assert_int_eq(cm_rcluster_cmd_key(1, ping, NULL, &k, &kl), 0);
    /* with lengths: a key holding a NUL byte */
    const char *mg[] = {"MGET", "a\0{7}"};
    const size_t ml[] = {4, 6};
    ck_assert_int_eq(cm_rcluster_cmd_key(2, mg, ml, &k, &kl), 1);
    ck_assert_uint_eq(kl, 6);
    ck_assert_int_eq(cm_slot_of(k, kl), cm_slot_of("7", 1));
}
END_TEST

START_TEST(test_nodes_parse)
{
    struct cm_node_addr a[3];
    char err[300];
    ck_assert_int_eq(cm_slot_nodes_parse("127.0.0.1:7000", a, 3, err, sizeof(err)), 1);
    ck_assert_str_eq(a[0].host, "127.0.0.1");
    ck_assert_int_eq(a[0].port, 7000);
    ck_assert_int_eq(cm_slot_nodes_parse(" h1:1 , [::1]:65535,h3:2", a, 3, err, sizeof(err)), 3);
    ck_assert_str_eq(a[0].host, "h1");
    ck_assert_str_eq(a[1].host, "::1");
    ck_assert_int_eq(a[1].port, 65535);
    ck_assert_str_eq(a[2].host, "h3");
    const char *bad[] = {"", "h", "h:", ":1", "h:0", "h:65536", "h:1,", "h:1,,h:2", "::1:7",
                         "[::1]7", "h:1x", "a:1,b:2,c:3,d:4", "h h:1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = 0;
        ck_assert_msg(cm_slot_nodes_parse(bad[i], a, 3, err, sizeof(err)) == -EINVAL,
                      "accepted \"%s\"", bad[i]);
        ck_assert_msg(err[0], "no message for \"%s\"", bad[i]);
    }
}
END_TEST

/* Writes text into dir/name and loads it: 0 and cfg, or the error in err. */
static int load_text(const char *name, const char *text, struct cm_config *cfg, char *err,
                     size_t errlen)
{
    const char *p = path_in(name);
    FILE *fp = fopen(p, "w");
    ck_assert_ptr_nonnull(fp);
    fputs(text, fp);
    fclose(fp);
    return cm_config_load(cfg, p, err, errlen);
}

START_TEST(test_config)
{
    svc_dir_make("check_cluster");
    struct cm_config cfg;
    char err[600];
    ck_assert_msg(load_text("a.conf", "[redis]\ncluster = yes\nnodes = 127.0.0.1:7000, "
                                      "127.0.0.1:7001\npassword = pw\n",
                            &cfg, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(cfg.redis_cluster, 1);
    ck_assert_uint_eq(cfg.n_redis_nodes, 2);
    ck_assert_int_eq(cfg.redis_nodes[1].port, 7001);
    cm_config_free(&cfg);
    struct {
        const char *text, *msg;
    } bad[] = {
        {"[redis]\ncluster = yes\n", ":2: [redis] cluster = yes needs nodes"},
        {"[redis]\ncluster = yes\nnodes = h:1\ndb = 2\n", ":4: [redis] db: a Redis Cluster"},
        {"[redis]\ndb = 1\ncluster = yes\nnodes = h:1\n", ":2: [redis] db: a Redis Cluster"},
        {"[redis]\ncluster = yes\nnodes = h:1\nunix_socket = /x\n", ":4: [redis] unix_socket"},
        {"[redis]\nnodes = h:1\n", ":2: [redis] nodes: only used with cluster = yes"},
        {"[redis]\ncluster = maybe\n", ":2: [redis] cluster: not yes or no"},
        {"[redis]\ncluster = yes\nnodes = h:99999\n", ":3: [redis] nodes: port not in"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_msg(load_text("b.conf", bad[i].text, &cfg, err, sizeof(err)) < 0,
                      "accepted: %s", bad[i].text);
        ck_assert_msg(strstr(err, bad[i].msg) && strstr(err, "b.conf"),
                      "for %s: \"%s\" lacks \"%s\"", bad[i].text, err, bad[i].msg);
    }
    svc_dir_remove();
}
END_TEST

/* ------------------------------------------------------------ the cluster */


static void cl_setup(void)
{
    svc_dir_make("check_cluster");
    cluster_start();
    broker_start_with(N_PARTS, "circmon.events.alerts");
}

/* A configuration on the cluster (two seed nodes: the first may be killed),
 * the HTTP endpoint on port (0: none). */
static const char *cl_conf_port(const char *name, const char *group, int batch_size,
                                int in_flight, int port)
{
    const char *p = path_in(name);
    FILE *fp = fopen(p, "w");
    ck_assert_ptr_nonnull(fp);
    fprintf(fp,
            "[circmon]\nbatch_size = %d\nmax_in_flight = %d\nlog_level = info\n"
            "[kafka]\nbrokers = %s\ngroup_id = %s\nrdkafka.session.timeout.ms = 6000\n"
            "[redis]\ncluster = yes\nnodes = 127.0.0.1:%d, 127.0.0.1:%d\n"
            "command_timeout_ms = 3000\nconnect_timeout_ms = 1000\n"
            "[http]\nlisten = 127.0.0.1\nport = %d\nrefresh_ms = 200\n%s",
            batch_size, in_flight, brokers, group, cl_port[0], cl_port[1], port,
            port ? /* a rule that fires for every scheme: its state goes through the cluster */
                "[alerts]\ninterval_s = 1\n[alert all]\nscheme = *\n"
                "indicator = return_compliance_rate\nbelow = 1\nmin_expected = 1\n"
                "window_months = 120\n"
                 : "");
    fclose(fp);
    return p;
}

static const char *cl_conf(const char *name, const char *group, int batch_size, int in_flight)
{
    return cl_conf_port(name, group, batch_size, in_flight, 0);
}

/* cl_conf with the HTTP endpoint on a port below the ephemeral range and
 * a fast read side; starts circmond on it, another port when it is taken.
 * *port gets the port. */
static pid_t cl_daemon_http(const char *group, int batch_size, int in_flight, const char **conf,
                            int *port)
{
    unsigned seed = (unsigned)getpid() ^ (unsigned)wall_ms();
    const char *log = path_in("d.log");
    for (int attempt = 0; attempt < 10; attempt++) {
        *port = 20000 + (int)(rand_r(&seed) % 12000u);
        *conf = cl_conf_port("c.conf", group, batch_size, in_flight, *port);
        unlink(log);
        pid_t d = daemon_start(*conf, log, NULL);
        double end = now_s() + 20;
        for (;;) {
            if (file_has(log, "http endpoint at"))
                return d;
            if (file_has(log, "cannot listen")) {
                kill(d, SIGKILL);
                wait_pid(d, 10);
                break;
            }
            ck_assert_msg(alive(d), "circmond exited (see %s)", log);
            ck_assert_msg(now_s() < end, "circmond did not open its endpoint (see %s)", log);
            nap_ms(10);
        }
    }
    ck_abort_msg("no free port for circmond's endpoint in 10 tries");
    return -1;
}

/* Polls GET path on port until its JSON body equals the file want (20 s). */
static void http_equals(int port, const char *path, const char *want)
{
    json_t *w = load_json(want);
    static char buf[1 << 20];
    double end = now_s() + 20;
    for (;;) {
        int n = http_get_raw(port, path, buf, sizeof(buf));
        char *body = n > 0 ? strstr(buf, "\r\n\r\n") : NULL;
        json_t *got = body && strstr(buf, " 200 ") ? json_loads(body + 4, 0, NULL) : NULL;
        int eq = got && json_equal(got, w);
        json_decref(got);
        if (eq)
            break;
        ck_assert_msg(now_s() < end, "GET %s never equalled %s", path, want);
        nap_ms(50);
    }
    json_decref(w);
}

/* The counts of circmond's last "redis cluster: followed ..." log line. */
static void followed(const char *log, long *moved, long *ask, long *tryagain, long *maps)
{
    size_t len;
    char *t = slurp(log, &len), *p, *last = NULL;
    ck_assert_ptr_nonnull(t);
    for (p = t; (p = strstr(p, "redis cluster: followed ")); p++)
        last = p;
    ck_assert_msg(last, "no cluster summary in %s", log);
    ck_assert_int_eq(sscanf(last, "redis cluster: followed %ld MOVED, %ld ASK, %ld "
                                  "TRYAGAIN/CLUSTERDOWN; %ld slot maps read",
                            moved, ask, tryagain, maps), 4);
    free(t);
}

/* ------------------------------------------------------------ end to end */

/* Every partition key's slot as redis-server computes it. */
START_TEST(test_slots_equal_redis)
{
    svc_dir_make("check_cluster");
    cluster_start();
    for (int p = 0; p < 200; p++) {
        char k[64];
        snprintf(k, sizeof(k), "circmon:{%d}:m:mig-%d", p, p * 7);
        redisReply *r = node_cmd(cl_port[0], "CLUSTER", "KEYSLOT", k, NULL, NULL, NULL);
        ck_assert(r && r->type == REDIS_REPLY_INTEGER);
        ck_assert_int_eq(cm_slot_of(k, strlen(k)), r->integer);
        ck_assert_int_eq(part_slot(p), r->integer);
        freeReplyObject(r);
        snprintf(k, sizeof(k), "plain-%d", p * 131);
        r = node_cmd(cl_port[0], "CLUSTER", "KEYSLOT", k, NULL, NULL, NULL);
        ck_assert(r && r->type == REDIS_REPLY_INTEGER);
        ck_assert_int_eq(cm_slot_of(k, strlen(k)), r->integer);
        freeReplyObject(r);
    }
}
END_TEST

/* --- the async store and the routed reads in this process (under ASan too) */

struct st_res {
    int done, err, applied;
    int64_t stored;
    struct event_base *base;
};

static void st_on_apply(int err, int applied, int64_t stored, void *ud)
{
    struct st_res *r = ud;
    r->done = 1;
    r->err = err;
    r->applied = applied;
    r->stored = stored;
}

/* Sends an apply of partition part (exp -> np, one state, the aggregate ag). */
static void st_send(struct cm_store *st, const struct cm_config *cfg, int part, int64_t exp,
                    int64_t np, const struct cm_agg *ag, const struct cm_names *nm,
                    struct st_res *r)
{
    char mid[16], val[32];
    int ml = snprintf(mid, sizeof(mid), "m%d", part);
    int vl = snprintf(val, sizeof(val), "state-%" PRId64, np);
    struct cm_store_apply *ap = cm_store_apply_new(cfg->key_prefix, part, exp, np);
    ck_assert_ptr_nonnull(ap);
    ck_assert_int_eq(cm_store_apply_state(ap, mid, (size_t)ml, (const uint8_t *)val, (size_t)vl),
                     0);
    ck_assert_int_eq(cm_store_apply_agg(ap, ag, nm), 0);
    memset(r, 0, sizeof(*r));
    ck_assert_int_eq(cm_store_apply_send(st, ap, st_on_apply, r), 0);
}

/* Runs the loop until *flag is set (each pass bounded), within timeout_s. */
static void loop_until(struct event_base *base, const int *flag, double timeout_s)
{
    double end = now_s() + timeout_s;
    while (!*flag) {
        ck_assert_msg(now_s() < end, "no reply within %.0f s", timeout_s);
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        nap_ms(1); /* not a synchronisation: the loop is polled with a deadline */
    }
}

static void st_apply(struct event_base *base, struct cm_store *st, const struct cm_config *cfg,
                     int part, int64_t exp, int64_t np, const struct cm_agg *ag,
                     const struct cm_names *nm)
{
    struct st_res r;
    st_send(st, cfg, part, exp, np, ag, nm, &r);
    loop_until(base, &r.done, 20);
    ck_assert_msg(r.err == 0 && r.applied == 1 && r.stored == np,
                  "partition %d %" PRId64 "->%" PRId64 ": err %d applied %d stored %" PRId64,
                  part, exp, np, r.err, r.applied, r.stored);
}

static void st_on_up(struct cm_store *s, int up, void *ud)
{
    (void)s;
    if (up)
        *(int *)ud = 1;
}

/* The store routes every partition to its master, loads its script on each
 * node (NOSCRIPT after SCRIPT FLUSH on one node), follows MOVED after a
 * reshard, ASK and TRYAGAIN while a slot is half moved (and the blocking
 * reads too), and its figures read back by name are what was applied. */
START_TEST(test_store_on_cluster)
{
    svc_dir_make("check_cluster");
    cluster_start();
    strcpy(brokers, "127.0.0.1:9"); /* unused here */
    const char *conf = cl_conf("c.conf", "unused", 10, 1);
    struct cm_config cfg = {0};
    char err[512];
    ck_assert_msg(cm_config_load(&cfg, conf, err, sizeof(err)) == 0, "%s", err);
    struct event_base *base = event_base_new();
    int up = 0;
    struct cm_store *st = cm_store_new(base, &cfg, st_on_up, &up);
    loop_until(base, &up, 20);
    ck_assert(cm_store_ready(st));

    struct cm_names *nm = cm_names_new();
    struct cm_agg *ag = cm_agg_new();
    int32_t sch = cm_names_intern(nm, "SEASONAL-X", 10);
    struct cm_agg_key k1 = {.kind = CM_AK_DQ, .ctr = CM_DQ_INVALID};
    (void)sch;
    ck_assert_int_eq(cm_agg_add(ag, &k1, 1), 0);
    for (int p = 0; p < N_PARTS; p++)
        st_apply(base, st, &cfg, p, 0, 10, ag, nm);

    /* One node forgets its scripts: NOSCRIPT there, EVAL, applied. */
    int m3 = slot_owner(cl_port[0], part_slot(3));
    node_ok(m3, "SCRIPT", "FLUSH", NULL, NULL, NULL, NULL);
    for (int p = 0; p < N_PARTS; p++)
        st_apply(base, st, &cfg, p, 10, 20, ag, nm);

    /* Partition 3's slot moves: MOVED, then straight to the new master. */
    int s3 = part_slot(3), to = -1;
    for (int k = 0; k < CL_N && to < 0; k++)
        if (cl_port[k] != m3 && is_master(cl_port[k]))
            to = cl_port[k];
    migrate_slot(s3, m3, to);
    st_apply(base, st, &cfg, 3, 20, 30, ag, nm);
    struct cm_rcluster_stats cs;
    ck_assert_int_eq(cm_store_cluster_stats(st, &cs), 0);
    ck_assert_uint_eq(cs.moved, 1);
    st_apply(base, st, &cfg, 3, 30, 40, ag, nm);
    ck_assert_int_eq(cm_store_cluster_stats(st, &cs), 0);
    ck_assert_uint_eq(cs.moved, 1); /* the map entry was updated */

    /* Partition 5's slot half moved (keys on the target, slot still open):
     * the apply is sent, told ASK, then TRYAGAIN (some of its keys do not
     * exist yet), and waits; the blocking read follows ASK meanwhile; once
     * the move completes the apply lands. */
    int s5 = part_slot(5), m5 = slot_owner(cl_port[0], s5), to5 = -1;
    for (int k = 0; k < CL_N && to5 < 0; k++)
        if (cl_port[k] != m5 && is_master(cl_port[k]))
            to5 = cl_port[k];
    char ss[16], sid[64], did[64], dp[16];
    snprintf(ss, sizeof(ss), "%d", s5);
    snprintf(dp, sizeof(dp), "%d", to5);
    node_id(m5, sid, sizeof(sid));
    node_id(to5, did, sizeof(did));
    node_ok(to5, "CLUSTER", "SETSLOT", ss, "IMPORTING", sid, NULL);
    node_ok(m5, "CLUSTER", "SETSLOT", ss, "MIGRATING", did, NULL);
    redisReply *keys = node_cmd(m5, "CLUSTER", "GETKEYSINSLOT", ss, "100", NULL, NULL);
    ck_assert(keys && keys->type == REDIS_REPLY_ARRAY && keys->elements >= 3);
    const char *mv[110] = {"MIGRATE", "127.0.0.1", dp, "", "0", "5000", "KEYS"};
    int nmv = 7;
    for (size_t i = 0; i < keys->elements; i++)
        mv[nmv++] = keys->element[i]->str;
    redisReply *m = node_cmdv(m5, nmv, mv);
    ck_assert_msg(m && m->type != REDIS_REPLY_ERROR, "MIGRATE: %s", m ? m->str : "no answer");
    freeReplyObject(m);
    freeReplyObject(keys);
    int32_t p5 = 5;
    int64_t pos5 = -1;
    ck_assert_msg(cm_store_read_positions_of(&cfg, &p5, 1, &pos5, err, sizeof(err)) == 0, "%s",
                  err);
    ck_assert_int_eq(pos5, 20);
    struct st_res r;
    st_send(st, &cfg, 5, 20, 30, ag, nm, &r);
    double end = now_s() + 10;
    for (;;) { /* until the apply was told ASK and then TRYAGAIN */
        ck_assert_int_eq(cm_store_cluster_stats(st, &cs), 0);
        if (cs.ask >= 1 && cs.tryagain >= 1)
            break;
        ck_assert_msg(!r.done, "applied while its slot was open: err %d applied %d", r.err,
                      r.applied);
        ck_assert_msg(now_s() < end, "no ASK and TRYAGAIN within 10 s");
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        nap_ms(1);
    }
    node_ok(to5, "CLUSTER", "SETSLOT", ss, "NODE", did, NULL);
    node_ok(m5, "CLUSTER", "SETSLOT", ss, "NODE", did, NULL);
    for (int i = 0; i < CL_N; i++)
        if (cl_port[i] != m5 && cl_port[i] != to5 && is_master(cl_port[i]))
            node_ok(cl_port[i], "CLUSTER", "SETSLOT", ss, "NODE", did, NULL);
    loop_until(base, &r.done, 10);
    ck_assert_msg(r.err == 0 && r.applied == 1 && r.stored == 30, "err %d applied %d", r.err,
                  r.applied);
    ck_assert_int_eq(slot_keys(to5, s5), 4); /* pos, layout, agg and the bucket of m5 */
    ck_assert_int_eq(slot_keys(m5, s5), 0);

    /* The read-back by name, routed. */
    int32_t parts[N_PARTS];
    int64_t pos[N_PARTS];
    for (int p = 0; p < N_PARTS; p++)
        parts[p] = p;
    ck_assert_msg(cm_store_read_positions_of(&cfg, parts, N_PARTS, pos, err, sizeof(err)) == 0,
                  "%s", err);
    for (int p = 0; p < N_PARTS; p++)
        ck_assert_int_eq(pos[p], p == 3 ? 40 : p == 5 ? 30 : 20);
    struct cm_agg *rag = cm_agg_new();
    struct cm_names *rnm = cm_names_new();
    ck_assert_msg(cm_store_read_agg_of(&cfg, parts, N_PARTS, rag, rnm, err, sizeof(err)) == 0,
                  "%s", err);
    ck_assert_int_eq(cm_agg_get(rag, &k1), 2 * N_PARTS + 3);
    /* the SCAN-based reads refuse a cluster instead of reading one node */
    ck_assert_int_eq(cm_store_read_agg(&cfg, rag, rnm, err, sizeof(err)), -ENOTSUP);
    cm_agg_free(rag);
    cm_names_free(rnm);
    cm_agg_free(ag);
    cm_names_free(nm);
    cm_store_free(st);
    event_base_free(base);
    cm_config_free(&cfg);
    svc_dir_remove();
}
END_TEST

static void st_on_updown(struct cm_store *s, int up, void *ud)
{
    (void)s;
    int *v = ud;
    v[up ? 1 : 0]++;
}

/* A master is SIGKILLed: the store says down, reads the map until its
 * replica took over, says up again; the replica holds what was applied
 * (WAIT-free replication may lose the last writes: none here, each apply
 * was answered and the replica caught up before the kill); a command sent
 * meanwhile is refused (-ENOTCONN) or fails, never hangs. Freeing the
 * store with a command waiting out TRYAGAIN fails that command. */
START_TEST(test_store_failover)
{
    svc_dir_make("check_cluster");
    cluster_start();
    strcpy(brokers, "127.0.0.1:9");
    const char *conf = cl_conf("c.conf", "unused", 10, 1);
    struct cm_config cfg = {0};
    char err[512];
    ck_assert_msg(cm_config_load(&cfg, conf, err, sizeof(err)) == 0, "%s", err);
    struct event_base *base = event_base_new();
    int ud[2] = {0, 0};
    struct cm_store *st = cm_store_new(base, &cfg, st_on_updown, ud);
    loop_until(base, &ud[1], 20);
    struct cm_names *nm = cm_names_new();
    struct cm_agg *ag = cm_agg_new();
    struct cm_agg_key k1 = {.kind = CM_AK_DQ, .ctr = CM_DQ_INVALID};
    ck_assert_int_eq(cm_agg_add(ag, &k1, 1), 0);
    st_apply(base, st, &cfg, 0, 0, 10, ag, nm);
    int victim = slot_owner(cl_port[0], part_slot(0)), vi = -1;
    for (int i = 0; i < CL_N; i++)
        if (cl_port[i] == victim)
            vi = i;
    ck_assert_int_ge(vi, 0);
    /* the replica has the apply before the kill */
    double end = now_s() + 20;
    redisReply *role;
    while (!((role = node_cmd(victim, "ROLE", NULL, NULL, NULL, NULL, NULL)) &&
             role->type == REDIS_REPLY_ARRAY && role->elements == 3 &&
             role->element[2]->type == REDIS_REPLY_ARRAY && role->element[2]->elements == 1)) {
        freeReplyObject(role);
        ck_assert_msg(now_s() < end, "master %d has no replica attached", victim);
        nap_ms(20);
    }
    int rport = atoi(role->element[2]->element[0]->element[1]->str);
    freeReplyObject(role);
    redisContext *rc = node_conn(rport);
    ck_assert_ptr_nonnull(rc);
    freeReplyObject(redisCommand(rc, "READONLY"));
    for (;;) {
        redisReply *g = redisCommand(rc, "GET circmon:{0}:pos");
        int ok = g && g->type == REDIS_REPLY_STRING && !strcmp(g->str, "10");
        freeReplyObject(g);
        if (ok)
            break;
        ck_assert_msg(now_s() < end, "replica %d did not get the apply", rport);
        nap_ms(20);
    }
    redisFree(rc);
    kill(cl_pid[vi], SIGKILL);
    wait_pid(cl_pid[vi], 10);
    loop_until(base, &ud[0], 20); /* down */
    ck_assert(!cm_store_ready(st));
    ck_assert_int_eq(cm_store_apply_send(st, cm_store_apply_new(cfg.key_prefix, 0, 10, 20),
                                         st_on_apply, NULL),
                     -ENOTCONN);
    int ups = ud[1];
    end = now_s() + 30;
    while (ud[1] == ups) {
        ck_assert_msg(now_s() < end, "the store did not come back within 30 s: %s",
                      cm_store_errstr(st));
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        nap_ms(1);
    }
    ck_assert(cm_store_ready(st));
    ck_assert_int_ne(slot_owner(cl_port[(vi + 1) % CL_N], part_slot(0)), victim);
    st_apply(base, st, &cfg, 0, 10, 20, ag, nm);
    struct cm_rcluster_stats cs;
    ck_assert_int_eq(cm_store_cluster_stats(st, &cs), 0);
    ck_assert_uint_ge(cs.map_reads, 2);

    /* a command waiting out TRYAGAIN when the store is freed */
    int s1 = part_slot(1), m1 = slot_owner(cl_port[(vi + 1) % CL_N], s1), to1 = -1;
    st_apply(base, st, &cfg, 1, 0, 10, ag, nm);
    for (int k = 0; k < CL_N && to1 < 0; k++)
        if (k != vi && cl_port[k] != m1 && is_master(cl_port[k]))
            to1 = cl_port[k];
    ck_assert_int_gt(to1, 0);
    char ss[16], sid[64], did[64];
    snprintf(ss, sizeof(ss), "%d", s1);
    node_id(m1, sid, sizeof(sid));
    node_id(to1, did, sizeof(did));
    node_ok(to1, "CLUSTER", "SETSLOT", ss, "IMPORTING", sid, NULL);
    node_ok(m1, "CLUSTER", "SETSLOT", ss, "MIGRATING", did, NULL);
    struct st_res r;
    st_send(st, &cfg, 1, 10, 20, ag, nm, &r); /* its new dlq/epoch keys: TRYAGAIN */
    end = now_s() + 10;
    for (;;) {
        ck_assert_int_eq(cm_store_cluster_stats(st, &cs), 0);
        if (cs.tryagain >= 1)
            break;
        ck_assert_msg(!r.done && now_s() < end, "no TRYAGAIN (done %d err %d)", r.done, r.err);
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        nap_ms(1);
    }
    cm_store_free(st);
    ck_assert(r.done);
    ck_assert_int_eq(r.err, -ECONNRESET);
    cm_agg_free(ag);
    cm_names_free(nm);
    event_base_free(base);
    cm_config_free(&cfg);
    svc_dir_remove();
}
END_TEST

/* The partitions' keys are spread over every master, the figures equal
 * replay, and status reads the positions by name. */
START_TEST(test_cluster_end_to_end)
{
    cl_setup();
    const char *conf;
    int port;
    const char *ev = path_in("ev.bin");
    gen(ev, 1, 2000);
    long n = count_records(ev);
    pid_t d = cl_daemon_http("cl-e2e", 500, 4, &conf, &port);
    publish(conf, ev);
    cl_wait_sum(conf, n, n, 60);
    compare(conf, AS_OF, ev, NULL);
    compare(conf, AS_OF_MID, ev, NULL);
    /* the read side, on its own cluster client: the same figures */
    http_equals(port, "/v1/indicators?as_of=" AS_OF_MID, path_in("rep.json"));
    static char buf[1 << 22];
    ck_assert_int_gt(http_get_raw(port, "/metrics", buf, sizeof(buf)), 0);
    ck_assert_msg(strstr(buf, "circmon_redis_cluster_redirects_total{kind=\"moved\"} 0") &&
                      strstr(buf, "circmon_redis_cluster_map_reads_total "),
                  "no cluster metrics on /metrics");
    /* the alerts' state (keys {alert:<hash>} and {alerts}) through the cluster */
    double end = now_s() + 30;
    while (!(http_get_raw(port, "/v1/alerts", buf, sizeof(buf)) > 0 && strstr(buf, " 200 ") &&
             strstr(buf, "\"firing\""))) {
        ck_assert_msg(now_s() < end, "no alert instance firing after 30 s: %s", buf);
        nap_ms(100);
    }
    int ap = slot_owner(cl_port[0], cm_slot_of("alerts", 6));
    redisReply *mem = node_cmd(ap, "SMEMBERS", "circmon:{alerts}:instances", NULL, NULL, NULL,
                               NULL);
    ck_assert_msg(mem && mem->type == REDIS_REPLY_ARRAY && mem->elements > 0,
                  "no alert instances stored on the master of {alerts}");
    freeReplyObject(mem);
    char *al[] = {"alerts", "--config", (char *)conf, "--format", "json", NULL};
    ck_assert_int_eq(run_bin("circmonctl", al, path_in("alerts.json"), path_in("ctl.log")), 0);
    int firing = count_in_file(path_in("alerts.json"), "\"fire\": true");
    ck_assert_int_gt(firing, 0);
    /* each firing instance's event delivered once (outbox, lease and mark in
     * the cluster) */
    long got = 0;
    end = now_s() + 30;
    for (int round = 0; got < firing; round++) {
        char grp[32];
        snprintf(grp, sizeof(grp), "alert-reader-%d", round);
        rd_kafka_t *rk = topic_reader("circmon.events.alerts", N_PARTS, grp);
        int eof = 0;
        rd_kafka_message_t *m;
        got = 0;
        while ((m = topic_next(rk, "circmon.events.alerts", N_PARTS, &eof, end))) {
            got++;
            rd_kafka_message_destroy(m);
        }
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
        ck_assert_msg(got <= firing, "%ld alert events for %d firing instances", got, firing);
        ck_assert_msg(got == firing || now_s() < end, "%ld alert events of %d after 30 s", got,
                      firing);
    }
    int masters = 0;
    for (int i = 0; i < CL_N; i++) {
        if (!is_master(cl_port[i]))
            continue;
        redisReply *r = node_cmd(cl_port[i], "DBSIZE", NULL, NULL, NULL, NULL, NULL);
        ck_assert(r && r->type == REDIS_REPLY_INTEGER);
        masters += r->integer > 0;
        freeReplyObject(r);
    }
    ck_assert_int_eq(masters, 3);
    char *a[] = {"status", "--config", (char *)conf, "--format", "json", NULL};
    ck_assert_int_eq(run_bin("circmonctl", a, path_in("st.json"), path_in("ctl.log")), 0);
    json_t *st = load_json(path_in("st.json"));
    json_t *tot = json_object_get(st, "total");
    ck_assert_int_eq(json_integer_value(json_object_get(tot, "position")), n);
    ck_assert_int_eq(json_integer_value(json_object_get(tot, "lag")), 0);
    json_decref(st);
    ck_assert(alive(d));
    stop_daemon(d);
    long mv, ask, ta, maps;
    followed(path_in("d.log"), &mv, &ask, &ta, &maps);
    ck_assert_int_eq(mv + ask + ta, 0); /* a stable cluster: every command went straight */
    ck_assert_msg(!file_has(path_in("d.log"), "resynchronising"),
                  "a resync on a healthy cluster (see %s)", path_in("d.log"));
}
END_TEST

/* Slots of three partitions move to another master while two circmond of
 * one group fold: MOVED, ASK and TRYAGAIN are followed and the figures stay
 * equal. */
START_TEST(test_cluster_reshard_during_ingestion)
{
    cl_setup();
    const char *ev = path_in("ev.bin"), *a = path_in("a.bin"), *b = path_in("b.bin");
    gen(ev, 5, 3000);
    long n = count_records(ev);
    split(ev, n / 2, a, b);
    const char *conf = cl_conf("c.conf", "cl-reshard", 100, 2);
    publish(conf, a);
    /* two daemons of one group: scale-out on both sides at once */
    pid_t d = daemon_start(conf, path_in("d.log"), NULL);
    pid_t d2 = daemon_start(conf, path_in("d2.log"), NULL);
    cl_wait_sum(conf, n / 8, n / 2, 60);
    int moved[3] = {1, 4, 6}, to[3];
    for (int i = 0; i < 3; i++) {
        int s = part_slot(moved[i]), src = slot_owner(cl_port[0], s);
        ck_assert_int_gt(src, 0);
        to[i] = -1;
        for (int k = 0; k < CL_N && to[i] < 0; k++)
            if (cl_port[k] != src && is_master(cl_port[k]))
                to[i] = cl_port[k];
        migrate_slot(s, src, to[i]);
        if (i == 0)
            publish(conf, b); /* the rest moves while the second half is folded */
    }
    cl_wait_sum(conf, n, n, 90);
    for (int i = 0; i < 3; i++) {
        int s = part_slot(moved[i]);
        ck_assert_int_eq(slot_owner(cl_port[0], s), to[i]);
        ck_assert_int_gt(slot_keys(to[i], s), 0);
    }
    compare(conf, AS_OF, a, b);
    compare(conf, AS_OF_MID, a, b);
    ck_assert(alive(d) && alive(d2));
    stop_daemon(d);
    stop_daemon(d2);
    long mv, ask, ta, maps, mv2, ask2, ta2, maps2;
    followed(path_in("d.log"), &mv, &ask, &ta, &maps);
    followed(path_in("d2.log"), &mv2, &ask2, &ta2, &maps2);
    ck_assert_msg(mv + mv2 > 0, "no MOVED followed: the moves did not meet the stream");
}
END_TEST

/* The master holding partition 0 is SIGKILLed mid-stream; its replica takes
 * over; circmond pauses, reads the new map, resumes from the positions the
 * replica holds: nothing lost, nothing counted twice. */
START_TEST(test_cluster_master_killed_during_ingestion)
{
    cl_setup();
    const char *ev = path_in("ev.bin"), *a = path_in("a.bin"), *b = path_in("b.bin");
    gen(ev, 6, 3000);
    long n = count_records(ev);
    split(ev, n / 2, a, b);
    const char *conf = cl_conf("c.conf", "cl-kill", 100, 2);
    publish(conf, a);
    const char *log = path_in("d.log");
    pid_t d = daemon_start(conf, log, NULL);
    cl_wait_sum(conf, n / 8, n / 2, 60);
    int victim = slot_owner(cl_port[2], part_slot(0)), vi = -1;
    for (int i = 0; i < CL_N; i++)
        if (cl_port[i] == victim)
            vi = i;
    ck_assert_int_ge(vi, 0);
    kill(cl_pid[vi], SIGKILL);
    wait_pid(cl_pid[vi], 10);
    publish(conf, b);
    /* a replica takes the slot over */
    int other = cl_port[(vi + 1) % CL_N];
    double end = now_s() + 30;
    int owner;
    while ((owner = slot_owner(other, part_slot(0))) == victim || owner < 0 ||
           !node_state_ok(other)) {
        ck_assert_msg(now_s() < end, "no replica took over from %d within 30 s", victim);
        nap_ms(50);
    }
    cl_wait_sum(conf, n, n, 90);
    compare(conf, AS_OF, a, b);
    compare(conf, AS_OF_MID, a, b);
    ck_assert_msg(file_has(log, "partitions paused until Redis is back"),
                  "circmond did not pause during the failover (see %s)", log);
    ck_assert(alive(d));
    stop_daemon(d);
    long mv, ask, ta, maps;
    followed(log, &mv, &ask, &ta, &maps);
    ck_assert_msg(maps >= 2, "the map was not read again after the failover");
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("cluster");
    TCase *tc = new_case(s, "slots", 30);
    tcase_add_test(tc, test_crc16_and_slots_from_the_spec);
    tcase_add_test(tc, test_cmd_key);
    tcase_add_test(tc, test_nodes_parse);
    tcase_add_test(tc, test_config);
    tcase_add_test(tc, test_slots_equal_redis);

    tc = new_case(s, "store", 60);
    tcase_add_test(tc, test_store_on_cluster);
    tcase_add_test(tc, test_store_failover);

    tc = new_case(s, "cluster", 180);
    tcase_add_test(tc, test_cluster_end_to_end);
    tcase_add_test(tc, test_cluster_reshard_during_ingestion);
    tcase_add_test(tc, test_cluster_master_killed_during_ingestion);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
