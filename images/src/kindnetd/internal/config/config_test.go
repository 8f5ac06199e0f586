package config

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestFromEnv(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		want    Config
		wantErr []string
	}{
		{
			name: "kind single stack via service env",
			env:  map[string]string{"NODE_NAME": "kind-worker", "POD_SUBNET": "10.244.0.0/16", "KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"},
			want: Config{NodeName: "kind-worker", PodSubnets: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}, APIServers: []string{"https://10.96.0.1:443"}},
		},
		{
			name: "dual stack, control plane endpoint wins, MTU set",
			env: map[string]string{"NODE_NAME": "n", "POD_SUBNET": " 10.244.0.0/16 , fd00:10:244::/56 ", "CONTROL_PLANE_ENDPOINT": "kind-control-plane:6443",
				"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443", "CNI_MTU": "1400"},
			want: Config{NodeName: "n", PodSubnets: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("fd00:10:244::/56")},
				APIServers: []string{"https://kind-control-plane:6443", "https://10.96.0.1:443"}, MTU: 1400},
		},
		{
			name: "ipv6 service host is bracketed",
			env:  map[string]string{"NODE_NAME": "n", "POD_SUBNET": "fd00:10:244::/56", "KUBERNETES_SERVICE_HOST": "fd00:10:96::1"},
			want: Config{NodeName: "n", PodSubnets: []netip.Prefix{netip.MustParsePrefix("fd00:10:244::/56")}, APIServers: []string{"https://[fd00:10:96::1]:443"}},
		},
		{
			name: "control plane endpoint alone, as a URL",
			env:  map[string]string{"NODE_NAME": "n", "POD_SUBNET": "10.244.0.0/16", "CONTROL_PLANE_ENDPOINT": "https://[fc00::2]:6443/"},
			want: Config{NodeName: "n", PodSubnets: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}, APIServers: []string{"https://[fc00::2]:6443"}},
		},
		{
			name:    "everything missing",
			env:     map[string]string{},
			wantErr: []string{"NODE_NAME is not set", "POD_SUBNET is not set", "no API server address"},
		},
		{
			name:    "bad subnet and mtu",
			env:     map[string]string{"NODE_NAME": "n", "POD_SUBNET": "10.244.0.0/16,banana", "KUBERNETES_SERVICE_HOST": "h", "CNI_MTU": "9"},
			wantErr: []string{`not a CIDR: "banana"`, "CNI_MTU"},
		},
		{
			name:    "endpoint without port",
			env:     map[string]string{"NODE_NAME": "n", "POD_SUBNET": "10.244.0.0/16", "CONTROL_PLANE_ENDPOINT": "kind-control-plane"},
			wantErr: []string{"want host:port"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FromEnv(env(tt.env))
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("want error containing %q, got nil", tt.wantErr)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not mention %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParsePrefixesMasks(t *testing.T) {
	got, err := ParsePrefixes("10.244.3.7/16,,::ffff:10.1.0.0/112")
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("10.1.0.0/16")}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v want %v", got, want)
	}
}

func TestCoveredAndFamilies(t *testing.T) {
	subnets := []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("fd00:10:244::/56")}
	tests := []struct {
		p    string
		want bool
	}{
		{"10.244.1.0/24", true},
		{"10.244.0.0/16", true},
		{"10.0.0.0/8", false},
		{"10.245.0.0/24", false},
		{"fd00:10:244:1::/64", true},
		{"fd00:10:245::/64", false},
	}
	for _, tt := range tests {
		if got := Covered(netip.MustParsePrefix(tt.p), subnets); got != tt.want {
			t.Errorf("Covered(%s) = %v, want %v", tt.p, got, tt.want)
		}
	}
	if v4, v6 := Families(subnets); !v4 || !v6 {
		t.Errorf("Families = %v %v", v4, v6)
	}
	if got := Of(subnets, true); len(got) != 1 || got[0] != subnets[1] {
		t.Errorf("Of(v6) = %v", got)
	}
}
