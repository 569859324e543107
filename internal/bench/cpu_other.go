//go:build !linux

package bench

import (
	"errors"
	"time"
)

var errNoThreadCPU = errors.New("the floor needs per-thread CPU times (Linux)")

func threadCPU() (time.Duration, error)  { return 0, errNoThreadCPU }
func processCPU() (time.Duration, error) { return 0, errNoThreadCPU }
