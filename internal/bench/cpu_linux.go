package bench

import (
	"time"

	"golang.org/x/sys/unix"
)

// threadCPU returns the CPU time (user + system) of the calling thread:
// call it from a goroutine locked to its thread.
func threadCPU() (time.Duration, error) {
	return rusage(unix.RUSAGE_THREAD)
}

// processCPU returns the CPU time (user + system) of this process.
func processCPU() (time.Duration, error) {
	return rusage(unix.RUSAGE_SELF)
}

func rusage(who int) (time.Duration, error) {
	var ru unix.Rusage
	if err := unix.Getrusage(who, &ru); err != nil {
		return 0, err
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}
