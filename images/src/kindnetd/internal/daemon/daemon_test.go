package daemon

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"svcconform.local/kindnetd/internal/config"
	"svcconform.local/kindnetd/internal/execx"
	"svcconform.local/kindnetd/internal/kube"
	"svcconform.local/kindnetd/internal/masq"
	"svcconform.local/kindnetd/internal/routes"
)

type fakeNodes struct {
	mu      sync.Mutex
	nodes   []kube.Node
	getErr  error
	listErr error
	gets    int
	// podCIDRAfter: GetNode shows no podCIDRs until this many calls.
	podCIDRAfter int
}

func (f *fakeNodes) GetNode(_ context.Context, name string) (kube.Node, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gets++
	if f.getErr != nil {
		return kube.Node{}, f.getErr
	}
	for _, n := range f.nodes {
		if n.Name == name {
			if f.gets <= f.podCIDRAfter {
				n.PodCIDRs = nil
			}
			return n, nil
		}
	}
	return kube.Node{}, kube.ErrNotFound
}

func (f *fakeNodes) ListNodes(context.Context) ([]kube.Node, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.nodes, f.listErr
}

func mkNode(name, cidr, ip string) kube.Node {
	n := kube.Node{Name: name, InternalIPs: []netip.Addr{netip.MustParseAddr(ip)}}
	if cidr != "" {
		n.PodCIDRs = []netip.Prefix{netip.MustParsePrefix(cidr)}
	}
	return n
}

type harness struct {
	d    *Daemon
	run  *execx.Fake
	logs *bytes.Buffer
	conf string
}

func newHarness(t *testing.T, nodes *fakeNodes) *harness {
	t.Helper()
	logs := &bytes.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	run := &execx.Fake{Respond: func(c execx.Call) (string, error) {
		switch c.Line() {
		case "ip -4 -json route show table main default":
			return `[{"dst":"default","gateway":"172.18.0.1","dev":"eth0","flags":[]}]`, nil
		case "ip -json link show dev eth0":
			return `[{"ifname":"eth0","mtu":1500}]`, nil
		case "ip -4 -json route show table main proto 107":
			return `[]`, nil
		}
		if c.Name == "iptables" && (c.Args[4] == "-S" || c.Args[4] == "-C") {
			return "", errors.New("exit status 1")
		}
		return "", nil
	}}
	conf := filepath.Join(t.TempDir(), "net.d", "10-kindnet.conflist")
	subnets := []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}
	d := &Daemon{
		Cfg:    config.Config{NodeName: "kind-worker", PodSubnets: subnets},
		Opts:   Options{CNIConfigPath: conf, Once: true, PodCIDRPoll: time.Millisecond, PodCIDRTimeout: time.Second},
		Nodes:  nodes,
		Routes: &routes.Manager{Run: run, IP: "ip", Log: log},
		Masq:   []Masq{{Manager: &masq.Manager{Run: run, Tools: masq.ToolsFor(masq.BackendDefault, false), Log: log}, Subnets: subnets}},
		Log:    log,
	}
	return &harness{d: d, run: run, logs: logs, conf: conf}
}

func TestRunOnceFreshNode(t *testing.T) {
	nodes := &fakeNodes{podCIDRAfter: 2, nodes: []kube.Node{
		mkNode("kind-control-plane", "10.244.0.0/24", "172.18.0.2"),
		mkNode("kind-worker", "10.244.1.0/24", "172.18.0.3"),
		mkNode("kind-worker2", "", "172.18.0.4"),
	}}
	h := newHarness(t, nodes)
	if err := h.d.Run(context.Background()); err != nil {
		t.Fatalf("Run: %v\n%s", err, h.logs)
	}
	want := []string{
		"ip -4 -json route show table main default",
		"ip -json link show dev eth0",
		"iptables -w 5 -t nat -S KIND-MASQ-AGENT",
		"iptables-restore -w 5 --noflush",
		`iptables -w 5 -t nat -C POSTROUTING -m addrtype ! --dst-type LOCAL -m comment --comment "kind-masq-agent: non-local traffic is checked by the KIND-MASQ-AGENT chain" -j KIND-MASQ-AGENT`,
		`iptables -w 5 -t nat -A POSTROUTING -m addrtype ! --dst-type LOCAL -m comment --comment "kind-masq-agent: non-local traffic is checked by the KIND-MASQ-AGENT chain" -j KIND-MASQ-AGENT`,
		"ip -4 -json route show table main proto 107",
		"ip -4 route replace 10.244.0.0/24 via 172.18.0.2 proto 107",
	}
	if got := h.run.Lines(); !reflect.DeepEqual(got, want) {
		t.Errorf("commands:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	conf, err := os.ReadFile(h.conf)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(conf), `"subnet": "10.244.1.0/24"`) || !strings.Contains(string(conf), `"mtu": 1500`) {
		t.Errorf("conflist:\n%s", conf)
	}
	for _, l := range []string{"waiting for the controller-manager to allocate spec.podCIDRs", "node pod CIDRs allocated",
		"route added", "CNI config written", "node kind-worker2 has no podCIDR yet", "masquerade chain created"} {
		if !strings.Contains(h.logs.String(), l) {
			t.Errorf("log lacks %q:\n%s", l, h.logs)
		}
	}
}

func TestWaitForPodCIDRsGivesUp(t *testing.T) {
	nodes := &fakeNodes{podCIDRAfter: 1 << 30, nodes: []kube.Node{mkNode("kind-worker", "10.244.1.0/24", "172.18.0.3")}}
	h := newHarness(t, nodes)
	h.d.Opts.PodCIDRTimeout = 20 * time.Millisecond
	err := h.d.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "still has no spec.podCIDRs after 20ms") || !strings.Contains(err.Error(), "allocate-node-cidrs") {
		t.Errorf("err = %v", err)
	}
	if _, statErr := os.Stat(h.conf); statErr == nil {
		t.Error("a CNI config was written without a podCIDR")
	}
}

func TestWaitForPodCIDRsAPIDown(t *testing.T) {
	nodes := &fakeNodes{getErr: errors.New("dial tcp 10.96.0.1:443: connect: connection refused")}
	h := newHarness(t, nodes)
	h.d.Opts.PodCIDRTimeout = 10 * time.Millisecond
	err := h.d.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "could not read node kind-worker from the API server") || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("err = %v", err)
	}
}

func TestRunExitsAfterPersistentFailures(t *testing.T) {
	nodes := &fakeNodes{nodes: []kube.Node{mkNode("kind-worker", "10.244.1.0/24", "172.18.0.3")}, listErr: errors.New("HTTP 403: forbidden")}
	h := newHarness(t, nodes)
	h.d.Opts.Once = false
	h.d.Opts.Resync = time.Millisecond
	h.d.Opts.FailureTimeout = 20 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := h.d.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "no successful sync") || !strings.Contains(err.Error(), "403") {
		t.Errorf("err = %v", err)
	}
	// The CNI config is still written: the node's own pods work without the node list.
	if _, statErr := os.Stat(h.conf); statErr != nil {
		t.Errorf("no CNI config: %v", statErr)
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	nodes := &fakeNodes{nodes: []kube.Node{mkNode("kind-worker", "10.244.1.0/24", "172.18.0.3")}}
	h := newHarness(t, nodes)
	h.d.Opts.Once = false
	h.d.Opts.Resync = time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if err := h.d.Run(ctx); err != nil {
		t.Errorf("err = %v", err)
	}
}

func TestCNIMTUFromConfig(t *testing.T) {
	nodes := &fakeNodes{nodes: []kube.Node{mkNode("kind-worker", "10.244.1.0/24", "172.18.0.3")}}
	h := newHarness(t, nodes)
	h.d.Cfg.MTU = 1400
	if err := h.d.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	conf, _ := os.ReadFile(h.conf)
	if !strings.Contains(string(conf), `"mtu": 1400`) {
		t.Errorf("conflist:\n%s", conf)
	}
	for _, l := range h.run.Lines() {
		if strings.Contains(l, "default") {
			t.Errorf("looked up the default route although CNI_MTU is set: %s", l)
		}
	}
}
