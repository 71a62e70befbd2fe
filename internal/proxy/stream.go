package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
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
		cur:   p.newTx(),
		newTx: p.newTx,
		emit: func(tx *Tx) error {
			_, err := tx.WriteTo(pw)
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

// refused reports an object knftables refused: the text of such a transaction part
// ends with this comment and holds nothing after the refusal.
func refused(text string) error {
	for {
		i := strings.Index(text, "# ERROR: ")
		if i < 0 {
			return nil
		}
		if i == 0 || text[i-1] == '\n' {
			msg, _, _ := strings.Cut(text[i+len("# ERROR: "):], "\n")
			return errors.New(strings.TrimSpace(msg))
		}
		text = text[i+1:]
	}
}

// runNFT runs text as one transaction through cmd (nft reading stdin).
func runNFT(cmd *exec.Cmd, text string) error {
	if err := refused(text); err != nil {
		return err
	}
	var stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(text), nil, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("nft: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// DefaultNFTCommand runs nft from $PATH in the current network namespace.
func DefaultNFTCommand(ctx context.Context) *exec.Cmd {
	return exec.CommandContext(ctx, "nft", "-f", "-")
}
