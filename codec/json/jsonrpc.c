/* cmicro: go-micro's json-rpc codec (codec/jsonrpc), application/json-rpc. A request body is
 * {"method":"Echo.Call","params":[<message>],"id":"4"}; a response is
 * {"id":"4","result":<message>,"error":null} or, on failure, {"id":..,"result":null,
 * "error":"<text>"}. Messages are written as Go's encoding/json writes them (the JSON codec) and
 * read with its rules; the id is answered with the type it came with. */
#include "json_int.h"

#include <stdio.h>
#include <string.h>

static int
put(cm_buf *out, const char *s)
{
    return cm_buf_append(out, s, strlen(s));
}

/* s as a JSON string. */
static int
put_quoted(cm_buf *out, const char *s)
{
    int rc = cm_buf_append(out, "\"", 1);
    for (; rc == 0 && *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        if (c == '"' || c == '\\') {
            snprintf(esc, sizeof esc, "\\%c", c);
        } else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
        } else {
            esc[0] = (char)c;
            esc[1] = '\0';
        }
        rc = put(out, esc);
    }
    return rc == 0 ? cm_buf_append(out, "\"", 1) : rc;
}

static int
put_id(cm_buf *out, const cm_codec_envelope *env)
{
    if (env->id_is_string || !cm__json_is_number_text(env->id, strlen(env->id))) {
        return put_quoted(out, env->id);
    }
    return put(out, env->id);
}

static int
put_message(cm_buf *out, const ProtobufCMessageDescriptor *desc, const void *msg)
{
    if (msg == NULL) {
        return put(out, "null");
    }
    return cm_codec_json.marshal(desc, msg, out);
}

int
cm__jsonrpc_marshal(int response, const cm_codec_envelope *env,
                    const ProtobufCMessageDescriptor *desc, const void *msg, cm_buf *out)
{
    int rc;
    if (!response) {
        rc = put(out, "{\"method\":");
        rc = rc ? rc : put_quoted(out, env->method);
        rc = rc ? rc : put(out, ",\"params\":[");
        rc = rc ? rc : put_message(out, desc, msg);
        rc = rc ? rc : put(out, "],\"id\":");
        rc = rc ? rc : put_id(out, env);
        return rc ? rc : put(out, "}\n");
    }
    rc = put(out, "{\"id\":");
    rc = rc ? rc : put_id(out, env);
    rc = rc ? rc : put(out, ",\"result\":");
    rc = rc ? rc : put_message(out, desc, env->error[0] ? NULL : msg);
    rc = rc ? rc : put(out, ",\"error\":");
    rc = rc ? rc : (env->error[0] ? put_quoted(out, env->error) : put(out, "null"));
    return rc ? rc : put(out, "}\n");
}

static const cm__json_value *
member(const cm__json_value *obj, const char *key)
{
    for (const cm__json_value *v = obj->child; v != NULL; v = v->next) {
        if (v->keylen == strlen(key) && memcmp(v->key, key, v->keylen) == 0) {
            return v;
        }
    }
    return NULL;
}

/* s into dst of cap bytes; a string that does not fit is cut at a character boundary (s is
 * UTF-8: the decoder made it so), so that what is written back reads the same. */
static void
copy_text(char *dst, size_t cap, const char *s)
{
    size_t n = strlen(s);
    if (n >= cap) {
        n = cap - 1;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) {
            n--; /* s[n] continues the character that s[n - 1...] starts */
        }
    }
    memcpy(dst, s, n);
    dst[n] = '\0';
}

/* Reads id, method and error into env; *msg is the params[0] or result value (NULL: none). */
static int
read_envelope(int response, const cm__json_value *root, cm_codec_envelope *env,
              const cm__json_value **msg, char *err, size_t errlen)
{
    if (root->type != CM__JSON_OBJECT) {
        cm__codec_errf(err, errlen, "json-rpc: the body is not a JSON object");
        return CM_ECODEC;
    }
    const cm__json_value *id = member(root, "id");
    if (id != NULL && (id->type == CM__JSON_STRING || id->type == CM__JSON_NUMBER)) {
        copy_text(env->id, sizeof env->id, id->str);
        env->id_is_string = id->type == CM__JSON_STRING;
    }
    const cm__json_value *method = member(root, "method");
    if (method != NULL && method->type == CM__JSON_STRING) {
        copy_text(env->method, sizeof env->method, method->str);
    }
    if (response) {
        const cm__json_value *e = member(root, "error");
        if (e != NULL && e->type != CM__JSON_NULL) {
            copy_text(env->error, sizeof env->error,
                      e->type == CM__JSON_STRING && e->len > 0 ? e->str : "unspecified error");
        }
        *msg = member(root, "result");
        return 0;
    }
    const cm__json_value *params = member(root, "params");
    if (params == NULL || params->type != CM__JSON_ARRAY || params->count != 1) {
        cm__codec_errf(err, errlen, "json-rpc: params is not an array of one message");
        return CM_ECODEC;
    }
    *msg = params->child;
    return 0;
}

int
cm__jsonrpc_unmarshal(int response, const ProtobufCMessageDescriptor *desc, const uint8_t *data,
                      size_t len, ProtobufCAllocator *alloc, cm_codec_envelope *env, void **out,
                      char *err, size_t errlen)
{
    memset(env, 0, sizeof(*env));
    *out = NULL;
    cm__arena arena;
    cm__arena_init(&arena);
    cm__json_value *root = NULL;
    const cm__json_value *msg = NULL;
    int rc = cm__json_parse(data, len, &arena, &root, err, errlen);
    if (rc == 0) {
        rc = read_envelope(response, root, env, &msg, err, errlen);
    }
    if (rc == 0 && !(response && env->error[0] != '\0')) {
        if (desc == NULL) {
            cm__codec_errf(err, errlen, "json-rpc cannot carry raw bytes");
            rc = CM_ECODEC;
        } else {
            rc = cm__json_decode_tree(desc, msg, alloc, out, err, errlen);
        }
    }
    cm__arena_fini(&arena);
    return rc;
}
