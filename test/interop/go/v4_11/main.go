// Command gmicro is the go-micro peer of cmicro's interop suite, built against go-micro.dev/v4
// v4.11.0 (see ../gmicro).
package main

import "cmicro.test/interop/gmicro"

func main() {
	gmicro.Main()
}
