"""Pinned versions of everything the air-gapped toolchain builds.

Kubernetes v1.34.4: nftables kube-proxy mode is GA since 1.33, and a 1.34 kubelet only
warns on cgroup v1 (1.35+ refuses it unless ``failCgroupV1: false``), which is what these
machines have.  It is the newest 1.34 patch the Go module proxy serves.
"""

KUBERNETES = "v1.34.4"
KIND = "v0.30.0"
HELM = "v3.19.0"
# helm v3.19.0 builds with k8s.io/client-go v0.34: its Makefile stamps 1.34 as the Kubernetes
# version `helm template` assumes offline.
HELM_CLIENT_GO_MINOR = "34"
# Validates .github/workflows/nightly.yml offline (tests/unit/test_workflow.py).
ACTIONLINT = "v1.7.12"
# kubeadm v1.34 asks for etcd 3.6.5-0 and pause 3.10.1: built at exactly those versions.
ETCD = "v3.6.5"
PAUSE = "3.10.1"
# kubeadm v1.34 asks for CoreDNS v1.12.1, which the module proxy does not serve; we build
# v1.14.7 and point kubeadm at it (ClusterConfiguration dns.imageTag) instead of
# mis-tagging it as v1.12.1.
COREDNS = "v1.14.7"
# agnhost is built from the Kubernetes tree; its VERSION file there says 2.56.
AGNHOST = "2.56"
FLANNEL = "v0.28.10"
# flannel's CNI plugin: github.com/flannel-io/cni-plugin is not on the module proxy; the
# same plugin (before it moved) is plugins/meta/flannel in containernetworking/plugins v0.9.1.
FLANNEL_CNI_PLUGINS = "v0.9.1"
DEBIAN_SUITE = "bookworm"

# What a machine with registry access uses instead: kind v0.30.0's default node image, pinned
# by digest as kind pins it (node images are only tested at exact digests).
OFFICIAL_NODE_IMAGE = (
    "kindest/node:v1.34.0@sha256:7416a61b42b1662ca6ca89f02028ac133a309a2a30ba309614e8ec94d976dc5a"
)
# LoadBalancer Services: sigs.k8s.io/cloud-provider-kind (runs on this machine, one proxy
# container per Service). Its module requires Kubernetes v0.34 libraries and kind v0.30.0.
CLOUD_PROVIDER_KIND = "v0.10.0"
# Cilium (images/cilium.py): its documentation lists Kubernetes 1.31-1.34 and its go.mod needs
# go 1.25.  v1.20.2 needs gobgp/v4 and mcs-api zips the module proxy refuses, v1.19.8's .mod
# file is refused, and v1.18.x supports Kubernetes only up to 1.33.
CILIUM = "v1.19.7"
