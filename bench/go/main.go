// The benchmark's go-micro v4 peer: an echo server with go-micro's HTTP transport and proto codec
// (the defaults), a memory registry and a memory broker so that it sends nothing but the
// benchmark's replies (no mDNS). The message is google.protobuf.BytesValue, whose wire form is
// bench.EchoMsg (field 1, bytes). It listens on 127.0.0.1 and prints "listening ADDR".
//
//	go-micro-echo [PORT]
//
// stream.go adds the streaming benchmark's subcommands (stream-server, stream-client).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"go-micro.dev/v4/broker"
	"go-micro.dev/v4/logger"
	"go-micro.dev/v4/registry"
	"go-micro.dev/v4/server"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

type Bench struct{}

func (b *Bench) Echo(ctx context.Context, req *wrapperspb.BytesValue, rsp *wrapperspb.BytesValue) error {
	rsp.Value = req.Value
	return nil
}

func main() {
	if streamMain() {
		return
	}
	port := "0"
	if len(os.Args) > 1 {
		port = os.Args[1]
	}
	logger.DefaultLogger = logger.NewLogger(logger.WithLevel(logger.ErrorLevel))
	srv := server.NewServer(
		server.Name("bench"),
		server.Address("127.0.0.1:"+port),
		server.Registry(registry.NewMemoryRegistry()),
		server.Broker(broker.NewMemoryBroker()),
	)
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
