// Command kindnetd is svcconform's kindnet-equivalent CNI daemon for kind
// clusters: it writes a ptp/host-local CNI config for this node's pod CIDRs,
// routes other nodes' pod CIDRs via their InternalIPs, and masquerades pod
// traffic leaving the cluster pod subnet.
//
// Environment: NODE_NAME, POD_SUBNET (required); CONTROL_PLANE_ENDPOINT or
// KUBERNETES_SERVICE_HOST/PORT; CNI_MTU (optional). Run with -h for flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"svcconform.local/kindnetd/internal/cni"
	"svcconform.local/kindnetd/internal/config"
	"svcconform.local/kindnetd/internal/daemon"
	"svcconform.local/kindnetd/internal/execx"
	"svcconform.local/kindnetd/internal/kube"
	"svcconform.local/kindnetd/internal/masq"
	"svcconform.local/kindnetd/internal/routes"
)

const version = "0.1.0"

func main() {
	os.Exit(run())
}

func run() int {
	fs := flag.NewFlagSet("kindnetd", flag.ContinueOnError)
	var (
		cniConfig      = fs.String("cni-config", cni.DefaultPath, "where to write the CNI network configuration list")
		cniBinDir      = fs.String("cni-bin-dir", "/opt/cni/bin", "node's CNI plugin directory, if mounted: checked for the plugins the config uses")
		saDir          = fs.String("serviceaccount-dir", kube.DefaultServiceAccountDir, "directory holding the service account token and ca.crt")
		resync         = fs.Duration("resync", 5*time.Second, "interval between syncs of routes, masquerade rules and CNI config")
		podCIDRTimeout = fs.Duration("podcidr-timeout", 5*time.Minute, "how long to wait for this node's spec.podCIDRs before exiting")
		failureTimeout = fs.Duration("failure-timeout", 5*time.Minute, "exit non-zero when no sync has succeeded for this long")
		iptablesMode   = fs.String("iptables", "auto", "iptables backend: auto (follow the kubelet's choice), nft, legacy, or default (plain iptables)")
		once           = fs.Bool("once", false, "sync once and exit (for debugging)")
		verbose        = fs.Bool("v", false, "debug logging")
		showVersion    = fs.Bool("version", false, "print the version and exit")
	)
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *showVersion {
		fmt.Println("kindnetd", version)
		return 0
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	cfg, err := config.FromEnv(os.Getenv)
	if err != nil {
		log.Error("bad configuration", "err", err)
		return 1
	}
	v4, v6 := config.Families(cfg.PodSubnets)
	log.Info("kindnetd starting", "version", version, "node", cfg.NodeName, "podSubnet", cfg.PodSubnets, "apiServers", cfg.APIServers)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	runner := execx.OS{Timeout: 30 * time.Second}

	backend, reason := masq.Backend(*iptablesMode), "set with -iptables"
	switch backend {
	case "auto":
		backend, reason = masq.DetectBackend(ctx, runner, v4, v6)
	case masq.BackendNFT, masq.BackendLegacy, masq.BackendDefault:
	default:
		log.Error("bad -iptables value", "value", *iptablesMode)
		return 2
	}
	log.Info("iptables backend", "backend", string(backend), "reason", reason)

	// Preflight: the binaries this daemon shells out to.
	need := []string{"ip"}
	for _, fam := range []bool{false, true} {
		if (fam && v6) || (!fam && v4) {
			t := masq.ToolsFor(backend, fam)
			need = append(need, t.IPTables, t.Restore)
		}
	}
	for _, b := range need {
		if _, err := exec.LookPath(b); err != nil {
			log.Error("a required binary is missing from the image", "binary", b, "err", err)
			return 1
		}
	}

	client, err := kube.NewClient(cfg.APIServers, *saDir)
	if err != nil {
		log.Error("cannot set up the API client", "err", err)
		return 1
	}
	client.Log = log
	var masqs []daemon.Masq
	for _, fam := range []bool{false, true} {
		if subnets := config.Of(cfg.PodSubnets, fam); len(subnets) > 0 {
			masqs = append(masqs, daemon.Masq{
				Manager: &masq.Manager{Run: runner, Tools: masq.ToolsFor(backend, fam), V6: fam, Log: log},
				Subnets: subnets,
			})
		}
	}
	d := &daemon.Daemon{
		Cfg:    cfg,
		Nodes:  client,
		Routes: &routes.Manager{Run: runner, IP: "ip", Log: log},
		Masq:   masqs,
		Log:    log,
		Opts: daemon.Options{
			CNIConfigPath:  *cniConfig,
			CNIBinDir:      *cniBinDir,
			Resync:         *resync,
			PodCIDRTimeout: *podCIDRTimeout,
			FailureTimeout: *failureTimeout,
			Once:           *once,
		},
	}
	if err := d.Run(ctx); err != nil {
		log.Error("kindnetd exiting", "err", err)
		return 1
	}
	log.Info("kindnetd stopped")
	return 0
}
