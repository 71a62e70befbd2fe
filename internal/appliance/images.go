package appliance

import (
	"path/filepath"

	"edgenet.io/edgenet/internal/image"
)

// appImages are the images up builds from the binaries beside the edgenet binary
// (package image: no base image, no registry).
func appImages(binDir string) ([]image.Spec, error) {
	edgenet, err := image.Edgenet(edgenetImage, filepath.Join(binDir, "edgenet"))
	if err != nil {
		return nil, err
	}
	demo, err := demoImages(binDir)
	if err != nil {
		return nil, err
	}
	return append([]image.Spec{
		edgenet,
		{Ref: testappImage, Files: map[string]string{"testapp": filepath.Join(binDir, "testapp")}, Entrypoint: []string{"/testapp"}},
		{Ref: pauseImage, Files: map[string]string{"pause": filepath.Join(binDir, "pause")}, Entrypoint: []string{"/pause"}},
	}, demo...), nil
}
