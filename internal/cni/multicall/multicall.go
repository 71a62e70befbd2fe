// Package multicall makes the edgenet binary act as its CNI plugins when it is called by their names
// (edgenet-cni, loopback). Import it for its side effect, from package main only.
//
// Why an init function and not a switch in main: a container runtime runs the plugin once per pod, and Go runs
// the init functions of every package linked into a binary before main. The edgenet binary links client-go and
// the Kubernetes API schemes, whose inits cost ~8 ms per run on this class of machine, several times the whole
// plugin's own work. Go initializes packages in import-path order, each once its imports are initialized
// (spec, "Package initialization"), so this package, whose imports are only the plugin's (none from k8s.io or
// sigs.k8s.io), runs before those and exits the process when it is a plugin call. TestPluginSkipsKubernetesInit
// holds the edgenet binary to that.
package multicall

import (
	"os"
	"path/filepath"

	"edgenet.io/edgenet/internal/cni"
)

func init() {
	switch filepath.Base(os.Args[0]) {
	case cni.PluginName:
		cni.Main()
	case cni.LoopbackName:
		cni.LoopbackMain()
	default:
		return
	}
	// The plugin printed its result; Main returns only on success.
	os.Exit(0)
}
