"""Air-gapped builds of every image and tool svcconform needs, from package registries only."""
