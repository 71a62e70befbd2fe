package member

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"
)

// DefaultPort is the UDP port heartbeats use unless configured otherwise.
const DefaultPort = 7946

// Config configures a Member. Name and Key are required.
type Config struct {
	// Name is this node's name, as peers know it (the Node name).
	Name string
	// Key authenticates heartbeats (HMAC-SHA256); every member shares it. At
	// least MinKeyLen bytes.
	Key []byte
	// Listen is the local UDP address; peers must see heartbeats come from the
	// address and port they were given for this node, so bind the node's site
	// IP and the common port. Default 0.0.0.0:7946.
	Listen netip.AddrPort
	// Interval between heartbeats. Default 200ms.
	Interval time.Duration
	// Timeout after which a silent peer is dead. Default 1s; at least
	// twice Interval.
	Timeout time.Duration
	// Quorum is how many members, self included, a node must hear and be
	// heard by to announce. 0: a strict majority, or 1 with two members.
	Quorum int
	Logger *slog.Logger
}

func (c *Config) defaults() error {
	if c.Name == "" || len(c.Name) > maxNameLen {
		return fmt.Errorf("member: node name %q must be 1-%d bytes", c.Name, maxNameLen)
	}
	if len(c.Key) < MinKeyLen {
		return fmt.Errorf("member: HMAC key has %d bytes, need at least %d", len(c.Key), MinKeyLen)
	}
	if !c.Listen.IsValid() {
		c.Listen = netip.AddrPortFrom(netip.IPv4Unspecified(), DefaultPort)
	}
	if c.Interval == 0 {
		c.Interval = 200 * time.Millisecond
	}
	if c.Timeout == 0 {
		c.Timeout = time.Second
	}
	if c.Interval < 0 || c.Timeout < 2*c.Interval {
		return fmt.Errorf("member: timeout %v must be at least twice the interval %v", c.Timeout, c.Interval)
	}
	if c.Quorum < 0 {
		return fmt.Errorf("member: quorum %d is negative", c.Quorum)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Member sends and receives heartbeats and keeps the view of which nodes are
// alive. Create it with New, start it with Run; the other methods are safe for
// concurrent use at any time.
type Member struct {
	cfg     Config
	log     *slog.Logger
	conn    *net.UDPConn
	changed chan struct{}
	poke    chan struct{}

	mu      sync.Mutex
	tr      *tracker
	peers   map[string]netip.AddrPort
	view    View
	inc     uint64
	seq     uint64
	stopped bool
	// noLeave makes Run end like a crash, without the last heartbeat (tests).
	noLeave bool
}

// New validates cfg and binds the UDP socket.
func New(cfg Config) (*Member, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(cfg.Listen))
	if err != nil {
		return nil, fmt.Errorf("member: listen %s: %w", cfg.Listen, err)
	}
	now := time.Now()
	m := &Member{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "member"),
		conn:    conn,
		changed: make(chan struct{}, 1),
		poke:    make(chan struct{}, 1),
		tr:      newTracker(cfg.Name, cfg.Timeout, cfg.Quorum, now),
		peers:   map[string]netip.AddrPort{},
		// A restart must outrank every heartbeat of the previous run; the
		// wall clock in nanoseconds does unless it steps back.
		inc: uint64(now.UnixNano()),
	}
	m.view = m.tr.view(now)
	return m, nil
}

// LocalAddr is the bound address (useful with port 0).
func (m *Member) LocalAddr() netip.AddrPort { return m.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// SetPeers replaces the members to heartbeat with: node name → address and
// port of its Member. It may include this node (ignored). Invalid addresses
// are an error and change nothing.
func (m *Member) SetPeers(peers map[string]netip.AddrPort) error {
	cp := make(map[string]netip.AddrPort, len(peers))
	for name, ap := range peers {
		if name == "" || len(name) > maxNameLen {
			return fmt.Errorf("member: peer name %q must be 1-%d bytes", name, maxNameLen)
		}
		if !ap.IsValid() || ap.Port() == 0 || ap.Addr().IsUnspecified() || ap.Addr().IsMulticast() {
			return fmt.Errorf("member: peer %s: invalid address %s", name, ap)
		}
		if name != m.cfg.Name {
			cp[name] = ap
		}
	}
	if len(cp)+1 > maxHeard {
		return fmt.Errorf("member: %d members, at most %d", len(cp)+1, maxHeard)
	}
	m.mu.Lock()
	m.peers = cp
	m.tr.setPeers(cp)
	m.updateLocked(time.Now())
	m.mu.Unlock()
	select {
	case m.poke <- struct{}{}:
	default:
	}
	return nil
}

// View returns the current view.
func (m *Member) View() View {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.view
}

// Alive lists, sorted, the nodes that may announce now (View.Alive). Feed it
// to Claims. After Run returns it is empty.
func (m *Member) Alive() []string { return m.View().Alive }

// Changed receives a value (coalesced) whenever the view changes; read View
// or Alive then.
func (m *Member) Changed() <-chan struct{} { return m.changed }

// updateLocked recomputes the view and signals a change.
func (m *Member) updateLocked(now time.Time) {
	v := m.tr.view(now)
	if m.stopped {
		v = View{Members: v.Members, Quorum: v.Quorum}
	}
	if v.equal(m.view) {
		return
	}
	if v.Ready != m.view.Ready {
		m.log.Info("readiness changed", "ready", v.Ready, "heard", v.Heard, "members", v.Members, "quorum", v.Quorum)
	}
	m.log.Debug("view changed", "alive", v.Alive, "heard", v.Heard)
	m.view = v
	select {
	case m.changed <- struct{}{}:
	default:
	}
}

// Run heartbeats until ctx ends. On the way out it sends a last heartbeat
// saying it is no longer ready, so peers take over at once instead of after
// the timeout.
func (m *Member) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- m.receive() }()

	nextSend := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		now := time.Now()
		m.mu.Lock()
		m.updateLocked(now)
		if !now.Before(nextSend) {
			m.sendLocked(now, m.view.Ready)
			nextSend = now.Add(m.cfg.Interval)
		}
		wake := nextSend
		if c := m.tr.nextChange(now); !c.IsZero() && c.Before(wake) {
			wake = c
		}
		m.mu.Unlock()
		timer.Reset(time.Until(wake))
		select {
		case <-ctx.Done():
			m.mu.Lock()
			m.stopped = true
			if !m.noLeave {
				m.sendLocked(time.Now(), false)
			}
			m.updateLocked(time.Now())
			m.mu.Unlock()
			m.conn.Close()
			<-errc
			return nil
		case err := <-errc:
			m.conn.Close()
			return fmt.Errorf("member: receive: %w", err)
		case <-timer.C:
		case <-m.poke:
		}
	}
}

func (m *Member) sendLocked(now time.Time, ready bool) {
	m.seq++
	hb := heartbeat{Name: m.cfg.Name, Incarnation: m.inc, Seq: m.seq, Ready: ready, Heard: m.tr.heardIDs(now)}
	pkt, err := hb.marshal(nil, m.cfg.Key)
	if err != nil {
		m.log.Error("encode heartbeat", "err", err)
		return
	}
	for name, ap := range m.peers {
		// A send error (no route yet, ICMP unreachable from a dead peer) is
		// what a dead peer looks like; the timeout handles it.
		if _, err := m.conn.WriteToUDPAddrPort(pkt, ap); err != nil {
			m.log.Debug("send heartbeat", "peer", name, "addr", ap, "err", err)
		}
	}
}

func (m *Member) receive() error {
	buf := make([]byte, MaxPacketLen+1)
	for {
		n, src, err := m.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		hb, err := unmarshal(buf[:n], m.cfg.Key)
		if err != nil {
			m.log.Debug("drop packet", "src", src, "err", err)
			continue
		}
		now := time.Now()
		m.mu.Lock()
		if m.tr.observe(hb, src, now) {
			m.updateLocked(now)
		} else {
			m.log.Debug("ignore heartbeat", "src", src, "name", hb.Name)
		}
		m.mu.Unlock()
	}
}
