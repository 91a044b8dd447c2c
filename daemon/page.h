/* page.h - the status page files of daemon/page/, embedded in circmond at build time. */
#ifndef CMD_PAGE_H
#define CMD_PAGE_H

#include <stddef.h>

struct evhttp_request;

/* One embedded file: its URL path ("/index.html"), bytes and length (the
 * bytes are followed by a NUL that len does not count). */
struct cmd_page_file {
    const char *path;
    const unsigned char *data;
    size_t len;
};

/* Made by the Makefile from daemon/page/ into build/gen/page_assets.c. */
extern const struct cmd_page_file cmd_page_files[];
extern const size_t cmd_page_nfiles;

/* The embedded file served at path ("/" is "/index.html"; a query string is
 * not part of path): its bytes, with *len and *content_type set. NULL when
 * no such file is embedded (then *len and *content_type are untouched).
 * Static data: never freed. This function can't fail otherwise. */
const unsigned char *cmd_page_asset(const char *path, size_t *len, const char **content_type);

/* The Content-Security-Policy sent with every page file: nothing is loaded
 * from anywhere but circmond itself, nothing is framed, no form posts. */
#define CMD_PAGE_CSP                                                                           \
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "        \
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "           \
    "frame-ancestors 'none'"

/* Answers req with the page file of its path: GET or HEAD -> 200 with
 * Content-Type, Cache-Control (no-cache: the files change with the binary),
 * the CSP above, X-Content-Type-Options nosniff and Referrer-Policy
 * no-referrer; another method -> 405 with Allow; no such file -> 404; both
 * with a JSON error body. Returns the status sent, or a negative errno when
 * the answer could not be built (then a 500 was attempted). */
int cmd_page_serve(struct evhttp_request *req);

#endif
