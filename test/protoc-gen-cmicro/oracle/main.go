// Command oracle prints the registry Value trees that go-micro v4 itself publishes for the
// methods of the test protos, one JSON line per endpoint, so that the tables
// protoc-gen-cmicro generates can be checked against the real thing. It calls go-micro's own
// (unexported) server.extractValue on the structs protoc-gen-go generated. Run it through
// ../regen-values.sh, which generates the Go code under gen/ first.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"strings"
	_ "unsafe" // for go:linkname

	"go-micro.dev/v4/registry"
	_ "go-micro.dev/v4/server"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	_ "cmicro.test/oracle/gen/echo"
	_ "cmicro.test/oracle/gen/hello"
	_ "cmicro.test/oracle/gen/naming"
)

//go:linkname extractValue go-micro.dev/v4/server.extractValue
func extractValue(v reflect.Type, d int) *registry.Value

type endpoint struct {
	Name     string          `json:"name"`
	Request  *registry.Value `json:"request"`
	Response *registry.Value `json:"response"`
}

// camel upper-cases the first letter and each letter after an underscore, dropping the
// underscore before a lower-case letter, as protoc-gen-micro names Go handler types and methods.
func camel(s string) string {
	var b strings.Builder
	upper := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' && i+1 < len(s) && s[i+1] >= 'a' && s[i+1] <= 'z' {
			upper = true
			continue
		}
		if upper && c >= 'a' && c <= 'z' {
			c -= 'a' - 'A'
		}
		upper = c >= '0' && c <= '9'
		b.WriteByte(c)
	}
	return b.String()
}

func goType(name protoreflect.FullName) reflect.Type {
	mt, err := protoregistry.GlobalTypes.FindMessageByName(name)
	if err != nil {
		fmt.Fprintln(os.Stderr, "oracle:", err)
		os.Exit(1)
	}
	return reflect.TypeOf(mt.Zero().Interface())
}

func main() {
	enc := json.NewEncoder(os.Stdout)
	for _, path := range os.Args[1:] {
		fd, err := protoregistry.GlobalFiles.FindFileByPath(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, "oracle:", err)
			os.Exit(1)
		}
		for i := 0; i < fd.Services().Len(); i++ {
			sd := fd.Services().Get(i)
			for k := 0; k < sd.Methods().Len(); k++ {
				md := sd.Methods().Get(k)
				ep := endpoint{
					Name:     camel(string(sd.Name())) + "." + camel(string(md.Name())),
					Request:  extractValue(goType(md.Input().FullName()), 0),
					Response: extractValue(goType(md.Output().FullName()), 0),
				}
				if err := enc.Encode(&ep); err != nil {
					fmt.Fprintln(os.Stderr, "oracle:", err)
					os.Exit(1)
				}
			}
		}
	}
}
