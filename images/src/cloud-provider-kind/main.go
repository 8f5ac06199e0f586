// Command cloud-provider-kind is sigs.k8s.io/cloud-provider-kind, unchanged, with one knob:
// the image of the per-Service load-balancer container.
//
// Upstream runs docker.io/envoyproxy/envoy for each LoadBalancer Service and lets only the
// registry be changed (CLOUD_PROVIDER_KIND_REGISTRY_URL). No registry is reachable on the
// air-gapped machines and envoy cannot be built from the package registries, so svcconform
// builds its own proxy image (images/lbproxy) that implements the subset of envoy's file-based
// xDS configuration cloud-provider-kind writes. SVCCONFORM_LB_PROXY_IMAGE names that image;
// unset, upstream's default is used.
package main

import (
	"os"

	"sigs.k8s.io/cloud-provider-kind/cmd"
	"sigs.k8s.io/cloud-provider-kind/pkg/config"
)

func main() {
	if image := os.Getenv("SVCCONFORM_LB_PROXY_IMAGE"); image != "" {
		config.DefaultConfig.ProxyImage = image
	}
	cmd.Main()
}
