// Package masq keeps an ip-masq-agent style NAT chain: pod traffic leaving the
// cluster pod subnet is masqueraded to the node's address, pod-to-pod traffic
// is not.
//
//	-A POSTROUTING -m addrtype ! --dst-type LOCAL -m comment --comment "..." -j KIND-MASQ-AGENT
//	-A KIND-MASQ-AGENT -d <pod subnet> -m comment --comment "..." -j RETURN      (per subnet)
//	-A KIND-MASQ-AGENT -s <pod subnet> -m comment --comment "..." -j MASQUERADE  (per subnet)
//
// Everything else falls through untouched (node-originated traffic keeps its address).
package masq

import (
	"fmt"
	"net/netip"
	"strings"
)

// Chain is the nat chain kindnetd owns.
const Chain = "KIND-MASQ-AGENT"

const (
	jumpComment   = "kind-masq-agent: non-local traffic is checked by the KIND-MASQ-AGENT chain"
	returnComment = "kind-masq-agent: traffic to the cluster pod subnet is not masqueraded"
	masqComment   = "kind-masq-agent: pod traffic leaving the cluster pod subnet is masqueraded"
)

// JumpRule is the POSTROUTING rule spec (after "-t nat -A|-C POSTROUTING").
func JumpRule() []string {
	return []string{"-m", "addrtype", "!", "--dst-type", "LOCAL", "-m", "comment", "--comment", jumpComment, "-j", Chain}
}

// ChainRules returns the rule specs of the chain, in order, for one family's subnets.
func ChainRules(subnets []netip.Prefix) [][]string {
	var rules [][]string
	for _, s := range subnets {
		rules = append(rules, []string{"-d", s.Masked().String(), "-m", "comment", "--comment", returnComment, "-j", "RETURN"})
	}
	for _, s := range subnets {
		rules = append(rules, []string{"-s", s.Masked().String(), "-m", "comment", "--comment", masqComment, "-j", "MASQUERADE"})
	}
	return rules
}

// quote renders rule arguments as iptables-save/-S do: arguments with spaces
// in double quotes.
func quote(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if strings.ContainsAny(a, " \t") {
			a = `"` + a + `"`
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}

// RestoreInput is the iptables-restore --noflush input that atomically
// (re)creates and fills the chain; declaring the chain flushes it, the rest
// of the nat table is left alone.
func RestoreInput(subnets []netip.Prefix) string {
	var b strings.Builder
	b.WriteString("*nat\n")
	fmt.Fprintf(&b, ":%s - [0:0]\n", Chain)
	for _, r := range ChainRules(subnets) {
		fmt.Fprintf(&b, "-A %s %s\n", Chain, quote(r))
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// ExpectedListing is what `iptables -t nat -S KIND-MASQ-AGENT` prints when the
// chain is as RestoreInput leaves it.
func ExpectedListing(subnets []netip.Prefix) []string {
	lines := []string{"-N " + Chain}
	for _, r := range ChainRules(subnets) {
		lines = append(lines, "-A "+Chain+" "+quote(r))
	}
	return lines
}

// Lines splits command output into trimmed, non-empty lines.
func Lines(out string) []string {
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// Backend is the iptables flavour to drive.
type Backend string

const (
	// BackendDefault runs plain iptables / ip6tables (nft in Debian bookworm).
	BackendDefault Backend = "default"
	BackendNFT     Backend = "nft"
	BackendLegacy  Backend = "legacy"
)

// Tools are the binaries for one family and backend.
type Tools struct {
	IPTables string
	Restore  string
	Save     string
}

// ToolsFor names the binaries of a backend and family.
func ToolsFor(b Backend, v6 bool) Tools {
	base := "iptables"
	if v6 {
		base = "ip6tables"
	}
	suffix := ""
	switch b {
	case BackendNFT:
		suffix = "-nft"
	case BackendLegacy:
		suffix = "-legacy"
	}
	return Tools{IPTables: base + suffix, Restore: base + suffix + "-restore", Save: base + suffix + "-save"}
}

// hinted reports whether an iptables-save dump holds the chains the kubelet
// creates to tell others which backend it uses.
func hinted(save string) bool {
	for _, l := range Lines(save) {
		if strings.HasPrefix(l, ":KUBE-IPTABLES-HINT ") || strings.HasPrefix(l, ":KUBE-KUBELET-CANARY ") {
			return true
		}
	}
	return false
}

func ruleCount(save string) int {
	n := 0
	for _, l := range Lines(save) {
		if strings.HasPrefix(l, "-") {
			n++
		}
	}
	return n
}

// ChooseBackend picks the backend the node already uses, as Kubernetes'
// iptables-wrapper does: the kubelet's hint chain decides (nft first);
// otherwise the backend with more rules; nft on a tie (Debian's default).
func ChooseBackend(nftSave, legacySave string) (Backend, string) {
	switch {
	case hinted(nftSave):
		return BackendNFT, "the kubelet's KUBE-IPTABLES-HINT/KUBE-KUBELET-CANARY chain is in iptables-nft"
	case hinted(legacySave):
		return BackendLegacy, "the kubelet's KUBE-IPTABLES-HINT/KUBE-KUBELET-CANARY chain is in iptables-legacy"
	}
	n, l := ruleCount(nftSave), ruleCount(legacySave)
	if l > n {
		return BackendLegacy, fmt.Sprintf("iptables-legacy holds more rules (%d) than iptables-nft (%d)", l, n)
	}
	return BackendNFT, fmt.Sprintf("no kubelet hint; iptables-nft holds %d rules, iptables-legacy %d", n, l)
}
