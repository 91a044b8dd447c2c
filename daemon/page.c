/* page.c - serves the embedded status page files: lookup by path, headers, the answer. */
#include <errno.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "page.h"

static const char *type_of(const char *path)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
    };
    const char *dot = strrchr(path, '.');
    for (size_t i = 0; dot && i < sizeof(types) / sizeof(types[0]); i++)
        if (!strcmp(dot, types[i].ext))
            return types[i].type;
    return "application/octet-stream";
}

const unsigned char *cmd_page_asset(const char *path, size_t *len, const char **content_type)
{
    if (!path)
        return NULL;
    if (!strcmp(path, "/"))
        path = "/index.html";
    for (size_t i = 0; i < cmd_page_nfiles; i++) {
        if (!strcmp(cmd_page_files[i].path, path)) {
            *len = cmd_page_files[i].len;
            *content_type = type_of(path);
            return cmd_page_files[i].data;
        }
    }
    return NULL;
}

static int send_error(struct evhttp_request *req, int code, const char *reason, const char *msg)
{
    struct evbuffer *b = evbuffer_new();
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    if (!b || evbuffer_add_printf(b, "{\"error\": \"%s\", \"status\": %d}\n", msg, code) < 0 ||
        evhttp_add_header(h, "Content-Type", "application/json") < 0 ||
        evhttp_add_header(h, "Cache-Control", "no-store") < 0) {
        if (b)
            evbuffer_free(b);
        evhttp_send_error(req, HTTP_INTERNAL, NULL);
        return -ENOMEM;
    }
    evhttp_send_reply(req, code, reason, b);
    evbuffer_free(b);
    return code;
}

int cmd_page_serve(struct evhttp_request *req)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    const char *type = NULL;
    size_t len = 0;
    const unsigned char *data = cmd_page_asset(path && *path ? path : "/", &len, &type);

    if (!data)
        return send_error(req, HTTP_NOTFOUND, "Not Found", "no such page file");
    if (m != EVHTTP_REQ_GET && m != EVHTTP_REQ_HEAD) {
        if (evhttp_add_header(h, "Allow", "GET, HEAD") < 0)
            return send_error(req, HTTP_INTERNAL, "Internal Server Error", "cannot build headers");
        return send_error(req, HTTP_BADMETHOD, "Method Not Allowed",
                          "the status page is read-only: GET or HEAD");
    }
    struct evbuffer *b = evbuffer_new();
    if (!b || evhttp_add_header(h, "Content-Type", type) < 0 ||
        evhttp_add_header(h, "Cache-Control", "no-cache") < 0 ||
        evhttp_add_header(h, "Content-Security-Policy", CMD_PAGE_CSP) < 0 ||
        evhttp_add_header(h, "X-Content-Type-Options", "nosniff") < 0 ||
        evhttp_add_header(h, "Referrer-Policy", "no-referrer") < 0 ||
        (m == EVHTTP_REQ_GET && evbuffer_add_reference(b, data, len, NULL, NULL) < 0)) {
        if (b)
            evbuffer_free(b);
        evhttp_send_error(req, HTTP_INTERNAL, NULL);
        return -ENOMEM;
    }
    evhttp_send_reply(req, HTTP_OK, "OK", b);
    evbuffer_free(b);
    return HTTP_OK;
}
