package member

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// Wire format of a heartbeat, all integers big-endian:
//
//	magic "EnHB" | version 1 | flags 1 | nameLen 1 | name | incarnation 8 | seq 8 |
//	heardCount 1 | heardCount × 8-byte node IDs | HMAC-SHA256 32
//
// The MAC covers every byte before it. A node ID is the first 8 bytes of
// SHA-256(name): a heartbeat lists whom the sender hears without growing with
// the length of node names (which may be up to 253 bytes each).
const (
	magic        = "EnHB"
	wireVersion  = 1
	macLen       = sha256.Size
	idLen        = 8
	headerLen    = len(magic) + 1 + 1 + 1 // magic, version, flags, nameLen
	maxNameLen   = 253                    // a DNS subdomain, as Kubernetes node names are
	maxHeard     = 255
	minPacketLen = headerLen + 1 + 8 + 8 + 1 + macLen
	// MaxPacketLen bounds a heartbeat: the longest name and the most heard IDs.
	MaxPacketLen = minPacketLen - 1 + maxNameLen + maxHeard*idLen

	flagReady = 1 << 0
)

// MinKeyLen is the shortest HMAC key accepted.
const MinKeyLen = 16

type nodeID [idLen]byte

func idOf(name string) nodeID {
	sum := sha256.Sum256([]byte(name))
	var id nodeID
	copy(id[:], sum[:idLen])
	return id
}

// heartbeat is one authenticated liveness message.
type heartbeat struct {
	Name string
	// Incarnation distinguishes restarts of the same node; (Incarnation, Seq)
	// only grows, so a replayed old packet is ignored.
	Incarnation uint64
	Seq         uint64
	// Ready is the sender's own verdict that it may announce (see doc.go).
	Ready bool
	// Heard lists the IDs of the peers the sender currently hears.
	Heard []nodeID
}

var (
	errShort   = errors.New("packet too short")
	errMagic   = errors.New("not a heartbeat")
	errVersion = errors.New("unsupported version")
	errMAC     = errors.New("bad HMAC")
	errFormat  = errors.New("malformed heartbeat")
)

func (h heartbeat) validate() error {
	if h.Name == "" || len(h.Name) > maxNameLen {
		return fmt.Errorf("member: node name %q must be 1-%d bytes", h.Name, maxNameLen)
	}
	if len(h.Heard) > maxHeard {
		return fmt.Errorf("member: %d heard peers, at most %d", len(h.Heard), maxHeard)
	}
	return nil
}

// marshal appends the signed heartbeat to b.
func (h heartbeat) marshal(b []byte, key []byte) ([]byte, error) {
	if err := h.validate(); err != nil {
		return nil, err
	}
	start := len(b)
	b = append(b, magic...)
	var flags byte
	if h.Ready {
		flags |= flagReady
	}
	b = append(b, wireVersion, flags, byte(len(h.Name)))
	b = append(b, h.Name...)
	b = binary.BigEndian.AppendUint64(b, h.Incarnation)
	b = binary.BigEndian.AppendUint64(b, h.Seq)
	b = append(b, byte(len(h.Heard)))
	for _, id := range h.Heard {
		b = append(b, id[:]...)
	}
	return appendMAC(b, key, start), nil
}

// appendMAC signs b[start:] and appends the MAC.
func appendMAC(b, key []byte, start int) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(b[start:])
	return m.Sum(b)
}

// unmarshal authenticates and decodes one heartbeat. The MAC is checked
// before any field is trusted; unknown flag bits are ignored so a later
// version can add some.
func unmarshal(p []byte, key []byte) (heartbeat, error) {
	var h heartbeat
	if len(p) < minPacketLen {
		return h, errShort
	}
	if string(p[:len(magic)]) != magic {
		return h, errMagic
	}
	if p[len(magic)] != wireVersion {
		return h, errVersion
	}
	if len(p) > MaxPacketLen {
		return h, errFormat
	}
	body, sum := p[:len(p)-macLen], p[len(p)-macLen:]
	m := hmac.New(sha256.New, key)
	m.Write(body)
	if !hmac.Equal(m.Sum(nil), sum) {
		return h, errMAC
	}
	flags := body[len(magic)+1]
	nameLen := int(body[len(magic)+2])
	rest := body[headerLen:]
	if nameLen == 0 || len(rest) < nameLen+8+8+1 {
		return h, errFormat
	}
	h.Ready = flags&flagReady != 0
	h.Name = string(rest[:nameLen])
	rest = rest[nameLen:]
	h.Incarnation = binary.BigEndian.Uint64(rest)
	h.Seq = binary.BigEndian.Uint64(rest[8:])
	n := int(rest[16])
	rest = rest[17:]
	if len(rest) != n*idLen {
		return h, errFormat
	}
	if n > 0 {
		h.Heard = make([]nodeID, n)
		for i := range h.Heard {
			copy(h.Heard[i][:], rest[i*idLen:])
		}
	}
	return h, nil
}
