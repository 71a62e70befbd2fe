package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ResourceAddressPools is the resource name (plural path segment) of AddressPool.
const ResourceAddressPools = "addresspools"

// DefaultAddressPoolName is the name of the pool the LoadBalancer controller derives from the ComputeNetwork's
// spec.externalServiceIPRanges. No AddressPool object may carry it: the apiserver refuses one, and the controller
// ignores (and marks not Ready) any that exists anyway, so the ComputeNetwork always wins.
const DefaultAddressPoolName = "default"

// Condition types and reasons of AddressPool status.
const (
	// AddressPoolReady is True when the pool is in use by the allocator, False with a reason when it is not
	// (its addresses overlap another pool's, a selector cannot be evaluated, or it uses the reserved name).
	AddressPoolReady = "Ready"
)

// AddressPool is a set of addresses LoadBalancer Services get their external IPs from, besides the default
// pool (the ComputeNetwork's externalServiceIPRanges, named "default", edited on the ComputeNetwork only).
//
// Ranges of all pools, the default one included, must not overlap; a pool that overlaps an older one (the
// default pool is oldest) is not used and says why in its Ready condition. Editing or deleting a pool never
// takes an address from a Service: an address left outside every pool stays with its Service, which is flagged
// until it is moved.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=ap,categories=edgenet
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Addresses",type=string,JSONPath=`.spec.addresses`
// +kubebuilder:printcolumn:name="Auto",type=boolean,JSONPath=`.spec.autoAssign`
// +kubebuilder:printcolumn:name="Priority",type=integer,JSONPath=`.spec.priority`
// +kubebuilder:printcolumn:name="Used",type=integer,JSONPath=`.status.used`
// +kubebuilder:printcolumn:name="Free",type=string,JSONPath=`.status.free`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="self.metadata.name != 'default'",message="the pool named 'default' is the ComputeNetwork's externalServiceIPRanges: edit those, or give this pool another name"
type AddressPool struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec AddressPoolSpec `json:"spec"`
	// +optional
	Status AddressPoolStatus `json:"status,omitempty"`
}

// AddressPoolSpec says which addresses the pool holds and which Services may use them.
type AddressPoolSpec struct {
	// Addresses are address ranges "first-last", single addresses or CIDRs, IPv4 and IPv6 mixed.
	//
	// +required
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +listType=atomic
	Addresses []IPRange `json:"addresses"`

	// AutoAssign lets Services that name neither an address nor a pool get addresses from this pool. When
	// false, only Services naming the pool (annotation edgenet.io/address-pool) or one of its addresses do.
	//
	// +optional
	// +kubebuilder:default=true
	AutoAssign *bool `json:"autoAssign,omitempty"`

	// AvoidBuggyIPs skips IPv4 addresses ending in .0 or .255, which some consumer routers drop.
	//
	// +optional
	AvoidBuggyIPs bool `json:"avoidBuggyIPs,omitempty"`

	// Priority orders auto-assignment: pools of higher priority are used first. The default pool has 0.
	//
	// +optional
	Priority int32 `json:"priority,omitempty"`

	// NamespaceSelector restricts the pool to Services in matching namespaces; unset admits all.
	//
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`

	// ServiceSelector restricts the pool to Services with matching labels; unset admits all.
	//
	// +optional
	ServiceSelector *metav1.LabelSelector `json:"serviceSelector,omitempty"`
}

// AutoAssignEnabled is spec.autoAssign with its default (true) applied.
func (s AddressPoolSpec) AutoAssignEnabled() bool { return s.AutoAssign == nil || *s.AutoAssign }

// AddressPoolStatus is the pool as the controller sees it.
type AddressPoolStatus struct {
	// ObservedGeneration is the spec generation the status describes.
	//
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Used is the number of the pool's addresses assigned to Services (a shared address counts once).
	//
	// +optional
	Used int64 `json:"used"`

	// Free is the number of addresses still free, in decimal: a string, because an IPv6 pool can hold more than
	// an int64 counts.
	//
	// +optional
	Free string `json:"free,omitempty"`

	// Conditions: Ready.
	//
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// AddressPoolList is a list of AddressPools.
//
// +kubebuilder:object:root=true
type AddressPoolList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []AddressPool `json:"items"`
}
