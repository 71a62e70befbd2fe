package zone

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// records maps lowercase fully qualified owner names to the records one source (a service, a namespace, the zone
// itself) contributes there. An empty slice still makes the name exist.
type records map[string][]dns.RR

func (r records) add(rr dns.RR) {
	n := rr.Header().Name
	r[n] = append(r[n], rr)
}

func (r records) touch(name string) {
	if _, ok := r[name]; !ok {
		r[name] = nil
	}
}

func (c *Config) hdr(name string, t uint16) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: c.TTL}
}

func (c *Config) addr(name string, a netip.Addr) dns.RR {
	a = a.Unmap()
	if a.Is4() {
		return &dns.A{Hdr: c.hdr(name, dns.TypeA), A: a.AsSlice()}
	}
	return &dns.AAAA{Hdr: c.hdr(name, dns.TypeAAAA), AAAA: a.AsSlice()}
}

func (c *Config) ptr(a netip.Addr, target string) dns.RR {
	return &dns.PTR{Hdr: c.hdr(reverseName(a), dns.TypePTR), Ptr: target}
}

// serviceRecords builds everything one service contributes (spec sections 2.3 to 2.5).
func (c *Config) serviceRecords(svc *Service, groups []EndpointGroup) records {
	r := records{}
	ns := strings.ToLower(svc.Namespace)
	base := strings.ToLower(svc.Name) + "." + ns + ".svc." + c.Domain
	c.namespaceRecords(r, ns)

	switch svc.Type {
	case ClusterIP:
		for _, ip := range svc.ClusterIPs {
			r.add(c.addr(base, ip))
			r.add(c.ptr(ip, base))
		}
		for _, p := range svc.Ports {
			if p.Name == "" {
				continue
			}
			srvName := "_" + strings.ToLower(p.Name) + "." + p.protoLabel() + "." + base
			r.add(&dns.SRV{Hdr: c.hdr(srvName, dns.TypeSRV), Priority: 0, Weight: 100, Port: p.Port, Target: base})
		}
	case ExternalName:
		target, _ := checkName(svc.ExternalName) // validated
		r.add(&dns.CNAME{Hdr: c.hdr(base, dns.TypeCNAME), Target: target})
		for _, p := range svc.Ports {
			if p.Name == "" {
				continue
			}
			srvName := "_" + strings.ToLower(p.Name) + "." + p.protoLabel() + "." + base
			r.add(&dns.SRV{Hdr: c.hdr(srvName, dns.TypeSRV), Priority: 0, Weight: 100, Port: p.Port, Target: target})
		}
	case Headless:
		c.headlessRecords(r, base, groups)
	}
	c.addAncestors(r)
	return r
}

func (c *Config) headlessRecords(r records, base string, groups []EndpointGroup) {
	seenBase := map[netip.Addr]bool{}
	seenHost := map[string]bool{}
	srvs := map[string][]*dns.SRV{}
	var srvOrder []string
	for _, g := range groups {
		for _, ep := range g.Endpoints {
			if !ep.Ready {
				continue
			}
			for _, a := range ep.Addresses {
				a = a.Unmap()
				if !a.IsValid() {
					continue
				}
				host := strings.ToLower(ep.Hostname)
				if host == "" {
					host = dashed(a)
				}
				hostName := host + "." + base
				if !seenBase[a] {
					seenBase[a] = true
					r.add(c.addr(base, a))
				}
				if k := hostName + a.String(); !seenHost[k] {
					seenHost[k] = true
					r.add(c.addr(hostName, a))
					r.add(c.ptr(a, hostName))
				}
				for _, p := range g.Ports {
					if p.Name == "" {
						continue
					}
					srvName := "_" + strings.ToLower(p.Name) + "." + p.protoLabel() + "." + base
					dup := slices.ContainsFunc(srvs[srvName], func(s *dns.SRV) bool {
						return s.Target == hostName && s.Port == p.Port
					})
					if dup {
						continue
					}
					if srvs[srvName] == nil {
						srvOrder = append(srvOrder, srvName)
					}
					srvs[srvName] = append(srvs[srvName], &dns.SRV{Hdr: c.hdr(srvName, dns.TypeSRV), Port: p.Port, Target: hostName})
				}
			}
		}
	}
	for _, n := range srvOrder {
		// Equal weights summing to about 100, as RFC 2782 clients pick by weight.
		w := uint16(max(1, 100/len(srvs[n])))
		for _, s := range srvs[n] {
			s.Weight = w
			r.add(s)
		}
	}
}

// namespaceRecords makes <ns>.svc.<zone> and <ns>.pod.<zone> exist.
func (c *Config) namespaceRecords(r records, ns string) {
	r.touch(ns + ".svc." + c.Domain)
	r.touch(ns + ".pod." + c.Domain)
}

// staticRecords are the zone's own records; the apex SOA is added per snapshot (its serial changes).
func (c *Config) staticRecords() records {
	r := records{}
	r.add(&dns.NS{Hdr: c.hdr(c.Domain, dns.TypeNS), Ns: c.nsName()})
	r.add(&dns.TXT{Hdr: c.hdr("dns-version."+c.Domain, dns.TypeTXT), Txt: []string{SchemaVersion}})
	r.touch(c.nsName())
	for _, a := range c.NameserverAddrs {
		r.add(c.addr(c.nsName(), a))
	}
	r.touch("svc." + c.Domain)
	r.touch("pod." + c.Domain)
	c.addAncestors(r)
	return r
}

// SchemaVersion is the version of the DNS specification implemented, served at dns-version.<zone>.
const SchemaVersion = "1.1.0"

func (c *Config) nsName() string { return "ns.dns." + c.Domain }

// addAncestors makes every name between a record and the zone apex exist (empty non-terminals answer NODATA, not
// NXDOMAIN, RFC 8020).
func (c *Config) addAncestors(r records) {
	for n := range r {
		if !strings.HasSuffix(n, "."+c.Domain) {
			continue
		}
		for p := parent(n); p != c.Domain && len(p) > len(c.Domain); p = parent(p) {
			r.touch(p)
		}
	}
}

func parent(n string) string {
	i := strings.IndexByte(n, '.')
	if i < 0 || i == len(n)-1 {
		return "."
	}
	return n[i+1:]
}

func (c *Config) soa(apex string, serial uint32) *dns.SOA {
	return &dns.SOA{
		Hdr:     dns.RR_Header{Name: apex, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: c.NegativeTTL},
		Ns:      c.nsName(),
		Mbox:    "hostmaster." + c.Domain,
		Serial:  serial,
		Refresh: 7200,
		Retry:   1800,
		Expire:  86400,
		Minttl:  c.NegativeTTL,
	}
}

// apexOf names the zone whose SOA goes with a name: the cluster domain, the reverse zone of a configured CIDR, or
// the top reverse zone.
func (c *Config) apexOf(name string) string {
	if name == c.Domain || strings.HasSuffix(name, "."+c.Domain) {
		return c.Domain
	}
	if a, ok := parseReverse(name); ok {
		for _, p := range c.ReverseCIDRs {
			if p.Contains(a) {
				return reverseZone(p)
			}
		}
	}
	if strings.HasSuffix(name, "ip6.arpa.") {
		return "ip6.arpa."
	}
	return "in-addr.arpa."
}
