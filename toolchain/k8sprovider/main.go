// Command pulumi-resource-kubernetes is the upstream Pulumi Kubernetes provider, built
// from its Go module: upstream's own main package embeds two generated files that the
// module does not ship, so this main embeds them instead. toolchain/build.sh writes them
// next to a copy of this file before building (schema-embed.json: the module's
// cmd/pulumi-resource-kubernetes/schema.json with the version set; terraform-mapping-embed.json:
// its terraform-mapping.json), and stamps the version.
package main

import (
	_ "embed"

	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/provider"
	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version"
)

//go:embed schema-embed.json
var schema []byte

//go:embed terraform-mapping-embed.json
var terraformMapping []byte

func main() {
	provider.Serve("kubernetes", version.Version, schema, terraformMapping)
}
