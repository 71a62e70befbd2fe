package ipam

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func newTestAllocator(t *testing.T, dir, cidr string, bits, maxBlocks int) (*Allocator, *StaticBlocks) {
	t.Helper()
	b, err := NewBlocking(netip.MustParsePrefix(cidr), bits)
	if err != nil {
		t.Fatal(err)
	}
	src := NewStaticBlocks(b, maxBlocks)
	a, err := New(Config{Dir: dir, PodCIDR: b.CIDR, Source: src})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a, src
}

func h(id string) Handle {
	return Handle{ContainerID: id, IfName: "eth0", PodNamespace: "default", PodName: "pod-" + id}
}

func TestAllocateIdempotentSkipsNetworkAddress(t *testing.T) {
	a, _ := newTestAllocator(t, t.TempDir(), "10.1.0.0/24", 28, 0)
	ctx := context.Background()
	ip1, isNew, err := a.Allocate(ctx, h("c1"))
	if err != nil || !isNew {
		t.Fatalf("Allocate c1 = %v, new=%v, %v", ip1, isNew, err)
	}
	if ip1 != netip.MustParseAddr("10.1.0.1") {
		t.Errorf("first IP = %s, want 10.1.0.1 (10.1.0.0 is the pod CIDR's network address)", ip1)
	}
	again, isNew, err := a.Allocate(ctx, h("c1"))
	if err != nil || isNew || again != ip1 {
		t.Errorf("second Allocate c1 = %v new=%v %v, want %v existing", again, isNew, err, ip1)
	}
	ip2, _, _ := a.Allocate(ctx, Handle{ContainerID: "c1", IfName: "net1"})
	if ip2 == ip1 {
		t.Errorf("other interface of the same container got the same IP %s", ip2)
	}
	if _, _, err := a.Allocate(ctx, Handle{ContainerID: "c1"}); err == nil {
		t.Error("handle without interface accepted")
	}
}

func TestReleaseAndNextFit(t *testing.T) {
	a, _ := newTestAllocator(t, t.TempDir(), "10.1.0.0/24", 28, 0)
	ctx := context.Background()
	ip1, _, _ := a.Allocate(ctx, h("c1"))
	freed, err := a.Release(h("c1"))
	if err != nil || len(freed) != 1 || freed[0] != ip1 {
		t.Fatalf("Release = %v, %v", freed, err)
	}
	if freed, err := a.Release(h("c1")); err != nil || len(freed) != 0 {
		t.Fatalf("second Release = %v, %v; want nothing, no error", freed, err)
	}
	ip2, _, _ := a.Allocate(ctx, h("c2"))
	if ip2 == ip1 {
		t.Errorf("freed IP %s reused immediately; next-fit should move on", ip1)
	}
	if _, ok := a.Lookup(h("c1")); ok {
		t.Error("released handle still found")
	}
}

func TestClaimsBlocksThenExhausts(t *testing.T) {
	// /28 in /30 blocks: 4 blocks of 4 addresses, the first of each reserved (VTEP).
	a, src := newTestAllocator(t, t.TempDir(), "10.2.0.0/28", 30, 0)
	ctx := context.Background()
	seen := map[netip.Addr]bool{}
	for i := range 12 {
		ip, _, err := a.Allocate(ctx, h(fmt.Sprint("c", i)))
		if err != nil {
			t.Fatalf("allocation %d: %v", i, err)
		}
		if seen[ip] || ip.As4()[3]%4 == 0 {
			t.Fatalf("allocation %d: bad IP %s", i, ip)
		}
		seen[ip] = true
	}
	if blocks, _ := src.Blocks(ctx); len(blocks) != 4 {
		t.Errorf("claimed %d blocks, want 4", len(blocks))
	}
	_, _, err := a.Allocate(ctx, h("one-too-many"))
	if !errors.Is(err, ErrExhausted) || !IsExhausted(err) || !strings.Contains(err.Error(), "pod CIDR 10.2.0.0/28 is exhausted") {
		t.Fatalf("err = %v, want exhaustion naming the pod CIDR", err)
	}
	a.Release(h("c3"))
	if _, _, err := a.Allocate(ctx, h("after-release")); err != nil {
		t.Fatalf("allocate after a release: %v", err)
	}
}

func TestStateSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	a, _ := newTestAllocator(t, dir, "10.3.0.0/24", 26, 0)
	ctx := context.Background()
	want := map[string]netip.Addr{}
	for i := range 5 {
		ip, _, err := a.Allocate(ctx, h(fmt.Sprint("c", i)))
		if err != nil {
			t.Fatal(err)
		}
		want[fmt.Sprint("c", i)] = ip
	}
	a.Release(h("c2"))
	delete(want, "c2")
	// The earlier write-then-link scheme left .tmp- files on a crash: never an allocation.
	os.WriteFile(filepath.Join(dir, "addrs", ".tmp-deadbeef"), []byte(`{"addr":"10.3.0.200"}`), 0o644)
	// A torn file (a crash mid-write, or disk damage) keeps its IP reserved under an empty owner until GC.
	os.WriteFile(filepath.Join(dir, "addrs", "10.3.0.100"), []byte(`{"add`), 0o644)

	if _, err := New(Config{Dir: dir, PodCIDR: netip.MustParsePrefix("10.3.0.0/24"), Source: NewStaticBlocks(Blocking{}, 0)}); err == nil {
		t.Fatal("second Allocator on a locked state dir opened")
	}
	a.Close()
	b, _ := newTestAllocator(t, dir, "10.3.0.0/24", 26, 0)
	for id, ip := range want {
		got, isNew, err := b.Allocate(ctx, h(id))
		if err != nil || isNew || got != ip {
			t.Errorf("after restart %s = %v new=%v %v, want %v", id, got, isNew, err, ip)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "addrs", ".tmp-deadbeef")); !os.IsNotExist(err) {
		t.Error("temporary file not cleaned at open")
	}
	for i := range 60 { // the fresh StaticBlocks claims block 0 again; nothing already held may come back
		ip, _, err := b.Allocate(ctx, h(fmt.Sprint("n", i)))
		if err != nil {
			t.Fatal(err)
		}
		for _, held := range want {
			if ip == held || ip == netip.MustParseAddr("10.3.0.100") {
				t.Fatalf("restarted allocator handed out held IP %s", ip)
			}
		}
	}
	freed, err := b.GC(func(h Handle) bool { _, ok := want[h.ContainerID]; return ok })
	if err != nil {
		t.Fatal(err)
	}
	if len(freed) != 61 || !contains(freed, netip.MustParseAddr("10.3.0.100")) {
		t.Errorf("GC freed %d (%v), want the 60 new and the torn one", len(freed), freed)
	}
	if got := len(b.Allocations()); got != len(want) {
		t.Errorf("%d allocations after GC, want %d", got, len(want))
	}
	files, _ := os.ReadDir(filepath.Join(dir, "addrs"))
	if len(files) != len(want) {
		t.Errorf("%d files on disk after GC, want %d", len(files), len(want))
	}
}

func contains(s []netip.Addr, x netip.Addr) bool {
	for _, y := range s {
		if y == x {
			return true
		}
	}
	return false
}

func TestConcurrentAllocateUnique(t *testing.T) {
	for _, sync := range []bool{false, true} {
		t.Run(fmt.Sprint("sync=", sync), func(t *testing.T) { concurrentAllocateUnique(t, sync) })
	}
}

func concurrentAllocateUnique(t *testing.T, syncWrites bool) {
	b, _ := NewBlocking(netip.MustParsePrefix("10.4.0.0/22"), 26)
	dir := t.TempDir()
	a, err := New(Config{Dir: dir, PodCIDR: b.CIDR, Source: NewStaticBlocks(b, 0), Sync: syncWrites})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx := context.Background()
	var mu sync.Mutex
	got := map[netip.Addr]string{}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 40 {
				id := fmt.Sprintf("w%d-%d", w, i)
				ip, _, err := a.Allocate(ctx, h(id))
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if other, dup := got[ip]; dup {
					t.Errorf("%s given to %s and %s", ip, other, id)
				}
				got[ip] = id
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(a.Allocations()) != 320 {
		t.Errorf("%d allocations, want 320", len(a.Allocations()))
	}
	// Every allocation is on disk with its owner when Allocate returns.
	for ip, id := range got {
		data, err := os.ReadFile(filepath.Join(dir, "addrs", ip.String()))
		if err != nil || !strings.Contains(string(data), `"containerID":"`+id+`"`) {
			t.Errorf("file of %s (%s): %q, %v", ip, id, data, err)
		}
	}
}

// TestConcurrentAllocateSameHandle: calls for one attachment racing each other (a runtime retrying an ADD)
// get one IP, allocated once, and every call returns only once it is on disk.
func TestConcurrentAllocateSameHandle(t *testing.T) {
	dir := t.TempDir()
	a, _ := newTestAllocator(t, dir, "10.5.0.0/24", 26, 0)
	for round := range 20 {
		id := fmt.Sprint("same", round)
		var mu sync.Mutex
		ips := map[netip.Addr]int{}
		news := 0
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				ip, isNew, err := a.Allocate(context.Background(), h(id))
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := os.Stat(filepath.Join(dir, "addrs", ip.String())); err != nil {
					t.Errorf("Allocate returned %s before its file exists: %v", ip, err)
				}
				mu.Lock()
				ips[ip]++
				if isNew {
					news++
				}
				mu.Unlock()
			})
		}
		wg.Wait()
		if len(ips) != 1 || news != 1 {
			t.Fatalf("round %d: 8 concurrent calls for one handle got %v with %d new, want one IP allocated once", round, ips, news)
		}
	}
	if got := len(a.Allocations()); got != 20 {
		t.Errorf("%d allocations, want 20", got)
	}
}

type failingSource struct{ err error }

func (f failingSource) Blocks(context.Context) ([]netip.Prefix, error) { return nil, nil }
func (f failingSource) Claim(context.Context) (netip.Prefix, error)    { return netip.Prefix{}, f.err }

func TestClaimErrorIsNotExhaustion(t *testing.T) {
	a, err := New(Config{Dir: t.TempDir(), PodCIDR: netip.MustParsePrefix("10.5.0.0/16"), Source: failingSource{errors.New("api server down")}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	_, _, err = a.Allocate(context.Background(), h("c"))
	if err == nil || IsExhausted(err) || !strings.Contains(err.Error(), "api server down") {
		t.Fatalf("err = %v, want the claim error, not exhaustion", err)
	}
}

func TestServeClient(t *testing.T) {
	a, _ := newTestAllocator(t, t.TempDir(), "10.6.0.0/29", 30, 0)
	sock := filepath.Join(t.TempDir(), "ipam.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := true
	var readyMu sync.Mutex
	done := make(chan error)
	go func() {
		done <- Serve(ctx, l, a, func() bool { readyMu.Lock(); defer readyMu.Unlock(); return ready })
	}()
	c := &Client{Socket: sock, Timeout: 5 * time.Second}
	do := func(r Request) (Response, error) { return c.Do(context.Background(), r) }

	resp, err := do(Request{Op: OpAdd, Handle: h("c1")})
	if err != nil || !resp.IP.IsValid() || !resp.New {
		t.Fatalf("ADD = %+v, %v", resp, err)
	}
	if r, err := do(Request{Op: OpCheck, Handle: h("c1")}); err != nil || r.IP != resp.IP {
		t.Errorf("CHECK = %+v, %v", r, err)
	}
	if _, err := do(Request{Op: OpCheck, Handle: h("nope")}); !IsNotFound(err) {
		t.Errorf("CHECK unknown: %v, want not found", err)
	}
	if _, err := do(Request{Op: OpAdd}); err == nil {
		t.Error("ADD without handle accepted")
	}
	for i := 2; i <= 6; i++ { // 10.6.0.1-3 and .5-7 are usable: a block's first address is the VTEP
		if _, err := do(Request{Op: OpAdd, Handle: h(fmt.Sprint("c", i))}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := do(Request{Op: OpAdd, Handle: h("c7")}); !IsExhausted(err) {
		t.Errorf("ADD past the end: %v, want exhausted", err)
	}
	if r, err := do(Request{Op: OpGC, Valid: []Attachment{{"c1", "eth0"}, {"c2", "eth0"}}}); err != nil || len(r.Released) != 4 {
		t.Errorf("GC = %+v, %v; want 4 released", r, err)
	}
	if r, err := do(Request{Op: OpDel, Handle: h("c1")}); err != nil || len(r.Released) != 1 {
		t.Errorf("DEL = %+v, %v", r, err)
	}
	if r, err := do(Request{Op: OpStatus}); err != nil || !r.Ready {
		t.Errorf("STATUS = %+v, %v", r, err)
	}
	readyMu.Lock()
	ready = false
	readyMu.Unlock()
	if _, err := do(Request{Op: OpAdd, Handle: h("c9")}); !IsUnavailable(err) {
		t.Errorf("ADD while not ready: %v, want unavailable", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if _, err := do(Request{Op: OpStatus}); !IsUnavailable(err) {
		t.Errorf("STATUS after stop: %v, want unavailable", err)
	}
}

// TestFileOnDiskWinsOverIndex: an IP whose file appeared behind the Allocator's back (another writer, a state
// copied in) is never handed out: the allocation fails, the IP stays reserved, and the next call gets another.
func TestFileOnDiskWinsOverIndex(t *testing.T) {
	dir := t.TempDir()
	a, _ := newTestAllocator(t, dir, "10.6.0.0/24", 26, 0)
	ctx := context.Background()
	stray := filepath.Join(dir, "addrs", "10.6.0.1")
	if err := os.WriteFile(stray, []byte(`{"addr":"10.6.0.1","handle":{"containerID":"other","ifName":"eth0"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if ip, _, err := a.Allocate(ctx, h("c1")); !errors.Is(err, os.ErrExist) {
		t.Fatalf("Allocate over a stray file = %v, %v; want an error wrapping ErrExist", ip, err)
	}
	if _, ok := a.Lookup(h("c1")); ok {
		t.Error("failed allocation left c1 holding an IP")
	}
	ip, isNew, err := a.Allocate(ctx, h("c1"))
	if err != nil || !isNew || ip != netip.MustParseAddr("10.6.0.2") {
		t.Fatalf("retry = %v new=%v %v, want 10.6.0.2", ip, isNew, err)
	}
	data, _ := os.ReadFile(stray)
	if !strings.Contains(string(data), `"other"`) {
		t.Errorf("stray file was changed: %q", data)
	}
}
