package routes

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"svcconform.local/kindnetd/internal/execx"
	"svcconform.local/kindnetd/internal/kube"
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func ip(s string) netip.Addr    { return netip.MustParseAddr(s) }

func node(name string, cidrs []string, ips ...string) kube.Node {
	n := kube.Node{Name: name}
	for _, c := range cidrs {
		n.PodCIDRs = append(n.PodCIDRs, pfx(c))
	}
	for _, a := range ips {
		n.InternalIPs = append(n.InternalIPs, ip(a))
	}
	return n
}

func TestDesired(t *testing.T) {
	cp := node("kind-control-plane", []string{"10.244.0.0/24", "fd00:10:244::/64"}, "172.18.0.2", "fc00::2")
	w1 := node("kind-worker", []string{"10.244.1.0/24", "fd00:10:244:1::/64"}, "172.18.0.3", "fc00::3")
	w2 := node("kind-worker2", nil, "172.18.0.4")
	v4only := node("v4only", []string{"10.244.3.0/24", "fd00:10:244:3::/64"}, "172.18.0.5")
	dup := node("zz-dup", []string{"10.244.1.0/24"}, "172.18.0.6")
	tests := []struct {
		name      string
		self      string
		nodes     []kube.Node
		v4, v6    bool
		want      []string
		wantNotes []string
	}{
		{name: "ipv4 three nodes, one without podCIDR", self: "kind-worker", nodes: []kube.Node{cp, w1, w2}, v4: true,
			want: []string{"10.244.0.0/24 via 172.18.0.2"}, wantNotes: []string{"node kind-worker2 has no podCIDR yet"}},
		{name: "dual stack", self: "kind-control-plane", nodes: []kube.Node{cp, w1}, v4: true, v6: true,
			want: []string{"10.244.1.0/24 via 172.18.0.3", "fd00:10:244:1::/64 via fc00::3"}},
		{name: "ipv6 only ignores ipv4 cidrs", self: "kind-control-plane", nodes: []kube.Node{cp, w1}, v6: true,
			want: []string{"fd00:10:244:1::/64 via fc00::3"}},
		{name: "no InternalIP of the family", self: "kind-worker", nodes: []kube.Node{v4only}, v4: true, v6: true,
			want: []string{"10.244.3.0/24 via 172.18.0.5"}, wantNotes: []string{"node v4only has podCIDR fd00:10:244:3::/64 but no InternalIP of that family"}},
		{name: "duplicate podCIDR keeps the first", self: "kind-control-plane", nodes: []kube.Node{w1, dup}, v4: true,
			want: []string{"10.244.1.0/24 via 172.18.0.3"}, wantNotes: []string{"podCIDR 10.244.1.0/24 is claimed by both kind-worker and zz-dup; keeping kind-worker"}},
		{name: "alone", self: "kind-control-plane", nodes: []kube.Node{cp}, v4: true, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, notes := Desired(tt.self, tt.nodes, tt.v4, tt.v6)
			var gs []string
			for _, r := range got {
				gs = append(gs, r.String())
			}
			if !reflect.DeepEqual(gs, tt.want) {
				t.Errorf("routes = %v, want %v", gs, tt.want)
			}
			if !reflect.DeepEqual(notes, tt.wantNotes) {
				t.Errorf("notes = %q, want %q", notes, tt.wantNotes)
			}
		})
	}
}

func TestDiff(t *testing.T) {
	r := func(dst, via string) Route {
		rt := Route{Dst: pfx(dst)}
		if via != "" {
			rt.Via = ip(via)
		}
		return rt
	}
	tests := []struct {
		name              string
		desired, existing []Route
		want              Plan
	}{
		{name: "fresh node", desired: []Route{r("10.244.2.0/24", "172.18.0.4"), r("10.244.1.0/24", "172.18.0.3")},
			want: Plan{Replace: []Route{r("10.244.1.0/24", "172.18.0.3"), r("10.244.2.0/24", "172.18.0.4")}}},
		{name: "in sync", desired: []Route{r("10.244.1.0/24", "172.18.0.3")}, existing: []Route{r("10.244.1.0/24", "172.18.0.3")}, want: Plan{}},
		{name: "node replaced with a new IP", desired: []Route{r("10.244.1.0/24", "172.18.0.9")}, existing: []Route{r("10.244.1.0/24", "172.18.0.3")},
			want: Plan{Replace: []Route{r("10.244.1.0/24", "172.18.0.9")}}},
		{name: "node removed", desired: nil, existing: []Route{r("10.244.1.0/24", "172.18.0.3"), r("fd00:10:244:1::/64", "fc00::3")},
			want: Plan{Delete: []Route{r("10.244.1.0/24", "172.18.0.3"), r("fd00:10:244:1::/64", "fc00::3")}}},
		{name: "gatewayless leftover is replaced", desired: []Route{r("10.244.1.0/24", "172.18.0.3")}, existing: []Route{r("10.244.1.0/24", "")},
			want: Plan{Replace: []Route{r("10.244.1.0/24", "172.18.0.3")}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Diff(tt.desired, tt.existing)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
			if got.Empty() != (len(tt.want.Replace)+len(tt.want.Delete) == 0) {
				t.Errorf("Empty() = %v", got.Empty())
			}
		})
	}
}

func TestArgs(t *testing.T) {
	v4 := Route{Dst: pfx("10.244.1.0/24"), Via: ip("172.18.0.3")}
	v6 := Route{Dst: pfx("fd00:10:244:1::/64"), Via: ip("fc00::3")}
	tests := []struct {
		got  []string
		want string
	}{
		{ReplaceArgs(v4), "-4 route replace 10.244.1.0/24 via 172.18.0.3 proto 107"},
		{ReplaceArgs(v6), "-6 route replace fd00:10:244:1::/64 via fc00::3 proto 107"},
		{DeleteArgs(v4), "-4 route del 10.244.1.0/24 table main proto 107"},
		{ListArgs(true), "-6 -json route show table main proto 107"},
		{DefaultRouteArgs(false), "-4 -json route show table main default"},
		{LinkArgs("eth0"), "-json link show dev eth0"},
	}
	for _, tt := range tests {
		if got := strings.Join(tt.got, " "); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
}

func TestParseRoutes(t *testing.T) {
	tests := []struct {
		name    string
		out     string
		want    []string
		wantErr string
	}{
		// Captured from iproute2 6.1 (Debian bookworm).
		{name: "ipv4", out: `[{"dst":"10.244.1.0/24","gateway":"172.18.0.3","dev":"eth0","flags":[]},{"dst":"10.244.2.0/24","gateway":"172.18.0.4","dev":"eth0","flags":[]}]`,
			want: []string{"10.244.1.0/24 via 172.18.0.3", "10.244.2.0/24 via 172.18.0.4"}},
		{name: "ipv6", out: `[{"dst":"fd00:10:244:1::/64","gateway":"fc00:f853:ccd:e793::3","dev":"eth0","metric":1024,"flags":[],"pref":"medium"}]`,
			want: []string{"fd00:10:244:1::/64 via fc00:f853:ccd:e793::3"}},
		{name: "host route without gateway", out: `[{"dst":"10.244.0.5","dev":"veth1","scope":"host","flags":[]}]`, want: []string{"10.244.0.5/32 (no gateway)"}},
		{name: "empty array", out: "[]\n", want: nil},
		{name: "no output at all", out: "", want: nil},
		{name: "garbage", out: "10.244.1.0/24 via 172.18.0.3", wantErr: "parsing ip route JSON"},
		{name: "bad dst", out: `[{"dst":"10.244.1.0/99"}]`, wantErr: `dst "10.244.1.0/99"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRoutes(tt.out)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var gs []string
			for _, r := range got {
				gs = append(gs, r.String())
			}
			if !reflect.DeepEqual(gs, tt.want) {
				t.Errorf("got %v, want %v", gs, tt.want)
			}
		})
	}
}

func TestParseDefaultRouteDevAndMTU(t *testing.T) {
	tests := []struct {
		out     string
		wantDev string
		wantOK  bool
	}{
		{`[{"dst":"default","gateway":"172.18.0.1","dev":"eth0","flags":[]}]`, "eth0", true},
		{`[{"type":"unreachable","dst":"default","dev":"lo","metric":4294967295,"flags":[]},{"dst":"default","gateway":"fc00::1","dev":"eth1","flags":[]}]`, "eth1", true},
		{`[]`, "", false},
	}
	for _, tt := range tests {
		dev, ok, err := ParseDefaultRouteDev(tt.out)
		if err != nil || dev != tt.wantDev || ok != tt.wantOK {
			t.Errorf("ParseDefaultRouteDev(%s) = %q %v %v", tt.out, dev, ok, err)
		}
	}
	mtu, err := ParseLinkMTU(`[{"ifindex":3,"ifname":"eth0","flags":["UP"],"mtu":1450,"qdisc":"noqueue"}]`)
	if err != nil || mtu != 1450 {
		t.Errorf("ParseLinkMTU = %d, %v", mtu, err)
	}
	if _, err := ParseLinkMTU(`[]`); err == nil {
		t.Error("ParseLinkMTU([]) did not fail")
	}
}

func TestManagerSync(t *testing.T) {
	fake := &execx.Fake{Respond: func(c execx.Call) (string, error) {
		line := c.Line()
		switch {
		case line == "ip -4 -json route show table main proto 107":
			// a stale route of a deleted node, and a route whose node changed IP
			return `[{"dst":"10.244.5.0/24","gateway":"172.18.0.9","dev":"eth0"},{"dst":"10.244.1.0/24","gateway":"172.18.0.7","dev":"eth0"}]`, nil
		case strings.Contains(line, "10.244.2.0/24"):
			return "", errors.New("Error: Nexthop has invalid gateway.")
		}
		return "", nil
	}}
	m := &Manager{Run: fake, IP: "ip", Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	desired := []Route{{Dst: pfx("10.244.1.0/24"), Via: ip("172.18.0.3")}, {Dst: pfx("10.244.2.0/24"), Via: ip("10.9.9.9")}}
	plan, err := m.Sync(context.Background(), desired, true, false)
	if err == nil || !strings.Contains(err.Error(), "invalid gateway") {
		t.Errorf("err = %v, want the failed replace reported", err)
	}
	if len(plan.Replace) != 2 || len(plan.Delete) != 1 {
		t.Errorf("plan = %+v", plan)
	}
	want := []string{
		"ip -4 -json route show table main proto 107",
		"ip -4 route replace 10.244.1.0/24 via 172.18.0.3 proto 107",
		"ip -4 route replace 10.244.2.0/24 via 10.9.9.9 proto 107",
		"ip -4 route del 10.244.5.0/24 table main proto 107",
	}
	if got := fake.Lines(); !reflect.DeepEqual(got, want) {
		t.Errorf("commands:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestManagerDefaultRouteMTU(t *testing.T) {
	fake := &execx.Fake{Respond: func(c execx.Call) (string, error) {
		switch c.Line() {
		case "ip -4 -json route show table main default":
			return "[]", nil // IPv6-only node
		case "ip -6 -json route show table main default":
			return `[{"dst":"default","gateway":"fc00::1","dev":"eth0"}]`, nil
		case "ip -json link show dev eth0":
			return `[{"ifname":"eth0","mtu":1480}]`, nil
		}
		return "", errors.New("unexpected " + c.Line())
	}}
	m := &Manager{Run: fake, IP: "ip", Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	mtu, dev, err := m.DefaultRouteMTU(context.Background(), true, true)
	if err != nil || mtu != 1480 || dev != "eth0" {
		t.Errorf("DefaultRouteMTU = %d %q %v", mtu, dev, err)
	}
}
