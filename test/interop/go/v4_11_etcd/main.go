// Command gmicro is the go-micro peer of cmicro's interop suite, built against go-micro.dev/v4
// v4.11.0 with go-micro/plugins' etcd registry v1.2.0 added as -registry etcd (see ../gmicro).
package main

import (
	"os"
	"strings"

	"cmicro.test/interop/gmicro"
	"github.com/go-micro/plugins/v4/registry/etcd"
	"go-micro.dev/v4/registry"
)

func main() {
	gmicro.Registries["etcd"] = newEtcd
	gmicro.Main()
}

// newEtcd is the plugin's registry at the endpoints of MICRO_REGISTRY_ADDRESS. The plugin reads
// that variable itself but takes it as one address, so that a comma-separated list (what
// go-micro's --registry_address flag splits) would leave it at its default 127.0.0.1:2379: the
// list is split here and the variable cleared before the plugin sees it.
func newEtcd() registry.Registry {
	var addrs []string
	for _, a := range strings.Split(os.Getenv("MICRO_REGISTRY_ADDRESS"), ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, strings.TrimPrefix(a, "http://"))
		}
	}
	os.Unsetenv("MICRO_REGISTRY_ADDRESS")
	return etcd.NewRegistry(registry.Addrs(addrs...))
}
