package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCheckEntryText(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{in: "hello", want: "hello"},
		{in: "  padded\t", want: "padded"},
		{in: "Grüße aus Köln 👋", want: "Grüße aus Köln 👋"},
		{in: strings.Repeat("é", 200), want: strings.Repeat("é", 200)},
		{in: strings.Repeat("é", 201), err: "201 characters"},
		{in: "", err: "empty"},
		{in: " \t\n", err: "empty"},
		{in: "a\x00b", err: "control character"},
		{in: "two\nlines", err: "control character"},
		{in: "bad \xff utf8", err: "UTF-8"},
	}
	for _, tt := range tests {
		got, err := checkEntryText(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("checkEntryText(%q) = %q, %v; want error containing %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("checkEntryText(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

// startRedis runs Debian's redis-server on a free loopback port with its data in dir.
func startRedis(t *testing.T, dir string, port int) (addr string, stop func()) {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server is not installed (make deps installs it): %v", err)
	}
	if port == 0 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}
	cmd := exec.Command(bin, "--bind", "127.0.0.1", "--port", fmt.Sprint(port), "--dir", dir,
		"--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no", "--logfile", filepath.Join(dir, "log"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cmd.Process.Kill()
			cmd.Wait()
		}
	}
	t.Cleanup(stop)
	addr = fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return addr, stop
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "log"))
			t.Fatalf("redis-server did not listen on %s: %v\n%s", addr, err, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The store against a real Redis: counting, the guestbook's order and length, data
// kept across a restart (append-only file), and the client reconnecting by itself.
func TestRedisStore(t *testing.T) {
	dir := t.TempDir()
	addr, stop := startRedis(t, dir, 0)
	ctx := context.Background()
	c := newRedisClient(addr, time.Second)
	defer c.Close()
	s := redisStore{c}

	for want := int64(1); want <= 3; want++ {
		if n, err := s.Visit(ctx); err != nil || n != want {
			t.Fatalf("Visit = %d, %v; want %d", n, err, want)
		}
	}
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for i := range keepEntries + 5 {
		if err := s.AddEntry(ctx, entry{Text: fmt.Sprint("entry ", i), Pod: "web-a", Node: "node1", Time: t0}); err != nil {
			t.Fatal(err)
		}
	}
	es, err := s.Entries(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 3 || es[0].Text != "entry 104" || es[2].Text != "entry 102" || es[0].Pod != "web-a" || !es[0].Time.Equal(t0) {
		t.Fatalf("newest 3 entries: %+v", es)
	}
	if n, err := c.Do(ctx, "LLEN", keyEntries); err != nil || n != int64(keepEntries) {
		t.Fatalf("guestbook length %v, %v; want trimmed to %d", n, err, keepEntries)
	}
	if _, err := c.Do(ctx, "GET", "no-such-key"); !errors.Is(err, errNil) {
		t.Fatalf("GET of a missing key: %v, want errNil", err)
	}
	var re redisError
	if _, err := c.Do(ctx, "NOSUCHCOMMAND"); !errors.As(err, &re) {
		t.Fatalf("unknown command: %v, want a redisError", err)
	}

	// Restart the server on the same port and data dir: the first command may fail
	// on the dead connection, the next one dials again and finds the data.
	stop()
	_, port, _ := net.SplitHostPort(addr)
	var p int
	fmt.Sscan(port, &p)
	startRedis(t, dir, p)
	s.Visit(ctx)
	n, err := s.Visit(ctx)
	if err != nil || n < 4 {
		t.Fatalf("Visit after restart = %d, %v; want the count to go on from 3", n, err)
	}
	if es, err := s.Entries(ctx, 1); err != nil || len(es) != 1 || es[0].Text != "entry 104" {
		t.Fatalf("entries after restart: %+v, %v", es, err)
	}
}

// A server that accepts and never answers costs one command its timeout, not a hang.
func TestRedisClientTimeout(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	c := newRedisClient(l.Addr().String(), 200*time.Millisecond)
	defer c.Close()
	start := time.Now()
	_, err = c.Do(context.Background(), "PING")
	if err == nil || time.Since(start) > 2*time.Second {
		t.Fatalf("PING to a silent server: %v after %s", err, time.Since(start))
	}
	if c.conn != nil {
		t.Fatal("the timed-out connection was kept")
	}
}
