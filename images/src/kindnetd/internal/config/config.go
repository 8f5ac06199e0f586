// Package config turns kindnetd's environment into a validated Config.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Environment variables read by kindnetd (the DaemonSet sets the first two).
const (
	EnvNodeName             = "NODE_NAME"
	EnvPodSubnet            = "POD_SUBNET"
	EnvControlPlaneEndpoint = "CONTROL_PLANE_ENDPOINT"
	EnvServiceHost          = "KUBERNETES_SERVICE_HOST"
	EnvServicePort          = "KUBERNETES_SERVICE_PORT"
	EnvMTU                  = "CNI_MTU"
)

// Config is what kindnetd needs from its environment.
type Config struct {
	NodeName string
	// PodSubnets is the cluster-wide pod subnet, one prefix per family (or more).
	PodSubnets []netip.Prefix
	// APIServers are the API server base URLs to try, in order: the control
	// plane endpoint (if set), then the in-cluster service address (if set).
	APIServers []string
	// MTU for pod interfaces; 0 means "take it from the default-route interface".
	MTU int
}

// FromEnv reads and validates the environment through getenv (os.Getenv in main).
func FromEnv(getenv func(string) string) (Config, error) {
	var c Config
	var errs []error
	c.NodeName = strings.TrimSpace(getenv(EnvNodeName))
	if c.NodeName == "" {
		errs = append(errs, fmt.Errorf("%s is not set (the DaemonSet sets it from spec.nodeName)", EnvNodeName))
	}
	subnets, err := ParsePrefixes(getenv(EnvPodSubnet))
	switch {
	case err != nil:
		errs = append(errs, fmt.Errorf("%s: %w", EnvPodSubnet, err))
	case len(subnets) == 0:
		errs = append(errs, fmt.Errorf("%s is not set (the cluster pod subnet, e.g. 10.244.0.0/16 or 10.244.0.0/16,fd00:10:244::/56)", EnvPodSubnet))
	}
	c.PodSubnets = subnets
	c.APIServers, err = APIServerURLs(getenv(EnvControlPlaneEndpoint), getenv(EnvServiceHost), getenv(EnvServicePort))
	if err != nil {
		errs = append(errs, err)
	}
	if v := strings.TrimSpace(getenv(EnvMTU)); v != "" {
		mtu, err := strconv.Atoi(v)
		if err != nil || mtu < 576 || mtu > 65535 {
			errs = append(errs, fmt.Errorf("%s=%q: want an integer between 576 and 65535", EnvMTU, v))
		}
		c.MTU = mtu
	}
	return c, errors.Join(errs...)
}

// ParsePrefixes parses a comma-separated list of CIDRs, masking host bits
// ("10.244.1.7/16" becomes 10.244.0.0/16). Empty input gives no prefixes.
func ParsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("not a CIDR: %q", f)
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// APIServerURLs lists the API server addresses to try: CONTROL_PLANE_ENDPOINT
// (host:port; kind patches it in so kindnetd does not depend on kube-proxy)
// first, then the in-cluster KUBERNETES_SERVICE_HOST/PORT as a fallback.
func APIServerURLs(controlPlaneEndpoint, serviceHost, servicePort string) ([]string, error) {
	var urls []string
	if cpe := strings.TrimSpace(controlPlaneEndpoint); cpe != "" {
		switch {
		case strings.HasPrefix(cpe, "https://"):
			urls = append(urls, strings.TrimRight(cpe, "/"))
		case strings.Contains(cpe, "://"):
			return nil, fmt.Errorf("%s=%q: only https is supported", EnvControlPlaneEndpoint, cpe)
		default:
			if _, _, err := net.SplitHostPort(cpe); err != nil {
				return nil, fmt.Errorf("%s=%q: want host:port: %v", EnvControlPlaneEndpoint, cpe, err)
			}
			urls = append(urls, "https://"+cpe)
		}
	}
	if host := strings.TrimSpace(serviceHost); host != "" {
		port := strings.TrimSpace(servicePort)
		if port == "" {
			port = "443"
		}
		urls = append(urls, "https://"+net.JoinHostPort(host, port))
	}
	if len(urls) == 0 {
		return nil, fmt.Errorf("no API server address: neither %s nor %s is set", EnvControlPlaneEndpoint, EnvServiceHost)
	}
	return urls, nil
}

// Families returns which address families the prefixes use.
func Families(ps []netip.Prefix) (v4, v6 bool) {
	for _, p := range ps {
		if p.Addr().Is4() {
			v4 = true
		} else {
			v6 = true
		}
	}
	return v4, v6
}

// Of returns the prefixes of one family (v6 false: IPv4).
func Of(ps []netip.Prefix, v6 bool) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range ps {
		if p.Addr().Is6() == v6 {
			out = append(out, p)
		}
	}
	return out
}

// Covered reports whether p lies inside one of the subnets.
func Covered(p netip.Prefix, subnets []netip.Prefix) bool {
	for _, s := range subnets {
		if s.Bits() <= p.Bits() && s.Contains(p.Addr()) {
			return true
		}
	}
	return false
}
