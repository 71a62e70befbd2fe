package webui

import (
	"testing"
	"time"
)

// clock is a settable time source for expiry and rate-limit tests.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func TestSessionsExpire(t *testing.T) {
	c := &clock{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := newSessions(30*time.Minute, 2*time.Hour, c.now)
	x := s.create()
	if len(x.id) != 43 || len(x.csrf) != 43 || x.id == x.csrf { // 256 bits, base64url
		t.Fatalf("id %q csrf %q: want two distinct 256-bit tokens", x.id, x.csrf)
	}
	// Activity keeps a session alive up to the absolute limit.
	for range 4 {
		c.advance(25 * time.Minute)
		if _, ok := s.get(x.id); !ok {
			t.Fatalf("session ended after activity at %v", c.t)
		}
	}
	c.advance(25 * time.Minute) // 125 min since creation
	if _, ok := s.get(x.id); ok {
		t.Fatal("session outlived its maximum age")
	}
	y := s.create()
	c.advance(31 * time.Minute)
	if _, ok := s.get(y.id); ok {
		t.Fatal("idle session did not expire")
	}
	if _, ok := s.get(y.id); ok {
		t.Fatal("expired session came back")
	}
}

func TestSessionTableIsBounded(t *testing.T) {
	c := &clock{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := newSessions(time.Hour, time.Hour, c.now)
	first := s.create()
	for range s.max {
		c.advance(time.Second)
		s.create()
	}
	if len(s.m) != s.max {
		t.Fatalf("%d sessions kept, want %d", len(s.m), s.max)
	}
	if _, ok := s.get(first.id); ok {
		t.Fatal("the oldest session was not the one dropped")
	}
}

func TestLimiter(t *testing.T) {
	c := &clock{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	l := newLimiter(5, time.Minute, c.now)
	for i := range 5 {
		if _, b := l.blocked("192.0.2.1"); b {
			t.Fatalf("blocked after %d failures", i)
		}
		l.fail("192.0.2.1")
		c.advance(time.Second)
	}
	wait, b := l.blocked("192.0.2.1")
	if !b || wait != 55*time.Second {
		t.Fatalf("after 5 failures: blocked %v, wait %v; want blocked for 55s", b, wait)
	}
	if _, b := l.blocked("192.0.2.2"); b {
		t.Fatal("another client is blocked too")
	}
	c.advance(55 * time.Second)
	if _, b := l.blocked("192.0.2.1"); b {
		t.Fatal("still blocked once the oldest failure left the window")
	}
}
