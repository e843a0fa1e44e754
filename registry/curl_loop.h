/* libcurl's multi interface on a registry's libuv loop (curl_multi_socket_action on uv_poll and
 * uv_timer), shared by the backends that speak HTTP (consul, etcd). Not installed.
 *
 * Every callback runs on the loop, outside libcurl's own callbacks, so an owner may add, remove
 * or close from inside them. Closing is two-step: cm__curl_close (the owner removed its easy
 * handles first), then gone() once every handle is closed, the owner's own handles counted in
 * (cm__curl_handle_opened / _gone: a watch's timer, say). */
#ifndef CMICRO_REGISTRY_CURL_LOOP_H
#define CMICRO_REGISTRY_CURL_LOOP_H

#include <curl/curl.h>
#include <uv.h>

typedef struct cm__curl {
    uv_loop_t *uv;
    CURLM *multi;
    uv_timer_t timer; /* libcurl's timeout, then the teardown step on close */
    unsigned open_handles;
    unsigned dispatching; /* inside libcurl's socket or timer processing */
    int closing;
    void *owner;
    /* A finished transfer (CURLINFO_PRIVATE names the owner's request); not once closing. */
    void (*done)(void *owner, CURL *easy, CURLcode rc);
    /* After each run of libcurl, before the finished transfers (may be NULL). */
    void (*after)(void *owner);
    /* Closing, and every handle closed: the owner frees. */
    void (*gone)(void *owner);
} cm__curl;

/* Takes a reference on curl_global_init and makes the multi handle. 0 or CM_ENOMEM. */
int cm__curl_init(cm__curl *k, uv_loop_t *uv, void *owner);
void cm__curl_handle_opened(cm__curl *k);
void cm__curl_handle_gone(cm__curl *k);
/* Stops everything: cleans the multi handle (on a later turn when called from inside libcurl's
 * processing) and closes its handles; gone() follows. */
void cm__curl_close(cm__curl *k);

/* A transfer error that says the server was never reached (not one byte of the request went
 * out): worth trying the next address. */
int cm__curl_unreachable(CURLcode rc, CURL *e);
/* The CM_E* or libuv error of a failed transfer (too_big: the owner refused the body). */
int cm__curl_error(CURLcode rc, CURL *e, int too_big);

#endif
