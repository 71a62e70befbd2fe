package webui

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "edgenet.io/edgenet/api/v1alpha1"
	"edgenet.io/edgenet/internal/computenet"
	lbcontroller "edgenet.io/edgenet/internal/lb/controller"
	"edgenet.io/edgenet/internal/webhook"
)

// computeNetworkView is GET/PUT /api/v1/computenetwork.
type computeNetworkView struct {
	Spec            v1.ComputeNetworkSpec `json:"spec"`
	ResourceVersion string                `json:"resourceVersion"`
	ClusterVIP      string                `json:"clusterVIP,omitempty"`
	Status          networkStatus         `json:"status"`
}

type networkStatus struct {
	Ready           bool   `json:"ready"`
	Message         string `json:"message,omitempty"`
	NodeIPsUsed     int32  `json:"nodeIPsUsed"`
	ExternalIPsUsed int64  `json:"externalIPsUsed"`
	ExternalIPsFree int64  `json:"externalIPsFree"`
}

// specBody is the body of validate, preview and PUT. ResourceVersion (PUT only) is the version the admin
// edited; a PUT against a newer object is refused with 409 rather than overwriting someone else's change.
type specBody struct {
	Spec            v1.ComputeNetworkSpec `json:"spec"`
	ResourceVersion string                `json:"resourceVersion,omitempty"`
}

// validation is POST /api/v1/computenetwork/validate.
type validation struct {
	Valid  bool         `json:"valid"`
	Errors []FieldError `json:"errors"`
}

func view(cn *v1.ComputeNetwork) computeNetworkView {
	v := computeNetworkView{Spec: cn.Spec, ResourceVersion: cn.ResourceVersion, Status: networkStatus{
		NodeIPsUsed: cn.Status.NodeIPsUsed, ExternalIPsUsed: cn.Status.ExternalIPsUsed, ExternalIPsFree: cn.Status.ExternalIPsFree}}
	if c := meta.FindStatusCondition(cn.Status.Conditions, v1.ConditionReady); c != nil {
		v.Status.Ready, v.Status.Message = c.Status == metav1.ConditionTrue, c.Message
	}
	if r, err := computenet.ParseRange(string(cn.Spec.NodeIPRange)); err == nil {
		v.ClusterVIP = r.To.String()
	}
	return v
}

func (s *Server) computeNetwork(ctx context.Context, w http.ResponseWriter) (*v1.ComputeNetwork, bool) {
	cn, err := s.cfg.Edgenet.ComputeNetworks().Get(ctx, v1.ComputeNetworkName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		writeError(w, http.StatusNotFound, "the cluster has no ComputeNetwork \"default\" yet", nil)
		return nil, false
	}
	if err != nil {
		s.log.Error("get ComputeNetwork", "err", err)
		writeError(w, http.StatusBadGateway, "reading the ComputeNetwork: "+err.Error(), nil)
		return nil, false
	}
	return cn, true
}

func (s *Server) getComputeNetwork(w http.ResponseWriter, r *http.Request, _ session) {
	if cn, ok := s.computeNetwork(r.Context(), w); ok {
		writeJSON(w, http.StatusOK, view(cn))
	}
}

// check is everything Apply would refuse: parse and validation errors, then changes to immutable fields.
func check(stored v1.ComputeNetworkSpec, proposed v1.ComputeNetworkSpec) (old, next computenet.Settings, all computenet.FieldErrors, nextErr error) {
	old, _ = SettingsFromSpec(stored)
	next, nextErr = SettingsFromSpec(proposed)
	all = computenet.FieldErrors{}
	if fes, ok := nextErr.(computenet.FieldErrors); ok {
		all = append(all, fes...)
	}
	if err := computenet.CheckUpdate(old, next); err != nil {
		for _, e := range err.(computenet.FieldErrors) {
			dup := false
			for _, x := range all {
				dup = dup || x.Field == e.Field
			}
			if !dup {
				all = append(all, e)
			}
		}
	}
	return old, next, all, nextErr
}

func (s *Server) postValidate(w http.ResponseWriter, r *http.Request, _ session) {
	var b specBody
	if !decode(w, r, &b) {
		return
	}
	cn, ok := s.computeNetwork(r.Context(), w)
	if !ok {
		return
	}
	_, _, errs, _ := check(cn.Spec, b.Spec)
	writeJSON(w, http.StatusOK, validation{Valid: len(errs) == 0, Errors: apiFields(errs)})
}

func (s *Server) postPreview(w http.ResponseWriter, r *http.Request, _ session) {
	var b specBody
	if !decode(w, r, &b) {
		return
	}
	cn, ok := s.computeNetwork(r.Context(), w)
	if !ok {
		return
	}
	svcs, err := s.cfg.Kube.CoreV1().Services("").List(r.Context(), metav1.ListOptions{})
	if err != nil {
		writeError(w, http.StatusBadGateway, "listing Services: "+err.Error(), nil)
		return
	}
	var lbs []LBService
	for _, svc := range svcs.Items {
		if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
			continue
		}
		lb := LBService{Key: svc.Namespace + "/" + svc.Name}
		for _, in := range svc.Status.LoadBalancer.Ingress {
			if a, err := netip.ParseAddr(in.IP); err == nil {
				lb.IPs = append(lb.IPs, a)
			}
		}
		if len(lb.IPs) == 0 {
			lb.Pending = "pending"
			if c := meta.FindStatusCondition(svc.Status.Conditions, lbcontroller.ConditionIPAllocated); c != nil && c.Status != metav1.ConditionTrue {
				lb.Pending = c.Reason
			}
		}
		lbs = append(lbs, lb)
	}
	old, next, _, nextErr := check(cn.Spec, b.Spec)
	writeJSON(w, http.StatusOK, BuildPreview(cn.Spec, b.Spec, old, next, nextErr, lbs))
}

func (s *Server) putComputeNetwork(w http.ResponseWriter, r *http.Request, _ session) {
	var b specBody
	if !decode(w, r, &b) {
		return
	}
	cn, ok := s.computeNetwork(r.Context(), w)
	if !ok {
		return
	}
	if b.ResourceVersion != "" && b.ResourceVersion != cn.ResourceVersion {
		writeError(w, http.StatusConflict, "the Compute network changed since you loaded it: reload and preview again", nil)
		return
	}
	_, next, errs, _ := check(cn.Spec, b.Spec)
	if len(errs) > 0 {
		writeError(w, http.StatusUnprocessableEntity, "the settings are refused; nothing changed", errs)
		return
	}
	cn.Spec = webhook.SpecOf(next)
	out, err := s.cfg.Edgenet.ComputeNetworks().Update(r.Context(), cn, metav1.UpdateOptions{FieldManager: "edgenet-ui"})
	if err != nil {
		status, fields := apiFieldErrors(err)
		writeError(w, status, "the apiserver refused the change: "+err.Error(), fields)
		return
	}
	s.log.Info("ComputeNetwork updated", "client", clientAddr(r), "resourceVersion", out.ResourceVersion)
	s.notifyApplied()
	writeJSON(w, http.StatusOK, view(out))
}

// apiFieldErrors maps an apiserver refusal (CRD validation, the admission webhook) to an HTTP status and
// the field errors it names.
func apiFieldErrors(err error) (int, computenet.FieldErrors) {
	var se apierrors.APIStatus
	if !errors.As(err, &se) {
		return http.StatusBadGateway, nil
	}
	st := se.Status()
	var fields computenet.FieldErrors
	if st.Details != nil {
		for _, c := range st.Details.Causes {
			fields = append(fields, computenet.FieldError{Field: c.Field, Reason: c.Message})
		}
	}
	switch {
	case apierrors.IsConflict(err):
		return http.StatusConflict, fields
	case apierrors.IsInvalid(err), apierrors.IsForbidden(err), apierrors.IsBadRequest(err):
		return http.StatusUnprocessableEntity, fields
	}
	return http.StatusBadGateway, fields
}

func (s *Server) getOverview(w http.ResponseWriter, r *http.Request, _ session) {
	st, err := s.clusterState(r.Context())
	if err != nil {
		writeError(w, http.StatusBadGateway, err.Error(), nil)
		return
	}
	writeJSON(w, http.StatusOK, BuildOverview(st))
}

func (s *Server) clusterState(ctx context.Context) (ClusterState, error) {
	var st ClusterState
	g, ctx := errgroup.WithContext(ctx)
	core, cn := s.cfg.Kube.CoreV1(), s.cfg.Edgenet
	all := metav1.ListOptions{ResourceVersion: "0"} // the apiserver's watch cache is fresh enough for a page
	announcing := metav1.ListOptions{FieldSelector: "reason=Announcing", ResourceVersion: "0"}
	fetch(g, "nodes", &st.Nodes, func() (*corev1.NodeList, error) { return core.Nodes().List(ctx, all) },
		func(l *corev1.NodeList) []corev1.Node { return l.Items })
	fetch(g, "services", &st.Services, func() (*corev1.ServiceList, error) { return core.Services("").List(ctx, all) },
		func(l *corev1.ServiceList) []corev1.Service { return l.Items })
	fetch(g, "endpointslices", &st.EndpointSlices,
		func() (*discoveryv1.EndpointSliceList, error) {
			return s.cfg.Kube.DiscoveryV1().EndpointSlices("").List(ctx, all)
		},
		func(l *discoveryv1.EndpointSliceList) []discoveryv1.EndpointSlice { return l.Items })
	fetch(g, "pods", &st.Pods, func() (*corev1.PodList, error) { return core.Pods("").List(ctx, all) },
		func(l *corev1.PodList) []corev1.Pod { return l.Items })
	fetch(g, "events", &st.Events, func() (*corev1.EventList, error) { return core.Events("").List(ctx, announcing) },
		func(l *corev1.EventList) []corev1.Event { return l.Items })
	fetch(g, "addresspools", &st.Pools, func() (*v1.AddressPoolList, error) { return cn.AddressPools().List(ctx, metav1.ListOptions{}) },
		func(l *v1.AddressPoolList) []v1.AddressPool { return l.Items })
	g.Go(func() error {
		c, err := cn.ComputeNetworks().Get(ctx, v1.ComputeNetworkName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		st.ComputeNetwork = c
		return wrap("computenetwork", err)
	})
	return st, g.Wait()
}

// fetch lists one kind in g and stores its items in *dst.
func fetch[L any, T any](g *errgroup.Group, what string, dst *[]T, list func() (L, error), items func(L) []T) {
	g.Go(func() error {
		l, err := list()
		if err != nil {
			return wrap(what, err)
		}
		*dst = items(l)
		return nil
	})
}

func wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("webui: list %s: %w", what, err)
}
