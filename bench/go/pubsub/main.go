// Command gomicro-pubsub is the go-micro v4.11 side of cmicro's pub/sub benchmark
// (bench/broker.sh), with bench/pubsub_cmicro.c's command line and output:
//
//	gomicro-pubsub version                        the go-micro version it was built with
//	gomicro-pubsub sub BROKER COUNT               READY once subscribed, then
//	                                              RESULT n= rate= p50_us= p99_us= after COUNT
//	                                              messages, IDLE_MS (default 3000) without one,
//	                                              or 60 s
//	gomicro-pubsub pub BROKER COUNT SIZE RATE     publishes COUNT messages of SIZE payload bytes,
//	                                              RATE per second (0: as fast as Publish returns);
//	                                              prints PUBLISHED <ok> <failed>
//
// BROKER is nats (github.com/go-micro/plugins/v4/broker/nats v1.2.0, the server at
// MICRO_BROKER_ADDRESS, a memory registry) or http (go-micro's HTTP broker, its subscriptions in
// the Consul registry at CONSUL_HTTP_ADDR). The message is google.protobuf.BytesValue (the wire
// form of bench.EchoMsg) published with micro.NewEvent(topic, client).Publish and received by a
// micro.RegisterSubscriber handler; the first 8 bytes of its payload are the publish time
// (CLOCK_REALTIME ns, little-endian). Everything listens on 127.0.0.1.
package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"runtime/debug"
	"sort"
	"strconv"
	"sync"
	"time"

	natsbroker "github.com/go-micro/plugins/v4/broker/nats"
	"github.com/go-micro/plugins/v4/registry/consul"
	"github.com/nats-io/nats.go"
	"go-micro.dev/v4"
	"go-micro.dev/v4/broker"
	"go-micro.dev/v4/client"
	"go-micro.dev/v4/logger"
	"go-micro.dev/v4/registry"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

const topic = "bench.pubsub"

func main() {
	logger.DefaultLogger = logger.NewLogger(logger.WithLevel(logger.ErrorLevel))
	var err error
	switch {
	case len(os.Args) == 2 && os.Args[1] == "version":
		fmt.Println(goMicroVersion())
	case len(os.Args) == 4 && os.Args[1] == "sub":
		err = sub(os.Args[2], atoi(os.Args[3]))
	case len(os.Args) == 6 && os.Args[1] == "pub":
		err = pub(os.Args[2], atoi(os.Args[3]), atoi(os.Args[4]), atoi(os.Args[5]))
	default:
		err = fmt.Errorf("usage: gomicro-pubsub version | sub BROKER COUNT | pub BROKER COUNT SIZE RATE")
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "gomicro-pubsub: %v\n", err)
		os.Exit(1)
	}
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

func newService(name string, opts ...micro.Option) (micro.Service, error) {
	var b broker.Broker
	var r registry.Registry
	switch name {
	case "nats":
		r = registry.NewMemoryRegistry()
		nopts := nats.GetDefaultOptions()
		nopts.Timeout = 10 * time.Second
		b = natsbroker.NewBroker(broker.Addrs(os.Getenv("MICRO_BROKER_ADDRESS")),
			natsbroker.Options(nopts))
	case "http":
		addr := os.Getenv("CONSUL_HTTP_ADDR")
		if addr == "" {
			return nil, fmt.Errorf("CONSUL_HTTP_ADDR is not set")
		}
		r = consul.NewRegistry(registry.Addrs(addr))
		b = broker.NewBroker(broker.Registry(r))
	default:
		return nil, fmt.Errorf("unknown broker %q", name)
	}
	base := []micro.Option{micro.Name("bench-pubsub"), micro.Address("127.0.0.1:0"),
		micro.Registry(r), micro.Broker(b)}
	return micro.NewService(append(base, opts...)...), nil
}

func now() uint64 { return uint64(time.Now().UnixNano()) }

func pub(name string, count, size, rate int) error {
	if size < 8 {
		return fmt.Errorf("SIZE is at least 8")
	}
	svc, err := newService(name)
	if err != nil {
		return err
	}
	if err := svc.Options().Broker.Connect(); err != nil {
		return err
	}
	// protobuf, as cmicro's client publishes by default (go-micro's client default is JSON).
	cl := client.NewClient(client.Broker(svc.Options().Broker),
		client.Registry(svc.Options().Registry), client.ContentType("application/protobuf"))
	ev := micro.NewEvent(topic, cl)
	payload := make([]byte, size)
	ok, failed := 0, 0
	t0 := time.Now()
	for i := 0; i < count; i++ {
		if rate > 0 {
			due := t0.Add(time.Duration(int64(i) * int64(time.Second) / int64(rate)))
			time.Sleep(time.Until(due))
		}
		binary.LittleEndian.PutUint64(payload, now())
		if err := ev.Publish(context.Background(), &wrapperspb.BytesValue{Value: payload}); err != nil {
			failed++
		} else {
			ok++
		}
	}
	if name == "http" {
		time.Sleep(time.Second) // the HTTP broker's last POSTs run in goroutines
	}
	fmt.Printf("PUBLISHED %d %d\n", ok, failed)
	return svc.Options().Broker.Disconnect()
}

func sub(name string, want int) error {
	idle := 3 * time.Second
	if v := atoi(os.Getenv("IDLE_MS")); v > 0 {
		idle = time.Duration(v) * time.Millisecond
	}
	var mu sync.Mutex
	lat := make([]uint64, 0, want)
	first, last := ^uint64(0), uint64(0)
	done := make(chan struct{})
	svc, err := newService(name)
	if err != nil {
		return err
	}
	handler := func(ctx context.Context, req *wrapperspb.BytesValue) error {
		t := now()
		var sent uint64
		if len(req.Value) >= 8 {
			sent = binary.LittleEndian.Uint64(req.Value)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(lat) >= want {
			return nil
		}
		if sent < first {
			first = sent
		}
		last = t
		if t > sent {
			lat = append(lat, t-sent)
		} else {
			lat = append(lat, 0)
		}
		if len(lat) == want {
			close(done)
		}
		return nil
	}
	if err := micro.RegisterSubscriber(topic, svc.Server(), handler); err != nil {
		return err
	}
	if err := svc.Server().Start(); err != nil {
		return err
	}
	fmt.Println("READY")
	deadline := time.Now().Add(60 * time.Second)
wait:
	for {
		select {
		case <-done:
			break wait
		case <-time.After(50 * time.Millisecond):
		}
		mu.Lock()
		stale := len(lat) > 0 && now()-last > uint64(idle)
		mu.Unlock()
		if stale || time.Now().After(deadline) {
			break
		}
	}
	mu.Lock()
	n := len(lat)
	var p50, p99, rate float64
	if n > 0 {
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		p50 = float64(lat[n*50/100]) / 1e3
		p99 = float64(lat[n*99/100]) / 1e3
		if last > first {
			rate = float64(n) * 1e9 / float64(last-first)
		}
	}
	mu.Unlock()
	fmt.Printf("RESULT n=%d rate=%.0f p50_us=%.1f p99_us=%.1f\n", n, rate, p50, p99)
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
