package v1alpha1_test

import (
	"context"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"

	v1 "edgenet.io/edgenet/api/v1alpha1"
	"edgenet.io/edgenet/api/v1alpha1/crdtest"
	"edgenet.io/edgenet/internal/testenv"
)

// One apiserver for every subtest: starting it dominates the run time.
func TestAgainstAPIServer(t *testing.T) {
	env := testenv.Start(t)
	crdtest.Install(t, env.Config)
	c, err := v1.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("IPAMBlockValidation", func(t *testing.T) { testIPAMBlockValidation(t, c) })
	t.Run("IPAMBlockImmutable", func(t *testing.T) { testIPAMBlockImmutable(t, c) })
	t.Run("ComputeNetworkValidation", func(t *testing.T) { testComputeNetworkValidation(t, c) })
	t.Run("AddressPoolValidation", func(t *testing.T) { testAddressPoolValidation(t, c) })
	t.Run("ComputeNetworkUpdates", func(t *testing.T) { testComputeNetworkUpdates(t, c) })
	t.Run("ClientWatchAndDelete", func(t *testing.T) { testClientWatchAndDelete(t, c) })
}

func block(name, cidr, node string) *v1.IPAMBlock {
	return &v1.IPAMBlock{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1.IPAMBlockSpec{CIDR: cidr, Node: node}}
}

// wantInvalid checks that err is the apiserver's 422 Invalid and mentions every fragment of want.
func wantInvalid(t *testing.T, what string, err error, want ...string) {
	t.Helper()
	if !apierrors.IsInvalid(err) {
		t.Errorf("%s: got %v, want Invalid", what, err)
		return
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%s: error %q does not mention %q", what, err, w)
		}
	}
}

func testIPAMBlockValidation(t *testing.T, c *v1.Client) {
	ctx := context.Background()
	for _, tc := range []struct {
		what             string
		name, cidr, node string
		want             []string // fragments of the Invalid error; none: must be accepted
	}{
		{what: "IPv4 block", name: "172-27-0-64-26", cidr: "172.27.0.64/26", node: "node-1"},
		{what: "IPv6 block", name: "fd00-27--40-122", cidr: "fd00:27::40/122", node: "node-1"},
		// Canonical: the longest zero run is the one compressed, a shorter one stays.
		{what: "IPv6 block with a zero run left", name: "2001-db8-0-0-1---80", cidr: "2001:db8:0:0:1::/80", node: "node-1"},
		{what: "everything", name: "0-0-0-0-0", cidr: "0.0.0.0/0", node: "node-1"},
		{what: "not a CIDR", name: "not-a-cidr", cidr: "not-a-cidr", node: "node-1",
			want: []string{"spec.cidr", "must be a CIDR"}},
		{what: "prefix too long", name: "172-27-0-64-33", cidr: "172.27.0.64/33", node: "node-1",
			want: []string{"spec.cidr", "must be a CIDR"}},
		{what: "host bits set", name: "172-27-0-65-26", cidr: "172.27.0.65/26", node: "node-1",
			want: []string{"spec.cidr", "no host bits"}},
		{what: "IPv6 not canonical", name: "fd00-0--40-122", cidr: "fd00:0::40/122", node: "node-1",
			want: []string{"spec.cidr", "canonical"}},
		{what: "octet over 255", name: "172-27-256-0-26", cidr: "172.27.256.0/26", node: "node-1",
			want: []string{"spec.cidr", "must be a CIDR"}},
		{what: "IPv4 leading zero", name: "172-027-0-0-26", cidr: "172.027.0.0/26", node: "node-1",
			want: []string{"spec.cidr", "must be a CIDR"}},
		{what: "IPv6 upper case", name: "fd00-27--80-122", cidr: "FD00:27::80/122", node: "node-1",
			want: []string{"spec.cidr", "canonical"}},
		{what: "IPv6 leading zero", name: "fd00-027--80-122", cidr: "fd00:027::80/122", node: "node-1",
			want: []string{"spec.cidr", "canonical"}},
		{what: "IPv6 zeros not compressed", name: "fd00-27-0-0-0-0-0-80-122", cidr: "fd00:27:0:0:0:0:0:80/122", node: "node-1",
			want: []string{"spec.cidr", "canonical"}},
		{what: "IPv6 one zero group compressed", name: "fd00-1-2-3-4-5--80-122", cidr: "fd00:1:2:3:4:5::80/122", node: "node-1",
			want: []string{"spec.cidr", "canonical"}},
		{what: "IPv6 prefix too long", name: "fd00-27--80-129", cidr: "fd00:27::80/129", node: "node-1",
			want: []string{"spec.cidr", "must be a CIDR"}},
		{what: "address without length", name: "172-27-0-64", cidr: "172.27.0.64", node: "node-1",
			want: []string{"spec.cidr"}},
		{what: "IPv4-mapped", name: "ffff-ac1b-0-120", cidr: "::ffff:172.27.0.0/120", node: "node-1",
			want: []string{"spec.cidr"}},
		// Two objects for one block would break the one-owner guarantee: the name must be the CIDR's.
		{what: "name of another block", name: "172-27-0-128-26", cidr: "172.27.0.64/26", node: "node-2",
			want: []string{"metadata.name must be spec.cidr"}},
		{what: "arbitrary name", name: "my-block", cidr: "172.27.0.192/26", node: "node-2",
			want: []string{"metadata.name must be spec.cidr"}},
		{what: "no node", name: "172-27-1-0-26", cidr: "172.27.1.0/26", node: "",
			want: []string{"spec.node"}},
		{what: "node not a name", name: "172-27-1-64-26", cidr: "172.27.1.64/26", node: "Node_1",
			want: []string{"spec.node"}},
	} {
		_, err := c.IPAMBlocks().Create(ctx, block(tc.name, tc.cidr, tc.node), metav1.CreateOptions{})
		if len(tc.want) == 0 {
			if err != nil {
				t.Errorf("%s: create %s: %v", tc.what, tc.name, err)
			}
			continue
		}
		wantInvalid(t, tc.what, err, tc.want...)
		if _, err := c.IPAMBlocks().Get(ctx, tc.name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("%s: rejected block %s exists anyway (get: %v)", tc.what, tc.name, err)
		}
	}
	// The same block again, for another node: the apiserver's name uniqueness refuses it.
	_, err := c.IPAMBlocks().Create(ctx, block("172-27-0-64-26", "172.27.0.64/26", "node-2"), metav1.CreateOptions{})
	if !apierrors.IsAlreadyExists(err) {
		t.Errorf("second owner of 172.27.0.64/26: got %v, want AlreadyExists", err)
	}
	got, err := c.IPAMBlocks().Get(ctx, "172-27-0-64-26", metav1.GetOptions{})
	if err != nil || got.Spec.Node != "node-1" {
		t.Errorf("172.27.0.64/26 after the second create: %+v, %v; want node-1", got.Spec, err)
	}
}

func testIPAMBlockImmutable(t *testing.T, c *v1.Client) {
	ctx := context.Background()
	b, err := c.IPAMBlocks().Create(ctx, block("172-27-2-0-26", "172.27.2.0/26", "node-1"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b.Spec.Node = "node-2"
	_, err = c.IPAMBlocks().Update(ctx, b, metav1.UpdateOptions{})
	wantInvalid(t, "hand the block to another node", err, "spec is immutable")

	b.Spec.Node = "node-1"
	b.Annotations = map[string]string{"edgenet.io/note": "metadata may change"}
	if _, err := c.IPAMBlocks().Update(ctx, b, metav1.UpdateOptions{}); err != nil {
		t.Errorf("annotation update: %v", err)
	}
}

func computeNetwork(name string) *v1.ComputeNetwork {
	return &v1.ComputeNetwork{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1.ComputeNetworkSpec{
			Nodes:                   2,
			SiteSubnet:              "192.168.50.0/24",
			Gateway:                 "192.168.50.1",
			NodeIPRange:             "192.168.50.10-192.168.50.19",
			ExternalServiceIPRanges: []v1.IPRange{"192.168.50.100-192.168.50.119"},
		},
	}
}

func testComputeNetworkValidation(t *testing.T, c *v1.Client) {
	ctx := context.Background()
	for _, tc := range []struct {
		what   string
		name   string
		mutate func(*v1.ComputeNetworkSpec)
		want   []string
	}{
		{what: "not named default", name: "site-a", want: []string{"must be named 'default'"}},
		{what: "site subnet with host bits", mutate: func(s *v1.ComputeNetworkSpec) { s.SiteSubnet = "192.168.50.1/24" },
			want: []string{"spec.siteSubnet", "no host bits"}},
		{what: "site subnet octet over 255", mutate: func(s *v1.ComputeNetworkSpec) { s.SiteSubnet = "192.168.300.0/24" },
			want: []string{"spec.siteSubnet", "must be a CIDR"}},
		{what: "gateway with a leading zero", mutate: func(s *v1.ComputeNetworkSpec) { s.Gateway = "192.168.50.01" },
			want: []string{"spec.gateway", "must be an IP address"}},
		{what: "gateway of the other family", mutate: func(s *v1.ComputeNetworkSpec) { s.Gateway = "fd00::1" },
			want: []string{"spec.gateway", "inside siteSubnet"}},
		{what: "gateway just past the site", mutate: func(s *v1.ComputeNetworkSpec) {
			s.SiteSubnet, s.Gateway = "10.0.0.0/23", "10.0.2.0"
		}, want: []string{"spec.gateway", "inside siteSubnet"}},
		{what: "node range CIDR with host bits", mutate: func(s *v1.ComputeNetworkSpec) { s.NodeIPRange = "192.168.50.9/31" },
			want: []string{"spec.nodeIPRange", "no host bits"}},
		{what: "external range prefix too long", mutate: func(s *v1.ComputeNetworkSpec) {
			s.ExternalServiceIPRanges = []v1.IPRange{"fd00::/129"}
		}, want: []string{"spec.externalServiceIPRanges[0]"}},
		{what: "gateway not an IP", mutate: func(s *v1.ComputeNetworkSpec) { s.Gateway = "router" },
			want: []string{"spec.gateway", "must be an IP address"}},
		{what: "gateway outside the site", mutate: func(s *v1.ComputeNetworkSpec) { s.Gateway = "192.168.51.1" },
			want: []string{"spec.gateway", "inside siteSubnet"}},
		{what: "node range garbage", mutate: func(s *v1.ComputeNetworkSpec) { s.NodeIPRange = "192.168.50.10-x" },
			want: []string{"spec.nodeIPRange", "address range"}},
		{what: "node range of three parts", mutate: func(s *v1.ComputeNetworkSpec) { s.NodeIPRange = "192.168.50.10-192.168.50.11-192.168.50.12" },
			want: []string{"spec.nodeIPRange"}},
		{what: "range across families", mutate: func(s *v1.ComputeNetworkSpec) {
			s.ExternalServiceIPRanges = []v1.IPRange{"192.168.50.100-fd00::1"}
		}, want: []string{"spec.externalServiceIPRanges[0]", "one address family"}},
		{what: "no external range", mutate: func(s *v1.ComputeNetworkSpec) { s.ExternalServiceIPRanges = nil },
			want: []string{"spec.externalServiceIPRanges"}},
		{what: "no nodes", mutate: func(s *v1.ComputeNetworkSpec) { s.Nodes = 0 },
			want: []string{"spec.nodes"}},
		{what: "pod block larger than the pod CIDR", mutate: func(s *v1.ComputeNetworkSpec) { s.PodBlockSize = 12 },
			want: []string{"spec.podBlockSize", "between podCIDR's"}},
		{what: "pod block longer than an address", mutate: func(s *v1.ComputeNetworkSpec) { s.PodBlockSize = 33 },
			want: []string{"spec.podBlockSize"}},
		{what: "cluster domain with a trailing dot", mutate: func(s *v1.ComputeNetworkSpec) { s.ClusterDomain = "cluster.local." },
			want: []string{"spec.clusterDomain"}},
		{what: "upstream DNS not an IP", mutate: func(s *v1.ComputeNetworkSpec) { s.UpstreamDNS = []v1.IPAddress{"dns.example"} },
			want: []string{"spec.upstreamDNS[0]", "must be an IP address"}},
		{what: "upstream DNS with zone", mutate: func(s *v1.ComputeNetworkSpec) { s.UpstreamDNS = []v1.IPAddress{"fe80::1%eth0"} },
			want: []string{"spec.upstreamDNS[0]"}},
	} {
		name := tc.name
		if name == "" {
			name = v1.ComputeNetworkName
		}
		cn := computeNetwork(name)
		if tc.mutate != nil {
			tc.mutate(&cn.Spec)
		}
		_, err := c.ComputeNetworks().Create(ctx, cn, metav1.CreateOptions{})
		wantInvalid(t, tc.what, err, tc.want...)
	}
	list, err := c.ComputeNetworks().List(ctx, metav1.ListOptions{})
	if err != nil || len(list.Items) != 0 {
		t.Errorf("after only invalid creates: %d ComputeNetworks, %v", len(list.Items), err)
	}

	// Valid settings pass the rules (dry run: the creates above must stay the only ones).
	for _, tc := range []struct {
		what   string
		mutate func(*v1.ComputeNetworkSpec)
	}{
		{what: "the base settings", mutate: func(*v1.ComputeNetworkSpec) {}},
		{what: "spaces around a range's dash", mutate: func(s *v1.ComputeNetworkSpec) { s.NodeIPRange = " 192.168.50.10 - 192.168.50.19 " }},
		{what: "gateway at the top of a /8", mutate: func(s *v1.ComputeNetworkSpec) { s.SiteSubnet, s.Gateway = "10.0.0.0/8", "10.255.255.254" }},
		{what: "IPv6", mutate: func(s *v1.ComputeNetworkSpec) {
			s.SiteSubnet, s.Gateway, s.NodeIPRange = "fd00:50::/64", "fd00:50::1", "fd00:50::10-fd00:50::19"
			s.ExternalServiceIPRanges = []v1.IPRange{"fd00:50::100/120", "FD00:50::200", "fd00:50:0:0:0:0:0:300-fd00:50::3ff"}
			s.PodCIDR, s.ServiceCIDR, s.PodBlockSize = "fd00:27::/48", "fd00:28::/112", 64
			s.UpstreamDNS = []v1.IPAddress{"2001:4860:4860::8888", "::1"}
		}},
	} {
		cn := computeNetwork(v1.ComputeNetworkName)
		tc.mutate(&cn.Spec)
		if _, err := c.ComputeNetworks().Create(ctx, cn, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
			t.Errorf("%s: %v", tc.what, err)
		}
	}
}

func testAddressPoolValidation(t *testing.T, c *v1.Client) {
	ctx := context.Background()
	for _, tc := range []struct {
		what      string
		name      string
		addresses []v1.IPRange
		want      []string // none: must be accepted
	}{
		{what: "every form", name: "lab", addresses: []v1.IPRange{"10.0.0.1-10.0.0.9", "10.0.1.0/24", "10.0.2.7", "fd00::1", "fd00:1::/120", "fd00::10-fd00::20"}},
		{what: "named default", name: "default", addresses: []v1.IPRange{"10.0.3.0/24"}, want: []string{"named 'default'"}},
		{what: "octet over 255", name: "bad-octet", addresses: []v1.IPRange{"10.0.0.1-10.0.0.256"},
			want: []string{"spec.addresses[0]", "address range"}},
		{what: "host bits", name: "bad-bits", addresses: []v1.IPRange{"10.0.0.0/24", "10.0.1.1/24"},
			want: []string{"spec.addresses[1]", "no host bits"}},
		{what: "across families", name: "bad-family", addresses: []v1.IPRange{"10.0.0.1-fd00::1"},
			want: []string{"spec.addresses[0]", "one address family"}},
		{what: "IPv4-mapped", name: "bad-mapped", addresses: []v1.IPRange{"::ffff:10.0.0.1"},
			want: []string{"spec.addresses[0]"}},
		{what: "zone", name: "bad-zone", addresses: []v1.IPRange{"fe80::1%eth0"},
			want: []string{"spec.addresses[0]"}},
		{what: "no addresses", name: "empty", want: []string{"spec.addresses"}},
	} {
		pool := &v1.AddressPool{ObjectMeta: metav1.ObjectMeta{Name: tc.name}, Spec: v1.AddressPoolSpec{Addresses: tc.addresses}}
		_, err := c.AddressPools().Create(ctx, pool, metav1.CreateOptions{})
		if len(tc.want) == 0 {
			if err != nil {
				t.Errorf("%s: %v", tc.what, err)
			}
			continue
		}
		wantInvalid(t, tc.what, err, tc.want...)
	}
}

func testComputeNetworkUpdates(t *testing.T, c *v1.Client) {
	ctx := context.Background()
	cn := computeNetwork(v1.ComputeNetworkName)
	cn.Spec.ExternalServiceIPRanges = append(cn.Spec.ExternalServiceIPRanges, "192.168.50.128/26", "192.168.50.250")
	cn.Spec.UpstreamDNS = []v1.IPAddress{"192.168.50.1", "2001:db8::53"}
	created, err := c.ComputeNetworks().Create(ctx, cn, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The apiserver fills in the appliance defaults, so the immutable fields always have a value to keep.
	if s := created.Spec; s.PodCIDR != "172.27.0.0/16" || s.ServiceCIDR != "172.28.0.0/16" || s.PodBlockSize != 26 || s.ClusterDomain != "cluster.local" {
		t.Errorf("defaults: podCIDR %q serviceCIDR %q podBlockSize %d clusterDomain %q", s.PodCIDR, s.ServiceCIDR, s.PodBlockSize, s.ClusterDomain)
	}

	for _, tc := range []struct {
		what   string
		mutate func(*v1.ComputeNetworkSpec)
		want   []string
	}{
		{what: "pod CIDR changed", mutate: func(s *v1.ComputeNetworkSpec) { s.PodCIDR = "10.244.0.0/16" },
			want: []string{"spec.podCIDR", "cannot change"}},
		{what: "pod CIDR removed (defaulted again)", mutate: func(s *v1.ComputeNetworkSpec) {
			s.PodCIDR = ""
		}},
		{what: "service CIDR changed", mutate: func(s *v1.ComputeNetworkSpec) { s.ServiceCIDR = "10.96.0.0/16" },
			want: []string{"spec.serviceCIDR", "cannot change"}},
		{what: "pod block size changed", mutate: func(s *v1.ComputeNetworkSpec) { s.PodBlockSize = 24 },
			want: []string{"spec.podBlockSize", "cannot change"}},
	} {
		cur, err := c.ComputeNetworks().Get(ctx, v1.ComputeNetworkName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		tc.mutate(&cur.Spec)
		got, err := c.ComputeNetworks().Update(ctx, cur, metav1.UpdateOptions{})
		if len(tc.want) == 0 {
			// Removing a defaulted field gives it its default back, which equals the old value here.
			if err != nil || got.Spec.PodCIDR != "172.27.0.0/16" {
				t.Errorf("%s: %v, podCIDR %q", tc.what, err, got.Spec.PodCIDR)
			}
			continue
		}
		wantInvalid(t, tc.what, err, tc.want...)
	}

	// Mutable fields change; the immutable ones stay as they were.
	cur, err := c.ComputeNetworks().Get(ctx, v1.ComputeNetworkName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cur.Spec.ExternalServiceIPRanges = []v1.IPRange{"192.168.50.100-192.168.50.149"}
	cur.Spec.Nodes = 3
	updated, err := c.ComputeNetworks().Update(ctx, cur, metav1.UpdateOptions{})
	if err != nil {
		t.Fatalf("update of mutable fields: %v", err)
	}
	if updated.Spec.Nodes != 3 || updated.Spec.PodCIDR != "172.27.0.0/16" {
		t.Errorf("after update: %+v", updated.Spec)
	}

	// Status goes through its subresource and leaves the spec alone.
	updated.Status = v1.ComputeNetworkStatus{
		ObservedGeneration: updated.Generation,
		Conditions: []metav1.Condition{{Type: v1.ConditionReady, Status: metav1.ConditionTrue, Reason: "Applied",
			Message: "settings applied", LastTransitionTime: metav1.Now()}},
		NodeIPsUsed: 4, ExternalIPsUsed: 2, ExternalIPsFree: 48,
	}
	updated.Spec.Nodes = 7
	st, err := c.ComputeNetworks().UpdateStatus(ctx, updated, metav1.UpdateOptions{})
	if err != nil {
		t.Fatalf("update status: %v", err)
	}
	if st.Spec.Nodes != 3 || st.Status.ExternalIPsFree != 48 || len(st.Status.Conditions) != 1 {
		t.Errorf("after status update: spec.nodes %d (want 3), status %+v", st.Spec.Nodes, st.Status)
	}
	// ...and a spec update does not touch the status.
	st.Status.ExternalIPsFree = 0
	st.Spec.Nodes = 4
	again, err := c.ComputeNetworks().Update(ctx, st, metav1.UpdateOptions{})
	if err != nil || again.Status.ExternalIPsFree != 48 || again.Spec.Nodes != 4 {
		t.Errorf("spec update: %v, nodes %d, externalIPsFree %d (want 48)", err, again.Spec.Nodes, again.Status.ExternalIPsFree)
	}
}

func testClientWatchAndDelete(t *testing.T, c *v1.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	list, err := c.IPAMBlocks().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := c.IPAMBlocks().Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion,
		FieldSelector: "spec.node=node-9"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	b, err := c.IPAMBlocks().Create(ctx, block("172-27-3-0-26", "172.27.3.0/26", "node-9"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// A stale precondition (another UID) must not delete the block.
	err = c.IPAMBlocks().Delete(ctx, b.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: ptr(types.UID("not-the-uid"))}})
	if !apierrors.IsConflict(err) {
		t.Errorf("delete with a wrong UID: got %v, want Conflict", err)
	}
	uid, rv := b.UID, b.ResourceVersion
	if err := c.IPAMBlocks().Delete(ctx, b.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid, ResourceVersion: &rv}}); err != nil {
		t.Errorf("delete with matching preconditions: %v", err)
	}
	var events []string
	for len(events) < 2 {
		select {
		case ev := <-w.ResultChan():
			blk, ok := ev.Object.(*v1.IPAMBlock)
			if !ok {
				t.Fatalf("watch event %s carries %T", ev.Type, ev.Object)
			}
			events = append(events, string(ev.Type)+" "+blk.Spec.CIDR+" "+blk.Spec.Node)
		case <-ctx.Done():
			t.Fatalf("watch: only %q", events)
		}
	}
	want := []string{string(watch.Added) + " 172.27.3.0/26 node-9", string(watch.Deleted) + " 172.27.3.0/26 node-9"}
	if strings.Join(events, "|") != strings.Join(want, "|") {
		t.Errorf("watch events %q, want %q", events, want)
	}
}

func ptr[T any](v T) *T { return &v }
