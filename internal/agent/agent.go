// Package agent is `edgenet agent`, the per-node DaemonSet. It owns the node's side of
// the network; today it watches its own Node and serves /healthz and /readyz.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Config is the agent's configuration.
type Config struct {
	NodeName   string
	HealthAddr string
	Client     kubernetes.Interface
	Log        *slog.Logger
}

// Run runs the agent until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	if cfg.NodeName == "" {
		return errors.New("agent: node name is empty (set NODE_NAME)")
	}
	a := &agent{cfg: cfg}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.watchNode(ctx) })
	g.Go(func() error { return a.serveHealth(ctx) })
	return g.Wait()
}

type agent struct {
	cfg Config
	// lastSeen is when the apiserver last answered for our Node (unix nanoseconds).
	lastSeen atomic.Int64
}

// readyWindow is how stale the apiserver contact may be before the agent reports
// not ready.
const readyWindow = 15 * time.Second

func (a *agent) ready() error {
	seen := a.lastSeen.Load()
	if seen == 0 {
		return errors.New("node " + a.cfg.NodeName + " not seen yet")
	}
	if age := time.Since(time.Unix(0, seen)); age > readyWindow {
		return fmt.Errorf("apiserver not reached for %s", age.Round(time.Second))
	}
	return nil
}

func (a *agent) watchNode(ctx context.Context) error {
	t := time.NewTicker(3 * time.Second)
	defer t.Stop()
	for {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := a.cfg.Client.CoreV1().Nodes().Get(c, a.cfg.NodeName, metav1.GetOptions{})
		cancel()
		if err == nil {
			if a.lastSeen.Swap(time.Now().UnixNano()) == 0 {
				a.cfg.Log.Info("node seen", "node", a.cfg.NodeName)
			}
		} else {
			a.cfg.Log.Warn("get node", "node", a.cfg.NodeName, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (a *agent) serveHealth(ctx context.Context) error {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := a.ready(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	l, err := net.Listen("tcp", a.cfg.HealthAddr)
	if err != nil {
		return fmt.Errorf("agent: health listener: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("agent: health server: %w", err)
	}
	return nil
}
