package appliance

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"edgenet.io/edgenet/internal/computenet"
)

// state is what up made, written before each step so that down (or the next up after
// a crash) can undo it.
type state struct {
	Settings computenet.Settings `json:"settings"`
	Nodes    []host              `json:"nodes"`
	Client   host                `json:"client"`
	SiteDNS  host                `json:"siteDNS"`
	Procs    []proc              `json:"procs"`
	// Sysctls holds the original values of host-wide sysctls the kubelets change.
	Sysctls map[string]string `json:"sysctls"`
	// PodNetnsBefore lists the runtime's pod namespaces (/run/netns/cni-*) that existed
	// before up: down deletes the others, which the nodes' containerd made.
	PodNetnsBefore []string `json:"podNetnsBefore"`
	// Created lists host paths outside the state and run dirs that up created.
	Created []string  `json:"created,omitempty"`
	Ready   bool      `json:"ready"`
	Started time.Time `json:"started"`
}

func loadState(path string) (*state, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("state %s: %w", path, err)
	}
	return &st, nil
}

func (st *state) save(path string) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// running reports whether every recorded process is alive.
func (st *state) running() bool {
	if st == nil || !st.Ready || len(st.Procs) == 0 {
		return false
	}
	for _, p := range st.Procs {
		if !p.alive() {
			return false
		}
	}
	return true
}
