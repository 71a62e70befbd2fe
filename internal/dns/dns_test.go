package dns

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestUpstreams(t *testing.T) {
	got, err := upstreams(Config{Upstreams: []string{"192.0.2.1", "[2001:db8::1]:5353", "192.0.2.2:53"}})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"192.0.2.1:53", "[2001:db8::1]:5353", "192.0.2.2:53"}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if _, err := upstreams(Config{Upstreams: []string{"dns.example"}}); err == nil {
		t.Error("accepted a host name")
	}
	p := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(p, []byte("search x.local\nnameserver 192.0.2.53\nnameserver fd00::53\noptions ndots:5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err = upstreams(Config{ResolvConf: p})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"192.0.2.53:53", "[fd00::53]:53"}; !slices.Equal(got, want) {
		t.Errorf("resolv.conf: got %v, want %v", got, want)
	}
}
