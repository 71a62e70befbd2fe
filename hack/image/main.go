// Command image writes the edgenet image as an OCI image layout tarball (`make image`),
// which any registry client pushes: skopeo copy oci-archive:FILE docker://REG/edgenet:TAG,
// or crane push FILE REG/edgenet:TAG.
package main

import (
	"flag"
	"fmt"
	"os"

	"edgenet.io/edgenet/internal/image"
)

func main() {
	bin := flag.String("edgenet", "bin/edgenet", "the static edgenet binary")
	ref := flag.String("ref", "docker.io/edgenet/edgenet:dev", "the image's name and tag")
	out := flag.String("out", "bin/edgenet-image.oci.tar", "the tarball to write")
	flag.Parse()
	if err := run(*bin, *ref, *out); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(bin, ref, out string) error {
	spec, err := image.Edgenet(ref, bin)
	if err != nil {
		return err
	}
	img, err := image.Build(spec)
	if err != nil {
		return err
	}
	if err := image.WriteOCIArchive(img, ref, out); err != nil {
		return err
	}
	d, err := img.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("%s: %s %s\n", out, ref, d)
	return nil
}
