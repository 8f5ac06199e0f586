package routes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"svcconform.local/kindnetd/internal/execx"
)

// Manager applies route plans with the ip binary.
type Manager struct {
	Run execx.Runner
	IP  string // path or name of the ip binary
	Log *slog.Logger
}

// Installed lists kindnetd's routes (those with Proto) of the given families.
func (m *Manager) Installed(ctx context.Context, v4, v6 bool) ([]Route, error) {
	var all []Route
	for _, fam := range families(v4, v6) {
		out, err := m.Run.Run(ctx, "", m.IP, ListArgs(fam)...)
		if err != nil {
			return nil, err
		}
		rs, err := ParseRoutes(out)
		if err != nil {
			return nil, err
		}
		all = append(all, rs...)
	}
	return all, nil
}

// Sync makes the installed routes of the given families match desired. It
// applies every step it can and returns the plan and the joined errors.
func (m *Manager) Sync(ctx context.Context, desired []Route, v4, v6 bool) (Plan, error) {
	existing, err := m.Installed(ctx, v4, v6)
	if err != nil {
		return Plan{}, fmt.Errorf("listing routes: %w", err)
	}
	plan := Diff(desired, existing)
	var errs []error
	old := map[string]Route{}
	for _, r := range existing {
		old[r.Dst.String()] = r
	}
	for _, r := range plan.Replace {
		if _, err := m.Run.Run(ctx, "", m.IP, ReplaceArgs(r)...); err != nil {
			errs = append(errs, err)
			m.Log.Error("route not installed", "route", r.String(), "err", err)
			continue
		}
		if prev, ok := old[r.Dst.String()]; ok {
			m.Log.Info("route changed", "dst", r.Dst, "via", r.Via, "was", prev.Via)
		} else {
			m.Log.Info("route added", "dst", r.Dst, "via", r.Via)
		}
	}
	for _, r := range plan.Delete {
		if _, err := m.Run.Run(ctx, "", m.IP, DeleteArgs(r)...); err != nil {
			errs = append(errs, err)
			m.Log.Error("route not deleted", "route", r.String(), "err", err)
			continue
		}
		m.Log.Info("route deleted (no node owns this podCIDR any more)", "dst", r.Dst, "via", r.Via)
	}
	return plan, errors.Join(errs...)
}

// DefaultRouteMTU returns the MTU of the interface holding the default route,
// trying IPv4 first if v4, then IPv6 if v6.
func (m *Manager) DefaultRouteMTU(ctx context.Context, v4, v6 bool) (int, string, error) {
	var errs []error
	for _, fam := range families(v4, v6) {
		out, err := m.Run.Run(ctx, "", m.IP, DefaultRouteArgs(fam)...)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		dev, ok, err := ParseDefaultRouteDev(out)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !ok {
			continue
		}
		out, err = m.Run.Run(ctx, "", m.IP, LinkArgs(dev)...)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		mtu, err := ParseLinkMTU(out)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		return mtu, dev, nil
	}
	if len(errs) == 0 {
		return 0, "", errors.New("no default route")
	}
	return 0, "", errors.Join(errs...)
}

func families(v4, v6 bool) []bool {
	var fs []bool
	if v4 {
		fs = append(fs, false)
	}
	if v6 {
		fs = append(fs, true)
	}
	return fs
}
