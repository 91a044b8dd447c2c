/* fuzz_config.c - libFuzzer target: the configuration parser (lib/config.c)
 * on arbitrary file contents. A load either succeeds with settings in their
 * documented ranges, or fails with a negative code and a message. */
#define _DEFAULT_SOURCE /* mkdtemp */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "circmon/config.h"
#include "fuzz_common.h"

static char dir[256], path[300];

static void cleanup(void)
{
    unlink(path);
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *t = getenv("TMPDIR");
    snprintf(dir, sizeof(dir), "%s/cm-fuzz-config.XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(dir)) {
        perror("circmon fuzz: mkdtemp");
        exit(1);
    }
    /* a private directory: relative password_file paths resolve in it */
    snprintf(path, sizeof(path), "%s/circmond.conf", dir);
    atexit(cleanup);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        cmf_fail("cannot write the configuration file");
    for (size_t done = 0; done < size;) {
        ssize_t w = write(fd, data + done, size - done);
        if (w <= 0)
            cmf_fail("cannot write the configuration file");
        done += (size_t)w;
    }
    close(fd);

    struct cm_config cfg;
    char err[512];
    memset(err, 'x', sizeof(err));
    int rc = cm_config_load(&cfg, path, err, sizeof(err));
    if (memchr(err, '\0', sizeof(err)) == NULL)
        cmf_fail("the error buffer is not NUL-terminated");
    if (rc > 0)
        cmf_fail("cm_config_load returned a positive value");
    if (rc < 0) {
        if (err[0] == '\0')
            cmf_fail("a failed load without a message");
        cm_config_free(&cfg); /* harmless on a failed load */
        return 0;
    }
    if (cfg.reorder_window_days < 0 || cfg.batch_size <= 0 || cfg.max_in_flight <= 0 ||
        cfg.redis_port < 0 || cfg.redis_port > 65535 || cfg.http_port < 0 ||
        cfg.http_port > 65535)
        cmf_fail("a setting outside its range");
    if (!cfg.brokers || !cfg.topic || !cfg.group_id || !cfg.dlq_topic || !cfg.alert_topic ||
        !cfg.redis_host || !cfg.key_prefix || !cfg.log_level)
        cmf_fail("a string setting without a value");
    for (size_t i = 0; i < cfg.n_schemes; i++) {
        const struct cm_scheme_conf *sc = &cfg.schemes[i];
        if (memchr(sc->id, '\0', sizeof(sc->id)) == NULL)
            cmf_fail("a scheme id without its NUL");
        if (cm_config_scheme(&cfg, sc->id) != sc) /* ids are unique */
            cmf_fail("cm_config_scheme does not find a scheme of the file");
        if (sc->grace_days < 0 || sc->stay_n < 0 || sc->stay_w < 0 || !sc->stay_n != !sc->stay_w)
            cmf_fail("scheme settings outside their ranges");
    }
    if (!cm_config_scheme(&cfg, "no such scheme"))
        cmf_fail("cm_config_scheme returned NULL");
    cm_config_free(&cfg);
    return 0;
}
