// Package gmicro holds the go-micro peers of cmicro's interop suite (test/interop/): one
// program, built once against go-micro v4.11.0 (../v4_11) and once against v4.9.0 (../v4_9),
// with one subcommand per role:
//
//	gmicro version                          the go-micro version it was built with
//	gmicro hello-server                     registers registry-consul.service, Hello.Say
//	gmicro hello-client [name]              calls Hello.Say by name, prints the answer
//	gmicro echo-server -name N -instance I  serves service Echo of test/proto/echo.proto
//	gmicro echo-client -name N              runs the commands it reads on stdin (see echo_client.go)
//	gmicro registry get NAME | list         prints what the go-micro registry returns, as JSON
//	gmicro debug-client NAME                calls Debug.Health and Debug.Stats, prints both
//	gmicro stream-server -name N            serves service Streamer of test/proto/stream.proto
//	gmicro stream-client -name N            runs stream commands read on stdin (see stream.go)
//
// echo-server and echo-client take -tls-cert, -tls-key, -tls-ca and -tls (see tls.go): go-micro's
// HTTP transport with transport.TLSConfig.
//
// Every subcommand takes -registry mdns|consul|NAME (default: $MICRO_REGISTRY, else mdns). Consul
// is go-micro/plugins' registry at $CONSUL_HTTP_ADDR; other names are those a main package adds
// to Registries (../v4_11_etcd adds go-micro/plugins' etcd registry). mDNS is go-micro's own, and the program
// refuses to use it outside the private network namespace test/mdns/run-netns.sh makes.
// Servers listen on 127.0.0.1:0 only.
package gmicro

import (
	"flag"
	"fmt"
	"net"
	"os"
	"runtime/debug"
	"strings"

	"github.com/go-micro/plugins/v4/registry/consul"
	"go-micro.dev/v4/registry"
)

// Main runs the subcommand named by os.Args[1].
func Main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: gmicro version|hello-server|hello-client|echo-server|"+
			"echo-client|registry [flags]")
		os.Exit(2)
	}
	cmd, args := os.Args[1], os.Args[2:]
	var err error
	switch cmd {
	case "version":
		fmt.Println(GoMicroVersion())
	case "hello-server":
		err = helloServer(args)
	case "hello-client":
		err = helloClient(args)
	case "echo-server":
		err = echoServer(args)
	case "echo-client":
		err = echoClient(args)
	case "registry":
		err = registryTool(args)
	case "debug-client":
		err = debugClient(args)
	case "stream-server":
		err = streamServer(args)
	case "stream-client":
		err = streamClient(args)
	case "stream-conn-probe":
		err = streamConnProbe(args)
	default:
		err = fmt.Errorf("unknown subcommand %q", cmd)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "gmicro %s: %v\n", cmd, err)
		os.Exit(1)
	}
}

// GoMicroVersion is the version of go-micro.dev/v4 linked into this binary.
func GoMicroVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if m.Path == "go-micro.dev/v4" {
				if m.Replace != nil {
					return m.Replace.Version
				}
				return m.Version
			}
		}
	}
	return "unknown"
}

// registryFlag adds -registry to fs.
func registryFlag(fs *flag.FlagSet) *string {
	def := os.Getenv("MICRO_REGISTRY")
	if def == "" {
		def = "mdns"
	}
	return fs.String("registry", def, "mdns, consul or one of Registries")
}

// Registries holds the registries a main package adds by name (their plugins stay out of the
// modules that do not need them).
var Registries = map[string]func() registry.Registry{}

// newRegistry builds the registry by name and makes it go-micro's default, so that no part of
// go-micro falls back to the mDNS registry it creates at package init.
func newRegistry(name string) (registry.Registry, error) {
	var r registry.Registry
	switch name {
	case "consul":
		var opts []registry.Option
		if a := os.Getenv("CONSUL_HTTP_ADDR"); a != "" {
			opts = append(opts, registry.Addrs(a))
		}
		r = consul.NewRegistry(opts...)
	case "mdns":
		if err := requirePrivateNetns(); err != nil {
			return nil, err
		}
		r = registry.NewRegistry()
	default:
		mk, ok := Registries[name]
		if !ok {
			return nil, fmt.Errorf("unknown registry %q (mdns or consul)", name)
		}
		r = mk()
	}
	registry.DefaultRegistry = r
	return r, nil
}

// requirePrivateNetns refuses mDNS outside the namespace run-netns.sh makes: the marker must
// be set, the namespace must differ from the one the wrapper started in, and no interface but
// loopback may be up (go-micro's mDNS multicasts on every interface).
func requirePrivateNetns() error {
	self, _ := os.Readlink("/proc/self/ns/net")
	parent := os.Getenv("CMICRO_TEST_PARENT_NETNS")
	why := ""
	switch {
	case os.Getenv("CMICRO_TEST_NETNS") != "1":
		why = "CMICRO_TEST_NETNS is not set"
	case self == "" || parent == "" || self == parent:
		why = "this is the network namespace the wrapper started in"
	}
	if why == "" {
		ifs, err := net.Interfaces()
		if err != nil {
			why = "cannot list the interfaces"
		}
		for _, i := range ifs {
			if i.Flags&net.FlagUp != 0 && i.Flags&net.FlagLoopback == 0 {
				why = "interface " + i.Name + " is up"
			}
		}
	}
	if why != "" {
		return fmt.Errorf("mDNS runs only inside a private network namespace with loopback "+
			"alone (%s); use test/mdns/run-netns.sh", why)
	}
	return nil
}

// parseMetadata reads "k=v,k=v".
func parseMetadata(s string) map[string]string {
	md := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok && k != "" {
			md[k] = v
		}
	}
	return md
}
