package proxy

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// fuzzInput turns bytes into a Service with its slices, within the shapes the API
// allows, so that the fuzzer explores rule combinations (types, policies, affinity,
// endpoint states, duplicate and mismatched ports, clashing addresses).
func fuzzInput(data []byte) (*Service, []*EndpointSlice) {
	next := func() byte {
		if len(data) == 0 {
			return 0
		}
		b := data[0]
		data = data[1:]
		return b
	}
	flags := next()
	svc := &Service{
		Key:                 ServiceKey{"ns", fmt.Sprintf("s%d", next()%4)},
		Type:                []ServiceType{ClusterIP, NodePort, LoadBalancer, "ExternalName"}[flags&3],
		ClusterIPs:          []netip.Addr{netip.AddrFrom4([4]byte{172, 28, 0, next()})},
		ExternalLocal:       flags&4 != 0,
		InternalLocal:       flags&8 != 0,
		HealthCheckNodePort: uint16(next()) + 32000,
	}
	if flags&16 != 0 {
		svc.AffinityTimeout = time.Duration(next()) * time.Second
	}
	if flags&32 != 0 {
		svc.ExternalIPs = []netip.Addr{netip.AddrFrom4([4]byte{192, 168, 50, next()})}
	}
	if flags&64 != 0 {
		svc.LoadBalancerIPs = []netip.Addr{netip.AddrFrom4([4]byte{192, 168, 50, next()})}
	}
	if flags&128 != 0 {
		svc.ClusterIPs = append([]netip.Addr{netip.MustParseAddr("fd00::1")}, svc.ClusterIPs...)
	}
	protos := []Protocol{TCP, UDP, SCTP, "icmp"}
	for range next() % 4 {
		b := next()
		svc.Ports = append(svc.Ports, ServicePort{Name: fmt.Sprintf("p%d", b%3), Protocol: protos[b>>6], Port: uint16(next()), NodePort: uint16(next()) + 30000})
	}
	var slices []*EndpointSlice
	for i := range next() % 3 {
		s := &EndpointSlice{Service: svc.Key, Name: fmt.Sprintf("e%d", i)}
		for range next() % 3 {
			b := next()
			s.Ports = append(s.Ports, EndpointPort{Name: fmt.Sprintf("p%d", b%3), Protocol: protos[(b>>6)&1], Port: uint16(next())})
		}
		for range next() % 5 {
			b := next()
			s.Endpoints = append(s.Endpoints, Endpoint{
				Addresses: []netip.Addr{netip.AddrFrom4([4]byte{172, 27, b & 3, next()})},
				Ready:     b&4 != 0, Serving: b&8 != 0, Terminating: b&16 != 0,
				NodeName: []string{"node-a", "node-b"}[b>>7],
			})
		}
		slices = append(slices, s)
	}
	return svc, slices
}

// FuzzServiceRules checks that every valid service yields rules nft's model accepts
// (the fake checks references to chains, sets and maps), and that changing one
// service into another incrementally gives the same table as writing the second
// from scratch.
func FuzzServiceRules(f *testing.F) {
	f.Add([]byte{0, 1, 20, 0, 1, 0x00, 80, 0, 1, 1, 0, 8, 2, 4, 10, 4, 11})
	f.Add([]byte{0xff, 2, 21, 3, 9, 9, 9, 2, 0x41, 53, 1, 0x01, 53, 2, 2, 0x41, 53, 3, 0x84, 5, 0x1c, 6, 0x80, 7})
	f.Add([]byte{0x5e, 0, 22, 60, 1, 2, 3, 0x02, 187, 80, 1, 1, 0x02, 99, 1, 0x04, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		half := len(data) / 2
		a, aEps := fuzzInput(data[:half])
		b, bEps := fuzzInput(data[half:])
		b.Key = a.Key
		for _, s := range bEps {
			s.Service = a.Key
		}
		if a.Validate() != nil || b.Validate() != nil {
			return
		}
		if a.Type == "ExternalName" || b.Type == "ExternalName" {
			return
		}
		ctx := context.Background()
		fake := newFakeTables(testNode.Family)
		rs, _ := NewRuleset(testNode)
		tx := fake.NewTx()
		rs.WriteFull(tx, map[ServiceKey]*ServiceRules{a.Key: ComputeService(testNode, a, aEps)}, Existing{}, time.Unix(0, 0))
		if err := fake.Run(ctx, tx); err != nil {
			t.Fatalf("full write rejected: %v\n%s", err, tx)
		}
		tx = fake.NewTx()
		rs.WriteUpdate(tx, map[ServiceKey]*ServiceRules{a.Key: ComputeService(testNode, b, bEps)}, time.Unix(10, 0))
		if err := fake.Run(ctx, tx); err != nil {
			t.Fatalf("update rejected: %v\n%s", err, tx)
		}
		tx = fake.NewTx() // deletes the chains a used and b does not
		rs.WriteUpdate(tx, nil, time.Unix(20, 0))
		if err := fake.Run(ctx, tx); err != nil {
			t.Fatalf("stale chain deletion rejected: %v\n%s", err, tx)
		}
		want := newFakeTables(testNode.Family)
		tx = want.NewTx()
		if err := WriteRuleset(tx, testNode, []*Service{b}, bEps); err != nil {
			t.Fatal(err)
		}
		if err := want.Run(ctx, tx); err != nil {
			t.Fatalf("full write of b rejected: %v", err)
		}
		if got, w := normDump(fake.Dump()), normDump(want.Dump()); got != w {
			t.Fatalf("incremental a→b differs from writing b:\n--- got ---\n%s\n--- want ---\n%s", got, w)
		}
		checkCompact(t, computeService(testNode, a, aEps))
	})
}
