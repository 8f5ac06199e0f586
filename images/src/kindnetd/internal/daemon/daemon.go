// Package daemon is kindnetd's control loop: wait for this node's pod CIDRs,
// then keep the masquerade rules, the routes to other nodes and the CNI config
// in place, resyncing on a fixed interval.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"svcconform.local/kindnetd/internal/cni"
	"svcconform.local/kindnetd/internal/config"
	"svcconform.local/kindnetd/internal/kube"
	"svcconform.local/kindnetd/internal/masq"
	"svcconform.local/kindnetd/internal/routes"
)

// NodeSource is the API server as kindnetd sees it (kube.Client in production).
type NodeSource interface {
	GetNode(ctx context.Context, name string) (kube.Node, error)
	ListNodes(ctx context.Context) ([]kube.Node, error)
}

// Options tune the loop; zero values get the defaults below.
type Options struct {
	CNIConfigPath  string
	CNIBinDir      string        // if it exists, checked for the plugins the config uses
	Resync         time.Duration // default 5s
	PodCIDRTimeout time.Duration // how long to wait for spec.podCIDRs; default 5m
	PodCIDRPoll    time.Duration // default 2s
	FailureTimeout time.Duration // exit after this long without a clean sync; default 5m
	Once           bool          // one sync, then return
}

// Masq is one family's masquerade manager and the pod subnets it exempts.
type Masq struct {
	Manager *masq.Manager
	Subnets []netip.Prefix
}

// Daemon holds the loop's state.
type Daemon struct {
	Cfg    config.Config
	Opts   Options
	Nodes  NodeSource
	Routes *routes.Manager
	Masq   []Masq
	Log    *slog.Logger
	Now    func() time.Time // for tests; default time.Now

	v4, v6   bool
	podCIDRs []netip.Prefix
	mtu      int
	notes    string
}

func (d *Daemon) defaults() {
	if d.Opts.CNIConfigPath == "" {
		d.Opts.CNIConfigPath = cni.DefaultPath
	}
	if d.Opts.Resync <= 0 {
		d.Opts.Resync = 5 * time.Second
	}
	if d.Opts.PodCIDRTimeout <= 0 {
		d.Opts.PodCIDRTimeout = 5 * time.Minute
	}
	if d.Opts.PodCIDRPoll <= 0 {
		d.Opts.PodCIDRPoll = 2 * time.Second
	}
	if d.Opts.FailureTimeout <= 0 {
		d.Opts.FailureTimeout = 5 * time.Minute
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	d.v4, d.v6 = config.Families(d.Cfg.PodSubnets)
}

// Run waits for the pod CIDRs and then syncs until ctx ends (nil) or nothing
// has synced cleanly for FailureTimeout (an error: the caller exits non-zero
// and the DaemonSet restarts the pod).
func (d *Daemon) Run(ctx context.Context) error {
	d.defaults()
	self, err := d.WaitForPodCIDRs(ctx)
	if err != nil {
		return err
	}
	if ctx.Err() != nil {
		return nil
	}
	d.adoptPodCIDRs(self.PodCIDRs)
	if err := d.chooseMTU(ctx); err != nil {
		return err
	}
	lastOK := d.Now()
	failing := false
	ticker := time.NewTicker(d.Opts.Resync)
	defer ticker.Stop()
	for {
		err := d.SyncOnce(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err == nil:
			if failing {
				d.Log.Info("sync recovered", "after", d.Now().Sub(lastOK).Round(time.Second).String())
			}
			lastOK, failing = d.Now(), false
		default:
			failing = true
			since := d.Now().Sub(lastOK)
			d.Log.Error("sync failed; retrying", "err", err, "failing_for", since.Round(time.Second).String(),
				"gives_up_after", d.Opts.FailureTimeout.String())
			if since >= d.Opts.FailureTimeout {
				return fmt.Errorf("no successful sync for %s: %w", since.Round(time.Second), err)
			}
		}
		if d.Opts.Once {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}

// WaitForPodCIDRs polls this node until the controller-manager has allocated
// spec.podCIDRs, for at most PodCIDRTimeout.
func (d *Daemon) WaitForPodCIDRs(ctx context.Context) (kube.Node, error) {
	d.defaults()
	deadline := d.Now().Add(d.Opts.PodCIDRTimeout)
	var lastErr error
	for attempt := 1; ; attempt++ {
		// Log the first attempt and every fifth: clear, but not one line per poll.
		loud := attempt == 1 || attempt%5 == 0
		n, err := d.Nodes.GetNode(ctx, d.Cfg.NodeName)
		switch {
		case err != nil:
			lastErr = err
			if loud {
				d.Log.Warn("cannot read this node from the API server yet", "node", d.Cfg.NodeName, "attempt", attempt, "err", err)
			}
		case len(n.PodCIDRs) == 0:
			lastErr = nil
			if loud {
				d.Log.Info("waiting for the controller-manager to allocate spec.podCIDRs", "node", n.Name, "attempt", attempt)
			}
		default:
			d.Log.Info("node pod CIDRs allocated", "node", n.Name, "podCIDRs", n.PodCIDRs, "internalIPs", n.InternalIPs, "attempts", attempt)
			return n, nil
		}
		if !d.Now().Before(deadline) {
			if lastErr != nil {
				return kube.Node{}, fmt.Errorf("could not read node %s from the API server within %s (%d attempts): %w",
					d.Cfg.NodeName, d.Opts.PodCIDRTimeout, attempt, lastErr)
			}
			return kube.Node{}, fmt.Errorf("node %s still has no spec.podCIDRs after %s (%d attempts): is kube-controller-manager running with --allocate-node-cidrs=true and --cluster-cidr?",
				d.Cfg.NodeName, d.Opts.PodCIDRTimeout, attempt)
		}
		select {
		case <-ctx.Done():
			return kube.Node{}, nil
		case <-time.After(d.Opts.PodCIDRPoll):
		}
	}
}

func (d *Daemon) adoptPodCIDRs(cidrs []netip.Prefix) {
	d.podCIDRs = slices.Clone(cidrs)
	for _, c := range cidrs {
		if !config.Covered(c, d.Cfg.PodSubnets) {
			d.Log.Warn("this node's podCIDR is outside POD_SUBNET: traffic from its pods to other pods will be masqueraded",
				"podCIDR", c, "POD_SUBNET", d.Cfg.PodSubnets)
		}
	}
	for _, s := range d.Cfg.PodSubnets {
		if !slices.ContainsFunc(cidrs, func(c netip.Prefix) bool { return c.Addr().Is6() == s.Addr().Is6() }) {
			d.Log.Warn("POD_SUBNET has a family this node has no podCIDR for", "subnet", s, "podCIDRs", cidrs)
		}
	}
}

func (d *Daemon) chooseMTU(ctx context.Context) error {
	if d.Cfg.MTU > 0 {
		d.mtu = d.Cfg.MTU
		d.Log.Info("pod MTU from CNI_MTU", "mtu", d.mtu)
		return nil
	}
	v4, v6 := config.Families(d.podCIDRs)
	mtu, dev, err := d.Routes.DefaultRouteMTU(ctx, v4 || !v6, v6)
	if err != nil {
		d.mtu = 1500
		d.Log.Warn("cannot find the default-route interface's MTU; using 1500 (set CNI_MTU to override)", "err", err)
		return nil
	}
	d.mtu = mtu
	d.Log.Info("pod MTU from the default-route interface", "mtu", mtu, "interface", dev)
	return nil
}

// SyncOnce converges masquerade rules, routes and the CNI config once. It
// does every step it can and returns all errors joined.
func (d *Daemon) SyncOnce(ctx context.Context) error {
	d.defaults()
	var errs []error
	for _, m := range d.Masq {
		if _, err := m.Manager.Ensure(ctx, m.Subnets); err != nil {
			errs = append(errs, err)
		}
	}
	nodes, err := d.Nodes.ListNodes(ctx)
	if err != nil {
		errs = append(errs, err)
	} else {
		if self := find(nodes, d.Cfg.NodeName); self != nil && len(self.PodCIDRs) > 0 && !slices.Equal(self.PodCIDRs, d.podCIDRs) {
			d.Log.Warn("this node's podCIDRs changed; rewriting the CNI config", "was", d.podCIDRs, "now", self.PodCIDRs)
			d.adoptPodCIDRs(self.PodCIDRs)
		}
		desired, notes := routes.Desired(d.Cfg.NodeName, nodes, d.v4, d.v6)
		if joined := strings.Join(notes, "; "); joined != d.notes {
			d.notes = joined
			for _, n := range notes {
				d.Log.Info("no route yet", "reason", n)
			}
		}
		if _, err := d.Routes.Sync(ctx, desired, d.v4, d.v6); err != nil {
			errs = append(errs, err)
		}
	}
	if err := d.writeCNIConfig(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (d *Daemon) writeCNIConfig() error {
	conf, err := cni.Render(cni.Params{PodCIDRs: d.podCIDRs, MTU: d.mtu})
	if err != nil {
		return err
	}
	changed, err := cni.WriteFileAtomic(d.Opts.CNIConfigPath, conf)
	if err != nil {
		return fmt.Errorf("writing the CNI config: %w", err)
	}
	if changed {
		d.Log.Info("CNI config written", "path", d.Opts.CNIConfigPath, "podCIDRs", d.podCIDRs, "mtu", d.mtu)
		d.checkPlugins(conf)
	}
	return nil
}

// checkPlugins warns about CNI plugins the config needs that the node lacks
// (only if the plugin directory is visible to kindnetd).
func (d *Daemon) checkPlugins(conf []byte) {
	if d.Opts.CNIBinDir == "" {
		return
	}
	if _, err := os.Stat(d.Opts.CNIBinDir); err != nil {
		return
	}
	types, err := cni.PluginTypes(conf)
	if err != nil {
		return
	}
	for _, t := range types {
		if _, err := os.Stat(filepath.Join(d.Opts.CNIBinDir, t)); err != nil {
			d.Log.Error("the CNI config needs a plugin the node does not have: pods on this node will not start",
				"plugin", t, "dir", d.Opts.CNIBinDir)
		}
	}
}

func find(nodes []kube.Node, name string) *kube.Node {
	for i := range nodes {
		if nodes[i].Name == name {
			return &nodes[i]
		}
	}
	return nil
}
