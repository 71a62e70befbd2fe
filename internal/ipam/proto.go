package ipam

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"
)

// The wire protocol between edgenet-cni and the agent: one JSON Request line per connection, one JSON Response
// line back. A unix socket keeps it node-local; an abstract one ("@name") is per network namespace, so on an
// appliance whose nodes share one file system each node's plugin still reaches its own agent.

// DefaultSocket is the agent's IPAM socket (abstract) unless configured otherwise.
const DefaultSocket = "@edgenet-ipam"

// Op is a request's operation.
type Op string

const (
	OpAdd    Op = "ADD"    // allocate (idempotent) the attachment's IP
	OpDel    Op = "DEL"    // release the attachment's IP; unknown attachments succeed
	OpCheck  Op = "CHECK"  // return the attachment's IP or KindNotFound
	OpGC     Op = "GC"     // release every IP whose attachment is not in Valid
	OpStatus Op = "STATUS" // ready to serve ADD?
)

// Attachment names a CNI attachment, as in the GC valid-attachments list.
type Attachment struct {
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifName"`
}

// Request is what the plugin asks.
type Request struct {
	Op Op `json:"op"`
	Handle
	// Valid lists the attachments GC must keep.
	Valid []Attachment `json:"valid,omitempty"`
}

// Response is the agent's answer; Error is set on failure.
type Response struct {
	IP       netip.Addr   `json:"ip,omitzero"`
	New      bool         `json:"new,omitempty"`
	Ready    bool         `json:"ready,omitempty"`
	Released []netip.Addr `json:"released,omitempty"`
	Error    *RemoteError `json:"error,omitempty"`
}

// Error kinds carried over the wire.
const (
	KindExhausted = "exhausted" // pod CIDR has no address left
	KindNotFound  = "notFound"  // CHECK: attachment holds no IP
	KindNotReady  = "notReady"  // agent not ready to allocate
	KindInvalid   = "invalid"   // malformed request
	KindInternal  = "internal"
)

// RemoteError is an error reported by the agent.
type RemoteError struct {
	Kind string `json:"kind"`
	Msg  string `json:"msg"`
}

func (e *RemoteError) Error() string { return e.Msg }

// UnavailableError says the agent could not be reached or is not ready; retrying later may succeed.
type UnavailableError struct {
	Socket string
	Err    error
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("ipam: edgenet agent at %s unavailable: %v", e.Socket, e.Err)
}
func (e *UnavailableError) Unwrap() error { return e.Err }

// IsUnavailable reports whether err means the agent is unreachable or not ready (transient).
func IsUnavailable(err error) bool {
	var ue *UnavailableError
	var re *RemoteError
	return errors.As(err, &ue) || (errors.As(err, &re) && re.Kind == KindNotReady)
}

// IsNotFound reports whether the agent said the attachment holds no IP.
func IsNotFound(err error) bool {
	var re *RemoteError
	return errors.As(err, &re) && re.Kind == KindNotFound
}

const maxRequest = 1 << 20

// Serve answers IPAM requests on l until ctx ends (then it closes l and returns nil). ready gates ADD and
// answers STATUS; nil means always ready.
func Serve(ctx context.Context, l net.Listener, a *Allocator, ready func() bool) error {
	if ready == nil {
		ready = func() bool { return true }
	}
	log := a.log.With("listener", l.Addr().String())
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("ipam: serve %s: %w", l.Addr(), err)
		}
		go serveConn(ctx, c, a, ready, log)
	}
}

func serveConn(ctx context.Context, c net.Conn, a *Allocator, ready func() bool, log *slog.Logger) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	line, err := bufio.NewReader(&limitReader{c, maxRequest}).ReadBytes('\n')
	var resp Response
	var req Request
	if err != nil {
		resp.Error = &RemoteError{Kind: KindInvalid, Msg: fmt.Sprintf("ipam: read request: %v", err)}
	} else if err := json.Unmarshal(line, &req); err != nil {
		resp.Error = &RemoteError{Kind: KindInvalid, Msg: fmt.Sprintf("ipam: decode request: %v", err)}
	} else {
		resp = handle(ctx, a, ready, req)
	}
	if resp.Error != nil {
		log.Warn("request failed", "op", req.Op, "handle", req.Handle.String(), "err", resp.Error.Msg)
	}
	data, _ := json.Marshal(resp)
	_, _ = c.Write(append(data, '\n'))
}

func handle(ctx context.Context, a *Allocator, ready func() bool, req Request) Response {
	fail := func(kind string, err error) Response {
		return Response{Error: &RemoteError{Kind: kind, Msg: err.Error()}}
	}
	switch req.Op {
	case OpStatus:
		return Response{Ready: ready()}
	case OpAdd:
		if !ready() {
			return fail(KindNotReady, errors.New("ipam: edgenet agent is not ready to allocate yet"))
		}
		if err := req.Handle.validate(); err != nil {
			return fail(KindInvalid, err)
		}
		ip, isNew, err := a.Allocate(ctx, req.Handle)
		if err != nil {
			kind := KindInternal
			if errors.Is(err, ErrExhausted) {
				kind = KindExhausted
			}
			return fail(kind, err)
		}
		return Response{IP: ip, New: isNew}
	case OpDel:
		if err := req.Handle.validate(); err != nil {
			return fail(KindInvalid, err)
		}
		freed, err := a.Release(req.Handle)
		if err != nil {
			return fail(KindInternal, err)
		}
		return Response{Released: freed}
	case OpCheck:
		if err := req.Handle.validate(); err != nil {
			return fail(KindInvalid, err)
		}
		ip, ok := a.Lookup(req.Handle)
		if !ok {
			return fail(KindNotFound, fmt.Errorf("ipam: attachment %s holds no IP", req.Handle.Key()))
		}
		return Response{IP: ip}
	case OpGC:
		valid := make(map[Attachment]bool, len(req.Valid))
		for _, v := range req.Valid {
			valid[v] = true
		}
		freed, err := a.GC(func(h Handle) bool { return valid[Attachment{h.ContainerID, h.IfName}] })
		if err != nil {
			return fail(KindInternal, err)
		}
		return Response{Released: freed}
	default:
		return fail(KindInvalid, fmt.Errorf("ipam: unknown op %q", req.Op))
	}
}

type limitReader struct {
	c net.Conn
	n int
}

func (r *limitReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, errors.New("request too large")
	}
	if len(p) > r.n {
		p = p[:r.n]
	}
	n, err := r.c.Read(p)
	r.n -= n
	return n, err
}

// Client talks to the agent's IPAM server.
type Client struct {
	// Socket is a unix socket path, or "@name" for an abstract socket.
	Socket string
	// Timeout bounds one request including the dial (default 30 s; a Claim may need the API server).
	Timeout time.Duration
	// DialTimeout bounds connecting (default 2 s).
	DialTimeout time.Duration
}

// Do sends req and returns the agent's response. Errors are *UnavailableError when the agent cannot be reached
// or does not answer, *RemoteError when it answered with an error.
func (c *Client) Do(ctx context.Context, req Request) (Response, error) {
	sock := c.Socket
	if sock == "" {
		sock = DefaultSocket
	}
	timeout, dialTimeout := c.Timeout, c.DialTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	if dialTimeout <= 0 {
		dialTimeout = 2 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	d := net.Dialer{Timeout: dialTimeout}
	conn, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		return Response{}, &UnavailableError{Socket: sock, Err: err}
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	data, err := json.Marshal(req)
	if err != nil {
		return Response{}, fmt.Errorf("ipam: encode request: %w", err)
	}
	if _, err := conn.Write(append(data, '\n')); err != nil {
		return Response{}, &UnavailableError{Socket: sock, Err: fmt.Errorf("send %s: %w", req.Op, err)}
	}
	line, err := bufio.NewReader(conn).ReadBytes('\n')
	if err != nil {
		return Response{}, &UnavailableError{Socket: sock, Err: fmt.Errorf("no answer to %s: %w", req.Op, err)}
	}
	var resp Response
	if err := json.Unmarshal(line, &resp); err != nil {
		return Response{}, fmt.Errorf("ipam: decode answer to %s: %w (%q)", req.Op, err, strings.TrimSpace(string(line)))
	}
	if resp.Error != nil {
		return resp, resp.Error
	}
	return resp, nil
}
