// Package webhook is the ComputeNetwork validating admission webhook that every
// `edgenet controller` replica serves: the HTTPS server, the AdmissionReview handler,
// the CA and serving certificate it keeps in a Secret, and the caBundle of its
// ValidatingWebhookConfiguration. It also owns the checks of settings against the
// cluster's Nodes (CheckNodes, NodeIPsUsed), which the ComputeNetwork status shares.
//
// The settings rules themselves are internal/computenet's (Validate, CheckUpdate):
// this package converts the object and reports their FieldErrors, it adds no rules
// of its own on the settings alone. It writes only its Secret and the caBundle of
// its webhook configuration.
package webhook
