/* What the C programs of the interop suite share with each other and, field for field, with
 * the go-micro peers in go/gmicro/: the rich request, the command words of Echo.Call and the
 * detail of Echo.Fail's error. */
#ifndef CM_INTEROP_ECHO_COMMON_H
#define CM_INTEROP_ECHO_COMMON_H

#include "echo.cmicro.h"

typedef Cmicro__Test__V1__EchoRequest echo_request;
typedef Cmicro__Test__V1__EchoResponse echo_response;

/* The messages Echo.Call reads as commands instead of echoing (go/gmicro/request.go). */
#define CMD_SLEEP "cmd:sleep" /* sleep i32 ms, then answer */
#define CMD_MD "cmd:md"       /* answer with the call's metadata in echo.str_map */
#define CMD_WHO "cmd:who"     /* answer with the instance name only */
/* Call Echo.Call cmd:relay on the next service (INTEROP_RELAY_TO, -relay-to) as a call made
 * while serving this one, or answer as cmd:md at the last hop; every hop adds "via-<instance>" =
 * the Traceparent it received to echo.str_map. */
#define CMD_RELAY "cmd:relay"

/* The detail of Echo.Fail's error (the request's message): quotes, HTML characters and
 * non-ASCII text, so that JSON escaping on both sides is exercised. */
#define FAIL_DETAIL "bad \"input\" <\xc3\xa9> \xe2\x9c\x93"

/* The rich request (static storage, read-only): every field kind of echo.proto with values that
 * stress the codecs. for_json 1 leaves out bool_map, which go-micro's JSON codec
 * (encoding/json) cannot write; 2 also leaves out the oneof, which Go's encoding/json cannot
 * read (application/grpc+json and application/json-rpc read with it). Equal to richRequest() in
 * go/gmicro/request.go. */
const echo_request *rich_request(int for_json);

/* 1 when got (decoded from the wire) carries exactly the fields of want. Sorts got's map
 * entries by key (map order on the wire is free), then compares the encodings. */
int echo_request_equal(const echo_request *want, echo_request *got);

/* For programs about to open mDNS sockets: exits with a FAIL line unless this is the private
 * network namespace of test/mdns/run-netns.sh. A no-op for the other registries. */
void interop_require_netns_for(const char *registry);

#endif
