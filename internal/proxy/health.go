package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// healthServers runs one HTTP server per healthCheckNodePort of the services with
// externalTrafficPolicy Local. Load balancers probe it to learn whether this node has
// local endpoints: 200 with a count when it has, 503 when not.
type healthServers struct {
	listen  func(port uint16) (net.Listener, error)
	log     *slog.Logger
	servers map[uint16]*healthServer
}

type healthServer struct {
	srv   *http.Server
	key   atomic.Pointer[ServiceKey]
	count atomic.Int64
}

type healthWant struct {
	key   ServiceKey
	count int
}

// sync makes the running servers match want. A port that fails to listen is logged
// and retried on the next sync.
func (h *healthServers) sync(want map[uint16]healthWant) {
	for port, s := range h.servers {
		if _, ok := want[port]; !ok {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = s.srv.Shutdown(ctx)
			cancel()
			delete(h.servers, port)
		}
	}
	for port, w := range want {
		s, ok := h.servers[port]
		if !ok {
			ln, err := h.listen(port)
			if err != nil {
				h.log.Error("health check server", "port", port, "service", w.key.String(), "err", err)
				continue
			}
			s = &healthServer{}
			s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second}
			go func() {
				if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
					h.log.Error("health check server stopped", "port", port, "err", err)
				}
			}()
			h.servers[port] = s
		}
		k := w.key
		s.key.Store(&k)
		s.count.Store(int64(w.count))
	}
}

func (h *healthServers) close() {
	h.sync(nil)
}

func (s *healthServer) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	key := s.key.Load()
	n := s.count.Load()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("X-Load-Balancing-Endpoint-Weight", fmt.Sprint(n))
	if n == 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
	} else {
		w.WriteHeader(http.StatusOK)
	}
	body := struct {
		Service struct {
			Namespace string `json:"namespace"`
			Name      string `json:"name"`
		} `json:"service"`
		LocalEndpoints int64 `json:"localEndpoints"`
	}{LocalEndpoints: n}
	body.Service.Namespace, body.Service.Name = key.Namespace, key.Name
	_ = json.NewEncoder(w).Encode(body)
}
