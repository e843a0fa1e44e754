package main

// The streaming benchmark's go-micro v4 peer (bench/stream.sh runs it), the counterpart of
// ../stream_cmicro.c:
//
//	go-micro-echo stream-server                           Bench.Down and Bench.Chat on 127.0.0.1
//	go-micro-echo stream-client ADDR down|bidi PAYLOAD N  one stream of N messages
//
// The server encodes each message into a buffer of its own and sends it as a bytes.Frame: a
// go-micro v4 server stream's Send otherwise hands the codec's one buffer to the connection's
// writer before it is written, and the next Send overwrites it.

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"go-micro.dev/v4/broker"
	"go-micro.dev/v4/client"
	"go-micro.dev/v4/codec/bytes"
	"go-micro.dev/v4/registry"
	"go-micro.dev/v4/server"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

type StreamBench struct{}

func sendFrame(st server.Stream, m *wrapperspb.BytesValue) error {
	b, err := proto.Marshal(m)
	if err != nil {
		return err
	}
	return st.Send(&bytes.Frame{Data: b})
}

func (StreamBench) Down(ctx context.Context, st server.Stream) error {
	req := new(wrapperspb.BytesValue)
	if err := st.Recv(req); err != nil {
		return err
	}
	var n, size int
	fmt.Sscanf(string(req.Value), "%d %d", &n, &size)
	m := &wrapperspb.BytesValue{Value: make([]byte, size)}
	for i := 0; i < n; i++ {
		if err := sendFrame(st, m); err != nil {
			return err
		}
	}
	return nil
}

func (StreamBench) Chat(ctx context.Context, st server.Stream) error {
	for {
		m := new(wrapperspb.BytesValue)
		err := st.Recv(m)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := sendFrame(st, m); err != nil {
			return err
		}
	}
}

func streamServer() {
	srv := server.NewServer(server.Name("bench"), server.Address("127.0.0.1:0"),
		server.Registry(registry.NewMemoryRegistry()), server.Broker(broker.NewMemoryBroker()))
	// go-micro routes "Bench.<Method>" to the handler named Bench.
	type Bench struct{ StreamBench }
	if err := srv.Handle(srv.NewHandler(&Bench{})); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := srv.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("listening %s\n", srv.Options().Address)
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	<-ch
	srv.Stop()
}

func streamClient(addr, kind string, size, n int) {
	// A memory registry (set in the default selector too): nothing looks anything up, the
	// stream goes to addr.
	c := client.NewClient(client.Registry(registry.NewMemoryRegistry()),
		client.ContentType("application/protobuf"))
	ep := "Bench.Down"
	if kind == "bidi" {
		ep = "Bench.Chat"
	}
	st, err := c.Stream(context.Background(), c.NewRequest("bench", ep, &wrapperspb.BytesValue{}),
		client.WithAddress(addr))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	start := time.Now()
	// go-micro's client stream holds its mutex while Send writes and Recv needs it after each
	// header: with Send and Recv running at once, a full pipe deadlocks them (seen with 4 KiB
	// messages). The sender keeps at most 32 messages ahead of the receiver.
	ahead := make(chan struct{}, 32)
	if kind == "bidi" {
		go func() {
			m := &wrapperspb.BytesValue{Value: make([]byte, size)}
			for i := 0; i < n; i++ {
				ahead <- struct{}{}
				if st.Send(m) != nil {
					return
				}
			}
		}()
	} else if err := st.Send(&wrapperspb.BytesValue{Value: []byte(fmt.Sprintf("%d %d", n, size))}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	got := 0
	for got < n {
		m := new(wrapperspb.BytesValue)
		if err := st.Recv(m); err != nil {
			fmt.Fprintln(os.Stderr, "recv:", err)
			break
		}
		if len(m.Value) == size {
			got++
		}
		if kind == "bidi" {
			<-ahead
		}
	}
	ms := float64(time.Since(start).Microseconds()) / 1000
	fmt.Printf("kind=%s payload=%d msgs=%d ms=%.0f rate=%.0f\n", kind, size, got, ms,
		float64(got)*1000/ms)
	st.Close()
	if got != n {
		os.Exit(1)
	}
}

func streamMain() bool {
	if len(os.Args) < 2 {
		return false
	}
	switch os.Args[1] {
	case "stream-server":
		streamServer()
	case "stream-client":
		if len(os.Args) < 6 {
			fmt.Fprintln(os.Stderr, "usage: stream-client ADDR down|bidi PAYLOAD N")
			os.Exit(2)
		}
		size, _ := strconv.Atoi(os.Args[4])
		n, _ := strconv.Atoi(os.Args[5])
		streamClient(os.Args[2], os.Args[3], size, n)
	default:
		return false
	}
	return true
}
