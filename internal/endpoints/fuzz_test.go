package endpoints

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// FuzzPlan drives a Service through random pod changes and checks after each plan
// that the slices hold exactly the desired endpoints within the maximum, and that
// planning again right away writes nothing.
func FuzzPlan(f *testing.F) {
	f.Add([]byte{3, 0, 0, 0, 0, 0, 1, 2, 3})
	f.Add([]byte{1, 0, 0, 0, 0, 4, 4, 4, 5, 0})
	f.Add([]byte{10, 0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 8, 0, 9, 0, 10, 0, 11, 0, 12, 3, 1, 3, 5, 3, 7, 6, 0})
	f.Fuzz(runFuzzPlan)
}

func runFuzzPlan(t *testing.T, ops []byte) {
	{
		if len(ops) == 0 || len(ops) > 200 {
			return
		}
		max := int(ops[0]%16) + 1
		s := svc("web", namedPort("http", "http", corev1.ProtocolTCP))
		c := newFakeCluster(t)
		var pods []Pod
		next := 0
		for i := 1; i+1 < len(ops); i += 2 {
			op, arg := ops[i]%8, int(ops[i+1])
			switch op {
			case 0, 1: // add arg%8+1 pods
				for range min(arg%8+1, 300-len(pods)) {
					pods = append(pods, podsN(next, next+1, cport("http", 8080, corev1.ProtocolTCP))...)
					next++
				}
			case 2, 3: // remove one
				if len(pods) > 0 {
					j := arg % len(pods)
					pods = append(pods[:j:j], pods[j+1:]...)
				}
			case 4: // flip readiness
				if len(pods) > 0 {
					pods[arg%len(pods)].Ready = !pods[arg%len(pods)].Ready
				}
			case 5: // change a pod's named port
				if len(pods) > 0 {
					pods[arg%len(pods)].Ports[0].Port = int32(8080 + arg%3)
				}
			case 6: // terminating
				if len(pods) > 0 {
					pods[arg%len(pods)].Terminating = true
				}
			case 7: // new maximum
				max = arg%16 + 1
			}
			c.sync(&s, pods, max)
			if p, _ := Compute(&s, pods, map[string]string{"n1": "zone-a"}, c.list(), Options{MaxEndpointsPerSlice: max}); p.Writes() != 0 {
				t.Fatalf("not converged after op %d: %s", i, writes(p))
			}
		}
	}
}
