// Command podsbench measures how fast pods get running on one appliance node with
// edgenet as the only CNI: it creates n pods pinned to a node (scheduled by the real
// scheduler), times until all are Running with an IP, and deletes them.
//
//	podsbench -kubeconfig /var/lib/edgenet/admin.kubeconfig -node node2 -n 100 -out bench/results/RESULTS.md
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"edgenet.io/edgenet/bench/internal/report"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "podsbench:", err)
		os.Exit(1)
	}
}

func run() error {
	kubeconfig := flag.String("kubeconfig", "/var/lib/edgenet/admin.kubeconfig", "admin kubeconfig of the appliance")
	node := flag.String("node", "node2", "node to fill")
	n := flag.Int("n", 100, "pods")
	image := flag.String("image", "docker.io/edgenet/testapp:dev", "pod image")
	out := flag.String("out", "", "append the result to this file")
	flag.Parse()
	rc, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		return err
	}
	rc.QPS, rc.Burst = 500, 1000
	c, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	ctx := context.Background()
	ns := fmt.Sprintf("podsbench-%d", time.Now().Unix())
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	defer c.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
	start := time.Now()
	for i := 0; i < *n; i++ {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p%d", i)},
			Spec: corev1.PodSpec{
				NodeSelector:                  map[string]string{"kubernetes.io/hostname": *node},
				Containers:                    []corev1.Container{{Name: "app", Image: *image, ImagePullPolicy: corev1.PullNever, Args: []string{"serve"}}},
				TerminationGracePeriodSeconds: new(int64),
			},
		}
		if _, err := c.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	created := time.Since(start)
	deadline := time.Now().Add(3 * time.Minute)
	var running int
	for time.Now().Before(deadline) {
		list, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		running = 0
		for _, p := range list.Items {
			if p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" {
				running++
			}
		}
		if running == *n {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	all := time.Since(start)
	if running != *n {
		return fmt.Errorf("only %d of %d pods running after %s", running, *n, all)
	}
	res := fmt.Sprintf("\n### %d pods on one node (%s), create to all Running with an IP, one run (%s)\n\n"+
		"| pods | created in | all Running after | pods/s |\n|---|---|---|---|\n| %d | %.1f s | %.1f s | %.0f |\n",
		*n, *node, time.Now().UTC().Format(time.RFC3339), *n, created.Seconds(), all.Seconds(), float64(*n)/all.Seconds())
	return report.Append(*out, res)
}
