package image

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

const testRef = "docker.io/edgenet/edgenet:test"

// untar extracts the tar file at path into dir, refusing names that leave dir.
func untar(t *testing.T, r io.Reader, dir string) []string {
	t.Helper()
	var names []string
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		dst := filepath.Join(dir, h.Name)
		if !strings.HasPrefix(dst, filepath.Clean(dir)+"/") {
			t.Fatalf("tar entry %q leaves the archive", h.Name)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, 0o755); err != nil {
				t.Fatal(err)
			}
		case tar.TypeSymlink:
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(h.Linkname, dst); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				t.Fatal(err)
			}
			f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(f, tr); err != nil {
				t.Fatal(err)
			}
			f.Close()
		}
	}
}

// TestOCIArchive writes the edgenet image (the test binary stands for bin/edgenet) as
// `make image` does and reads it back the ways registry clients do.
func TestOCIArchive(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	spec, err := Edgenet(testRef, self)
	if err != nil {
		t.Fatal(err)
	}
	img, err := Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	want, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "edgenet-image.oci.tar")
	if err := WriteOCIArchive(img, testRef, out); err != nil {
		t.Fatal(err)
	}

	// As an OCI image layout (skopeo oci-archive:, containerd).
	dir := t.TempDir()
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	entries := untar(t, f, dir)
	f.Close()
	for _, e := range []string{"oci-layout", "index.json", "manifest.json", "blobs/sha256/" + want.Hex} {
		if !contains(entries, e) {
			t.Errorf("archive lacks %s: %q", e, entries)
		}
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(idx); err != nil {
		t.Fatalf("OCI layout index: %v", err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || im.Manifests[0].Digest != want ||
		im.Manifests[0].Annotations["io.containerd.image.name"] != testRef ||
		im.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "test" {
		t.Errorf("index.json manifests: %+v, want one of %s named %s", im.Manifests, want, testRef)
	}
	ociImg, err := idx.Image(want)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := ociImg.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != "amd64" || strings.Join(cf.Config.Entrypoint, " ") != "/edgenet" {
		t.Errorf("config: os %s arch %s entrypoint %q", cf.OS, cf.Architecture, cf.Config.Entrypoint)
	}

	// As a Docker archive (crane push FILE, docker load): the same image.
	dockerImg, err := tarball.ImageFromPath(out, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(dockerImg); err != nil {
		t.Fatalf("Docker archive view: %v", err)
	}
	// Its manifest is rebuilt with Docker media types; config and layers are shared.
	for _, get := range []func(v1.Image) (v1.Hash, error){v1.Image.ConfigName, layerDigest} {
		a, err1 := get(dockerImg)
		b, err2 := get(ociImg)
		if err1 != nil || err2 != nil || a != b {
			t.Errorf("Docker archive view differs from the OCI view: %s vs %s (%v, %v)", a, b, err1, err2)
		}
	}

	// The filesystem: the binary, the CNI link, nft with its libraries, and nft runs
	// from it alone.
	root := t.TempDir()
	files := untar(t, mutate.Extract(ociImg), root)
	b, err := os.ReadFile(filepath.Join(root, "edgenet"))
	if err != nil || !bytes.Equal(b, mustRead(t, self)) {
		t.Errorf("/edgenet is not the binary given: %v", err)
	}
	if l, err := os.Readlink(filepath.Join(root, "edgenet-cni")); err != nil || l != "edgenet" {
		t.Errorf("/edgenet-cni -> %q, %v; want -> edgenet", l, err)
	}
	for p := range spec.Files {
		if !contains(files, p) {
			t.Errorf("image lacks %s", p)
		}
	}
	if !contains(files, "usr/sbin/nft") {
		t.Errorf("image lacks usr/sbin/nft: %q", files)
	}
	if os.Geteuid() == 0 {
		out, err := exec.Command("chroot", root, "/usr/sbin/nft", "--version").CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), "nftables v") {
			t.Errorf("nft in the image: %v: %s", err, out)
		}
	}

	// Pushed to a registry (in memory, on loopback) and pulled back unchanged.
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	dst, err := name.ParseReference(strings.TrimPrefix(srv.URL, "http://")+"/edgenet/edgenet:test", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(dst, ociImg); err != nil {
		t.Fatalf("push: %v", err)
	}
	pulled, err := remote.Image(dst)
	if err != nil {
		t.Fatalf("pull: %v", err)
	}
	if d, _ := pulled.Digest(); d != want {
		t.Errorf("pulled digest %s, want %s", d, want)
	}
	if err := validate.Image(pulled); err != nil {
		t.Errorf("pulled image: %v", err)
	}
}

func TestDockerArchive(t *testing.T) {
	self, _ := os.Executable()
	out := filepath.Join(t.TempDir(), "img.tar")
	spec := Spec{Ref: testRef, Files: map[string]string{"edgenet": self}, Entrypoint: []string{"/edgenet"}}
	if err := WriteDockerArchive(spec, out); err != nil {
		t.Fatal(err)
	}
	tag, _ := name.NewTag(testRef)
	img, err := tarball.ImageFromPath(out, &tag)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img); err != nil {
		t.Fatal(err)
	}
}

func TestBadInputWritesNothing(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "x.tar")
	if _, err := Build(Spec{Ref: testRef, Files: map[string]string{"edgenet": filepath.Join(dir, "absent")}}); err == nil {
		t.Error("Build with a missing file succeeded")
	}
	img, err := Build(Spec{Ref: testRef})
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{"docker.io/edgenet/edgenet@sha256:" + strings.Repeat("a", 64), "Not A Ref"} {
		if err := WriteOCIArchive(img, ref, out); err == nil {
			t.Errorf("WriteOCIArchive(%q) succeeded", ref)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*")); len(left) != 0 {
		t.Errorf("files left after failures: %q", left)
	}
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if strings.TrimSuffix(y, "/") == strings.TrimSuffix(x, "/") {
			return true
		}
	}
	return false
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func layerDigest(img v1.Image) (v1.Hash, error) {
	ls, err := img.Layers()
	if err != nil || len(ls) != 1 {
		return v1.Hash{}, fmt.Errorf("layers: %d, %v", len(ls), err)
	}
	return ls[0].Digest()
}
