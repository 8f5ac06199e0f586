// Package kube holds the few Node facts kindnetd needs, their parsing from the
// API server's JSON, and a minimal in-cluster client (client.go).
package kube

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"sort"
)

// Node is the part of a core/v1 Node that kindnetd uses.
type Node struct {
	Name string
	// PodCIDRs from spec.podCIDRs (or spec.podCIDR on old API servers), masked.
	PodCIDRs []netip.Prefix
	// InternalIPs from status.addresses of type InternalIP, in API order.
	InternalIPs []netip.Addr
}

type nodeJSON struct {
	Kind     string `json:"kind"`
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		PodCIDR  string   `json:"podCIDR"`
		PodCIDRs []string `json:"podCIDRs"`
	} `json:"spec"`
	Status struct {
		Addresses []struct {
			Type    string `json:"type"`
			Address string `json:"address"`
		} `json:"addresses"`
	} `json:"status"`
}

type nodeListJSON struct {
	Kind  string     `json:"kind"`
	Items []nodeJSON `json:"items"`
}

// ParseNode parses one Node object (GET /api/v1/nodes/NAME).
func ParseNode(data []byte) (Node, error) {
	var nj nodeJSON
	if err := json.Unmarshal(data, &nj); err != nil {
		return Node{}, fmt.Errorf("decoding Node: %w", err)
	}
	if nj.Kind != "" && nj.Kind != "Node" {
		return Node{}, fmt.Errorf("decoding Node: got kind %q", nj.Kind)
	}
	return nj.node()
}

// ParseNodeList parses a NodeList (GET /api/v1/nodes), sorted by node name.
func ParseNodeList(data []byte) ([]Node, error) {
	var lj nodeListJSON
	if err := json.Unmarshal(data, &lj); err != nil {
		return nil, fmt.Errorf("decoding NodeList: %w", err)
	}
	if lj.Kind != "" && lj.Kind != "NodeList" {
		return nil, fmt.Errorf("decoding NodeList: got kind %q", lj.Kind)
	}
	nodes := make([]Node, 0, len(lj.Items))
	for _, nj := range lj.Items {
		n, err := nj.node()
		if err != nil {
			return nil, err
		}
		nodes = append(nodes, n)
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Name < nodes[j].Name })
	return nodes, nil
}

func (nj nodeJSON) node() (Node, error) {
	n := Node{Name: nj.Metadata.Name}
	if n.Name == "" {
		return Node{}, fmt.Errorf("decoding Node: no metadata.name")
	}
	cidrs := nj.Spec.PodCIDRs
	if len(cidrs) == 0 && nj.Spec.PodCIDR != "" {
		cidrs = []string{nj.Spec.PodCIDR}
	}
	for _, c := range cidrs {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return Node{}, fmt.Errorf("node %s: bad podCIDR %q: %v", n.Name, c, err)
		}
		n.PodCIDRs = append(n.PodCIDRs, p.Masked())
	}
	for _, a := range nj.Status.Addresses {
		if a.Type != "InternalIP" {
			continue
		}
		ip, err := netip.ParseAddr(a.Address)
		if err != nil {
			return Node{}, fmt.Errorf("node %s: bad InternalIP %q: %v", n.Name, a.Address, err)
		}
		n.InternalIPs = append(n.InternalIPs, ip.Unmap())
	}
	return n, nil
}

// InternalIP returns the node's first InternalIP of the family (v6 false: IPv4).
func (n Node) InternalIP(v6 bool) (netip.Addr, bool) {
	for _, ip := range n.InternalIPs {
		if ip.Is6() == v6 {
			return ip, true
		}
	}
	return netip.Addr{}, false
}
