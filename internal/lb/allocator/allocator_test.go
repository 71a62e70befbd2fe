package allocator

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"

	"edgenet.io/edgenet/internal/computenet"
)

func TestRequestedAddresses(t *testing.T) {
	a := newAlloc(t,
		Pool{Name: "test", AutoAssign: true, Ranges: ranges(t, "1.2.3.4/31", "1000::4/127")},
		Pool{Name: "buggy", AutoAssign: true, AvoidBuggyIPs: true, Ranges: ranges(t, "1.2.4.0/24", "1000::4:0/120")},
		Pool{Name: "manual", Ranges: ranges(t, "1.2.9.0/24")},
		Pool{Name: "team", AutoAssign: true, Ranges: ranges(t, "1.2.5.0/24"),
			NamespaceSelector: &Selector{MatchLabels: map[string]string{namespaceNameLabel: "team-a"}}},
		Pool{Name: "web", AutoAssign: true, Ranges: ranges(t, "1.2.6.0/24"),
			ServiceSelector: &Selector{MatchLabels: map[string]string{"app": "web"}}},
	)
	req := func(key string, ips ...string) Service {
		s := svc4(key)
		s.Requested = addrs(ips...)
		for _, ip := range s.Requested {
			if ip.Is6() {
				s.Families, s.Policy = []Family{IPv4, IPv6}, PreferDualStack
				if len(ips) == 1 {
					s.Families = []Family{IPv6}
					s.Policy = SingleStack
				}
			}
		}
		return s
	}
	share := func(s Service, key, backend string, p ...string) Service {
		s.SharingKey, s.Backend, s.Ports = key, backend, ports(p...)
		return s
	}
	run(t, a, []step{
		assignStep("s1 gets the address it asks for", req("ns/s1", "1.2.3.4"), "1.2.3.4"),
		assignStep("s1 again: same address", req("ns/s1", "1.2.3.4"), "1.2.3.4"),
		failStep("s2 cannot take s1's address", req("ns/s2", "1.2.3.4"), ErrRequestedIPTaken, "in use by ns/s1, which does not allow sharing"),
		assignStep("s2 takes the other one", req("ns/s2", "1.2.3.5"), "1.2.3.5"),
		failStep("s1 cannot move onto s2's", req("ns/s1", "1.2.3.5"), ErrRequestedIPTaken, "in use by ns/s2"),
		{desc: "s1 releases", release: "ns/s1"},
		assignStep("s2 moves to s1's former address", req("ns/s2", "1.2.3.4"), "1.2.3.4"),
		assignStep("s1 takes s2's former address", req("ns/s1", "1.2.3.5"), "1.2.3.5"),
		failStep("an address outside every pool", req("ns/s3", "10.0.0.1"), ErrRequestedIPOutsidePools, "10.0.0.1 is not in any address pool"),
		failStep(".0 in a pool avoiding buggy addresses", req("ns/s3", "1.2.4.0"), ErrRequestedIPOutsidePools, `pool "buggy" avoids addresses ending in .0 and .255`),
		failStep(".255 likewise", req("ns/s3", "1.2.4.255"), ErrRequestedIPOutsidePools, "avoids"),
		assignStep("s3 takes .254 of that pool", req("ns/s3", "1.2.4.254"), "1.2.4.254"),
		assignStep("a pool without auto-assign gives requested addresses", req("ns/s9", "1.2.9.9"), "1.2.9.9"),
		failStep("a pinned pool refuses another namespace", req("ns/s5", "1.2.5.10"), ErrNoPoolForService,
			`requested address 1.2.5.10 is in pool "team", which this Service may not use: it admits only namespaces matching kubernetes.io/metadata.name=team-a (namespace "ns" does not)`),
		assignStep("and admits its own", req("team-a/s5", "1.2.5.10"), "1.2.5.10"),
		failStep("a service-selector pool refuses unlabelled Services", req("ns/s6", "1.2.6.10"), ErrNoPoolForService, "admits only Services labelled app=web"),
		assignStep("and admits labelled ones", with(req("ns/s6", "1.2.6.10"), func(s *Service) { s.Labels = map[string]string{"app": "web"} }), "1.2.6.10"),
		failStep("requested address not in the requested pool", with(req("ns/s7", "1.2.3.4"), func(s *Service) { s.RequestedPool = "manual" }),
			ErrRequestedIPOutsidePools, `1.2.3.4 is in pool "test", not in pool "manual" named by edgenet.io/address-pool`),

		// Sharing.
		assignStep("s4 takes an address, sharing allowed", share(req("ns/s4", "1.2.4.3"), "sharing", "backend", "tcp/80"), "1.2.4.3"),
		assignStep("s4, sole user, changes its key in place", share(req("ns/s4", "1.2.4.3"), "share", "backend", "tcp/80"), "1.2.4.3"),
		failStep("s3 clashes on port", share(req("ns/s3", "1.2.4.3"), "share", "backend", "tcp/80"), ErrSharingConflict, "port TCP/80 on 1.2.4.3 is already used by ns/s4"),
		failStep("s3 has another key", share(req("ns/s3", "1.2.4.3"), "othershare", "backend", "tcp/443"), ErrSharingConflict,
			`address 1.2.4.3 is shared by ns/s4 under edgenet.io/allow-shared-ip "share", but this Service's key is "othershare"`),
		failStep("s3 has another backend", share(req("ns/s3", "1.2.4.3"), "share", "otherbackend", "tcp/443"), ErrSharingConflict,
			`used by ns/s4 with backend "backend", this Service has backend "otherbackend"`),
		failStep("s3 sets no key", share(req("ns/s3", "1.2.4.3"), "", "backend", "tcp/443"), ErrRequestedIPTaken,
			`to share it, set the same edgenet.io/allow-shared-ip on this Service (theirs is "share")`),
		assignStep("s3 shares s4's address", share(req("ns/s3", "1.2.4.3"), "share", "backend", "tcp/443"), "1.2.4.3"),
		assignStep("s3 changes its ports in place", share(req("ns/s3", "1.2.4.3"), "share", "backend", "udp/53"), "1.2.4.3"),
		failStep("s3 cannot change its key while sharing", share(req("ns/s3", "1.2.4.3"), "othershare", "backend", "udp/53"), ErrSharingConflict, `shared by ns/s4 under edgenet.io/allow-shared-ip "share"`),
		failStep("s3 cannot change its backend while sharing", share(req("ns/s3", "1.2.4.3"), "share", "otherbackend", "udp/53"), ErrSharingConflict, "backend"),
		failStep("s3 cannot take s4's port while sharing", share(req("ns/s3", "1.2.4.3"), "share", "backend", "tcp/80"), ErrSharingConflict, "port TCP/80"),
		assignStep("s4 moves to s3's former address, s3 keeps the shared one alone", share(req("ns/s4", "1.2.4.254"), "", "", "tcp/80"), "1.2.4.254"),
		assignStep("s3 may now change its key: it is the sole user", share(req("ns/s3", "1.2.4.3"), "solo", "", "udp/53"), "1.2.4.3"),

		// IPv6 and dual-stack requests.
		assignStep("v1 asks for an IPv6 address", req("ns/v1", "1000::4"), "1000::4"),
		failStep("v2 cannot take it", req("ns/v2", "1000::4"), ErrRequestedIPTaken, "1000::4 is in use by ns/v1"),
		assignStep("d1 asks for one address of each family", req("ns/d1", "1000::4:5", "1.2.9.20"), "1.2.9.20", "1000::4:5"),
		failStep("an IPv6 address for an IPv4-only Service", with(svc4("ns/x"), func(s *Service) { s.Requested = addrs("1000::4:9") }),
			ErrFamilyUnavailable, "requested address 1000::4:9 is IPv6, but the Service's ipFamilies are [IPv4]"),
		failStep("RequireDualStack with one address", with(svcDual("ns/x", RequireDualStack), func(s *Service) { s.Requested = addrs("1.2.9.30") }),
			ErrFamilyUnavailable, "RequireDualStack needs an IPv4 and an IPv6 address"),
		failStep("two addresses of one family", with(svcDual("ns/x", PreferDualStack), func(s *Service) { s.Requested = addrs("1.2.9.30", "1.2.9.31") }),
			ErrInvalidService, "two IPv4 addresses (1.2.9.30, 1.2.9.31)"),
	})
}

func TestAutoAssignment(t *testing.T) {
	a := newAlloc(t,
		Pool{Name: "test", AutoAssign: true, Ranges: ranges(t, "1.2.3.10/31", "1.2.3.4/31", "1000::/127", "2000::/127")},
	)
	shared := func(key string, p string) Service {
		return with(svc4(key), func(s *Service) { s.SharingKey, s.Ports = "share", ports(p) })
	}
	run(t, a, []step{
		assignStep("s1 gets the lowest address", svc4("ns/s1"), "1.2.3.4"),
		assignStep("s2 the next", svc4("ns/s2"), "1.2.3.5"),
		assignStep("s3 continues in the next range", svc4("ns/s3"), "1.2.3.10"),
		assignStep("s4 the last", svc4("ns/s4"), "1.2.3.11"),
		failStep("s5 finds the pool exhausted", svc4("ns/s5"), ErrPoolExhausted, `no free IPv4 address in pool "test" (4 in use, 0 free)`),
		{desc: "s1 releases", release: "ns/s1"},
		assignStep("s5 reuses s1's address", svc4("ns/s5"), "1.2.3.4"),
		failStep("s6 still finds none", svc4("ns/s6"), ErrPoolExhausted, "4 in use, 0 free"),
		{desc: "s5 releases to come back sharing", release: "ns/s5"},
		assignStep("s5 takes the free address, sharing allowed", shared("ns/s5", "tcp/80"), "1.2.3.4"),
		assignStep("s6 joins it on another port", shared("ns/s6", "tcp/443"), "1.2.3.4"),
		failStep("s7 clashes on port and the pool is full", shared("ns/s7", "tcp/80"), ErrPoolExhausted,
			`no address shared under edgenet.io/allow-shared-ip "share" accepts this Service's ports and backend`),
		assignStep("s1 gets an IPv6 address", svc6("ns/s1"), "1000::"),
		assignStep("s1 keeps it", svc6("ns/s1"), "1000::"),
		failStep("a Service changing its sharing key against its co-tenant", with(shared("ns/s6", "tcp/443"), func(s *Service) { s.SharingKey = "other" }),
			ErrSharingConflict, `shared by ns/s5 under edgenet.io/allow-shared-ip "share", but this Service's key is "other"`),
		failStep("or dropping it", with(shared("ns/s6", "tcp/443"), func(s *Service) { s.SharingKey = "" }),
			ErrSharingConflict, "cannot drop the key while keeping the address"),
	})
	if used, free := a.Usage("test"); used != 5 || free != 3 {
		t.Errorf("Usage = %d used, %d free; want 5, 3 (a shared address counts once)", used, free)
	}
	if err := errorsOf(a.Assign(svc4("ns/x"))); !IsPoolExhausted(err) {
		t.Errorf("IsPoolExhausted(%v) = false", err)
	}
}

func errorsOf(_ Assignment, err error) error { return err }

func TestSharingPrefersTheGroupAddress(t *testing.T) {
	a := newAlloc(t, Pool{Name: "p", AutoAssign: true, Ranges: ranges(t, "10.0.0.0/29")})
	web := func(key, port string) Service {
		return with(svc4(key), func(s *Service) { s.SharingKey, s.Ports = "web", ports(port) })
	}
	run(t, a, []step{
		assignStep("a lone Service", svc4("ns/lone"), "10.0.0.0"),
		assignStep("the first of a group takes a free address", web("ns/http", "tcp/80"), "10.0.0.1"),
		assignStep("another Service", svc4("ns/other"), "10.0.0.2"),
		assignStep("the group's second member joins the group's address, not the lowest free", web("ns/https", "tcp/443"), "10.0.0.1"),
		assignStep("a member clashing on port gets a free address", web("ns/http2", "tcp/80"), "10.0.0.3"),
		assignStep("the group's next member joins the lowest group address that fits", web("ns/dns", "udp/53"), "10.0.0.1"),
		assignStep("another http joins the second group address", web("ns/http3", "tcp/8080"), "10.0.0.1"),
		assignStep("a backend differing from the group's gets a free address",
			with(web("ns/local", "tcp/9000"), func(s *Service) { s.Backend = "app=local" }), "10.0.0.4"),
	})
}

func TestDualStack(t *testing.T) {
	both := Pool{Name: "both", AutoAssign: true, Ranges: ranges(t, "10.0.0.0/31", "fd00::/127")}
	v4only := Pool{Name: "v4", AutoAssign: true, Priority: 10, Ranges: ranges(t, "10.1.0.0/31")}
	v6only := Pool{Name: "v6", AutoAssign: true, Ranges: ranges(t, "fd01::/127")}

	t.Run("policies", func(t *testing.T) {
		a := newAlloc(t, both)
		run(t, a, []step{
			assignStep("RequireDualStack gets both", svcDual("ns/r1", RequireDualStack), "10.0.0.0", "fd00::"),
			assignStep("the order follows ipFamilies", svcDual("ns/r2", RequireDualStack, IPv6, IPv4), "fd00::1", "10.0.0.1"),
			failStep("RequireDualStack on an exhausted pool", svcDual("ns/r3", RequireDualStack), ErrPoolExhausted, `no free IPv4 address in pool "both" (2 in use, 0 free)`),
			failStep("SingleStack IPv6 likewise", svc6("ns/s6"), ErrPoolExhausted, "no free IPv6 address"),
			{desc: "r1 releases", release: "ns/r1"},
			assignStep("SingleStack IPv6", svc6("ns/s6"), "fd00::"),
			assignStep("PreferDualStack settles for the family left", svcDual("ns/p1", PreferDualStack), "10.0.0.0"),
			{desc: "r2 releases", release: "ns/r2"},
			assignStep("PreferDualStack fills in the missing family later and keeps the first", svcDual("ns/p1", PreferDualStack), "10.0.0.0", "fd00::1"),
			assignStep("dropping a family releases its address", svcDual("ns/p1", SingleStack, IPv4), "10.0.0.0"),
			assignStep("which another Service can take", svc6("ns/s7"), "fd00::1"),
		})
	})
	t.Run("family unavailable", func(t *testing.T) {
		a := newAlloc(t, v4only)
		run(t, a, []step{
			failStep("RequireDualStack without an IPv6 pool", svcDual("ns/r", RequireDualStack), ErrFamilyUnavailable,
				`no IPv6 address: the address pools this Service may use ("v4") have no IPv6 range (ipFamilies [IPv4 IPv6], ipFamilyPolicy RequireDualStack)`),
			failStep("SingleStack IPv6", svc6("ns/s"), ErrFamilyUnavailable, "have no IPv6 range"),
			assignStep("PreferDualStack gets IPv4 alone", svcDual("ns/p", PreferDualStack), "10.1.0.0"),
			assignStep("PreferDualStack with IPv6 first gets IPv4 alone", svcDual("ns/p6", PreferDualStack, IPv6, IPv4), "10.1.0.1"),
			failStep("PreferDualStack when nothing is left reports exhaustion, not the missing family",
				svcDual("ns/p2", PreferDualStack, IPv6, IPv4), ErrPoolExhausted, "no free IPv4 address"),
			{desc: "an IPv6 pool appears", setPools: []Pool{v4only, v6only}},
			assignStep("p gets its IPv6 half", svcDual("ns/p", PreferDualStack), "10.1.0.0", "fd01::"),
		})
	})
	t.Run("halves from one pool when possible", func(t *testing.T) {
		// v4 has the higher priority but cannot serve IPv6; both can serve the pair.
		a := newAlloc(t, v4only, both)
		run(t, a, []step{
			assignStep("the pair comes from one pool", svcDual("ns/r1", RequireDualStack), "10.0.0.0", "fd00::"),
			assignStep("single stack follows priority", svc4("ns/s1"), "10.1.0.0"),
			assignStep("the pair again from one pool", svcDual("ns/r2", RequireDualStack), "10.0.0.1", "fd00::1"),
		})
		b := newAlloc(t, v4only, v6only)
		run(t, b, []step{
			assignStep("else the halves come from different pools", svcDual("ns/r1", RequireDualStack), "10.1.0.0", "fd01::"),
		})
		got, _ := b.Get("ns/r1")
		if want := []AssignedIP{{netip.MustParseAddr("10.1.0.0"), "v4"}, {netip.MustParseAddr("fd01::"), "v6"}}; !slices.Equal(got.IPs, want) {
			t.Errorf("Get = %v, want %v", got.IPs, want)
		}
	})
}

func TestPoolChoice(t *testing.T) {
	pools := []Pool{
		{Name: "default", AutoAssign: true, Ranges: ranges(t, "10.0.0.0/24")},
		{Name: "another", AutoAssign: true, Ranges: ranges(t, "10.9.0.0/24")},
		{Name: "team", AutoAssign: true, Ranges: ranges(t, "10.1.0.0/31"),
			NamespaceSelector: &Selector{MatchExpressions: []Requirement{{Key: namespaceNameLabel, Operator: In, Values: []string{"team-a", "team-b"}}}}},
		{Name: "prod", AutoAssign: true, Ranges: ranges(t, "10.2.0.0/24"),
			NamespaceSelector: &Selector{MatchLabels: map[string]string{"env": "prod"}}},
		{Name: "gold", AutoAssign: true, Priority: 10, Ranges: ranges(t, "10.3.0.0/24"),
			ServiceSelector: &Selector{MatchLabels: map[string]string{"tier": "gold"}}},
		{Name: "manual", Ranges: ranges(t, "10.4.0.0/24")},
	}
	a := newAlloc(t, pools...)
	labelled := func(s Service, kv ...string) Service {
		s.Labels = map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			s.Labels[kv[i]] = kv[i+1]
		}
		return s
	}
	inProd := func(s Service) Service { s.NamespaceLabels = map[string]string{"env": "prod"}; return s }
	fromPool := func(s Service, p string) Service { s.RequestedPool = p; return s }
	run(t, a, []step{
		assignStep("an ordinary Service: equal priorities go by name", svc4("ns/a"), "10.9.0.0"),
		assignStep("a pinned pool wins over unpinned ones of equal priority", svc4("team-a/a"), "10.1.0.0"),
		assignStep("namespace labels pin too", inProd(svc4("shop/a")), "10.2.0.0"),
		assignStep("priority wins over pinning", inProd(labelled(svc4("shop/b"), "tier", "gold")), "10.3.0.0"),
		assignStep("a pinned pool fills up", svc4("team-b/a"), "10.1.0.1"),
		assignStep("then the Service falls back to the general pools", svc4("team-b/b"), "10.9.0.1"),
		assignStep("edgenet.io/address-pool picks a pool without auto-assign", fromPool(svc4("ns/m"), "manual"), "10.4.0.0"),
		assignStep("or any pool", fromPool(svc4("ns/d"), "default"), "10.0.0.0"),
		failStep("but not a pool that does not exist", fromPool(svc4("ns/x"), "silver"), ErrNoPoolForService,
			`pool "silver" named by edgenet.io/address-pool does not exist`),
		failStep("nor one that refuses the Service", fromPool(svc4("ns/x"), "gold"), ErrNoPoolForService,
			`pool "gold" named by edgenet.io/address-pool may not be used by this Service: admits only Services labelled tier=gold`),
		failStep("nor a full one, even if others have room", fromPool(svc4("team-a/x"), "team"), ErrPoolExhausted, `no free IPv4 address in pool "team" (2 in use, 0 free)`),
		assignStep("changing edgenet.io/address-pool moves the Service", fromPool(svc4("ns/a"), "default"), "10.0.0.1"),
		assignStep("dropping the annotation keeps the address", svc4("ns/a"), "10.0.0.1"),
	})

	b := newAlloc(t, pools[2], pools[4], pools[5])
	run(t, b, []step{
		failStep("no pool admits the Service", svc4("ns/x"), ErrNoPoolForService,
			`no address pool may be used by this Service: pool "gold" admits only Services labelled tier=gold; `+
				`pool "team" admits only namespaces matching kubernetes.io/metadata.name in (team-a,team-b) (namespace "ns" does not); `+
				`pool "manual" gives addresses only on request (auto-assign off)`),
	})
	c := New()
	if _, err := c.Assign(svc4("ns/x")); !IsNoPoolForService(err) || !strings.Contains(err.Error(), "no address pools are configured") {
		t.Errorf("Assign with no pools: %v", err)
	}
}

func TestAvoidBuggyIPs(t *testing.T) {
	a := newAlloc(t, Pool{Name: "p", AutoAssign: true, AvoidBuggyIPs: true, Ranges: ranges(t, "10.0.0.254-10.0.2.0", "fd00::ff/128")})
	if used, free := a.Usage("p"); used != 0 || free != 256 {
		t.Fatalf("Usage = %d, %d; want 0 used, 256 free (.254, 10.0.1.1-.254, the IPv6 address)", used, free)
	}
	run(t, a, []step{
		assignStep("the first address is not buggy", svc4("ns/a"), "10.0.0.254"),
		assignStep(".255 and .0 are skipped", svc4("ns/b"), "10.0.1.1"),
		assignStep("IPv6 has no such rule", svc6("ns/c"), "fd00::ff"),
	})
	for i := 2; i <= 254; i++ {
		if _, err := a.Assign(svc4(fmt.Sprintf("ns/n%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	run(t, a, []step{
		failStep("10.0.2.0 at the end is never given", svc4("ns/z"), ErrPoolExhausted, "(255 in use, 0 free)"),
	})
	// A /24 with buggy addresses avoided holds 254.
	b := newAlloc(t, Pool{Name: "p", AvoidBuggyIPs: true, Ranges: ranges(t, "10.0.0.0/24", "10.0.1.0/25", "10.0.2.128/25")})
	if _, free := b.Usage("p"); free != 254+127+127 {
		t.Errorf("free = %d, want 508", free)
	}

	// Switching AvoidBuggyIPs on takes .0 out of the pool but not from its holder.
	plain := Pool{Name: "p", AutoAssign: true, Ranges: ranges(t, "10.0.0.0/30")}
	c := newAlloc(t, plain)
	run(t, c, []step{assignStep("a gets .0", svc4("ns/a"), "10.0.0.0")})
	rep, err := c.SetPools([]Pool{with2(plain, func(p *Pool) { p.AvoidBuggyIPs = true })})
	if err != nil {
		t.Fatal(err)
	}
	if want := []Orphan{{"ns/a", netip.MustParseAddr("10.0.0.0"), "p"}}; !slices.Equal(rep.Orphaned, want) {
		t.Errorf("Orphaned = %v, want %v", rep.Orphaned, want)
	}
	run(t, c, []step{
		assignStep("a keeps .0", svc4("ns/a"), "10.0.0.0"),
		assignStep("b gets .1", svc4("ns/b"), "10.0.0.1"),
	})
}

func TestPoolEdits(t *testing.T) {
	small := Pool{Name: "default", AutoAssign: true, Ranges: ranges(t, "10.0.0.0/30")}
	grown := Pool{Name: "default", AutoAssign: true, Ranges: ranges(t, "10.0.0.0/29")}
	shrunk := Pool{Name: "default", AutoAssign: true, Ranges: ranges(t, "10.0.0.0/31")}
	other := Pool{Name: "other", AutoAssign: true, Ranges: ranges(t, "10.1.0.0/30")}
	a := newAlloc(t, small, other)
	for _, k := range []string{"ns/a", "ns/b", "ns/c", "ns/d"} {
		if _, err := a.Assign(svc4(k)); err != nil {
			t.Fatal(err)
		}
	}
	get := func(k string) Assignment { as, _ := a.Get(k); return as }

	rep, err := a.SetPools([]Pool{grown, other})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.Changed, []string{"default"}) || len(rep.Orphaned) != 0 {
		t.Errorf("grow report = %+v", rep)
	}
	run(t, a, []step{
		assignStep("growing keeps addresses", svc4("ns/d"), "10.0.0.3"),
		assignStep("and adds room", svc4("ns/e"), "10.0.0.4"),
	})

	rep, err = a.SetPools([]Pool{shrunk, other})
	if err != nil {
		t.Fatal(err)
	}
	wantOrphans := []Orphan{{"ns/c", netip.MustParseAddr("10.0.0.2"), "default"}, {"ns/d", netip.MustParseAddr("10.0.0.3"), "default"}, {"ns/e", netip.MustParseAddr("10.0.0.4"), "default"}}
	if !slices.Equal(rep.Orphaned, wantOrphans) {
		t.Errorf("shrink Orphaned = %v, want %v", rep.Orphaned, wantOrphans)
	}
	if w := rep.Warnings(); len(w) != 3 || !strings.Contains(w[0], `address 10.0.0.2 of ns/c is no longer in any pool (it was in "default"); ns/c keeps it`) {
		t.Errorf("Warnings = %q", w)
	}
	run(t, a, []step{
		assignStep("shrinking keeps the address", svc4("ns/c"), "10.0.0.2"),
		assignStep("also when asked for it by address", with(svc4("ns/c"), func(s *Service) { s.Requested = addrs("10.0.0.2") }), "10.0.0.2"),
		failStep("but nobody else can ask for it", with(svc4("ns/z"), func(s *Service) { s.Requested = addrs("10.0.0.5") }), ErrRequestedIPOutsidePools, "not in any address pool"),
		assignStep("new Services go elsewhere", svc4("ns/f"), "10.1.0.0"),
	})
	if g := get("ns/c"); g.IPs[0].Pool != "" {
		t.Errorf("orphan reported in pool %q", g.IPs[0].Pool)
	}
	if used, free := a.Usage("default"); used != 2 || free != 0 {
		t.Errorf("Usage(default) = %d, %d; want 2, 0 (orphans do not count)", used, free)
	}
	if o := a.Orphans(); len(o) != 3 || o[0].Service != "ns/c" {
		t.Errorf("Orphans = %v", o)
	}
	a.Release("ns/e")

	rep, err = a.SetPools([]Pool{grown, other})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Readopted) != 2 || rep.Readopted[0].Pool != "default" {
		t.Errorf("Readopted = %v", rep.Readopted)
	}
	run(t, a, []step{
		assignStep("a readopted address is not given twice", svc4("ns/g"), "10.0.0.4"),
	})

	rep, err = a.SetPools([]Pool{other})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.Removed, []string{"default"}) || len(rep.Orphaned) != 5 {
		t.Errorf("delete report = %+v", rep)
	}
	if used, free := a.Usage("default"); used != 0 || free != 0 {
		t.Errorf("Usage of a deleted pool = %d, %d", used, free)
	}
	run(t, a, []step{
		assignStep("deleting the pool keeps addresses", svc4("ns/a"), "10.0.0.0"),
		{desc: "a releases", release: "ns/a"},
		assignStep("released, a gets an address from a pool", svc4("ns/a"), "10.1.0.1"),
	})
	if o := a.Orphans(); len(o) != 4 {
		t.Errorf("Orphans after release = %v", o)
	}

	rep, err = a.SetPools([]Pool{other, grown})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Orphaned) != 0 || len(rep.Readopted) != 4 || !slices.Equal(rep.Added, []string{"default"}) {
		t.Errorf("re-adding the pool: report = %+v", rep)
	}
}

func with2(p Pool, f func(*Pool)) Pool { f(&p); return p }

func TestSetPoolsRefusesBadConfig(t *testing.T) {
	good := Pool{Name: "p", AutoAssign: true, Ranges: ranges(t, "10.0.0.0/30")}
	a := newAlloc(t, good)
	if _, err := a.Assign(svc4("ns/a")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		pools []Pool
		want  string
	}{
		{"empty name", []Pool{{Ranges: ranges(t, "10.0.0.0/30")}}, "pool 0: empty name"},
		{"duplicate", []Pool{good, good}, `pool "p": name used twice`},
		{"no ranges", []Pool{{Name: "q"}}, `pool "q": no address ranges`},
		{"invalid range", []Pool{{Name: "r", Ranges: []computenet.Range{{}}}}, `pool "r": range 0 "" is not a valid range`},
		{"mapped range", []Pool{{Name: "m", Ranges: ranges(t, "::ffff:10.0.0.0/120")}}, `pool "m": range ::ffff:10.0.0.0-::ffff:10.0.0.255 is IPv4-mapped IPv6; write it as IPv4`},
		{"overlap across pools", []Pool{good, {Name: "q", Ranges: ranges(t, "10.0.0.3-10.0.0.9")}}, `range 10.0.0.0-10.0.0.3 of pool "p" overlaps range 10.0.0.3-10.0.0.9 of pool "q"`},
		{"overlap within a pool", []Pool{{Name: "q", Ranges: ranges(t, "fd00::/64", "fd00::5")}}, `overlaps range fd00::5 of pool "q"`},
		{"bad selector", []Pool{{Name: "q", Ranges: ranges(t, "10.0.0.0/30"), ServiceSelector: &Selector{MatchExpressions: []Requirement{{Key: "a", Operator: In}}}}},
			`pool "q": service selector: matchExpressions[0]: In needs at least one value`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := a.SetPools(tc.pools)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("SetPools error %v, want %q", err, tc.want)
			}
			if rep.Added != nil || rep.Orphaned != nil {
				t.Errorf("report on error: %+v", rep)
			}
			if used, free := a.Usage("p"); used != 1 || free != 3 {
				t.Errorf("state changed: Usage = %d, %d", used, free)
			}
			if o := a.Orphans(); len(o) != 0 {
				t.Errorf("state changed: orphans %v", o)
			}
		})
	}
}

func TestRestartReplay(t *testing.T) {
	pools := []Pool{
		{Name: "default", AutoAssign: true, AvoidBuggyIPs: true, Ranges: ranges(t, "10.0.0.0/24", "fd00::/64")},
		{Name: "manual", Ranges: ranges(t, "10.4.0.0/24")},
	}
	a := newAlloc(t, pools...)
	share := func(s Service, p string) Service { s.SharingKey, s.Ports = "web", ports(p); return s }
	specs := []Service{
		svc4("ns/a"), svc4("ns/b"), svc6("ns/c"),
		svcDual("ns/d", RequireDualStack), svcDual("ns/e", PreferDualStack, IPv6, IPv4),
		share(svc4("ns/http"), "tcp/80"), share(svc4("ns/https"), "tcp/443"),
		with(svc4("ns/m"), func(s *Service) { s.RequestedPool = "manual" }),
		with(svc4("ns/r"), func(s *Service) { s.Requested = addrs("10.0.0.77") }),
		svc4("ns/f"),
	}
	for _, s := range specs {
		if _, err := a.Assign(s); err != nil {
			t.Fatal(err)
		}
	}
	a.Release("ns/b") // leave a hole that a restart must not fill with a moved Service
	// Shrink so that ns/r's address is an orphan: a restart must keep it.
	shrunk := slices.Clone(pools)
	shrunk[0].Ranges = ranges(t, "10.0.0.0/26", "fd00::/64")
	if _, err := a.SetPools(shrunk); err != nil {
		t.Fatal(err)
	}
	before := a.Assignments()

	b := newAlloc(t, shrunk...)
	// Replay in reverse order, as the informer may list them in any order.
	for i := len(before) - 1; i >= 0; i-- {
		as := before[i]
		spec := specs[slices.IndexFunc(specs, func(s Service) bool { return s.Key == as.Service })]
		if _, err := b.Restore(spec, as.Addrs()); err != nil {
			t.Fatalf("Restore(%s, %v): %v", as.Service, as.Addrs(), err)
		}
	}
	if after := b.Assignments(); !equalAssignments(before, after) {
		t.Fatalf("after restore:\n%v\nwant\n%v", after, before)
	}
	if o := b.Orphans(); len(o) != 1 || o[0].Service != "ns/r" {
		t.Errorf("Orphans after restore = %v", o)
	}
	for _, s := range specs {
		if s.Key == "ns/b" {
			continue
		}
		got, err := b.Assign(s)
		want, _ := a.Get(s.Key)
		if err != nil || !slices.Equal(got.IPs, want.IPs) {
			t.Errorf("Assign(%s) after restart = %v, %v; want %v", s.Key, got.IPs, err, want.IPs)
		}
	}
	// Both allocators give the next Service the same address (b's hole).
	x, _ := a.Assign(svc4("ns/new"))
	y, _ := b.Assign(svc4("ns/new"))
	if !slices.Equal(x.IPs, y.IPs) || x.IPs[0].Addr != netip.MustParseAddr("10.0.0.2") {
		t.Errorf("next Service: before restart %v, after %v; want 10.0.0.2", x.IPs, y.IPs)
	}

	// Replaying conflicting statuses: the second claimant is refused.
	c := newAlloc(t, pools...)
	if _, err := c.Restore(svc4("ns/a"), addrs("10.0.0.1")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Restore(svc4("ns/b"), addrs("10.0.0.1")); !IsRequestedIPTaken(err) {
		t.Errorf("conflicting Restore: %v", err)
	}
	if _, err := c.Restore(svc4("ns/b"), nil); !IsInvalidService(err) {
		t.Errorf("Restore without addresses: %v", err)
	}
	// A Service whose request became invalid while the controller was down
	// still keeps what it holds; Assign then reports the bad request.
	bad := with(svc4("ns/c"), func(s *Service) { s.Requested = addrs("fd00::9") })
	if _, err := c.Restore(bad, addrs("10.0.0.2")); err != nil {
		t.Errorf("Restore with an invalid request: %v", err)
	}
	if _, err := c.Assign(bad); !IsFamilyUnavailable(err) {
		t.Errorf("Assign with an invalid request: %v", err)
	}
	if got, _ := c.Get("ns/c"); !slices.Equal(got.Addrs(), addrs("10.0.0.2")) {
		t.Errorf("ns/c holds %v after a failed Assign", got.Addrs())
	}
}

func TestInvalidService(t *testing.T) {
	a := newAlloc(t, Pool{Name: "p", AutoAssign: true, Ranges: ranges(t, "10.0.0.0/30", "fd00::/126")})
	for _, tc := range []struct {
		name string
		svc  Service
		want string
	}{
		{"no key", Service{Families: []Family{IPv4}}, "empty key"},
		{"no families", Service{Key: "ns/a"}, "no ipFamilies"},
		{"unknown family", Service{Key: "ns/a", Families: []Family{5}}, "unknown IP family Family(5)"},
		{"same family twice", Service{Key: "ns/a", Families: []Family{IPv4, IPv4}, Policy: PreferDualStack}, "must be one family or two different ones"},
		{"single stack with two", Service{Key: "ns/a", Families: []Family{IPv4, IPv6}}, "ipFamilyPolicy SingleStack with ipFamilies [IPv4 IPv6]"},
		{"require with one", Service{Key: "ns/a", Families: []Family{IPv4}, Policy: RequireDualStack}, "RequireDualStack with ipFamilies [IPv4]"},
		{"unknown policy", Service{Key: "ns/a", Families: []Family{IPv4}, Policy: 9}, "unknown ipFamilyPolicy FamilyPolicy(9)"},
		{"bad protocol", with(svc4("ns/a"), func(s *Service) { s.Ports = ports("icmp/1") }), "port ICMP/1: unknown protocol"},
		{"port zero", with(svc4("ns/a"), func(s *Service) { s.Ports = ports("tcp/0") }), "port TCP/0: port 0"},
		{"zone", with(svc6("ns/a"), func(s *Service) { s.Requested = addrs("fe80::1%eth0") }), "address fe80::1%eth0 has a zone"},
		{"mapped", with(svc6("ns/a"), func(s *Service) { s.Requested = addrs("::ffff:10.0.0.1") }), "is IPv4-mapped; use 10.0.0.1"},
		{"zero address", with(svc4("ns/a"), func(s *Service) { s.Requested = []netip.Addr{{}} }), "invalid address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := a.Assign(tc.svc)
			if !IsInvalidService(err) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Assign: %v, want InvalidService saying %q", err, tc.want)
			}
			if len(a.Assignments()) != 0 {
				t.Errorf("invalid Service changed state: %v", a.Assignments())
			}
		})
	}
}

func TestErrors(t *testing.T) {
	a := newAlloc(t, Pool{Name: "p", AutoAssign: true, Ranges: ranges(t, "10.0.0.0/32")})
	a.Assign(svc4("ns/a"))
	_, err := a.Assign(svc4("ns/b"))
	wrapped := fmt.Errorf("lb controller: sync service ns/b: %w", err)
	if !IsPoolExhausted(wrapped) || IsSharingConflict(wrapped) || !errors.Is(wrapped, ErrPoolExhausted) {
		t.Errorf("predicates on %v", wrapped)
	}
	if r, ok := ReasonOf(wrapped); !ok || r != ReasonPoolExhausted {
		t.Errorf("ReasonOf = %q, %v", r, ok)
	}
	var e *Error
	if !errors.As(wrapped, &e) || e.Service != "ns/b" || e.Message != `no free IPv4 address in pool "p" (1 in use, 0 free)` {
		t.Errorf("Error = %+v", e)
	}
	if got := err.Error(); got != `allocator: ns/b: no free IPv4 address in pool "p" (1 in use, 0 free)` {
		t.Errorf("Error() = %q", got)
	}
	if _, ok := ReasonOf(errors.New("other")); ok {
		t.Error("ReasonOf a foreign error")
	}
	if ErrPoolExhausted.Error() != "allocator: PoolExhausted" {
		t.Errorf("sentinel text %q", ErrPoolExhausted.Error())
	}
}

func TestUsageHugePools(t *testing.T) {
	a := newAlloc(t, Pool{Name: "p", AutoAssign: true, Ranges: ranges(t, "fd00::/64", "10.0.0.0/16")}, Pool{Name: "all", Ranges: ranges(t, "2001:db8::/32")})
	for i := range 3 {
		if _, err := a.Assign(svcDual(fmt.Sprintf("ns/%d", i), RequireDualStack)); err != nil {
			t.Fatal(err)
		}
	}
	if used, free := a.Usage("p"); used != 6 || free != math.MaxUint64 {
		t.Errorf("Usage(p) = %d, %d; want 6 and saturated", used, free)
	}
	if used, free := a.FamilyUsage("p", IPv4); used != 3 || free != 65536-3 {
		t.Errorf("FamilyUsage(p, IPv4) = %d, %d", used, free)
	}
	if used, free := a.FamilyUsage("p", IPv6); used != 3 || free != math.MaxUint64 {
		t.Errorf("FamilyUsage(p, IPv6) = %d, %d", used, free)
	}
	if used, free := a.Usage("all"); used != 0 || free != math.MaxUint64 {
		t.Errorf("Usage(all) = %d, %d; want saturated", used, free)
	}
	got, _ := a.Get("ns/2")
	if want := addrs("10.0.0.2", "fd00::2"); !slices.Equal(got.Addrs(), want) {
		t.Errorf("ns/2 = %v, want %v", got.Addrs(), want)
	}
}

func TestConcurrentUse(t *testing.T) {
	a := newAlloc(t, Pool{Name: "p", AutoAssign: true, Ranges: ranges(t, "10.0.0.0/24")})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 50 {
				k := fmt.Sprintf("ns/%d-%d", g, i)
				if _, err := a.Assign(svc4(k)); err != nil {
					t.Error(err)
				}
				a.Usage("p")
				if i%2 == 0 {
					a.Release(k)
				}
			}
		})
	}
	wg.Wait()
	if used, _ := a.Usage("p"); used != 100 {
		t.Errorf("used = %d, want 100", used)
	}
	seen := map[netip.Addr]bool{}
	for _, as := range a.Assignments() {
		if seen[as.IPs[0].Addr] {
			t.Errorf("%v given twice", as.IPs[0].Addr)
		}
		seen[as.IPs[0].Addr] = true
	}
}
