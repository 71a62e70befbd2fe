package e2e

// This file sorts last on purpose: go test runs files in name order, and this test
// kills and restarts the whole appliance.

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
)

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }

// A crashed appliance (every process killed, namespaces, links, mounts and cgroups
// left behind) is cleared by the next up, which starts fresh within a minute.
func TestUpAfterCrashClearsLeftoversAndStartsFresh(t *testing.T) {
	for _, p := range app.state.Procs {
		syscall.Kill(p.PID, syscall.SIGKILL)
	}
	// What the kill leaves: containers and shims in the cgroup tree, namespaces, links.
	if out, _ := inNetns(context.Background(), app.state.Nodes[0].Netns, "true"); out != "" {
		t.Fatalf("node namespace gone after the crash: %s", out)
	}
	start := time.Now()
	out, err := app.edgenet("up")
	if err != nil {
		t.Fatalf("up after crash: %v\n%s", err, out)
	}
	if !strings.Contains(out, "clearing leftovers") {
		t.Errorf("up did not notice the leftovers:\n%s", out)
	}
	took := time.Since(start)
	t.Logf("up after crash took %s", took.Round(100*time.Millisecond))
	if err := app.load(); err != nil {
		t.Fatal(err)
	}
	waitNodesRegistered(t, len(app.state.Nodes))
	if took > 90*time.Second {
		t.Errorf("up after crash took %s, want under 90 s", took)
	}
}
