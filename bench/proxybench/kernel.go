package main

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"edgenet.io/edgenet/internal/proxy"
)

// Both proxies keep their ClusterIPs in a verdict map named service-ips keyed by
// `ipv4_addr . inet_proto . inet_service`: an element is added in the same
// transaction as the service's chains, so the element being there means the
// service's rules are in the kernel.
const serviceMap = "service-ips"

// watcher sees service-ips elements appear in one node's namespace: from the
// nftables netlink multicast group (exact times) and, as a fallback for events the
// socket dropped, from dumps of the map.
type watcher struct {
	table string
	fd    int
	conn  *netlink.Conn

	mu      sync.Mutex
	seen    map[netip.Addr]time.Time
	waiters map[netip.Addr]chan struct{}
	missed  error // first receive error (e.g. ENOBUFS), for the report
}

func newWatcher(netnsFd int, table string) (*watcher, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: netnsFd})
	if err != nil {
		return nil, fmt.Errorf("watcher: netlink: %w", err)
	}
	if err := c.JoinGroup(unix.NFNLGRP_NFTABLES); err != nil {
		c.Close()
		return nil, fmt.Errorf("watcher: join nftables group: %w", err)
	}
	// SO_RCVBUFFORCE (we are root): SetReadBuffer is capped by net.core.rmem_max,
	// too small for a sync that touches thousands of objects.
	if rc, err := c.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) {
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20)
		})
	}
	w := &watcher{table: table, fd: netnsFd, conn: c, seen: map[netip.Addr]time.Time{}, waiters: map[netip.Addr]chan struct{}{}}
	go w.loop()
	return w, nil
}

func (w *watcher) Close() { w.conn.Close() }

func (w *watcher) loop() {
	for {
		msgs, err := w.conn.Receive()
		now := time.Now()
		if err != nil {
			if errors.Is(err, unix.ENOBUFS) {
				w.mu.Lock()
				if w.missed == nil {
					w.missed = err
				}
				w.mu.Unlock()
				continue
			}
			return // closed
		}
		for _, m := range msgs {
			if m.Header.Type != netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_NEWSETELEM) {
				continue
			}
			table, set, addrs := parseNewSetElem(m.Data)
			if !tableOf(w.table, table) || set != serviceMap {
				continue
			}
			w.mark(now, addrs...)
		}
	}
}

func (w *watcher) mark(at time.Time, addrs ...netip.Addr) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, a := range addrs {
		if _, ok := w.seen[a]; ok {
			continue
		}
		w.seen[a] = at
		if ch, ok := w.waiters[a]; ok {
			close(ch)
			delete(w.waiters, a)
		}
	}
}

// parseNewSetElem reads a NEWSETELEM message: nfgenmsg, then table and set names
// and a list of elements whose keys start with the IPv4 address.
func parseNewSetElem(b []byte) (table, set string, addrs []netip.Addr) {
	if len(b) < 4 {
		return "", "", nil
	}
	ad, err := netlink.NewAttributeDecoder(b[4:])
	if err != nil {
		return "", "", nil
	}
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_SET_ELEM_LIST_TABLE:
			table = ad.String()
		case unix.NFTA_SET_ELEM_LIST_SET:
			set = ad.String()
		case unix.NFTA_SET_ELEM_LIST_ELEMENTS:
			ad.Nested(func(list *netlink.AttributeDecoder) error {
				for list.Next() {
					list.Nested(func(elem *netlink.AttributeDecoder) error {
						for elem.Next() {
							if elem.Type() != unix.NFTA_SET_ELEM_KEY {
								continue
							}
							elem.Nested(func(key *netlink.AttributeDecoder) error {
								for key.Next() {
									if v := key.Bytes(); key.Type() == unix.NFTA_DATA_VALUE && len(v) >= 4 {
										addrs = append(addrs, netip.AddrFrom4([4]byte(v[:4])))
									}
								}
								return nil
							})
						}
						return nil
					})
				}
				return nil
			})
		}
	}
	return table, set, addrs
}

func (w *watcher) dump() (map[netip.Addr]bool, error) { return dumpMap(w.fd, w.table) }

// tableOf tells whether a table holds a proxy's service-ips map: edgenet's are in
// its shard tables, kube-proxy's in its one table.
func tableOf(proxyTable, table string) bool {
	if proxyTable == proxy.TableName {
		return proxy.IsOurTable(table)
	}
	return table == proxyTable
}

// dumpMap lists the addresses in the service-ips maps of a proxy's tables now; a
// missing table or map is empty.
func dumpMap(netnsFd int, proxyTable string) (map[netip.Addr]bool, error) {
	c, err := nftables.New(nftables.WithNetNSFd(netnsFd))
	if err != nil {
		return nil, err
	}
	defer c.CloseLasting()
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	out := map[netip.Addr]bool{}
	for _, t := range tables {
		if !tableOf(proxyTable, t.Name) {
			continue
		}
		s, err := c.GetSetByName(t, serviceMap)
		if err != nil {
			continue // not created yet, or the main table
		}
		elems, err := c.GetSetElements(s)
		if err != nil {
			return nil, fmt.Errorf("list %s %s: %w", t.Name, serviceMap, err)
		}
		for _, e := range elems {
			if len(e.Key) >= 4 {
				out[netip.AddrFrom4([4]byte(e.Key[:4]))] = true
			}
		}
	}
	return out, nil
}

// waitFor returns when a is in the map: the time the event arrived, or the time a
// dump found it (viaDump) if the event was lost.
func (w *watcher) waitFor(a netip.Addr, timeout time.Duration) (at time.Time, viaDump bool, err error) {
	w.mu.Lock()
	if t, ok := w.seen[a]; ok {
		w.mu.Unlock()
		return t, false, nil
	}
	ch, ok := w.waiters[a]
	if !ok {
		ch = make(chan struct{})
		w.waiters[a] = ch
	}
	w.mu.Unlock()
	deadline := time.After(timeout)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ch:
			w.mu.Lock()
			defer w.mu.Unlock()
			return w.seen[a], false, nil
		case <-tick.C:
			got, err := w.dump()
			if err != nil {
				return time.Time{}, false, err
			}
			if got[a] {
				now := time.Now()
				w.mark(now, a)
				return now, true, nil
			}
		case <-deadline:
			return time.Time{}, false, fmt.Errorf("%s not in table %s after %v", a, w.table, timeout)
		}
	}
}

// waitAll polls dumps until every address in want is in the table's map.
func waitAll(netnsFd int, table string, want []netip.Addr, every, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for {
		got, err := dumpMap(netnsFd, table)
		if err != nil {
			return time.Time{}, err
		}
		now := time.Now()
		missing := 0
		for _, a := range want {
			if !got[a] {
				missing++
			}
		}
		if missing == 0 {
			return now, nil
		}
		if now.After(deadline) {
			return time.Time{}, fmt.Errorf("%d of %d services not in table %s after %v", missing, len(want), table, timeout)
		}
		time.Sleep(every)
	}
}

func (w *watcher) lost() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.missed
}
