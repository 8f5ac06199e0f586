package kube

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

const workerJSON = `{
  "kind": "Node", "apiVersion": "v1",
  "metadata": {"name": "kind-worker", "labels": {"kubernetes.io/os": "linux"}},
  "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24", "fd00:10:244:1::/64"], "providerID": "kind://docker/kind/kind-worker"},
  "status": {"addresses": [
    {"type": "InternalIP", "address": "172.18.0.3"},
    {"type": "InternalIP", "address": "fc00:f853:ccd:e793::3"},
    {"type": "Hostname", "address": "kind-worker"}]}
}`

func TestParseNode(t *testing.T) {
	tests := []struct {
		name    string
		json    string
		want    Node
		wantErr string
	}{
		{
			name: "dual stack worker",
			json: workerJSON,
			want: Node{Name: "kind-worker",
				PodCIDRs:    []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24"), netip.MustParsePrefix("fd00:10:244:1::/64")},
				InternalIPs: []netip.Addr{netip.MustParseAddr("172.18.0.3"), netip.MustParseAddr("fc00:f853:ccd:e793::3")}},
		},
		{
			name: "not yet allocated",
			json: `{"kind":"Node","metadata":{"name":"kind-worker2"},"spec":{},"status":{"addresses":[{"type":"InternalIP","address":"172.18.0.4"}]}}`,
			want: Node{Name: "kind-worker2", InternalIPs: []netip.Addr{netip.MustParseAddr("172.18.0.4")}},
		},
		{
			name: "legacy podCIDR only, host bits masked",
			json: `{"metadata":{"name":"old"},"spec":{"podCIDR":"10.244.2.5/24"}}`,
			want: Node{Name: "old", PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.2.0/24")}},
		},
		{name: "bad cidr", json: `{"metadata":{"name":"x"},"spec":{"podCIDRs":["nope"]}}`, wantErr: `node x: bad podCIDR "nope"`},
		{name: "bad ip", json: `{"metadata":{"name":"x"},"status":{"addresses":[{"type":"InternalIP","address":"1.2.3"}]}}`, wantErr: "bad InternalIP"},
		{name: "no name", json: `{"metadata":{}}`, wantErr: "no metadata.name"},
		{name: "a Status, not a Node", json: `{"kind":"Status","message":"nodes \"x\" not found"}`, wantErr: `got kind "Status"`},
		{name: "garbage", json: `<html>`, wantErr: "decoding Node"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseNode([]byte(tt.json))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParseNodeListSortsByName(t *testing.T) {
	list := `{"kind":"NodeList","apiVersion":"v1","metadata":{"resourceVersion":"42"},"items":[` + workerJSON + `,
	  {"metadata":{"name":"kind-control-plane"},"spec":{"podCIDRs":["10.244.0.0/24"]},"status":{"addresses":[{"type":"InternalIP","address":"172.18.0.2"}]}}]}`
	nodes, err := ParseNodeList([]byte(list))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range nodes {
		names = append(names, n.Name)
	}
	if !reflect.DeepEqual(names, []string{"kind-control-plane", "kind-worker"}) {
		t.Errorf("names = %v", names)
	}
	if _, err := ParseNodeList([]byte(`{"kind":"PodList","items":[]}`)); err == nil {
		t.Error("a PodList was accepted as a NodeList")
	}
}

func TestInternalIP(t *testing.T) {
	n, err := ParseNode([]byte(workerJSON))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		v6   bool
		want string
	}{{false, "172.18.0.3"}, {true, "fc00:f853:ccd:e793::3"}}
	for _, tt := range tests {
		got, ok := n.InternalIP(tt.v6)
		if !ok || got.String() != tt.want {
			t.Errorf("InternalIP(v6=%v) = %v %v, want %s", tt.v6, got, ok, tt.want)
		}
	}
	if _, ok := (Node{Name: "v4only", InternalIPs: []netip.Addr{netip.MustParseAddr("172.18.0.9")}}).InternalIP(true); ok {
		t.Error("IPv4-only node returned an IPv6 InternalIP")
	}
}

func TestStatusMessage(t *testing.T) {
	tests := []struct{ body, want string }{
		{`{"kind":"Status","status":"Failure","message":"nodes is forbidden: User \"system:serviceaccount:kube-system:kindnet\" cannot list resource \"nodes\"","reason":"Forbidden","code":403}`,
			`nodes is forbidden: User "system:serviceaccount:kube-system:kindnet" cannot list resource "nodes" (Forbidden)`},
		{"", "(empty body)"},
		{"Unauthorized\n", "Unauthorized"},
		{strings.Repeat("x", 300), strings.Repeat("x", 200) + "..."},
	}
	for _, tt := range tests {
		if got := StatusMessage([]byte(tt.body)); got != tt.want {
			t.Errorf("StatusMessage(%.30q) = %q, want %q", tt.body, got, tt.want)
		}
	}
}
