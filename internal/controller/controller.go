// Package controller is `edgenet controller`, the cluster-wide Deployment: under
// leader election (one active replica, a Lease in its namespace) it runs the
// EndpointSlice controller, the LoadBalancer IP controller and the ComputeNetwork
// status; every replica, leader or not, serves the ComputeNetwork admission webhook.
// It owns the EndpointSlices managed by endpointslice.edgenet.io, the status of
// Services of type LoadBalancer of our class and the Ready condition and nodeIPsUsed
// of the ComputeNetwork; nothing on any node.
package controller

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	v1 "edgenet.io/edgenet/api/v1alpha1"
)

// Part is one controller run by the leader.
type Part struct {
	Name string
	Run  func(ctx context.Context) error
}

// Config configures the controller.
type Config struct {
	Client    kubernetes.Interface
	Edgenet   *v1.Client
	Namespace string // where the leader Lease lives
	Identity  string // this replica (default: hostname)
	Parts     []Part // run by the leader
	// Serve run on every replica from the start, before and during the election (the
	// admission webhook): one failing ends Run.
	Serve []Part
	Log   *slog.Logger
	// Lease timings; defaults 15 s / 10 s / 2 s as kube-controller-manager.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
}

// Run campaigns for leadership and runs every part while leading. Losing the lease
// ends Run with an error, so the process restarts clean rather than running twice.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Identity == "" {
		h, err := os.Hostname()
		if err != nil {
			return err
		}
		cfg.Identity = h
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&cfg.LeaseDuration, 15*time.Second)
	def(&cfg.RenewDeadline, 10*time.Second)
	def(&cfg.RetryPeriod, 2*time.Second)
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, cfg.Namespace, "edgenet-controller",
		cfg.Client.CoreV1(), cfg.Client.CoordinationV1(), resourcelock.ResourceLockConfig{Identity: cfg.Identity})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var runErr error
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: lock, ReleaseOnCancel: true, Name: "edgenet-controller",
		LeaseDuration: cfg.LeaseDuration, RenewDeadline: cfg.RenewDeadline, RetryPeriod: cfg.RetryPeriod,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				cfg.Log.Info("leading", "identity", cfg.Identity)
				g, ctx := errgroup.WithContext(ctx)
				for _, p := range cfg.Parts {
					g.Go(func() error {
						if err := p.Run(ctx); err != nil {
							return fmt.Errorf("%s: %w", p.Name, err)
						}
						return nil
					})
				}
				runErr = g.Wait()
				cancel()
			},
			OnStoppedLeading: func() { cfg.Log.Info("stopped leading", "identity", cfg.Identity) },
		},
	})
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, p := range cfg.Serve {
		g.Go(func() error {
			if err := p.Run(gctx); err != nil {
				return fmt.Errorf("%s: %w", p.Name, err)
			}
			if gctx.Err() == nil {
				return fmt.Errorf("controller: %s ended", p.Name)
			}
			return nil
		})
	}
	g.Go(func() error {
		le.Run(gctx)
		cancel()
		if runErr != nil {
			return runErr
		}
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("controller: lost the leader lease")
	})
	return g.Wait()
}
