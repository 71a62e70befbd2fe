package main

import (
	"context"
	"encoding/json"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// identity says which replica answers: the pod, its IP and its node (downward API).
type identity struct {
	Pod   string `json:"pod"`
	Node  string `json:"node"`
	PodIP string `json:"podIP"`
}

// app serves the demo's pages and JSON API.
type app struct {
	id       identity
	store    store
	log      *slog.Logger
	now      func() time.Time
	draining atomic.Bool // set on shutdown: readiness fails while requests still work
}

// hitReply is GET /api/hit. hostname repeats pod so that generic probes that read
// "hostname" (the testapp's HTTP loop) can tell the replicas apart.
type hitReply struct {
	identity
	Hostname string `json:"hostname"`
	Visits   int64  `json:"visits"`
}

type entriesReply struct {
	identity
	Entries []entry `json:"entries"`
}

const pageEntries = 20

func (a *app) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", a.page)
	mux.HandleFunc("GET /api/hit", a.hit)
	mux.HandleFunc("GET /api/entries", a.listEntries)
	mux.HandleFunc("POST /entries", a.addEntry)
	mux.HandleFunc("POST /api/entries", a.addEntry)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		// Readiness is this process only: a database outage must not take every
		// front end out of the Service, the page says what is wrong instead.
		if a.draining.Load() {
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}

// fail answers a database error. The body is plain text on purpose: clients that
// expect the JSON of a success must not take an error for one.
func (a *app) fail(w http.ResponseWriter, r *http.Request, err error) {
	a.log.Warn("request failed", "path", r.URL.Path, "err", err)
	w.Header().Set("X-Served-By", a.id.Pod)
	http.Error(w, fmt.Sprintf("%s (pod %s on %s): database unavailable: %v", r.URL.Path, a.id.Pod, a.id.Node, err), http.StatusServiceUnavailable)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func (a *app) hit(w http.ResponseWriter, r *http.Request) {
	n, err := a.store.Visit(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, hitReply{identity: a.id, Hostname: a.id.Pod, Visits: n})
}

func (a *app) listEntries(w http.ResponseWriter, r *http.Request) {
	es, err := a.store.Entries(r.Context(), pageEntries)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, entriesReply{identity: a.id, Entries: es})
}

const maxFormBytes = 4 << 10

func (a *app) addEntry(w http.ResponseWriter, r *http.Request) {
	api := strings.HasPrefix(r.URL.Path, "/api/")
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	var raw string
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		var in struct {
			Text string `json:"text"`
		}
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			http.Error(w, "bad JSON: "+err.Error(), http.StatusBadRequest)
			return
		}
		raw = in.Text
	} else {
		if err := r.ParseForm(); err != nil {
			http.Error(w, "bad form: "+err.Error(), http.StatusBadRequest)
			return
		}
		raw = r.PostForm.Get("text")
	}
	text, err := checkEntryText(raw)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	e := entry{Text: text, Pod: a.id.Pod, Node: a.id.Node, Time: a.now().UTC()}
	if err := a.store.AddEntry(r.Context(), e); err != nil {
		a.fail(w, r, err)
		return
	}
	if api {
		writeJSON(w, http.StatusCreated, e)
		return
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

type pageData struct {
	ID      identity
	Visits  int64
	Entries []entry
	Err     string
}

func (a *app) page(w http.ResponseWriter, r *http.Request) {
	d := pageData{ID: a.id}
	code := http.StatusOK
	n, err := a.store.Visit(r.Context())
	if err == nil {
		d.Visits = n
		d.Entries, err = a.store.Entries(r.Context(), pageEntries)
	}
	if err != nil {
		a.log.Warn("page without database", "err", err)
		d.Err, code = err.Error(), http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	if err := pageTmpl.Execute(w, d); err != nil {
		a.log.Warn("render page", "err", err)
	}
}

// shutdown fails readiness first and keeps serving for drain, so that every node's
// service proxy drops this pod before its listener closes.
func (a *app) shutdown(ctx context.Context, srv *http.Server, drain time.Duration) error {
	a.draining.Store(true)
	select {
	case <-time.After(drain):
	case <-ctx.Done():
	}
	return srv.Shutdown(ctx)
}

var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>edgenet demo</title>
<style>body{font-family:sans-serif;max-width:40em;margin:2em auto}.who{background:#eef;padding:.5em 1em}.err{color:#a00}li small{color:#666}</style>
</head><body>
<h1>edgenet demo</h1>
<p class="who">Served by pod <b>{{.ID.Pod}}</b> ({{.ID.PodIP}}) on node <b>{{.ID.Node}}</b>.</p>
{{if .Err}}<p class="err">The database is unavailable: {{.Err}}</p>{{else}}
<p>Visits: <b id="visits">{{.Visits}}</b></p>{{end}}
<h2>Guestbook</h2>
<form method="post" action="/entries"><input name="text" maxlength="200" required autofocus> <button>Sign</button></form>
<ul>{{range .Entries}}<li>{{.Text}} <small>— {{.Pod}} on {{.Node}}, {{.Time.Format "2006-01-02 15:04:05 UTC"}}</small></li>{{end}}</ul>
</body></html>
`))
