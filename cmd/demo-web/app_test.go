package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// fakeStore keeps the data in memory; err, when set, fails every call.
type fakeStore struct {
	visits  int64
	entries []entry // newest first
	err     error
}

func (f *fakeStore) Visit(context.Context) (int64, error) {
	if f.err != nil {
		return 0, f.err
	}
	f.visits++
	return f.visits, nil
}

func (f *fakeStore) AddEntry(_ context.Context, e entry) error {
	if f.err != nil {
		return f.err
	}
	f.entries = append([]entry{e}, f.entries...)
	return nil
}

func (f *fakeStore) Entries(_ context.Context, n int) ([]entry, error) {
	if f.err != nil {
		return nil, f.err
	}
	return f.entries[:min(n, len(f.entries))], nil
}

var testID = identity{Pod: "web-7d9f-abcde", Node: "node2", PodIP: "172.27.0.66"}

func newTestApp(st *fakeStore) *app {
	return &app{id: testID, store: st, log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		now: func() time.Time { return time.Date(2026, 11, 25, 16, 0, 0, 0, time.UTC) }}
}

func do(h http.Handler, method, target, ctype, body string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	if ctype != "" {
		r.Header.Set("Content-Type", ctype)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestHitSaysWhichReplica(t *testing.T) {
	st := &fakeStore{visits: 41}
	h := newTestApp(st).routes()
	w := do(h, "GET", "/api/hit", "", "")
	if w.Code != 200 || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("GET /api/hit: %d %s", w.Code, w.Body)
	}
	var got map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"pod": testID.Pod, "hostname": testID.Pod, "node": "node2", "podIP": "172.27.0.66", "visits": 42.0}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (reply %s)", k, got[k], v, w.Body)
		}
	}
}

func TestAddEntry(t *testing.T) {
	tests := []struct {
		name, path, ctype, body string
		code                    int
		stored                  string // text stored, "" for nothing
	}{
		{name: "form redirects to the page", path: "/entries", ctype: "application/x-www-form-urlencoded",
			body: url.Values{"text": {"  hello from the site  "}}.Encode(), code: 303, stored: "hello from the site"},
		{name: "API form answers the entry", path: "/api/entries", ctype: "application/x-www-form-urlencoded",
			body: "text=hi", code: 201, stored: "hi"},
		{name: "API JSON", path: "/api/entries", ctype: "application/json", body: `{"text":"json hi"}`, code: 201, stored: "json hi"},
		{name: "empty text", path: "/entries", ctype: "application/x-www-form-urlencoded", body: "text=+", code: 400},
		{name: "no text field", path: "/api/entries", ctype: "application/x-www-form-urlencoded", body: "other=1", code: 400},
		{name: "too long", path: "/api/entries", ctype: "application/json", body: `{"text":"` + strings.Repeat("x", 201) + `"}`, code: 400},
		{name: "control character", path: "/api/entries", ctype: "application/json", body: `{"text":"a\u0007b"}`, code: 400},
		{name: "bad JSON", path: "/api/entries", ctype: "application/json", body: `{"text":`, code: 400},
		{name: "body over the limit", path: "/api/entries", ctype: "application/x-www-form-urlencoded",
			body: "text=" + strings.Repeat("x", 5000), code: 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := &fakeStore{}
			w := do(newTestApp(st).routes(), "POST", tt.path, tt.ctype, tt.body)
			if w.Code != tt.code {
				t.Fatalf("POST %s: %d %s, want %d", tt.path, w.Code, w.Body, tt.code)
			}
			if tt.stored == "" {
				if len(st.entries) != 0 {
					t.Fatalf("bad input stored %+v", st.entries)
				}
				return
			}
			if len(st.entries) != 1 || st.entries[0].Text != tt.stored || st.entries[0].Pod != testID.Pod || st.entries[0].Node != "node2" {
				t.Fatalf("stored %+v, want %q by %s", st.entries, tt.stored, testID.Pod)
			}
			if tt.code == 303 && w.Header().Get("Location") != "/" {
				t.Errorf("redirect to %q", w.Header().Get("Location"))
			}
		})
	}
}

func TestPageShowsReplicaCounterAndEscapedEntries(t *testing.T) {
	st := &fakeStore{visits: 9, entries: []entry{{Text: "<script>alert(1)</script>", Pod: "web-x", Node: "node1"}}}
	w := do(newTestApp(st).routes(), "GET", "/", "", "")
	body := w.Body.String()
	if w.Code != 200 {
		t.Fatalf("GET /: %d", w.Code)
	}
	for _, want := range []string{testID.Pod, testID.PodIP, "node2", `id="visits">10<`, "&lt;script&gt;alert(1)&lt;/script&gt;", "web-x on node1"} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "<script>") {
		t.Error("page carries an unescaped entry")
	}
	if w := do(newTestApp(st).routes(), "GET", "/nope", "", ""); w.Code != 404 {
		t.Errorf("GET /nope: %d, want 404", w.Code)
	}
}

// Without the database every data path answers 503 in plain text naming the replica,
// and readiness stays up: the front ends are fine, the page says what is wrong.
func TestDatabaseDown(t *testing.T) {
	st := &fakeStore{err: errors.New("redis: dial redis:6379: connection refused")}
	h := newTestApp(st).routes()
	for _, tc := range []struct{ method, path string }{{"GET", "/api/hit"}, {"GET", "/api/entries"}, {"POST", "/api/entries"}} {
		w := do(h, tc.method, tc.path, "application/x-www-form-urlencoded", "text=x")
		if w.Code != 503 || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/plain") || !strings.Contains(w.Body.String(), testID.Pod) {
			t.Errorf("%s %s: %d %q %s", tc.method, tc.path, w.Code, w.Header().Get("Content-Type"), w.Body)
		}
		if json.Valid(w.Body.Bytes()) {
			t.Errorf("%s %s: error body is valid JSON", tc.method, tc.path)
		}
	}
	w := do(h, "GET", "/", "", "")
	if w.Code != 503 || !strings.Contains(w.Body.String(), "database is unavailable") || !strings.Contains(w.Body.String(), testID.Pod) {
		t.Errorf("GET / without database: %d %s", w.Code, w.Body)
	}
	if w := do(h, "GET", "/readyz", "", ""); w.Code != 200 {
		t.Errorf("readyz without database: %d", w.Code)
	}
}

// On shutdown readiness fails at once while requests are still served for the drain.
func TestShutdownDrains(t *testing.T) {
	a := newTestApp(&fakeStore{})
	srv := httptest.NewServer(a.routes())
	defer srv.Close()
	done := make(chan error, 1)
	go func() { done <- a.shutdown(context.Background(), srv.Config, 500*time.Millisecond) }()
	time.Sleep(100 * time.Millisecond)
	get := func(p string) int {
		resp, err := srv.Client().Get(srv.URL + p)
		if err != nil {
			t.Fatalf("GET %s while draining: %v", p, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if c := get("/readyz"); c != 503 {
		t.Errorf("readyz while draining: %d, want 503", c)
	}
	if c := get("/api/hit"); c != 200 {
		t.Errorf("api/hit while draining: %d, want 200", c)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestParseFlags(t *testing.T) {
	env := map[string]string{"POD_NAME": "web-1", "NODE_NAME": "node1", "POD_IP": "172.27.0.5", "REDIS_ADDR": "redis.demo.svc.cluster.local:6379"}
	c, err := parseFlags(nil, func(k string) string { return env[k] })
	if err != nil || c.Redis != "redis.demo.svc.cluster.local:6379" || c.ID != (identity{"web-1", "node1", "172.27.0.5"}) {
		t.Fatalf("%+v, %v", c, err)
	}
	for _, bad := range [][]string{{"-redis", "noport"}, {"-timeout", "0s"}, {"extra"}, {"-nosuchflag"}} {
		if _, err := parseFlags(bad, func(string) string { return "" }); err == nil {
			t.Errorf("parseFlags(%q) accepted", bad)
		}
	}
}
