package gmicro

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"go-micro.dev/v4"
	"go-micro.dev/v4/client"
	"go-micro.dev/v4/codec/bytes"
	"go-micro.dev/v4/errors"
	"go-micro.dev/v4/metadata"
	"go-micro.dev/v4/server"
	"google.golang.org/protobuf/proto"

	"cmicro.test/interop/gen/streampb"
)

// Streams of test/proto/stream.proto (service Streamer), written as go-micro's protoc-gen-micro
// writes stream glue: a handler struct named after the service whose methods take
// (context.Context, server.Stream), and clients built on client.Stream. ../../stream_server.c and
// ../../stream_client.c are the C side, with the same behaviour and the same JSON.
//
// A go-micro v4 server stream's Send encodes into the codec's one buffer and hands it to the
// connection's writer goroutine before the bytes are written: the next Send overwrites it. The
// server here therefore encodes each message into a buffer of its own and sends it as a
// bytes.Frame (which go-micro sends as is); -shared-buffer sends the messages themselves, to
// see that behaviour.

// Streamer is the handler struct: go-micro routes "Streamer.<Method>" to its methods.
type Streamer struct {
	name   string
	shared bool
}

// send encodes m for the stream's content type into a buffer of its own.
func (s *Streamer) send(ctx context.Context, st server.Stream, m *streampb.Msg) error {
	if s.shared {
		return st.Send(m)
	}
	var b []byte
	var err error
	if strings.Contains(st.Request().ContentType(), "json") {
		b, err = json.Marshal(m)
		b = append(b, '\n')
	} else {
		b, err = proto.Marshal(m)
	}
	if err != nil {
		return err
	}
	return st.Send(&bytes.Frame{Data: b})
}

// Count sends count messages, then fails with fail_code when it is set.
func (s *Streamer) Count(ctx context.Context, st server.Stream) error {
	req := new(streampb.Msg)
	if err := st.Recv(req); err != nil {
		return err
	}
	for i := int32(0); i < req.Count; i++ {
		if ctx.Err() != nil {
			return errors.Timeout(s.name, "stream deadline exceeded")
		}
		m := &streampb.Msg{Seq: int64(i), Text: req.Text, Pad: req.Pad}
		if err := s.send(ctx, st, m); err != nil {
			return err
		}
		if req.SleepMs > 0 {
			time.Sleep(time.Duration(req.SleepMs) * time.Millisecond)
		}
	}
	if req.FailCode != 0 {
		return errors.New(s.name, fmt.Sprintf("failed after %d messages", req.Count), req.FailCode)
	}
	return nil
}

// Sum adds the seqs up to EOS or the message marked last, and answers once.
func (s *Streamer) Sum(ctx context.Context, st server.Stream) error {
	var sum int64
	var n int32
	for {
		m := new(streampb.Msg)
		err := st.Recv(m)
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		sum += m.Seq
		n++
		if m.Last {
			break
		}
	}
	return s.send(ctx, st, &streampb.Msg{Seq: sum, Count: n})
}

// Chat answers every message with seq * 2 and text + "|" + the caller's X-Tenant.
func (s *Streamer) Chat(ctx context.Context, st server.Stream) error {
	md, _ := metadata.FromContext(ctx)
	tenant, _ := md.Get("X-Tenant")
	for {
		m := new(streampb.Msg)
		err := st.Recv(m)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := s.send(ctx, st, &streampb.Msg{Seq: m.Seq * 2, Text: m.Text + "|" + tenant}); err != nil {
			return err
		}
	}
}

func streamServer(args []string) error {
	fs := flag.NewFlagSet("stream-server", flag.ExitOnError)
	reg := registryFlag(fs)
	name := fs.String("name", "cmicro.interop.stream", "service name")
	shared := fs.Bool("shared-buffer", false, "send the messages through go-micro's codec buffer")
	fs.Parse(args)
	r, err := newRegistry(*reg)
	if err != nil {
		return err
	}
	var svc micro.Service
	svc = micro.NewService(micro.Name(*name), micro.Address("127.0.0.1:0"), micro.Registry(r),
		micro.AfterStart(func() error { return announce(svc) }))
	h := &Streamer{name: *name, shared: *shared}
	if err := svc.Server().Handle(svc.Server().NewHandler(h)); err != nil {
		return err
	}
	return svc.Run()
}

// streamResult is one command's answer, as ../../stream_client.c prints it.
type streamResult struct {
	Cmd     string        `json:"cmd"`
	OK      bool          `json:"ok"`
	Ms      int64         `json:"ms"`
	N       int           `json:"n"`
	InOrder bool          `json:"in_order"`
	EOF     bool          `json:"eof"`
	Sum     int64         `json:"sum"`
	Count   int32         `json:"count"`
	Text    string        `json:"text,omitempty"`
	Error   *errors.Error `json:"error,omitempty"`
}

// streamClient reads commands on stdin and prints "RESULT <json>" for each:
//
//	count CODEC N PAD        Streamer.Count of N messages with PAD bytes each: all in order, then EOS
//	fail CODEC N CODE        Streamer.Count failing with CODE after N messages
//	sumlast CODEC N          Streamer.Sum of seqs 1..N, the last marked (go-micro cannot half-close)
//	chat CODEC N             N round trips of Streamer.Chat with metadata X-Tenant: acme
//	deadline CODEC MS        Streamer.Count sending every 50 ms with a stream deadline of MS
//	quit
func streamClient(args []string) error {
	fs := flag.NewFlagSet("stream-client", flag.ExitOnError)
	reg := registryFlag(fs)
	name := fs.String("name", "cmicro.interop.stream", "service to call")
	fs.Parse(args)
	r, err := newRegistry(*reg)
	if err != nil {
		return err
	}
	clients := map[string]client.Client{
		"proto": client.NewClient(client.Registry(r), client.ContentType("application/protobuf")),
		"json":  client.NewClient(client.Registry(r), client.ContentType("application/json")),
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
		res := streamResult{Cmd: f[0]}
		start := time.Now()
		if len(f) < 2 || clients[f[1]] == nil {
			res.Error = errors.New("gmicro", "bad command: "+in.Text(), 0).(*errors.Error)
		} else {
			runStream(&res, clients[f[1]], *name, f[2:])
		}
		res.Ms = time.Since(start).Milliseconds()
		b, _ := json.Marshal(res)
		fmt.Fprintf(out, "RESULT %s\n", b)
		out.Flush()
	}
	return nil
}

func openStream(ctx context.Context, c client.Client, name, ep string,
	opts ...client.CallOption) (client.Stream, error) {
	return c.Stream(ctx, c.NewRequest(name, ep, &streampb.Msg{}), opts...)
}

// recvAll receives until an error; in_order: the seqs were 0, 1, ...
func recvAll(res *streamResult, st client.Stream) {
	res.InOrder = true
	for {
		m := new(streampb.Msg)
		err := st.Recv(m)
		if err == io.EOF {
			res.EOF = true
			return
		}
		if err != nil {
			res.Error = errors.FromError(err)
			return
		}
		if m.Seq != int64(res.N) {
			res.InOrder = false
		}
		res.N++
	}
}

func runStream(res *streamResult, c client.Client, name string, f []string) {
	ctx := context.Background()
	switch res.Cmd {
	case "count", "fail":
		st, err := openStream(ctx, c, name, "Streamer.Count")
		if err != nil {
			res.Error = errors.FromError(err)
			return
		}
		defer st.Close()
		req := &streampb.Msg{Count: int32(atoi(f, 0)), Text: "t"}
		if res.Cmd == "count" {
			req.Pad = make([]byte, atoi(f, 1))
		} else {
			req.FailCode = int32(atoi(f, 1))
		}
		if err := st.Send(req); err != nil {
			res.Error = errors.FromError(err)
			return
		}
		recvAll(res, st)
		res.OK = res.Error == nil && res.EOF && res.InOrder && res.N == int(req.Count)
	case "sum", "sumlast":
		st, err := openStream(ctx, c, name, "Streamer.Sum")
		if err != nil {
			res.Error = errors.FromError(err)
			return
		}
		defer st.Close()
		n := atoi(f, 0)
		for i := 1; i <= n; i++ {
			if err := st.Send(&streampb.Msg{Seq: int64(i), Last: i == n}); err != nil {
				res.Error = errors.FromError(err)
				return
			}
		}
		m := new(streampb.Msg)
		if err := st.Recv(m); err != nil {
			res.Error = errors.FromError(err)
			return
		}
		res.Sum, res.Count, res.OK = m.Seq, m.Count, true
	case "chat":
		mctx := metadata.NewContext(ctx, metadata.Metadata{"X-Tenant": "acme"})
		st, err := openStream(mctx, c, name, "Streamer.Chat")
		if err != nil {
			res.Error = errors.FromError(err)
			return
		}
		defer st.Close()
		res.InOrder = true
		for i := 0; i < atoi(f, 0); i++ {
			text := fmt.Sprintf("m%d", i)
			if err := st.Send(&streampb.Msg{Seq: int64(i), Text: text}); err != nil {
				res.Error = errors.FromError(err)
				return
			}
			m := new(streampb.Msg)
			if err := st.Recv(m); err != nil {
				res.Error = errors.FromError(err)
				return
			}
			if m.Seq != int64(2*i) || m.Text != text+"|acme" {
				res.InOrder = false
				res.Text = m.Text
			}
			res.N++
		}
		res.OK = res.InOrder
	case "deadline":
		ms := time.Duration(atoi(f, 0)) * time.Millisecond
		tctx, cancel := context.WithTimeout(ctx, ms)
		defer cancel()
		st, err := openStream(tctx, c, name, "Streamer.Count", client.WithStreamTimeout(ms))
		if err != nil {
			res.Error = errors.FromError(err)
			return
		}
		defer st.Close()
		if err := st.Send(&streampb.Msg{Count: 1000, SleepMs: 50}); err != nil {
			res.Error = errors.FromError(err)
			return
		}
		// go-micro's stream Recv does not watch the context: the deadline reaches the caller
		// as the server's error or its closed connection.
		recvAll(res, st)
		res.OK = res.Error == nil && res.EOF
	default:
		res.Error = errors.New("gmicro", "unknown command "+res.Cmd, 0).(*errors.Error)
	}
}
