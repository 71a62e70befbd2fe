package controller

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"edgenet.io/edgenet/internal/testenv"
)

// One apiserver for both: starting it dominates the run time.
func TestRunAgainstAPIServer(t *testing.T) {
	env := testenv.Start(t)
	t.Run("ServeOnEveryReplicaLeaderPartsOnOne", func(t *testing.T) { testServeOnEveryReplica(t, env) })
	t.Run("ServeFailureEndsRun", func(t *testing.T) { testServeFailureEndsRun(t, env) })
}

// Two replicas: both run the Serve parts (the webhook) at once, while only the
// leader runs Parts.
func testServeOnEveryReplica(t *testing.T, env *testenv.Env) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := env.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "edgenet-system"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var serving, leading atomic.Int32
	part := func(n *atomic.Int32) Part {
		return Part{Name: "count", Run: func(ctx context.Context) error {
			n.Add(1)
			<-ctx.Done()
			n.Add(-1)
			return nil
		}}
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 2)
	for _, id := range []string{"replica-a", "replica-b"} {
		go func() {
			done <- Run(runCtx, Config{Client: env.Client, Namespace: "edgenet-system", Identity: id,
				Log: slog.New(slog.DiscardHandler), Serve: []Part{part(&serving)}, Parts: []Part{part(&leading)},
				LeaseDuration: 2 * time.Second, RenewDeadline: time.Second, RetryPeriod: 200 * time.Millisecond})
		}()
	}
	deadline := time.Now().Add(20 * time.Second)
	for serving.Load() != 2 || leading.Load() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("serving on %d replicas, leading on %d; want 2 and 1", serving.Load(), leading.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Stable: the other replica does not lead too.
	time.Sleep(3 * time.Second)
	if serving.Load() != 2 || leading.Load() != 1 {
		t.Fatalf("serving on %d replicas, leading on %d; want 2 and 1", serving.Load(), leading.Load())
	}
	stop()
	for range 2 {
		if err := <-done; err != nil {
			t.Errorf("Run after stop: %v", err)
		}
	}
	if serving.Load() != 0 || leading.Load() != 0 {
		t.Errorf("after stop: serving %d, leading %d", serving.Load(), leading.Load())
	}
}

// A Serve part that fails ends Run with its error.
func testServeFailureEndsRun(t *testing.T, env *testenv.Env) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := Run(ctx, Config{Client: env.Client, Namespace: "default", Identity: "x", Log: slog.New(slog.DiscardHandler),
		Serve: []Part{{Name: "webhook", Run: func(context.Context) error { return context.DeadlineExceeded }}}})
	if err == nil || ctx.Err() != nil {
		t.Fatalf("Run = %v (ctx %v), want the part's error before the deadline", err, ctx.Err())
	}
	t.Logf("Run: %v", err)
}
