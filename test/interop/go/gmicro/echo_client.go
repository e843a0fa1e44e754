package gmicro

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go-micro.dev/v4/client"
	"go-micro.dev/v4/errors"
	"go-micro.dev/v4/metadata"
	"go-micro.dev/v4/registry"
	"go-micro.dev/v4/selector"
	"google.golang.org/protobuf/proto"

	"cmicro.test/interop/gen/echopb"
)

// The echo caller reads one command per line on stdin and prints one "RESULT <json>" line per
// command on stdout, with one client (and so one selector cache) for its whole life, so that
// the driver (../../interop.py) can stop callees between commands and see what this caller
// sees. ../../echo_client.c answers the same commands with the same JSON:
//
//	echo CODEC                Echo.Call with richRequest; "equal": the echo equals the request
//	fail CODEC CODE           Echo.Fail; "error": what the caller got
//	empty CODEC               Echo.Empty (a proto request of zero bytes)
//	md CODEC                  Echo.Call cmd:md with metadata X-User-Id: 42, x-tenant: acme;
//	                          "md": what the callee saw
//	sleep CODEC MS TIMEOUT    Echo.Call cmd:sleep (callee sleeps MS) with a TIMEOUT ms deadline
//	rr CODEC N                N calls of Echo.Call cmd:who; "counts": answers per instance
//	quit
//
// CODEC is proto or json. Every result has "cmd", "ok", "ms" (wall time of the command) and,
// when a call failed, "error" {id, code, detail, status}.
type result struct {
	Cmd      string            `json:"cmd"`
	OK       bool              `json:"ok"`
	Ms       int64             `json:"ms"`
	Instance string            `json:"instance,omitempty"`
	Equal    *bool             `json:"equal,omitempty"`
	MD       map[string]string `json:"md,omitempty"`
	Counts   map[string]int    `json:"counts,omitempty"`
	Failures int               `json:"failures,omitempty"`
	Error    *errors.Error     `json:"error,omitempty"`
}

// rotate is a round robin that keeps turning across calls. go-micro's own RoundRobin starts
// at a random node for every call (it is rebuilt per Call, so it only rotates across the
// retries of one call); nodes are taken in node-id order so the list is stable.
var rotation uint64

func rotate(services []*registry.Service) selector.Next {
	var nodes []*registry.Node
	for _, s := range services {
		nodes = append(nodes, s.Nodes...)
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Id < nodes[j].Id })
	return func() (*registry.Node, error) {
		if len(nodes) == 0 {
			return nil, selector.ErrNoneAvailable
		}
		return nodes[(atomic.AddUint64(&rotation, 1)-1)%uint64(len(nodes))], nil
	}
}

func echoClient(args []string) error {
	fs := flag.NewFlagSet("echo-client", flag.ExitOnError)
	reg := registryFlag(fs)
	name := fs.String("name", "cmicro.interop.echo", "service to call")
	tf := addTLSFlags(fs)
	fs.Parse(args)
	r, err := newRegistry(*reg)
	if err != nil {
		return err
	}
	tr, err := tf.transport()
	if err != nil {
		return err
	}
	sel := selector.NewSelector(selector.Registry(r), selector.SetStrategy(rotate))
	stubs := map[string]echopb.EchoService{}
	for codec, ct := range map[string]string{"proto": "application/protobuf",
		"json": "application/json", "grpc": "application/grpc",
		"grpc+proto": "application/grpc+proto", "grpc+json": "application/grpc+json",
		"proto-rpc": "application/proto-rpc", "json-rpc": "application/json-rpc"} {
		copts := []client.Option{client.Registry(r), client.Selector(sel), client.ContentType(ct)}
		if tr != nil {
			copts = append(copts, client.Transport(tr))
		}
		c := client.NewClient(copts...)
		stubs[codec] = echopb.NewEchoService(*name, c)
	}
	in := bufio.NewScanner(os.Stdin)
	out := bufio.NewWriter(os.Stdout)
	for in.Scan() {
		f := strings.Fields(in.Text())
		if len(f) == 0 {
			continue
		}
		if f[0] == "quit" {
			break
		}
		res := result{Cmd: f[0]}
		start := time.Now()
		if len(f) < 2 || stubs[f[1]] == nil {
			res.Error = errors.New("gmicro", "bad command: "+in.Text(), 0).(*errors.Error)
		} else {
			forJSON := 0
			if f[1] == "json" {
				forJSON = 1
			} else if f[1] == "grpc+json" || f[1] == "json-rpc" {
				forJSON = 2
			}
			run(&res, stubs[f[1]], forJSON, f[2:])
		}
		res.Ms = time.Since(start).Milliseconds()
		b, _ := json.Marshal(res)
		fmt.Fprintf(out, "RESULT %s\n", b)
		out.Flush()
	}
	return nil
}

func atoi(f []string, i int) int {
	if i < len(f) {
		n, _ := strconv.Atoi(f[i])
		return n
	}
	return 0
}

func (res *result) fail(err error) {
	res.OK = false
	res.Error = errors.FromError(err)
}

func run(res *result, stub echopb.EchoService, forJSON int, f []string) {
	ctx := context.Background()
	switch res.Cmd {
	case "echo":
		req := richRequest(forJSON)
		rsp, err := stub.Call(ctx, req)
		if err != nil {
			res.fail(err)
			return
		}
		eq := proto.Equal(req, rsp.Echo) && rsp.Status == echopb.Status_STATUS_OK
		res.OK, res.Instance, res.Equal = true, rsp.Message, &eq
	case "fail":
		_, err := stub.Fail(ctx, &echopb.EchoRequest{Message: failDetail, I32: int32(atoi(f, 0))})
		if err == nil {
			res.OK = true
			return
		}
		res.fail(err)
	case "empty":
		if _, err := stub.Empty(ctx, &echopb.EmptyRequest{}); err != nil {
			res.fail(err)
			return
		}
		res.OK = true
	case "md":
		mctx := metadata.NewContext(ctx, metadata.Metadata{"X-User-Id": "42", "x-tenant": "acme"})
		rsp, err := stub.Call(mctx, &echopb.EchoRequest{Message: cmdMD})
		if err != nil {
			res.fail(err)
			return
		}
		res.OK, res.Instance, res.MD = true, rsp.Message, rsp.GetEcho().GetStrMap()
	case "sleep":
		_, err := stub.Call(ctx, &echopb.EchoRequest{Message: cmdSleep, I32: int32(atoi(f, 0))},
			client.WithRequestTimeout(time.Duration(atoi(f, 1))*time.Millisecond))
		if err != nil {
			res.fail(err)
			return
		}
		res.OK = true
	case "rr":
		res.Counts = map[string]int{}
		for i := 0; i < atoi(f, 0); i++ {
			rsp, err := stub.Call(ctx, &echopb.EchoRequest{Message: cmdWho})
			if err != nil {
				res.Failures++
				res.fail(err)
				continue
			}
			res.Counts[rsp.Message]++
		}
		res.OK = res.Failures == 0
	default:
		res.Error = errors.New("gmicro", "unknown command "+res.Cmd, 0).(*errors.Error)
	}
}
