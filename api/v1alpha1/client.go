package v1alpha1

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// Client is a typed REST client for edgenet.io/v1alpha1: a rest.RESTClient with this package's scheme and a
// typed accessor per resource. It is safe for concurrent use.
//
// +kubebuilder:object:generate=false
type Client struct {
	rest   rest.Interface
	params runtime.ParameterCodec
}

// NewForConfig returns a Client talking to the apiserver of cfg (which it does not modify). Custom resources
// are served as JSON only.
func NewForConfig(cfg *rest.Config) (*Client, error) {
	s, err := NewScheme()
	if err != nil {
		return nil, fmt.Errorf("v1alpha1: client: %w", err)
	}
	c := rest.CopyConfig(cfg)
	gv := SchemeGroupVersion
	c.GroupVersion = &gv
	c.APIPath = "/apis"
	c.ContentType = runtime.ContentTypeJSON
	c.AcceptContentTypes = runtime.ContentTypeJSON
	c.NegotiatedSerializer = serializer.NewCodecFactory(s).WithoutConversion()
	if c.UserAgent == "" {
		c.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	rc, err := rest.RESTClientFor(c)
	if err != nil {
		return nil, fmt.Errorf("v1alpha1: client: %w", err)
	}
	return &Client{rest: rc, params: runtime.NewParameterCodec(s)}, nil
}

// RESTClient is the underlying client, for requests the typed accessors do not cover.
func (c *Client) RESTClient() rest.Interface { return c.rest }

// IPAMBlocks accesses the cluster-scoped IPAMBlock resource.
func (c *Client) IPAMBlocks() *ClusterResource[*IPAMBlock, *IPAMBlockList] {
	return &ClusterResource[*IPAMBlock, *IPAMBlockList]{c: c, resource: ResourceIPAMBlocks,
		newObj: func() *IPAMBlock { return new(IPAMBlock) }, newList: func() *IPAMBlockList { return new(IPAMBlockList) }}
}

// ComputeNetworks accesses the cluster-scoped ComputeNetwork resource.
func (c *Client) ComputeNetworks() *ClusterResource[*ComputeNetwork, *ComputeNetworkList] {
	return &ClusterResource[*ComputeNetwork, *ComputeNetworkList]{c: c, resource: ResourceComputeNetworks,
		newObj: func() *ComputeNetwork { return new(ComputeNetwork) }, newList: func() *ComputeNetworkList { return new(ComputeNetworkList) }}
}

// AddressPools accesses the cluster-scoped AddressPool resource.
func (c *Client) AddressPools() *ClusterResource[*AddressPool, *AddressPoolList] {
	return &ClusterResource[*AddressPool, *AddressPoolList]{c: c, resource: ResourceAddressPools,
		newObj: func() *AddressPool { return new(AddressPool) }, newList: func() *AddressPoolList { return new(AddressPoolList) }}
}

// Object is what a ClusterResource stores: one of this package's resource types.
//
// +kubebuilder:object:generate=false
type Object interface {
	runtime.Object
	metav1.Object
}

// ClusterResource is the typed client of one cluster-scoped resource: object type T, list type L. Errors are
// the apiserver's (test them with k8s.io/apimachinery/pkg/api/errors).
//
// +kubebuilder:object:generate=false
type ClusterResource[T Object, L runtime.Object] struct {
	c        *Client
	resource string
	newObj   func() T
	newList  func() L
}

// Get reads the object called name.
func (r *ClusterResource[T, L]) Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error) {
	out := r.newObj()
	err := r.c.rest.Get().Resource(r.resource).Name(name).VersionedParams(&opts, r.c.params).Do(ctx).Into(out)
	return out, err
}

// List reads the objects matching opts.
func (r *ClusterResource[T, L]) List(ctx context.Context, opts metav1.ListOptions) (L, error) {
	out := r.newList()
	req := r.c.rest.Get().Resource(r.resource).VersionedParams(&opts, r.c.params)
	if opts.TimeoutSeconds != nil {
		req = req.Timeout(time.Duration(*opts.TimeoutSeconds) * time.Second)
	}
	err := req.Do(ctx).Into(out)
	return out, err
}

// Watch streams changes to the objects matching opts.
func (r *ClusterResource[T, L]) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	opts.Watch = true
	req := r.c.rest.Get().Resource(r.resource).VersionedParams(&opts, r.c.params)
	if opts.TimeoutSeconds != nil {
		req = req.Timeout(time.Duration(*opts.TimeoutSeconds) * time.Second)
	}
	return req.Watch(ctx)
}

// Create creates obj and returns it as stored.
func (r *ClusterResource[T, L]) Create(ctx context.Context, obj T, opts metav1.CreateOptions) (T, error) {
	out := r.newObj()
	err := r.c.rest.Post().Resource(r.resource).VersionedParams(&opts, r.c.params).Body(obj).Do(ctx).Into(out)
	return out, err
}

// Update replaces the object named by obj (its spec and metadata; status is ignored where the resource has a
// status subresource) and returns it as stored. obj's resourceVersion makes it a compare-and-swap.
func (r *ClusterResource[T, L]) Update(ctx context.Context, obj T, opts metav1.UpdateOptions) (T, error) {
	out := r.newObj()
	err := r.c.rest.Put().Resource(r.resource).Name(obj.GetName()).VersionedParams(&opts, r.c.params).
		Body(obj).Do(ctx).Into(out)
	return out, err
}

// UpdateStatus replaces the status of the object named by obj through the status subresource (ComputeNetwork
// has one; IPAMBlock has none and answers NotFound).
func (r *ClusterResource[T, L]) UpdateStatus(ctx context.Context, obj T, opts metav1.UpdateOptions) (T, error) {
	out := r.newObj()
	err := r.c.rest.Put().Resource(r.resource).Name(obj.GetName()).SubResource("status").
		VersionedParams(&opts, r.c.params).Body(obj).Do(ctx).Into(out)
	return out, err
}

// Delete deletes the object called name; opts.Preconditions make it conditional on UID and resourceVersion.
func (r *ClusterResource[T, L]) Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error {
	return r.c.rest.Delete().Resource(r.resource).Name(name).Body(&opts).Do(ctx).Error()
}

// ListWatch returns the list-watch of an informer over this resource; tweak (may be nil) narrows the list
// and watch options, e.g. with a field selector on spec.node for IPAMBlocks.
func (r *ClusterResource[T, L]) ListWatch(tweak func(*metav1.ListOptions)) *cache.ListWatch {
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			if tweak != nil {
				tweak(&opts)
			}
			return r.List(ctx, opts)
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			if tweak != nil {
				tweak(&opts)
			}
			return r.Watch(ctx, opts)
		},
	}
}

// NewInformer returns a shared informer over this resource with the given list-watch narrowing (may be nil)
// and resync period (0: none). Start it with Run(ctx.Done()) or RunWithContext.
func (r *ClusterResource[T, L]) NewInformer(tweak func(*metav1.ListOptions), resync time.Duration) cache.SharedIndexInformer {
	return cache.NewSharedIndexInformer(r.ListWatch(tweak), r.newObj(), resync, cache.Indexers{})
}
