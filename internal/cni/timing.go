package cni

import (
	"fmt"
	"os"
	"strings"
	"time"
)

// TimingEnv names the environment variable that, set to a file path, makes the plugin append one line per call
// with the time each step took ("ADD total=9.1ms ipam=1.2ms veth=3.0ms ..."). bench/cnibench sets it to break
// ADD and DEL latency down; runtimes pass their environment to plugins, so it also works under containerd.
const TimingEnv = "EDGENET_CNI_TIMING"

// timing records step durations of one call; the zero value (and nil) records nothing.
type timing struct {
	on    bool
	start time.Time
	last  time.Time
	steps []string
}

func newTiming() *timing {
	now := time.Now()
	return &timing{on: os.Getenv(TimingEnv) != "", start: now, last: now}
}

// step closes the step that began at the previous mark.
func (t *timing) step(name string) {
	if t == nil || !t.on {
		return
	}
	now := time.Now()
	t.steps = append(t.steps, fmt.Sprintf("%s=%s", name, fmtMS(now.Sub(t.last))))
	t.last = now
}

// done appends the line for op; errors writing it are ignored, as timing must never fail a call.
func (t *timing) done(op string) {
	if t == nil || !t.on {
		return
	}
	line := fmt.Sprintf("%s total=%s %s\n", op, fmtMS(time.Since(t.start)), strings.Join(t.steps, " "))
	f, err := os.OpenFile(os.Getenv(TimingEnv), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return
	}
	_, _ = f.WriteString(line)
	_ = f.Close()
}

func fmtMS(d time.Duration) string { return fmt.Sprintf("%.3fms", float64(d.Microseconds())/1000) }
