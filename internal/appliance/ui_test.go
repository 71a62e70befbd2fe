package appliance

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"edgenet.io/edgenet/internal/webui"
)

func TestBootstrapUIPassword(t *testing.T) {
	ctx := context.Background()
	c := fake.NewClientset()
	path := filepath.Join(t.TempDir(), UIPasswordFile)
	created, err := bootstrapUIPassword(ctx, c, path)
	if err != nil || !created {
		t.Fatalf("first bootstrap: created %v, %v", created, err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	password := strings.TrimSpace(string(b))
	if len(password) < webui.MinPasswordLen {
		t.Fatalf("generated password %q is too short", password)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("password file mode %v, want 0600", fi.Mode().Perm())
	}
	sec, err := c.CoreV1().Secrets(SystemNamespace).Get(ctx, webui.AdminSecretName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h := sec.Data[webui.AdminSecretKey]
	if bcrypt.CompareHashAndPassword(h, []byte(password)) != nil {
		t.Fatal("the stored hash does not match the password in the file")
	}
	if strings.Contains(string(h), password) {
		t.Fatal("the Secret holds the plaintext")
	}
	// A second run keeps the existing password and its file.
	created, err = bootstrapUIPassword(ctx, c, path)
	if err != nil || created {
		t.Fatalf("second bootstrap: created %v, %v", created, err)
	}
	if b2, _ := os.ReadFile(path); string(b2) != string(b) {
		t.Fatal("the second bootstrap rewrote the password file")
	}
}
