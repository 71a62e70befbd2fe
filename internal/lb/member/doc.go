// Package member owns node liveness for LoadBalancer address announcement:
// which agents are alive right now, and which of them announces each address.
// It sends and receives its own UDP heartbeats; it does not talk to the
// apiserver and does not touch the network beyond its one UDP socket.
//
// # Why heartbeats, not the apiserver or memberlist
//
// Failover time is detection time plus the gratuitous ARP. Node leases in the
// apiserver are renewed every 10 s and read through informers, so the
// apiserver cannot be in the hot path; Cilium's lease-based L2 announcements
// fail over in 10-20 s for the same reason. MetalLB uses memberlist (SWIM
// gossip with indirect probes), which takes a few seconds. An edge appliance
// has a handful of nodes on one L2 segment, so the simplest thing is also the
// fastest: every agent sends a ~100-byte heartbeat to every other node's site
// IP every Interval (200 ms) and declares a peer dead when it has been silent
// for Timeout (1 s). With n nodes that is n(n-1)×5 small packets a second,
// 150 pps for 6 nodes. The caller supplies the peer list from Node objects
// ([Member.SetPeers]); a list change is not in the hot path.
//
// Heartbeats carry an HMAC-SHA256 over the whole packet with a shared key, so
// a stranger on the site LAN can neither fake a member nor keep a dead one
// alive. Each carries (incarnation, seq), which only grows (incarnation is the
// start time), so a replayed packet is ignored; and it must come from the
// address and port configured for its sender.
//
// # Who announces: rendezvous hashing
//
// [Elect] scores hash(ip, node) for every eligible, alive node and picks the
// highest. All agents with the same view pick the same node without talking,
// and a node's death moves only the addresses it had won (spread over the
// survivors); a node coming back takes back exactly those. [Claims] applies
// Elect to every address and returns what this node should answer for.
//
// # Partitions
//
// Without consensus no scheme is exact; these rules keep a node that is cut
// off from claiming everything, and keep every node's view of who may
// announce the same in the common failures. A node is Ready (may announce)
// when
//
//   - it has been up for Timeout, so it has heard every live peer before it
//     claims anything (a restarting node does not steal addresses);
//   - it hears at least Quorum members counting itself, and at least Quorum
//     members counting itself report hearing it (each heartbeat lists whom
//     the sender hears). Quorum is a strict majority, except 1 for one or two
//     nodes: two nodes cannot tell a dead peer from a cut link, and we choose
//     failover over silence there;
//   - if it hears anyone, at least one of them hears it: peers that cannot
//     hear us have already taken over our addresses.
//
// A heartbeat carries the sender's Ready verdict, and [View.Alive] holds only
// ready nodes, so a node that stands down (it hears too few, or is not heard)
// is also dropped by the others while its heartbeats still arrive. Cases, for
// three nodes A, B, C:
//
//   - A dies or its link goes down: B and C stop hearing A, A is not in their
//     views, its addresses move to B or C within Timeout. A (if alive but cut
//     off) hears nobody, is not Ready, announces nothing.
//   - A cannot receive (send works): A is not Ready and says so; B and C drop
//     it and take its addresses. No duplicate, no gap.
//   - A cannot send (receive works): A sees B and C do not hear it and stands
//     down; B and C have timed it out.
//   - only the A-B link is cut: A and B are both Ready (each hears C, and C
//     hears each), A's view is {A,C}, B's is {B,C}. Addresses won by C or by A
//     or B over all three are announced once; those C would lose to both A and
//     B may be announced by both. That duplicate is the residual risk. It is
//     benign for new traffic, since every node's service proxy forwards the
//     LB IP, but a client flapping between two MACs can break established
//     connections through conntrack.
//   - two nodes and the link between them cut: both claim everything (Quorum
//     1); the same duplicate, the price of failover with two nodes.
//
// On a clean shutdown [Member.Run] sends a last heartbeat saying it is not
// ready, so peers take over at once rather than after Timeout.
package member
