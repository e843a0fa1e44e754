package gmicro

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"time"

	"go-micro.dev/v4/registry"
)

// registryTool prints what the go-micro registry returns, as encoding/json writes go-micro's
// registry structs (the form the mDNS TXT and Consul e- tags carry):
//
//	registry get NAME [-nodes N] [-wait MS]   GetService(NAME): a JSON array of services
//	                                          (one per version), polled until the versions hold
//	                                          N nodes in all or MS pass
//	registry list [-want NAME] [-wait MS]     ListServices(): a JSON array of names, sorted,
//	                                          polled until NAME is among them or MS pass
func registryTool(args []string) error {
	fs := flag.NewFlagSet("registry", flag.ExitOnError)
	reg := registryFlag(fs)
	nodes := fs.Int("nodes", 1, "get: wait for this many nodes")
	want := fs.String("want", "", "list: wait for this name")
	wait := fs.Int("wait", 3000, "milliseconds to poll")
	fs.Parse(args)
	if fs.NArg() < 1 {
		return fmt.Errorf("usage: registry [-registry R] get NAME | list")
	}
	r, err := newRegistry(*reg)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(time.Duration(*wait) * time.Millisecond)
	var out interface{}
	switch fs.Arg(0) {
	case "get":
		if fs.NArg() < 2 {
			return fmt.Errorf("registry get NAME")
		}
		for {
			svcs, err := r.GetService(fs.Arg(1))
			n := 0
			for _, s := range svcs {
				n += len(s.Nodes)
			}
			if err == nil && n >= *nodes || time.Now().After(deadline) {
				if err != nil && err != registry.ErrNotFound {
					return err
				}
				if svcs == nil {
					svcs = []*registry.Service{}
				}
				out = svcs
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	case "list":
		for {
			svcs, err := r.ListServices()
			if err != nil {
				return err
			}
			names := []string{}
			found := *want == ""
			for _, s := range svcs {
				names = append(names, s.Name)
				found = found || s.Name == *want
			}
			sort.Strings(names)
			if found || time.Now().After(deadline) {
				out = names
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	default:
		return fmt.Errorf("unknown registry command %q", fs.Arg(0))
	}
	enc := json.NewEncoder(os.Stdout)
	return enc.Encode(out)
}
