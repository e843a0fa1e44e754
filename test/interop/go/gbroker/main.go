// Command gbroker is the go-micro peer of cmicro's broker interop tests (test/interop/
// broker_interop.py), built against go-micro.dev/v4 v4.11.0 and its NATS broker plugin
// github.com/go-micro/plugins/v4/broker/nats v1.2.0:
//
//	gbroker version                       the go-micro version it was built with
//	gbroker encode                        prints go-micro's broker message encoding of a fixed set
//	                                      of messages, one per line (base64 of the JSON)
//	gbroker pub -broker B -topic T -count N -content-type CT
//	                                      publishes N events hellopb.SayRequest{Name: "msg-<i>"}
//	                                      with micro.NewEvent(T, client).Publish
//	gbroker sub -broker B -topic T [-queue Q] -count N
//	                                      micro.RegisterSubscriber(T, server, handler[, queue]);
//	                                      prints READY, then one JSON line per event, and exits
//	                                      after N events
//
// -broker is nats (at -address, a NATS URL) or http (go-micro's HTTP broker, its subscriptions
// in the Consul registry at $CONSUL_HTTP_ADDR, or in mDNS with MICRO_REGISTRY=mdns inside the
// network namespace of test/mdns/run-netns.sh). Servers listen on 127.0.0.1:0 only; the NATS
// peer's own service registers in a memory registry (nothing else needs it).
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	natsbroker "github.com/go-micro/plugins/v4/broker/nats"
	"github.com/go-micro/plugins/v4/registry/consul"
	"github.com/nats-io/nats.go"
	"go-micro.dev/v4"
	"go-micro.dev/v4/broker"
	"go-micro.dev/v4/client"
	gmjson "go-micro.dev/v4/codec/json"
	"go-micro.dev/v4/metadata"
	"go-micro.dev/v4/registry"
	"go-micro.dev/v4/server"

	"cmicro.test/interop/gen/hellopb"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: gbroker encode|pub|sub [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "version":
		fmt.Println(goMicroVersion())
	case "encode":
		err = encode()
	case "pub":
		err = pub(os.Args[2:])
	case "sub":
		err = sub(os.Args[2:])
	default:
		err = fmt.Errorf("unknown subcommand %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "gbroker %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

// The messages whose encodings C must match byte for byte (the same list is in
// test/interop/broker_peer.c; header keys and values without CR, LF or an empty key, which a
// cmicro header does not hold).
func encode() error {
	msgs := []broker.Message{
		{Header: map[string]string{"Micro-Topic": "events", "Content-Type": "application/json",
			"Micro-ID": "6ba7b810-9dad-11d1-80b4-00c04fd430c8"}, Body: []byte("{\"name\":\"x\"}\n")},
		{Header: map[string]string{}, Body: []byte{}},
		{Header: nil, Body: []byte{0, 1, 2, 0xfe, 0xff}},
		{Header: map[string]string{"b": "<a href=\"x\">&amp;</a>", "a": "tab\tbs\\ \b\f\x01\x1f\x7f",
			"Z": "é ü \u2028 \u2029 \U0001F600", "bad": "\xff\xc3("},
			Body: []byte("hello world, a longer body that crosses several base64 quanta!!")},
	}
	m := gmjson.Marshaler{}
	for _, msg := range msgs {
		msg := msg
		b, err := m.Marshal(&msg)
		if err != nil {
			return err
		}
		fmt.Println(base64.StdEncoding.EncodeToString(b))
	}
	return nil
}

type common struct {
	broker, address, topic, ct, queue string
	count                             int
}

func flags(name string, args []string) *common {
	c := &common{}
	fs := flag.NewFlagSet(name, flag.ExitOnError)
	fs.StringVar(&c.broker, "broker", "nats", "nats or http")
	fs.StringVar(&c.address, "address", "", "NATS URL")
	fs.StringVar(&c.topic, "topic", "events", "topic")
	fs.StringVar(&c.ct, "content-type", "application/json", "publish content type")
	fs.StringVar(&c.queue, "queue", "", "queue group")
	fs.IntVar(&c.count, "count", 1, "events")
	fs.Parse(args)
	return c
}

func newService(c *common, opts ...micro.Option) (micro.Service, error) {
	var b broker.Broker
	var r registry.Registry
	switch c.broker {
	case "nats":
		r = registry.NewMemoryRegistry()
		nopts := nats.GetDefaultOptions()
		nopts.Timeout = 10 * time.Second // loaded CI machines
		b = natsbroker.NewBroker(broker.Addrs(c.address), natsbroker.Options(nopts))
	case "http":
		if os.Getenv("MICRO_REGISTRY") == "mdns" {
			// Only inside the private network namespace of test/mdns/run-netns.sh.
			self, _ := os.Readlink("/proc/self/ns/net")
			if os.Getenv("CMICRO_TEST_NETNS") != "1" || self == "" ||
				self == os.Getenv("CMICRO_TEST_PARENT_NETNS") {
				return nil, fmt.Errorf("mDNS runs only under test/mdns/run-netns.sh")
			}
			r = registry.NewRegistry()
		} else {
			addr := os.Getenv("CONSUL_HTTP_ADDR")
			if addr == "" {
				return nil, fmt.Errorf("CONSUL_HTTP_ADDR is not set")
			}
			r = consul.NewRegistry(registry.Addrs(addr))
		}
		b = broker.NewBroker(broker.Registry(r))
	default:
		return nil, fmt.Errorf("unknown broker %q", c.broker)
	}
	base := []micro.Option{micro.Name("gbroker"), micro.Address("127.0.0.1:0"),
		micro.Registry(r), micro.Broker(b)}
	return micro.NewService(append(base, opts...)...), nil
}

func pub(args []string) error {
	c := flags("pub", args)
	svc, err := newService(c)
	if err != nil {
		return err
	}
	if err := svc.Options().Broker.Connect(); err != nil {
		return err
	}
	cl := client.NewClient(client.Broker(svc.Options().Broker), client.ContentType(c.ct),
		client.Registry(svc.Options().Registry))
	ev := micro.NewEvent(c.topic, cl)
	for i := 0; i < c.count; i++ {
		ctx := metadata.NewContext(context.Background(), metadata.Metadata{"X-Seq": fmt.Sprint(i)})
		if err := ev.Publish(ctx, &hellopb.SayRequest{Name: fmt.Sprintf("msg-%d", i)}); err != nil {
			return err
		}
		if c.broker == "http" {
			// The HTTP broker sends from goroutines, up to 8 queued messages each with 100 ms
			// pauses between them: one at a time keeps that short.
			time.Sleep(20 * time.Millisecond)
		}
	}
	if c.broker == "http" {
		time.Sleep(2 * time.Second) // the last goroutines' POSTs
	}
	fmt.Printf("PUBLISHED %d\n", c.count)
	return svc.Options().Broker.Disconnect()
}

type event struct {
	Name  string `json:"name"`
	CT    string `json:"content_type"`
	Topic string `json:"topic"`
	ID    string `json:"id"`
	Seq   string `json:"seq"`
}

func sub(args []string) error {
	c := flags("sub", args)
	var mu sync.Mutex
	n := 0
	done := make(chan struct{})
	var svc micro.Service
	svc, err := newService(c, micro.AfterStart(func() error {
		fmt.Println("READY")
		return nil
	}))
	if err != nil {
		return err
	}
	handler := func(ctx context.Context, req *hellopb.SayRequest) error {
		md, _ := metadata.FromContext(ctx)
		get := func(key string) string {
			for k, v := range md {
				if strings.EqualFold(k, key) {
					return v
				}
			}
			return ""
		}
		e := event{Name: req.Name, CT: get("Content-Type"), Topic: get("Micro-Topic"),
			ID: get("Micro-Id"), Seq: get("X-Seq")}
		b, _ := json.Marshal(e)
		mu.Lock()
		defer mu.Unlock()
		fmt.Println(string(b))
		n++
		if n == c.count {
			close(done)
		}
		return nil
	}
	var opts []server.SubscriberOption
	if c.queue != "" {
		opts = append(opts, server.SubscriberQueue(c.queue))
	}
	if err := micro.RegisterSubscriber(c.topic, svc.Server(), handler, opts...); err != nil {
		return err
	}
	if err := svc.Server().Start(); err != nil {
		return err
	}
	for _, fn := range svc.Options().AfterStart {
		fn()
	}
	select {
	case <-done:
		// The last message's POST is answered after the handler returns: give it the time to
		// be written before Stop closes the broker's listener and its connections.
		time.Sleep(300 * time.Millisecond)
	case <-time.After(20 * time.Second):
	}
	return svc.Server().Stop()
}

func goMicroVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "go-micro.dev/v4" {
				return d.Version
			}
		}
	}
	return "unknown"
}
