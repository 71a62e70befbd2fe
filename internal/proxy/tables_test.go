package proxy

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"sigs.k8s.io/knftables"
)

// fakeTables is a knftables fake per table of ours.
type fakeTables struct {
	family knftables.Family
	mu     sync.Mutex
	fakes  map[string]*knftables.Fake
}

func newFakeTables(f knftables.Family) *fakeTables {
	return &fakeTables{family: f, fakes: map[string]*knftables.Fake{}}
}

func (f *fakeTables) fake(table string) *knftables.Fake {
	f.mu.Lock()
	defer f.mu.Unlock()
	fk := f.fakes[table]
	if fk == nil {
		fk = knftables.NewFake(f.family, table)
		f.fakes[table] = fk
	}
	return fk
}

// open is an Options.NFT.
func (f *fakeTables) open(table string) knftables.Interface { return f.fake(table) }

func (f *fakeTables) NewTx() *Tx {
	return NewTx(func(table string) *knftables.Transaction { return f.fake(table).NewTransaction() })
}

// Run applies each table's part of tx to that table's fake.
func (f *fakeTables) Run(ctx context.Context, tx *Tx) error {
	for _, t := range tx.Tables() {
		if err := f.fake(t).Run(ctx, tx.Table(t)); err != nil {
			return fmt.Errorf("table %s: %w", t, err)
		}
	}
	return nil
}

// Dump is the dumps of every table that exists, main first.
func (f *fakeTables) Dump() string {
	f.mu.Lock()
	names := slices.Sorted(maps.Keys(f.fakes))
	f.mu.Unlock()
	var sb strings.Builder
	for _, n := range names {
		sb.WriteString(f.fake(n).Dump())
	}
	return sb.String()
}

// chain finds a chain in any table (nil if none has it).
func (f *fakeTables) chain(name string) *knftables.FakeChain {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, fk := range f.fakes {
		if fk.Table != nil && fk.Table.Chains[name] != nil {
			return fk.Table.Chains[name]
		}
	}
	return nil
}

// set finds a set in any table (nil if none has it); nodeport-ips is in every
// table, the main table's is returned.
func (f *fakeTables) set(name string) *knftables.FakeSet {
	if fk := f.fake(TableName); fk.Table != nil && fk.Table.Sets[name] != nil {
		return fk.Table.Sets[name]
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, fk := range f.fakes {
		if fk.Table != nil && fk.Table.Sets[name] != nil {
			return fk.Table.Sets[name]
		}
	}
	return nil
}

// elements lists the elements of map m over all tables.
func (f *fakeTables) elements(m string) []*knftables.Element {
	f.mu.Lock()
	names := slices.Sorted(maps.Keys(f.fakes))
	f.mu.Unlock()
	var out []*knftables.Element
	for _, n := range names {
		els, err := f.fake(n).ListElements(context.Background(), "map", m)
		if err == nil {
			out = append(out, els...)
		}
	}
	return out
}

// existing lists the fakes as the kernel listing would.
func (f *fakeTables) existing(t *testing.T) Existing {
	t.Helper()
	f.mu.Lock()
	names := slices.Sorted(maps.Keys(f.fakes))
	f.mu.Unlock()
	var ex Existing
	for _, n := range names {
		all, err := f.fake(n).ListAll(context.Background())
		if knftables.IsNotFound(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		ex.Tables = append(ex.Tables, n)
		for _, c := range all["chain"] {
			ex.Chains = append(ex.Chains, qname{n, c})
		}
		for _, s := range all["set"] {
			ex.Sets = append(ex.Sets, qname{n, s})
		}
	}
	return ex
}

func TestShardTables(t *testing.T) {
	for _, tc := range []struct {
		name string
		ours bool
	}{
		{"edgenet", true}, {"edgenet-svc-00", true}, {"edgenet-svc-63", true}, {"edgenet-svc-255", true},
		{"edgenet-svc-", false}, {"edgenet-svc-x", false}, {"edgenet-svc-256", false}, {"edgenet-nat", false},
		{"kube-proxy", false}, {"edgenet2", false},
	} {
		if got := IsOurTable(tc.name); got != tc.ours {
			t.Errorf("IsOurTable(%q) = %v, want %v", tc.name, got, tc.ours)
		}
	}
	// The shard of a service must not change between versions: a change moves
	// every service to another table on upgrade.
	cfg := NodeConfig{Family: knftables.IPv4Family, NodeName: "n", PodCIDR: netipPrefix("172.27.0.0/16")}
	for key, want := range map[ServiceKey]string{
		{"default", "kubernetes"}: ShardTable(int(fnvShard("default/kubernetes", 16))),
		{"demo", "web"}:           ShardTable(int(fnvShard("demo/web", 16))),
	} {
		if got := cfg.shardOf(key); got != want {
			t.Errorf("shardOf(%v) = %s, want %s", key, got, want)
		}
	}
	// 1000 services spread over every shard, none with more than twice its share.
	count := map[string]int{}
	for i := range 1000 {
		count[cfg.shardOf(ServiceKey{"ns", fmt.Sprintf("svc-%d", i)})]++
	}
	if len(count) != DefaultShards {
		t.Errorf("1000 services in %d shards, want %d", len(count), DefaultShards)
	}
	for s, n := range count {
		if n > 2*1000/DefaultShards {
			t.Errorf("shard %s holds %d of 1000 services", s, n)
		}
	}
	for _, bad := range []int{-1, MaxShards + 1} {
		c := cfg
		c.Shards = bad
		if c.Validate() == nil {
			t.Errorf("Shards %d accepted", bad)
		}
	}
}

// fnvShard is FNV-1a written out, to pin shardOf's hash.
func fnvShard(s string, n uint32) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h % n
}

// TestServiceInItsShard: a service's chains, affinity sets and dispatch elements are
// in its shard table, its no-endpoint elements in the main table, and nothing of it
// anywhere else.
func TestServiceInItsShard(t *testing.T) {
	cfg := testNode
	cfg.Shards = 4
	a := web("shop", "a", "172.28.0.30")
	a.AffinityTimeout = time.Minute
	aEps := slice(a, "a-1", http8080, ep("172.27.1.1", "node-a", "ready"))
	empty := web("shop", "empty", "172.28.0.31")
	f := newFakeTables(cfg.Family)
	tx := f.NewTx()
	if err := WriteRuleset(tx, cfg, []*Service{a, empty}, []*EndpointSlice{aEps}); err != nil {
		t.Fatal(err)
	}
	if err := f.Run(context.Background(), tx); err != nil {
		t.Fatal(err)
	}
	shardA := cfg.shardOf(a.Key)
	for _, table := range cfg.tables() {
		d := f.fake(table).Dump()
		if has := strings.Contains(d, "shop/a/"); has != (table == shardA) {
			t.Errorf("table %s holds shop/a: %v (its shard is %s)", table, has, shardA)
		}
		if has := strings.Contains(d, "no-endpoint-services { 172.28.0.31"); has != (table == TableName) {
			t.Errorf("table %s holds the no-endpoint element of shop/empty: %v", table, has)
		}
		if has := strings.Contains(d, "hook prerouting"); has == (table == TableName) {
			t.Errorf("table %s: nat prerouting chain present = %v", table, has)
		}
		if has := strings.Contains(d, "hook forward"); has != (table == TableName) {
			t.Errorf("table %s: filter forward chain present = %v", table, has)
		}
	}
}

// TestFullSyncReplacesOldLayout: a kernel with the single-table layout of earlier
// versions (services in the main table) and a shard beyond the configured count
// is turned into the sharded layout by one full write.
func TestFullSyncReplacesOldLayout(t *testing.T) {
	cfg := testNode
	cfg.Shards = 2
	a := web("shop", "a", "172.28.0.30")
	aEps := slice(a, "a-1", http8080, ep("172.27.1.1", "node-a", "ready"))
	f := newFakeTables(cfg.Family)
	old := f.fake(TableName).NewTransaction()
	old.Add(&knftables.Table{})
	old.Add(&knftables.Chain{Name: chainServices})
	old.Add(&knftables.Chain{Name: "svc-shop/a/tcp/http"})
	if err := f.fake(TableName).Run(context.Background(), old); err != nil {
		t.Fatal(err)
	}
	extra := f.fake(ShardTable(7)).NewTransaction()
	extra.Add(&knftables.Table{})
	extra.Add(&knftables.Chain{Name: "svc-shop/b/tcp/http"})
	if err := f.fake(ShardTable(7)).Run(context.Background(), extra); err != nil {
		t.Fatal(err)
	}

	rs, _ := NewRuleset(cfg)
	tx := f.NewTx()
	rs.WriteFull(tx, computeAll(cfg, []*Service{a}, []*EndpointSlice{aEps}), f.existing(t), time.Unix(0, 0))
	text := tx.String()
	for _, want := range []string{"delete table ip edgenet\n", "delete table ip " + ShardTable(7) + "\n"} {
		if !strings.Contains(text, want) {
			t.Errorf("full write lacks %q:\n%s", want, text)
		}
	}
	if strings.Index(text, "delete table ip edgenet\n") > strings.Index(text, "add table ip edgenet") {
		t.Errorf("old main table deleted after it is recreated:\n%s", text)
	}
	if err := f.Run(context.Background(), tx); err != nil {
		t.Fatal(err)
	}
	want := load(t, cfg, []*Service{a}, []*EndpointSlice{aEps})
	if got, w := normDump(f.Dump()), normDump(want.Dump()); got != w {
		t.Errorf("after the full write:\n%s\nwant:\n%s", got, w)
	}
}

// TestKernelReplacesOldLayout: an agent upgraded from the single-table layout finds
// its old service chains in the main table; its first sync must leave only the
// shards DNATing (else the old chains would keep sending traffic to old endpoints).
func TestKernelReplacesOldLayout(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	e := setupKernelEnv(t)
	old := `table ip edgenet {
	map service-ips {
		type ipv4_addr . inet_proto . inet_service : verdict
		elements = { 172.28.0.20 . tcp . 80 : goto svc-shop/web/tcp/http }
	}
	chain nat-prerouting {
		type nat hook prerouting priority dstnat
		jump services
	}
	chain nat-output {
		type nat hook output priority -100
		jump services
	}
	chain services {
		ip daddr . meta l4proto . th dport vmap @service-ips
	}
	chain svc-shop/web/tcp/http {
		meta l4proto tcp dnat to 172.27.1.10:8080
	}
}
`
	cmd := exec.Command("ip", "netns", "exec", e.node.name, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(old)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("old layout: %v\n%s", err, out)
	}
	if id, err := hello(e.client, "172.28.0.20:80"); err != nil || id != "ep1" {
		t.Fatalf("old layout serves %q, %v; want ep1", id, err)
	}

	p, _ := e.proxier(t)
	svc := web("shop", "web", "172.28.0.20")
	p.OnServiceUpdate(svc)
	p.OnEndpointSliceUpdate(slice(svc, "web-1", http8080, ep("172.27.2.10", "node-a", "ready")))
	p.OnSynced()
	if err := p.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		if id, err := hello(e.client, "172.28.0.20:80"); err != nil || id != "ep2" {
			t.Fatalf("after the upgrade's first sync: %q, %v; want only ep2", id, err)
		}
	}
	main := sh(t, e.node.name, "nft", "list", "table", "ip", TableName)
	for _, gone := range []string{"chain services", "service-ips", "svc-shop/web"} {
		if strings.Contains(main, gone) {
			t.Errorf("main table still holds %q:\n%s", gone, main)
		}
	}
	if tables := sh(t, e.node.name, "nft", "list", "tables"); strings.Count(tables, "table ip edgenet") != 1+DefaultShards {
		t.Errorf("tables:\n%s", tables)
	}
}
