package webui

import (
	"reflect"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "edgenet.io/edgenet/api/v1alpha1"
)

func TestBuildOverview(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	yes, no := true, false
	node := func(name, ip string, ready corev1.ConditionStatus) corev1.Node {
		return corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.NodeStatus{
			Addresses:  []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: name}, {Type: corev1.NodeInternalIP, Address: ip}},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: ready}}}}
	}
	announce := func(node, ip string, at time.Time) corev1.Event {
		return corev1.Event{Reason: "Announcing", InvolvedObject: corev1.ObjectReference{Kind: "Service", Namespace: "demo", Name: "web"},
			Message: "node " + node + " announces " + ip + " on eth0 (ARP/NDP)", LastTimestamp: metav1.NewTime(at)}
	}
	st := ClusterState{
		Nodes: []corev1.Node{node("node2", "192.168.50.11", corev1.ConditionFalse), node("node1", "192.168.50.10", corev1.ConditionTrue)},
		Services: []corev1.Service{
			{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "web"},
				Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, ClusterIP: "172.28.0.50",
					Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP, NodePort: 30080}}},
				Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: "192.168.50.100"}}}}},
			{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "waiting"},
				Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, ClusterIP: "172.28.0.51"},
				Status: corev1.ServiceStatus{Conditions: []metav1.Condition{{Type: "edgenet.io/LoadBalancerIPAllocated", Status: "False",
					Reason: "NoFreeAddress", Message: "pool default is full"}}}},
		},
		EndpointSlices: []discoveryv1.EndpointSlice{{
			ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "web-1", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
			Endpoints: []discoveryv1.Endpoint{{Conditions: discoveryv1.EndpointConditions{Ready: &yes}},
				{Conditions: discoveryv1.EndpointConditions{Ready: &no}}, {}}}},
		Pods: []corev1.Pod{
			{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "web-b"}, Spec: corev1.PodSpec{NodeName: "node1"}, Status: corev1.PodStatus{PodIP: "172.27.0.5", Phase: corev1.PodRunning}},
			{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "web-a"}, Spec: corev1.PodSpec{NodeName: "node1"}, Status: corev1.PodStatus{PodIP: "172.27.0.4", Phase: corev1.PodRunning}},
		},
		// node1 announced first, node2 took over later: node2 is the announcer now.
		Events: []corev1.Event{announce("node2", "192.168.50.100", t0.Add(time.Minute)), announce("node1", "192.168.50.100", t0),
			announce("node1", "192.168.50.222", t0.Add(time.Hour))}, // an address the Service no longer has
		ComputeNetwork: &v1.ComputeNetwork{Spec: v1.ComputeNetworkSpec{ExternalServiceIPRanges: []v1.IPRange{"192.168.50.100-192.168.50.119"}},
			Status: v1.ComputeNetworkStatus{ExternalIPsUsed: 1, ExternalIPsFree: 19, Conditions: []metav1.Condition{{Type: "Ready", Status: "False", Message: "bad"}}}},
		Pools: []v1.AddressPool{{ObjectMeta: metav1.ObjectMeta{Name: "edgenet-ui"}, Spec: v1.AddressPoolSpec{Addresses: []v1.IPRange{"192.168.50.19"}},
			Status: v1.AddressPoolStatus{Used: 1, Free: "0", Conditions: []metav1.Condition{{Type: "Ready", Status: "True", Message: "1 addresses in use"}}}}},
	}
	want := Overview{
		Nodes: []NodeInfo{{Name: "node1", IPs: []string{"192.168.50.10"}, Ready: true}, {Name: "node2", IPs: []string{"192.168.50.11"}}},
		Services: []ServiceInfo{
			{Namespace: "demo", Name: "waiting", Type: "LoadBalancer", ClusterIP: "172.28.0.51", ExternalIPs: []string{}, Ports: []string{},
				Pending: "NoFreeAddress: pool default is full"},
			{Namespace: "demo", Name: "web", Type: "LoadBalancer", ClusterIP: "172.28.0.50", ExternalIPs: []string{"192.168.50.100"},
				Ports: []string{"80/TCP (node 30080)"}, ReadyEndpoints: 2, AnnouncedBy: map[string]string{"192.168.50.100": "node2"}},
		},
		Pools: []PoolInfo{
			{Name: "default", Addresses: []string{"192.168.50.100-192.168.50.119"}, Used: 1, Free: "19", Message: "bad"},
			{Name: "edgenet-ui", Addresses: []string{"192.168.50.19"}, Used: 1, Free: "0", Ready: true, Message: "1 addresses in use"},
		},
		PodsByNode: []NodePods{{Node: "node1", Pods: []PodInfo{
			{Namespace: "demo", Name: "web-a", IP: "172.27.0.4", Phase: "Running"}, {Namespace: "demo", Name: "web-b", IP: "172.27.0.5", Phase: "Running"}}}},
	}
	got := BuildOverview(st)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("overview\n got %+v\nwant %+v", got, want)
	}
}

func TestDefaultPoolWithoutCondition(t *testing.T) {
	o := BuildOverview(ClusterState{ComputeNetwork: &v1.ComputeNetwork{}})
	if len(o.Pools) != 1 || !o.Pools[0].Ready {
		t.Fatalf("pools %+v: the default pool without a Ready condition is in use", o.Pools)
	}
}
