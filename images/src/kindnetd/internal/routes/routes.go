// Package routes computes and applies the routes to other nodes' pod CIDRs
// ("<podCIDR> via <node InternalIP>"), which is all the pod networking a kind
// cluster needs: every node sits on the same L2 network.
package routes

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"svcconform.local/kindnetd/internal/kube"
)

// Proto is the route protocol number kindnetd stamps on its routes
// (`ip route ... proto 107`). It lets kindnetd find, and only ever delete,
// routes it installed itself, including those of a previous run.
// 107 is unassigned in iproute2's rt_protos.
const Proto = "107"

// Route is one pod-CIDR route.
type Route struct {
	Dst netip.Prefix
	Via netip.Addr // zero if the route has no gateway
}

func (r Route) String() string {
	if !r.Via.IsValid() {
		return r.Dst.String() + " (no gateway)"
	}
	return r.Dst.String() + " via " + r.Via.String()
}

// Desired returns the routes to every other node's pod CIDRs, sorted by
// destination, plus notes on nodes that cannot be routed to yet (no podCIDR,
// no InternalIP of that family). Only families in want are considered.
func Desired(self string, nodes []kube.Node, wantV4, wantV6 bool) ([]Route, []string) {
	var out []Route
	var notes []string
	owner := map[netip.Prefix]string{}
	for _, n := range nodes {
		if n.Name == self {
			continue
		}
		if len(n.PodCIDRs) == 0 {
			notes = append(notes, fmt.Sprintf("node %s has no podCIDR yet", n.Name))
			continue
		}
		for _, c := range n.PodCIDRs {
			v6 := c.Addr().Is6()
			if (v6 && !wantV6) || (!v6 && !wantV4) {
				continue
			}
			gw, ok := n.InternalIP(v6)
			if !ok {
				notes = append(notes, fmt.Sprintf("node %s has podCIDR %s but no InternalIP of that family", n.Name, c))
				continue
			}
			if prev, dup := owner[c]; dup {
				notes = append(notes, fmt.Sprintf("podCIDR %s is claimed by both %s and %s; keeping %s", c, prev, n.Name, prev))
				continue
			}
			owner[c] = n.Name
			out = append(out, Route{Dst: c, Via: gw})
		}
	}
	Sort(out)
	return out, notes
}

// Sort orders routes by family (IPv4 first), then destination.
func Sort(rs []Route) {
	sort.Slice(rs, func(i, j int) bool {
		a, b := rs[i].Dst, rs[j].Dst
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c < 0
		}
		return a.Bits() < b.Bits()
	})
}

// Plan is what Diff decides: routes to add or change, routes to delete.
type Plan struct {
	Replace []Route
	Delete  []Route
}

// Empty reports whether the plan changes nothing.
func (p Plan) Empty() bool { return len(p.Replace) == 0 && len(p.Delete) == 0 }

// Diff compares the desired routes with the ones installed under Proto.
func Diff(desired, existing []Route) Plan {
	have := map[netip.Prefix]netip.Addr{}
	for _, r := range existing {
		have[r.Dst] = r.Via
	}
	want := map[netip.Prefix]bool{}
	var p Plan
	for _, r := range desired {
		want[r.Dst] = true
		if via, ok := have[r.Dst]; !ok || via != r.Via {
			p.Replace = append(p.Replace, r)
		}
	}
	for _, r := range existing {
		if !want[r.Dst] {
			p.Delete = append(p.Delete, r)
		}
	}
	Sort(p.Replace)
	Sort(p.Delete)
	return p
}

func familyFlag(v6 bool) string {
	if v6 {
		return "-6"
	}
	return "-4"
}

// ListArgs lists kindnetd's routes of one family in the main table as JSON.
func ListArgs(v6 bool) []string {
	return []string{familyFlag(v6), "-json", "route", "show", "table", "main", "proto", Proto}
}

// ReplaceArgs installs or updates a route.
func ReplaceArgs(r Route) []string {
	return []string{familyFlag(r.Dst.Addr().Is6()), "route", "replace", r.Dst.String(), "via", r.Via.String(), "proto", Proto}
}

// DeleteArgs deletes one of kindnetd's routes.
func DeleteArgs(r Route) []string {
	return []string{familyFlag(r.Dst.Addr().Is6()), "route", "del", r.Dst.String(), "table", "main", "proto", Proto}
}

type ipRoute struct {
	Dst     string `json:"dst"`
	Gateway string `json:"gateway"`
	Dev     string `json:"dev"`
	Type    string `json:"type"`
}

// ParseRoutes parses `ip -json route show` output. Host routes print without
// a prefix length ("10.244.1.5") and become /32 or /128.
func ParseRoutes(out string) ([]Route, error) {
	var raw []ipRoute
	if err := json.Unmarshal([]byte(strings.TrimSpace(nonEmpty(out))), &raw); err != nil {
		return nil, fmt.Errorf("parsing ip route JSON: %w", err)
	}
	var rs []Route
	for _, e := range raw {
		dst, err := parseDst(e.Dst)
		if err != nil {
			return nil, err
		}
		r := Route{Dst: dst}
		if e.Gateway != "" {
			gw, err := netip.ParseAddr(e.Gateway)
			if err != nil {
				return nil, fmt.Errorf("parsing ip route JSON: gateway %q: %v", e.Gateway, err)
			}
			r.Via = gw.Unmap()
		}
		rs = append(rs, r)
	}
	return rs, nil
}

func parseDst(s string) (netip.Prefix, error) {
	if s == "default" {
		return netip.Prefix{}, fmt.Errorf("parsing ip route JSON: unexpected default route")
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("parsing ip route JSON: dst %q: %v", s, err)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("parsing ip route JSON: dst %q: %v", s, err)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func nonEmpty(s string) string {
	if strings.TrimSpace(s) == "" {
		return "[]"
	}
	return s
}

// DefaultRouteArgs lists the default routes of one family as JSON.
func DefaultRouteArgs(v6 bool) []string {
	return []string{familyFlag(v6), "-json", "route", "show", "table", "main", "default"}
}

// ParseDefaultRouteDev returns the device of the first usable default route in
// `ip -json route show default` output (unreachable/blackhole ones are skipped).
func ParseDefaultRouteDev(out string) (string, bool, error) {
	var raw []ipRoute
	if err := json.Unmarshal([]byte(nonEmpty(out)), &raw); err != nil {
		return "", false, fmt.Errorf("parsing ip route JSON: %w", err)
	}
	for _, e := range raw {
		if e.Dev == "" || (e.Type != "" && e.Type != "unicast") {
			continue
		}
		return e.Dev, true, nil
	}
	return "", false, nil
}

// LinkArgs shows one link as JSON.
func LinkArgs(dev string) []string {
	return []string{"-json", "link", "show", "dev", dev}
}

// ParseLinkMTU returns the MTU from `ip -json link show dev X` output.
func ParseLinkMTU(out string) (int, error) {
	var raw []struct {
		IfName string `json:"ifname"`
		MTU    int    `json:"mtu"`
	}
	if err := json.Unmarshal([]byte(nonEmpty(out)), &raw); err != nil {
		return 0, fmt.Errorf("parsing ip link JSON: %w", err)
	}
	if len(raw) == 0 || raw[0].MTU <= 0 {
		return 0, fmt.Errorf("ip link JSON has no MTU: %q", strings.TrimSpace(out))
	}
	return raw[0].MTU, nil
}
