package proxy

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/knftables"
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
	existing := Existing{Chains: []string{"svc-gone/x/tcp/http", "services"}, Sets: []string{"aff-gone/x"}}
	now := time.Unix(100, 0)
	fake := knftables.NewFake(testNode.Family, TableName)

	one := fake.NewTransaction()
	rs1, _ := NewRuleset(testNode)
	rs1.WriteFull(one, all, existing, now)

	var chunks []string
	rs2, _ := NewRuleset(testNode)
	err := rs2.writeFull(&chunker{cur: fake.NewTransaction(), newTx: fake.NewTransaction, emit: func(tx *knftables.Transaction) error {
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
	if got, want := strings.Join(chunks, ""), one.String(); got != want {
		t.Fatalf("chunks differ from the single transaction (%d vs %d bytes)", len(got), len(want))
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
	p, err := NewProxier(Options{Node: testNode, NFT: newNSNFT(t, ns), NFTCommand: nftIn(ns)})
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
