package main

import (
	"context"
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"golang.org/x/sync/errgroup"
)

// layout says which objects service number i is made of. Every tenth service is headless, with one EndpointSlice
// of endpointsPerHeadless ready endpoints (hostnames pod-0..); the rest are ClusterIP services without endpoints
// (their DNS answer is the ClusterIP alone). So n services carry n/10*endpointsPerHeadless endpoints: 10k services,
// 10k endpoints.
type layout struct {
	namespaces int
	podCIDR    netip.Prefix
}

const endpointsPerHeadless = 10

// service is what the query generator and the answer checker know of one Service.
type service struct {
	ns, name  string
	headless  bool
	clusterIP netip.Addr   // ClusterIP services
	endpoints []netip.Addr // headless services
}

func (l layout) service(i int) service {
	s := service{ns: fmt.Sprintf("bench-%d", i%l.namespaces), headless: i%10 == 9}
	if !s.headless {
		s.name = fmt.Sprintf("svc-%05d", i)
		return s
	}
	s.name = fmt.Sprintf("hl-%05d", i)
	base := l.podCIDR.Addr().As4()
	for j := range endpointsPerHeadless {
		k := (i/10)*endpointsPerHeadless + j + 1
		a := base
		a[2], a[3] = byte(k>>8), byte(k)
		s.endpoints = append(s.endpoints, netip.AddrFrom4(a))
	}
	return s
}

// maxServices keeps the endpoint addresses inside the pod CIDR's first /16.
func (l layout) maxServices() int { return (1 << 16) / endpointsPerHeadless * 10 }

// populate creates services [from, to) (and their namespaces and EndpointSlices) and returns them with the
// ClusterIPs the apiserver allocated.
func populate(ctx context.Context, client kubernetes.Interface, l layout, from, to int) ([]service, error) {
	for n := range l.namespaces {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("bench-%d", n)}}
		if _, err := client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("populate: namespace %s: %w", ns.Name, err)
		}
	}
	out := make([]service, to-from)
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(32)
	for i := from; i < to; i++ {
		g.Go(func() error {
			s, err := create(ctx, client, l.service(i))
			out[i-from] = s
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("populate: %w", err)
	}
	return out, nil
}

func create(ctx context.Context, client kubernetes.Interface, s service) (service, error) {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: s.ns, Name: s.name},
		Spec: corev1.ServiceSpec{
			Type:  corev1.ServiceTypeClusterIP,
			Ports: []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80}},
		},
	}
	if s.headless {
		svc.Spec.ClusterIP = corev1.ClusterIPNone
	}
	got, err := client.CoreV1().Services(s.ns).Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		return s, fmt.Errorf("service %s/%s: %w", s.ns, s.name, err)
	}
	if !s.headless {
		if s.clusterIP, err = netip.ParseAddr(got.Spec.ClusterIP); err != nil {
			return s, fmt.Errorf("service %s/%s: ClusterIP %q: %w", s.ns, s.name, got.Spec.ClusterIP, err)
		}
		return s, nil
	}
	es := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: s.ns, Name: s.name + "-0", Labels: map[string]string{
			discoveryv1.LabelServiceName: s.name, discoveryv1.LabelManagedBy: "dnsbench",
		}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To[int32](80)}},
	}
	for j, a := range s.endpoints {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{a.String()},
			Hostname:   ptr.To(fmt.Sprintf("pod-%d", j)),
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
		})
	}
	if _, err := client.DiscoveryV1().EndpointSlices(s.ns).Create(ctx, es, metav1.CreateOptions{}); err != nil {
		return s, fmt.Errorf("endpointslice %s/%s: %w", s.ns, es.Name, err)
	}
	return s, nil
}

// populatePods creates n Pods spread over the namespaces, as a cluster of that size has; no
// node runs them.
func populatePods(ctx context.Context, client kubernetes.Interface, l layout, n int) error {
	// No controller-manager runs here to make the namespaces' default ServiceAccounts,
	// which Pod admission requires.
	for i := range l.namespaces {
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: fmt.Sprintf("bench-%d", i), Name: "default"}}
		if _, err := client.CoreV1().ServiceAccounts(sa.Namespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("populate pods: %w", err)
		}
	}
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(32)
	for i := range n {
		g.Go(func() error {
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Namespace: fmt.Sprintf("bench-%d", i%l.namespaces), Name: fmt.Sprintf("pod-%05d", i),
					Labels: map[string]string{"app": fmt.Sprintf("app-%d", i%100)}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.invalid/app:1"}}},
			}
			if _, err := client.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("pod %s/%s: %w", pod.Namespace, pod.Name, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("populate pods: %w", err)
	}
	return nil
}
