package gmicro

import (
	"context"
	"flag"
	"fmt"

	"go-micro.dev/v4"
	"go-micro.dev/v4/client"

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
