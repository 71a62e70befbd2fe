package controller

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"edgenet.io/edgenet/internal/lb/allocator"
)

// LoadBalancerClass is the spec.loadBalancerClass this controller serves, besides an unset one.
const LoadBalancerClass = "edgenet.io/lb"

// The Service status condition this controller owns, and its reasons besides the allocator's
// (allocator.Reason values are used as they are when a Service is pending).
const (
	ConditionIPAllocated = "edgenet.io/LoadBalancerIPAllocated"
	ReasonAllocated      = "Allocated"
	// ReasonIPOutsidePool: the condition is True (the Service has its addresses) but an address lies outside
	// every pool since a pool edit; the Service keeps it until the admin moves it.
	ReasonIPOutsidePool = "IPOutsidePool"
)

// Event reasons.
const (
	EventAllocationFailed = "AllocationFailed"
	EventIPAllocated      = "IPAllocated"
	EventIPOutsidePool    = "IPOutsidePool"
	EventIPReleased       = "IPReleased"
)

// managed reports whether svc is a LoadBalancer Service this controller serves.
func managed(svc *corev1.Service) bool {
	return svc.Spec.Type == corev1.ServiceTypeLoadBalancer &&
		(svc.Spec.LoadBalancerClass == nil || *svc.Spec.LoadBalancerClass == LoadBalancerClass)
}

// stripService keeps only what the controller reads, and what a status update must carry (name, namespace,
// UID, resourceVersion, the whole status); the apiserver takes spec, labels and annotations of a status update
// from the stored object, so the rest may go. Other objects (tombstones) pass through.
func stripService(obj any) (any, error) {
	svc, ok := obj.(*corev1.Service)
	if !ok {
		return obj, nil
	}
	out := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Name: svc.Name, Namespace: svc.Namespace, UID: svc.UID, ResourceVersion: svc.ResourceVersion,
			Generation: svc.Generation, CreationTimestamp: svc.CreationTimestamp, DeletionTimestamp: svc.DeletionTimestamp,
		},
		Status: svc.Status,
	}
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		// Enough to know it is not ours and whether we wrote its status.
		out.Spec.Type = svc.Spec.Type
		return out, nil
	}
	out.Labels = svc.Labels
	for k, v := range svc.Annotations {
		if strings.HasPrefix(k, "edgenet.io/") {
			if out.Annotations == nil {
				out.Annotations = map[string]string{}
			}
			out.Annotations[k] = v
		}
	}
	out.Spec = corev1.ServiceSpec{
		Type:                  svc.Spec.Type,
		LoadBalancerClass:     svc.Spec.LoadBalancerClass,
		LoadBalancerIP:        svc.Spec.LoadBalancerIP,
		IPFamilies:            svc.Spec.IPFamilies,
		IPFamilyPolicy:        svc.Spec.IPFamilyPolicy,
		ExternalTrafficPolicy: svc.Spec.ExternalTrafficPolicy,
		Selector:              svc.Spec.Selector,
	}
	for _, p := range svc.Spec.Ports {
		out.Spec.Ports = append(out.Spec.Ports, corev1.ServicePort{Protocol: p.Protocol, Port: p.Port})
	}
	return out, nil
}

// toAllocator translates svc into the allocator's terms. An error is an *allocator.Error of reason
// InvalidService naming the field to fix.
func toAllocator(svc *corev1.Service, nsLabels map[string]string) (allocator.Service, error) {
	key := svc.Namespace + "/" + svc.Name
	s := allocator.Service{
		Key:             key,
		Namespace:       svc.Namespace,
		Labels:          svc.Labels,
		NamespaceLabels: nsLabels,
		RequestedPool:   strings.TrimSpace(svc.Annotations[allocator.AnnotationAddressPool]),
		SharingKey:      strings.TrimSpace(svc.Annotations[allocator.AnnotationAllowSharedIP]),
	}
	invalid := func(format string, args ...any) error {
		return &allocator.Error{Reason: allocator.ReasonInvalidService, Service: key, Message: fmt.Sprintf(format, args...)}
	}
	for _, f := range svc.Spec.IPFamilies {
		switch f {
		case corev1.IPv4Protocol:
			s.Families = append(s.Families, allocator.IPv4)
		case corev1.IPv6Protocol:
			s.Families = append(s.Families, allocator.IPv6)
		default:
			return s, invalid("unknown IP family %q in spec.ipFamilies", f)
		}
	}
	if p := svc.Spec.IPFamilyPolicy; p != nil {
		switch *p {
		case corev1.IPFamilyPolicySingleStack:
			s.Policy = allocator.SingleStack
		case corev1.IPFamilyPolicyPreferDualStack:
			s.Policy = allocator.PreferDualStack
		case corev1.IPFamilyPolicyRequireDualStack:
			s.Policy = allocator.RequireDualStack
		default:
			return s, invalid("unknown spec.ipFamilyPolicy %q", *p)
		}
	}
	for _, p := range svc.Spec.Ports {
		s.Ports = append(s.Ports, allocator.Port{Protocol: allocator.Protocol(p.Protocol), Port: uint16(p.Port)})
	}
	if svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal {
		s.Backend = localBackend(svc)
	}

	ann, hasAnn := svc.Annotations[allocator.AnnotationLoadBalancerIPs]
	if hasAnn {
		for _, f := range strings.Split(ann, ",") {
			a, err := netip.ParseAddr(strings.TrimSpace(f))
			if err != nil {
				return s, invalid("annotation %s=%q: %q is not an IP address", allocator.AnnotationLoadBalancerIPs, ann, strings.TrimSpace(f))
			}
			s.Requested = append(s.Requested, a)
		}
	}
	if lbIP := strings.TrimSpace(svc.Spec.LoadBalancerIP); lbIP != "" {
		a, err := netip.ParseAddr(lbIP)
		if err != nil {
			return s, invalid("spec.loadBalancerIP %q is not an IP address", lbIP)
		}
		if hasAnn && !slices.Contains(s.Requested, a) {
			return s, invalid("spec.loadBalancerIP %s is not among annotation %s=%q; set one of them", a, allocator.AnnotationLoadBalancerIPs, ann)
		}
		if !hasAnn {
			s.Requested = []netip.Addr{a}
		}
	}
	return s, nil
}

// localBackend identifies where an externalTrafficPolicy Local Service sends traffic: its namespace and
// selector. Services without a selector (endpoints managed by hand) get a backend of their own and can share
// with no one, since nothing says their endpoints are the same.
func localBackend(svc *corev1.Service) string {
	if len(svc.Spec.Selector) == 0 {
		return "Local:" + svc.Namespace + "/" + svc.Name
	}
	keys := slices.Sorted(maps.Keys(svc.Spec.Selector))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + svc.Spec.Selector[k]
	}
	return "Local:" + svc.Namespace + ":" + strings.Join(parts, ",")
}

// event is an Event to record on a Service.
type event struct{ kind, reason, message string }

// outcome is what a sync decided for a managed Service.
type outcome struct {
	ips  []netip.Addr // what the Service holds, possibly none
	cond metav1.Condition
}

// outcomeOf turns the result of Assign (the assignment, or err and what the Service still holds) into the
// Service's addresses and condition.
func outcomeOf(svc *corev1.Service, as allocator.Assignment, err error, held allocator.Assignment) outcome {
	if err != nil {
		reason := string(allocator.ReasonInvalidService)
		if r, ok := allocator.ReasonOf(err); ok {
			reason = string(r)
		}
		return outcome{ips: held.Addrs(), cond: metav1.Condition{
			Type: ConditionIPAllocated, Status: metav1.ConditionFalse, Reason: reason,
			Message: message(err), ObservedGeneration: svc.Generation}}
	}
	var inPools, outside []string
	for _, ip := range as.IPs {
		if ip.Pool == "" {
			outside = append(outside, ip.Addr.String())
		} else {
			inPools = append(inPools, fmt.Sprintf("%s (pool %q)", ip.Addr, ip.Pool))
		}
	}
	c := metav1.Condition{Type: ConditionIPAllocated, Status: metav1.ConditionTrue, Reason: ReasonAllocated,
		ObservedGeneration: svc.Generation}
	switch {
	case len(outside) > 0:
		c.Reason = ReasonIPOutsidePool
		c.Message = fmt.Sprintf("address %s is no longer in any address pool; the Service keeps it until it is moved to another address (%s or spec.loadBalancerIP) or pool (%s), or recreated",
			strings.Join(outside, ", "), allocator.AnnotationLoadBalancerIPs, allocator.AnnotationAddressPool)
	default:
		c.Message = "assigned " + strings.Join(inPools, ", ")
	}
	return outcome{ips: as.Addrs(), cond: c}
}

// message is the allocator's sentence for a Service, without the "allocator: ns/name:" prefix of Error().
func message(err error) string {
	if e, ok := err.(*allocator.Error); ok && e.Message != "" {
		return e.Message
	}
	return err.Error()
}

// applyOutcome returns svc's status with o applied, whether it changed, and the Events the change calls for.
func applyOutcome(svc *corev1.Service, o outcome) (corev1.ServiceStatus, bool, []event) {
	st := *svc.Status.DeepCopy()
	var events []event
	ingressChanged := !ingressIs(st.LoadBalancer.Ingress, o.ips)
	if ingressChanged {
		st.LoadBalancer.Ingress = ingress(o.ips)
	}
	var old *metav1.Condition
	if c := meta.FindStatusCondition(st.Conditions, ConditionIPAllocated); c != nil {
		cp := *c // SetStatusCondition below edits the condition in place
		old = &cp
	}
	condChanged := old == nil || old.Status != o.cond.Status || old.Reason != o.cond.Reason ||
		old.Message != o.cond.Message || old.ObservedGeneration != o.cond.ObservedGeneration
	if condChanged {
		meta.SetStatusCondition(&st.Conditions, o.cond)
	}
	reasonChanged := old == nil || old.Status != o.cond.Status || old.Reason != o.cond.Reason || old.Message != o.cond.Message
	switch {
	case o.cond.Status == metav1.ConditionFalse && reasonChanged:
		events = append(events, event{corev1.EventTypeWarning, EventAllocationFailed, o.cond.Message})
	case o.cond.Reason == ReasonIPOutsidePool && reasonChanged:
		events = append(events, event{corev1.EventTypeWarning, EventIPOutsidePool, o.cond.Message})
	}
	if ingressChanged && len(o.ips) > 0 && o.cond.Status == metav1.ConditionTrue {
		events = append(events, event{corev1.EventTypeNormal, EventIPAllocated, o.cond.Message})
	}
	return st, ingressChanged || condChanged, events
}

// clearedStatus returns svc's status without the addresses and condition of this controller, and whether
// that is a change.
func clearedStatus(svc *corev1.Service) (corev1.ServiceStatus, bool) {
	st := *svc.Status.DeepCopy()
	changed := len(st.LoadBalancer.Ingress) > 0
	st.LoadBalancer.Ingress = nil
	if meta.RemoveStatusCondition(&st.Conditions, ConditionIPAllocated) {
		changed = true
	}
	return st, changed
}

func ingress(ips []netip.Addr) []corev1.LoadBalancerIngress {
	if len(ips) == 0 {
		return nil
	}
	vip := corev1.LoadBalancerIPModeVIP
	out := make([]corev1.LoadBalancerIngress, len(ips))
	for i, ip := range ips {
		out[i] = corev1.LoadBalancerIngress{IP: ip.String(), IPMode: &vip}
	}
	return out
}

// ingressIs reports whether ing is exactly what this controller writes for ips.
func ingressIs(ing []corev1.LoadBalancerIngress, ips []netip.Addr) bool {
	if len(ing) != len(ips) {
		return false
	}
	for i, e := range ing {
		if e.IP != ips[i].String() || e.Hostname != "" || len(e.Ports) != 0 ||
			e.IPMode == nil || *e.IPMode != corev1.LoadBalancerIPModeVIP {
			return false
		}
	}
	return true
}

// ingressAddrs returns the addresses of svc's status, as Restore takes them.
func ingressAddrs(svc *corev1.Service) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, e := range svc.Status.LoadBalancer.Ingress {
		if e.IP == "" {
			continue
		}
		a, err := netip.ParseAddr(e.IP)
		if err != nil {
			return nil, fmt.Errorf("status.loadBalancer.ingress ip %q: %w", e.IP, err)
		}
		out = append(out, a)
	}
	return out, nil
}
