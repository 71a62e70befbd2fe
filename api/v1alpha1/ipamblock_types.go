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
	// +kubebuilder:validation:XValidation:rule="isCIDR(self) && string(cidr(self).masked()) == self",message="must be a CIDR in canonical form with no host bits set (e.g. 172.27.0.64/26)"
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
