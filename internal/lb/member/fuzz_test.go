package member

import (
	"bytes"
	"testing"
)

// FuzzUnmarshal feeds arbitrary datagrams to the heartbeat parser, with the
// real key and with none: it must not panic, and anything it accepts must be
// a valid heartbeat that encodes back to the same bytes.
func FuzzUnmarshal(f *testing.F) {
	for _, h := range []heartbeat{
		{Name: "node-1", Incarnation: 1, Seq: 1},
		{Name: "node-2", Incarnation: 1 << 62, Seq: 7, Ready: true, Heard: []nodeID{idOf("node-1"), idOf("node-3")}},
	} {
		p, err := h.marshal(nil, testKey)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(p)
	}
	f.Add([]byte("EnHB\x01"))
	f.Add([]byte("EnHB\x01\x01\x02ab\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00")) // unsigned body
	f.Fuzz(func(t *testing.T, p []byte) {
		// Signing the input as well gets the fuzzer past the MAC to the
		// field parser.
		signed := appendMAC(bytes.Clone(p), testKey, 0)
		for _, c := range []struct {
			p, key []byte
		}{{p, testKey}, {p, nil}, {signed, testKey}} {
			p, key := c.p, c.key
			h, err := unmarshal(p, key)
			if err != nil {
				continue
			}
			if err := h.validate(); err != nil {
				t.Fatalf("accepted an invalid heartbeat: %v", err)
			}
			q, err := h.marshal(nil, key)
			if err != nil {
				t.Fatal(err)
			}
			// Unknown flag bits are ignored, so compare without them.
			a, b := bytes.Clone(p), bytes.Clone(q)
			a[5], b[5] = a[5]&flagReady, b[5]&flagReady
			if !bytes.Equal(a[:len(a)-macLen], b[:len(b)-macLen]) {
				t.Fatalf("re-encoding differs:\n%x\n%x", p, q)
			}
		}
	})
}
