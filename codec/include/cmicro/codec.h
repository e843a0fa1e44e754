/* cmicro: codecs, chosen by exact Content-Type.
 *
 * A codec turns a protobuf-c message into bytes and back. Every codec also handles raw frames:
 * when the descriptor is NULL the message is a ProtobufCBinaryData and its bytes pass through
 * unchanged (go-micro's codec.Frame), which is what proxies and raw-bytes endpoints use.
 *
 * The table is process-wide. The built-in codecs are go-micro v4's: application/protobuf,
 * application/json, application/octet-stream; its gRPC framing (application/grpc,
 * application/grpc+proto, application/grpc+json: a 5-byte length prefix); and its envelope
 * codecs application/proto-rpc and application/json-rpc, which carry the method, an id and the
 * error text around each message. cm_codec_register() adds more.
 */
#ifndef CMICRO_CODEC_H
#define CMICRO_CODEC_H

#include <cmicro/buf.h>
#include <cmicro/error.h>
#include <protobuf-c/protobuf-c.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CM_CT_PROTOBUF "application/protobuf"
#define CM_CT_JSON "application/json"
#define CM_CT_BYTES "application/octet-stream"
#define CM_CT_GRPC "application/grpc"
#define CM_CT_GRPC_PROTO "application/grpc+proto"
#define CM_CT_GRPC_JSON "application/grpc+json"
#define CM_CT_PROTO_RPC "application/proto-rpc"
#define CM_CT_JSON_RPC "application/json-rpc"

/* What an envelope codec carries around a message besides it. */
typedef struct cm_codec_envelope {
    char method[256]; /* "Echo.Call" */
    char id[64];      /* the request's id / sequence number, as text ("4") */
    int id_is_string; /* json-rpc: the id was a JSON string, and is answered as one */
    char error[1024]; /* a response's error text; "" when none (cut to fit) */
} cm_codec_envelope;

typedef struct cm_codec_ops {
    int abi_version;          /* CM_ABI_VERSION */
    const char *name;         /* "proto", "json", "bytes" */
    const char *content_type; /* exact string matched against Content-Type */
    /* Appends the encoding of msg to out. desc NULL: msg is a ProtobufCBinaryData.
     * Returns 0, CM_ECODEC (msg cannot be encoded by this codec) or CM_ENOMEM. */
    int (*marshal)(const ProtobufCMessageDescriptor *desc, const void *msg, cm_buf *out);
    /* Decodes data into a new message of type desc allocated with alloc (NULL: malloc), stored
     * in *out; free it with protobuf_c_message_free_unpacked(*out, alloc). len 0 gives the
     * default message. desc NULL: *out is a ProtobufCBinaryData (struct and bytes from alloc).
     * Returns 0, CM_ECODEC (with a one-line reason in err, which may be NULL) or CM_ENOMEM. */
    int (*unmarshal)(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
                     ProtobufCAllocator *alloc, void **out, char *err, size_t errlen);
    /* Optional, for envelope codecs: when set, the client and the server write and read every
     * request and response body through these instead (response 0: a request, 1: a response).
     * marshal_envelope: msg NULL writes a response with no result (one that carries an error).
     * unmarshal_envelope: fills env; *out is the message (as unmarshal), or NULL for a response
     * whose envelope carries an error and no result. Same returns as marshal / unmarshal. */
    int (*marshal_envelope)(int response, const cm_codec_envelope *env,
                            const ProtobufCMessageDescriptor *desc, const void *msg, cm_buf *out);
    int (*unmarshal_envelope)(int response, const ProtobufCMessageDescriptor *desc,
                              const uint8_t *data, size_t len, ProtobufCAllocator *alloc,
                              cm_codec_envelope *env, void **out, char *err, size_t errlen);
} cm_codec_ops;

/* The codec for an exact content type, or NULL when none is registered. Any thread. */
CM_EXTERN const cm_codec_ops *cm_codec_find(const char *content_type);
/* Same, for a string of known length (need not be NUL-terminated). */
CM_EXTERN const cm_codec_ops *cm_codec_findn(const char *content_type, size_t len);
/* Adds or replaces the codec for ops->content_type. ops is borrowed for the life of the
 * process (a static const table). Returns 0, CM_EINVAL (bad abi_version or missing slots) or
 * CM_ENOMEM. Call before starting servers and clients (not synchronised with lookups). */
CM_EXTERN int cm_codec_register(const cm_codec_ops *ops);

/* The built-in codecs. */
CM_EXTERN extern const cm_codec_ops cm_codec_proto;
CM_EXTERN extern const cm_codec_ops cm_codec_json;
CM_EXTERN extern const cm_codec_ops cm_codec_bytes;
CM_EXTERN extern const cm_codec_ops cm_codec_grpc;
CM_EXTERN extern const cm_codec_ops cm_codec_grpc_proto;
CM_EXTERN extern const cm_codec_ops cm_codec_grpc_json;
CM_EXTERN extern const cm_codec_ops cm_codec_proto_rpc;
CM_EXTERN extern const cm_codec_ops cm_codec_json_rpc;

#ifdef __cplusplus
}
#endif
#endif
