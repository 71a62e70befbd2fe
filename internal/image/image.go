// Package image builds edgenet's container images from static binaries and a few host
// files, without a base image, a registry or a container engine, and writes them as
// tarballs: a Docker archive (what `edgenet up` imports into its nodes) or an OCI
// image layout archive (what `make image` writes for a registry). It owns only the
// files it writes.
package image

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Spec is an image of one layer made of host files.
type Spec struct {
	Ref        string            // e.g. docker.io/edgenet/edgenet:dev
	Files      map[string]string // path in the image -> file on the host
	Links      map[string]string // symlink in the image -> target
	Entrypoint []string
}

// Edgenet is the edgenet image: the binary at bin (static), edgenet-cni linking to it
// (the CNI plugin is the same binary called by another name), and the host's nft with
// the shared libraries it links, which the service proxy and masquerade drive.
func Edgenet(ref, bin string) (Spec, error) {
	files := map[string]string{"edgenet": bin}
	if err := AddWithLibs(files, "/usr/sbin/nft"); err != nil {
		return Spec{}, fmt.Errorf("image %s: %w", ref, err)
	}
	return Spec{Ref: ref, Files: files, Links: map[string]string{"edgenet-cni": "edgenet"}, Entrypoint: []string{"/edgenet"}}, nil
}

// AddWithLibs adds the host binary bin and every shared library ldd resolves for it,
// at their host paths.
func AddWithLibs(files map[string]string, bin string) error {
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

// Build makes the image of spec, with OCI media types, for linux/amd64.
func Build(spec Spec) (v1.Image, error) {
	data, err := layerTar(spec)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", spec.Ref, err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", spec.Ref, err)
	}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.AppendLayers(base, layer)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", spec.Ref, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", spec.Ref, err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config = v1.Config{Entrypoint: spec.Entrypoint, Env: []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin:/"}}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return nil, fmt.Errorf("image %s: %w", spec.Ref, err)
	}
	return img, nil
}

// layerTar is the one layer: files, links, and the directories containers mount over.
func layerTar(spec Spec) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, dst := range slices.Sorted(maps.Keys(spec.Files)) {
		b, err := os.ReadFile(spec.Files[dst])
		if err != nil {
			return nil, err
		}
		if err := tw.WriteHeader(&tar.Header{Name: dst, Mode: 0o755, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(b); err != nil {
			return nil, err
		}
	}
	for _, l := range slices.Sorted(maps.Keys(spec.Links)) {
		if err := tw.WriteHeader(&tar.Header{Name: l, Linkname: spec.Links[l], Mode: 0o777, Typeflag: tar.TypeSymlink}); err != nil {
			return nil, err
		}
	}
	// Containers need a /tmp and /etc to mount resolv.conf and hosts over.
	for _, d := range []string{"tmp/", "etc/"} {
		if err := tw.WriteHeader(&tar.Header{Name: d, Mode: 0o1777, Typeflag: tar.TypeDir}); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// WriteDockerArchive writes spec's image as a Docker archive (`docker save` layout),
// which `ctr images import` and every registry client read, to out.
func WriteDockerArchive(spec Spec, out string) error {
	img, err := Build(spec)
	if err != nil {
		return err
	}
	ref, err := name.ParseReference(spec.Ref)
	if err != nil {
		return fmt.Errorf("image: %w", err)
	}
	if err := tarball.WriteToFile(out, ref, img); err != nil {
		return fmt.Errorf("image %s: %w", spec.Ref, err)
	}
	return nil
}

// WriteOCIArchive writes img, named ref, to out as an OCI image layout in a tar
// (skopeo's oci-archive:, `ctr images import`, `podman load`). The tar also carries a
// Docker manifest.json pointing at the same blobs, as `docker save` has since Docker
// 25, so `crane push`, `docker load` and other Docker-archive readers take it as is.
// The file appears only once complete.
func WriteOCIArchive(img v1.Image, ref, out string) error {
	r, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("image: %q: want a tagged reference: %w", ref, err)
	}
	tmp := out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("image: %w", err)
	}
	defer os.Remove(tmp)
	if err := writeOCI(f, img, r); err != nil {
		f.Close()
		return fmt.Errorf("image %s: %w", ref, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("image: %w", err)
	}
	return os.Rename(tmp, out)
}

func writeOCI(w io.Writer, img v1.Image, ref name.Tag) error {
	tw := tar.NewWriter(w)
	add := func(path string, b []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: path, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	blob := func(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }
	for _, d := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Name: d, Mode: 0o755, Typeflag: tar.TypeDir}); err != nil {
			return err
		}
	}
	if err := add("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	var layerPaths []string
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return err
		}
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return err
		}
		if err := add(blob(d), b); err != nil {
			return err
		}
		layerPaths = append(layerPaths, blob(d))
	}
	cfgName, err := img.ConfigName()
	if err != nil {
		return err
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	if err := add(blob(cfgName), cfg); err != nil {
		return err
	}
	manifest, err := img.RawManifest()
	if err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	mt, err := img.MediaType()
	if err != nil {
		return err
	}
	if err := add(blob(digest), manifest); err != nil {
		return err
	}
	index := v1.IndexManifest{
		SchemaVersion: 2,
		MediaType:     types.OCIImageIndex,
		Manifests: []v1.Descriptor{{
			MediaType: mt, Digest: digest, Size: int64(len(manifest)),
			Annotations: map[string]string{
				// The tag, for skopeo's oci-archive:FILE:TAG; the full name, for containerd.
				"org.opencontainers.image.ref.name": ref.TagStr(),
				"io.containerd.image.name":          fullName(ref),
			},
		}},
	}
	b, err := json.Marshal(index)
	if err != nil {
		return err
	}
	if err := add("index.json", b); err != nil {
		return err
	}
	docker := []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}{{Config: blob(cfgName), RepoTags: []string{fullName(ref)}, Layers: layerPaths}}
	if b, err = json.Marshal(docker); err != nil {
		return err
	}
	if err := add("manifest.json", b); err != nil {
		return err
	}
	return tw.Close()
}

// fullName is ref as containerd and docker name images: docker.io/..., not index.docker.io/...
func fullName(ref name.Tag) string {
	reg := ref.Context().RegistryStr()
	if reg == name.DefaultRegistry {
		reg = "docker.io"
	}
	return reg + "/" + ref.Context().RepositoryStr() + ":" + ref.TagStr()
}
