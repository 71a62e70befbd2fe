package webui

import (
	"embed"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"golang.org/x/crypto/bcrypt"
	"k8s.io/client-go/kubernetes"

	v1 "edgenet.io/edgenet/api/v1alpha1"
	"edgenet.io/edgenet/internal/computenet"
)

//go:embed assets
var assets embed.FS

// Config is what the server needs. Kube and Edgenet are required.
type Config struct {
	Kube      kubernetes.Interface
	Edgenet   *v1.Client
	Namespace string       // of the admin Secret; default edgenet-system
	Log       *slog.Logger // with its component attribute; default slog.Default() with component=webui
	// IdleTimeout ends a session unused this long (default 30m); MaxSessionAge ends any session (default 12h).
	IdleTimeout, MaxSessionAge time.Duration
	// LoginFailures per LoginWindow per client address before logins answer 429 (default 5 per minute).
	LoginFailures int
	LoginWindow   time.Duration
	BcryptCost    int              // default bcrypt.DefaultCost
	Now           func() time.Time // default time.Now
}

// Server is the UI's HTTP handler.
type Server struct {
	cfg      Config
	log      *slog.Logger
	store    passwordStore
	sessions *sessions
	limiter  *limiter
	mux      *http.ServeMux
	// applied is signalled after a ComputeNetwork update, so the UI's pool follows the node range at once.
	applied chan struct{}
}

// route is one API or page route; the OpenAPI document is tested against the API ones.
type route struct {
	method, path string
	auth         bool // needs a session (and, for unsafe methods, the CSRF token)
	h            func(http.ResponseWriter, *http.Request, session)
}

// New returns the server for cfg.
func New(cfg Config) (*Server, error) {
	if cfg.Kube == nil || cfg.Edgenet == nil {
		return nil, errors.New("webui: Kube and Edgenet clients are required")
	}
	if cfg.Namespace == "" {
		cfg.Namespace = "edgenet-system"
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default().With("component", "webui")
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 30 * time.Minute
	}
	if cfg.MaxSessionAge == 0 {
		cfg.MaxSessionAge = 12 * time.Hour
	}
	if cfg.LoginFailures == 0 {
		cfg.LoginFailures = 5
	}
	if cfg.LoginWindow == 0 {
		cfg.LoginWindow = time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{
		cfg: cfg, log: cfg.Log,
		store:    secretStore{kube: cfg.Kube, namespace: cfg.Namespace},
		sessions: newSessions(cfg.IdleTimeout, cfg.MaxSessionAge, cfg.Now),
		limiter:  newLimiter(cfg.LoginFailures, cfg.LoginWindow, cfg.Now),
		mux:      http.NewServeMux(),
		applied:  make(chan struct{}, 1),
	}
	for _, r := range s.apiRoutes() {
		s.mux.Handle(r.method+" "+r.path, s.api(r))
	}
	static, err := fs.Sub(assets, "assets")
	if err != nil {
		return nil, err
	}
	s.mux.Handle("GET /assets/", http.StripPrefix("/assets/", http.FileServerFS(static)))
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	s.mux.HandleFunc("GET /{$}", s.page(""))
	s.mux.HandleFunc("GET /login", s.page("login.html"))
	s.mux.HandleFunc("GET /setup", s.page("setup.html"))
	s.mux.HandleFunc("GET /overview", s.page("overview.html"))
	s.mux.HandleFunc("GET /network", s.page("network.html"))
	return s, nil
}

func (s *Server) apiRoutes() []route {
	return []route{
		{"GET", "/api/v1/session", false, s.getSession},
		{"POST", "/api/v1/setup", false, s.postSetup},
		{"POST", "/api/v1/login", false, s.postLogin},
		{"POST", "/api/v1/logout", true, s.postLogout},
		{"GET", "/api/v1/openapi.json", true, s.getOpenAPI},
		{"GET", "/api/v1/computenetwork", true, s.getComputeNetwork},
		{"PUT", "/api/v1/computenetwork", true, s.putComputeNetwork},
		{"POST", "/api/v1/computenetwork/validate", true, s.postValidate},
		{"POST", "/api/v1/computenetwork/preview", true, s.postPreview},
		{"GET", "/api/v1/overview", true, s.getOverview},
	}
}

const (
	sessionCookie = "__Host-edgenet-session"
	csrfHeader    = "X-CSRF-Token"
	csrfFormField = "csrf_token"
	maxBody       = 64 << 10
)

// ServeHTTP adds the security headers to every answer.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Strict-Transport-Security", "max-age=31536000")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	s.mux.ServeHTTP(w, r)
}

// currentSession is the request's live session, if any.
func (s *Server) currentSession(r *http.Request) (session, bool) {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return session{}, false
	}
	return s.sessions.get(c.Value)
}

// page serves an HTML page; without a session it sends the browser to login (or to first start).
func (s *Server) page(file string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		_, loggedIn := s.currentSession(r)
		_, err := s.store.hash(r.Context())
		needSetup := errors.Is(err, errNoPassword)
		if err != nil && !needSetup {
			s.log.Error("read admin password", "err", err)
			http.Error(w, "the admin password cannot be read; see the UI's log", http.StatusServiceUnavailable)
			return
		}
		switch {
		case needSetup && file != "setup.html":
			http.Redirect(w, r, "/setup", http.StatusSeeOther)
			return
		case !needSetup && file == "setup.html":
			http.Redirect(w, r, "/login", http.StatusSeeOther)
			return
		case loggedIn && (file == "login.html" || file == ""):
			http.Redirect(w, r, "/overview", http.StatusSeeOther)
			return
		case !loggedIn && file != "login.html" && file != "setup.html":
			http.Redirect(w, r, "/login", http.StatusSeeOther)
			return
		}
		b, err := assets.ReadFile("assets/" + file)
		if err != nil {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(b)
	}
}

// api wraps an API route: JSON errors, session, CSRF and same-origin checks.
func (s *Server) api(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		unsafe := r.Method != http.MethodGet && r.Method != http.MethodHead
		if unsafe {
			if !sameOrigin(r) {
				writeError(w, http.StatusForbidden, "cross-origin request refused", nil)
				return
			}
			r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		}
		var sess session
		if rt.auth {
			var ok bool
			if sess, ok = s.currentSession(r); !ok {
				writeError(w, http.StatusUnauthorized, "log in first", nil)
				return
			}
			if unsafe && !s.csrfOK(r, sess) {
				writeError(w, http.StatusForbidden, "missing or wrong CSRF token (header "+csrfHeader+")", nil)
				return
			}
		}
		rt.h(w, r, sess)
	})
}

// csrfOK accepts the token in the X-CSRF-Token header (JSON) or the csrf_token field (forms).
func (s *Server) csrfOK(r *http.Request, sess session) bool {
	if tokensEqual(r.Header.Get(csrfHeader), sess.csrf) {
		return true
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct == "application/x-www-form-urlencoded" {
		return tokensEqual(r.PostFormValue(csrfFormField), sess.csrf)
	}
	return false
}

// sameOrigin refuses requests a browser marks as coming from another site. Browsers send Origin on every
// unsafe request; non-browser clients send none and need the session cookie and CSRF token anyway.
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site == "cross-site" || site == "same-site" {
		return false
	}
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

// apiError is the body of every API error.
type apiError struct {
	Error struct {
		Status  int          `json:"status"`
		Message string       `json:"message"`
		Fields  []FieldError `json:"fields,omitempty"`
	} `json:"error"`
}

// FieldError is computenet.FieldError as the API spells it.
type FieldError struct {
	Field  string `json:"field"`
	Value  string `json:"value,omitempty"`
	Reason string `json:"reason"`
}

func apiFields(fes computenet.FieldErrors) []FieldError {
	out := make([]FieldError, len(fes))
	for i, e := range fes {
		out[i] = FieldError(e)
	}
	return out
}

func writeError(w http.ResponseWriter, status int, msg string, fields computenet.FieldErrors) {
	var e apiError
	e.Error.Status, e.Error.Message = status, msg
	if len(fields) > 0 {
		e.Error.Fields = apiFields(fields)
	}
	writeJSON(w, status, e)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// decode reads a JSON body strictly; on failure it has answered 400 or 415.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, "send application/json", nil)
		return false
	}
	d := json.NewDecoder(r.Body)
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "bad JSON body: "+err.Error(), nil)
		return false
	}
	if _, err := d.Token(); err != io.EOF {
		writeError(w, http.StatusBadRequest, "bad JSON body: trailing data", nil)
		return false
	}
	return true
}

func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func (s *Server) setSessionCookie(w http.ResponseWriter, sess *session) {
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: sess.id, Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode,
		MaxAge: int(s.cfg.MaxSessionAge / time.Second),
	})
}

// sessionInfo is GET /api/v1/session.
type sessionInfo struct {
	Authenticated bool       `json:"authenticated"`
	SetupRequired bool       `json:"setupRequired"`
	CSRFToken     string     `json:"csrfToken,omitempty"`
	ExpiresAt     *time.Time `json:"expiresAt,omitempty"`
}

func (s *Server) getSession(w http.ResponseWriter, r *http.Request, _ session) {
	var info sessionInfo
	_, err := s.store.hash(r.Context())
	switch {
	case errors.Is(err, errNoPassword):
		info.SetupRequired = true
	case err != nil:
		s.log.Error("read admin password", "err", err)
		writeError(w, http.StatusServiceUnavailable, "the admin password cannot be read", nil)
		return
	}
	if sess, ok := s.currentSession(r); ok {
		exp := s.sessions.expiry(sess)
		info.Authenticated, info.CSRFToken, info.ExpiresAt = true, sess.csrf, &exp
	}
	writeJSON(w, http.StatusOK, info)
}

type passwordBody struct {
	Password string `json:"password"`
}

func (s *Server) postSetup(w http.ResponseWriter, r *http.Request, _ session) {
	var b passwordBody
	if !decode(w, r, &b) {
		return
	}
	if err := checkPassword(b.Password); err != nil {
		writeError(w, http.StatusUnprocessableEntity, err.Error(),
			computenet.FieldErrors{{Field: "password", Reason: err.Error()}})
		return
	}
	// Cheap refusal before the expensive hash; create below is what decides a race.
	if _, err := s.store.hash(r.Context()); !errors.Is(err, errNoPassword) {
		writeError(w, http.StatusConflict, "the admin password is already set: log in", nil)
		return
	}
	h, err := HashPassword(b.Password, s.cfg.BcryptCost)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error(), nil)
		return
	}
	if err := s.store.create(r.Context(), h); errors.Is(err, errPasswordSet) {
		writeError(w, http.StatusConflict, "the admin password is already set: log in", nil)
		return
	} else if err != nil {
		s.log.Error("store admin password", "err", err)
		writeError(w, http.StatusServiceUnavailable, "the admin password cannot be stored", nil)
		return
	}
	s.log.Info("admin password set at first start", "client", clientAddr(r))
	sess := s.sessions.create()
	s.setSessionCookie(w, sess)
	writeJSON(w, http.StatusCreated, sessionInfo{Authenticated: true, CSRFToken: sess.csrf})
}

func (s *Server) postLogin(w http.ResponseWriter, r *http.Request, _ session) {
	client := clientAddr(r)
	if wait, blocked := s.limiter.blocked(client); blocked {
		w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())+1))
		writeError(w, http.StatusTooManyRequests, "too many failed logins: try again later", nil)
		return
	}
	var b passwordBody
	if !decode(w, r, &b) {
		return
	}
	h, err := s.store.hash(r.Context())
	if errors.Is(err, errNoPassword) {
		writeError(w, http.StatusConflict, "no admin password is set yet: set one at /setup", nil)
		return
	} else if err != nil {
		s.log.Error("read admin password", "err", err)
		writeError(w, http.StatusServiceUnavailable, "the admin password cannot be read", nil)
		return
	}
	if bcrypt.CompareHashAndPassword(h, []byte(b.Password)) != nil {
		s.limiter.fail(client)
		s.log.Warn("failed login", "client", client)
		writeError(w, http.StatusUnauthorized, "wrong password", nil)
		return
	}
	sess := s.sessions.create()
	s.setSessionCookie(w, sess)
	s.log.Info("login", "client", client)
	writeJSON(w, http.StatusOK, sessionInfo{Authenticated: true, CSRFToken: sess.csrf})
}

func (s *Server) postLogout(w http.ResponseWriter, r *http.Request, sess session) {
	s.sessions.delete(sess.id)
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", Secure: true, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, MaxAge: -1})
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) getOpenAPI(w http.ResponseWriter, r *http.Request, _ session) {
	b, err := assets.ReadFile("assets/openapi.json")
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error(), nil)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

// Handler is the server as an http.Handler.
func (s *Server) Handler() http.Handler { return s }

// appliedChanges is signalled after each applied change.
func (s *Server) appliedChanges() <-chan struct{} { return s.applied }

func (s *Server) notifyApplied() {
	select {
	case s.applied <- struct{}{}:
	default:
	}
}
