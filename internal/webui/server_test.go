package webui

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	v1 "edgenet.io/edgenet/api/v1alpha1"
	"edgenet.io/edgenet/api/v1alpha1/crdtest"
	"edgenet.io/edgenet/internal/testenv"
)

// cluster is one apiserver shared by the tests of this file; each test has its own namespace for the
// admin Secret, so first-start state does not leak between tests.
type cluster struct {
	kube *kubernetes.Clientset
	en   *v1.Client
}

var (
	clusterOnce sync.Once
	shared      *cluster
	sharedErr   error
	sharedStop  func()
)

func TestMain(m *testing.M) {
	code := m.Run()
	if sharedStop != nil {
		sharedStop()
	}
	os.Exit(code)
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	clusterOnce.Do(func() {
		bin, err := testenv.KubeBin()
		if err != nil {
			sharedErr = err
			return
		}
		dir, err := mkTemp()
		if err != nil {
			sharedErr = err
			return
		}
		env, err := testenv.Launch(dir, bin, testenv.Options{})
		if err != nil {
			sharedErr = err
			return
		}
		sharedStop = env.Stop
		crdtest.Install(t, env.Config)
		en, err := v1.NewForConfig(env.Config)
		if err != nil {
			sharedErr = err
			return
		}
		shared = &cluster{kube: env.Client, en: en}
		cn := &v1.ComputeNetwork{ObjectMeta: metav1.ObjectMeta{Name: v1.ComputeNetworkName}, Spec: defaultSpec()}
		_, sharedErr = en.ComputeNetworks().Create(context.Background(), cn, metav1.CreateOptions{})
	})
	if sharedErr != nil {
		t.Fatalf("test apiserver: %v", sharedErr)
	}
	return shared
}

// ui is a Server on an httptest TLS server, with a fake clock.
type ui struct {
	t     *testing.T
	c     *cluster
	srv   *Server
	ts    *httptest.Server
	clock *clock
	ns    string
}

func newUI(t *testing.T) *ui {
	c := startCluster(t)
	ns := "t-" + strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(ns) > 60 {
		ns = ns[:60]
	}
	ctx := context.Background()
	if _, err := c.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.kube.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) })
	clk := &clock{time.Now()}
	var mu sync.Mutex
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clk.now() }
	s, err := New(Config{Kube: c.kube, Edgenet: c.en, Namespace: ns, Log: slog.New(slog.NewTextHandler(t.Output(), nil)), BcryptCost: bcrypt.MinCost, Now: now,
		IdleTimeout: 30 * time.Minute, MaxSessionAge: 12 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewTLSServer(s)
	t.Cleanup(ts.Close)
	return &ui{t: t, c: c, srv: s, ts: ts, clock: clk, ns: ns}
}

// browser is a client with its own cookies and the CSRF token it last saw.
type browser struct {
	u    *ui
	hc   *http.Client
	csrf string
}

func (u *ui) browser() *browser {
	jar, _ := cookiejar.New(nil)
	hc := u.ts.Client()
	hc = &http.Client{Transport: hc.Transport, Jar: jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &browser{u: u, hc: hc}
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
}

// do sends a request; body (if not nil) as JSON; csrf adds the token header.
func (b *browser) do(method, path string, body any, csrf bool, hdr ...string) reply {
	b.u.t.Helper()
	var rd io.Reader
	if body != nil {
		j, _ := json.Marshal(body)
		rd = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, b.u.ts.URL+path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if csrf {
		req.Header.Set(csrfHeader, b.csrf)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := b.hc.Do(req)
	if err != nil {
		b.u.t.Fatal(err)
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	return reply{res.StatusCode, res.Header, data}
}

func (b *browser) login(password string) reply {
	r := b.do("POST", "/api/v1/login", passwordBody{password}, false)
	if r.status == http.StatusOK {
		var info sessionInfo
		r.json(b.u.t, &info)
		b.csrf = info.CSRFToken
	}
	return r
}

const testPassword = "correct horse battery staple"

// setPassword stores testPassword as edgenet up does.
func (u *ui) setPassword() {
	h, err := HashPassword(testPassword, bcrypt.MinCost)
	if err != nil {
		u.t.Fatal(err)
	}
	if _, err := u.c.kube.CoreV1().Secrets(u.ns).Create(context.Background(), AdminSecret(u.ns, h), metav1.CreateOptions{}); err != nil {
		u.t.Fatal(err)
	}
}

func (u *ui) loggedIn() *browser {
	u.setPassword()
	b := u.browser()
	if r := b.login(testPassword); r.status != http.StatusOK {
		u.t.Fatalf("login: %d %s", r.status, r.body)
	}
	return b
}

func TestNoAccessWithoutLogin(t *testing.T) {
	u := newUI(t)
	b := u.browser()
	// Before first start every page leads to /setup.
	for _, p := range []string{"/", "/overview", "/network", "/login"} {
		if r := b.do("GET", p, nil, false); r.status != http.StatusSeeOther || r.header.Get("Location") != "/setup" {
			t.Errorf("GET %s before first start: %d to %q, want 303 to /setup", p, r.status, r.header.Get("Location"))
		}
	}
	u.setPassword()
	for _, p := range []string{"/", "/overview", "/network", "/setup"} {
		if r := b.do("GET", p, nil, false); r.status != http.StatusSeeOther || r.header.Get("Location") != "/login" {
			t.Errorf("GET %s: %d to %q, want 303 to /login", p, r.status, r.header.Get("Location"))
		}
	}
	if r := b.do("GET", "/login", nil, false); r.status != http.StatusOK || !bytes.Contains(r.body, []byte(`id="login-form"`)) {
		t.Errorf("GET /login: %d", r.status)
	}
	for _, rt := range u.srv.apiRoutes() {
		if !rt.auth {
			continue
		}
		r := b.do(rt.method, rt.path, specBody{Spec: defaultSpec()}, false)
		var e apiError
		r.json(t, &e)
		if r.status != http.StatusUnauthorized || e.Error.Status != 401 {
			t.Errorf("%s %s without session: %d %s, want 401", rt.method, rt.path, r.status, r.body)
		}
	}
	// A made-up session id is no session.
	u2 := u.browser()
	u2.hc.Jar.SetCookies(mustURL(u.ts.URL), []*http.Cookie{{Name: sessionCookie, Value: randomToken()}})
	if r := u2.do("GET", "/api/v1/overview", nil, false); r.status != http.StatusUnauthorized {
		t.Errorf("forged session: %d, want 401", r.status)
	}
}

func TestLoginAndSessionCookie(t *testing.T) {
	u := newUI(t)
	u.setPassword()
	b := u.browser()
	r := b.login(testPassword)
	if r.status != http.StatusOK {
		t.Fatalf("login: %d %s", r.status, r.body)
	}
	setCookie := r.header.Get("Set-Cookie")
	for _, attr := range []string{sessionCookie + "=", "Secure", "HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="} {
		if !strings.Contains(setCookie, attr) {
			t.Errorf("Set-Cookie %q lacks %s", setCookie, attr)
		}
	}
	if len(b.csrf) != 43 {
		t.Errorf("CSRF token %q is not 256 bits", b.csrf)
	}
	if r := b.do("GET", "/overview", nil, false); r.status != http.StatusOK {
		t.Errorf("GET /overview logged in: %d", r.status)
	}
	if r := b.do("GET", "/login", nil, false); r.status != http.StatusSeeOther || r.header.Get("Location") != "/overview" {
		t.Errorf("GET /login logged in: %d to %q", r.status, r.header.Get("Location"))
	}
	for _, h := range []string{"Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options"} {
		if r.header.Get(h) == "" {
			t.Errorf("no %s header", h)
		}
	}
	if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") ||
		!strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("CSP %q", csp)
	}
	if r := b.do("POST", "/api/v1/logout", nil, true); r.status != http.StatusNoContent {
		t.Fatalf("logout: %d %s", r.status, r.body)
	}
	if r := b.do("GET", "/api/v1/overview", nil, false); r.status != http.StatusUnauthorized {
		t.Errorf("after logout: %d, want 401", r.status)
	}
}

func TestCSRFTokenRequired(t *testing.T) {
	u := newUI(t)
	b := u.loggedIn()
	body := specBody{Spec: defaultSpec()}
	for _, rt := range u.srv.apiRoutes() {
		if !rt.auth || rt.method == "GET" {
			continue
		}
		if r := b.do(rt.method, rt.path, body, false); r.status != http.StatusForbidden {
			t.Errorf("%s %s without CSRF token: %d, want 403", rt.method, rt.path, r.status)
		}
		r := b.do(rt.method, rt.path, body, false, csrfHeader, randomToken())
		if r.status != http.StatusForbidden {
			t.Errorf("%s %s with a wrong CSRF token: %d, want 403", rt.method, rt.path, r.status)
		}
	}
	// Another session's token is wrong too.
	other := u.browser()
	other.login(testPassword)
	b2 := *b
	b2.csrf = other.csrf
	if r := b2.do("POST", "/api/v1/computenetwork/validate", body, true); r.status != http.StatusForbidden {
		t.Errorf("another session's token: %d, want 403", r.status)
	}
	if r := b.do("POST", "/api/v1/computenetwork/validate", body, true); r.status != http.StatusOK {
		t.Errorf("with the token: %d %s", r.status, r.body)
	}
	// A form post carries the token as a field.
	req, _ := http.NewRequest("POST", u.ts.URL+"/api/v1/logout", strings.NewReader("csrf_token="+b.csrf))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	res, err := b.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNoContent {
		t.Errorf("form logout with csrf_token: %d", res.StatusCode)
	}
	// Cross-site requests are refused before anything else, the login included.
	c := u.browser()
	if r := c.do("POST", "/api/v1/login", passwordBody{testPassword}, false, "Origin", "https://evil.example"); r.status != http.StatusForbidden {
		t.Errorf("cross-origin login: %d, want 403", r.status)
	}
	if r := c.do("POST", "/api/v1/login", passwordBody{testPassword}, false, "Sec-Fetch-Site", "cross-site"); r.status != http.StatusForbidden {
		t.Errorf("cross-site login: %d, want 403", r.status)
	}
}

func TestLoginRateLimited(t *testing.T) {
	u := newUI(t)
	u.setPassword()
	b := u.browser()
	for i := range 5 {
		if r := b.login("wrong password " + fmt.Sprint(i)); r.status != http.StatusUnauthorized {
			t.Fatalf("wrong password %d: %d %s, want 401", i, r.status, r.body)
		}
	}
	r := b.login(testPassword)
	if r.status != http.StatusTooManyRequests {
		t.Fatalf("6th login within a minute: %d, want 429", r.status)
	}
	if ra := r.header.Get("Retry-After"); ra == "" || ra == "0" {
		t.Errorf("Retry-After %q", ra)
	}
	u.clock.advance(61 * time.Second)
	if r := b.login(testPassword); r.status != http.StatusOK {
		t.Fatalf("after the window: %d %s", r.status, r.body)
	}
}

func TestSessionExpiry(t *testing.T) {
	u := newUI(t)
	b := u.loggedIn()
	u.clock.advance(29 * time.Minute)
	if r := b.do("GET", "/api/v1/computenetwork", nil, false); r.status != http.StatusOK {
		t.Fatalf("within idle timeout: %d", r.status)
	}
	u.clock.advance(31 * time.Minute)
	if r := b.do("GET", "/api/v1/computenetwork", nil, false); r.status != http.StatusUnauthorized {
		t.Fatalf("after idle timeout: %d, want 401", r.status)
	}
	if r := b.do("GET", "/network", nil, false); r.status != http.StatusSeeOther || r.header.Get("Location") != "/login" {
		t.Fatalf("page after expiry: %d to %q", r.status, r.header.Get("Location"))
	}
}

func TestFirstStartSetsPasswordOnce(t *testing.T) {
	u := newUI(t)
	var info sessionInfo
	u.browser().do("GET", "/api/v1/session", nil, false).json(t, &info)
	if !info.SetupRequired || info.Authenticated {
		t.Fatalf("session before first start: %+v", info)
	}
	if r := u.browser().do("POST", "/api/v1/setup", passwordBody{"short"}, false); r.status != http.StatusUnprocessableEntity {
		t.Errorf("short password: %d, want 422", r.status)
	}
	// Two browsers race; exactly one sets the password.
	const racers = 4
	statuses := make([]int, racers)
	var wg sync.WaitGroup
	for i := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i] = u.browser().do("POST", "/api/v1/setup", passwordBody{fmt.Sprintf("racer password %d", i)}, false).status
		}()
	}
	wg.Wait()
	slices.Sort(statuses)
	if want := []int{http.StatusCreated, http.StatusConflict, http.StatusConflict, http.StatusConflict}; !slices.Equal(statuses, want) {
		t.Fatalf("racing first starts answered %v, want %v", statuses, want)
	}
	sec, err := u.c.kube.CoreV1().Secrets(u.ns).Get(context.Background(), AdminSecretName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	winner := -1
	for i := range racers {
		if bcrypt.CompareHashAndPassword(sec.Data[AdminSecretKey], []byte(fmt.Sprintf("racer password %d", i))) == nil {
			winner = i
		}
	}
	if winner < 0 {
		t.Fatal("the stored hash matches no racer's password")
	}
	if r := u.browser().do("POST", "/api/v1/setup", passwordBody{"a later attempt at it"}, false); r.status != http.StatusConflict {
		t.Errorf("setup after first start: %d, want 409", r.status)
	}
	b := u.browser()
	if r := b.login(fmt.Sprintf("racer password %d", winner)); r.status != http.StatusOK {
		t.Errorf("login with the password set at first start: %d", r.status)
	}
}

// TestSecretCreateRace: the store's create is what makes first start create-only, whatever the handler's
// pre-check saw.
func TestSecretCreateRace(t *testing.T) {
	u := newUI(t)
	store := secretStore{kube: u.c.kube, namespace: u.ns}
	const racers = 8
	errs := make([]error, racers)
	var wg sync.WaitGroup
	for i := range racers {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = store.create(context.Background(), []byte(fmt.Sprint(i))) }()
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, errPasswordSet):
			t.Fatalf("create: %v", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d of %d racing creates won, want 1", won, racers)
	}
}

func TestComputeNetworkAPI(t *testing.T) {
	u := newUI(t)
	b := u.loggedIn()
	ctx := context.Background()
	var got computeNetworkView
	r := b.do("GET", "/api/v1/computenetwork", nil, false)
	r.json(t, &got)
	if r.status != http.StatusOK || got.ClusterVIP != "192.168.50.19" || got.Spec.NodeIPRange != "192.168.50.10-192.168.50.19" {
		t.Fatalf("GET: %d %s", r.status, r.body)
	}
	spec := got.Spec

	// Inline validation names the field.
	bad := *spec.DeepCopy()
	bad.ExternalServiceIPRanges = []v1.IPRange{"192.168.50.200-192.168.50.100"}
	var val validation
	b.do("POST", "/api/v1/computenetwork/validate", specBody{Spec: bad}, true).json(t, &val)
	if val.Valid || len(val.Errors) != 1 || val.Errors[0].Field != "spec.externalServiceIPRanges[0]" {
		t.Fatalf("validate bad range: %+v", val)
	}
	immut := *spec.DeepCopy()
	immut.ServiceCIDR = "172.29.0.0/16"
	b.do("POST", "/api/v1/computenetwork/validate", specBody{Spec: immut}, true).json(t, &val)
	if val.Valid || len(val.Errors) != 1 || val.Errors[0].Field != "spec.serviceCIDR" || !strings.Contains(val.Errors[0].Reason, "cannot change") {
		t.Fatalf("validate service CIDR change: %+v", val)
	}

	// Preview sees the pending Service and the bigger pool.
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "waiting", Namespace: u.ns},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Port: 80}}}}
	if _, err := u.c.kube.CoreV1().Services(u.ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	wide := *spec.DeepCopy()
	wide.ExternalServiceIPRanges = []v1.IPRange{"192.168.50.100-192.168.50.139"}
	var p Preview
	b.do("POST", "/api/v1/computenetwork/preview", specBody{Spec: wide}, true).json(t, &p)
	if !p.Applicable || p.Pool.SizeBefore != 20 || p.Pool.SizeAfter != 40 || !slices.Contains(p.PendingServices, u.ns+"/waiting") ||
		len(p.Changes) != 1 || p.Changes[0].Field != "spec.externalServiceIPRanges" {
		t.Fatalf("preview: %+v", p)
	}

	// Refused changes change nothing.
	r = b.do("PUT", "/api/v1/computenetwork", specBody{Spec: immut, ResourceVersion: got.ResourceVersion}, true)
	var e apiError
	r.json(t, &e)
	if r.status != http.StatusUnprocessableEntity || len(e.Error.Fields) != 1 || e.Error.Fields[0].Field != "spec.serviceCIDR" {
		t.Fatalf("PUT immutable change: %d %s", r.status, r.body)
	}
	r = b.do("PUT", "/api/v1/computenetwork", specBody{Spec: bad, ResourceVersion: got.ResourceVersion}, true)
	if r.status != http.StatusUnprocessableEntity {
		t.Fatalf("PUT bad range: %d %s", r.status, r.body)
	}
	if cn, _ := u.c.en.ComputeNetworks().Get(ctx, v1.ComputeNetworkName, metav1.GetOptions{}); cn.ResourceVersion != got.ResourceVersion {
		t.Fatal("a refused PUT changed the ComputeNetwork")
	}
	// Unknown fields are refused, not dropped.
	r = b.do("PUT", "/api/v1/computenetwork", map[string]any{"spec": wide, "resourceVersion": got.ResourceVersion, "force": true}, true)
	if r.status != http.StatusBadRequest {
		t.Fatalf("PUT with an unknown field: %d", r.status)
	}

	// Apply, then a stale apply is a conflict.
	var applied computeNetworkView
	r = b.do("PUT", "/api/v1/computenetwork", specBody{Spec: wide, ResourceVersion: got.ResourceVersion}, true)
	r.json(t, &applied)
	if r.status != http.StatusOK || applied.ResourceVersion == got.ResourceVersion {
		t.Fatalf("PUT: %d %s", r.status, r.body)
	}
	t.Cleanup(func() { // put the shared ComputeNetwork back
		cn, _ := u.c.en.ComputeNetworks().Get(ctx, v1.ComputeNetworkName, metav1.GetOptions{})
		cn.Spec = spec
		u.c.en.ComputeNetworks().Update(ctx, cn, metav1.UpdateOptions{})
	})
	cn, err := u.c.en.ComputeNetworks().Get(ctx, v1.ComputeNetworkName, metav1.GetOptions{})
	if err != nil || !slices.Equal(cn.Spec.ExternalServiceIPRanges, wide.ExternalServiceIPRanges) {
		t.Fatalf("stored after PUT: %+v %v", cn.Spec, err)
	}
	r = b.do("PUT", "/api/v1/computenetwork", specBody{Spec: spec, ResourceVersion: got.ResourceVersion}, true)
	if r.status != http.StatusConflict {
		t.Fatalf("stale PUT: %d %s", r.status, r.body)
	}
}

func TestOverviewAPI(t *testing.T) {
	u := newUI(t)
	b := u.loggedIn()
	ctx := context.Background()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-" + u.ns}}
	if _, err := u.c.kube.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.c.kube.CoreV1().Nodes().Delete(context.Background(), node.Name, metav1.DeleteOptions{}) })
	var o Overview
	r := b.do("GET", "/api/v1/overview", nil, false)
	r.json(t, &o)
	if r.status != http.StatusOK || !slices.ContainsFunc(o.Nodes, func(n NodeInfo) bool { return n.Name == node.Name }) ||
		len(o.Pools) == 0 || o.Pools[0].Name != "default" {
		t.Fatalf("overview: %d %s", r.status, r.body)
	}
}

func TestEnsurePool(t *testing.T) {
	u := newUI(t)
	ctx := context.Background()
	if err := u.srv.EnsurePool(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.c.en.AddressPools().Delete(context.Background(), PoolName, metav1.DeleteOptions{}) })
	p, err := u.c.en.AddressPools().Get(ctx, PoolName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p.Spec.Addresses, []v1.IPRange{"192.168.50.19"}) || p.Spec.AutoAssignEnabled() {
		t.Fatalf("pool spec %+v: want just the cluster VIP, not auto-assigned", p.Spec)
	}
	// An edited pool is put back.
	p.Spec.Addresses = []v1.IPRange{"192.168.50.18"}
	if _, err := u.c.en.AddressPools().Update(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := u.srv.EnsurePool(ctx); err != nil {
		t.Fatal(err)
	}
	p, _ = u.c.en.AddressPools().Get(ctx, PoolName, metav1.GetOptions{})
	if !slices.Equal(p.Spec.Addresses, []v1.IPRange{"192.168.50.19"}) {
		t.Fatalf("pool not restored: %+v", p.Spec)
	}
}

// TestOpenAPIMatchesRoutes keeps the served document and the routes in step.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	u := newUI(t)
	b := u.loggedIn()
	r := b.do("GET", "/api/v1/openapi.json", nil, false)
	if r.status != http.StatusOK {
		t.Fatalf("GET openapi.json: %d", r.status)
	}
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Servers []struct{ URL string }                `json:"servers"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	r.json(t, &doc)
	if !strings.HasPrefix(doc.OpenAPI, "3.") || len(doc.Servers) != 1 || doc.Servers[0].URL != "/api/v1" {
		t.Fatalf("openapi %q servers %+v", doc.OpenAPI, doc.Servers)
	}
	var documented, served []string
	for path, ops := range doc.Paths {
		for method := range ops {
			documented = append(documented, strings.ToUpper(method)+" /api/v1"+path)
		}
	}
	for _, rt := range u.srv.apiRoutes() {
		served = append(served, rt.method+" "+rt.path)
	}
	slices.Sort(documented)
	slices.Sort(served)
	if !slices.Equal(documented, served) {
		t.Fatalf("documented %v\nserved     %v", documented, served)
	}
}
