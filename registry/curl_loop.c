/* libcurl's multi interface on a registry's libuv loop; see curl_loop.h. */
#include "curl_loop.h"

#include "registry_int.h"

#include <pthread.h>
#include <stdlib.h>

/* A socket libcurl asked us to watch. */
typedef struct sock_ctx {
    uv_poll_t poll;
    curl_socket_t fd;
    cm__curl *k;
} sock_ctx;

/* ---- libcurl's global state: initialised by the first user, cleaned by the last ---- */

static pthread_mutex_t global_mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned global_refs;

static int
global_acquire(void)
{
    int rc = 0;
    pthread_mutex_lock(&global_mu);
    if (global_refs == 0 && curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        rc = CM_ENOMEM;
    } else {
        global_refs++;
    }
    pthread_mutex_unlock(&global_mu);
    return rc;
}

static void
global_release(void)
{
    pthread_mutex_lock(&global_mu);
    if (global_refs > 0 && --global_refs == 0) {
        curl_global_cleanup();
    }
    pthread_mutex_unlock(&global_mu);
}

/* ---- the loop ---- */

void
cm__curl_handle_opened(cm__curl *k)
{
    k->open_handles++;
}

void
cm__curl_handle_gone(cm__curl *k)
{
    k->open_handles--;
    if (k->closing && k->open_handles == 0 && k->multi == NULL) {
        global_release();
        k->gone(k->owner);
    }
}

static void
handle_closed(uv_handle_t *h)
{
    cm__curl *k = h->data;
    if (h->type == UV_POLL) {
        free(h);
    }
    cm__curl_handle_gone(k);
}

/* Runs libcurl on fd (or its timeout), then hands over what finished. */
static void
run(cm__curl *k, curl_socket_t fd, int flags)
{
    int running = 0;
    k->dispatching++;
    curl_multi_socket_action(k->multi, fd, flags, &running);
    if (k->after != NULL) {
        k->after(k->owner);
    }
    CURLMsg *m;
    int left = 0;
    while (!k->closing && (m = curl_multi_info_read(k->multi, &left)) != NULL) {
        if (m->msg == CURLMSG_DONE) {
            k->done(k->owner, m->easy_handle, m->data.result);
        }
    }
    k->dispatching--;
}

static void
on_poll(uv_poll_t *h, int status, int events)
{
    sock_ctx *s = (sock_ctx *)(void *)h;
    int flags = 0;
    if (status < 0) {
        flags = CURL_CSELECT_ERR;
    } else {
        flags |= (events & UV_READABLE) ? CURL_CSELECT_IN : 0;
        flags |= (events & UV_WRITABLE) ? CURL_CSELECT_OUT : 0;
    }
    run(s->k, s->fd, flags);
}

static int
on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)easy;
    cm__curl *k = userp;
    sock_ctx *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s != NULL) {
            uv_poll_stop(&s->poll);
            uv_close((uv_handle_t *)&s->poll, handle_closed);
            curl_multi_assign(k->multi, fd, NULL);
        }
        return 0;
    }
    if (s == NULL) {
        s = calloc(1, sizeof(*s));
        if (s == NULL) {
            return -1;
        }
        if (uv_poll_init_socket(k->uv, &s->poll, fd) < 0) {
            free(s);
            return -1;
        }
        s->fd = fd;
        s->k = k;
        s->poll.data = k;
        k->open_handles++;
        curl_multi_assign(k->multi, fd, s);
    }
    int events = 0;
    events |= (what & CURL_POLL_IN) ? UV_READABLE : 0;
    events |= (what & CURL_POLL_OUT) ? UV_WRITABLE : 0;
    return uv_poll_start(&s->poll, events, on_poll) < 0 ? -1 : 0;
}

static void
on_timeout(uv_timer_t *t)
{
    run(t->data, CURL_SOCKET_TIMEOUT, 0);
}

static int
on_timer(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    cm__curl *k = userp;
    if (k->closing) {
        return 0;
    }
    if (timeout_ms < 0) {
        uv_timer_stop(&k->timer);
    } else {
        /* Even 0 goes through the loop: never call back into libcurl from its callback. */
        uv_timer_start(&k->timer, on_timeout, (uint64_t)timeout_ms, 0);
    }
    return 0;
}

int
cm__curl_init(cm__curl *k, uv_loop_t *uv, void *owner)
{
    k->uv = uv;
    k->owner = owner;
    if (global_acquire() < 0) {
        return CM_ENOMEM;
    }
    k->multi = curl_multi_init();
    if (k->multi == NULL) {
        global_release();
        return CM_ENOMEM;
    }
    curl_multi_setopt(k->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(k->multi, CURLMOPT_SOCKETDATA, (void *)k);
    curl_multi_setopt(k->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(k->multi, CURLMOPT_TIMERDATA, (void *)k);
    uv_timer_init(uv, &k->timer);
    k->timer.data = k;
    k->open_handles = 1;
    return 0;
}

static void
teardown(uv_timer_t *t)
{
    cm__curl *k = t->data;
    /* Closes the cached connections: their sockets' poll handles close through on_socket. */
    curl_multi_cleanup(k->multi);
    k->multi = NULL;
    uv_close((uv_handle_t *)&k->timer, handle_closed);
}

void
cm__curl_close(cm__curl *k)
{
    k->closing = 1;
    uv_timer_stop(&k->timer);
    if (k->dispatching == 0) {
        teardown(&k->timer);
    } else {
        /* Called back from inside libcurl's processing: finish on a later turn. */
        uv_timer_start(&k->timer, teardown, 0, 0);
    }
}

/* ---- errors ---- */

int
cm__curl_unreachable(CURLcode rc, CURL *e)
{
    if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
        rc == CURLE_COULDNT_RESOLVE_PROXY) {
        return 1;
    }
    if (rc == CURLE_OPERATION_TIMEDOUT) {
        /* Not one byte of the request went out (a reused connection has no connect time). */
        long sent = 0;
        curl_easy_getinfo(e, CURLINFO_REQUEST_SIZE, &sent);
        return sent == 0;
    }
    return 0;
}

int
cm__curl_error(CURLcode rc, CURL *e, int too_big)
{
    long oserr = 0;
    curl_easy_getinfo(e, CURLINFO_OS_ERRNO, &oserr);
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
        return CM_ETIMEDOUT;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return UV_EAI_NONAME;
    case CURLE_COULDNT_CONNECT:
        return oserr > 0 ? -(int)oserr : UV_ECONNREFUSED;
    case CURLE_GOT_NOTHING:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_PARTIAL_FILE:
        return oserr > 0 ? -(int)oserr : CM_ECLOSED;
    case CURLE_WRITE_ERROR:
        return too_big ? CM_ETOOBIG : CM_ENOMEM;
    case CURLE_OUT_OF_MEMORY:
        return CM_ENOMEM;
    default:
        return CM_EREGISTRY;
    }
}
