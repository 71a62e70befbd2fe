package proxy

import (
	"fmt"
	"hash/fnv"
	"io"
	"slices"
	"strconv"
	"strings"

	"sigs.k8s.io/knftables"
)

// Services are spread over shard tables so that a change makes the kernel re-validate
// one shard, not every service (see the package doc):
//
//	main  (TableName):            filter-input/forward/output → service-endpoints-check
//	                              (no-endpoint-services / no-endpoint-nodeports → reject-chain),
//	                              nat-postrouting → masquerading, nodeport-ips
//	shard (TableName-svc-NN):     nat-prerouting / nat-output → services
//	                              (service-ips / service-nodeports → svc-…), mark-for-masquerade,
//	                              nodeport-ips, the service's chains and affinity sets
//
// A service's no-endpoint elements are in the main table, everything else of it in
// its shard.

// DefaultShards is the number of shard tables when NodeConfig.Shards is 0.
const DefaultShards = 16

// MaxShards bounds NodeConfig.Shards: each shard adds two map lookups to every new
// connection.
const MaxShards = 64

// ShardTablePrefix starts the name of every shard table; `edgenet cleanup` deletes
// tables by it.
const ShardTablePrefix = TableName + "-svc-"

// ShardTable is the name of shard i.
func ShardTable(i int) string { return fmt.Sprintf("%s%02d", ShardTablePrefix, i) }

// IsOurTable tells whether a table name is one of the proxy's (main or any shard).
func IsOurTable(name string) bool {
	if name == TableName {
		return true
	}
	n, ok := strings.CutPrefix(name, ShardTablePrefix)
	if !ok {
		return false
	}
	_, err := strconv.ParseUint(n, 10, 8)
	return err == nil
}

func (c NodeConfig) shards() int {
	if c.Shards == 0 {
		return DefaultShards
	}
	return c.Shards
}

// shardOf is the shard table of a service: a hash of its name, so that it is the
// same on every node and across restarts.
func (c NodeConfig) shardOf(k ServiceKey) string {
	h := fnv.New32a()
	h.Write([]byte(k.Namespace))
	h.Write([]byte{'/'})
	h.Write([]byte(k.Name))
	return ShardTable(int(h.Sum32() % uint32(c.shards())))
}

// tables lists every table the config uses: main first, then the shards in order.
func (c NodeConfig) tables() []string {
	out := []string{TableName}
	for i := range c.shards() {
		out = append(out, ShardTable(i))
	}
	return out
}

// elementTable is where a service's map element lives: the no-endpoint maps are
// looked up by the main table's filter chains, the others by its shard's nat chains.
func (c NodeConfig) elementTable(owner ServiceKey, e element) string {
	if e.Map == mapNoEndpointSvcs || e.Map == mapNoEndpointNodePts {
		return TableName
	}
	return c.shardOf(owner)
}

// qname is a chain or set in one of our tables.
type qname struct{ Table, Name string }

// Tx is one nft transaction over several of our tables, built as one
// knftables.Transaction per table touched (a knftables transaction names one
// table). Its text, the tables' texts in first-use order, is a single transaction
// for `nft -f`; over netlink the same ops are one batch.
type Tx struct {
	open  func(table string) *knftables.Transaction
	txs   map[string]*knftables.Transaction
	order []string
}

// NewTx starts an empty transaction; open returns a new knftables transaction for a
// table.
func NewTx(open func(table string) *knftables.Transaction) *Tx {
	return &Tx{open: open, txs: map[string]*knftables.Transaction{}}
}

// Table returns the part of the transaction for one table.
func (t *Tx) Table(name string) *knftables.Transaction {
	tx := t.txs[name]
	if tx == nil {
		tx = t.open(name)
		t.txs[name] = tx
		t.order = append(t.order, name)
	}
	return tx
}

// Tables lists the tables touched, in first-use order.
func (t *Tx) Tables() []string { return slices.Clone(t.order) }

// NumOperations counts the operations over all tables.
func (t *Tx) NumOperations() int {
	n := 0
	for _, tx := range t.txs {
		n += tx.NumOperations()
	}
	return n
}

// WriteTo writes the transaction's nft text to w, table by table (a full sync's
// chunks are never joined into one string); it stops at an object knftables refused.
func (t *Tx) WriteTo(w io.Writer) (int64, error) {
	var n int64
	for _, name := range t.order {
		text := t.txs[name].String()
		if err := refused(text); err != nil {
			return n, err
		}
		k, err := io.WriteString(w, text)
		n += int64(k)
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// String is the transaction's nft text.
func (t *Tx) String() string {
	var sb strings.Builder
	for _, name := range t.order {
		sb.WriteString(t.txs[name].String())
	}
	return sb.String()
}
