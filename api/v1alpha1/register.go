package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupName is the API group of edgenet's custom resources.
const GroupName = "edgenet.io"

// SchemeGroupVersion is group edgenet.io, version v1alpha1.
var SchemeGroupVersion = schema.GroupVersion{Group: GroupName, Version: "v1alpha1"}

// Resource names (the plural path segment) of the custom resources.
const (
	ResourceIPAMBlocks      = "ipamblocks"
	ResourceComputeNetworks = "computenetworks"
)

// Resource returns the GroupResource of resource in this group, as API errors name it.
func Resource(resource string) schema.GroupResource {
	return SchemeGroupVersion.WithResource(resource).GroupResource()
}

// AddToScheme registers the types of edgenet.io/v1alpha1, with the meta/v1 options and status types that
// clients encode as query parameters, into s.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(SchemeGroupVersion,
		&IPAMBlock{}, &IPAMBlockList{},
		&ComputeNetwork{}, &ComputeNetworkList{},
		&AddressPool{}, &AddressPoolList{},
	)
	metav1.AddToGroupVersion(s, SchemeGroupVersion)
	return nil
}

// NewScheme returns a fresh scheme holding only edgenet.io/v1alpha1 (and meta/v1).
func NewScheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := AddToScheme(s); err != nil {
		return nil, err
	}
	return s, nil
}
