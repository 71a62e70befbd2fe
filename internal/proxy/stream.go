package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"sigs.k8s.io/knftables"
)

// streamFull writes a full sync into a running `nft -f -` chunk by chunk, so that
// neither the knftables objects (~40 MB at 10k services with 5 endpoints each) nor
// the transaction's text (~30 MB) are ever held whole. nft still applies it as one
// transaction when its input ends; if writing fails first, nft is killed before it
// sees the end, so nothing of it is applied.
func (p *Proxier) streamFull(ctx context.Context, rs *Ruleset, all map[ServiceKey]*ServiceRules, existing Existing, now time.Time) error {
	cmd := p.opts.NFTCommand(ctx)
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	var stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = pr, nil, &stderr
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		return fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	pr.Close() // nft has it
	c := &chunker{
		cur:   p.opts.NFT.NewTransaction(),
		newTx: p.opts.NFT.NewTransaction,
		emit: func(tx *knftables.Transaction) error {
			text := tx.String()
			// A transaction that refused an object ends with this comment
			// and holds nothing after the refusal.
			if i := strings.LastIndex(text, "# ERROR: "); i >= 0 && (i == 0 || text[i-1] == '\n') {
				return errors.New(strings.TrimSpace(text[i+len("# ERROR: "):]))
			}
			_, err := io.WriteString(pw, text)
			return err
		},
	}
	if err := rs.writeFull(c, all, existing, now); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		pw.Close()
		return fmt.Errorf("stream to nft: %w", err)
	}
	pw.Close()
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("nft: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// DefaultNFTCommand runs nft from $PATH in the current network namespace.
func DefaultNFTCommand(ctx context.Context) *exec.Cmd {
	return exec.CommandContext(ctx, "nft", "-f", "-")
}
