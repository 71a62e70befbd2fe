package cni

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTimingLines: with TimingEnv set, every ADD and DEL appends one line naming its steps; without it, nothing
// is written.
func TestTimingLines(t *testing.T) {
	n := newNode(t, "10.62.0.0/16", 26)
	list := n.conflist("1.1.0", "")
	pod := newNetns(t, "t")
	file := filepath.Join(t.TempDir(), "timings")

	r := rt("quiet", pod.Path(), "eth0")
	addOK(t, n, list, r)
	if err := n.cni.DelNetworkList(withTimeout(t), list, r); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Fatalf("timings written without %s: %v", TimingEnv, err)
	}

	t.Setenv(TimingEnv, file) // libcni hands the environment on to the plugin
	r = rt("timed", pod.Path(), "eth0")
	addOK(t, n, list, r)
	if err := n.cni.DelNetworkList(withTimeout(t), list, r); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	want := []struct {
		op    string
		steps []string
	}{
		{"ADD", []string{"total", "parse", "ipam", "netns", "veth", "sysctl", "host", "pod", "print"}},
		{"DEL", []string{"total", "veth", "ipam"}},
	}
	if len(lines) != len(want) {
		t.Fatalf("timing lines = %q, want one ADD and one DEL", lines)
	}
	for i, w := range want {
		f := strings.Fields(lines[i])
		if f[0] != w.op {
			t.Errorf("line %d = %q, want %s", i, lines[i], w.op)
			continue
		}
		var got []string
		for _, kv := range f[1:] {
			k, v, _ := strings.Cut(kv, "=")
			if !strings.HasSuffix(v, "ms") {
				t.Errorf("%s %s=%q, want milliseconds", w.op, k, v)
			}
			got = append(got, k)
		}
		if strings.Join(got, ",") != strings.Join(w.steps, ",") {
			t.Errorf("%s steps = %v, want %v", w.op, got, w.steps)
		}
	}
}
