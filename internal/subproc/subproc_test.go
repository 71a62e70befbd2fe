package subproc

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestStartLogStop(t *testing.T) {
	log := filepath.Join(t.TempDir(), "sh.log")
	// Ignores SIGTERM: Stop must fall back to SIGKILL after the grace period.
	p, err := Start("sh", log, "sh", "-c", "trap '' TERM; echo hello; echo oops >&2; sleep 60")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(log)
		if strings.Contains(string(b), "hello") && strings.Contains(string(b), "oops") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("log holds %q", b)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if p.Exited() {
		t.Fatal("exited early")
	}
	start := time.Now()
	p.Stop(200 * time.Millisecond)
	if !p.Exited() || time.Since(start) < 200*time.Millisecond {
		t.Errorf("Stop: exited %v after %v", p.Exited(), time.Since(start))
	}

	// A second run appends to the same log.
	q, err := Start("echo", log, "sh", "-c", "echo again")
	if err != nil {
		t.Fatal(err)
	}
	<-q.Done()
	if b, _ := os.ReadFile(log); !strings.Contains(string(b), "hello") || !strings.Contains(string(b), "again") {
		t.Errorf("log after a second run: %q", b)
	}
	if _, err := Start("missing", log, "/nonexistent/binary"); err == nil {
		t.Error("no error for a missing binary")
	}
}
