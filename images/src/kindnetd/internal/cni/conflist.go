// Package cni renders kindnetd's CNI network configuration list and writes it
// atomically where the container runtime looks for it.
package cni

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
)

// Defaults used by the DaemonSet.
const (
	DefaultPath = "/etc/cni/net.d/10-kindnet.conflist"
	// Version is the CNI spec version of the list. Debian bookworm's
	// containernetworking-plugins 1.1.1 and containerd 1.6 (libcni 1.1.2) both support 1.0.0.
	Version = "1.0.0"
	// NetworkName is the conflist "name".
	NetworkName = "kindnet"
	// IPAMDataDir keeps host-local's allocations on tmpfs, so a rebooted node
	// does not inherit leases of pods that no longer exist (as kind's kindnet does).
	IPAMDataDir = "/run/cni-ipam-state"
)

// Params are the inputs of the conflist.
type Params struct {
	// PodCIDRs of this node (spec.podCIDRs), at most one per family.
	PodCIDRs []netip.Prefix
	MTU      int
}

type conflist struct {
	CNIVersion string `json:"cniVersion"`
	Name       string `json:"name"`
	Plugins    []any  `json:"plugins"`
}

type ptpPlugin struct {
	Type   string `json:"type"`
	IPMasq bool   `json:"ipMasq"`
	MTU    int    `json:"mtu"`
	IPAM   ipam   `json:"ipam"`
}

type ipam struct {
	Type    string        `json:"type"`
	DataDir string        `json:"dataDir"`
	Ranges  [][]ipamRange `json:"ranges"`
	Routes  []ipamRoute   `json:"routes"`
}

type ipamRange struct {
	Subnet string `json:"subnet"`
}

type ipamRoute struct {
	Dst string `json:"dst"`
}

type portmapPlugin struct {
	Type         string          `json:"type"`
	Capabilities map[string]bool `json:"capabilities"`
}

// Render returns the conflist: ptp + host-local over the node's pod CIDRs
// with a default route per family (masquerading is kindnetd's job, so
// ipMasq is false), followed by portmap for hostPort support.
func Render(p Params) ([]byte, error) {
	if len(p.PodCIDRs) == 0 {
		return nil, errors.New("rendering CNI config: the node has no pod CIDR")
	}
	if p.MTU < 576 || p.MTU > 65535 {
		return nil, fmt.Errorf("rendering CNI config: MTU %d out of range", p.MTU)
	}
	var ranges [][]ipamRange
	var routes []ipamRoute
	seen := map[bool]bool{}
	for _, c := range p.PodCIDRs {
		c = c.Masked()
		v6 := c.Addr().Is6()
		if seen[v6] {
			return nil, fmt.Errorf("rendering CNI config: more than one pod CIDR of the same family in %v", p.PodCIDRs)
		}
		seen[v6] = true
		ranges = append(ranges, []ipamRange{{Subnet: c.String()}})
		if v6 {
			routes = append(routes, ipamRoute{Dst: "::/0"})
		} else {
			routes = append(routes, ipamRoute{Dst: "0.0.0.0/0"})
		}
	}
	cl := conflist{
		CNIVersion: Version,
		Name:       NetworkName,
		Plugins: []any{
			ptpPlugin{Type: "ptp", IPMasq: false, MTU: p.MTU,
				IPAM: ipam{Type: "host-local", DataDir: IPAMDataDir, Ranges: ranges, Routes: routes}},
			portmapPlugin{Type: "portmap", Capabilities: map[string]bool{"portMappings": true}},
		},
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(cl); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// PluginTypes lists the CNI plugin binaries a conflist refers to (for preflight checks and tests).
func PluginTypes(conf []byte) ([]string, error) {
	var cl struct {
		Plugins []struct {
			Type string `json:"type"`
			IPAM struct {
				Type string `json:"type"`
			} `json:"ipam"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal(conf, &cl); err != nil {
		return nil, err
	}
	var out []string
	for _, p := range cl.Plugins {
		out = append(out, p.Type)
		if p.IPAM.Type != "" {
			out = append(out, p.IPAM.Type)
		}
	}
	return out, nil
}

// WriteFileAtomic writes data to path unless it already holds exactly data.
// It writes a temporary file in the same directory (a dot-name without a
// .conf/.conflist/.json extension, so the runtime never loads it half-written)
// and renames it over path. It reports whether the file changed.
func WriteFileAtomic(path string, data []byte) (bool, error) {
	old, err := os.ReadFile(path)
	if err == nil && bytes.Equal(old, data) {
		return false, nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("reading %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, err
	}
	tmp, err := os.CreateTemp(dir, ".kindnetd-*.tmp")
	if err != nil {
		return false, err
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return false, err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return false, err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return false, err
	}
	if err := tmp.Close(); err != nil {
		return false, err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return false, err
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return true, nil
}
