package masq

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os/exec"
	"slices"

	"svcconform.local/kindnetd/internal/execx"
)

// lockWait is passed to -w: seconds to wait for the xtables lock (legacy backend).
const lockWait = "5"

// Manager keeps the chain and the POSTROUTING jump in place for one family.
type Manager struct {
	Run   execx.Runner
	Tools Tools
	V6    bool
	Log   *slog.Logger
}

// Ensure makes the chain hold exactly the rules for subnets and makes
// POSTROUTING jump to it. It is idempotent; it reports whether it changed anything.
func (m *Manager) Ensure(ctx context.Context, subnets []netip.Prefix) (bool, error) {
	if len(subnets) == 0 {
		return false, nil
	}
	fam := "IPv4"
	if m.V6 {
		fam = "IPv6"
	}
	changed := false
	out, listErr := m.Run.Run(ctx, "", m.Tools.IPTables, "-w", lockWait, "-t", "nat", "-S", Chain)
	want := ExpectedListing(subnets)
	if got := Lines(out); listErr != nil || !slices.Equal(got, want) {
		if _, err := m.Run.Run(ctx, RestoreInput(subnets), m.Tools.Restore, "-w", lockWait, "--noflush"); err != nil {
			return false, fmt.Errorf("writing the %s chain: %w", Chain, err)
		}
		changed = true
		if listErr != nil {
			m.Log.Info("masquerade chain created", "family", fam, "chain", Chain, "subnets", subnets)
		} else {
			m.Log.Info("masquerade chain rewritten", "family", fam, "chain", Chain, "subnets", subnets, "was", got)
		}
	}
	check := append([]string{"-w", lockWait, "-t", "nat", "-C", "POSTROUTING"}, JumpRule()...)
	if _, err := m.Run.Run(ctx, "", m.Tools.IPTables, check...); err != nil {
		add := append([]string{"-w", lockWait, "-t", "nat", "-A", "POSTROUTING"}, JumpRule()...)
		if _, err := m.Run.Run(ctx, "", m.Tools.IPTables, add...); err != nil {
			return changed, fmt.Errorf("adding the POSTROUTING jump to %s: %w", Chain, err)
		}
		changed = true
		m.Log.Info("masquerade jump added to nat POSTROUTING", "family", fam, "chain", Chain)
	}
	return changed, nil
}

// DetectBackend resolves "auto" to the backend the node uses: if both
// iptables-nft and iptables-legacy are installed it compares their dumps
// (ChooseBackend); otherwise it uses plain iptables.
func DetectBackend(ctx context.Context, run execx.Runner, v4, v6 bool) (Backend, string) {
	for _, b := range []string{"iptables-nft-save", "iptables-legacy-save"} {
		if _, err := exec.LookPath(b); err != nil {
			return BackendDefault, b + " is not installed; using plain iptables"
		}
	}
	dump := func(b Backend) string {
		var all string
		for _, fam := range []bool{false, true} {
			if (fam && !v6) || (!fam && !v4) {
				continue
			}
			out, _ := run.Run(ctx, "", ToolsFor(b, fam).Save) // an error means "nothing there"
			all += out
		}
		return all
	}
	return ChooseBackend(dump(BackendNFT), dump(BackendLegacy))
}
