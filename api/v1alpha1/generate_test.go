package v1alpha1

import (
	"os/exec"
	"testing"
)

// The deepcopy functions and deploy/crds must be what hack/generate.sh makes of the types now; a stale CRD
// would let the apiserver accept what the Go types forbid (or the reverse).
func TestGeneratedUpToDate(t *testing.T) {
	out, err := exec.Command("bash", "../../hack/generate.sh", "--verify").CombinedOutput()
	if err != nil {
		t.Fatalf("hack/generate.sh --verify: %v\n%s", err, out)
	}
}
