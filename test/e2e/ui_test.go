package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	v1 "edgenet.io/edgenet/api/v1alpha1"
	"edgenet.io/edgenet/internal/computenet"
)

// uiBrowserEnv marks the re-executed test binary that drives Chromium from inside the site client's
// namespace; its value is the browserJob as JSON. The browser has to run there (not in the root namespace)
// because the UI is on the site network only, as an admin's laptop would see it.
const uiBrowserEnv = "EDGENET_E2E_UI_BROWSER"

// browserJob is what the browser half needs to know.
type browserJob struct {
	URL, Password, Artifacts string
	Service                  string // namespace/name of the Service pending for lack of addresses
	BadRange, GoodRange      string // an invalid external range, and the widened one
}

// init runs before TestMain: the browser half must not bring up or reuse an appliance.
func init() {
	v := os.Getenv(uiBrowserEnv)
	if v == "" {
		return
	}
	var job browserJob
	if err := json.Unmarshal([]byte(v), &job); err != nil {
		fmt.Fprintln(os.Stderr, "browser:", err)
		os.Exit(2)
	}
	if err := runBrowser(job); err != nil {
		fmt.Fprintln(os.Stderr, "browser:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// TestUIBrowser logs in to the web UI from the site client's namespace with headless Chromium, sees an
// invalid range refused inline, widens the external range while a LoadBalancer Service waits for an
// address, applies it, and sees the Service get its EXTERNAL-IP in the Overview. Screenshots go to
// test/e2e/artifacts/.
func TestUIBrowser(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is not installed: run hack/install-deps.sh")
	}
	ctx := context.Background()
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	en, err := v1.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	password, err := os.ReadFile(filepath.Join(stateDir, "ui-admin-password"))
	if err != nil {
		t.Fatalf("edgenet up left no UI password: %v", err)
	}
	if fi, _ := os.Stat(filepath.Join(stateDir, "ui-admin-password")); fi.Mode().Perm() != 0o600 {
		t.Errorf("password file mode %v, want 0600", fi.Mode().Perm())
	}

	cn, err := en.ComputeNetworks().Get(ctx, v1.ComputeNetworkName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	orig := *cn.Spec.DeepCopy()
	t.Cleanup(func() { restoreSpec(t, en, orig) })
	nodeIPs, err := computenet.ParseRange(string(orig.NodeIPRange))
	if err != nil {
		t.Fatal(err)
	}
	vip := nodeIPs.To

	// The UI is announced on the cluster VIP through its own pool.
	eventually(t, 90*time.Second, "the UI Service on the cluster VIP", func() error {
		s, err := app.client.CoreV1().Services("edgenet-system").Get(ctx, "edgenet-ui", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(s.Status.LoadBalancer.Ingress) == 0 || s.Status.LoadBalancer.Ingress[0].IP != vip.String() {
			return fmt.Errorf("ingress %v, want %s", s.Status.LoadBalancer.Ingress, vip)
		}
		return nil
	})

	// Fill the default pool, then one more Service waits for lack of addresses.
	ext, err := computenet.ParseRange(string(orig.ExternalServiceIPRanges[0]))
	if err != nil {
		t.Fatal(err)
	}
	// Cleanups run last-first: the namespace goes, its Services are waited for (their addresses return to
	// the pool for the tests after this one), then the spec is restored.
	t.Cleanup(func() {
		eventually(t, 60*time.Second, "the test Services gone", func() error {
			l, err := app.client.CoreV1().Services("e2e-ui").List(context.Background(), metav1.ListOptions{})
			if err == nil && len(l.Items) > 0 {
				err = fmt.Errorf("%d left", len(l.Items))
			}
			return err
		})
	})
	ns := testNamespace(t, "e2e-ui")
	free := int(defaultPoolSize(t, orig)) - len(defaultPoolUsed(t, orig))
	for i := range free {
		lbService(t, ns, fmt.Sprintf("filler-%d", i))
	}
	eventually(t, 60*time.Second, "the default pool full", func() error {
		if n := len(defaultPoolUsed(t, orig)); n < int(defaultPoolSize(t, orig)) {
			return fmt.Errorf("%d of %d used", n, defaultPoolSize(t, orig))
		}
		return nil
	})
	lbService(t, ns, "waiting")
	eventually(t, 30*time.Second, "Service waiting pending for lack of addresses", func() error {
		s, err := app.client.CoreV1().Services(ns).Get(ctx, "waiting", metav1.GetOptions{})
		if err != nil {
			return err
		}
		c := meta.FindStatusCondition(s.Status.Conditions, "edgenet.io/LoadBalancerIPAllocated")
		if c == nil || c.Status != metav1.ConditionFalse || c.Reason != "PoolExhausted" {
			return fmt.Errorf("condition %+v, ingress %v", c, s.Status.LoadBalancer.Ingress)
		}
		return nil
	})

	// Widen the first range by 10 addresses; the invalid one runs backwards.
	to := ext.To
	for range 10 {
		to = to.Next()
	}
	good := slices.Clone(orig.ExternalServiceIPRanges)
	good[0] = v1.IPRange(computenet.Range{From: ext.From, To: to}.String())
	var goodText []string
	for _, r := range good {
		goodText = append(goodText, string(r))
	}
	artifacts, _ := filepath.Abs("artifacts")
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	job := browserJob{URL: "https://" + vip.String(), Password: strings.TrimSpace(string(password)), Artifacts: artifacts,
		Service: ns + "/waiting", BadRange: to.String() + "-" + ext.From.String(), GoodRange: strings.Join(goodText, ", ")}
	jb, _ := json.Marshal(job)
	bctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(bctx, "nsenter", "--net=/run/netns/"+app.state.Client.Netns, "--", os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), uiBrowserEnv+"="+string(jb), "CHROMIUM="+chromium)
	out, err := cmd.CombinedOutput()
	t.Logf("browser in netns %s:\n%s", app.state.Client.Netns, out)
	if err != nil {
		t.Fatalf("browser: %v", err)
	}

	// The browser saw it; the API agrees.
	s, err := app.client.CoreV1().Services(ns).Get(ctx, "waiting", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Status.LoadBalancer.Ingress) == 0 {
		t.Fatal("Service waiting has no EXTERNAL-IP after the change")
	}
	ip := netip.MustParseAddr(s.Status.LoadBalancer.Ingress[0].IP)
	if ext.Contains(ip) || !(computenet.Range{From: ext.From, To: to}).Contains(ip) {
		t.Fatalf("EXTERNAL-IP %s is not in the added addresses after %s", ip, ext.To)
	}
	if !strings.Contains(string(out), "EXTERNAL-IP "+ip.String()) {
		t.Errorf("the Overview did not show %s", ip)
	}
	// The UI saw the laptop's own address (the login rate limit counts by it), not a node's.
	logs, err := app.kubectl(ctx, "logs", "-n", "edgenet-system", "deploy/edgenet-ui")
	if err != nil {
		t.Fatalf("UI logs: %v: %s", err, logs)
	}
	if want := "msg=login component=ui client=" + app.state.Client.IP; !strings.Contains(logs, want) {
		t.Errorf("UI log lacks %q:\n%s", want, logs)
	}
}

func lbService(t *testing.T, ns, name string) {
	t.Helper()
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}}}
	if _, err := app.client.CoreV1().Services(ns).Create(context.Background(), svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func defaultPoolSize(t *testing.T, spec v1.ComputeNetworkSpec) uint64 {
	var n uint64
	for _, x := range spec.ExternalServiceIPRanges {
		r, err := computenet.ParseRange(string(x))
		if err != nil {
			t.Fatal(err)
		}
		n += r.Size()
	}
	return n
}

// defaultPoolUsed is the set of Service addresses inside the spec's external ranges.
func defaultPoolUsed(t *testing.T, spec v1.ComputeNetworkSpec) map[netip.Addr]bool {
	svcs, err := app.client.CoreV1().Services("").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	used := map[netip.Addr]bool{}
	for _, s := range svcs.Items {
		for _, in := range s.Status.LoadBalancer.Ingress {
			a, err := netip.ParseAddr(in.IP)
			if err != nil {
				continue
			}
			for _, x := range spec.ExternalServiceIPRanges {
				if r, err := computenet.ParseRange(string(x)); err == nil && r.Contains(a) {
					used[a] = true
				}
			}
		}
	}
	return used
}

func restoreSpec(t *testing.T, en *v1.Client, spec v1.ComputeNetworkSpec) {
	ctx := context.Background()
	for range 10 {
		cn, err := en.ComputeNetworks().Get(ctx, v1.ComputeNetworkName, metav1.GetOptions{})
		if err == nil {
			cn.Spec = spec
			if _, err = en.ComputeNetworks().Update(ctx, cn, metav1.UpdateOptions{}); err == nil {
				return
			}
		}
		t.Logf("restore ComputeNetwork spec: %v", err)
		time.Sleep(time.Second)
	}
	t.Errorf("could not restore the ComputeNetwork spec %+v", spec)
}

// runBrowser is the browser half, in the client namespace. It prints "EXTERNAL-IP <ip>" as the Overview shows it.
func runBrowser(job browserJob) error {
	dir, err := os.MkdirTemp("", "edgenet-e2e-chromium-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	opts := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]),
		chromedp.ExecPath(os.Getenv("CHROMIUM")),
		chromedp.UserDataDir(dir),
		chromedp.NoSandbox,                               // root in a container: the sandbox needs user namespaces we do not have
		chromedp.Flag("ignore-certificate-errors", true), // the UI's self-signed certificate
		chromedp.WindowSize(1280, 1000),
	)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	// One bound for the whole browser: a hung page must not hang the suite.
	ctx, cancel = context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()

	css := func(sel string) chromedp.CSS { return chromedp.CSS(sel) }
	shot := func(name string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			buf, err := chromedp.FullScreenshot(100)(ctx, t)
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(job.Artifacts, "ui-"+name+".png"), buf, 0o644)
		})
	}
	step := func(what string, actions ...chromedp.Action[chromedp.Void]) error {
		fmt.Println("step:", what)
		if err := chromedp.Do(ctx, actions...); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	}
	// pollText waits until the JavaScript expression's string value satisfies ok.
	pollText := func(what, expr string, ok func(string) bool, timeout time.Duration) (string, error) {
		deadline := time.Now().Add(timeout)
		var v string
		for time.Now().Before(deadline) {
			got, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
			if err == nil {
				v = got
				if ok(v) {
					return v, nil
				}
			}
			time.Sleep(200 * time.Millisecond)
		}
		return v, fmt.Errorf("%s: not within %s (last %q)", what, timeout, v)
	}

	// The VIP may take a moment to answer from the site network.
	deadline := time.Now().Add(60 * time.Second)
	for {
		err = chromedp.Do(ctx, chromedp.Navigate(job.URL+"/login"), chromedp.WaitVisible(css("#password")))
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	if err != nil {
		return fmt.Errorf("open %s/login: %w", job.URL, err)
	}
	if err := step("log in", shot("01-login"), chromedp.SendKeys(css("#password"), job.Password),
		chromedp.Click(css("#login-button")), chromedp.WaitVisible(css("#nodes"))); err != nil {
		return err
	}
	if _, err := pollText("overview rows", `String(document.querySelectorAll("#nodes tbody tr").length)`,
		func(s string) bool { return s != "0" }, 20*time.Second); err != nil {
		return err
	}
	if err := step("overview", shot("02-overview")); err != nil {
		return err
	}

	ext := css("#f-externalServiceIPRanges")
	const extError = `document.querySelector('[data-error-for="spec.externalServiceIPRanges"]').textContent`
	if err := step("open the Compute network page", chromedp.Navigate(job.URL+"/network"), chromedp.WaitVisible(ext)); err != nil {
		return err
	}
	if _, err := pollText("the stored spec loaded", `document.getElementById("rv").textContent`,
		func(s string) bool { return s != "…" && s != "" }, 20*time.Second); err != nil {
		return err
	}
	if err := step("type an invalid range", clearInput(string(ext)), chromedp.SendKeys(ext, job.BadRange)); err != nil {
		return err
	}
	msg, err := pollText("inline error", extError, func(s string) bool { return strings.Contains(s, "start is after end") }, 20*time.Second)
	if err != nil {
		return err
	}
	fmt.Println("inline error:", msg)
	if err := step("screenshot of the error", shot("03-invalid-range")); err != nil {
		return err
	}
	if disabled, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.getElementById("apply-button").disabled`)); err != nil || !disabled {
		return fmt.Errorf("apply is enabled with an invalid range (%v)", err)
	}

	if err := step("type the widened range", clearInput(string(ext)), chromedp.SendKeys(ext, job.GoodRange)); err != nil {
		return err
	}
	if _, err := pollText("valid again", `document.getElementById("valid-state").textContent + "|" + `+extError,
		func(s string) bool { return s == "valid|" }, 20*time.Second); err != nil {
		return err
	}
	if err := step("preview", chromedp.Click(css("#preview-button")), chromedp.WaitVisible(css("#preview-body .changes"))); err != nil {
		return err
	}
	preview, err := pollText("apply enabled by the preview", `document.getElementById("apply-button").disabled ? "" : document.getElementById("preview-body").innerText`,
		func(s string) bool { return s != "" }, 10*time.Second)
	if err != nil {
		return err
	}
	fmt.Printf("preview:\n%s\n", preview)
	for _, want := range []string{"spec.externalServiceIPRanges", job.GoodRange, job.Service, "10 free after the change"} {
		if !strings.Contains(preview, want) {
			return fmt.Errorf("the preview does not mention %q", want)
		}
	}
	if err := step("screenshot of the preview, apply", shot("04-preview"), chromedp.Click(css("#apply-button"))); err != nil {
		return err
	}
	res, err := pollText("applied", `document.getElementById("apply-result").textContent`,
		func(s string) bool { return strings.HasPrefix(s, "Applied") }, 20*time.Second)
	if err != nil {
		return err
	}
	fmt.Println("result:", res)
	if err := step("screenshot after apply", shot("05-applied"), chromedp.Navigate(job.URL+"/overview"), chromedp.WaitVisible(css("#services"))); err != nil {
		return err
	}
	ipExpr := fmt.Sprintf(`(function(){ const r = document.querySelector('#services tr[data-service=%q] .external-ip'); return r ? r.textContent : ""; })()`, job.Service)
	ip, err := pollText("the EXTERNAL-IP in the Overview", ipExpr, func(s string) bool {
		_, err := netip.ParseAddr(s)
		return err == nil
	}, 60*time.Second)
	if err != nil {
		return err
	}
	fmt.Println("EXTERNAL-IP " + ip)
	return step("screenshot of the Overview", shot("06-overview-after"))
}

// clearInput empties a text input the way a user's select-all and delete would (chromedp's Clear sets the
// value attribute, which does not change what was typed).
func clearInput(sel string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.Evaluate[bool](fmt.Sprintf(`(document.querySelector(%q).value = "") === ""`, sel))(ctx, t)
		return err
	})
}
