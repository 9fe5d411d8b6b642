//go:build !cuda

package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "lathe-cuda: this binary was built without CUDA support; build it with `make lathe-cuda` (go build -tags cuda)")
	os.Exit(2)
}
