// Command k8s-schemas writes the Kubernetes JSON schemas `make
// deploy-check` validates the Helm chart with (kubeconform's format) to a
// directory, for a look or for kubeconform by hand:
//
//	go run ./cmd/k8s-schemas -out /tmp/k8s-schemas
//	helm template deployments/helm/plugbus … | kubeconform -strict \
//	  -kubernetes-version 1.27.0 -schema-location '/tmp/k8s-schemas/{{ .ResourceKind }}{{ .KindSuffix }}.json'
//
// (run from deployments/check). The schemas come from the Kubernetes
// OpenAPI document in a Go module (check.KubeOpenAPIModule), so this works
// without reaching GitHub, where kubeconform looks by default.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/plugbus/plugbus/deployments/check"
)

func main() {
	out := flag.String("out", "k8s-schemas", "directory to write the schemas to")
	flag.Parse()
	swagger, err := check.SwaggerPath()
	if err == nil {
		var files []string
		files, err = check.WriteKubeconformSchemas(swagger, *out)
		if err == nil {
			fmt.Printf("%d schemas (Kubernetes %s, from %s) in %s\nkubeconform -strict -kubernetes-version %s -schema-location '%s'\n",
				len(files), check.KubernetesVersion, check.KubeOpenAPIModule, *out, check.KubernetesVersion, check.SchemaLocation(*out))
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "k8s-schemas:", err)
		os.Exit(1)
	}
}
