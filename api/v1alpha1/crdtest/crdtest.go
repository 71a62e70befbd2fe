// Package crdtest installs edgenet's generated CRDs (deploy/crds/*.yaml of this module) into a test apiserver
// and waits until they are served. It is for tests only; the appliance applies deploy/ with kustomize.
package crdtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensions "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"
)

// Dir finds deploy/crds of this module from the working directory up.
func Dir() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; d != "/"; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return filepath.Join(d, "deploy", "crds"), nil
		}
	}
	return "", fmt.Errorf("crdtest: no go.mod above %s", wd)
}

// Load reads every CRD manifest of deploy/crds.
func Load() ([]*apiextensionsv1.CustomResourceDefinition, error) {
	dir, err := Dir()
	if err != nil {
		return nil, err
	}
	files, err := filepath.Glob(filepath.Join(dir, "edgenet.io_*.yaml")) // not kustomization.yaml
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("crdtest: no CRD manifests in %s (%v)", dir, err)
	}
	var crds []*apiextensionsv1.CustomResourceDefinition
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		crd := new(apiextensionsv1.CustomResourceDefinition)
		if err := yaml.UnmarshalStrict(data, crd); err != nil {
			return nil, fmt.Errorf("crdtest: %s: %w", f, err)
		}
		crds = append(crds, crd)
	}
	return crds, nil
}

// Install creates the CRDs of deploy/crds through the apiserver of cfg and waits until each is Established
// and its resource answers a list. It fails the test on any error.
func Install(t testing.TB, cfg *rest.Config) {
	t.Helper()
	crds, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	cs, err := apiextensions.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, crd := range crds {
		if _, err := cs.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, crd, metav1.CreateOptions{}); err != nil {
			t.Fatalf("crdtest: create CRD %s: %v", crd.Name, err)
		}
	}
	for _, crd := range crds {
		err := wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			got, err := cs.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, crd.Name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			for _, c := range got.Status.Conditions {
				if c.Type == apiextensionsv1.NonStructuralSchema && c.Status == apiextensionsv1.ConditionTrue {
					return false, fmt.Errorf("schema is not structural: %s", c.Message)
				}
			}
			for _, c := range got.Status.Conditions {
				if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			t.Fatalf("crdtest: CRD %s not established: %v", crd.Name, err)
		}
		// Established comes a moment before the resource's REST handler is installed.
		rc := cs.Discovery().RESTClient()
		err = wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			return rc.Get().AbsPath("/apis", crd.Spec.Group, crd.Spec.Versions[0].Name, crd.Spec.Names.Plural).
				Do(ctx).Error() == nil, nil
		})
		if err != nil {
			t.Fatalf("crdtest: resource %s not served: %v", crd.Name, err)
		}
	}
}
