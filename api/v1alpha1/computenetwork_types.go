package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ComputeNetworkName is the name of the one ComputeNetwork object a cluster has.
const ComputeNetworkName = "default"

// Condition types of ComputeNetwork status.
const (
	// ConditionReady is True (reason Valid) when the settings pass the admission webhook's checks against the
	// current Nodes; False with reason Invalid (settings stored before the webhook ran) or NodesOutside (a Node
	// not covered by spec.nodes or spec.nodeIPRange). Kept by edgenet controller's leader.
	ConditionReady = "Ready"
)

// ComputeNetwork is the appliance's Compute network settings, a cluster-scoped singleton named "default": the
// site network the nodes sit on, the node and external service IP ranges, and the cluster's internal ranges.
// The pod CIDR, service CIDR and pod block size are fixed once created (pods, ClusterIPs and IPAM blocks are
// allocated from them); the rest may change. The apiserver checks formats and immutability; the cross-field
// checks of internal/computenet (overlaps, sizes, ranges inside the site subnet) are the admission webhook's.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=cn,categories=edgenet
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Site",type=string,JSONPath=`.spec.siteSubnet`
// +kubebuilder:printcolumn:name="Nodes",type=integer,JSONPath=`.spec.nodes`
// +kubebuilder:printcolumn:name="Pods",type=string,JSONPath=`.spec.podCIDR`
// +kubebuilder:printcolumn:name="Services",type=string,JSONPath=`.spec.serviceCIDR`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="self.metadata.name == 'default'",message="there is one ComputeNetwork per cluster and it must be named 'default'"
type ComputeNetwork struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec ComputeNetworkSpec `json:"spec"`
	// +optional
	Status ComputeNetworkStatus `json:"status,omitempty"`
}

// ComputeNetworkSpec is what the admin sets on the Compute network page. Field names match
// internal/computenet.Settings.
//
// +kubebuilder:validation:XValidation:rule="self.siteSubnet.contains(':') == self.gateway.contains(':') && (!(self.siteSubnet.matches('^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])[.]){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])/(3[0-2]|[12]?[0-9])$') && self.gateway.matches('^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])[.]){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])$')) || (int(self.gateway.split('.')[0]) * 16777216 + int(self.gateway.split('.')[1]) * 65536 + int(self.gateway.split('.')[2]) * 256 + int(self.gateway.split('.')[3])) / [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072, 262144, 524288, 1048576, 2097152, 4194304, 8388608, 16777216, 33554432, 67108864, 134217728, 268435456, 536870912, 1073741824, 2147483648, 4294967296][32 - int(self.siteSubnet.split('/')[1])] == (int(self.siteSubnet.split('/')[0].split('.')[0]) * 16777216 + int(self.siteSubnet.split('/')[0].split('.')[1]) * 65536 + int(self.siteSubnet.split('/')[0].split('.')[2]) * 256 + int(self.siteSubnet.split('/')[0].split('.')[3])) / [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072, 262144, 524288, 1048576, 2097152, 4194304, 8388608, 16777216, 33554432, 67108864, 134217728, 268435456, 536870912, 1073741824, 2147483648, 4294967296][32 - int(self.siteSubnet.split('/')[1])])",message="gateway must be inside siteSubnet",fieldPath=".gateway"
// +kubebuilder:validation:XValidation:rule="!self.podCIDR.matches('^[^/]+/[0-9]{1,3}$') || (self.podBlockSize >= int(self.podCIDR.split('/')[1]) && self.podBlockSize <= (self.podCIDR.contains(':') ? 128 : 32))",message="podBlockSize must be a prefix length between podCIDR's and the address length",fieldPath=".podBlockSize"
type ComputeNetworkSpec struct {
	// Nodes is the number of nodes in the cluster; nodeIPRange holds one address per node plus the cluster VIP.
	//
	// +required
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	Nodes int32 `json:"nodes"`

	// SiteSubnet is the subnet of the appliance's compute port, e.g. 192.168.50.0/24.
	//
	// +required
	SiteSubnet CIDR `json:"siteSubnet"`

	// Gateway is the site network's router, inside siteSubnet.
	//
	// +required
	Gateway IPAddress `json:"gateway"`

	// NodeIPRange is the contiguous range of Kubernetes node IPs in the site subnet, e.g.
	// 192.168.50.10-192.168.50.19.
	//
	// +required
	NodeIPRange IPRange `json:"nodeIPRange"`

	// ExternalServiceIPRanges are the site-subnet ranges LoadBalancer Services get their IPs from.
	//
	// +required
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +listType=atomic
	ExternalServiceIPRanges []IPRange `json:"externalServiceIPRanges"`

	// PodCIDR is the range pod IPs come from, cut into per-node blocks of podBlockSize. Immutable.
	//
	// +optional
	// +kubebuilder:default="172.27.0.0/16"
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="podCIDR cannot change once the cluster exists"
	PodCIDR CIDR `json:"podCIDR,omitempty"`

	// ServiceCIDR is the range ClusterIPs come from. Immutable.
	//
	// +optional
	// +kubebuilder:default="172.28.0.0/16"
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="serviceCIDR cannot change once the cluster exists"
	ServiceCIDR CIDR `json:"serviceCIDR,omitempty"`

	// PodBlockSize is the prefix length of the per-node pod IP blocks (IPAMBlocks), e.g. 26 for 64 addresses.
	// Immutable.
	//
	// +optional
	// +kubebuilder:default=26
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=128
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="podBlockSize cannot change once the cluster exists"
	PodBlockSize int32 `json:"podBlockSize,omitempty"`

	// ClusterDomain is the DNS domain of Services and pods, e.g. cluster.local.
	//
	// +optional
	// +kubebuilder:default="cluster.local"
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$`
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="clusterDomain cannot change once the cluster exists (kubelets and every pod's DNS search path use it)"
	ClusterDomain string `json:"clusterDomain,omitempty"`

	// UpstreamDNS are the resolvers the cluster DNS forwards other names to; empty means the host's.
	// Changes take effect at once: `edgenet dns` follows them.
	//
	// +optional
	// +kubebuilder:validation:MaxItems=8
	// +listType=atomic
	UpstreamDNS []IPAddress `json:"upstreamDNS,omitempty"`
}

// The address rules below are RE2 regexes and integer arithmetic on the octets, not CEL's
// IP library (isIP, cidr(), ...): CRDs may use that library only from Kubernetes 1.31, and
// edgenet installs on 1.30. rules_test.go compiles them as 1.30 does and fuzzes them
// against net/netip; IPv6 host bits and IPv6 containment are the webhook's
// (internal/computenet) and, for AddressPools, the pool controller's.

// CIDR is an IPv4 or IPv6 prefix with no host bits set, e.g. 172.27.0.0/16.
//
// +kubebuilder:validation:MinLength=4
// +kubebuilder:validation:MaxLength=43
// +kubebuilder:validation:XValidation:rule="self.matches('^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])[.]){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])/(3[0-2]|[12]?[0-9])$') ? (int(self.split('/')[0].split('.')[0]) * 16777216 + int(self.split('/')[0].split('.')[1]) * 65536 + int(self.split('/')[0].split('.')[2]) * 256 + int(self.split('/')[0].split('.')[3])) % [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072, 262144, 524288, 1048576, 2097152, 4194304, 8388608, 16777216, 33554432, 67108864, 134217728, 268435456, 536870912, 1073741824, 2147483648, 4294967296][32 - int(self.split('/')[1])] == 0 : self.matches('^(([0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}|([0-9a-fA-F]{1,4}:){1,7}:|([0-9a-fA-F]{1,4}:){1,6}:[0-9a-fA-F]{1,4}|([0-9a-fA-F]{1,4}:){1,5}(:[0-9a-fA-F]{1,4}){1,2}|([0-9a-fA-F]{1,4}:){1,4}(:[0-9a-fA-F]{1,4}){1,3}|([0-9a-fA-F]{1,4}:){1,3}(:[0-9a-fA-F]{1,4}){1,4}|([0-9a-fA-F]{1,4}:){1,2}(:[0-9a-fA-F]{1,4}){1,5}|[0-9a-fA-F]{1,4}:(:[0-9a-fA-F]{1,4}){1,6}|:((:[0-9a-fA-F]{1,4}){1,7}|:))/(12[0-8]|1[01][0-9]|[1-9]?[0-9])$')",message="must be a CIDR with no host bits set (e.g. 172.27.0.0/16)"
type CIDR string

// IPAddress is an IPv4 or IPv6 address without zone.
//
// +kubebuilder:validation:MinLength=2
// +kubebuilder:validation:MaxLength=45
// +kubebuilder:validation:XValidation:rule="self.matches('^(((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])[.]){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])|(([0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}|([0-9a-fA-F]{1,4}:){1,7}:|([0-9a-fA-F]{1,4}:){1,6}:[0-9a-fA-F]{1,4}|([0-9a-fA-F]{1,4}:){1,5}(:[0-9a-fA-F]{1,4}){1,2}|([0-9a-fA-F]{1,4}:){1,4}(:[0-9a-fA-F]{1,4}){1,3}|([0-9a-fA-F]{1,4}:){1,3}(:[0-9a-fA-F]{1,4}){1,4}|([0-9a-fA-F]{1,4}:){1,2}(:[0-9a-fA-F]{1,4}){1,5}|[0-9a-fA-F]{1,4}:(:[0-9a-fA-F]{1,4}){1,6}|:((:[0-9a-fA-F]{1,4}){1,7}|:)))$')",message="must be an IP address"
type IPAddress string

// IPRange is an inclusive address range "first-last", a single address, or a CIDR with no host bits set.
//
// +kubebuilder:validation:MinLength=2
// +kubebuilder:validation:MaxLength=93
// +kubebuilder:validation:XValidation:rule="self.trim().matches('^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])[.]){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])/(3[0-2]|[12]?[0-9])$') ? (int(self.trim().split('/')[0].split('.')[0]) * 16777216 + int(self.trim().split('/')[0].split('.')[1]) * 65536 + int(self.trim().split('/')[0].split('.')[2]) * 256 + int(self.trim().split('/')[0].split('.')[3])) % [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072, 262144, 524288, 1048576, 2097152, 4194304, 8388608, 16777216, 33554432, 67108864, 134217728, 268435456, 536870912, 1073741824, 2147483648, 4294967296][32 - int(self.trim().split('/')[1])] == 0 : self.matches('^[[:space:]]*((([0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}|([0-9a-fA-F]{1,4}:){1,7}:|([0-9a-fA-F]{1,4}:){1,6}:[0-9a-fA-F]{1,4}|([0-9a-fA-F]{1,4}:){1,5}(:[0-9a-fA-F]{1,4}){1,2}|([0-9a-fA-F]{1,4}:){1,4}(:[0-9a-fA-F]{1,4}){1,3}|([0-9a-fA-F]{1,4}:){1,3}(:[0-9a-fA-F]{1,4}){1,4}|([0-9a-fA-F]{1,4}:){1,2}(:[0-9a-fA-F]{1,4}){1,5}|[0-9a-fA-F]{1,4}:(:[0-9a-fA-F]{1,4}){1,6}|:((:[0-9a-fA-F]{1,4}){1,7}|:))/(12[0-8]|1[01][0-9]|[1-9]?[0-9])|((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])[.]){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])([[:space:]]*-[[:space:]]*((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])[.]){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9]))?|(([0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}|([0-9a-fA-F]{1,4}:){1,7}:|([0-9a-fA-F]{1,4}:){1,6}:[0-9a-fA-F]{1,4}|([0-9a-fA-F]{1,4}:){1,5}(:[0-9a-fA-F]{1,4}){1,2}|([0-9a-fA-F]{1,4}:){1,4}(:[0-9a-fA-F]{1,4}){1,3}|([0-9a-fA-F]{1,4}:){1,3}(:[0-9a-fA-F]{1,4}){1,4}|([0-9a-fA-F]{1,4}:){1,2}(:[0-9a-fA-F]{1,4}){1,5}|[0-9a-fA-F]{1,4}:(:[0-9a-fA-F]{1,4}){1,6}|:((:[0-9a-fA-F]{1,4}){1,7}|:))([[:space:]]*-[[:space:]]*(([0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}|([0-9a-fA-F]{1,4}:){1,7}:|([0-9a-fA-F]{1,4}:){1,6}:[0-9a-fA-F]{1,4}|([0-9a-fA-F]{1,4}:){1,5}(:[0-9a-fA-F]{1,4}){1,2}|([0-9a-fA-F]{1,4}:){1,4}(:[0-9a-fA-F]{1,4}){1,3}|([0-9a-fA-F]{1,4}:){1,3}(:[0-9a-fA-F]{1,4}){1,4}|([0-9a-fA-F]{1,4}:){1,2}(:[0-9a-fA-F]{1,4}){1,5}|[0-9a-fA-F]{1,4}:(:[0-9a-fA-F]{1,4}){1,6}|:((:[0-9a-fA-F]{1,4}){1,7}|:)))?)[[:space:]]*$')",message="must be an address range 'first-last', a single address or a CIDR with no host bits set, of one address family"
type IPRange string

// ComputeNetworkStatus reports whether the settings are in effect and how much of the ranges is used.
type ComputeNetworkStatus struct {
	// ObservedGeneration is the spec generation the status describes.
	//
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions say whether the settings are valid and applied, and why not.
	//
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// NodeIPsUsed is the number of node IPs in use (nodes plus the cluster VIP).
	//
	// +optional
	NodeIPsUsed int32 `json:"nodeIPsUsed,omitempty"`

	// ExternalIPsUsed is the number of external service IPs assigned to Services.
	//
	// +optional
	ExternalIPsUsed int64 `json:"externalIPsUsed,omitempty"`

	// ExternalIPsFree is the number of external service IPs still free.
	//
	// +optional
	ExternalIPsFree int64 `json:"externalIPsFree,omitempty"`
}

// ComputeNetworkList is a list of ComputeNetworks.
//
// +kubebuilder:object:root=true
type ComputeNetworkList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ComputeNetwork `json:"items"`
}
