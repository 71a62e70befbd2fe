package proxy

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestChunkedFullWriteIsTheSingleTransaction: the chunks a streamed full sync emits,
// concatenated, are exactly the text of the one-transaction full write.
func TestChunkedFullWriteIsTheSingleTransaction(t *testing.T) {
	svcs, eps := benchServices(1500) // several chunks
	all := map[ServiceKey]*ServiceRules{}
	for i, s := range svcs {
		s.AffinityTimeout = time.Duration(i%2) * time.Hour
		all[s.Key] = ComputeService(testNode, s, eps[i:i+1])
	}
	existing := Existing{Tables: []string{TableName, ShardTable(0), ShardTable(1)},
		Chains: []qname{{ShardTable(0), "svc-gone/x/tcp/http"}, {ShardTable(0), "services"}, {TableName, chainReject}},
		Sets:   []qname{{ShardTable(1), "aff-gone/x"}}}
	now := time.Unix(100, 0)
	fake := newFakeTables(testNode.Family)

	one := fake.NewTx()
	rs1, _ := NewRuleset(testNode)
	rs1.WriteFull(one, all, existing, now)

	var chunks []string
	rs2, _ := NewRuleset(testNode)
	err := rs2.writeFull(&chunker{cur: fake.NewTx(), newTx: fake.NewTx, emit: func(tx *Tx) error {
		if tx.NumOperations() > chunkOps+200 {
			t.Errorf("chunk of %d operations", tx.NumOperations())
		}
		chunks = append(chunks, tx.String())
		return nil
	}}, all, existing, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(chunks) < 3 {
		t.Fatalf("only %d chunks", len(chunks))
	}
	// Tables are independent: what must match is each table's operations, in order.
	byTable := func(text string) map[string]string {
		out := map[string]string{}
		for _, l := range strings.SplitAfter(text, "\n") {
			if f := strings.Fields(l); len(f) >= 4 {
				out[f[3]] += l
			} else if l != "" {
				t.Fatalf("line %q", l)
			}
		}
		return out
	}
	got, want := byTable(strings.Join(chunks, "")), byTable(one.String())
	if len(want) != 3 {
		t.Errorf("single transaction touches %d tables, want 3", len(want))
	}
	for table := range want {
		if got[table] != want[table] {
			t.Errorf("table %s: chunks differ from the single transaction (%d vs %d bytes)", table, len(got[table]), len(want[table]))
		}
	}
	if len(got) != len(want) {
		t.Errorf("chunks touch %d tables, the single transaction %d", len(got), len(want))
	}
	if rs1.StaleChains() != rs2.StaleChains() || len(rs1.services) != len(rs2.services) {
		t.Fatalf("ruleset state differs")
	}
}

// TestStreamedFullSyncFailureAppliesNothing breaks a streamed full sync after
// several chunks have reached nft: nft must be killed before its input ends, so
// the table is not created at all.
func TestStreamedFullSyncFailureAppliesNothing(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	ns := newTestNS(t, "stream")
	p, err := NewProxier(Options{Node: testNode, NFT: newNSNFT(t, ns).open, NFTCommand: nftIn(ns)})
	if err != nil {
		t.Fatal(err)
	}
	svcs, eps := benchServices(1500)
	all := map[ServiceKey]*ServiceRules{}
	for i, s := range svcs {
		all[s.Key] = ComputeService(testNode, s, eps[i:i+1])
	}
	// The last service in name order carries an element knftables refuses.
	bad := &ServiceRules{Key: ServiceKey{"zz", "bad"}, Chains: map[string][]string{}, Affinity: map[string]time.Duration{},
		Elements: []element{{Map: "", Key: "172.28.9.9 . tcp . 80", Value: "drop"}}}
	all[bad.Key] = bad
	rs, _ := NewRuleset(testNode)
	err = p.streamFull(context.Background(), rs, all, Existing{}, time.Now())
	if err == nil {
		t.Fatal("no error")
	}
	out, _ := exec.Command("ip", "netns", "exec", ns.name, "nft", "list", "ruleset").CombinedOutput()
	if strings.TrimSpace(string(out)) != "" {
		t.Fatalf("a failed stream left rules behind:\n%.500s", out)
	}

	// The same without the bad service goes through.
	delete(all, bad.Key)
	rs, _ = NewRuleset(testNode)
	if err := p.streamFull(context.Background(), rs, all, Existing{}, time.Now()); err != nil {
		t.Fatal(err)
	}
	out, _ = exec.Command("ip", "netns", "exec", ns.name, "nft", "list", "chains", "ip").CombinedOutput()
	if n := strings.Count(string(out), "chain svc-"); n != 1500 {
		t.Fatalf("%d service chains after the stream, want 1500", n)
	}
	_ = fmt.Sprint
}
