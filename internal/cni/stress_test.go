package cni

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
)

// TestStressAgentKilled drives 300 concurrent ADD/DEL through the real plugin while the agent is SIGKILLed and
// restarted twice. ADDs that fail are left for GC, as a runtime that lost track would; DELs retry like kubelet.
// At the end no IP may be held by two live attachments, and after GC exactly the live ones hold IPs.
func TestStressAgentKilled(t *testing.T) {
	const (
		workers = 16
		ops     = 300
		slots   = 5 // pod netns per worker, one attachment each
	)
	n := newNode(t, "10.60.0.0/22", 28)
	list := n.conflist("1.1.0", "")
	type live struct {
		r  *libcni.RuntimeConf
		ip netip.Addr
	}
	var (
		mu        sync.Mutex
		alive     = map[string]live{}
		failedAdd int
		forgotten int
		forgot    = make([][]bool, workers)
		seq       atomic.Int64
		latencies []time.Duration
		agentMu   sync.Mutex
	)
	pods := make([][]ns.NetNS, workers)
	for w := range pods {
		forgot[w] = make([]bool, slots)
		for range slots {
			pods[w] = append(pods[w], newNetns(t, "s"))
		}
	}
	killer := func(at int64) {
		if at == ops/3 || at == 2*ops/3 {
			agentMu.Lock()
			n.killAgent()
			time.Sleep(150 * time.Millisecond) // requests now fail: the plugin must say "try again"
			n.startAgent()
			agentMu.Unlock()
		}
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			used := make([]*libcni.RuntimeConf, slots)
			for {
				op := seq.Add(1)
				if op > ops {
					return
				}
				go killer(op)
				free := slices.Index(used, nil)
				if free >= 0 && (rng.IntN(3) > 0 || slices.Index(forgot[w], false) < 0) {
					r := rt(fmt.Sprintf("w%dop%d", w, op), pods[w][free].Path(), "eth0")
					start := time.Now()
					res, err := n.cni.AddNetworkList(withTimeout(t), list, r)
					d := time.Since(start)
					if err != nil {
						if code, _ := cniCode(err); code != types.ErrTryAgainLater {
							t.Errorf("ADD %s: %v (want success or code 11 while the agent is down)", r.ContainerID, err)
						}
						mu.Lock()
						failedAdd++
						mu.Unlock()
						// No DEL: if the agent died after recording the IP, GC must find it.
						continue
					}
					cur, _ := typesResult(res)
					mu.Lock()
					latencies = append(latencies, d)
					if rng.IntN(15) == 0 {
						// A runtime that lost this attachment: veth and IP stay until GC. The slot stays taken.
						forgotten++
						forgot[w][free] = true
					} else {
						alive[r.ContainerID] = live{r: r, ip: podIP(t, cur)}
					}
					mu.Unlock()
					used[free] = r
					continue
				}
				var cand []int
				for i, r := range used {
					if r != nil && !forgot[w][i] {
						cand = append(cand, i)
					}
				}
				if len(cand) == 0 {
					continue // every slot holds a forgotten attachment
				}
				i := cand[rng.IntN(len(cand))]
				r := used[i]
				for try := 0; ; try++ {
					err := n.cni.DelNetworkList(withTimeout(t), list, r)
					if err == nil {
						break
					}
					if code, _ := cniCode(err); code != types.ErrTryAgainLater || try > 100 {
						t.Errorf("DEL %s: %v", r.ContainerID, err)
						break
					}
					time.Sleep(50 * time.Millisecond)
				}
				mu.Lock()
				delete(alive, r.ContainerID)
				mu.Unlock()
				used[i] = nil
			}
		})
	}
	wg.Wait()
	agentMu.Lock()
	defer agentMu.Unlock()

	owner := map[netip.Addr]string{}
	for id, l := range alive {
		if other, dup := owner[l.ip]; dup {
			t.Errorf("IP %s held by live %s and %s", l.ip, other, id)
		}
		owner[l.ip] = id
	}
	// DEL of a failed ADD (above) already freed some; GC with the live set must free the rest and nothing more.
	var valid []types.GCAttachment
	for id := range alive {
		valid = append(valid, types.GCAttachment{ContainerID: id, IfName: "eth0"})
	}
	heldBefore := len(n.allocatedIPs())
	fresh := libcni.NewCNIConfigWithCacheDir([]string{n.binDir}, t.TempDir(), n.exec)
	if err := fresh.GCNetworkList(withTimeout(t), list, &libcni.GCArgs{ValidAttachments: valid}); err != nil {
		t.Fatalf("GC: %v", err)
	}
	var want []string
	for ip := range owner {
		want = append(want, ip.String())
	}
	slices.Sort(want)
	if got := n.allocatedIPs(); !slices.Equal(got, want) {
		t.Errorf("after GC the agent holds %d IPs, want exactly the %d live ones\n got %v\nwant %v", len(got), len(want), got, want)
	}
	if v := n.hostVeths(); len(v) != len(alive) {
		t.Errorf("%d host veths for %d live attachments", len(v), len(alive))
	}
	for id, l := range alive {
		if err := n.cni.CheckNetworkList(withTimeout(t), list, l.r); err != nil {
			t.Errorf("CHECK live %s: %v", id, err)
		}
	}
	for _, l := range alive {
		if err := n.cni.DelNetworkList(withTimeout(t), list, l.r); err != nil {
			t.Errorf("final DEL: %v", err)
		}
	}
	if got := n.allocatedIPs(); len(got) != 0 {
		t.Errorf("IPs left after deleting everything: %v", got)
	}
	p50, p99 := percentiles(latencies)
	t.Logf("%d ops, %d workers: %d live at end, %d forgotten, %d ADDs failed while the agent was down, GC freed %d IPs; ADD latency under load p50 %v p99 %v",
		ops, workers, len(alive), forgotten, failedAdd, heldBefore-len(want), p50, p99)
	if heldBefore-len(want) < forgotten {
		t.Errorf("GC freed %d IPs, fewer than the %d forgotten attachments", heldBefore-len(want), forgotten)
	}
}

func typesResult(res types.Result) (*types100.Result, error) {
	return types100.NewResultFromResult(res)
}

func percentiles(d []time.Duration) (p50, p99 time.Duration) {
	if len(d) == 0 {
		return 0, 0
	}
	s := slices.Clone(d)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)*50/100], s[min(len(s)-1, len(s)*99/100)]
}
