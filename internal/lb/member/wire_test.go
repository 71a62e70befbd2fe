package member

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

var testKey = []byte("0123456789abcdef-test-key")

func TestHeartbeatRoundTrip(t *testing.T) {
	tests := []heartbeat{
		{Name: "n", Incarnation: 1, Seq: 1},
		{Name: "node-1", Incarnation: 1<<63 + 5, Seq: 42, Ready: true, Heard: []nodeID{idOf("node-2"), idOf("node-3")}},
		{Name: strings.Repeat("x", maxNameLen), Incarnation: 7, Seq: 9, Heard: make([]nodeID, maxHeard)},
	}
	for _, h := range tests {
		p, err := h.marshal(nil, testKey)
		if err != nil {
			t.Fatalf("marshal %q: %v", h.Name, err)
		}
		if len(p) > MaxPacketLen {
			t.Errorf("%d-byte packet exceeds MaxPacketLen %d", len(p), MaxPacketLen)
		}
		got, err := unmarshal(p, testKey)
		if err != nil {
			t.Fatalf("unmarshal %q: %v", h.Name, err)
		}
		if got.Name != h.Name || got.Incarnation != h.Incarnation || got.Seq != h.Seq || got.Ready != h.Ready || len(got.Heard) != len(h.Heard) {
			t.Errorf("round trip: got %+v, want %+v", got, h)
		}
		for i := range h.Heard {
			if got.Heard[i] != h.Heard[i] {
				t.Errorf("heard[%d] = %x, want %x", i, got.Heard[i], h.Heard[i])
			}
		}
	}
}

func TestHeartbeatRejects(t *testing.T) {
	good, err := heartbeat{Name: "node-1", Incarnation: 1, Seq: 2, Ready: true, Heard: []nodeID{idOf("node-2")}}.marshal(nil, testKey)
	if err != nil {
		t.Fatal(err)
	}
	long, err := heartbeat{Name: strings.Repeat("node", 16), Incarnation: 1, Seq: 2}.marshal(nil, testKey)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte { p := bytes.Clone(good); p[i] ^= 1; return p }
	tests := []struct {
		name string
		pkt  []byte
		key  []byte
		want error
	}{
		{"wrong key", good, []byte("another-key-of-16+bytes"), errMAC},
		{"no HMAC", long[:len(long)-macLen], testKey, errMAC},
		{"no HMAC, short", good[:len(good)-macLen], testKey, errShort},
		{"flipped ready flag", flip(5), testKey, errMAC},
		{"flipped name byte", flip(7), testKey, errMAC},
		{"flipped seq", flip(len(good) - macLen - 8 - 1 - 1), testKey, errMAC},
		{"flipped MAC", flip(len(good) - 1), testKey, errMAC},
		{"empty", nil, testKey, errShort},
		{"not ours", append([]byte("GET / HTTP/1.1\r\n"), make([]byte, 60)...), testKey, errMagic},
		{"future version", flip(4), testKey, errVersion},
		{"oversized", append(bytes.Clone(good), make([]byte, MaxPacketLen)...), testKey, errFormat},
	}
	for _, tt := range tests {
		if _, err := unmarshal(tt.pkt, tt.key); !errors.Is(err, tt.want) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.want)
		}
	}
	// A correctly signed packet whose lengths disagree is still rejected.
	bad := good[:len(good)-macLen-idLen] // drop the heard ID, keep count 1
	bad = appendMAC(bytes.Clone(bad), testKey, 0)
	if _, err := unmarshal(bad, testKey); !errors.Is(err, errFormat) {
		t.Errorf("signed packet with a short heard list: err = %v, want %v", err, errFormat)
	}
}

func TestHeartbeatMarshalRejects(t *testing.T) {
	for _, h := range []heartbeat{
		{Name: ""},
		{Name: strings.Repeat("x", maxNameLen+1)},
		{Name: "n", Heard: make([]nodeID, maxHeard+1)},
	} {
		if _, err := h.marshal(nil, testKey); err == nil {
			t.Errorf("marshal accepted name of %d bytes with %d heard", len(h.Name), len(h.Heard))
		}
	}
}
