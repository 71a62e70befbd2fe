package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"
)

// A minimal Redis client: RESP2 requests as arrays of bulk strings, replies parsed into
// Go values. It keeps one connection and dials again after any error, so a database
// pod that moves (same Service name, new pod IP) costs one failed command.

// Limits keep a garbled or hostile reply from making us allocate without bound.
const (
	maxBulk  = 1 << 20 // bytes in one bulk string
	maxArray = 1 << 16 // elements in one array
	maxDepth = 8       // nesting of arrays
	maxLine  = 64 << 10
)

// redisError is an error reply ("-ERR ...") from the server: the connection is fine.
type redisError string

func (e redisError) Error() string { return "redis: " + string(e) }

// errNil is the null bulk string or array (a missing key).
var errNil = errors.New("redis: nil")

// readReply reads one reply: string for simple and bulk strings, int64 for integers,
// []any for arrays, redisError for error replies, nil for null.
func readReply(r *bufio.Reader) (any, error) { return readReplyDepth(r, 0) }

func readReplyDepth(r *bufio.Reader, depth int) (any, error) {
	line, err := readLine(r)
	if err != nil {
		return nil, err
	}
	if len(line) == 0 {
		return nil, errors.New("redis: empty reply line")
	}
	body := string(line[1:])
	switch line[0] {
	case '+':
		return body, nil
	case '-':
		return redisError(body), nil
	case ':':
		n, err := strconv.ParseInt(body, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("redis: bad integer reply %q", body)
		}
		return n, nil
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil || n < -1 || n > maxBulk {
			return nil, fmt.Errorf("redis: bad bulk length %q", body)
		}
		if n == -1 {
			return nil, nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, fmt.Errorf("redis: short bulk: %w", err)
		}
		if buf[n] != '\r' || buf[n+1] != '\n' {
			return nil, errors.New("redis: bulk string not terminated by CRLF")
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(body)
		if err != nil || n < -1 || n > maxArray {
			return nil, fmt.Errorf("redis: bad array length %q", body)
		}
		if n == -1 {
			return nil, nil
		}
		if depth >= maxDepth {
			return nil, errors.New("redis: arrays nested too deep")
		}
		out := make([]any, 0, min(n, 64))
		for range n {
			v, err := readReplyDepth(r, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	}
	return nil, fmt.Errorf("redis: unknown reply type %q", line[0])
}

// readLine reads up to CRLF, which it strips; a bare LF is a protocol error.
func readLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > maxLine {
			return nil, errors.New("redis: reply line too long")
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			return nil, err
		}
		break
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return nil, errors.New("redis: reply line not terminated by CRLF")
	}
	return line[:len(line)-2], nil
}

// writeCommand writes args as a RESP array of bulk strings.
func writeCommand(w *bufio.Writer, args ...string) error {
	fmt.Fprintf(w, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(w, "$%d\r\n%s\r\n", len(a), a)
	}
	return w.Flush()
}

// redisClient runs one command at a time over one connection.
type redisClient struct {
	addr    string
	timeout time.Duration // per command, dial included, unless ctx ends sooner

	mu   sync.Mutex
	conn net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
}

func newRedisClient(addr string, timeout time.Duration) *redisClient {
	return &redisClient{addr: addr, timeout: timeout}
}

// Do sends one command and returns its reply; an error reply comes back as a
// redisError error, a null reply as errNil.
func (c *redisClient) Do(ctx context.Context, args ...string) (any, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	deadline := time.Now().Add(c.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if c.conn == nil {
		d := net.Dialer{Deadline: deadline}
		conn, err := d.DialContext(ctx, "tcp", c.addr)
		if err != nil {
			return nil, fmt.Errorf("redis: dial %s: %w", c.addr, err)
		}
		c.conn, c.r, c.w = conn, bufio.NewReader(conn), bufio.NewWriter(conn)
	}
	c.conn.SetDeadline(deadline)
	v, err := c.roundTrip(args)
	if err != nil {
		// The stream may be out of step now: start over on the next command.
		c.conn.Close()
		c.conn = nil
		return nil, fmt.Errorf("redis: %s: %w", args[0], err)
	}
	switch v := v.(type) {
	case redisError:
		return nil, v
	case nil:
		return nil, errNil
	}
	return v, nil
}

func (c *redisClient) roundTrip(args []string) (any, error) {
	if err := writeCommand(c.w, args...); err != nil {
		return nil, err
	}
	return readReply(c.r)
}

// Close drops the connection.
func (c *redisClient) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return nil
	}
	err := c.conn.Close()
	c.conn = nil
	return err
}
