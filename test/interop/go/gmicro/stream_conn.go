package gmicro

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"cmicro.test/interop/gen/echopb"
	"go-micro.dev/v4/broker"
	"go-micro.dev/v4/registry"
	"go-micro.dev/v4/server"
)

// Unary is a unary handler beside Streamer on the probed server.
type Unary struct{}

// Call answers "unary:" + the message.
func (u *Unary) Call(ctx context.Context, req *echopb.EchoRequest, rsp *echopb.EchoResponse) error {
	rsp.Message = "unary:" + req.Message
	return nil
}

// connProbe is a raw HTTP/1.1 connection to a go-micro server.
type connProbe struct {
	c net.Conn
	r *bufio.Reader
}

func (p *connProbe) send(ep, id, stream string, eos bool, body string) {
	var b strings.Builder
	fmt.Fprintf(&b, "POST / HTTP/1.1\r\nHost: probe\r\nContent-Type: application/json\r\n"+
		"Micro-Service: probe\r\nMicro-Endpoint: %s\r\nMicro-Method: %s\r\nMicro-Id: %s\r\n", ep, ep, id)
	if stream != "" {
		fmt.Fprintf(&b, "Micro-Stream: %s\r\n", stream)
	}
	if eos {
		b.WriteString("Micro-Error: EOS\r\n")
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(body), body)
	p.c.Write([]byte(b.String()))
}

// replies reads what the server writes within wait: one "stream=S id=I body=B" per reply.
func (p *connProbe) replies(wait time.Duration) []string {
	var out []string
	for {
		p.c.SetReadDeadline(time.Now().Add(wait))
		rsp, err := http.ReadResponse(p.r, nil)
		if err != nil {
			return out
		}
		b, _ := io.ReadAll(rsp.Body)
		out = append(out, fmt.Sprintf("stream=%s id=%s body=%s", rsp.Header.Get("Micro-Stream"),
			rsp.Header.Get("Micro-Id"), strings.TrimSpace(string(b))))
	}
}

// streamConnProbe serves Streamer and Unary on a go-micro server of its own (memory registry,
// loopback) and writes to it raw, on the connection of stream 1 (Streamer.Chat): an EOS for an
// unknown id, then a message of stream 1; the frames of a stream 2; a unary call (Unary.Call,
// Micro-Id 7). It prints what came back for each case:
//
//	CASE eos-unknown: [stream=1 id=1 body=...]
//
// so that the test can check what go-micro does with them.
func streamConnProbe(args []string) error {
	r := registry.NewMemoryRegistry()
	registry.DefaultRegistry = r
	// The broker on loopback, over the memory registry too: nothing reaches mDNS.
	b := broker.NewBroker(broker.Registry(r), broker.Addrs("127.0.0.1:0"))
	s := server.NewServer(server.Name("probe"), server.Address("127.0.0.1:0"), server.Registry(r),
		server.Broker(b))
	if err := s.Handle(s.NewHandler(&Streamer{name: "probe"})); err != nil {
		return err
	}
	if err := s.Handle(s.NewHandler(&Unary{})); err != nil {
		return err
	}
	if err := s.Start(); err != nil {
		return err
	}
	defer s.Stop()
	c, err := net.Dial("tcp", s.Options().Address)
	if err != nil {
		return err
	}
	defer c.Close()
	p := &connProbe{c, bufio.NewReader(c)}
	// What has not come within wait is taken as not answered.
	wait := 1500 * time.Millisecond
	p.send("Streamer.Chat", "1", "1", false, `{"seq":1}`) // the opening: its body is discarded
	fmt.Printf("CASE open: %v\n", p.replies(wait))
	p.send("Streamer.Chat", "99", "99", true, "")
	p.send("Streamer.Chat", "1", "1", false, `{"seq":2,"text":"one"}`)
	fmt.Printf("CASE eos-unknown: %v\n", p.replies(wait))
	p.send("Streamer.Chat", "2", "2", false, `{"seq":3}`)
	p.send("Streamer.Chat", "2", "2", false, `{"seq":4,"text":"two"}`)
	fmt.Printf("CASE other-stream: %v\n", p.replies(wait))
	p.send("Unary.Call", "7", "", false, `{"message":"u"}`)
	fmt.Printf("CASE unary: %v\n", p.replies(wait))
	return nil
}
