package main

import (
	"testing"

	"edgenet.io/edgenet/internal/proxy"
)

func TestGCPercent(t *testing.T) {
	for _, tc := range []struct {
		name string
		want int
		env  map[string]string
		got  int
		set  bool
	}{
		{"the agent's default", proxy.DefaultGCPercent, nil, proxy.DefaultGCPercent, true},
		{"configured", 80, nil, 80, true},
		{"disabled", -1, nil, 0, false},
		{"GOGC in the environment wins", 80, map[string]string{"GOGC": "200"}, 0, false},
		{"GOMEMLIMIT in the environment wins", proxy.DefaultGCPercent, map[string]string{"GOMEMLIMIT": "100MiB"}, 0, false},
	} {
		got, set := gcPercent(tc.want, func(k string) string { return tc.env[k] })
		if got != tc.got || set != tc.set {
			t.Errorf("%s: gcPercent = %d, %v; want %d, %v", tc.name, got, set, tc.got, tc.set)
		}
	}
}
