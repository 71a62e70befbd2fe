package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	v1 "edgenet.io/edgenet/api/v1alpha1"
	"edgenet.io/edgenet/internal/computenet"
	"edgenet.io/edgenet/internal/webhook"
)

// Reasons of the ComputeNetwork's Ready condition.
const (
	ReasonValid        = "Valid"        // the settings pass every check and hold every Node
	ReasonInvalid      = "Invalid"      // the settings fail computenet's checks (stored before the webhook ran)
	ReasonNodesOutside = "NodesOutside" // a Node is not covered by spec.nodes or spec.nodeIPRange
)

// ComputeNetworkStatus computes the Ready condition and nodeIPsUsed of cn from the
// cluster's Nodes, with the same checks as the admission webhook. The condition's
// ObservedGeneration is cn's generation.
func ComputeNetworkStatus(cn *v1.ComputeNetwork, nodes []webhook.Node) (metav1.Condition, int32) {
	cond := metav1.Condition{Type: v1.ConditionReady, ObservedGeneration: cn.Generation}
	s, errs := webhook.Check(cn.Spec)
	used := int32(webhook.NodeIPsUsed(s, nodes))
	if len(errs) > 0 {
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, ReasonInvalid, joinErrs(errs)
		return cond, used
	}
	if fe, ok := webhook.CheckNodes(s, nodes).(computenet.FieldErrors); ok {
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, ReasonNodesOutside, joinErrs(fe)
		return cond, used
	}
	cond.Status, cond.Reason = metav1.ConditionTrue, ReasonValid
	cond.Message = fmt.Sprintf("settings valid; %d of %d node IPs in use (nodes plus the cluster VIP)", used, s.NodeIPs.Size())
	return cond, used
}

func joinErrs(errs computenet.FieldErrors) string {
	lines := make([]string, len(errs))
	for i, e := range errs {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "; ")
}

// RunComputeNetworkStatus keeps the status of ComputeNetwork "default" (Ready,
// nodeIPsUsed, observedGeneration) in line with its spec and the Nodes until ctx
// ends. It writes only those fields; the LoadBalancer controller writes the
// external IP counts.
func RunComputeNetworkStatus(ctx context.Context, kube kubernetes.Interface, client *v1.Client, log *slog.Logger) error {
	networks := client.ComputeNetworks().NewInformer(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("metadata.name", v1.ComputeNetworkName).String()
	}, 0)
	nodes := cache.NewSharedIndexInformer(
		cache.NewListWatchFromClient(kube.CoreV1().RESTClient(), "nodes", metav1.NamespaceAll, fields.Everything()),
		&corev1.Node{}, 0, cache.Indexers{})
	// Node status changes every few seconds (heartbeats, images): keep the addresses only.
	nodes.SetTransform(func(o any) (any, error) {
		n, ok := o.(*corev1.Node)
		if !ok {
			return o, nil
		}
		var addrs []corev1.NodeAddress
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				addrs = append(addrs, a)
			}
		}
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.Name, ResourceVersion: n.ResourceVersion},
			Status: corev1.NodeStatus{Addresses: addrs}}, nil
	})
	dirty := make(chan struct{}, 1)
	h := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { signal(dirty) },
		UpdateFunc: func(o, n any) { signal(dirty) },
		DeleteFunc: func(any) { signal(dirty) },
	}
	for _, inf := range []cache.SharedIndexInformer{networks, nodes} {
		if _, err := inf.AddEventHandler(h); err != nil {
			return err
		}
		go inf.RunWithContext(ctx)
	}
	if !cache.WaitForCacheSync(ctx.Done(), networks.HasSynced, nodes.HasSynced) {
		return nil
	}
	retry := time.NewTimer(0)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-dirty:
		case <-retry.C:
		}
		o, ok, _ := networks.GetStore().GetByKey(v1.ComputeNetworkName)
		if !ok {
			continue
		}
		var ns []webhook.Node
		for _, n := range nodes.GetStore().List() {
			ns = append(ns, webhook.NodeOf(n.(*corev1.Node)))
		}
		if err := writeComputeNetworkStatus(ctx, client, o.(*v1.ComputeNetwork), ns); err != nil {
			log.Warn("ComputeNetwork status", "err", err)
			retry.Reset(time.Second)
		}
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func writeComputeNetworkStatus(ctx context.Context, client *v1.Client, cn *v1.ComputeNetwork, nodes []webhook.Node) error {
	cond, used := ComputeNetworkStatus(cn, nodes)
	conds := append([]metav1.Condition(nil), cn.Status.Conditions...)
	meta.SetStatusCondition(&conds, cond)
	if cn.Status.NodeIPsUsed == used && cn.Status.ObservedGeneration == cn.Generation && reflect.DeepEqual(conds, cn.Status.Conditions) {
		return nil
	}
	// A merge patch of our fields only; the LoadBalancer controller writes the others.
	patch, err := json.Marshal(map[string]any{"status": map[string]any{
		"observedGeneration": cn.Generation, "nodeIPsUsed": used, "conditions": conds}})
	if err != nil {
		return err
	}
	err = client.RESTClient().Patch(types.MergePatchType).Resource(v1.ResourceComputeNetworks).
		Name(cn.Name).SubResource("status").Body(patch).Do(ctx).Error()
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("controller: ComputeNetwork status: %w", err)
	}
	return nil
}
