package appliance

import (
	"bytes"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"edgenet.io/edgenet/deploy"
	"edgenet.io/edgenet/internal/image"
)

// The Redis image holds everything redis-server needs: run it from a root made of
// exactly the image's files and it answers.
func TestRedisImageRunsFromItsOwnFiles(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chroot needs root")
	}
	specs, err := demoImages(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var redis image.Spec
	for _, s := range specs {
		if s.Ref == redisImage {
			redis = s
		}
	}
	root := t.TempDir()
	for dst, src := range redis.Files {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(dst)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, dst), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := redis.Files["usr/bin/redis-server"]; !ok {
		t.Fatalf("no usr/bin/redis-server in the image: %v", redis.Files)
	}
	out, err := exec.Command("chroot", root, redis.Entrypoint[0], "--version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Redis server v=") {
		t.Fatalf("redis-server --version in the image's root: %v\n%s", err, out)
	}
	// And the image tarball is written.
	tar := filepath.Join(t.TempDir(), "redis.tar")
	if err := image.WriteDockerArchive(redis, tar); err != nil {
		t.Fatal(err)
	}
}

func demoObjects(t *testing.T) (deps map[string]appsv1.Deployment, svcs map[string]corev1.Service) {
	t.Helper()
	deps, svcs = map[string]appsv1.Deployment{}, map[string]corev1.Service{}
	for _, f := range []string{"demo/web.yaml", "demo/redis.yaml"} {
		b, err := fs.ReadFile(deploy.FS, f)
		if err != nil {
			t.Fatal(err)
		}
		for _, doc := range bytes.Split(b, []byte("\n---\n")) {
			var meta struct{ Kind string }
			if err := yaml.Unmarshal(doc, &meta); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			switch meta.Kind {
			case "Deployment":
				var d appsv1.Deployment
				if err := yaml.UnmarshalStrict(doc, &d); err != nil {
					t.Fatalf("%s: %v", f, err)
				}
				deps[d.Name] = d
			case "Service":
				var s corev1.Service
				if err := yaml.UnmarshalStrict(doc, &s); err != nil {
					t.Fatalf("%s: %v", f, err)
				}
				svcs[s.Name] = s
			}
		}
	}
	return deps, svcs
}

// The manifests keep the demo's promises: images up builds, a LoadBalancer front end of
// at least two replicas, a ClusterIP database, readiness probes, and pods that leave a
// lost node within seconds.
func TestDemoManifests(t *testing.T) {
	deps, svcs := demoObjects(t)
	web, redis := deps["web"], deps["redis"]
	if web.Spec.Replicas == nil || *web.Spec.Replicas < 2 {
		t.Errorf("web replicas %v, want at least 2", web.Spec.Replicas)
	}
	if redis.Spec.Replicas == nil || *redis.Spec.Replicas != 1 || redis.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Errorf("redis: want 1 replica, Recreate (one writer of its data)")
	}
	if svcs["web"].Spec.Type != corev1.ServiceTypeLoadBalancer || svcs["redis"].Spec.Type != corev1.ServiceTypeClusterIP {
		t.Errorf("service types: web %q, redis %q", svcs["web"].Spec.Type, svcs["redis"].Spec.Type)
	}
	for name, want := range map[string]string{"web": demoWebImage, "redis": redisImage} {
		d := deps[name]
		c := d.Spec.Template.Spec.Containers[0]
		if c.Image != want {
			t.Errorf("%s image %q, up builds %q", name, c.Image, want)
		}
		if c.ReadinessProbe == nil {
			t.Errorf("%s has no readiness probe", name)
		}
		if d.Namespace != DemoNamespace || svcs[name].Namespace != DemoNamespace {
			t.Errorf("%s not in namespace %s", name, DemoNamespace)
		}
		quick := map[string]bool{}
		for _, tol := range d.Spec.Template.Spec.Tolerations {
			if tol.Effect == corev1.TaintEffectNoExecute && tol.TolerationSeconds != nil && *tol.TolerationSeconds <= 30 {
				quick[tol.Key] = true
			}
		}
		if !quick["node.kubernetes.io/not-ready"] || !quick["node.kubernetes.io/unreachable"] {
			t.Errorf("%s does not leave a NotReady/unreachable node within 30 s: %+v", name, d.Spec.Template.Spec.Tolerations)
		}
	}
	var redisAddr string
	for _, e := range web.Spec.Template.Spec.Containers[0].Env {
		if e.Name == "REDIS_ADDR" {
			redisAddr = e.Value
		}
	}
	if redisAddr != "redis.demo.svc.cluster.local:6379" {
		t.Errorf("web reaches the database at %q, want its Service's DNS name", redisAddr)
	}
}

func TestDemoSummary(t *testing.T) {
	var b bytes.Buffer
	demoInfo{ExternalIP: netip.MustParseAddr("192.168.50.100"), UI: netip.MustParseAddr("192.168.50.19"), Client: ClientNetns}.print(&b)
	for _, want := range []string{
		"http://192.168.50.100/",
		"https://192.168.50.19/",
		"ip netns exec edgenet-client curl http://192.168.50.100/api/hit",
		"ip netns exec edgenet-client curl -d text=hello http://192.168.50.100/api/entries",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, b.String())
		}
	}
}
