package gmicro

import (
	"context"
	"flag"
	"time"

	"go-micro.dev/v4"
	"go-micro.dev/v4/client"
	"go-micro.dev/v4/errors"
	"go-micro.dev/v4/metadata"

	"cmicro.test/interop/gen/echopb"
)

// echo serves service Echo (cmicro.test.v1) the same way as ../../echo_server.c:
//
//	Echo.Call   echoes the request in echo, status OK, message = the instance name; or runs a
//	            command (request.go): sleep, echo the metadata, say who answers
//	Echo.Fail   answers errors.New(<service name>, request.message, request.i32 or 400)
//	Echo.Empty  answers an empty response
type echo struct {
	name     string
	instance string
	relayTo  string
	client   client.Client
}

func (e *echo) Call(ctx context.Context, req *echopb.EchoRequest, rsp *echopb.EchoResponse) error {
	rsp.Message = e.instance
	switch req.Message {
	case cmdSleep:
		time.Sleep(time.Duration(req.I32) * time.Millisecond)
	case cmdMD:
		md, _ := metadata.FromContext(ctx)
		rsp.Echo = &echopb.EchoRequest{StrMap: map[string]string{}}
		for k, v := range md {
			rsp.Echo.StrMap[k] = v
		}
	case cmdRelay:
		return e.relay(ctx, rsp)
	case cmdWho:
	default:
		rsp.Status = echopb.Status_STATUS_OK
		rsp.Echo = req
	}
	return nil
}

func (e *echo) relay(ctx context.Context, rsp *echopb.EchoResponse) error {
	md, _ := metadata.FromContext(ctx)
	tp, _ := md.Get("Traceparent")
	rsp.Echo = &echopb.EchoRequest{StrMap: map[string]string{}}
	if e.relayTo == "" {
		for k, v := range md {
			rsp.Echo.StrMap[k] = v
		}
	} else {
		next, err := echopb.NewEchoService(e.relayTo, e.client).Call(ctx,
			&echopb.EchoRequest{Message: cmdRelay})
		if err != nil {
			return err
		}
		for k, v := range next.GetEcho().GetStrMap() {
			rsp.Echo.StrMap[k] = v
		}
	}
	rsp.Echo.StrMap["via-"+e.instance] = tp
	return nil
}

func (e *echo) Fail(ctx context.Context, req *echopb.EchoRequest, rsp *echopb.EchoResponse) error {
	code := req.I32
	if code == 0 {
		code = 400
	}
	return errors.New(e.name, req.Message, code)
}

func (e *echo) Empty(ctx context.Context, req *echopb.EmptyRequest, rsp *echopb.EmptyResponse) error {
	return nil
}

func echoServer(args []string) error {
	fs := flag.NewFlagSet("echo-server", flag.ExitOnError)
	reg := registryFlag(fs)
	name := fs.String("name", "cmicro.interop.echo", "service name")
	instance := fs.String("instance", "go", "instance name the answers carry")
	version := fs.String("version", "latest", "service version")
	md := fs.String("metadata", "", "node metadata k=v,k=v")
	addr := fs.String("address", "127.0.0.1:0", "listen address")
	relayTo := fs.String("relay-to", "", "the service cmd:relay calls next")
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
	var svc micro.Service
	opts := []micro.Option{
		micro.Name(*name),
		micro.Version(*version),
		micro.Metadata(parseMetadata(*md)),
		micro.Address(*addr),
		micro.Registry(r),
		micro.AfterStart(func() error { return announce(svc) }),
	}
	if tr != nil {
		opts = append(opts, micro.Transport(tr))
	}
	svc = micro.NewService(opts...)
	if err := echopb.RegisterEchoHandler(svc.Server(), &echo{*name, *instance, *relayTo, svc.Client()}); err != nil {
		return err
	}
	return svc.Run()
}
