package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// entry is one guestbook line, with the replica that took it.
type entry struct {
	Text string    `json:"text"`
	Pod  string    `json:"pod"`
	Node string    `json:"node"`
	Time time.Time `json:"time"`
}

// store is what the handlers need of the database.
type store interface {
	// Visit counts one visit and returns the total so far.
	Visit(ctx context.Context) (int64, error)
	AddEntry(ctx context.Context, e entry) error
	// Entries returns the newest n entries, newest first.
	Entries(ctx context.Context, n int) ([]entry, error)
}

const (
	maxEntryRunes = 200
	keepEntries   = 100
	keyVisits     = "demo:visits"
	keyEntries    = "demo:entries"
)

// checkEntryText returns the text to store, trimmed, or why it is refused.
func checkEntryText(s string) (string, error) {
	if !utf8.ValidString(s) {
		return "", errors.New("text is not valid UTF-8")
	}
	s = strings.TrimSpace(s)
	if s == "" {
		return "", errors.New("text is empty")
	}
	if n := utf8.RuneCountInString(s); n > maxEntryRunes {
		return "", fmt.Errorf("text has %d characters, at most %d allowed", n, maxEntryRunes)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return "", fmt.Errorf("text contains control character %U", r)
		}
	}
	return s, nil
}

// redisStore keeps the counter and the guestbook in Redis.
type redisStore struct{ c *redisClient }

func (s redisStore) Visit(ctx context.Context) (int64, error) {
	v, err := s.c.Do(ctx, "INCR", keyVisits)
	if err != nil {
		return 0, err
	}
	n, ok := v.(int64)
	if !ok {
		return 0, fmt.Errorf("redis: INCR answered %T", v)
	}
	return n, nil
}

func (s redisStore) AddEntry(ctx context.Context, e entry) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if _, err := s.c.Do(ctx, "LPUSH", keyEntries, string(b)); err != nil {
		return err
	}
	// The guestbook keeps the newest entries only; a failed trim is retried by the next add.
	_, err = s.c.Do(ctx, "LTRIM", keyEntries, "0", fmt.Sprint(keepEntries-1))
	return err
}

func (s redisStore) Entries(ctx context.Context, n int) ([]entry, error) {
	v, err := s.c.Do(ctx, "LRANGE", keyEntries, "0", fmt.Sprint(n-1))
	if err != nil {
		return nil, err
	}
	items, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("redis: LRANGE answered %T", v)
	}
	out := make([]entry, 0, len(items))
	for _, it := range items {
		str, ok := it.(string)
		if !ok {
			continue
		}
		var e entry
		// Someone else's junk in our key is skipped, not fatal to the page.
		if json.Unmarshal([]byte(str), &e) == nil {
			out = append(out, e)
		}
	}
	return out, nil
}
