/* Header helpers shared by the client and the server. */
#include "framework_int.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int
is_token(unsigned char c)
{
    return isalnum(c) || strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

int
cm__canonical_key(const char *key, char *out, size_t len)
{
    size_t n = strlen(key);
    if (n + 1 > len || n == 0) {
        return CM_EINVAL;
    }
    int token = 1;
    for (size_t i = 0; i < n; i++) {
        if (!is_token((unsigned char)key[i])) {
            token = 0;
        }
    }
    int upper = 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)key[i];
        if (token) {
            c = (unsigned char)(upper ? toupper(c) : tolower(c));
            upper = c == '-';
        }
        out[i] = (char)c;
    }
    out[n] = '\0';
    return 0;
}

int
cm__is_framework_header(const char *key)
{
    static const char *const names[] = {
        "Content-Type", "Content-Length", "Accept", "Timeout",    "Host",
        "User-Agent",   "Connection",     "Local",  "Remote",     "Transfer-Encoding",
        "Accept-Encoding",
    };
    if (strncasecmp(key, "Micro-", 6) == 0 || strncasecmp(key, "X-Micro-", 8) == 0 ||
        key[0] == ':') {
        return 1;
    }
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcasecmp(key, names[i]) == 0) {
            return 1;
        }
    }
    return 0;
}

void
cm__message_free(const ProtobufCMessageDescriptor *desc, void *msg, ProtobufCAllocator *alloc)
{
    if (msg == NULL) {
        return;
    }
    if (desc != NULL) {
        protobuf_c_message_free_unpacked(msg, alloc);
        return;
    }
    ProtobufCBinaryData *b = msg;
    if (alloc != NULL) {
        alloc->free(alloc->allocator_data, b->data);
        alloc->free(alloc->allocator_data, b);
    } else {
        free(b->data);
        free(b);
    }
}

void
cm_message_free(const ProtobufCMessageDescriptor *desc, void *msg)
{
    cm__message_free(desc, msg, NULL);
}
