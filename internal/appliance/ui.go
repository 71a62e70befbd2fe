package appliance

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"edgenet.io/edgenet/internal/webui"
)

// UIPasswordFile is where up leaves the UI's generated admin password, under the state dir.
const UIPasswordFile = "ui-admin-password"

// bootstrapUIPassword gives the web UI a random admin password: its bcrypt hash goes into the UI's Secret
// (create-only, like the UI's own first-start page), the plaintext into path, readable by root only. A Secret
// that exists already is kept and nothing is written.
func bootstrapUIPassword(ctx context.Context, c kubernetes.Interface, path string) (bool, error) {
	if _, err := c.CoreV1().Secrets(SystemNamespace).Get(ctx, webui.AdminSecretName, metav1.GetOptions{}); err == nil {
		return false, nil
	} else if !apierrors.IsNotFound(err) {
		return false, fmt.Errorf("ui password: %w", err)
	}
	raw := make([]byte, 18)
	if _, err := rand.Read(raw); err != nil {
		return false, err
	}
	password := base64.RawURLEncoding.EncodeToString(raw) // 24 characters, 144 bits
	hash, err := webui.HashPassword(password, 0)
	if err != nil {
		return false, err
	}
	// The file first: a Secret whose password nobody has would need the Secret deleted by hand.
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return false, err
	}
	if err := os.WriteFile(path, []byte(password+"\n"), 0o600); err != nil {
		return false, fmt.Errorf("ui password: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil { // WriteFile keeps the mode of an existing file
		return false, err
	}
	if _, err := c.CoreV1().Secrets(SystemNamespace).Create(ctx, webui.AdminSecret(SystemNamespace, hash), metav1.CreateOptions{}); err != nil {
		os.Remove(path)
		if apierrors.IsAlreadyExists(err) {
			return false, nil
		}
		return false, fmt.Errorf("ui password: %w", err)
	}
	return true, nil
}
