package allocator

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"edgenet.io/edgenet/internal/computenet"
)

func ranges(t testing.TB, ss ...string) []computenet.Range {
	t.Helper()
	out := make([]computenet.Range, len(ss))
	for i, s := range ss {
		r, err := computenet.ParseRange(s)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = r
	}
	return out
}

func mustRanges(ss ...string) []computenet.Range {
	out := make([]computenet.Range, len(ss))
	for i, s := range ss {
		out[i] = must(computenet.ParseRange(s))
	}
	return out
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddr(s)
	}
	return out
}

func ports(ss ...string) []Port {
	var out []Port
	for _, s := range ss {
		proto, num, _ := strings.Cut(s, "/")
		var n uint16
		for _, c := range num {
			n = n*10 + uint16(c-'0')
		}
		out = append(out, Port{Protocol: Protocol(strings.ToUpper(proto)), Port: n})
	}
	return out
}

// svc4 is a single-stack IPv4 Service exposing TCP/80.
func svc4(key string) Service {
	return Service{Key: key, Families: []Family{IPv4}, Ports: ports("tcp/80")}
}

func svc6(key string) Service {
	return Service{Key: key, Families: []Family{IPv6}, Ports: ports("tcp/80")}
}

func svcDual(key string, policy FamilyPolicy, fams ...Family) Service {
	if len(fams) == 0 {
		fams = []Family{IPv4, IPv6}
	}
	return Service{Key: key, Families: fams, Policy: policy, Ports: ports("tcp/80")}
}

func with(s Service, f func(*Service)) Service { f(&s); return s }

func newAlloc(t testing.TB, pools ...Pool) *Allocator {
	t.Helper()
	a := New()
	if _, err := a.SetPools(pools); err != nil {
		t.Fatal(err)
	}
	return a
}

// step is one operation of a scenario and what it must yield.
type step struct {
	desc     string
	assign   *Service
	release  string
	setPools []Pool
	want     []string // addresses of the assignment, in order
	wantErr  error    // a sentinel such as ErrPoolExhausted
	wantMsg  string   // substring of the error message
}

func assignStep(desc string, s Service, want ...string) step {
	return step{desc: desc, assign: &s, want: want}
}

func failStep(desc string, s Service, sentinel error, msg string) step {
	return step{desc: desc, assign: &s, wantErr: sentinel, wantMsg: msg}
}

// run plays steps in order on a. A failed Assign must leave every assignment
// as it was; a successful one must be repeatable with the same result.
func run(t *testing.T, a *Allocator, steps []step) {
	t.Helper()
	for i, st := range steps {
		switch {
		case st.release != "":
			a.Release(st.release)
		case st.setPools != nil:
			if _, err := a.SetPools(st.setPools); err != nil {
				t.Fatalf("step %d %q: SetPools: %v", i, st.desc, err)
			}
		case st.assign != nil:
			before := a.Assignments()
			got, err := a.Assign(*st.assign)
			if st.wantErr != nil {
				if err == nil {
					t.Errorf("step %d %q: Assign = %v, want error %v", i, st.desc, got.Addrs(), st.wantErr)
					continue
				}
				if !errorIs(err, st.wantErr) {
					t.Errorf("step %d %q: error %v, want kind %v", i, st.desc, err, st.wantErr)
				}
				if !strings.Contains(err.Error(), st.wantMsg) {
					t.Errorf("step %d %q: error %q does not say %q", i, st.desc, err, st.wantMsg)
				}
				if after := a.Assignments(); !equalAssignments(before, after) {
					t.Errorf("step %d %q: failed Assign changed state\nbefore %v\nafter  %v", i, st.desc, before, after)
				}
				continue
			}
			if err != nil {
				t.Errorf("step %d %q: Assign: %v", i, st.desc, err)
				continue
			}
			if g := strs(got.Addrs()); !slices.Equal(g, st.want) {
				t.Errorf("step %d %q: Assign = %v, want %v", i, st.desc, g, st.want)
			}
			again, err := a.Assign(*st.assign)
			if err != nil || !slices.Equal(strs(again.Addrs()), strs(got.Addrs())) {
				t.Errorf("step %d %q: repeated Assign = %v, %v; want %v", i, st.desc, again.Addrs(), err, got.Addrs())
			}
		}
	}
}

func errorIs(err, target error) bool {
	r, ok := ReasonOf(err)
	return ok && r == target.(*Error).Reason
}

func strs(as []netip.Addr) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.String()
	}
	return out
}

func equalAssignments(x, y []Assignment) bool {
	return slices.EqualFunc(x, y, func(p, q Assignment) bool {
		return p.Service == q.Service && slices.Equal(p.IPs, q.IPs)
	})
}
