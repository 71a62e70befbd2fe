package appliance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Down stops everything up started and removes what it made; with nothing running it
// does nothing and succeeds. It keeps going past errors so that one stuck piece does
// not leave the rest behind, and reports them all.
func Down(ctx context.Context, cfg Config) error {
	l := cfg.layout()
	st, lerr := loadState(l.stateFile())
	var errs []error
	if lerr != nil {
		errs = append(errs, lerr)
	}
	if st != nil {
		// Kubelets first, so that nothing restarts containers while the rest stops.
		procs := slices.Clone(st.Procs)
		slices.Reverse(procs)
		stopProcs(procs, 10*time.Second)
	}
	if err := killCgroupTree(); err != nil {
		errs = append(errs, err)
	}
	if err := unmountAll(l.state, l.run); err != nil {
		errs = append(errs, err)
	}
	if err := removeCgroups(); err != nil {
		errs = append(errs, err)
	}
	if err := deleteNetworks(); err != nil {
		errs = append(errs, err)
	}
	if st != nil {
		if err := deletePodNetns(st.PodNetnsBefore); err != nil {
			errs = append(errs, err)
		}
	}
	if st != nil {
		for k, v := range st.Sysctls {
			if cur, err := readSysctl(k); err == nil && cur != v {
				if err := writeSysctl(k, v); err != nil {
					errs = append(errs, fmt.Errorf("restore %s=%s: %w", k, v, err))
				}
			}
		}
	}
	if st != nil {
		for _, p := range st.Created {
			if err := os.RemoveAll(p); err != nil {
				errs = append(errs, err)
			}
		}
	}
	// Logs stay for a post-mortem; everything else goes.
	if ents, err := os.ReadDir(l.state); err == nil {
		for _, e := range ents {
			if e.Name() != "logs" {
				if err := os.RemoveAll(filepath.Join(l.state, e.Name())); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	if err := os.RemoveAll(l.run); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Status writes the appliance's nodes, components and ranges to w.
func Status(ctx context.Context, cfg Config, w io.Writer) error {
	l := cfg.layout()
	st, err := loadState(l.stateFile())
	if err != nil {
		return err
	}
	if st == nil {
		fmt.Fprintln(w, "edgenet appliance: not running")
		return nil
	}
	state := "running"
	switch {
	case !st.Ready:
		state = "starting (or failed midway: run `edgenet up` again to clear it)"
	case !st.running():
		state = "degraded: some components exited"
	}
	s := st.Settings
	fmt.Fprintf(w, "edgenet appliance: %s (since %s)\n\n", state, st.Started.Format(time.RFC3339))
	fmt.Fprintf(w, "site subnet %s gateway %s\nnode IPs %s (cluster VIP %s)\n", s.SiteSubnet, s.Gateway, s.NodeIPs, s.ClusterVIP())
	var ext []string
	for _, r := range s.ExternalIPs {
		ext = append(ext, r.String())
	}
	fmt.Fprintf(w, "external service IPs %s\npod CIDR %s, service CIDR %s, cluster domain %s\nclient (site LAN) %s in netns %s; site DNS %s (zone %s) in netns %s\n\n",
		strings.Join(ext, ", "), s.PodCIDR, s.ServiceCIDR, s.ClusterDomain, st.Client.IP, st.Client.Netns,
		st.SiteDNS.IP, SiteDomain, st.SiteDNS.Netns)

	ready := map[string]string{}
	if c, err := adminClient(l); err == nil {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if nodes, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); err == nil {
			for _, n := range nodes.Items {
				ready[n.Name] = "NotReady"
				for _, cond := range n.Status.Conditions {
					if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
						ready[n.Name] = "Ready"
					}
				}
			}
		} else {
			fmt.Fprintf(w, "apiserver: %v\n", err)
		}
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tIP\tNETNS\tKUBERNETES")
	for _, n := range st.Nodes {
		r := ready[n.Name]
		if r == "" {
			r = "unregistered"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", n.Name, n.IP, n.Netns, r)
	}
	fmt.Fprintln(tw, "\nCOMPONENT\tNODE\tPID\tSTATE")
	for _, p := range st.Procs {
		alive := "running"
		if !p.alive() {
			alive = "exited (log " + p.Log + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", p.Name, p.Node, p.PID, alive)
	}
	return tw.Flush()
}
