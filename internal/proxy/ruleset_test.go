package proxy

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/knftables"
)

func computeAll(cfg NodeConfig, svcs []*Service, eps []*EndpointSlice) map[ServiceKey]*ServiceRules {
	bySvc := map[ServiceKey][]*EndpointSlice{}
	for _, s := range eps {
		bySvc[s.Service] = append(bySvc[s.Service], s)
	}
	out := map[ServiceKey]*ServiceRules{}
	for _, s := range svcs {
		out[s.Key] = ComputeService(cfg, s, bySvc[s.Key])
	}
	return out
}

func run(t *testing.T, fake *fakeTables, tx *Tx) {
	t.Helper()
	if err := fake.Run(context.Background(), tx); err != nil {
		t.Fatalf("fake rejected the transaction: %v\n%s", err, tx)
	}
}

// TestIncrementalUpdate changes one service's endpoints and checks that the
// transaction touches only that service, and that the result equals a from-scratch
// write of the new state.
func TestIncrementalUpdate(t *testing.T) {
	a := web("shop", "a", "172.28.0.30")
	a.AffinityTimeout = time.Minute
	b := web("shop", "b", "172.28.0.31")
	b.Type = NodePort
	b.Ports[0].NodePort = 30090
	aEps := slice(a, "a-1", http8080, ep("172.27.1.1", "node-a", "ready"), ep("172.27.2.1", "node-b", "ready"))
	bEps := slice(b, "b-1", http8080, ep("172.27.1.2", "node-a", "ready"), ep("172.27.2.2", "node-b", "ready"))
	t0 := time.Unix(1000, 0)

	fake := newFakeTables(testNode.Family)
	rs, err := NewRuleset(testNode)
	if err != nil {
		t.Fatal(err)
	}
	tx := fake.NewTx()
	rs.WriteFull(tx, computeAll(testNode, []*Service{a, b}, []*EndpointSlice{aEps, bEps}), Existing{}, t0)
	run(t, fake, tx)

	// b: one endpoint replaced, one kept.
	bEps2 := slice(b, "b-1", http8080, ep("172.27.1.2", "node-a", "ready"), ep("172.27.3.2", "node-c", "ready"))
	tx = fake.NewTx()
	rs.WriteUpdate(tx, map[ServiceKey]*ServiceRules{b.Key: ComputeService(testNode, b, []*EndpointSlice{bEps2})}, t0.Add(time.Millisecond))
	goldenCompare(t, "incremental-update.tx", tx.String())
	run(t, fake, tx)
	text := tx.String()
	if strings.Contains(text, "shop/a/") {
		t.Errorf("update of shop/b touched shop/a:\n%s", text)
	}
	if strings.Contains(text, "chain ip "+testNode.shardOf(b.Key)+" ep-shop/b/tcp/http__172.27.1.2/8080") ||
		strings.Contains(text, "rule ip "+testNode.shardOf(b.Key)+" ep-shop/b/tcp/http__172.27.1.2/8080") {
		t.Errorf("unchanged endpoint chain of shop/b rewritten:\n%s", text)
	}
	if !strings.Contains(text, "flush chain ip "+testNode.shardOf(b.Key)+" ep-shop/b/tcp/http__172.27.2.2/8080") {
		t.Errorf("removed endpoint chain not flushed:\n%s", text)
	}
	if rs.StaleChains() != 1 {
		t.Fatalf("stale chains = %d, want 1", rs.StaleChains())
	}

	// Delete a; a sync after the stale delay removes b's old endpoint chain too.
	tx = fake.NewTx()
	rs.WriteUpdate(tx, map[ServiceKey]*ServiceRules{a.Key: nil}, t0.Add(2*time.Second))
	run(t, fake, tx)
	if !strings.Contains(tx.String(), "delete chain ip "+testNode.shardOf(b.Key)+" ep-shop/b/tcp/http__172.27.2.2/8080") {
		t.Errorf("stale chain not deleted after the delay:\n%s", tx)
	}
	tx = fake.NewTx()
	rs.WriteUpdate(tx, nil, t0.Add(4*time.Second))
	run(t, fake, tx)

	want := load(t, testNode, []*Service{b}, []*EndpointSlice{bEps2}).Dump()
	if got := normDump(fake.Dump()); got != normDump(want) {
		t.Errorf("incremental result differs from a full write:\n--- incremental ---\n%s\n--- full ---\n%s", got, want)
	}
}

// TestFullResyncReconciles simulates a restart: a new Ruleset writes the state in full
// over a kernel that still holds the old table. Chains and affinity sets that are no
// longer wanted go; nothing deletes or flushes the table.
func TestFullResyncReconciles(t *testing.T) {
	a := web("shop", "a", "172.28.0.30")
	a.AffinityTimeout = time.Minute
	aEps := slice(a, "a-1", http8080, ep("172.27.1.1", "node-a", "ready"), ep("172.27.2.1", "node-b", "ready"))
	b := web("shop", "b", "172.28.0.31")
	bEps := slice(b, "b-1", http8080, ep("172.27.1.2", "node-a", "ready"))
	fake := load(t, testNode, []*Service{a, b}, []*EndpointSlice{aEps, bEps})

	// After the restart a lost an endpoint and b is gone.
	aEps2 := slice(a, "a-1", http8080, ep("172.27.1.1", "node-a", "ready"))
	listed := fake.existing(t)
	rs, _ := NewRuleset(testNode)
	now := time.Unix(2000, 0)
	tx := fake.NewTx()
	rs.WriteFull(tx, computeAll(testNode, []*Service{a}, []*EndpointSlice{aEps2}), listed, now)
	text := tx.String()
	if strings.Contains(text, "delete table") || strings.Contains(text, "flush table") {
		t.Fatalf("full resync flushes or deletes the table:\n%s", text)
	}
	if !strings.Contains(text, "delete set ip "+testNode.shardOf(a.Key)+" aff-shop/a/tcp/http__172.27.2.1/8080") {
		t.Errorf("stale affinity set not deleted:\n%s", text)
	}
	if strings.Contains(text, "flush set ip "+testNode.shardOf(a.Key)+" aff-") {
		t.Errorf("live affinity set flushed (would lose client stickiness):\n%s", text)
	}
	run(t, fake, tx)
	tx = fake.NewTx()
	rs.WriteUpdate(tx, nil, now.Add(2*time.Second))
	run(t, fake, tx)
	want := load(t, testNode, []*Service{a}, []*EndpointSlice{aEps2}).Dump()
	if got := normDump(fake.Dump()); got != normDump(want) {
		t.Errorf("after reconcile the table differs from a fresh write:\n--- got ---\n%s\n--- want ---\n%s", got, want)
	}
}

func TestChainNameLimits(t *testing.T) {
	long := strings.Repeat("n", 63)
	svc := &Service{Key: ServiceKey{long, long}, ClusterIPs: addrs("fd00:28::1"),
		Ports: []ServicePort{{Name: strings.Repeat("p", 15), Protocol: TCP, Port: 80}}}
	v6 := NodeConfig{Family: knftables.IPv6Family, NodeName: "node-a", PodCIDR: netipPrefix("fd00:27::/48")}
	eps := []*EndpointSlice{{Service: svc.Key, Ports: []EndpointPort{{Name: svc.Ports[0].Name, Protocol: TCP, Port: 8080}},
		Endpoints: []Endpoint{{Addresses: addrs("fd00:27:1234:5678:9abc:def0:1234:5678"), Ready: true}}}}
	r := ComputeService(v6, svc, eps)
	names := map[string]bool{}
	for name := range r.Chains {
		if len(name) > knftables.NameLengthMax-1 || strings.Contains(name, ":") {
			t.Errorf("chain name %q: length %d or ':'", name, len(name))
		}
		names[name] = true
	}
	if len(names) != 2 {
		t.Errorf("want svc and ep chains, got %v", names)
	}
	if chainName("ep-", strings.Repeat("x", 300)) == chainName("ep-", strings.Repeat("x", 299)+"y") {
		t.Error("hashed names collide")
	}
	fake := newFakeTables(v6.Family)
	tx := fake.NewTx()
	if err := WriteRuleset(tx, v6, []*Service{svc}, eps); err != nil {
		t.Fatal(err)
	}
	run(t, fake, tx)
	if !strings.Contains(fake.Dump(), "dnat to [fd00:27:1234:5678:9abc:def0:1234:5678]:8080") {
		t.Errorf("v6 dnat missing:\n%s", fake.Dump())
	}
}

// normDump sorts the element lines of a fake dump: element order is insertion order
// in the fake but has no meaning in the kernel, unlike the order of rules.
func normDump(d string) string {
	var other, elems []string
	for _, l := range strings.Split(d, "\n") {
		if strings.HasPrefix(l, "add element ") {
			elems = append(elems, l)
		} else {
			other = append(other, l)
		}
	}
	slices.Sort(elems)
	return strings.Join(append(other, elems...), "\n")
}
