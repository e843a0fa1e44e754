package gmicro

import "cmicro.test/interop/gen/echopb"

// richRequest is the request the echo checks send, field for field the same as rich_request()
// in ../../echo_common.c: every field kind of test/proto/echo.proto with values that stress the
// codecs (64-bit integers beyond 2^53, HTML characters and non-ASCII text, negative map keys, a
// oneof). forJSON 1 leaves out bool_map: go-micro's JSON codec writes with encoding/json, which
// cannot encode a map with bool keys; 2 also leaves out the oneof, which encoding/json cannot
// read (application/grpc+json and application/json-rpc read with it).
func richRequest(forJSON int) *echopb.EchoRequest {
	r := &echopb.EchoRequest{
		Message:   "h\u00e9llo <&> \"quoted\" \u2713",
		I32:       -42,
		I64:       -9007199254740993,
		U32:       4000000000,
		U64:       18446744073709551615,
		S32:       -7,
		S64:       -1234567890123,
		F32:       0x12345678,
		F64:       0x123456789abcdef0,
		Sf32:      -0x12345678,
		Sf64:      -0x123456789abcdef,
		Dbl:       0.1,
		Flt:       1.5,
		Flag:      true,
		Payload:   []byte{0x00, 0xff, 0x10, 'a'},
		Status:    echopb.Status_STATUS_FAILED,
		Mode:      echopb.EchoRequest_MODE_LOUD,
		Inner:     &echopb.Inner{Name: "in", Count: 3, Tags: []string{"x", "y"}},
		RepI32:    []int32{1, -2, 3},
		RepStr:    []string{"a", "", "c"},
		RepInner:  []*echopb.Inner{{Name: "r1"}, {Count: 2}},
		RepStatus: []echopb.Status{echopb.Status_STATUS_OK, echopb.Status_STATUS_FAILED},
		RepBytes:  [][]byte{{0x01}, {}},
		RepDbl:    []float64{1.25, -2.5e10},
		StrMap:    map[string]string{"k1": "v1", "k2": ""},
		InnerMap:  map[string]*echopb.Inner{"m": {Name: "mi", Count: 1}},
		IntMap:    map[int32]string{1: "one", -5: "minus five"},
		MyKind:    &echopb.EchoRequest_Number{Number: 1 << 40},
		U64Map:    map[uint64]echopb.Status{18446744073709551615: echopb.Status_STATUS_OK},
		RepS64:    []int64{-1, 1},
		RepF64:    []uint64{7},
		RepFlt:    []float32{0.5},
		RepBool:   []bool{true, false, true},
		// Declared after declared_after in the .proto, numbered before it.
		ZzLastDeclared: "z",
		DeclaredAfter:  37,
	}
	if forJSON == 0 {
		r.BoolMap = map[bool]int64{true: 5, false: -6}
	}
	if forJSON == 2 {
		r.MyKind = nil
	}
	return r
}

// The messages the echo server reads as commands instead of echoing (Echo.Call).
const (
	cmdSleep = "cmd:sleep" // sleep i32 ms, then answer
	cmdMD    = "cmd:md"    // answer with the call's metadata in echo.str_map
	cmdWho   = "cmd:who"   // answer with the instance name only
	// cmdRelay calls Echo.Call cmd:relay on the -relay-to service with the call's context (so
	// go-micro forwards its metadata), or answers as cmd:md when there is none, and adds
	// "via-<instance>" = the Traceparent this hop received to echo.str_map.
	cmdRelay = "cmd:relay"
)

// The error Echo.Fail answers with: code i32 (400 when 0), detail = the request's message.
const failDetail = "bad \"input\" <\u00e9> \u2713"
