package cni

import (
	"testing"

	"edgenet.io/edgenet/internal/ipam"
)

func FuzzParseConf(f *testing.F) {
	for _, s := range []string{
		`{"cniVersion":"1.1.0","name":"edgenet","type":"edgenet-cni"}`,
		`{"cniVersion":"0.3.1","name":"edgenet","type":"edgenet-cni","mtu":1400,"ipamSocket":"/run/edgenet/ipam.sock"}`,
		`{"cniVersion":"1.1.0","name":"edgenet","type":"edgenet-cni","ipamSocket":"@x","cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"}]}`,
		`{"cniVersion":"1.0.0","name":"edgenet","type":"edgenet-cni","prevResult":{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/run/netns/x"}],"ips":[{"address":"10.0.0.2/32","interface":0}]}}`,
		`{"cniVersion":"1.1.0","name":"edgenet","type":"edgenet-cni","ipam":{"type":"host-local"}}`,
		`{"cniVersion":"1.1.0","name":"edgenet","mtu":-1}`,
		`{"name":"x","prevResult":{"ips":[{"address":"nope"}]}}`,
		`{"name":"x"} {"name":"y"}`,
		`{`, `null`, `[]`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		conf, err := parseConf(data)
		if err != nil {
			if conf != nil || err.Code == 0 || err.Msg == "" {
				t.Fatalf("error %+v with conf %v", err, conf)
			}
			return
		}
		if conf.Name == "" || conf.MTU < 576 || conf.MTU > 65535 || validSocket(conf.IPAMSocket) != nil {
			t.Fatalf("accepted invalid conf %+v", conf)
		}
		if conf.RawPrevResult != nil && conf.PrevResult == nil {
			t.Fatalf("prevResult accepted but not parsed: %+v", conf)
		}
	})
}

func TestParseConfDefaults(t *testing.T) {
	conf, err := parseConf([]byte(`{"cniVersion":"1.1.0","name":"edgenet","type":"edgenet-cni"}`))
	if err != nil {
		t.Fatal(err)
	}
	if conf.MTU != DefaultMTU || conf.IPAMSocket != ipam.DefaultSocket {
		t.Errorf("defaults: mtu %d socket %q", conf.MTU, conf.IPAMSocket)
	}
}

func TestParseArgs(t *testing.T) {
	tests := []struct {
		in      string
		want    podArgs
		wantErr bool
	}{
		{"", podArgs{}, false},
		{"IgnoreUnknown=1;K8S_POD_NAMESPACE=kube-system;K8S_POD_NAME=dns-0;K8S_POD_INFRA_CONTAINER_ID=abc", podArgs{"kube-system", "dns-0"}, false},
		{"K8S_POD_NAME=a=b", podArgs{Name: "a=b"}, false},
		{"K8S_POD_NAME", podArgs{}, true},
	}
	for _, tt := range tests {
		got, err := parseArgs(tt.in)
		if (err != nil) != tt.wantErr || (!tt.wantErr && got != tt.want) {
			t.Errorf("parseArgs(%q) = %+v, %v; want %+v, err %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestHostVethName(t *testing.T) {
	a, b := HostVethName("c1", "eth0"), HostVethName("c1", "eth1")
	if len(a) != 14 || a == b || !isHostVethName(a) || a != HostVethName("c1", "eth0") {
		t.Errorf("names %q %q", a, b)
	}
	for _, n := range []string{"enx0123456789ab", "enx0123456789A", "eth0", "enx012345678g0"} {
		if isHostVethName(n) {
			t.Errorf("isHostVethName(%q) = true", n)
		}
	}
}
