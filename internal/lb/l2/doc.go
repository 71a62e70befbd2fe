// Package l2 owns answering ARP (IPv4) and NDP (IPv6) for LoadBalancer
// addresses on the node's site interface, and announcing them on hand-over.
// It decides nothing: the set to answer for comes from the caller (see
// Follow, which applies member.Claims). It sends only on the interface it
// was given and only about addresses in its current set.
//
// Design:
//   - Raw AF_PACKET sockets (SOCK_DGRAM, bound to the interface): one for ARP,
//     one for IPv6 with a BPF filter passing only neighbor solicitations. The
//     LB address is never configured on the interface, so the kernel neither
//     answers for it nor defends it; we answer in user space. Replies are
//     built by hand (packet.go), NAs with the LB address itself as source, so
//     the interface needs no IPv6 address at all.
//   - NSs go to the solicited-node group of the target. We add the group's
//     MAC to the NIC filter (PACKET_ADD_MEMBERSHIP) and join the group in the
//     IPv6 stack so the kernel sends MLD reports for snooping switches.
//   - On add, Gratuitous (3) announcements over ~1 s: gratuitous ARP requests
//     (sender = target = the address; Linux updates an existing entry from
//     them even with arp_accept=0) and unsolicited NAs with Override to
//     ff02::1. Clients move at the first one; the repeats cover loss.
//   - On removal nothing more is sent for the address from the moment SetIPs
//     returns (replies are sent under a read lock of the set).
//   - Reannounce repeats the announcements for the whole set; Follow calls it
//     when a peer reappears, since during a partition that peer may have
//     announced our addresses and clients would otherwise keep its MAC until
//     their entries expire.
//
// Measured in TestFailover (2 nodes, client probing every 50 ms, 10 runs):
// node link cut → traffic on the survivor after 0.85-0.99 s (the 1 s
// heartbeat timeout dominates); clean agent stop → 0.05-0.4 s.
package l2
