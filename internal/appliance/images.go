package appliance

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// imageSpec is an image made of static binaries: no base image, no registry.
type imageSpec struct {
	ref        string
	files      map[string]string // path in the image -> file on disk
	links      map[string]string // symlink in the image -> target
	entrypoint []string
}

// appImages are the images up builds from the binaries beside the edgenet binary. The
// edgenet image also carries Debian's nft, which the service proxy and masquerade
// drive (knftables), with the shared libraries it links.
func appImages(binDir string) ([]imageSpec, error) {
	files := map[string]string{"edgenet": filepath.Join(binDir, "edgenet")}
	if err := addWithLibs(files, "/usr/sbin/nft"); err != nil {
		return nil, err
	}
	demo, err := demoImages(binDir)
	if err != nil {
		return nil, err
	}
	return append([]imageSpec{
		{
			ref:   edgenetImage,
			files: files,
			// The CNI plugin is the same binary called by another name.
			links:      map[string]string{"edgenet-cni": "edgenet"},
			entrypoint: []string{"/edgenet"},
		},
		{ref: testappImage, files: map[string]string{"testapp": filepath.Join(binDir, "testapp")}, entrypoint: []string{"/testapp"}},
		{ref: pauseImage, files: map[string]string{"pause": filepath.Join(binDir, "pause")}, entrypoint: []string{"/pause"}},
	}, demo...), nil
}

// addWithLibs adds the host binary bin and every shared library ldd resolves for it,
// at their host paths.
func addWithLibs(files map[string]string, bin string) error {
	out, err := exec.Command("ldd", bin).Output()
	if err != nil {
		return fmt.Errorf("ldd %s: %w", bin, err)
	}
	files[strings.TrimPrefix(bin, "/")] = bin
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		var lib string
		switch {
		case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
			lib = f[2]
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
			lib = f[0] // the dynamic loader
		default:
			continue
		}
		files[strings.TrimPrefix(lib, "/")] = lib
	}
	return nil
}

// writeImage writes spec as an image tarball (docker archive layout, which containerd
// and every registry client import) to out.
func writeImage(spec imageSpec, out string) error {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, dst := range slices.Sorted(maps.Keys(spec.files)) {
		b, err := os.ReadFile(spec.files[dst])
		if err != nil {
			return fmt.Errorf("image %s: %w", spec.ref, err)
		}
		if err := tw.WriteHeader(&tar.Header{Name: dst, Mode: 0o755, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		if _, err := tw.Write(b); err != nil {
			return err
		}
	}
	for _, l := range slices.Sorted(maps.Keys(spec.links)) {
		if err := tw.WriteHeader(&tar.Header{Name: l, Linkname: spec.links[l], Mode: 0o777, Typeflag: tar.TypeSymlink}); err != nil {
			return err
		}
	}
	// Containers need a /tmp and /etc to mount resolv.conf and hosts over.
	for _, d := range []string{"tmp/", "etc/"} {
		if err := tw.WriteHeader(&tar.Header{Name: d, Mode: 0o1777, Typeflag: tar.TypeDir}); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	data := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	})
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config = v1.Config{Entrypoint: spec.entrypoint, Env: []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin:/"}}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return err
	}
	ref, err := name.ParseReference(spec.ref)
	if err != nil {
		return err
	}
	return tarball.WriteToFile(out, ref, img)
}
