package multicall

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestPluginSkipsKubernetesInit builds the edgenet binary, calls it as each plugin with GODEBUG=inittrace=1 and
// checks that it answers VERSION having initialized the plugin's packages and none of the Kubernetes client ones
// (whose inits are most of the binary's start-up cost), and that called as edgenet it still initializes them.
func TestPluginSkipsKubernetesInit(t *testing.T) {
	if testing.Short() {
		t.Skip("builds cmd/edgenet")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "edgenet")
	build := exec.Command("go", "build", "-o", bin, "edgenet.io/edgenet/cmd/edgenet")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	run := func(t *testing.T, name string, args []string, env ...string) (stdout string, inits []string) {
		t.Helper()
		link := filepath.Join(dir, name)
		if err := os.Symlink(bin, link); err != nil && !os.IsExist(err) {
			t.Fatal(err)
		}
		cmd := exec.Command(link, args...)
		cmd.Env = append([]string{"GODEBUG=inittrace=1", "PATH=" + os.Getenv("PATH")}, env...)
		var errb strings.Builder
		cmd.Stderr = &errb
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, errb.String())
		}
		for line := range strings.Lines(errb.String()) {
			if f := strings.Fields(line); len(f) > 1 && f[0] == "init" {
				inits = append(inits, f[1])
			}
		}
		return string(out), inits
	}
	heavy := func(inits []string) []string {
		var h []string
		for _, p := range inits {
			if strings.HasPrefix(p, "k8s.io/client-go/") || strings.HasPrefix(p, "k8s.io/api/") {
				h = append(h, p)
			}
		}
		return h
	}
	for _, name := range []string{"edgenet-cni", "loopback"} {
		t.Run(name, func(t *testing.T) {
			out, inits := run(t, name, nil, "CNI_COMMAND=VERSION")
			var v struct {
				CNIVersion        string   `json:"cniVersion"`
				SupportedVersions []string `json:"supportedVersions"`
			}
			if err := json.Unmarshal([]byte(out), &v); err != nil || len(v.SupportedVersions) == 0 {
				t.Fatalf("VERSION answered %q (%v), want the plugin's version info", out, err)
			}
			if !slices.Contains(inits, "edgenet.io/edgenet/internal/cni") {
				t.Errorf("package cni was not initialized; inits: %v", inits)
			}
			if h := heavy(inits); len(h) > 0 {
				t.Errorf("called as %s, the binary initialized Kubernetes client packages: %v", name, h)
			}
		})
	}
	t.Run("edgenet", func(t *testing.T) {
		out, inits := run(t, "edgenet", []string{"version"}, "CNI_COMMAND=VERSION")
		if !strings.HasPrefix(out, "edgenet ") {
			t.Errorf("edgenet version printed %q", out)
		}
		if len(heavy(inits)) == 0 {
			t.Errorf("called as edgenet, no Kubernetes client package was initialized; is the check blind? inits: %v", inits)
		}
	})
}
