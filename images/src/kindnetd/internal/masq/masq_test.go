package masq

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"

	"svcconform.local/kindnetd/internal/execx"
)

var (
	v4Subnet = []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}
	v6Subnet = []netip.Prefix{netip.MustParsePrefix("fd00:10:244::/56")}
)

func TestRestoreInputAndListing(t *testing.T) {
	tests := []struct {
		name        string
		subnets     []netip.Prefix
		wantRestore string
	}{
		{name: "ipv4", subnets: v4Subnet, wantRestore: `*nat
:KIND-MASQ-AGENT - [0:0]
-A KIND-MASQ-AGENT -d 10.244.0.0/16 -m comment --comment "kind-masq-agent: traffic to the cluster pod subnet is not masqueraded" -j RETURN
-A KIND-MASQ-AGENT -s 10.244.0.0/16 -m comment --comment "kind-masq-agent: pod traffic leaving the cluster pod subnet is masqueraded" -j MASQUERADE
COMMIT
`},
		{name: "ipv6", subnets: v6Subnet, wantRestore: `*nat
:KIND-MASQ-AGENT - [0:0]
-A KIND-MASQ-AGENT -d fd00:10:244::/56 -m comment --comment "kind-masq-agent: traffic to the cluster pod subnet is not masqueraded" -j RETURN
-A KIND-MASQ-AGENT -s fd00:10:244::/56 -m comment --comment "kind-masq-agent: pod traffic leaving the cluster pod subnet is masqueraded" -j MASQUERADE
COMMIT
`},
		{name: "two subnets: all RETURNs before any MASQUERADE", subnets: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("10.250.0.0/16")},
			wantRestore: `*nat
:KIND-MASQ-AGENT - [0:0]
-A KIND-MASQ-AGENT -d 10.244.0.0/16 -m comment --comment "kind-masq-agent: traffic to the cluster pod subnet is not masqueraded" -j RETURN
-A KIND-MASQ-AGENT -d 10.250.0.0/16 -m comment --comment "kind-masq-agent: traffic to the cluster pod subnet is not masqueraded" -j RETURN
-A KIND-MASQ-AGENT -s 10.244.0.0/16 -m comment --comment "kind-masq-agent: pod traffic leaving the cluster pod subnet is masqueraded" -j MASQUERADE
-A KIND-MASQ-AGENT -s 10.250.0.0/16 -m comment --comment "kind-masq-agent: pod traffic leaving the cluster pod subnet is masqueraded" -j MASQUERADE
COMMIT
`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := RestoreInput(tt.subnets); got != tt.wantRestore {
				t.Errorf("RestoreInput:\n%s\nwant:\n%s", got, tt.wantRestore)
			}
			// The listing is the restore input's rules, preceded by -N.
			rl := Lines(tt.wantRestore)
			want := append([]string{"-N KIND-MASQ-AGENT"}, rl[2:len(rl)-1]...)
			if got := ExpectedListing(tt.subnets); !reflect.DeepEqual(got, want) {
				t.Errorf("ExpectedListing = %q, want %q", got, want)
			}
		})
	}
}

func TestJumpRule(t *testing.T) {
	want := `-m addrtype ! --dst-type LOCAL -m comment --comment "kind-masq-agent: non-local traffic is checked by the KIND-MASQ-AGENT chain" -j KIND-MASQ-AGENT`
	if got := quote(JumpRule()); got != want {
		t.Errorf("got %s\nwant %s", got, want)
	}
}

func TestToolsFor(t *testing.T) {
	tests := []struct {
		b    Backend
		v6   bool
		want Tools
	}{
		{BackendDefault, false, Tools{"iptables", "iptables-restore", "iptables-save"}},
		{BackendNFT, true, Tools{"ip6tables-nft", "ip6tables-nft-restore", "ip6tables-nft-save"}},
		{BackendLegacy, false, Tools{"iptables-legacy", "iptables-legacy-restore", "iptables-legacy-save"}},
	}
	for _, tt := range tests {
		if got := ToolsFor(tt.b, tt.v6); got != tt.want {
			t.Errorf("ToolsFor(%s, %v) = %+v", tt.b, tt.v6, got)
		}
	}
}

func TestChooseBackend(t *testing.T) {
	hint := "*mangle\n:PREROUTING ACCEPT [0:0]\n:KUBE-IPTABLES-HINT - [0:0]\nCOMMIT\n"
	canary := "*mangle\n:KUBE-KUBELET-CANARY - [0:0]\nCOMMIT\n"
	rules := "*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -j KUBE-POSTROUTING\n-A POSTROUTING -j X\nCOMMIT\n"
	tests := []struct {
		name         string
		nft, legacy  string
		want         Backend
		reasonSubstr string
	}{
		{"kubelet hint in nft", hint, rules, BackendNFT, "in iptables-nft"},
		{"kubelet canary in legacy", rules, canary, BackendLegacy, "in iptables-legacy"},
		{"hint in both: nft wins", hint, hint, BackendNFT, "in iptables-nft"},
		{"no hint, legacy has more rules", "", rules, BackendLegacy, "more rules (2)"},
		{"nothing anywhere", "", "", BackendNFT, "0 rules"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, reason := ChooseBackend(tt.nft, tt.legacy)
			if got != tt.want || !strings.Contains(reason, tt.reasonSubstr) {
				t.Errorf("got %s (%s), want %s (%q)", got, reason, tt.want, tt.reasonSubstr)
			}
		})
	}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestEnsure(t *testing.T) {
	listing := strings.Join(ExpectedListing(v4Subnet), "\n") + "\n"
	list := "iptables -w 5 -t nat -S KIND-MASQ-AGENT"
	restore := "iptables-restore -w 5 --noflush"
	check := `iptables -w 5 -t nat -C POSTROUTING -m addrtype ! --dst-type LOCAL -m comment --comment "kind-masq-agent: non-local traffic is checked by the KIND-MASQ-AGENT chain" -j KIND-MASQ-AGENT`
	add := strings.Replace(check, " -C ", " -A ", 1)
	errNoChain := errors.New("exit status 1")
	tests := []struct {
		name        string
		listOut     string
		listErr     error
		checkErr    error
		want        []string
		wantChanged bool
	}{
		{name: "first start", listErr: errNoChain, checkErr: errNoChain, want: []string{list, restore, check, add}, wantChanged: true},
		{name: "restart, all in place", listOut: listing, want: []string{list, check}},
		{name: "chain edited by someone", listOut: "-N KIND-MASQ-AGENT\n-A KIND-MASQ-AGENT -j MASQUERADE\n", want: []string{list, restore, check}, wantChanged: true},
		{name: "jump removed", listOut: listing, checkErr: errNoChain, want: []string{list, check, add}, wantChanged: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdin string
			fake := &execx.Fake{Respond: func(c execx.Call) (string, error) {
				switch c.Line() {
				case list:
					return tt.listOut, tt.listErr
				case check:
					return "", tt.checkErr
				case restore:
					stdin = c.Stdin
				}
				return "", nil
			}}
			m := &Manager{Run: fake, Tools: ToolsFor(BackendDefault, false), Log: quiet()}
			changed, err := m.Ensure(context.Background(), v4Subnet)
			if err != nil {
				t.Fatal(err)
			}
			if changed != tt.wantChanged {
				t.Errorf("changed = %v", changed)
			}
			if got := fake.Lines(); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("commands:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			if tt.wantChanged && slices.Contains(tt.want, restore) && stdin != RestoreInput(v4Subnet) {
				t.Errorf("restore stdin = %q", stdin)
			}
		})
	}
}

func TestEnsureReportsFailures(t *testing.T) {
	fake := &execx.Fake{Respond: func(c execx.Call) (string, error) {
		if c.Name == "ip6tables-restore" {
			return "", errors.New("ip6tables-restore: line 3 failed")
		}
		return "", errors.New("exit status 1")
	}}
	m := &Manager{Run: fake, Tools: ToolsFor(BackendDefault, true), V6: true, Log: quiet()}
	if _, err := m.Ensure(context.Background(), v6Subnet); err == nil || !strings.Contains(err.Error(), "line 3 failed") {
		t.Errorf("err = %v", err)
	}
	if changed, err := m.Ensure(context.Background(), nil); changed || err != nil {
		t.Errorf("no subnets: %v %v", changed, err)
	}
}
