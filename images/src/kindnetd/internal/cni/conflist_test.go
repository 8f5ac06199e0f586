package cni

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestRenderGolden(t *testing.T) {
	got, err := Render(Params{PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24")}, MTU: 1500})
	if err != nil {
		t.Fatal(err)
	}
	want := `{
  "cniVersion": "1.0.0",
  "name": "kindnet",
  "plugins": [
    {
      "type": "ptp",
      "ipMasq": false,
      "mtu": 1500,
      "ipam": {
        "type": "host-local",
        "dataDir": "/run/cni-ipam-state",
        "ranges": [
          [
            {
              "subnet": "10.244.1.0/24"
            }
          ]
        ],
        "routes": [
          {
            "dst": "0.0.0.0/0"
          }
        ]
      }
    },
    {
      "type": "portmap",
      "capabilities": {
        "portMappings": true
      }
    }
  ]
}
`
	if string(got) != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestRender(t *testing.T) {
	tests := []struct {
		name       string
		cidrs      []string
		mtu        int
		wantRanges []string
		wantRoutes []string
		wantErr    string
	}{
		{name: "ipv4", cidrs: []string{"10.244.2.0/24"}, mtu: 1500, wantRanges: []string{"10.244.2.0/24"}, wantRoutes: []string{"0.0.0.0/0"}},
		{name: "ipv6", cidrs: []string{"fd00:10:244:1::/64"}, mtu: 1450, wantRanges: []string{"fd00:10:244:1::/64"}, wantRoutes: []string{"::/0"}},
		{name: "dual stack keeps API order", cidrs: []string{"fd00:10:244:1::/64", "10.244.1.0/24"}, mtu: 9000,
			wantRanges: []string{"fd00:10:244:1::/64", "10.244.1.0/24"}, wantRoutes: []string{"::/0", "0.0.0.0/0"}},
		{name: "host bits masked", cidrs: []string{"10.244.1.9/24"}, mtu: 1500, wantRanges: []string{"10.244.1.0/24"}, wantRoutes: []string{"0.0.0.0/0"}},
		{name: "no cidr", cidrs: nil, mtu: 1500, wantErr: "no pod CIDR"},
		{name: "two ipv4", cidrs: []string{"10.244.1.0/24", "10.245.1.0/24"}, mtu: 1500, wantErr: "same family"},
		{name: "mtu zero", cidrs: []string{"10.244.1.0/24"}, mtu: 0, wantErr: "MTU 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cidrs []netip.Prefix
			for _, c := range tt.cidrs {
				cidrs = append(cidrs, netip.MustParsePrefix(c))
			}
			out, err := Render(Params{PodCIDRs: cidrs, MTU: tt.mtu})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var cl struct {
				CNIVersion string `json:"cniVersion"`
				Plugins    []struct {
					Type string `json:"type"`
					MTU  int    `json:"mtu"`
					IPAM struct {
						Ranges [][]struct{ Subnet string } `json:"ranges"`
						Routes []struct{ Dst string }      `json:"routes"`
					} `json:"ipam"`
					Capabilities map[string]bool `json:"capabilities"`
				} `json:"plugins"`
			}
			if err := json.Unmarshal(out, &cl); err != nil {
				t.Fatal(err)
			}
			var ranges, routes []string
			for _, r := range cl.Plugins[0].IPAM.Ranges {
				ranges = append(ranges, r[0].Subnet)
			}
			for _, r := range cl.Plugins[0].IPAM.Routes {
				routes = append(routes, r.Dst)
			}
			if !reflect.DeepEqual(ranges, tt.wantRanges) || !reflect.DeepEqual(routes, tt.wantRoutes) {
				t.Errorf("ranges %v routes %v, want %v %v", ranges, routes, tt.wantRanges, tt.wantRoutes)
			}
			if cl.Plugins[0].MTU != tt.mtu || cl.Plugins[1].Type != "portmap" || !cl.Plugins[1].Capabilities["portMappings"] {
				t.Errorf("plugins = %+v", cl.Plugins)
			}
			types, err := PluginTypes(out)
			if err != nil || !reflect.DeepEqual(types, []string{"ptp", "host-local", "portmap"}) {
				t.Errorf("PluginTypes = %v, %v", types, err)
			}
		})
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "net.d")
	path := filepath.Join(dir, "10-kindnet.conflist")
	steps := []struct {
		data        string
		wantChanged bool
	}{{"one", true}, {"one", false}, {"two", true}}
	for i, s := range steps {
		changed, err := WriteFileAtomic(path, []byte(s.data))
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if changed != s.wantChanged {
			t.Errorf("step %d: changed = %v, want %v", i, changed, s.wantChanged)
		}
		got, _ := os.ReadFile(path)
		if string(got) != s.data {
			t.Errorf("step %d: file holds %q", i, got)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o644 {
		t.Errorf("mode = %v", fi.Mode())
	}
}
