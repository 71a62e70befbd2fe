package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "edgenet.io/edgenet/api/v1alpha1"
	"edgenet.io/edgenet/internal/computenet"
)

// Path is where the handler is served; the webhook configuration names it.
const Path = "/validate-computenetwork"

// maxBody bounds an AdmissionReview: the apiserver's own request limit is 3 MiB, and a
// ComputeNetwork is a few hundred bytes.
const maxBody = 3 << 20

// NodeLister lists the cluster's Nodes for the checks of the node IP range and count.
type NodeLister interface {
	ListNodes(ctx context.Context) ([]Node, error)
}

// Handler answers AdmissionReviews (admission.k8s.io/v1) for ComputeNetworks.
type Handler struct {
	Nodes NodeLister
	Log   *slog.Logger
}

// Admit decides one request. It refuses a CREATE or UPDATE whose object fails
// computenet's Validate, an UPDATE that changes what CheckUpdate keeps fixed, and
// settings that leave existing Nodes out (CheckNodes); it lists every problem at
// once. Other operations are allowed. The response's UID is the request's.
func (h *Handler) Admit(ctx context.Context, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	resp := h.admit(ctx, req)
	resp.UID = req.UID
	return resp
}

func (h *Handler) admit(ctx context.Context, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	if req.Resource.Group != v1.GroupName || req.Resource.Resource != v1.ResourceComputeNetworks || req.SubResource != "" {
		return deny(http.StatusBadRequest, metav1.StatusReasonBadRequest,
			fmt.Sprintf("this webhook validates %s.%s only, not %s", v1.ResourceComputeNetworks, v1.GroupName, resourceName(req)))
	}
	if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update {
		return &admissionv1.AdmissionResponse{Allowed: true}
	}
	var obj v1.ComputeNetwork
	if err := json.Unmarshal(req.Object.Raw, &obj); err != nil {
		return deny(http.StatusBadRequest, metav1.StatusReasonBadRequest, "cannot decode the ComputeNetwork: "+err.Error())
	}
	s, errs := Check(obj.Spec)
	var warnings []string
	if req.Operation == admissionv1.Update {
		var old v1.ComputeNetwork
		if err := json.Unmarshal(req.OldObject.Raw, &old); err != nil {
			return deny(http.StatusBadRequest, metav1.StatusReasonBadRequest, "cannot decode the old ComputeNetwork: "+err.Error())
		}
		oldS, _ := SettingsOf(old.Spec)
		if fe, ok := computenet.CheckUpdate(oldS, s).(computenet.FieldErrors); ok {
			errs = mergeErrs(errs, fe)
		}
		if !slices.Equal(old.Spec.ExternalServiceIPRanges, obj.Spec.ExternalServiceIPRanges) {
			warnings = append(warnings, "the default address pool follows spec.externalServiceIPRanges; "+
				"LoadBalancer Services outside the new ranges keep their IPs and are flagged IPOutsidePool")
		}
	}
	if h.Nodes != nil {
		nodes, err := h.Nodes.ListNodes(ctx)
		if err != nil {
			// Without the Nodes the node range cannot be checked: refuse rather than guess.
			return deny(http.StatusInternalServerError, metav1.StatusReasonInternalError,
				"cannot list the Nodes to check spec.nodes and spec.nodeIPRange against them: "+err.Error())
		}
		if fe, ok := CheckNodes(s, nodes).(computenet.FieldErrors); ok {
			errs = mergeErrs(errs, fe)
		}
	}
	if len(errs) == 0 {
		return &admissionv1.AdmissionResponse{Allowed: true, Warnings: warnings}
	}
	if h.Log != nil {
		h.Log.Info("denied", "operation", req.Operation, "name", obj.Name, "user", req.UserInfo.Username, "errors", len(errs))
	}
	return invalid(obj.Name, errs)
}

// mergeErrs appends the errors of more that errs does not already hold (CheckUpdate
// and Validate can both speak about the same field).
func mergeErrs(errs, more computenet.FieldErrors) computenet.FieldErrors {
	for _, e := range more {
		if !slices.Contains(errs, e) {
			errs = append(errs, e)
		}
	}
	return errs
}

func resourceName(req *admissionv1.AdmissionRequest) string {
	r := req.Resource.Resource
	if req.SubResource != "" {
		r += "/" + req.SubResource
	}
	if req.Resource.Group != "" {
		r += "." + req.Resource.Group
	}
	return r
}

func deny(code int32, reason metav1.StatusReason, msg string) *admissionv1.AdmissionResponse {
	return &admissionv1.AdmissionResponse{Allowed: false, Result: &metav1.Status{
		Status: metav1.StatusFailure, Code: code, Reason: reason, Message: msg}}
}

// invalid is a 422 Invalid status like the apiserver's own validation gives: every
// error in the message, one per line, and as a cause with its field path.
func invalid(name string, errs computenet.FieldErrors) *admissionv1.AdmissionResponse {
	lines := make([]string, len(errs))
	causes := make([]metav1.StatusCause, len(errs))
	for i, e := range errs {
		lines[i] = e.Error()
		causes[i] = metav1.StatusCause{Type: metav1.CauseTypeFieldValueInvalid, Field: e.Field,
			Message: fmt.Sprintf("Invalid value: %q: %s", e.Value, e.Reason)}
	}
	msg := fmt.Sprintf("ComputeNetwork %q is invalid (%d errors):\n%s", name, len(errs), strings.Join(lines, "\n"))
	if len(errs) == 1 {
		msg = fmt.Sprintf("ComputeNetwork %q is invalid: %s", name, lines[0])
	}
	resp := deny(http.StatusUnprocessableEntity, metav1.StatusReasonInvalid, msg)
	resp.Result.Details = &metav1.StatusDetails{Name: name, Group: v1.GroupName, Kind: "ComputeNetwork", Causes: causes}
	return resp
}

// ServeHTTP decodes an admission.k8s.io/v1 AdmissionReview from a POST and answers
// with the review's response. Requests that are not one get 400 and no review.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST an AdmissionReview", http.StatusMethodNotAllowed)
		return
	}
	review, err := decodeReview(r.Body)
	if err != nil {
		http.Error(w, "webhook: "+err.Error(), http.StatusBadRequest)
		return
	}
	review.Response = h.Admit(r.Context(), review.Request)
	review.Request = nil
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(review); err != nil && h.Log != nil {
		h.Log.Warn("write admission response", "err", err)
	}
}

func decodeReview(body io.Reader) (*admissionv1.AdmissionReview, error) {
	b, err := io.ReadAll(io.LimitReader(body, maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("read request: %w", err)
	}
	if len(b) > maxBody {
		return nil, fmt.Errorf("request larger than %d bytes", maxBody)
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(b, &review); err != nil {
		return nil, fmt.Errorf("decode AdmissionReview: %w", err)
	}
	want := admissionv1.SchemeGroupVersion.String()
	if review.APIVersion != want || review.Kind != "AdmissionReview" {
		return nil, fmt.Errorf("want an AdmissionReview of %s, got kind %q of %q", want, review.Kind, review.APIVersion)
	}
	if review.Request == nil {
		return nil, errors.New("AdmissionReview without a request")
	}
	return &review, nil
}
