package deploy_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"edgenet.io/edgenet/internal/appliance"
	"edgenet.io/edgenet/internal/computenet"
	"edgenet.io/edgenet/internal/testenv"
)

func kubectlPath(t *testing.T) string {
	t.Helper()
	bin, err := testenv.KubeBin()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(bin, "kubectl")
}

func kubectl(t *testing.T, kubeconfig string, args ...string) string {
	t.Helper()
	if kubeconfig != "" {
		args = append([]string{"--kubeconfig", kubeconfig}, args...)
	}
	out, err := exec.Command(kubectlPath(t), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// object is a rendered manifest: its kind and name, and the raw document.
type object struct {
	Kind     string
	Name     string
	Metadata struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
	raw []byte
}

func render(t *testing.T, dir string) []object {
	t.Helper()
	out := kubectl(t, "", "kustomize", dir)
	var objs []object
	for _, doc := range strings.Split(out, "\n---\n") {
		var o struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			t.Fatalf("%s: %v\n%s", dir, err, doc)
		}
		objs = append(objs, object{Kind: o.Kind, Name: o.Metadata.Name, Metadata: o.Metadata, raw: []byte(doc)})
	}
	return objs
}

func find(t *testing.T, objs []object, kind, name string, into any) {
	t.Helper()
	for _, o := range objs {
		if o.Kind == kind && o.Name == name {
			if err := yaml.UnmarshalStrict(o.raw, into); err != nil {
				t.Fatalf("%s %s: %v", kind, name, err)
			}
			return
		}
	}
	t.Fatalf("no %s %s rendered", kind, name)
}

// hostPath maps a path inside container c of pod spec to the host path it reaches
// through a hostPath volume, with $(NODE_NAME) left as is.
func hostPath(t *testing.T, spec corev1.PodSpec, c corev1.Container, p string) string {
	t.Helper()
	for _, m := range c.VolumeMounts {
		rel, err := filepath.Rel(m.MountPath, p)
		if err != nil || strings.HasPrefix(rel, "..") {
			continue
		}
		for _, v := range spec.Volumes {
			if v.Name == m.Name && v.HostPath != nil {
				return filepath.Join(v.HostPath.Path, rel)
			}
		}
	}
	t.Fatalf("%s in container %s is on no hostPath volume", p, c.Name)
	return ""
}

func flagValue(args []string, name string) string {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v
		}
	}
	return ""
}

func envValue(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

// TestUninstallCleansWhereTheAgentWrites renders each install with its uninstall and
// checks that the cleanup DaemonSet looks, on the host, exactly where the agent
// writes: a path that drifts in one of them would leave files behind.
func TestUninstallCleansWhereTheAgentWrites(t *testing.T) {
	for _, tc := range []struct {
		install, uninstall string
		wantCNIBin         string // on the host
	}{
		{install: ".", uninstall: "uninstall", wantCNIBin: "/opt/cni/bin"},
		{install: "appliance", uninstall: "uninstall/appliance", wantCNIBin: "/var/lib/edgenet/nodes/$(NODE_NAME)/cni/bin"},
	} {
		t.Run(tc.install, func(t *testing.T) {
			var agent, cleanup appsv1.DaemonSet
			find(t, render(t, tc.install), "DaemonSet", "edgenet-agent", &agent)
			find(t, render(t, tc.uninstall), "DaemonSet", "edgenet-cleanup", &cleanup)
			as, cs := agent.Spec.Template.Spec, cleanup.Spec.Template.Spec
			ac, cc := as.Containers[0], cs.Containers[0]
			for _, p := range []struct{ flag, env string }{
				{"cni-bin-dir", "EDGENET_CNI_BIN_DIR"}, {"cni-conf-dir", "EDGENET_CNI_CONF_DIR"}, {"state-dir", "EDGENET_STATE_DIR"},
			} {
				a, c := flagValue(ac.Args, p.flag), envValue(cc, p.env)
				if a == "" || c == "" {
					t.Fatalf("agent --%s = %q, cleanup %s = %q", p.flag, a, p.env, c)
				}
				if ha, hc := hostPath(t, as, ac, a), hostPath(t, cs, cc, c); ha != hc {
					t.Errorf("--%s: the agent writes to %s on the host, cleanup looks in %s", p.flag, ha, hc)
				}
			}
			if got := hostPath(t, cs, cc, envValue(cc, "EDGENET_CNI_BIN_DIR")); got != tc.wantCNIBin {
				t.Errorf("CNI bin dir on the host: %s, want %s", got, tc.wantCNIBin)
			}
			if !cs.HostNetwork || cs.AutomountServiceAccountToken == nil || *cs.AutomountServiceAccountToken {
				t.Errorf("cleanup pods: hostNetwork %v, automount token %v; want the node's netns and no API access", cs.HostNetwork, cs.AutomountServiceAccountToken)
			}
			if p := cc.ReadinessProbe; p == nil || p.Exec == nil || !slices.Equal(p.Exec.Command, []string{"/edgenet", "cleanup", "--check"}) {
				t.Errorf("cleanup readiness probe %+v, want exec /edgenet cleanup --check", p)
			}
			if cc.Image != ac.Image {
				t.Errorf("cleanup image %s, agent image %s", cc.Image, ac.Image)
			}
		})
	}
}

// TestExampleComputeNetworkIsValid checks the example against the rules the admission
// webhook enforces (internal/computenet), beyond the CRD's schema.
func TestExampleComputeNetworkIsValid(t *testing.T) {
	b, err := os.ReadFile("examples/computenetwork.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cn struct {
		APIVersion string                 `json:"apiVersion"`
		Kind       string                 `json:"kind"`
		Metadata   map[string]any         `json:"metadata"`
		Spec       appliance.FileSettings `json:"spec"`
	}
	if err := yaml.UnmarshalStrict(b, &cn); err != nil {
		t.Fatal(err)
	}
	s, err := cn.Spec.Apply(computenet.Settings{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(); err != nil {
		t.Errorf("examples/computenetwork.yaml:\n%v", err)
	}
	// The cluster example's settings follow the same ComputeNetwork.
	var cm corev1.ConfigMap
	find(t, render(t, "examples/cluster"), "ConfigMap", "edgenet-config", &cm)
	for k, v := range map[string]string{
		"EDGENET_POD_CIDR": cn.Spec.PodCIDR, "EDGENET_SERVICE_CIDR": cn.Spec.ServiceCIDR,
		"EDGENET_POD_BLOCK_SIZE": fmt.Sprint(cn.Spec.PodBlockSize), "EDGENET_CLUSTER_DOMAIN": cn.Spec.ClusterDomain,
	} {
		if cm.Data[k] != v {
			t.Errorf("examples/cluster %s = %q, examples/computenetwork.yaml says %q", k, cm.Data[k], v)
		}
	}
	var svc corev1.Service
	find(t, render(t, "examples/cluster"), "Service", "edgenet-dns", &svc)
	if want := s.DNSServiceIP().String(); svc.Spec.ClusterIP != want {
		t.Errorf("examples/cluster DNS clusterIP %s, want %s (10th address of %s)", svc.Spec.ClusterIP, want, s.ServiceCIDR)
	}
}

// applyRetry applies until the apiserver takes it: custom resources wait for their
// CRD to be established.
func applyRetry(t *testing.T, kubeconfig string, args ...string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := exec.Command(kubectlPath(t), append([]string{"--kubeconfig", kubeconfig}, args...)...).CombinedOutput()
		if err == nil {
			return string(out)
		}
		if time.Now().After(deadline) {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// TestInstallAgainstAPIServer applies the install and uninstall kustomizations and the
// example ComputeNetwork to a real kube-apiserver (no nodes: nothing runs), the plain
// deploy/ to one with edgenet's default service CIDR, the cluster example to one with
// kubeadm's: the manifests are valid for the API, not only for kustomize.
func TestInstallAgainstAPIServer(t *testing.T) {
	bin, err := testenv.KubeBin()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, serviceCIDR, install string
	}{
		{name: "deploy", serviceCIDR: "172.28.0.0/16", install: "."},
		{name: "cluster example", serviceCIDR: "10.96.0.0/12", install: "examples/cluster"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			env, err := testenv.Launch(t.TempDir(), bin, testenv.Options{ServiceCIDR: tc.serviceCIDR})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(env.Stop)
			t.Logf("apiserver up in %s", time.Since(start).Round(time.Millisecond))
			kc := env.Kubeconfig
			// What an admin runs (docs/INSTALL.md); twice, as an upgrade does.
			for range 2 {
				kubectl(t, kc, "apply", "--server-side", "-k", tc.install)
			}
			kubectl(t, kc, "apply", "--server-side", "--dry-run=server", "-k", tc.install)
			kubectl(t, kc, "wait", "--for", "condition=established", "--timeout=30s", "crd/computenetworks.edgenet.io")
			// ComputeNetwork admission is the controller's webhook (failurePolicy Fail),
			// and no controller runs here: the object is refused, nothing unchecked gets in.
			// (testenv's apiserver calls webhooks at their endpoints, so nothing is sent.)
			refused, err := exec.Command(kubectlPath(t), "--kubeconfig", kc, "apply", "--server-side", "-f", "examples/computenetwork.yaml").CombinedOutput()
			if err == nil || !strings.Contains(string(refused), "computenetworks.edgenet.io") {
				t.Errorf("ComputeNetwork applied with no webhook serving: %v\n%s", err, refused)
			}
			// The call failed at the endpoint lookup: no packet went to a ClusterIP.
			if !strings.Contains(string(refused), "no endpoints available") {
				t.Errorf("the apiserver did not call the webhook at its endpoints:\n%s", refused)
			}
			// Without the webhook, the CRD's own checks take the example; internal/computenet's
			// are TestExampleComputeNetworkIsValid's.
			kubectl(t, kc, "delete", "validatingwebhookconfiguration", "edgenet-webhook")
			applyRetry(t, kc, "apply", "--server-side", "-f", "examples/computenetwork.yaml")
			out := kubectl(t, kc, "get", "computenetwork", "default", "-o", "jsonpath={.spec.nodeIPRange}")
			if out != "192.168.60.10-192.168.60.13" {
				t.Errorf("ComputeNetwork default nodeIPRange %q after apply", out)
			}
			out = kubectl(t, kc, "-n", "edgenet-system", "get", "daemonset,deployment,service,configmap", "-o", "name")
			for _, want := range []string{"daemonset.apps/edgenet-agent", "deployment.apps/edgenet-controller", "deployment.apps/edgenet-dns", "service/edgenet-dns"} {
				if !strings.Contains(out, want+"\n") {
					t.Errorf("%s missing after apply:\n%s", want, out)
				}
			}
			if tc.install == "examples/cluster" {
				for _, want := range []string{"configmap/edgenet-config", "configmap/edgenet-apiserver-endpoint"} {
					if !strings.Contains(out, want+"\n") {
						t.Errorf("%s missing after apply:\n%s", want, out)
					}
				}
			}
			if tc.install != "." {
				// Honest: this apiserver refuses what does not fit it, here deploy/
				// unchanged, whose DNS Service wants 172.28.0.10.
				out, err := exec.Command(kubectlPath(t), "--kubeconfig", kc, "apply", "--server-side", "--dry-run=server", "-k", ".").CombinedOutput()
				if err == nil || !regexp.MustCompile(`(?s)edgenet-dns.*172\.28\.0\.10`).Match(out) {
					t.Errorf("deploy/ unchanged on a %s cluster: %v\n%s", tc.serviceCIDR, err, out)
				}
			}
			kubectl(t, kc, "apply", "--server-side", "-k", "uninstall")
			out = kubectl(t, kc, "-n", "edgenet-uninstall", "get", "daemonset", "edgenet-cleanup", "-o", "jsonpath={.spec.template.spec.containers[0].args}")
			if out != `["cleanup","--hold"]` {
				t.Errorf("cleanup DaemonSet args %s", out)
			}
		})
	}
}
