package webui

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// The admin password Secret: edgenet-system/edgenet-ui-admin, key "passwordHash" (bcrypt).
const (
	AdminSecretName = "edgenet-ui-admin"
	AdminSecretKey  = "passwordHash"
	// Passwords shorter than this are refused at first start; bcrypt reads at most 72 bytes.
	MinPasswordLen, MaxPasswordLen = 12, 72
)

var (
	errNoPassword  = errors.New("webui: no admin password set")
	errPasswordSet = errors.New("webui: the admin password is already set")
)

// HashPassword is the stored form of an admin password. cost 0 means bcrypt.DefaultCost.
func HashPassword(password string, cost int) ([]byte, error) {
	if err := checkPassword(password); err != nil {
		return nil, err
	}
	if cost == 0 {
		cost = bcrypt.DefaultCost
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if err != nil {
		return nil, fmt.Errorf("webui: hash password: %w", err)
	}
	return h, nil
}

func checkPassword(p string) error {
	switch {
	case len(p) < MinPasswordLen:
		return fmt.Errorf("the password must have at least %d characters", MinPasswordLen)
	case len(p) > MaxPasswordLen:
		return fmt.Errorf("the password must have at most %d bytes", MaxPasswordLen)
	}
	return nil
}

// AdminSecret is the Secret holding hash.
func AdminSecret(namespace string, hash []byte) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: AdminSecretName, Namespace: namespace,
			Labels: map[string]string{"app.kubernetes.io/name": "edgenet-ui"}},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{AdminSecretKey: hash},
	}
}

// passwordStore keeps the admin password hash.
type passwordStore interface {
	// hash returns errNoPassword when none is set.
	hash(ctx context.Context) ([]byte, error)
	// create stores the first hash; errPasswordSet when one exists.
	create(ctx context.Context, hash []byte) error
}

type secretStore struct {
	kube      kubernetes.Interface
	namespace string
}

func (s secretStore) hash(ctx context.Context) ([]byte, error) {
	sec, err := s.kube.CoreV1().Secrets(s.namespace).Get(ctx, AdminSecretName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, errNoPassword
	}
	if err != nil {
		return nil, fmt.Errorf("webui: read admin secret: %w", err)
	}
	h := sec.Data[AdminSecretKey]
	if len(h) == 0 {
		return nil, fmt.Errorf("webui: secret %s/%s has no %s", s.namespace, AdminSecretName, AdminSecretKey)
	}
	return h, nil
}

// create relies on the apiserver's create-only semantics: of two racing first starts exactly one wins.
func (s secretStore) create(ctx context.Context, hash []byte) error {
	_, err := s.kube.CoreV1().Secrets(s.namespace).Create(ctx, AdminSecret(s.namespace, hash), metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return errPasswordSet
	}
	if err != nil {
		return fmt.Errorf("webui: create admin secret: %w", err)
	}
	return nil
}

// session is one logged-in browser.
type session struct {
	id, csrf string
	created  time.Time
	lastSeen time.Time
}

// sessions is the in-memory session table: a restart logs everyone out, which a single-admin appliance UI
// can afford, and no session material is ever stored.
type sessions struct {
	mu     sync.Mutex
	m      map[string]*session
	idle   time.Duration // expiry after inactivity
	maxAge time.Duration // expiry however active
	max    int           // table size; the oldest session goes first
	now    func() time.Time
}

func newSessions(idle, maxAge time.Duration, now func() time.Time) *sessions {
	return &sessions{m: map[string]*session{}, idle: idle, maxAge: maxAge, max: 64, now: now}
}

func randomToken() string {
	b := make([]byte, 32) // 256 bits
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func (s *sessions) create() *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if len(s.m) >= s.max {
		var oldest *session
		for _, x := range s.m {
			if oldest == nil || x.created.Before(oldest.created) {
				oldest = x
			}
		}
		delete(s.m, oldest.id)
	}
	x := &session{id: randomToken(), csrf: randomToken(), created: now, lastSeen: now}
	s.m[x.id] = x
	return x
}

// get returns a live session and marks it used; expired ones are dropped.
func (s *sessions) get(id string) (session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	x, ok := s.m[id]
	if !ok {
		return session{}, false
	}
	now := s.now()
	if now.Sub(x.lastSeen) > s.idle || now.Sub(x.created) > s.maxAge {
		delete(s.m, id)
		return session{}, false
	}
	x.lastSeen = now
	return *x, true
}

func (s *sessions) delete(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
}

// expiry is when x ends if left idle.
func (s *sessions) expiry(x session) time.Time {
	idle, abs := x.lastSeen.Add(s.idle), x.created.Add(s.maxAge)
	if abs.Before(idle) {
		return abs
	}
	return idle
}

func tokensEqual(a, b string) bool {
	return len(a) > 0 && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// limiter counts failed logins per client address in a sliding window.
type limiter struct {
	mu     sync.Mutex
	fails  map[string][]time.Time
	max    int
	window time.Duration
	now    func() time.Time
}

func newLimiter(max int, window time.Duration, now func() time.Time) *limiter {
	return &limiter{fails: map[string][]time.Time{}, max: max, window: window, now: now}
}

// blocked says whether client has used up its failures, and when it may try again.
func (l *limiter) blocked(client string) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fs := l.prune(client)
	if len(fs) < l.max {
		return 0, false
	}
	return fs[0].Add(l.window).Sub(l.now()), true
}

func (l *limiter) fail(client string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.fails[client] = append(l.prune(client), l.now())
	// Bound memory against address spraying: forget clients whose window is over.
	if len(l.fails) > 4096 {
		for c := range l.fails {
			if len(l.prune(c)) == 0 {
				delete(l.fails, c)
			}
		}
	}
}

func (l *limiter) prune(client string) []time.Time {
	fs := l.fails[client]
	cut := l.now().Add(-l.window)
	i := 0
	for i < len(fs) && !fs[i].After(cut) {
		i++
	}
	fs = fs[i:]
	if len(fs) == 0 {
		delete(l.fails, client)
		return nil
	}
	l.fails[client] = fs
	return fs
}
