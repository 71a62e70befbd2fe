package appliance

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"edgenet.io/edgenet/deploy"
	"edgenet.io/edgenet/internal/image"
)

// The demo application (deploy/demo): cmd/demo-web in front of Debian's redis-server.
const (
	DemoNamespace = "demo"
	demoWebImage  = "docker.io/edgenet/demo-web:" + imageTag
	redisImage    = "docker.io/edgenet/redis:" + imageTag
	// redisServer is Debian's binary; the image carries it with the libraries it links.
	redisServer = "/usr/bin/redis-server"
)

// demoImages are the demo's images: the web front end from binDir, and Redis from the
// host's redis-server package.
func demoImages(binDir string) ([]image.Spec, error) {
	files := map[string]string{}
	// redis-server is a symlink to redis-check-rdb and picks its role by argv[0]: the
	// file goes into the image under the server's name.
	if err := image.AddWithLibs(files, redisServer); err != nil {
		return nil, fmt.Errorf("demo image %s: %w", redisImage, err)
	}
	return []image.Spec{
		{Ref: demoWebImage, Files: map[string]string{"demo-web": filepath.Join(binDir, "demo-web")}, Entrypoint: []string{"/demo-web"}},
		{Ref: redisImage, Files: files, Entrypoint: []string{redisServer}},
	}, nil
}

// demoPrereqs are the files the demo's images are built from.
func demoPrereqs(binDir string) []string {
	return []string{filepath.Join(binDir, "demo-web"), redisServer}
}

// demoInfo is what the summary at the end of up tells about the demo.
type demoInfo struct {
	ExternalIP netip.Addr
	UI         netip.Addr
	Client     string // the site client's namespace
}

// deployDemo applies deploy/demo with the Redis data under the state dir, waits until
// both Deployments are available and the web Service has its EXTERNAL-IP, and checks
// that the site client gets an answer there, through the front end and the database.
func deployDemo(ctx context.Context, cfg Config, client kubernetes.Interface, st *state) (demoInfo, error) {
	l := cfg.layout()
	info := demoInfo{UI: st.Settings.ClusterVIP(), Client: st.Client.Netns}
	dir, err := os.MkdirTemp("", "edgenet-demo-")
	if err != nil {
		return info, err
	}
	defer os.RemoveAll(dir)
	sub, err := fs.Sub(deploy.FS, "demo")
	if err != nil {
		return info, err
	}
	if err := os.CopyFS(filepath.Join(dir, "demo"), sub); err != nil {
		return info, err
	}
	overlay := fmt.Sprintf(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [../demo]
patches:
  - target: {kind: Deployment, name: redis}
    patch: |-
      - op: replace
        path: /spec/template/spec/volumes/0/hostPath/path
        value: %s
`, filepath.Join(l.state, "demo", "redis"))
	if err := os.MkdirAll(filepath.Join(dir, "appliance"), 0o755); err != nil {
		return info, err
	}
	if err := os.WriteFile(filepath.Join(dir, "appliance", "kustomization.yaml"), []byte(overlay), 0o644); err != nil {
		return info, err
	}
	cmd := exec.CommandContext(ctx, filepath.Join(cfg.KubeBinDir, "kubectl"), "--kubeconfig", l.kubeconfig("admin"),
		"apply", "--server-side", "-k", filepath.Join(dir, "appliance"))
	if out, err := cmd.CombinedOutput(); err != nil {
		return info, fmt.Errorf("demo: kubectl apply -k deploy/demo: %w: %s", err, out)
	}
	for _, name := range []string{"redis", "web"} {
		if err := st.waitFor(ctx, "demo/"+name+" available", func() (bool, error) {
			d, err := client.AppsV1().Deployments(DemoNamespace).Get(ctx, name, metav1.GetOptions{})
			return err == nil && deploymentAvailable(d), nil
		}); err != nil {
			return info, fmt.Errorf("demo: %w", err)
		}
	}
	if err := st.waitFor(ctx, "demo/web EXTERNAL-IP", func() (bool, error) {
		s, err := client.CoreV1().Services(DemoNamespace).Get(ctx, "web", metav1.GetOptions{})
		if err != nil || len(s.Status.LoadBalancer.Ingress) == 0 {
			return false, nil
		}
		info.ExternalIP, err = netip.ParseAddr(s.Status.LoadBalancer.Ingress[0].IP)
		return err == nil, nil
	}); err != nil {
		return info, fmt.Errorf("demo: %w", err)
	}
	// From the site LAN, through the LoadBalancer, the front end and the database.
	url := fmt.Sprintf("http://%s/api/hit", info.ExternalIP)
	var last []byte
	if err := st.waitFor(ctx, "the demo answering "+url+" from the site client", func() (bool, error) {
		pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		last, err = exec.CommandContext(pctx, "nsenter", "--net=/run/netns/"+st.Client.Netns, "--",
			filepath.Join(cfg.BinDir, "testapp"), "http", "-timeout", "2s", url).CombinedOutput()
		return err == nil, nil
	}); err != nil {
		return info, fmt.Errorf("demo: %w (last answer: %s)", err, last)
	}
	return info, nil
}

func deploymentAvailable(d *appsv1.Deployment) bool {
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	return d.Status.ObservedGeneration >= d.Generation && d.Status.AvailableReplicas == want && d.Status.UpdatedReplicas == want
}

// print writes the demo's part of up's summary: where the app and the UI are, and the
// commands that try them from the site LAN.
func (d demoInfo) print(w io.Writer) {
	in := "ip netns exec " + d.Client + " "
	fmt.Fprintf(w, `
Demo app (namespace %[1]s: web ×2 behind a LoadBalancer, Redis behind a ClusterIP):
  http://%[2]s/
Local UI:
  https://%[3]s/
Try them from the site LAN (the client namespace %[4]s):
  %[5]scurl http://%[2]s/                       # the page: serving pod, node, visits, guestbook
  %[5]scurl http://%[2]s/api/hit                # JSON {pod, node, podIP, visits}; repeat to see both replicas
  %[5]scurl -d text=hello http://%[2]s/api/entries
  %[5]scurl -k https://%[3]s/
`, DemoNamespace, d.ExternalIP, d.UI, d.Client, in)
}
