package controller

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "edgenet.io/edgenet/api/v1alpha1"
	"edgenet.io/edgenet/api/v1alpha1/crdtest"
	"edgenet.io/edgenet/internal/computenet"
	"edgenet.io/edgenet/internal/testenv"
	"edgenet.io/edgenet/internal/webhook"
)

func spec() v1.ComputeNetworkSpec { return webhook.SpecOf(computenet.Defaults()) }

func wnode(name, ip string) webhook.Node {
	return webhook.Node{Name: name, InternalIPs: []netip.Addr{netip.MustParseAddr(ip)}}
}

func TestComputeNetworkStatus(t *testing.T) {
	two := []webhook.Node{wnode("node1", "192.168.50.10"), wnode("node2", "192.168.50.11")}
	tests := []struct {
		name   string
		spec   func(*v1.ComputeNetworkSpec)
		nodes  []webhook.Node
		status metav1.ConditionStatus
		reason string
		msg    string
		used   int32
	}{
		{"valid, two nodes", nil, two, metav1.ConditionTrue, ReasonValid, "3 of 10 node IPs in use", 3},
		{"valid, no nodes yet", nil, nil, metav1.ConditionTrue, ReasonValid, "1 of 10", 1},
		{"invalid settings stored before the webhook", func(s *v1.ComputeNetworkSpec) { s.PodCIDR = "192.168.50.0/26" }, two,
			metav1.ConditionFalse, ReasonInvalid, "spec.podCIDR: must not overlap the site subnet", 3},
		{"a node outside the range", nil, append(two, wnode("node3", "192.168.50.77")),
			metav1.ConditionFalse, ReasonNodesOutside, `spec.nodes: must be at least the number of Nodes in the cluster, 3`, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cn := &v1.ComputeNetwork{ObjectMeta: metav1.ObjectMeta{Name: "default", Generation: 4}, Spec: spec()}
			if tt.spec != nil {
				tt.spec(&cn.Spec)
			}
			cond, used := ComputeNetworkStatus(cn, tt.nodes)
			if cond.Type != v1.ConditionReady || cond.Status != tt.status || cond.Reason != tt.reason || cond.ObservedGeneration != 4 {
				t.Errorf("condition %+v, want %s/%s", cond, tt.status, tt.reason)
			}
			if !strings.Contains(cond.Message, tt.msg) {
				t.Errorf("message %q lacks %q", cond.Message, tt.msg)
			}
			if used != tt.used {
				t.Errorf("nodeIPsUsed %d, want %d", used, tt.used)
			}
		})
	}
}

// TestComputeNetworkStatusAgainstAPIServer runs the status part against a real
// apiserver: Ready and nodeIPsUsed follow the Nodes and the spec. (No webhook here,
// so a spec the webhook would refuse can be stored.)
func TestComputeNetworkStatusAgainstAPIServer(t *testing.T) {
	env := testenv.Start(t)
	crdtest.Install(t, env.Config)
	c, err := v1.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- RunComputeNetworkStatus(ctx, env.Client, c, slog.New(slog.DiscardHandler)) }()
	t.Cleanup(func() { cancel(); <-done })

	if _, err := c.ComputeNetworks().Create(ctx, &v1.ComputeNetwork{ObjectMeta: metav1.ObjectMeta{Name: "default"}, Spec: spec()}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitStatus := func(what string, status metav1.ConditionStatus, reason string, used int32) {
		t.Helper()
		var last *v1.ComputeNetwork
		for ctx.Err() == nil {
			last, err = c.ComputeNetworks().Get(ctx, "default", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			cond := meta.FindStatusCondition(last.Status.Conditions, v1.ConditionReady)
			if cond != nil && cond.Status == status && cond.Reason == reason && last.Status.NodeIPsUsed == used &&
				last.Status.ObservedGeneration == last.Generation && cond.ObservedGeneration == last.Generation {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("%s: status %+v, want Ready %s/%s and nodeIPsUsed %d", what, last.Status, status, reason, used)
	}
	waitStatus("no nodes", metav1.ConditionTrue, ReasonValid, 1)
	for _, n := range []struct{ name, ip string }{{"node1", "192.168.50.10"}, {"node2", "192.168.50.11"}} {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.name},
			Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: n.ip}}}}
		if _, err := env.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitStatus("two nodes", metav1.ConditionTrue, ReasonValid, 3)
	cn, _ := c.ComputeNetworks().Get(ctx, "default", metav1.GetOptions{})
	cn.Spec.NodeIPRange = "192.168.50.11-192.168.50.19"
	if _, err := c.ComputeNetworks().Update(ctx, cn, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitStatus("node1 outside", metav1.ConditionFalse, ReasonNodesOutside, 2)
}
