package endpoints

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/util/retry"

	"edgenet.io/edgenet/internal/testenv"
)

// TestAgainstAPIServer runs the controller against a real apiserver. There is no
// scheduler nor kubelet: pods are created with spec.nodeName and their status (IPs,
// Ready) is written through the status subresource by the test.
func TestAgainstAPIServer(t *testing.T) {
	env := testenv.Start(t)
	h := &harness{cs: env.Client}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	go func() {
		done <- Run(ctx, Config{Clientset: env.Client, BatchWindow: 100 * time.Millisecond, Logger: log})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	for _, n := range []struct{ name, zone string }{{"n1", "zone-a"}, {"n2", "zone-b"}} {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.name, Labels: map[string]string{corev1.LabelTopologyZone: n.zone}}}
		if _, err := env.Client.CoreV1().Nodes().Create(context.Background(), node, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("new service gets slices; pod add and delete; service delete", h.testLifecycle)
	t.Run("readiness flips", h.testReadiness)
	t.Run("terminating pod", h.testTerminating)
	t.Run("pod on a node not yet known", h.testUnknownNode)
	t.Run("target port rename and per-pod port numbers", h.testPortRename)
	t.Run("more than 100 endpoints", h.testManyEndpoints)
	t.Run("selectorless service untouched", h.testSelectorless)
	t.Run("burst of 100 pod updates", h.testBurst)
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

type harness struct {
	cs kubernetes.Interface
}

func (h *harness) namespace(t *testing.T, name string) string {
	t.Helper()
	ctx := context.Background()
	if _, err := h.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// No service account controller runs here; pod admission wants the default one.
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}
	if _, err := h.cs.CoreV1().ServiceAccounts(name).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return name
}

type podSpec struct {
	name, node string
	ip         string
	labels     map[string]string
	ports      []corev1.ContainerPort
	finalizer  bool
	notReady   bool
}

// createPod creates a pod and then sets its status as a kubelet would.
func (h *harness) createPod(t testing.TB, ns string, s podSpec) {
	t.Helper()
	ctx := context.Background()
	if s.node == "" {
		s.node = "n1"
	}
	if s.labels == nil {
		s.labels = map[string]string{"app": "web"}
	}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: s.name, Labels: s.labels},
		Spec: corev1.PodSpec{
			NodeName:                     s.node,
			AutomountServiceAccountToken: ptrTo(false),
			Containers:                   []corev1.Container{{Name: "c", Image: "example.invalid/none", Ports: s.ports}},
		},
	}
	if s.finalizer {
		p.Finalizers = []string{"edgenet.io/test"}
	}
	p, err := h.cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Status.Phase = corev1.PodRunning
	p.Status.PodIP = s.ip
	p.Status.PodIPs = []corev1.PodIP{{IP: s.ip}}
	p.Status.Conditions = []corev1.PodCondition{readyCondition(!s.notReady)}
	if _, err := h.cs.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func readyCondition(ready bool) corev1.PodCondition {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	return corev1.PodCondition{Type: corev1.PodReady, Status: st, LastTransitionTime: metav1.Now()}
}

func (h *harness) setReady(t testing.TB, ns, name string, ready bool) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		p, err := h.cs.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		p.Status.Conditions = []corev1.PodCondition{readyCondition(ready)}
		_, err = h.cs.CoreV1().Pods(ns).UpdateStatus(context.Background(), p, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func (h *harness) deletePod(t testing.TB, ns, name string) {
	t.Helper()
	err := h.cs.CoreV1().Pods(ns).Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: ptrTo(int64(0))})
	if err != nil {
		t.Fatal(err)
	}
}

func (h *harness) createService(t testing.TB, ns, name string, selector map[string]string, target intstr.IntOrString) *corev1.Service {
	t.Helper()
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"team": "net"}},
		Spec: corev1.ServiceSpec{
			Selector: selector,
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: target}},
		},
	}
	s, err := h.cs.CoreV1().Services(ns).Create(context.Background(), s, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (h *harness) listSlices(t testing.TB, ns, svc string) []discoveryv1.EndpointSlice {
	t.Helper()
	l, err := h.cs.DiscoveryV1().EndpointSlices(ns).List(context.Background(), metav1.ListOptions{
		LabelSelector: discoveryv1.LabelServiceName + "=" + svc + "," + discoveryv1.LabelManagedBy + "=" + ManagedBy,
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(l.Items, func(a, b discoveryv1.EndpointSlice) int { return strings.Compare(a.Name, b.Name) })
	return l.Items
}

// endpointLines describes the endpoints of all slices, one line each, sorted.
func endpointLines(sl []discoveryv1.EndpointSlice) []string {
	var out []string
	for _, s := range sl {
		for _, e := range s.Endpoints {
			out = append(out, describePorts(s.Ports)+" "+describeEndpoint(e))
		}
	}
	slices.Sort(out)
	return out
}

// waitFor polls the Service's slices until check returns nil.
func (h *harness) waitFor(t testing.TB, ns, svc string, check func([]discoveryv1.EndpointSlice) error) []discoveryv1.EndpointSlice {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		sl := h.listSlices(t, ns, svc)
		err := check(sl)
		if err == nil {
			return sl
		}
		if time.Now().After(deadline) {
			t.Fatalf("slices of %s/%s: %v\nhave:\n%s", ns, svc, err, strings.Join(endpointLines(sl), "\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (h *harness) waitLines(t testing.TB, ns, svc string, want ...string) []discoveryv1.EndpointSlice {
	t.Helper()
	slices.Sort(want)
	return h.waitFor(t, ns, svc, func(sl []discoveryv1.EndpointSlice) error {
		if got := endpointLines(sl); !slices.Equal(got, want) {
			return fmt.Errorf("want:\n%s", strings.Join(want, "\n"))
		}
		return nil
	})
}

func webPorts(http, web int32) []corev1.ContainerPort {
	return []corev1.ContainerPort{{Name: "http", ContainerPort: http, Protocol: corev1.ProtocolTCP}, {Name: "web", ContainerPort: web, Protocol: corev1.ProtocolTCP}}
}

func (h *harness) testLifecycle(t *testing.T) {
	ns := h.namespace(t, "lifecycle")
	h.createPod(t, ns, podSpec{name: "a", ip: "10.2.0.1"})
	h.createPod(t, ns, podSpec{name: "b", ip: "10.2.0.2", node: "n2"})
	h.createPod(t, ns, podSpec{name: "other", ip: "10.2.0.9", labels: map[string]string{"app": "other"}})
	svc := h.createService(t, ns, "web", map[string]string{"app": "web"}, intstr.FromInt32(8080))

	sl := h.waitLines(t, ns, "web",
		"http=8080/TCP a 10.2.0.1 [ready,serving] node=n1 zone=zone-a",
		"http=8080/TCP b 10.2.0.2 [ready,serving] node=n2 zone=zone-b")
	s := sl[0]
	if len(sl) != 1 || s.AddressType != discoveryv1.AddressTypeIPv4 || !strings.HasPrefix(s.Name, "web-") {
		t.Errorf("slices %d, first %s of type %s", len(sl), s.Name, s.AddressType)
	}
	wantLabels := map[string]string{"team": "net", discoveryv1.LabelServiceName: "web", discoveryv1.LabelManagedBy: ManagedBy}
	if !maps.Equal(s.Labels, wantLabels) {
		t.Errorf("labels %v, want %v", s.Labels, wantLabels)
	}
	if o := s.OwnerReferences; len(o) != 1 || o[0].UID != svc.UID || o[0].Kind != "Service" || !deref(o[0].Controller) {
		t.Errorf("owner references %+v", o)
	}
	if ts, err := time.Parse(time.RFC3339Nano, s.Annotations[corev1.EndpointsLastChangeTriggerTime]); err != nil || ts.IsZero() {
		t.Errorf("trigger time annotation %q: %v", s.Annotations[corev1.EndpointsLastChangeTriggerTime], err)
	}
	if tr := s.Endpoints[0].TargetRef; tr.Kind != "Pod" || tr.Namespace != ns || tr.UID == "" {
		t.Errorf("targetRef %+v", tr)
	}

	h.createPod(t, ns, podSpec{name: "c", ip: "10.2.0.3"})
	h.waitLines(t, ns, "web",
		"http=8080/TCP a 10.2.0.1 [ready,serving] node=n1 zone=zone-a",
		"http=8080/TCP b 10.2.0.2 [ready,serving] node=n2 zone=zone-b",
		"http=8080/TCP c 10.2.0.3 [ready,serving] node=n1 zone=zone-a")
	h.deletePod(t, ns, "a")
	sl = h.waitLines(t, ns, "web",
		"http=8080/TCP b 10.2.0.2 [ready,serving] node=n2 zone=zone-b",
		"http=8080/TCP c 10.2.0.3 [ready,serving] node=n1 zone=zone-a")
	if len(sl) != 1 || sl[0].Name != s.Name {
		t.Errorf("slices %d, first %s; want the same single slice %s", len(sl), sl[0].Name, s.Name)
	}

	// Someone deletes our slice: it comes back.
	if err := h.cs.DiscoveryV1().EndpointSlices(ns).Delete(context.Background(), s.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	h.waitFor(t, ns, "web", func(sl []discoveryv1.EndpointSlice) error {
		if len(sl) != 1 || sl[0].Name == s.Name || len(sl[0].Endpoints) != 2 {
			return fmt.Errorf("want one new slice with 2 endpoints, have %d slices", len(sl))
		}
		return nil
	})

	// The Service goes: so do its slices (no garbage collector runs here).
	if err := h.cs.CoreV1().Services(ns).Delete(context.Background(), "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	h.waitFor(t, ns, "web", func(sl []discoveryv1.EndpointSlice) error {
		if len(sl) != 0 {
			return fmt.Errorf("%d slices left", len(sl))
		}
		return nil
	})
}

func (h *harness) testReadiness(t *testing.T) {
	ns := h.namespace(t, "readiness")
	h.createPod(t, ns, podSpec{name: "a", ip: "10.3.0.1"})
	h.createPod(t, ns, podSpec{name: "b", ip: "10.3.0.2", notReady: true})
	h.createService(t, ns, "web", map[string]string{"app": "web"}, intstr.FromInt32(8080))
	h.waitLines(t, ns, "web",
		"http=8080/TCP a 10.3.0.1 [ready,serving] node=n1 zone=zone-a",
		"http=8080/TCP b 10.3.0.2 [] node=n1 zone=zone-a")
	h.setReady(t, ns, "a", false)
	h.setReady(t, ns, "b", true)
	h.waitLines(t, ns, "web",
		"http=8080/TCP a 10.3.0.1 [] node=n1 zone=zone-a",
		"http=8080/TCP b 10.3.0.2 [ready,serving] node=n1 zone=zone-a")
	h.setReady(t, ns, "a", true)
	h.waitLines(t, ns, "web",
		"http=8080/TCP a 10.3.0.1 [ready,serving] node=n1 zone=zone-a",
		"http=8080/TCP b 10.3.0.2 [ready,serving] node=n1 zone=zone-a")

	// publishNotReadyAddresses: ready whatever the pod says.
	h.setReady(t, ns, "b", false)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		s, err := h.cs.CoreV1().Services(ns).Get(context.Background(), "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		s.Spec.PublishNotReadyAddresses = true
		_, err = h.cs.CoreV1().Services(ns).Update(context.Background(), s, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	h.waitLines(t, ns, "web",
		"http=8080/TCP a 10.3.0.1 [ready,serving] node=n1 zone=zone-a",
		"http=8080/TCP b 10.3.0.2 [ready] node=n1 zone=zone-a")
}

func (h *harness) testTerminating(t *testing.T) {
	ns := h.namespace(t, "terminating")
	h.createPod(t, ns, podSpec{name: "a", ip: "10.4.0.1"})
	h.createPod(t, ns, podSpec{name: "b", ip: "10.4.0.2", finalizer: true})
	h.createService(t, ns, "web", map[string]string{"app": "web"}, intstr.FromInt32(8080))
	h.waitLines(t, ns, "web",
		"http=8080/TCP a 10.4.0.1 [ready,serving] node=n1 zone=zone-a",
		"http=8080/TCP b 10.4.0.2 [ready,serving] node=n1 zone=zone-a")

	// A graceful delete sets deletionTimestamp; the finalizer keeps the pod anyway.
	if err := h.cs.CoreV1().Pods(ns).Delete(context.Background(), "b", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	h.waitLines(t, ns, "web",
		"http=8080/TCP a 10.4.0.1 [ready,serving] node=n1 zone=zone-a",
		"http=8080/TCP b 10.4.0.2 [serving,terminating] node=n1 zone=zone-a")
	h.setReady(t, ns, "b", false)
	h.waitLines(t, ns, "web",
		"http=8080/TCP a 10.4.0.1 [ready,serving] node=n1 zone=zone-a",
		"http=8080/TCP b 10.4.0.2 [terminating] node=n1 zone=zone-a")

	// The kubelet's part: drop the finalizer and delete for good.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		p, err := h.cs.CoreV1().Pods(ns).Get(context.Background(), "b", metav1.GetOptions{})
		if err != nil {
			return err
		}
		p.Finalizers = nil
		_, err = h.cs.CoreV1().Pods(ns).Update(context.Background(), p, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.cs.CoreV1().Pods(ns).Delete(context.Background(), "b", metav1.DeleteOptions{GracePeriodSeconds: ptrTo(int64(0))}); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	h.waitLines(t, ns, "web", "http=8080/TCP a 10.4.0.1 [ready,serving] node=n1 zone=zone-a")
}

func (h *harness) testUnknownNode(t *testing.T) {
	ns := h.namespace(t, "unknown-node")
	h.createPod(t, ns, podSpec{name: "a", ip: "10.5.0.1"})
	h.createPod(t, ns, podSpec{name: "b", ip: "10.5.0.2", node: "n3"})
	h.createService(t, ns, "web", map[string]string{"app": "web"}, intstr.FromInt32(8080))
	h.waitLines(t, ns, "web", "http=8080/TCP a 10.5.0.1 [ready,serving] node=n1 zone=zone-a")

	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n3", Labels: map[string]string{corev1.LabelTopologyZone: "zone-c"}}}
	if _, err := h.cs.CoreV1().Nodes().Create(context.Background(), node, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.waitLines(t, ns, "web",
		"http=8080/TCP a 10.5.0.1 [ready,serving] node=n1 zone=zone-a",
		"http=8080/TCP b 10.5.0.2 [ready,serving] node=n3 zone=zone-c")

	// A zone relabel reaches the endpoints.
	node, err := h.cs.CoreV1().Nodes().Get(context.Background(), "n3", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	node.Labels[corev1.LabelTopologyZone] = "zone-d"
	if _, err := h.cs.CoreV1().Nodes().Update(context.Background(), node, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.waitLines(t, ns, "web",
		"http=8080/TCP a 10.5.0.1 [ready,serving] node=n1 zone=zone-a",
		"http=8080/TCP b 10.5.0.2 [ready,serving] node=n3 zone=zone-d")
}

func (h *harness) testPortRename(t *testing.T) {
	ns := h.namespace(t, "ports")
	h.createPod(t, ns, podSpec{name: "a", ip: "10.6.0.1", ports: webPorts(8080, 8081)})
	h.createPod(t, ns, podSpec{name: "b", ip: "10.6.0.2", ports: webPorts(8080, 9091)})
	h.createPod(t, ns, podSpec{name: "c", ip: "10.6.0.3", ports: webPorts(8080, 8081)})
	h.createService(t, ns, "web", map[string]string{"app": "web"}, intstr.FromString("http"))
	before := h.waitLines(t, ns, "web",
		"http=8080/TCP a 10.6.0.1 [ready,serving] node=n1 zone=zone-a",
		"http=8080/TCP b 10.6.0.2 [ready,serving] node=n1 zone=zone-a",
		"http=8080/TCP c 10.6.0.3 [ready,serving] node=n1 zone=zone-a")
	if len(before) != 1 {
		t.Fatalf("%d slices, want 1", len(before))
	}

	// targetPort "http" → "web": the pods disagree on its number, so two slices.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		s, err := h.cs.CoreV1().Services(ns).Get(context.Background(), "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		s.Spec.Ports[0].TargetPort = intstr.FromString("web")
		_, err = h.cs.CoreV1().Services(ns).Update(context.Background(), s, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	after := h.waitLines(t, ns, "web",
		"http=8081/TCP a 10.6.0.1 [ready,serving] node=n1 zone=zone-a",
		"http=9091/TCP b 10.6.0.2 [ready,serving] node=n1 zone=zone-a",
		"http=8081/TCP c 10.6.0.3 [ready,serving] node=n1 zone=zone-a")
	if len(after) != 2 {
		t.Errorf("%d slices, want 2", len(after))
	}
	if !slices.ContainsFunc(after, func(s discoveryv1.EndpointSlice) bool { return s.Name == before[0].Name }) {
		t.Errorf("slice %s not reused for the new port set", before[0].Name)
	}
	// A pod with neither name gets an endpoint without ports, in a third slice.
	h.createPod(t, ns, podSpec{name: "d", ip: "10.6.0.4"})
	h.waitLines(t, ns, "web",
		"http=8081/TCP a 10.6.0.1 [ready,serving] node=n1 zone=zone-a",
		"http=9091/TCP b 10.6.0.2 [ready,serving] node=n1 zone=zone-a",
		"http=8081/TCP c 10.6.0.3 [ready,serving] node=n1 zone=zone-a",
		"(no ports) d 10.6.0.4 [ready,serving] node=n1 zone=zone-a")
}

// createPods creates pods name-000.. in parallel.
func (h *harness) createPods(t testing.TB, ns, prefix string, from, to int, labels map[string]string) {
	t.Helper()
	var wg sync.WaitGroup
	next := make(chan int)
	for range 8 {
		wg.Go(func() {
			for i := range next {
				h.createPod(t, ns, podSpec{
					name: fmt.Sprintf("%s-%03d", prefix, i), ip: fmt.Sprintf("10.7.%d.%d", i/250, i%250+1),
					labels: labels,
				})
			}
		})
	}
	for i := from; i < to; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
}

func sliceSizes(sl []discoveryv1.EndpointSlice) []int {
	var out []int
	for _, s := range sl {
		out = append(out, len(s.Endpoints))
	}
	slices.Sort(out)
	return out
}

func (h *harness) testManyEndpoints(t *testing.T) {
	ns := h.namespace(t, "many")
	h.createPods(t, ns, "keep", 0, 50, map[string]string{"app": "web", "keep": "yes"})
	h.createPods(t, ns, "drop", 50, 250, map[string]string{"app": "web"})
	h.createService(t, ns, "web", map[string]string{"app": "web"}, intstr.FromInt32(8080))
	sl := h.waitFor(t, ns, "web", func(sl []discoveryv1.EndpointSlice) error {
		if got := sliceSizes(sl); !slices.Equal(got, []int{50, 100, 100}) {
			return fmt.Errorf("slice sizes %v, want [50 100 100]", got)
		}
		return nil
	})
	if got := len(endpointLines(sl)); got != 250 {
		t.Errorf("%d endpoints, want 250", got)
	}

	// Scale down to 50: one slice, the surplus deleted.
	err := h.cs.CoreV1().Pods(ns).DeleteCollection(context.Background(),
		metav1.DeleteOptions{GracePeriodSeconds: ptrTo(int64(0))}, metav1.ListOptions{LabelSelector: "keep!=yes"})
	if err != nil {
		t.Fatal(err)
	}
	sl = h.waitFor(t, ns, "web", func(sl []discoveryv1.EndpointSlice) error {
		if got := sliceSizes(sl); !slices.Equal(got, []int{50}) {
			return fmt.Errorf("slice sizes %v, want [50]", got)
		}
		return nil
	})
	for _, line := range endpointLines(sl) {
		if !strings.Contains(line, " keep-") {
			t.Errorf("unexpected endpoint %s", line)
		}
	}

	// Pods arriving while the Service exists fill slices in batches: still within
	// the bound of 4/3 of the slices needed.
	h.createPods(t, ns, "more", 250, 400, map[string]string{"app": "web"})
	h.waitFor(t, ns, "web", func(sl []discoveryv1.EndpointSlice) error {
		sizes := sliceSizes(sl)
		total := 0
		for _, n := range sizes {
			total += n
		}
		if total != 200 || len(sizes) > 3 || sizes[len(sizes)-1] > 100 {
			return fmt.Errorf("slice sizes %v, want 200 endpoints in at most 3 slices of at most 100", sizes)
		}
		return nil
	})
}

func (h *harness) testSelectorless(t *testing.T) {
	ns := h.namespace(t, "selectorless")
	ctx := context.Background()
	h.createPod(t, ns, podSpec{name: "a", ip: "10.8.0.1"})
	h.createService(t, ns, "manual", nil, intstr.FromInt32(8080))
	user := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: "manual-1", Labels: map[string]string{
			discoveryv1.LabelServiceName: "manual", discoveryv1.LabelManagedBy: "someone",
		}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"192.0.2.10"}}},
	}
	user, err := h.cs.DiscoveryV1().EndpointSlices(ns).Create(ctx, user, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// A Service with a selector that loses it: our slices go, the user's stay.
	h.createService(t, ns, "web", map[string]string{"app": "web"}, intstr.FromInt32(8080))
	h.waitLines(t, ns, "web", "http=8080/TCP a 10.8.0.1 [ready,serving] node=n1 zone=zone-a")
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		s, err := h.cs.CoreV1().Services(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		s.Spec.Selector = nil
		_, err = h.cs.CoreV1().Services(ns).Update(ctx, s, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	h.waitFor(t, ns, "web", func(sl []discoveryv1.EndpointSlice) error {
		if len(sl) != 0 {
			return fmt.Errorf("%d slices of ours left", len(sl))
		}
		return nil
	})
	if got := h.listSlices(t, ns, "manual"); len(got) != 0 {
		t.Errorf("%d slices of ours for the selectorless service", len(got))
	}
	got, err := h.cs.DiscoveryV1().EndpointSlices(ns).Get(ctx, "manual-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.ResourceVersion != user.ResourceVersion {
		t.Errorf("user slice written: resourceVersion %s → %s", user.ResourceVersion, got.ResourceVersion)
	}
}

// testBurst flips the readiness of 100 pods as fast as the apiserver takes it and
// counts the slice writes the controller makes meanwhile.
func (h *harness) testBurst(t *testing.T) {
	ns := h.namespace(t, "burst")
	h.createPods(t, ns, "p", 0, 100, nil)
	h.createService(t, ns, "web", map[string]string{"app": "web"}, intstr.FromInt32(8080))
	settled := h.waitFor(t, ns, "web", func(sl []discoveryv1.EndpointSlice) error {
		if got := sliceSizes(sl); !slices.Equal(got, []int{100}) {
			return fmt.Errorf("slice sizes %v", got)
		}
		return nil
	})
	w, err := h.cs.DiscoveryV1().EndpointSlices(ns).Watch(context.Background(), metav1.ListOptions{
		ResourceVersion: settled[0].ResourceVersion,
		LabelSelector:   discoveryv1.LabelServiceName + "=web",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	start := time.Now()
	var wg sync.WaitGroup
	next := make(chan int)
	for range 4 {
		wg.Go(func() {
			for i := range next {
				h.setReady(t, ns, fmt.Sprintf("p-%03d", i), false)
			}
		})
	}
	for i := range 100 {
		next <- i
	}
	close(next)
	wg.Wait()
	updates := time.Since(start)
	h.waitFor(t, ns, "web", func(sl []discoveryv1.EndpointSlice) error {
		for _, line := range endpointLines(sl) {
			if strings.Contains(line, "[ready") {
				return fmt.Errorf("still ready: %s", line)
			}
		}
		return nil
	})
	converged := time.Since(start)
	time.Sleep(500 * time.Millisecond) // late writes would count too

	writes := 0
	for drained := false; !drained; {
		select {
		case ev := <-w.ResultChan():
			if ev.Type == watch.Added || ev.Type == watch.Modified || ev.Type == watch.Deleted {
				writes++
			}
		case <-time.After(300 * time.Millisecond):
			drained = true
		}
	}
	t.Logf("100 pod updates in %v, slices converged after %v with %d slice writes", updates, converged, writes)
	if writes == 0 || writes > 20 {
		t.Errorf("%d slice writes for 100 pod updates, want 1..20", writes)
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	for name, cfg := range map[string]Config{
		"no clientset":       {},
		"too many endpoints": {Clientset: fakeClientset(), MaxEndpointsPerSlice: 1001},
		"negative maximum":   {Clientset: fakeClientset(), MaxEndpointsPerSlice: -1},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := Run(ctx, cfg)
		cancel()
		if err == nil || !strings.HasPrefix(err.Error(), "endpoints: ") {
			t.Errorf("%s: err %v, want an endpoints: error", name, err)
		}
	}
}

func fakeClientset() kubernetes.Interface { return fake.NewClientset() }
