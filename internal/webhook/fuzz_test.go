package webhook

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"

	v1 "edgenet.io/edgenet/api/v1alpha1"
)

// FuzzServeHTTP feeds arbitrary request bodies to the handler: it must never panic,
// answer 200 with a well-formed review or 400, and never admit a CREATE or UPDATE of
// a ComputeNetwork whose settings do not pass Check (re-decoded here on their own).
func FuzzServeHTTP(f *testing.F) {
	valid := validSpec()
	bad := with(func(s *v1.ComputeNetworkSpec) { s.Gateway = "10.0.0.1"; s.PodCIDR = "192.168.50.0/25" })
	f.Add(review(f, request(admissionv1.Create, &valid, nil)))
	f.Add(review(f, request(admissionv1.Create, &bad, nil)))
	f.Add(review(f, request(admissionv1.Update, &valid, &bad)))
	f.Add(review(f, request(admissionv1.Update, &bad, &valid)))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","operation":"CREATE",` +
		`"resource":{"group":"edgenet.io","version":"v1alpha1","resource":"computenetworks"},"object":{"spec":{"nodes":-1}}}}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","operation":"UPDATE",` +
		`"resource":{"group":"edgenet.io","version":"v1alpha1","resource":"computenetworks"},"object":{"spec":{}},"oldObject":null}}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":null}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		w := httptest.NewRecorder()
		(&Handler{Nodes: twoNodes}).ServeHTTP(w, httptest.NewRequest(http.MethodPost, Path, bytes.NewReader(body)))
		if w.Code == http.StatusBadRequest {
			return
		}
		if w.Code != http.StatusOK {
			t.Fatalf("status %d", w.Code)
		}
		var in, out admissionv1.AdmissionReview
		if err := json.Unmarshal(body, &in); err != nil {
			t.Fatalf("200 for a body that does not decode: %v", err)
		}
		if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil || out.Response == nil {
			t.Fatalf("response review does not decode: %v %s", err, w.Body)
		}
		if out.Response.UID != in.Request.UID {
			t.Fatalf("UID %q, want %q", out.Response.UID, in.Request.UID)
		}
		req := in.Request
		ours := req.Resource.Group == v1.GroupName && req.Resource.Resource == v1.ResourceComputeNetworks && req.SubResource == ""
		if !out.Response.Allowed {
			if out.Response.Result == nil || out.Response.Result.Message == "" {
				t.Fatalf("denied without a message")
			}
			return
		}
		if !ours {
			t.Fatalf("admitted %v/%s", req.Resource, req.SubResource)
		}
		if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update {
			return
		}
		var obj v1.ComputeNetwork
		if err := json.Unmarshal(req.Object.Raw, &obj); err != nil {
			t.Fatalf("admitted an object that does not decode: %v", err)
		}
		if _, errs := Check(obj.Spec); len(errs) > 0 {
			t.Fatalf("admitted invalid settings: %v", errs)
		}
		s, _ := SettingsOf(obj.Spec)
		if err := CheckNodes(s, twoNodes.nodes); err != nil {
			t.Fatalf("admitted settings that leave Nodes out: %v", err)
		}
		if req.Operation == admissionv1.Update {
			var old v1.ComputeNetwork
			if err := json.Unmarshal(req.OldObject.Raw, &old); err != nil {
				t.Fatalf("admitted an update whose old object does not decode: %v", err)
			}
			if old.Spec.PodCIDR != obj.Spec.PodCIDR && (old.Spec.PodCIDR != "" || obj.Spec.PodCIDR != "") {
				o, _ := SettingsOf(old.Spec)
				if o.PodCIDR != s.PodCIDR {
					t.Fatalf("admitted a pod CIDR change %q -> %q", old.Spec.PodCIDR, obj.Spec.PodCIDR)
				}
			}
		}
	})
}
