package gmicro

import (
	"context"
	"flag"
	"fmt"

	"go-micro.dev/v4"
	"go-micro.dev/v4/client"
	debugpb "go-micro.dev/v4/debug/proto"

	"cmicro.test/interop/gen/hellopb"
)

// HelloName is the seed's service name.
const HelloName = "registry-consul.service"

type hello struct{}

func (hello) Say(ctx context.Context, req *hellopb.SayRequest, rsp *hellopb.SayResponse) error {
	rsp.Message = "Hello " + req.Name
	return nil
}

// helloServer is the seed's go-micro server: registry-consul.service with Hello.Say.
func helloServer(args []string) error {
	fs := flag.NewFlagSet("hello-server", flag.ExitOnError)
	reg := registryFlag(fs)
	addr := fs.String("address", "127.0.0.1:0", "listen address")
	fs.Parse(args)
	r, err := newRegistry(*reg)
	if err != nil {
		return err
	}
	var svc micro.Service
	svc = micro.NewService(
		micro.Name(HelloName),
		micro.Address(*addr),
		micro.Registry(r),
		micro.AfterStart(func() error { return announce(svc) }),
	)
	if err := hellopb.RegisterHelloHandler(svc.Server(), hello{}); err != nil {
		return err
	}
	return svc.Run()
}

// helloClient calls Hello.Say on registry-consul.service and prints the answer.
func helloClient(args []string) error {
	fs := flag.NewFlagSet("hello-client", flag.ExitOnError)
	reg := registryFlag(fs)
	ct := fs.String("content-type", "application/json", "request content type")
	fs.Parse(args)
	r, err := newRegistry(*reg)
	if err != nil {
		return err
	}
	name := "BOSSMA"
	if fs.NArg() > 0 {
		name = fs.Arg(0)
	}
	svc := micro.NewService(micro.Registry(r), micro.Client(client.NewClient(
		client.Registry(r), client.ContentType(*ct))))
	rsp, err := hellopb.NewHelloService(HelloName, svc.Client()).Say(context.Background(),
		&hellopb.SayRequest{Name: name})
	if err != nil {
		return err
	}
	fmt.Println(rsp.Message)
	return nil
}

// announce prints the registered node once the server has started (and registered).
func announce(svc micro.Service) error {
	o := svc.Server().Options()
	fmt.Printf("REGISTERED %s-%s %s %s\n", o.Name, o.Id, o.Address, GoMicroVersion())
	return nil
}

// debugClient asks a service by name for go-micro's Debug.Health and Debug.Stats, as go-micro's
// tooling does, and prints "status=S requests=N errors=E uptime_ok=B threads_ok=B".
func debugClient(args []string) error {
	fs := flag.NewFlagSet("debug-client", flag.ExitOnError)
	reg := registryFlag(fs)
	ct := fs.String("content-type", "application/protobuf", "request content type")
	fs.Parse(args)
	r, err := newRegistry(*reg)
	if err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("usage: debug-client [flags] SERVICE")
	}
	svc := micro.NewService(micro.Registry(r), micro.Client(client.NewClient(
		client.Registry(r), client.ContentType(*ct))))
	d := debugpb.NewDebugService(fs.Arg(0), svc.Client())
	h, err := d.Health(context.Background(), &debugpb.HealthRequest{Service: fs.Arg(0)})
	if err != nil {
		return err
	}
	st, err := d.Stats(context.Background(), &debugpb.StatsRequest{Service: fs.Arg(0)})
	if err != nil {
		return err
	}
	fmt.Printf("status=%s requests=%d errors=%d uptime_ok=%t threads_ok=%t\n", h.Status,
		st.Requests, st.Errors, st.Started > 0 && st.Timestamp >= st.Started,
		st.Threads > 0 && st.Memory > 0)
	return nil
}
