/* cmicro: TLS for the HTTP transport, with OpenSSL over a memory BIO of our own. The connection
 * code keeps its libuv stream, parser, timers and pool: received bytes go through
 * cm__tls_input(), which drives the handshake and leaves the plaintext in the connection's read
 * buffer, and what OpenSSL has to send (handshake records, alerts, encrypted messages) goes out
 * on the same stream, in the order it was made.
 *
 * The BIO reads from the bytes just received (borrowed for the call) and writes into the
 * session's output buffer, which the sender takes without a copy: unlike OpenSSL's memory BIO,
 * it keeps no buffer the size of the largest message per connection. OpenSSL's own record
 * buffers are released while a connection is idle (SSL_MODE_RELEASE_BUFFERS). */
#include "http_int.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

/* Received ciphertext is read into one buffer per transport: libuv calls the allocation and
 * the read callbacks back to back, and the read callback hands everything to OpenSSL. */
#define CIPHER_BUF (64 * 1024)
/* The output buffer left behind by a big message is freed above this. */
#define KEEP_OUT_MAX (1024 * 1024)

struct cm__tls_ctx {
    SSL_CTX *client;
    SSL_CTX *server; /* NULL without a certificate */
    char rbuf[CIPHER_BUF];
};

struct cm__tls {
    SSL *ssl;
    const char *in; /* received bytes OpenSSL has not read yet (borrowed during input) */
    size_t in_len;
    cm__http_buf out; /* what OpenSSL wrote, for the peer */
    int server;
    int done;      /* the handshake is complete */
    int eof;       /* the peer sent close_notify */
    int nfirst;    /* bytes kept in first */
    char first[8]; /* the first bytes received, to name a plain-HTTP peer */
    char peer[96]; /* for log lines */
    char why[128]; /* why the handshake failed */
};

/* One queued write of ciphertext; freed when written. */
typedef struct wblock {
    uv_write_t req;
    char data[];
} wblock;

/* The reasons of the queued OpenSSL errors, first to last ("No such file or directory: system
 * lib"), or dflt when none is queued. Clears the queue. */
static const char *
ssl_reason(char *buf, size_t len, const char *dflt)
{
    size_t n = 0;
    unsigned long e;
    buf[0] = '\0';
    while ((e = ERR_get_error()) != 0) {
        const char *r = ERR_reason_error_string(e);
        char code[64];
        if (ERR_SYSTEM_ERROR(e)) {
            r = strerror_r(ERR_GET_REASON(e), code, sizeof(code)); /* "No such file ..." */
        } else if (r != NULL && strcmp(r, "system lib") == 0) {
            continue; /* said by the system error before it */
        } else if (r == NULL) {
            snprintf(code, sizeof(code), "error %lx", e);
            r = code;
        }
        int w = snprintf(buf + n, len - n, "%s%s", n ? ": " : "", r);
        if (w < 0 || (size_t)w >= len - n) {
            break;
        }
        n += (size_t)w;
    }
    ERR_clear_error();
    return n ? buf : dflt;
}

/* ---- the BIO ---- */

static int
bio_write_ex(BIO *b, const char *data, size_t n, size_t *written)
{
    cm__tls *s = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (cm__http_buf_append(&s->out, data, n) < 0) {
        return 0;
    }
    *written = n;
    return 1;
}

static int
bio_read_ex(BIO *b, char *data, size_t n, size_t *got)
{
    cm__tls *s = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (s->in_len == 0) {
        BIO_set_retry_read(b); /* "want more", not end of file */
        *got = 0;
        return 0;
    }
    size_t k = n < s->in_len ? n : s->in_len;
    memcpy(data, s->in, k);
    s->in += k;
    s->in_len -= k;
    *got = k;
    return 1;
}

static long
bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)num;
    (void)ptr;
    cm__tls *s = BIO_get_data(b);
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1; /* the caller sends s->out */
    case BIO_CTRL_PENDING:
        return s != NULL ? (long)s->in_len : 0;
    default:
        return 0;
    }
}

static int
bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static BIO_METHOD *bio_method;
static uv_once_t bio_once = UV_ONCE_INIT;

static void
bio_method_init(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "cmicro stream");
    if (m != NULL &&
        (BIO_meth_set_write_ex(m, bio_write_ex) != 1 || BIO_meth_set_read_ex(m, bio_read_ex) != 1 ||
         BIO_meth_set_ctrl(m, bio_ctrl) != 1 || BIO_meth_set_create(m, bio_create) != 1)) {
        BIO_meth_free(m);
        m = NULL;
    }
    bio_method = m;
}

/* ---- contexts ---- */

static int
alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
            unsigned inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    static const unsigned char http11[] = "\x08http/1.1";
    unsigned char *sel;
    if (SSL_select_next_proto(&sel, outlen, http11, sizeof(http11) - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED) {
        return SSL_TLSEXT_ERR_NOACK; /* no ALPN: HTTP/1.1 anyway */
    }
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

static SSL_CTX *
new_ctx(int server)
{
    SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (ctx == NULL) {
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (server) {
        SSL_CTX_set_num_tickets(ctx, 0);
        SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    } else if (SSL_CTX_set_alpn_protos(ctx, (const unsigned char *)"\x08http/1.1", 9) != 0) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/* Loads the certificate chain and key into ctx. 0 or CM_EINVAL (logged). */
static int
load_cert(SSL_CTX *ctx, const cm_transport_opts *o)
{
    char why[256];
    const char *key = o->tls_key_file ? o->tls_key_file : o->tls_cert_file;
    if (SSL_CTX_use_certificate_chain_file(ctx, o->tls_cert_file) != 1) {
        cm_log(CM_LOG_ERROR, "transport.http", "TLS: cannot use certificate %s: %s",
               o->tls_cert_file, ssl_reason(why, sizeof(why), "unreadable"));
        return CM_EINVAL;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        cm_log(CM_LOG_ERROR, "transport.http", "TLS: cannot use private key %s: %s", key,
               ssl_reason(why, sizeof(why), "it does not match the certificate"));
        return CM_EINVAL;
    }
    return 0;
}

/* The client's context: verification on unless tls_insecure. 0 or CM_EINVAL (logged). */
static int
client_ctx(SSL_CTX *ctx, const cm_transport_opts *o)
{
    char why[256];
    if (o->tls_insecure) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        cm_log(CM_LOG_WARN, "transport.http",
               "TLS verification is off (tls_insecure, MICRO_TRANSPORT_TLS_INSECURE): this "
               "client accepts any server certificate");
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    }
    int ok = o->tls_ca_file ? SSL_CTX_load_verify_locations(ctx, o->tls_ca_file, NULL)
                            : SSL_CTX_set_default_verify_paths(ctx);
    if (ok != 1) {
        cm_log(CM_LOG_ERROR, "transport.http", "TLS: cannot load the CA certificates %s: %s",
               o->tls_ca_file ? o->tls_ca_file : "of the system store",
               ssl_reason(why, sizeof(why), "unreadable"));
        return CM_EINVAL;
    }
    return o->tls_cert_file ? load_cert(ctx, o) : 0;
}

int
cm__tls_ctx_new(const cm_transport_opts *o, cm__tls_ctx **out)
{
    *out = NULL;
    if (!o->tls && !o->tls_cert_file && !o->tls_ca_file) {
        return 0;
    }
    uv_once(&bio_once, bio_method_init);
    if (bio_method == NULL) {
        return CM_ENOMEM;
    }
    cm__tls_ctx *x = calloc(1, sizeof(*x));
    if (x == NULL) {
        return CM_ENOMEM;
    }
    x->client = new_ctx(0);
    int rc = x->client ? client_ctx(x->client, o) : CM_ENOMEM;
    if (rc == 0 && o->tls_cert_file) {
        x->server = new_ctx(1);
        rc = x->server ? load_cert(x->server, o) : CM_ENOMEM;
    }
    if (rc < 0) {
        cm__tls_ctx_free(x);
        return rc;
    }
    *out = x;
    return 0;
}

void
cm__tls_ctx_free(cm__tls_ctx *x)
{
    if (x != NULL) {
        SSL_CTX_free(x->client);
        SSL_CTX_free(x->server);
        free(x);
    }
}

int
cm__tls_ctx_can_serve(const cm__tls_ctx *x)
{
    return x->server != NULL;
}

void
cm__tls_rbuf(cm__tls_ctx *x, uv_buf_t *buf)
{
    *buf = uv_buf_init(x->rbuf, sizeof(x->rbuf));
}

/* ---- connections ---- */

/* The client's checks of the name or address dialled (or the configured server name). */
static int
set_peer_name(SSL *ssl, const char *host, const char *server_name)
{
    struct sockaddr_storage ss;
    if (server_name != NULL) {
        host = server_name;
    }
    if (cm__http_ip_addr(host, 0, &ss) == 0) {
        /* An IP literal: checked against the IP addresses; no SNI (RFC 6066 §3). */
        return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) == 1 ? 0 : CM_EINVAL;
    }
    if (SSL_set_tlsext_host_name(ssl, host) != 1 || SSL_set1_host(ssl, host) != 1) {
        return CM_EINVAL;
    }
    return 0;
}

int
cm__tls_new(cm__tls_ctx *x, int server, const char *host, const char *server_name, const char *peer,
            cm__tls **out)
{
    cm__tls *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return CM_ENOMEM;
    }
    s->server = server;
    snprintf(s->peer, sizeof(s->peer), "%s", peer);
    s->ssl = SSL_new(server ? x->server : x->client);
    BIO *bio = BIO_new(bio_method);
    if (s->ssl == NULL || bio == NULL) {
        BIO_free(bio);
        SSL_free(s->ssl);
        free(s);
        return CM_ENOMEM;
    }
    BIO_set_data(bio, s);
    SSL_set_bio(s->ssl, bio, bio); /* the SSL owns it from here */
    if (server) {
        SSL_set_accept_state(s->ssl);
    } else {
        SSL_set_connect_state(s->ssl);
        if (set_peer_name(s->ssl, host, server_name) < 0) {
            cm__tls_free(s);
            return CM_EINVAL;
        }
    }
    *out = s;
    return 0;
}

void
cm__tls_free(cm__tls *s)
{
    if (s != NULL) {
        SSL_free(s->ssl);
        cm__http_buf_free(&s->out);
        free(s);
    }
}

int
cm__tls_done(const cm__tls *s)
{
    return s->done;
}

int
cm__tls_eof(const cm__tls *s)
{
    return s->eof;
}

static void
on_block_written(uv_write_t *req, int status)
{
    (void)status; /* a failed write shows on the read side too */
    free(CM__HTTP_CONTAINER(req, wblock, req));
}

int
cm__tls_flush(cm__tls *s, uv_stream_t *st)
{
    size_t n = s->out.len;
    if (n == 0) {
        return 0;
    }
    uv_buf_t buf = uv_buf_init(s->out.p, (unsigned)n);
    int w = uv_try_write(st, &buf, 1);
    if (w == (int)n || (w < 0 && w != UV_EAGAIN)) {
        s->out.len = 0;
        return w < 0 ? w : 0;
    }
    size_t done = w > 0 ? (size_t)w : 0;
    wblock *b = malloc(sizeof(*b) + n - done);
    if (b == NULL) {
        s->out.len = 0;
        return CM_ENOMEM;
    }
    memcpy(b->data, s->out.p + done, n - done);
    s->out.len = 0;
    buf = uv_buf_init(b->data, (unsigned)(n - done));
    int r = uv_write(&b->req, st, &buf, 1, on_block_written);
    if (r < 0) {
        free(b);
    }
    return r;
}

/* The first bytes a client sent to a TLS listener read as an HTTP request line. */
static int
looks_like_http(const cm__tls *s)
{
    return s->nfirst > 0 && s->first[0] >= 'A' && s->first[0] <= 'Z';
}

/* Why the handshake failed, logged; CM_ECERT, CM_ETLS, or CM_EPROTO (a plain HTTP request on a
 * TLS listener, which the server answers in plain HTTP). */
static int
handshake_error(cm__tls *s, int err)
{
    char why[256];
    if (s->server) {
        if (looks_like_http(s)) {
            ERR_clear_error();
            return CM_EPROTO;
        }
        const char *r = ssl_reason(why, sizeof(why), "closed");
        size_t n = strlen(r) < sizeof(s->why) - 1 ? strlen(r) : sizeof(s->why) - 1;
        memcpy(s->why, r, n);
        s->why[n] = '\0';
        cm_log(CM_LOG_DEBUG, "transport.http", "%s: TLS handshake failed: %s", s->peer, s->why);
        return CM_ETLS;
    }
    long v = SSL_get_verify_result(s->ssl);
    if (v != X509_V_OK) {
        ERR_clear_error();
        cm_log(CM_LOG_WARN, "transport.http",
               "%s: TLS: the server's certificate is not trusted: %s (tls_ca_file, "
               "tls_server_name)",
               s->peer, X509_verify_cert_error_string(v));
        return CM_ECERT;
    }
    if (s->nfirst >= 5 && memcmp(s->first, "HTTP/", 5) == 0) {
        ERR_clear_error();
        cm_log(CM_LOG_WARN, "transport.http",
               "%s: TLS handshake failed: the server answered in plain HTTP (TLS is off there)",
               s->peer);
        return CM_ETLS;
    }
    cm_log(CM_LOG_WARN, "transport.http", "%s: TLS handshake failed: %s", s->peer,
           ssl_reason(why, sizeof(why), err == SSL_ERROR_SYSCALL ? "closed" : "unknown"));
    return CM_ETLS;
}

const char *
cm__tls_why(const cm__tls *s)
{
    return s->why[0] ? s->why : "error";
}

int
cm__tls_closed_in_handshake(cm__tls *s)
{
    if (s->server) {
        cm_log(CM_LOG_DEBUG, "transport.http", "%s: closed during the TLS handshake", s->peer);
        return CM_ETLS;
    }
    if (s->nfirst > 0) {
        return handshake_error(s, SSL_ERROR_SYSCALL);
    }
    cm_log(CM_LOG_WARN, "transport.http",
           "%s: TLS handshake failed: the server closed the connection (TLS off there, or it "
           "refused this client)",
           s->peer);
    return CM_ETLS;
}

/* Runs the handshake on what was received. 1 done, 0 more to receive, < 0 failed. */
static int
handshake(cm__tls *s)
{
    ERR_clear_error();
    int r = SSL_do_handshake(s->ssl);
    if (r == 1) {
        s->done = 1;
        return 1;
    }
    int e = SSL_get_error(s->ssl, r);
    if (e == SSL_ERROR_WANT_READ) {
        return 0;
    }
    return handshake_error(s, e);
}

int
cm__tls_start(cm__tls *s, uv_stream_t *st)
{
    int r = handshake(s);
    int f = cm__tls_flush(s, st);
    return r < 0 ? r : f;
}

/* Moves every decrypted byte into rb. 0 or < 0. */
static int
read_plain(cm__tls *s, cm__http_rbuf *rb, size_t *plain)
{
    for (;;) {
        uv_buf_t b;
        cm__http_rbuf_alloc(rb, &b);
        if (b.base == NULL) {
            return CM_ENOMEM;
        }
        size_t got = 0;
        ERR_clear_error();
        int r = SSL_read_ex(s->ssl, b.base, b.len, &got);
        if (r == 1) {
            cm__http_rbuf_filled(rb, got, b.len);
            *plain += got;
            continue;
        }
        int e = SSL_get_error(s->ssl, r);
        if (e == SSL_ERROR_WANT_READ) {
            return 0;
        }
        if (e == SSL_ERROR_ZERO_RETURN) {
            s->eof = 1;
            return 0;
        }
        char why[256];
        cm_log(CM_LOG_DEBUG, "transport.http", "%s: TLS record error: %s", s->peer,
               ssl_reason(why, sizeof(why), "unknown"));
        return CM_EPROTO;
    }
}

int
cm__tls_input(cm__tls *s, uv_stream_t *st, const char *data, size_t n, cm__http_rbuf *rb,
              size_t *plain)
{
    *plain = 0;
    if (s->nfirst < (int)sizeof(s->first)) {
        size_t k = sizeof(s->first) - (size_t)s->nfirst;
        k = k < n ? k : n;
        memcpy(s->first + s->nfirst, data, k);
        s->nfirst += (int)k;
    }
    if (s->server && !s->done && looks_like_http(s)) {
        return CM_EPROTO; /* not a TLS record: no need to ask OpenSSL */
    }
    s->in = data;
    s->in_len = n;
    int r = 0;
    if (!s->done) {
        r = handshake(s);
    }
    if (r >= 0 && s->done && !s->eof) {
        r = read_plain(s, rb, plain);
    }
    s->in = NULL; /* what is left (after close_notify or an error) is dropped */
    s->in_len = 0;
    /* Handshake records, and alerts that tell the peer why. */
    int f = cm__tls_flush(s, st);
    return r < 0 ? r : f;
}

int
cm__tls_write(cm__tls *s, const void *p, size_t n)
{
    if (n == 0) {
        return 0;
    }
    size_t w = 0;
    ERR_clear_error();
    if (SSL_write_ex(s->ssl, p, n, &w) != 1 || w != n) {
        ERR_clear_error();
        return CM_ECLOSED;
    }
    return 0;
}

void
cm__tls_take_output(cm__tls *s, cm__http_buf *b)
{
    /* Swapped, not copied: the session keeps b's old buffer for its next output. */
    cm__http_buf old = *b;
    *b = s->out;
    s->out = old;
    s->out.len = 0;
    cm__http_buf_trim(&s->out, KEEP_OUT_MAX);
}

void
cm__tls_close_notify(cm__tls *s, uv_stream_t *st)
{
    if (s->done) {
        ERR_clear_error();
        (void)SSL_shutdown(s->ssl);
        ERR_clear_error();
        (void)cm__tls_flush(s, st);
    }
}
