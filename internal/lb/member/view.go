package member

import (
	"net/netip"
	"slices"
	"time"
)

// View is one node's picture of the cluster at an instant.
type View struct {
	// Ready reports whether this node may announce (see the package doc).
	Ready bool
	// Alive lists, sorted, the nodes that may announce now: self if Ready,
	// and every peer heard within the timeout whose own heartbeat says it is
	// ready.
	Alive []string
	// Heard lists, sorted, the peers heard within the timeout, ready or not.
	Heard []string
	// Members is the number of configured members, self included.
	Members int
	// Quorum is the number of members (self included) this node must hear,
	// and be heard by, to be Ready.
	Quorum int
}

func (v View) equal(o View) bool {
	return v.Ready == o.Ready && v.Members == o.Members && v.Quorum == o.Quorum &&
		slices.Equal(v.Alive, o.Alive) && slices.Equal(v.Heard, o.Heard)
}

type peerState struct {
	addr      netip.AddrPort
	known     bool // a heartbeat was accepted
	inc, seq  uint64
	lastHeard time.Time
	since     time.Time // start of the current unbroken run of heartbeats
	ready     bool
	hearsMe   bool
}

// tracker is the pure state of membership: it is fed accepted heartbeats with
// the time they arrived and answers what the view is at a given time. Member
// adds the sockets and the clock.
type tracker struct {
	self    string
	selfID  nodeID
	timeout time.Duration
	quorum  int // 0: derive from the member count
	started time.Time
	peers   map[string]*peerState
}

func newTracker(self string, timeout time.Duration, quorum int, now time.Time) *tracker {
	return &tracker{self: self, selfID: idOf(self), timeout: timeout, quorum: quorum, started: now, peers: map[string]*peerState{}}
}

// setPeers replaces the peer list; peers that stay keep what was heard of
// them, so a Node update that does not change the address costs nothing.
// An entry for self is ignored (callers list every Node).
func (t *tracker) setPeers(peers map[string]netip.AddrPort) {
	for name := range t.peers {
		if _, ok := peers[name]; !ok {
			delete(t.peers, name)
		}
	}
	for name, addr := range peers {
		if name == t.self {
			continue
		}
		addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
		if p, ok := t.peers[name]; ok {
			if p.addr != addr {
				*p = peerState{addr: addr} // another machine now: forget the old one
			}
			continue
		}
		t.peers[name] = &peerState{addr: addr}
	}
}

// observe records a heartbeat that arrived from src at now. It reports false
// (and changes nothing) for a stranger, a packet from an address and port
// that are not the sender's, or an old or replayed (incarnation, seq).
func (t *tracker) observe(h heartbeat, src netip.AddrPort, now time.Time) bool {
	p, ok := t.peers[h.Name]
	if !ok || p.addr != netip.AddrPortFrom(src.Addr().Unmap(), src.Port()) {
		return false
	}
	if p.known && (h.Incarnation < p.inc || (h.Incarnation == p.inc && h.Seq <= p.seq)) {
		return false
	}
	if !t.heardAt(p, now) {
		p.since = now
	}
	p.known, p.inc, p.seq, p.lastHeard = true, h.Incarnation, h.Seq, now
	p.ready = h.Ready
	p.hearsMe = slices.Contains(h.Heard, t.selfID)
	return true
}

func (t *tracker) heardAt(p *peerState, now time.Time) bool {
	return p.known && now.Sub(p.lastHeard) < t.timeout
}

func (t *tracker) members() int { return len(t.peers) + 1 }

// quorumFor is a strict majority, except that one or two members need only
// themselves: with two, a dead peer and a cut link look the same, and we
// choose failover (availability) over silence.
func (t *tracker) quorumFor() int {
	if t.quorum > 0 {
		return t.quorum
	}
	n := t.members()
	if n <= 2 {
		return 1
	}
	return n/2 + 1
}

func (t *tracker) view(now time.Time) View {
	v := View{Members: t.members(), Quorum: t.quorumFor()}
	heardBy := 0
	var readyPeers []string
	for name, p := range t.peers {
		if !t.heardAt(p, now) {
			continue
		}
		v.Heard = append(v.Heard, name)
		// A peer we started hearing less than a timeout ago may not have
		// heard us yet: counting it as hearing us keeps a healed partition
		// from making us stand down for a round.
		if p.hearsMe || now.Sub(p.since) < t.timeout {
			heardBy++
		}
		if p.ready {
			readyPeers = append(readyPeers, name)
		}
	}
	heard := len(v.Heard)
	v.Ready = now.Sub(t.started) >= t.timeout && // give every live peer a chance to be heard first
		heard+1 >= v.Quorum && heardBy+1 >= v.Quorum &&
		(heard == 0 || heardBy > 0) // peers hear nothing from us: they have taken over
	v.Alive = readyPeers
	if v.Ready {
		v.Alive = append(v.Alive, t.self)
	}
	slices.Sort(v.Alive)
	slices.Sort(v.Heard)
	return v
}

// heardIDs are the IDs to put in our next heartbeat.
func (t *tracker) heardIDs(now time.Time) []nodeID {
	var ids []nodeID
	for name, p := range t.peers {
		if t.heardAt(p, now) {
			ids = append(ids, idOf(name))
		}
	}
	return ids
}

// nextChange is the earliest time after now at which the view can change
// without a packet arriving: a peer's expiry, the end of a peer's grace, or
// the end of the start-up wait.
func (t *tracker) nextChange(now time.Time) time.Time {
	next := t.started.Add(t.timeout)
	if !next.After(now) {
		next = time.Time{}
	}
	for _, p := range t.peers {
		if !t.heardAt(p, now) {
			continue
		}
		for _, at := range []time.Time{p.lastHeard.Add(t.timeout), p.since.Add(t.timeout)} {
			if at.After(now) && (next.IsZero() || at.Before(next)) {
				next = at
			}
		}
	}
	return next
}
