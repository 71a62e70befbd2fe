package proxy

import (
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/knftables"
)

// TableName is the proxy's main nftables table, in the ip and ip6 families; the
// service chains live in shard tables next to it (tables.go).
const TableName = "edgenet"

// masqMark is the packet mark asking nat-postrouting to masquerade.
const masqMark = "0x00004000"

// Fixed chain, map and set names. Per-service chain names always contain '/', which
// none of these do; that is how stale service chains are recognised in the kernel.
const (
	chainServices      = "services"
	chainMarkMasq      = "mark-for-masquerade"
	chainMasquerading  = "masquerading"
	chainEndpointCheck = "service-endpoints-check"
	chainReject        = "reject-chain"

	mapServiceIPs        = "service-ips"
	mapServiceNodePorts  = "service-nodeports"
	mapNoEndpointSvcs    = "no-endpoint-services"
	mapNoEndpointNodePts = "no-endpoint-nodeports"
	setNodePortIPs       = "nodeport-ips"

	affinityPrefix = "aff-"
)

// NodeConfig is what the rules need to know about the node, for one IP family.
type NodeConfig struct {
	Family   knftables.Family // knftables.IPv4Family or knftables.IPv6Family
	NodeName string
	// NodeIPs accept NodePort traffic; addresses of the other family are ignored.
	NodeIPs []netip.Addr
	// PodCIDR is the cluster-wide pod range: sources outside it are masqueraded when
	// they reach a ClusterIP, sources inside it short-circuit Local external policies.
	PodCIDR netip.Prefix
	// Balancing selects how a service chain picks an endpoint; see Balancing.
	Balancing Balancing
	// Shards is how many shard tables hold the services (0: DefaultShards).
	Shards int
}

// Balancing is the form of the random endpoint choice in a service chain.
type Balancing string

const (
	// BalanceVmap (the default, as kube-proxy): one rule
	// "numgen random mod N vmap { 0 : goto ep-a, 1 : goto ep-b }". Each such rule
	// is an anonymous set, and the kernel handles many sets in a table slowly: a
	// first sync of 10k services takes ~14 s of kernel time here.
	BalanceVmap Balancing = "vmap"
	// BalanceCascade: N rules "numgen random mod (N-i) == 0 goto ep-i" (the last
	// one unconditional), uniform like the vmap but without sets; the same first
	// sync takes ~2 s. New connections walk up to N rules.
	BalanceCascade Balancing = "cascade"
)

// Validate checks the config; a bad config must not reach the kernel.
func (c NodeConfig) Validate() error {
	if c.Family != knftables.IPv4Family && c.Family != knftables.IPv6Family {
		return fmt.Errorf("family %q: want ip or ip6", c.Family)
	}
	if c.NodeName == "" {
		return errors.New("node name is empty")
	}
	if !c.PodCIDR.IsValid() || c.PodCIDR.Addr().Is4() != (c.Family == knftables.IPv4Family) {
		return fmt.Errorf("pod CIDR %v: not a valid %s prefix", c.PodCIDR, c.Family)
	}
	if c.Shards < 0 || c.Shards > MaxShards {
		return fmt.Errorf("shards %d: want 1 to %d (0 for %d)", c.Shards, MaxShards, DefaultShards)
	}
	switch c.Balancing {
	case "", BalanceVmap, BalanceCascade:
	default:
		return fmt.Errorf("balancing %q: want %q or %q", c.Balancing, BalanceVmap, BalanceCascade)
	}
	return nil
}

func (c NodeConfig) inFamily(a netip.Addr) bool {
	return a.IsValid() && a.Unmap().Is4() == (c.Family == knftables.IPv4Family)
}

func (c NodeConfig) ipX() string {
	if c.Family == knftables.IPv6Family {
		return "ip6"
	}
	return "ip"
}

func (c NodeConfig) addrType() string {
	if c.Family == knftables.IPv6Family {
		return "ipv6_addr"
	}
	return "ipv4_addr"
}

// element is one entry of one of our verdict maps.
type element struct {
	Map     string
	Key     string // nft syntax, e.g. "172.28.0.10 . udp . 53"
	Value   string // verdict, e.g. "goto svc-…"
	Comment string
}

// ServiceRules is everything one Service contributes to the table for one node and
// family. It is a pure value computed by ComputeService; its strings share one
// allocation (see compact), so keeping any of them keeps all.
type ServiceRules struct {
	Key      ServiceKey
	Chains   map[string][]string      // chain name → rules, in order; nil when none
	Elements []element                // map entries
	Affinity map[string]time.Duration // affinity set name → timeout; nil when none
	// UDP lists, per UDP service port, the destinations and endpoints in use; the
	// proxier diffs it between syncs to flush stale conntrack entries.
	UDP []udpPort
	// HealthCheck is set for externalTrafficPolicy Local services with a
	// healthCheckNodePort; LocalEndpoints is what the health server reports.
	HealthCheckNodePort uint16
	LocalEndpoints      int
}

type udpPort struct {
	ID        string           // namespace/name/udp/portname
	Dests     []netip.AddrPort // service IPs (cluster, external, LB) with the service port
	NodePort  uint16
	Endpoints []netip.Addr
}

type endpointInfo struct {
	addr  netip.AddrPort
	local bool
	ready bool
	// usable when no endpoint is ready: serving while terminating
	fallback bool
}

// chainName makes a deterministic name within nft's limits (and charset: ':' is not
// allowed, so IPv6 colons become '.'). Names that would be long get a hash prefix so
// that truncation keeps them unique.
func chainName(prefix, base string) string {
	base = strings.ReplaceAll(base, ":", ".")
	const max = 200 // well under knftables.NameLengthMax, leaves room for the prefix
	if len(base) <= max {
		return prefix + base
	}
	sum := sha256.Sum256([]byte(base))
	h := base32.StdEncoding.EncodeToString(sum[:])[:10]
	return prefix + h + "-" + base[:max-len(h)-1]
}

func portBase(key ServiceKey, p ServicePort) string {
	return key.Namespace + "/" + key.Name + "/" + string(p.Protocol) + "/" + p.Name
}

func endpointBase(key ServiceKey, p ServicePort, ep netip.AddrPort) string {
	return portBase(key, p) + "__" + ep.Addr().String() + "/" + strconv.Itoa(int(ep.Port()))
}

// selectEndpoints returns the endpoints of port p in family of cfg, deduplicated (an
// endpoint can sit in two slices while they are rewritten; the readier copy wins).
func selectEndpoints(cfg NodeConfig, p ServicePort, eps []*EndpointSlice) []endpointInfo {
	byAddr := map[netip.AddrPort]endpointInfo{}
	for _, s := range eps {
		var target uint16
		for _, sp := range s.Ports {
			if sp.Name == p.Name && sp.Protocol == p.Protocol {
				target = sp.Port
				break
			}
		}
		if target == 0 {
			continue
		}
		for _, e := range s.Endpoints {
			if len(e.Addresses) == 0 || !cfg.inFamily(e.Addresses[0]) {
				continue
			}
			ap := netip.AddrPortFrom(e.Addresses[0].Unmap(), target)
			info := endpointInfo{
				addr:     ap,
				local:    e.NodeName == cfg.NodeName,
				ready:    e.Ready,
				fallback: e.Serving && e.Terminating,
			}
			if old, ok := byAddr[ap]; ok && (old.ready || !info.ready && old.fallback) {
				continue
			}
			byAddr[ap] = info
		}
	}
	out := make([]endpointInfo, 0, len(byAddr))
	for _, e := range byAddr {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b endpointInfo) int { return a.addr.Compare(b.addr) })
	return out
}

// usable picks ready endpoints, or serving+terminating ones when none is ready.
func usable(eps []endpointInfo, keep func(endpointInfo) bool) []endpointInfo {
	var ready, fallback []endpointInfo
	for _, e := range eps {
		if !keep(e) {
			continue
		}
		if e.ready {
			ready = append(ready, e)
		} else if e.fallback {
			fallback = append(fallback, e)
		}
	}
	if len(ready) > 0 {
		return ready
	}
	return fallback
}

// ComputeService computes svc's rules on the node described by cfg. slices are the
// EndpointSlices of svc (any family; the others are ignored). A nil svc, a headless
// svc or one without a ClusterIP in cfg's family contributes nothing.
func ComputeService(cfg NodeConfig, svc *Service, eps []*EndpointSlice) *ServiceRules {
	r := computeService(cfg, svc, eps)
	if r != nil {
		r.compact()
	}
	return r
}

// computeService is ComputeService before compaction.
func computeService(cfg NodeConfig, svc *Service, eps []*EndpointSlice) *ServiceRules {
	if svc == nil {
		return nil
	}
	r := &ServiceRules{Key: svc.Key, Chains: map[string][]string{}, Affinity: map[string]time.Duration{}}
	var clusterIP netip.Addr
	for _, a := range svc.ClusterIPs {
		if cfg.inFamily(a) {
			clusterIP = a.Unmap()
			break
		}
	}
	if !clusterIP.IsValid() {
		return r
	}
	ipX := cfg.ipX()
	var external []netip.Addr
	for _, a := range slices2(svc.ExternalIPs, svc.LoadBalancerIPs) {
		if cfg.inFamily(a) {
			external = append(external, a.Unmap())
		}
	}
	localReady := map[netip.Addr]bool{}
	for _, p := range svc.Ports {
		nodePort := p.NodePort
		if svc.Type != NodePort && svc.Type != LoadBalancer {
			nodePort = 0
		}
		proto := string(p.Protocol)
		name := svc.Key.String() + ":" + p.Name + "/" + proto
		all := selectEndpoints(cfg, p, eps)
		cluster := usable(all, func(endpointInfo) bool { return true })
		local := usable(all, func(e endpointInfo) bool { return e.local })
		for _, e := range all {
			if e.local && e.ready {
				localReady[e.addr.Addr()] = true
			}
		}
		hasEndpoints := len(cluster) > 0 || len(local) > 0
		externallyAccessible := nodePort != 0 || len(external) > 0

		svcChain := chainName("svc-", portBase(svc.Key, p))
		localChain := chainName("local-", portBase(svc.Key, p))
		extChain := chainName("ext-", portBase(svc.Key, p))

		usesCluster := len(cluster) > 0 && (!svc.InternalLocal || externallyAccessible)
		usesLocal := len(local) > 0 && (svc.InternalLocal || svc.ExternalLocal && externallyAccessible)

		internalChain, hasInternal := svcChain, hasEndpoints
		if svc.InternalLocal {
			internalChain, hasInternal = localChain, len(local) > 0
		}
		externalPolicyChain, hasExternal := svcChain, hasEndpoints
		if svc.ExternalLocal {
			externalPolicyChain, hasExternal = localChain, len(local) > 0
		}
		usesExt := hasEndpoints && externallyAccessible

		internalVerdict, externalVerdict := "", ""
		if !hasEndpoints {
			internalVerdict, externalVerdict = "goto "+chainReject, "goto "+chainReject
		} else {
			if !hasInternal {
				internalVerdict = "drop"
			}
			if !hasExternal {
				externalVerdict = "drop"
			}
		}

		key := func(a netip.Addr) string { return a.String() + " . " + proto + " . " + strconv.Itoa(int(p.Port)) }
		if hasInternal {
			r.Elements = append(r.Elements, element{Map: mapServiceIPs, Key: key(clusterIP), Value: "goto " + internalChain, Comment: name})
		} else {
			r.Elements = append(r.Elements, element{Map: mapNoEndpointSvcs, Key: key(clusterIP), Value: internalVerdict, Comment: name})
		}
		for _, a := range external {
			if usesExt {
				r.Elements = append(r.Elements, element{Map: mapServiceIPs, Key: key(a), Value: "goto " + extChain, Comment: name})
			}
			if !hasExternal {
				r.Elements = append(r.Elements, element{Map: mapNoEndpointSvcs, Key: key(a), Value: externalVerdict, Comment: name})
			}
		}
		if nodePort != 0 {
			npKey := proto + " . " + strconv.Itoa(int(nodePort))
			if usesExt {
				r.Elements = append(r.Elements, element{Map: mapServiceNodePorts, Key: npKey, Value: "goto " + extChain, Comment: name})
			}
			if !hasExternal {
				r.Elements = append(r.Elements, element{Map: mapNoEndpointNodePts, Key: npKey, Value: externalVerdict, Comment: name})
			}
		}

		// ClusterIP traffic from outside the pod network (the host, other nodes
		// routing into the service range) must come back through this node.
		masqNonPod := fmt.Sprintf("%s daddr %s %s dport %d %s saddr != %s jump %s",
			ipX, clusterIP, proto, p.Port, ipX, cfg.PodCIDR.Masked(), chainMarkMasq)
		epChain := func(e endpointInfo) string { return chainName("ep-", endpointBase(svc.Key, p, e.addr)) }
		affSet := func(e endpointInfo) string { return chainName(affinityPrefix, endpointBase(svc.Key, p, e.addr)) }
		balance := func(chain string, eps []endpointInfo) {
			var rules []string
			if hasInternal && chain == internalChain {
				rules = append(rules, masqNonPod)
			}
			if svc.AffinityTimeout > 0 {
				for _, e := range eps {
					rules = append(rules, fmt.Sprintf("%s saddr @%s goto %s", ipX, affSet(e), epChain(e)))
				}
			}
			if cfg.Balancing == BalanceCascade {
				for i, e := range eps {
					if i == len(eps)-1 {
						rules = append(rules, "goto "+epChain(e))
					} else {
						// Reached with probability (N-i)/N, taken with 1/(N-i).
						rules = append(rules, fmt.Sprintf("numgen random mod %d == 0 goto %s", len(eps)-i, epChain(e)))
					}
				}
			} else {
				vm := make([]string, len(eps))
				for i, e := range eps {
					vm[i] = fmt.Sprintf("%d : goto %s", i, epChain(e))
				}
				rules = append(rules, fmt.Sprintf("numgen random mod %d vmap { %s }", len(eps), strings.Join(vm, " , ")))
			}
			r.Chains[chain] = rules
		}
		if usesCluster {
			balance(svcChain, cluster)
		}
		if usesLocal {
			balance(localChain, local)
		}

		if usesExt {
			var rules []string
			if !svc.ExternalLocal {
				// Cluster policy may forward to another node: masquerade so
				// replies come back here.
				rules = append(rules, "jump "+chainMarkMasq)
			} else if usesCluster {
				// Pods and the host itself are not subject to the external
				// policy (as if they went out to the LB and came back).
				rules = append(rules,
					fmt.Sprintf("%s saddr %s goto %s", ipX, cfg.PodCIDR.Masked(), svcChain),
					"fib saddr type local jump "+chainMarkMasq,
					"fib saddr type local goto "+svcChain)
			}
			if hasExternal {
				rules = append(rules, "goto "+externalPolicyChain)
			}
			r.Chains[extChain] = rules
		}

		// Endpoint chains for every endpoint some policy chain can reach.
		reach := map[netip.AddrPort]endpointInfo{}
		if usesCluster {
			for _, e := range cluster {
				reach[e.addr] = e
			}
		}
		if usesLocal {
			for _, e := range local {
				reach[e.addr] = e
			}
		}
		for _, e := range reach {
			var rules []string
			rules = append(rules, fmt.Sprintf("%s saddr %s jump %s", ipX, e.addr.Addr(), chainMarkMasq))
			if svc.AffinityTimeout > 0 {
				r.Affinity[affSet(e)] = svc.AffinityTimeout
				rules = append(rules, fmt.Sprintf("update @%s { %s saddr }", affSet(e), ipX))
			}
			rules = append(rules, fmt.Sprintf("meta l4proto %s dnat to %s", proto, e.addr))
			r.Chains[epChain(e)] = rules
		}

		if p.Protocol == UDP {
			u := udpPort{ID: portBase(svc.Key, p), NodePort: nodePort}
			u.Dests = append(u.Dests, netip.AddrPortFrom(clusterIP, p.Port))
			for _, a := range external {
				u.Dests = append(u.Dests, netip.AddrPortFrom(a, p.Port))
			}
			for _, e := range reach {
				u.Endpoints = append(u.Endpoints, e.addr.Addr())
			}
			slices.SortFunc(u.Endpoints, netip.Addr.Compare)
			r.UDP = append(r.UDP, u)
		}
	}
	if svc.ExternalLocal && svc.HealthCheckNodePort != 0 {
		r.HealthCheckNodePort = svc.HealthCheckNodePort
		r.LocalEndpoints = len(localReady)
	}
	return r
}

// compact moves r's strings into one string (two when a name occurs in no rule)
// and its rule lists into one array. The Ruleset keeps the rules of every service
// for the life of the proxier: at 10k services with 5 endpoints each, ~30 small
// allocations per service became ~20 MB of live heap, more again in the holes they
// leave among the garbage of a full sync. Chain, set and conntrack names are not
// copied at all where a rule, a map value or another name already holds their
// bytes ("goto ep-…", "@aff-…", "svc-<id>" for the UDP id <id>).
func (r *ServiceRules) compact() {
	type chain struct {
		name  string
		rules []string
	}
	chains := make([]chain, 0, len(r.Chains))
	var nRules, size int
	for name, rules := range r.Chains {
		chains = append(chains, chain{name, rules})
		nRules += len(rules)
		for _, rule := range rules {
			size += len(rule)
		}
	}
	for _, e := range r.Elements {
		size += len(e.Key) + len(e.Value) + len(e.Comment)
	}
	buf := make([]byte, 0, size)
	for _, c := range chains {
		for _, rule := range c.rules {
			buf = append(buf, rule...)
		}
	}
	for _, e := range r.Elements {
		buf = append(buf, e.Key...)
		buf = append(buf, e.Value...)
		buf = append(buf, e.Comment...)
	}
	text := string(buf)
	off := 0
	next := func(s string) string {
		t := text[off : off+len(s)]
		off += len(s)
		return t
	}
	var extra strings.Builder
	var extras []string // names that are not in text, in extra's order
	name := func(s string) string {
		if i := strings.Index(text, s); i >= 0 {
			return text[i : i+len(s)]
		}
		extra.WriteString(s)
		extras = append(extras, s)
		return s // replaced below
	}

	all := make([]string, nRules)
	var chainNames []string
	if len(chains) > 0 {
		chainNames = make([]string, len(chains))
	}
	i := 0
	for j, c := range chains {
		for _, rule := range c.rules {
			all[i] = next(rule)
			i++
		}
		chainNames[j] = name(c.name)
	}
	for j := range r.Elements {
		e := &r.Elements[j]
		e.Key, e.Value, e.Comment = next(e.Key), next(e.Value), next(e.Comment)
	}
	affinity := make([]string, 0, len(r.Affinity))
	for set := range r.Affinity {
		affinity = append(affinity, set)
	}
	affNames := make([]string, len(affinity))
	for j, set := range affinity {
		affNames[j] = name(set)
	}
	for j := range r.UDP {
		r.UDP[j].ID = name(r.UDP[j].ID)
	}

	// Point the names that were not found into their own string.
	if len(extras) > 0 {
		et, eoff := extra.String(), 0
		resolve := map[string]string{}
		for _, s := range extras {
			if _, ok := resolve[s]; !ok {
				resolve[s] = et[eoff : eoff+len(s)]
			}
			eoff += len(s)
		}
		for j := range chainNames {
			if t, ok := resolve[chainNames[j]]; ok {
				chainNames[j] = t
			}
		}
		for j := range affNames {
			if t, ok := resolve[affNames[j]]; ok {
				affNames[j] = t
			}
		}
		for j := range r.UDP {
			if t, ok := resolve[r.UDP[j].ID]; ok {
				r.UDP[j].ID = t
			}
		}
	}

	var newChains map[string][]string
	if len(chains) > 0 {
		newChains = make(map[string][]string, len(chains))
	}
	i = 0
	for j, c := range chains {
		// Capacity ends with the chain, so appending to one list cannot
		// overwrite the next.
		newChains[chainNames[j]] = all[i : i+len(c.rules) : i+len(c.rules)]
		i += len(c.rules)
	}
	var newAffinity map[string]time.Duration
	if len(affinity) > 0 {
		newAffinity = make(map[string]time.Duration, len(affinity))
		for j, set := range affinity {
			newAffinity[affNames[j]] = r.Affinity[set]
		}
	}
	r.Chains, r.Affinity = newChains, newAffinity
}

func slices2(a, b []netip.Addr) []netip.Addr {
	return append(append([]netip.Addr(nil), a...), b...)
}
