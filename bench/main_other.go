//go:build !linux

package main

import (
	"fmt"
	"os"
	"runtime"
)

// The bench pins processes to CPUs and reads /proc; it runs only on Linux.
func main() {
	fmt.Fprintf(os.Stderr, "bench: runs on Linux only (it reads /proc and pins processes to CPUs); this is %s\n", runtime.GOOS)
	os.Exit(2)
}
