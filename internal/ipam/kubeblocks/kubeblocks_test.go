package kubeblocks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	v1 "edgenet.io/edgenet/api/v1alpha1"
	"edgenet.io/edgenet/api/v1alpha1/crdtest"
	"edgenet.io/edgenet/internal/ipam"
	"edgenet.io/edgenet/internal/testenv"
)

// cluster is one apiserver with the CRDs, shared by the subtests; each subtest uses its own pod CIDR and
// nodes, so their blocks never meet.
type cluster struct {
	env    *testenv.Env
	client *v1.Client
	// races counts Claims that lost a block to a concurrent create, from the Sources' debug logs.
	races atomic.Int64
}

func TestAgainstAPIServer(t *testing.T) {
	env := testenv.Start(t)
	crdtest.Install(t, env.Config)
	client, err := v1.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{env: env, client: client}
	// The apiserver answers the first write of a new custom resource after ~2 s; keep that out of the timings.
	warm := &v1.IPAMBlock{ObjectMeta: metav1.ObjectMeta{Name: "192-0-2-0-28"}, Spec: v1.IPAMBlockSpec{CIDR: "192.0.2.0/28", Node: "warm-up"}}
	if _, err := client.IPAMBlocks().Create(context.Background(), warm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := client.IPAMBlocks().Delete(context.Background(), warm.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Run("ConcurrentClaimsNeverShareABlock", c.testConcurrentClaims)
	t.Run("BlocksAreTheNodesOwn", c.testBlocksAreTheNodesOwn)
	t.Run("Release", c.testRelease)
	t.Run("AllocatorOnTop", c.testAllocator)
	t.Run("BadConfig", c.testBadConfig)
	t.Run("NodeRegisteredAgain", c.testNodeRegisteredAgain)
	// Last: it deletes Nodes and runs a kube-controller-manager.
	t.Run("NodeDeletionFreesBlocks", c.testGarbageCollection)
}

func (c *cluster) node(t *testing.T, name string) *corev1.Node {
	t.Helper()
	n, err := c.env.Client.CoreV1().Nodes().Create(context.Background(),
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// source starts a Source for node with its own client (its own connections, as on a real node) and stops it
// when the test ends.
func (c *cluster) source(t *testing.T, n *corev1.Node, cidr string, bits int, lookUpUID bool) *Source {
	t.Helper()
	client, err := v1.NewForConfig(c.env.Config)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Client: client, NodeName: n.Name, NodeUID: n.UID, PodCIDR: netip.MustParsePrefix(cidr), BlockBits: bits,
		Logger: testLogger(t, &c.races)}
	if lookUpUID {
		cfg.NodeUID, cfg.Nodes = "", c.env.Client.CoreV1().Nodes()
	}
	s, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return s
}

// apiBlocks lists the IPAMBlock objects inside cidr: CIDR → node, failing on any block listed twice.
func (c *cluster) apiBlocks(t *testing.T, cidr string) map[netip.Prefix]*v1.IPAMBlock {
	t.Helper()
	list, err := c.client.IPAMBlocks().List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod := netip.MustParsePrefix(cidr)
	out := map[netip.Prefix]*v1.IPAMBlock{}
	for i := range list.Items {
		b := &list.Items[i]
		p, err := b.Prefix()
		if err != nil {
			t.Fatalf("block %s: %v", b.Name, err)
		}
		if !pod.Overlaps(p) {
			continue
		}
		if prev, dup := out[p]; dup {
			t.Errorf("block %s owned twice: by %s (%s) and %s (%s)", p, prev.Spec.Node, prev.Name, b.Spec.Node, b.Name)
		}
		out[p] = b
	}
	return out
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// Two nodes race for the 16 blocks of a /24 with 50 concurrent Claims each. Every block must end up owned by
// exactly the node whose Claim returned it, all of them claimed, and the remaining Claims must say exhausted.
func (c *cluster) testConcurrentClaims(t *testing.T) {
	const cidr, bits, perNode = "10.1.0.0/24", 28, 50
	nodes := []*corev1.Node{c.node(t, "race-a"), c.node(t, "race-b")}
	srcs := []*Source{c.source(t, nodes[0], cidr, bits, false), c.source(t, nodes[1], cidr, bits, false)}
	ctx := ctxTimeout(t, 60*time.Second)

	type result struct {
		node string
		p    netip.Prefix
		err  error
	}
	results := make(chan result, len(srcs)*perNode)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, s := range srcs {
		for range perNode {
			wg.Go(func() {
				<-start
				p, err := s.Claim(ctx)
				results <- result{nodes[i].Name, p, err}
			})
		}
	}
	began, racesBefore := time.Now(), c.races.Load()
	close(start)
	wg.Wait()
	close(results)
	races := c.races.Load() - racesBefore
	t.Logf("%d concurrent claims in %v, %d creates lost to the other node", len(srcs)*perNode, time.Since(began).Round(time.Millisecond), races)
	// Without lost creates the apiserver never had to arbitrate and the test proved nothing.
	if races == 0 {
		t.Error("no Claim ever lost a race: the two nodes did not compete")
	}

	claimedBy := map[netip.Prefix]string{}
	perNodeClaims := map[string][]netip.Prefix{}
	exhausted := 0
	for r := range results {
		switch {
		case r.err == nil:
			if prev, dup := claimedBy[r.p]; dup {
				t.Errorf("Claim returned %s to %s and to %s", r.p, prev, r.node)
			}
			claimedBy[r.p] = r.node
			perNodeClaims[r.node] = append(perNodeClaims[r.node], r.p)
		case ipam.IsExhausted(r.err):
			exhausted++
			if !strings.Contains(r.err.Error(), "pod CIDR 10.1.0.0/24 is exhausted") {
				t.Errorf("exhausted error does not say which pod CIDR: %v", r.err)
			}
		default:
			t.Errorf("%s: Claim: %v", r.node, r.err)
		}
	}
	if len(claimedBy) != 16 || exhausted != len(srcs)*perNode-16 {
		t.Errorf("%d blocks claimed and %d claims exhausted, want 16 and %d", len(claimedBy), exhausted, len(srcs)*perNode-16)
	}
	t.Logf("claims per node: %s %d, %s %d", nodes[0].Name, len(perNodeClaims[nodes[0].Name]), nodes[1].Name, len(perNodeClaims[nodes[1].Name]))

	// The API objects are the truth: one per block of the CIDR, owned by the node Claim told.
	objs := c.apiBlocks(t, cidr)
	b, _ := ipam.NewBlocking(netip.MustParsePrefix(cidr), bits)
	for _, p := range b.All() {
		obj, ok := objs[p]
		switch {
		case !ok:
			t.Errorf("block %s has no IPAMBlock", p)
		case obj.Spec.Node != claimedBy[p]:
			t.Errorf("block %s: object says node %q, Claim returned it to %q", p, obj.Spec.Node, claimedBy[p])
		}
	}
	if len(objs) != b.Count() {
		t.Errorf("%d IPAMBlocks in %s, want %d", len(objs), cidr, b.Count())
	}

	for i, s := range srcs {
		got, err := s.Blocks(ctx)
		want := slices.Clone(perNodeClaims[nodes[i].Name])
		slices.SortFunc(want, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("%s: Blocks() = %v, %v; want its claims %v", nodes[i].Name, got, err, want)
		}
		if p, err := s.Claim(ctx); !ipam.IsExhausted(err) {
			t.Errorf("%s: Claim after exhaustion = %v, %v; want an exhausted error", nodes[i].Name, p, err)
		}
	}
}

// A node sees only its own blocks, claims the lowest free one (skipping other nodes'), and its blocks point
// at its Node object.
func (c *cluster) testBlocksAreTheNodesOwn(t *testing.T) {
	const cidr, bits = "10.2.0.0/26", 28
	ctx := ctxTimeout(t, 30*time.Second)
	mine, other := c.node(t, "own-c"), c.node(t, "own-d")
	// Another node already holds the first block.
	if _, err := c.client.IPAMBlocks().Create(ctx, &v1.IPAMBlock{ObjectMeta: metav1.ObjectMeta{Name: "10-2-0-0-28"},
		Spec: v1.IPAMBlockSpec{CIDR: "10.2.0.0/28", Node: other.Name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	s := c.source(t, mine, cidr, bits, true) // the UID comes from the Node object
	if got, err := s.Blocks(ctx); err != nil || len(got) != 0 {
		t.Fatalf("Blocks() before any claim = %v, %v; want none (the other node's block is not ours)", got, err)
	}
	p, err := s.Claim(ctx)
	if err != nil || p != netip.MustParsePrefix("10.2.0.16/28") {
		t.Fatalf("Claim() = %v, %v; want 10.2.0.16/28, the lowest block nobody owns", p, err)
	}
	if got, err := s.Blocks(ctx); err != nil || !slices.Equal(got, []netip.Prefix{p}) {
		t.Errorf("Blocks() right after Claim = %v, %v; want [%s]", got, err, p)
	}

	obj, err := c.client.IPAMBlocks().Get(ctx, "10-2-0-16-28", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := metav1.OwnerReference{APIVersion: "v1", Kind: "Node", Name: mine.Name, UID: mine.UID}
	if len(obj.OwnerReferences) != 1 || obj.OwnerReferences[0] != want {
		t.Errorf("ownerReferences = %+v, want [%+v]", obj.OwnerReferences, want)
	}
	if obj.Spec != (v1.IPAMBlockSpec{CIDR: "10.2.0.16/28", Node: mine.Name}) {
		t.Errorf("spec = %+v", obj.Spec)
	}

	// A block created for this node by someone else (a previous run of the agent) shows up too.
	if _, err := c.client.IPAMBlocks().Create(ctx, &v1.IPAMBlock{ObjectMeta: metav1.ObjectMeta{Name: "10-2-0-48-28",
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: mine.Name, UID: mine.UID}}},
		Spec: v1.IPAMBlockSpec{CIDR: "10.2.0.48/28", Node: mine.Name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	wantBlocks := []netip.Prefix{netip.MustParsePrefix("10.2.0.16/28"), netip.MustParsePrefix("10.2.0.48/28")}
	if err := wait.PollUntilContextCancel(ctx, 20*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		got, err := s.Blocks(ctx)
		return slices.Equal(got, wantBlocks), err
	}); err != nil {
		got, _ := s.Blocks(ctx)
		t.Errorf("Blocks() = %v, want %v", got, wantBlocks)
	}

	// The cache keeps only what it needs.
	for _, o := range s.inf.GetStore().List() {
		b := o.(*v1.IPAMBlock)
		if b.Name == "" || b.UID == "" || b.ResourceVersion == "" || b.Spec.CIDR == "" || b.Spec.Node == "" {
			t.Errorf("cached block lost a field it needs: %+v", b)
		}
		if b.ManagedFields != nil || !b.CreationTimestamp.IsZero() || b.Generation != 0 {
			t.Errorf("cached block %s keeps fields it does not need: %+v", b.Name, b.ObjectMeta)
		}
		if b.Spec.Node == mine.Name && (len(b.OwnerReferences) != 1 || b.OwnerReferences[0].UID != mine.UID) {
			t.Errorf("cached block %s lost its Node owner: %+v", b.Name, b.OwnerReferences)
		}
	}

	// The last free block, then exhaustion.
	if p, err := s.Claim(ctx); err != nil || p != netip.MustParsePrefix("10.2.0.32/28") {
		t.Errorf("Claim() = %v, %v; want 10.2.0.32/28", p, err)
	}
	if _, err := s.Claim(ctx); !ipam.IsExhausted(err) {
		t.Errorf("Claim() on a full pod CIDR: %v, want exhausted", err)
	}
}

func (c *cluster) testRelease(t *testing.T) {
	const cidr, bits = "10.4.0.0/26", 28
	ctx := ctxTimeout(t, 30*time.Second)
	n, other := c.node(t, "rel-e"), c.node(t, "rel-f")
	s, so := c.source(t, n, cidr, bits, false), c.source(t, other, cidr, bits, false)
	var got []netip.Prefix
	for range 2 {
		p, err := s.Claim(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, p)
	}
	theirs, err := so.Claim(ctx)
	if err != nil {
		t.Fatal(err)
	}

	if err := s.Release(ctx, got[0]); err != nil {
		t.Fatalf("Release(%s): %v", got[0], err)
	}
	if _, ok := c.apiBlocks(t, cidr)[got[0]]; ok {
		t.Errorf("released block %s still has its IPAMBlock", got[0])
	}
	if bl, err := s.Blocks(ctx); err != nil || !slices.Equal(bl, got[1:]) {
		t.Errorf("Blocks() after Release = %v, %v; want %v", bl, err, got[1:])
	}
	// The released block is the lowest free one again, for whichever node asks.
	if p, err := so.Claim(ctx); err != nil || p != got[0] {
		t.Errorf("other node's Claim after Release = %v, %v; want %s", p, err, got[0])
	}

	// Another node's block is not ours to release.
	if err := s.Release(ctx, theirs); !errors.Is(err, ErrNotOwned) {
		t.Errorf("Release of %s's block %s: %v, want ErrNotOwned", other.Name, theirs, err)
	}
	if obj, ok := c.apiBlocks(t, cidr)[theirs]; !ok || obj.Spec.Node != other.Name {
		t.Errorf("%s's block %s after a refused Release: %+v", other.Name, theirs, obj)
	}

	// A block nobody owns is already released; a prefix that is no block is refused.
	free := netip.MustParsePrefix("10.4.0.48/28")
	if _, taken := c.apiBlocks(t, cidr)[free]; taken {
		t.Fatalf("test assumes %s is free", free)
	}
	if err := s.Release(ctx, free); err != nil {
		t.Errorf("Release of a free block: %v", err)
	}
	for _, bad := range []string{"10.4.0.16/27", "10.4.0.17/28", "10.5.0.0/28"} {
		if err := s.Release(ctx, netip.MustParsePrefix(bad)); err == nil || !strings.Contains(err.Error(), "not a /28 block") {
			t.Errorf("Release(%s) = %v, want a not-a-block error", bad, err)
		}
	}

	// Metadata changes bump the resourceVersion; Release must still go through (re-reading once).
	obj, err := c.client.IPAMBlocks().Get(ctx, mustName(t, got[1]), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	obj.Annotations = map[string]string{"edgenet.io/touched": "yes"}
	if _, err := c.client.IPAMBlocks().Update(ctx, obj, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(ctx, got[1]); err != nil {
		t.Errorf("Release after a metadata change: %v", err)
	}
	if _, ok := c.apiBlocks(t, cidr)[got[1]]; ok {
		t.Errorf("block %s not deleted", got[1])
	}
}

func mustName(t *testing.T, p netip.Prefix) string {
	t.Helper()
	n, err := v1.BlockName(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// The Allocator claims blocks through the Source as its blocks fill, until the pod CIDR is exhausted.
func (c *cluster) testAllocator(t *testing.T) {
	const cidr, bits = "10.3.0.0/28", 30 // 4 blocks of 4 addresses; a block's first address is never handed out
	ctx := ctxTimeout(t, 30*time.Second)
	s := c.source(t, c.node(t, "alloc-g"), cidr, bits, false)
	a, err := ipam.New(ipam.Config{Dir: t.TempDir(), PodCIDR: netip.MustParsePrefix(cidr), Source: s})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	seen := map[netip.Addr]bool{}
	for i := range 12 {
		addr, _, err := a.Allocate(ctx, ipam.Handle{ContainerID: fmt.Sprint("c", i), IfName: "eth0"})
		if err != nil {
			t.Fatalf("allocation %d: %v", i, err)
		}
		if seen[addr] || !netip.MustParsePrefix(cidr).Contains(addr) {
			t.Fatalf("allocation %d: %s (duplicate or outside %s)", i, addr, cidr)
		}
		seen[addr] = true
	}
	if bl, _ := s.Blocks(ctx); len(bl) != 4 {
		t.Errorf("node holds %v after 15 allocations, want all 4 blocks", bl)
	}
	if _, _, err := a.Allocate(ctx, ipam.Handle{ContainerID: "one-too-many", IfName: "eth0"}); !ipam.IsExhausted(err) {
		t.Errorf("16th allocation: %v, want exhausted", err)
	}
}

func (c *cluster) testBadConfig(t *testing.T) {
	ctx := context.Background()
	n := c.node(t, "cfg-h")
	nodes := c.env.Client.CoreV1().Nodes()
	good := Config{Client: c.client, NodeName: n.Name, NodeUID: n.UID, PodCIDR: netip.MustParsePrefix("10.6.0.0/24"), BlockBits: 26}
	for _, tc := range []struct {
		what   string
		mutate func(*Config)
		want   string
	}{
		{"no client", func(c *Config) { c.Client = nil }, "needs Client"},
		{"no node", func(c *Config) { c.NodeName = "" }, "needs Client and NodeName"},
		{"pod CIDR with host bits", func(c *Config) { c.PodCIDR = netip.MustParsePrefix("10.6.0.1/24") }, "host bits"},
		{"block larger than the pod CIDR", func(c *Config) { c.BlockBits = 16 }, "block length"},
		{"IPv6 CIDR at ::", func(c *Config) { c.PodCIDR, c.BlockBits = netip.MustParsePrefix("::/112"), 120 }, "no valid object name"},
		{"no UID and no way to look it up", func(c *Config) { c.NodeUID = "" }, "needs NodeUID or Nodes"},
		{"Node missing", func(c *Config) {
			c.NodeName, c.NodeUID, c.Nodes = "no-such-node", "", nodes
		}, "look up node no-such-node"},
	} {
		cfg := good
		tc.mutate(&cfg)
		if _, err := New(ctx, cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: New() error %v, want one containing %q", tc.what, err, tc.want)
		}
	}
}

// A Node deleted and registered again under the same name has a new UID. Blocks pointing at the old one are
// the garbage collector's to delete, so they no longer count as the node's, and new claims point at the new UID.
func (c *cluster) testNodeRegisteredAgain(t *testing.T) {
	const cidr, bits = "10.7.0.0/26", 28
	ctx := ctxTimeout(t, 30*time.Second)
	old := c.node(t, "again-k")
	s := c.source(t, old, cidr, bits, true)
	first, err := s.Claim(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.env.Client.CoreV1().Nodes().Delete(ctx, old.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	renewed := c.node(t, old.Name)
	if renewed.UID == old.UID {
		t.Fatal("re-created Node kept its UID")
	}
	second, err := s.Claim(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if second == first {
		t.Fatalf("claimed %s again while its object still exists", first)
	}
	obj, err := c.client.IPAMBlocks().Get(ctx, mustName(t, second), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(obj.OwnerReferences) != 1 || obj.OwnerReferences[0].UID != renewed.UID {
		t.Errorf("new block's owner %+v, want the re-registered Node %s", obj.OwnerReferences, renewed.UID)
	}
	if got, err := s.Blocks(ctx); err != nil || !slices.Equal(got, []netip.Prefix{second}) {
		t.Errorf("Blocks() = %v, %v; want only %s (%s belongs to the deleted Node)", got, err, second, first)
	}
}

// Deleting a Node lets Kubernetes' garbage collector delete its blocks (through their ownerReferences), and
// the survivors can claim them. This runs a real kube-controller-manager with only its garbage collector.
func (c *cluster) testGarbageCollection(t *testing.T) {
	const cidr, bits = "10.5.0.0/26", 28
	ctx := ctxTimeout(t, 90*time.Second)
	gone, stays := c.node(t, "gc-i"), c.node(t, "gc-j")
	sg, ss := c.source(t, gone, cidr, bits, false), c.source(t, stays, cidr, bits, false)
	for range 2 {
		if _, err := sg.Claim(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := ss.Claim(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ss.Claim(ctx); !ipam.IsExhausted(err) {
		t.Fatalf("Claim on the full CIDR: %v", err)
	}
	c.startControllerManager(t)
	if err := c.env.Client.CoreV1().Nodes().Delete(ctx, gone.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(context.Context) (bool, error) {
		for _, b := range c.apiBlocks(t, cidr) {
			if b.Spec.Node == gone.Name {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("blocks of deleted node %s still there: %v", gone.Name, c.apiBlocks(t, cidr))
	}
	t.Logf("garbage collector freed the deleted node's blocks in %v", time.Since(began).Round(time.Millisecond))
	left := c.apiBlocks(t, cidr)
	if len(left) != 2 {
		t.Errorf("%d blocks left, want the 2 of %s", len(left), stays.Name)
	}
	for range 2 {
		if _, err := ss.Claim(ctx); err != nil {
			t.Errorf("claim of a freed block: %v", err)
		}
	}
}

// startControllerManager runs kube-controller-manager (garbage collector only) against the test apiserver
// until the test ends.
func (c *cluster) startControllerManager(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	cfg := c.env.Config
	kubeconfig := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: test, cluster: {server: %q, certificate-authority: %q}}]
users: [{name: admin, user: {client-certificate: %q, client-key: %q}}]
contexts: [{name: test, context: {cluster: test, user: admin}}]
current-context: test
`, cfg.Host, cfg.CAFile, cfg.CertFile, cfg.KeyFile)
	path := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(path, []byte(kubeconfig), 0o600); err != nil {
		t.Fatal(err)
	}
	log, err := os.Create(filepath.Join(dir, "kube-controller-manager.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(c.env.KubeBin, "kube-controller-manager"),
		"--kubeconfig="+path, "--controllers=garbagecollector", "--leader-elect=false", "--secure-port=0")
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		log.Close()
		if t.Failed() {
			out, _ := os.ReadFile(log.Name())
			t.Logf("kube-controller-manager log (tail):\n%s", tail(string(out), 3000))
		}
	})
}

// testLogger sends a Source's log to the test log, shown only for failing or -v runs.
func testLogger(t *testing.T, races *atomic.Int64) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t, races}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct {
	t     *testing.T
	races *atomic.Int64
}

func (w testWriter) Write(p []byte) (int, error) {
	if strings.Contains(string(p), "block taken meanwhile") {
		w.races.Add(1)
	}
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
