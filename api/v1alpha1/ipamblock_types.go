package v1alpha1

import (
	"fmt"
	"net/netip"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// IPAMBlock records that one node owns one block of the pod CIDR: the node hands pod IPs out of it and routes
// it. The object's name is the block's CIDR spelled as a DNS name (BlockName), and the apiserver enforces that
// the name matches spec.cidr, so the apiserver's name uniqueness guarantees that no block is ever owned by two
// nodes: whoever creates the object first owns the block, every other create fails with AlreadyExists.
//
// Blocks carry an ownerReference to their Node, so Kubernetes' garbage collector deletes them (freeing the
// addresses) when the Node object is deleted. The spec is immutable: a block changes hands only by being deleted
// and created again.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=ipb,categories=edgenet
// +kubebuilder:selectablefield:JSONPath=`.spec.node`
// +kubebuilder:printcolumn:name="CIDR",type=string,JSONPath=`.spec.cidr`
// +kubebuilder:printcolumn:name="Node",type=string,JSONPath=`.spec.node`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="self.metadata.name == self.spec.cidr.replace('.', '-').replace(':', '-').replace('/', '-')",message="metadata.name must be spec.cidr with '.', ':' and '/' replaced by '-' (e.g. 172-27-0-64-26 for 172.27.0.64/26)"
type IPAMBlock struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec IPAMBlockSpec `json:"spec"`
}

// IPAMBlockSpec names the block and its owner.
//
// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec is immutable: delete the block and create it again"
type IPAMBlockSpec struct {
	// CIDR is the block, a masked prefix in canonical form (e.g. 172.27.0.64/26 or fd00:27::40/122).
	//
	// +required
	// +kubebuilder:validation:MinLength=4
	// +kubebuilder:validation:MaxLength=43
	// +kubebuilder:validation:XValidation:rule="self.matches('^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])[.]){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])/(3[0-2]|[12]?[0-9])$') ? (int(self.split('/')[0].split('.')[0]) * 16777216 + int(self.split('/')[0].split('.')[1]) * 65536 + int(self.split('/')[0].split('.')[2]) * 256 + int(self.split('/')[0].split('.')[3])) % [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072, 262144, 524288, 1048576, 2097152, 4194304, 8388608, 16777216, 33554432, 67108864, 134217728, 268435456, 536870912, 1073741824, 2147483648, 4294967296][32 - int(self.split('/')[1])] == 0 : (self.matches('^(((0|[1-9a-f][0-9a-f]{0,3}):){7}(0|[1-9a-f][0-9a-f]{0,3})|((0|[1-9a-f][0-9a-f]{0,3}):){1,7}:|((0|[1-9a-f][0-9a-f]{0,3}):){1,6}:(0|[1-9a-f][0-9a-f]{0,3})|((0|[1-9a-f][0-9a-f]{0,3}):){1,5}(:(0|[1-9a-f][0-9a-f]{0,3})){1,2}|((0|[1-9a-f][0-9a-f]{0,3}):){1,4}(:(0|[1-9a-f][0-9a-f]{0,3})){1,3}|((0|[1-9a-f][0-9a-f]{0,3}):){1,3}(:(0|[1-9a-f][0-9a-f]{0,3})){1,4}|((0|[1-9a-f][0-9a-f]{0,3}):){1,2}(:(0|[1-9a-f][0-9a-f]{0,3})){1,5}|(0|[1-9a-f][0-9a-f]{0,3}):(:(0|[1-9a-f][0-9a-f]{0,3})){1,6}|:((:(0|[1-9a-f][0-9a-f]{0,3})){1,7}|:))/(12[0-8]|1[01][0-9]|[1-9]?[0-9])$') && !self.matches('(^|:)0::|::0(:|/)') && (self.contains('::') ? self.split(':').filter(g, g != '').size() <= 6 : !self.matches('(^|:)0:0(:|/)')))",message="must be a CIDR in canonical form with no host bits set (e.g. 172.27.0.64/26)"
	CIDR string `json:"cidr"`

	// Node is the name of the Node that owns the block.
	//
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Node string `json:"node"`
}

// IPAMBlockList is a list of IPAMBlocks.
//
// +kubebuilder:object:root=true
type IPAMBlockList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []IPAMBlock `json:"items"`
}

// BlockName is the object name of the IPAMBlock for block p: its canonical text with '.', ':' and '/' replaced
// by '-', e.g. "172-27-0-64-26". The mapping is one-to-one on masked prefixes. It fails for prefixes that cannot
// be a block (not masked, zoned, IPv4-mapped) and for IPv6 prefixes whose text starts with "::", which would give
// a name starting with '-'.
func BlockName(p netip.Prefix) (string, error) {
	switch {
	case !p.IsValid():
		return "", fmt.Errorf("v1alpha1: block name: invalid prefix")
	case p.Masked() != p:
		return "", fmt.Errorf("v1alpha1: block name: %s has host bits set", p)
	case p.Addr().Is4In6():
		return "", fmt.Errorf("v1alpha1: block name: %s is IPv4-mapped IPv6", p)
	}
	name := strings.NewReplacer(".", "-", ":", "-", "/", "-").Replace(p.String())
	if strings.HasPrefix(name, "-") {
		return "", fmt.Errorf("v1alpha1: block name: %s starts with \"::\" and gives no valid object name", p)
	}
	return name, nil
}

// Prefix parses spec.cidr.
func (b *IPAMBlock) Prefix() (netip.Prefix, error) {
	p, err := netip.ParsePrefix(b.Spec.CIDR)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("v1alpha1: IPAMBlock %s: %w", b.Name, err)
	}
	return p, nil
}
