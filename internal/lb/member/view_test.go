package member

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func addrOf(name string) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, name[0]}), DefaultPort)
}

// sim runs trackers that exchange heartbeats every 200 ms over links that
// can be cut one way.
type sim struct {
	now   time.Time
	nodes map[string]*simNode
	cut   map[[2]string]bool // from, to
	down  map[string]bool
}

type simNode struct {
	tr  *tracker
	seq uint64
}

func newSim(names ...string) *sim {
	s := &sim{now: t0, nodes: map[string]*simNode{}, cut: map[[2]string]bool{}, down: map[string]bool{}}
	peers := map[string]netip.AddrPort{}
	for _, n := range names {
		peers[n] = addrOf(n)
	}
	for _, n := range names {
		tr := newTracker(n, time.Second, 0, t0)
		tr.setPeers(peers)
		s.nodes[n] = &simNode{tr: tr}
	}
	return s
}

func (s *sim) run(d time.Duration) {
	for end := s.now.Add(d); s.now.Before(end); s.now = s.now.Add(200 * time.Millisecond) {
		var sent []heartbeat
		for name, n := range s.nodes {
			if s.down[name] {
				continue
			}
			n.seq++
			sent = append(sent, heartbeat{Name: name, Incarnation: 1, Seq: n.seq, Ready: n.tr.view(s.now).Ready, Heard: n.tr.heardIDs(s.now)})
		}
		for _, h := range sent {
			for to, n := range s.nodes {
				if to != h.Name && !s.down[to] && !s.cut[[2]string{h.Name, to}] {
					n.tr.observe(h, addrOf(h.Name), s.now)
				}
			}
		}
	}
}

// views renders every live node's view as "A:ready[A B C]" sorted by node.
func (s *sim) views() string {
	var out []string
	for name, n := range s.nodes {
		if s.down[name] {
			continue
		}
		v := n.tr.view(s.now)
		r := "standby"
		if v.Ready {
			r = "ready"
		}
		out = append(out, fmt.Sprintf("%s:%s%v", name, r, v.Alive))
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}

func TestViewScenarios(t *testing.T) {
	tests := []struct {
		name  string
		nodes string
		fault func(s *sim)
		want  string
	}{
		{"healthy", "ABC", nil, "A:ready[A B C] B:ready[A B C] C:ready[A B C]"},
		{"A dies", "ABC", func(s *sim) { s.down["A"] = true }, "B:ready[B C] C:ready[B C]"},
		{"A cannot receive", "ABC", func(s *sim) { s.cut[[2]string{"B", "A"}], s.cut[[2]string{"C", "A"}] = true, true },
			"A:standby[] B:ready[B C] C:ready[B C]"},
		{"A cannot send", "ABC", func(s *sim) { s.cut[[2]string{"A", "B"}], s.cut[[2]string{"A", "C"}] = true, true },
			"A:standby[B C] B:ready[B C] C:ready[B C]"},
		{"A-B link cut (the residual duplicate)", "ABC", func(s *sim) { s.cut[[2]string{"A", "B"}], s.cut[[2]string{"B", "A"}] = true, true },
			"A:ready[A C] B:ready[B C] C:ready[A B C]"},
		{"two of three die: the survivor has no quorum", "ABC", func(s *sim) { s.down["B"], s.down["C"] = true, true }, "A:standby[]"},
		{"five nodes, A cut off", "ABCDE", func(s *sim) {
			for _, o := range "BCDE" {
				s.cut[[2]string{"A", string(o)}], s.cut[[2]string{string(o), "A"}] = true, true
			}
		}, "A:standby[] B:ready[B C D E] C:ready[B C D E] D:ready[B C D E] E:ready[B C D E]"},
		{"two nodes, B dies: A fails over", "AB", func(s *sim) { s.down["B"] = true }, "A:ready[A]"},
		{"two nodes, link cut: both claim", "AB", func(s *sim) { s.cut[[2]string{"A", "B"}], s.cut[[2]string{"B", "A"}] = true, true },
			"A:ready[A] B:ready[B]"},
		{"two nodes, B cannot send", "AB", func(s *sim) { s.cut[[2]string{"B", "A"}] = true }, "A:ready[A] B:standby[A]"},
		{"single node", "A", nil, "A:ready[A]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSim(strings.Split(tt.nodes, "")...)
			s.run(3 * time.Second)
			if tt.fault != nil {
				tt.fault(s)
				s.run(3 * time.Second)
			}
			if got := s.views(); got != tt.want {
				t.Errorf("views:\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

// Failure is detected within the timeout: a peer heard last at t is alive
// just before t+timeout and gone at it, and nextChange says when to look.
func TestViewExpiry(t *testing.T) {
	s := newSim("A", "B")
	s.run(2 * time.Second)
	last := s.now.Add(-200 * time.Millisecond) // B's last heartbeat
	s.down["B"] = true
	a := s.nodes["A"].tr
	if next := a.nextChange(s.now); !next.Equal(last.Add(time.Second)) {
		t.Errorf("nextChange = %v, want B's expiry %v", next.Sub(t0), last.Add(time.Second).Sub(t0))
	}
	if v := a.view(last.Add(time.Second - time.Millisecond)); !slices.Contains(v.Heard, "B") {
		t.Errorf("B gone before its timeout: %+v", v)
	}
	if v := a.view(last.Add(time.Second)); slices.Contains(v.Heard, "B") {
		t.Errorf("B still heard at its timeout: %+v", v)
	}
}

func TestViewStartupWait(t *testing.T) {
	tr := newTracker("A", time.Second, 0, t0)
	if tr.view(t0.Add(999 * time.Millisecond)).Ready {
		t.Error("ready before hearing peers for one timeout")
	}
	if !tr.view(t0.Add(time.Second)).Ready {
		t.Error("single node not ready after the start-up wait")
	}
}

func TestObserveRejects(t *testing.T) {
	tr := newTracker("A", time.Second, 0, t0)
	tr.setPeers(map[string]netip.AddrPort{"A": addrOf("A"), "B": addrOf("B")})
	hb := func(inc, seq uint64) heartbeat { return heartbeat{Name: "B", Incarnation: inc, Seq: seq, Ready: true} }
	steps := []struct {
		name string
		h    heartbeat
		src  netip.AddrPort
		want bool
	}{
		{"first", hb(5, 10), addrOf("B"), true},
		{"replay", hb(5, 10), addrOf("B"), false},
		{"older seq", hb(5, 9), addrOf("B"), false},
		{"older incarnation", hb(4, 99), addrOf("B"), false},
		{"newer seq", hb(5, 11), addrOf("B"), true},
		{"restart", hb(6, 1), addrOf("B"), true},
		{"from another address", hb(6, 2), addrOf("C"), false},
		{"from another port", hb(6, 3), netip.AddrPortFrom(addrOf("B").Addr(), 9999), false},
		{"IPv4-mapped source is the same address", hb(6, 4), netip.AddrPortFrom(netip.AddrFrom16(addrOf("B").Addr().As16()), DefaultPort), true},
		{"stranger", heartbeat{Name: "Z", Incarnation: 1, Seq: 1}, addrOf("Z"), false},
		{"self", heartbeat{Name: "A", Incarnation: 1, Seq: 1}, addrOf("A"), false},
	}
	for _, st := range steps {
		if got := tr.observe(st.h, st.src, t0); got != st.want {
			t.Errorf("%s: observe = %v, want %v", st.name, got, st.want)
		}
	}
	// A peer whose address changes is a new machine: what was heard is forgotten.
	tr.setPeers(map[string]netip.AddrPort{"B": addrOf("X")})
	if v := tr.view(t0); len(v.Heard) != 0 {
		t.Errorf("heard %v after B's address changed", v.Heard)
	}
	if !tr.observe(hb(1, 1), addrOf("X"), t0) {
		t.Error("B at its new address with a fresh incarnation was ignored")
	}
}
