// Package allocator owns the choice of LoadBalancer addresses: which address
// pools a Service may draw from, which address it gets, when two Services may
// share one, and why a Service gets none.
//
// It is pure: it knows nothing of Kubernetes objects, informers or the
// network. The controller translates a Service into a [Service] (ipFamilies,
// spec.loadBalancerIP and the edgenet.io/* annotations), calls
// [Allocator.Assign], and writes the result to the Service's status; an
// [*Error] carries the Reason and message for the Service's condition and
// Event.
//
// Rules the allocator keeps:
//   - Assign is idempotent: a Service keeps its addresses as long as it still
//     wants their families and its sharing constraints hold.
//   - A pool edit never takes an address away. An address that falls outside
//     every pool stays with its Service and is reported as an orphan until the
//     Service releases it.
//   - The choice is deterministic (highest-priority eligible pool, lowest free
//     address), and [Allocator.Restore] replays existing assignments after a
//     restart without moving anything.
//   - Used addresses are kept in a sorted set and the lowest free address is
//     found arithmetically, so an IPv6 /64 pool costs no more than a /30.
//
// An Allocator is safe for concurrent use.
package allocator
