package main

import (
	"os"
	"runtime/debug"
)

// gcPercent is the GOGC a command runs with: want, unless GOGC or GOMEMLIMIT in the
// environment says otherwise or want is negative (false: leave the runtime alone).
func gcPercent(want int, getenv func(string) string) (int, bool) {
	if want < 0 || getenv("GOGC") != "" || getenv("GOMEMLIMIT") != "" {
		return 0, false
	}
	return want, true
}

// setGCPercent sets the process's GOGC to want as gcPercent decides.
func setGCPercent(want int) {
	if pct, ok := gcPercent(want, os.Getenv); ok {
		debug.SetGCPercent(pct)
	}
}
