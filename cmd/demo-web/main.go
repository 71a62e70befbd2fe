// Command demo-web is the front end of the appliance's demo application: a guestbook
// and visit counter kept in Redis, reached by its Service name, that shows which
// replica (pod, pod IP, node) served each request.
//
//	demo-web [-listen :8080] [-redis redis:6379] [-timeout 2s] [-drain 2s]
//
// The pod, node and pod IP come from POD_NAME, NODE_NAME and POD_IP (downward API);
// REDIS_ADDR overrides the default database address.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

type config struct {
	Listen  string
	Redis   string
	Timeout time.Duration
	Drain   time.Duration
	ID      identity
}

func main() {
	if err := mainErr(); err != nil {
		fmt.Fprintln(os.Stderr, "demo-web:", err)
		os.Exit(1)
	}
}

func mainErr() error {
	cfg, err := parseFlags(os.Args[1:], os.Getenv)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("component", "demo-web")
	return run(ctx, cfg, log)
}

func parseFlags(args []string, getenv func(string) string) (config, error) {
	fs := flag.NewFlagSet("demo-web", flag.ContinueOnError)
	redis := getenv("REDIS_ADDR")
	if redis == "" {
		redis = "redis:6379"
	}
	var c config
	fs.StringVar(&c.Listen, "listen", ":8080", "HTTP listen address")
	fs.StringVar(&c.Redis, "redis", redis, "Redis address (host:port)")
	fs.DurationVar(&c.Timeout, "timeout", 2*time.Second, "timeout of one database command")
	fs.DurationVar(&c.Drain, "drain", 2*time.Second, "how long to keep serving after SIGTERM with readiness failing")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if _, _, err := net.SplitHostPort(c.Redis); err != nil {
		return c, fmt.Errorf("-redis %q: %w", c.Redis, err)
	}
	if c.Timeout <= 0 || c.Drain < 0 {
		return c, errors.New("-timeout must be positive and -drain not negative")
	}
	host, _ := os.Hostname()
	c.ID = identity{Pod: getenv("POD_NAME"), Node: getenv("NODE_NAME"), PodIP: getenv("POD_IP")}
	if c.ID.Pod == "" {
		c.ID.Pod = host
	}
	return c, nil
}

// run serves until ctx ends, then drains and shuts down.
func run(ctx context.Context, cfg config, log *slog.Logger) error {
	db := newRedisClient(cfg.Redis, cfg.Timeout)
	defer db.Close()
	a := &app{id: cfg.ID, store: redisStore{db}, log: log, now: time.Now}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: a.routes(), ReadHeaderTimeout: 5 * time.Second}
	log.Info("serving", "addr", ln.Addr().String(), "redis", cfg.Redis, "pod", cfg.ID.Pod, "node", cfg.ID.Node)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down", "drain", cfg.Drain)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.Drain+5*time.Second)
	defer cancel()
	if err := a.shutdown(sctx, srv, cfg.Drain); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
