package check

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// KubeOpenAPIModule is the Go module whose test data holds the Kubernetes
// OpenAPI (swagger 2.0) document the chart is validated against: a full
// v1.27.0 API (info.version), every built-in group. It is a dependency of
// helm, so `go install helm.sh/helm/v3/cmd/helm` has it in the module
// cache already; `go mod download` fetches it from the Go module proxy
// otherwise, checked against the checksum database.
const (
	KubeOpenAPIModule  = "k8s.io/kube-openapi@v0.0.0-20260721132016-d427ff9ee9ad"
	KubeOpenAPISwagger = "pkg/schemaconv/testdata/swagger.json"
	// KubernetesVersion is the API version of that document.
	KubernetesVersion = "1.27.0"
)

// SchemaLocation is kubeconform's -schema-location for the schemas
// WriteKubeconformSchemas writes to dir (kubeconform's own file naming:
// deployment-apps-v1.json, service-v1.json, …).
func SchemaLocation(dir string) string {
	return filepath.Join(dir, "{{ .ResourceKind }}{{ .KindSuffix }}.json")
}

// SwaggerPath returns the path of the OpenAPI document in the module
// cache, downloading the module when it is not there.
func SwaggerPath() (string, error) {
	out, err := exec.Command("go", "mod", "download", "-json", KubeOpenAPIModule).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return "", fmt.Errorf("go mod download %s: %v: %s%s", KubeOpenAPIModule, err, ee.Stderr, out)
		}
		return "", fmt.Errorf("go mod download %s: %v", KubeOpenAPIModule, err)
	}
	var m struct{ Dir, Error string }
	if err := json.Unmarshal(out, &m); err != nil {
		return "", err
	}
	if m.Error != "" {
		return "", fmt.Errorf("go mod download %s: %s", KubeOpenAPIModule, m.Error)
	}
	return filepath.Join(m.Dir, filepath.FromSlash(KubeOpenAPISwagger)), nil
}

// WriteKubeconformSchemas converts the definitions of an OpenAPI 2.0
// document into the standalone, strict JSON schemas kubeconform reads, one
// file per kind (as yannh/kubernetes-json-schema's openapi2jsonschema
// does): every $ref inlined, additionalProperties false on every object
// with properties, apiVersion and kind pinned to the kind's, and
// Kubernetes' two string-or-number types (IntOrString, Quantity) accepting
// both. It returns the files written.
func WriteKubeconformSchemas(swaggerPath, dir string) ([]string, error) {
	raw, err := os.ReadFile(swaggerPath)
	if err != nil {
		return nil, err
	}
	var doc struct {
		Info        struct{ Version string }
		Definitions map[string]map[string]any
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", swaggerPath, err)
	}
	if len(doc.Definitions) == 0 {
		return nil, fmt.Errorf("%s: no definitions", swaggerPath)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	c := converter{defs: doc.Definitions}
	var files []string
	for _, name := range sortedKeys(doc.Definitions) {
		def := doc.Definitions[name]
		gvks, _ := def["x-kubernetes-group-version-kind"].([]any)
		if len(gvks) != 1 || strings.HasSuffix(name, "List") {
			continue
		}
		gvk, _ := gvks[0].(map[string]any)
		group, _ := gvk["group"].(string)
		version, _ := gvk["version"].(string)
		kind, _ := gvk["kind"].(string)
		apiVersion := version
		if group != "" {
			apiVersion = group + "/" + version
		}
		s, err := c.schema(def, nil)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if props, ok := s["properties"].(map[string]any); ok {
			props["apiVersion"] = map[string]any{"type": "string", "enum": []any{apiVersion}}
			props["kind"] = map[string]any{"type": "string", "enum": []any{kind}}
		}
		s["$schema"] = "http://json-schema.org/schema#"
		// kubeconform's file name: kind, the group's first label, the version.
		suffix := "-" + strings.ToLower(strings.Split(strings.Split(apiVersion, "/")[0], ".")[0])
		if i := strings.Index(apiVersion, "/"); i >= 0 {
			suffix += "-" + strings.ToLower(apiVersion[i+1:])
		}
		file := filepath.Join(dir, strings.ToLower(kind)+suffix+".json")
		b, err := json.Marshal(s)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(file, b, 0o644); err != nil {
			return nil, err
		}
		files = append(files, file)
	}
	return files, nil
}

type converter struct {
	defs map[string]map[string]any
}

const (
	intOrString = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
	quantity    = "io.k8s.apimachinery.pkg.api.resource.Quantity"
)

// schema returns s with its references inlined; seen are the definitions
// being inlined on the way here (a cycle is an error: the kinds plugbus
// renders have none).
func (c converter) schema(s map[string]any, seen []string) (map[string]any, error) {
	if ref, ok := s["$ref"].(string); ok {
		name := strings.TrimPrefix(ref, "#/definitions/")
		switch name {
		case intOrString:
			return map[string]any{"oneOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "integer"}}}, nil
		case quantity:
			return map[string]any{"oneOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "number"}}}, nil
		}
		for _, n := range seen {
			if n == name {
				// A recursive type (JSONSchemaProps): anything from here on.
				return map[string]any{}, nil
			}
		}
		def, ok := c.defs[name]
		if !ok {
			return nil, fmt.Errorf("unknown reference %s", ref)
		}
		return c.schema(def, append(seen, name))
	}
	out := map[string]any{}
	for k, v := range s {
		switch {
		case k == "description" || strings.HasPrefix(k, "x-kubernetes-"):
			// Not validation.
		case k == "properties":
			props := map[string]any{}
			for name, p := range v.(map[string]any) {
				ps, err := c.schema(p.(map[string]any), seen)
				if err != nil {
					return nil, err
				}
				props[name] = ps
			}
			out[k] = props
		case k == "items" || k == "additionalProperties":
			if m, ok := v.(map[string]any); ok {
				ps, err := c.schema(m, seen)
				if err != nil {
					return nil, err
				}
				out[k] = ps
			} else {
				out[k] = v
			}
		case k == "format" && v == "int-or-string":
			delete(out, "type")
			out["oneOf"] = []any{map[string]any{"type": "string"}, map[string]any{"type": "integer"}}
		default:
			out[k] = v
		}
	}
	if _, ok := out["oneOf"]; ok {
		delete(out, "type")
	}
	// Strict: no field the API does not define.
	if _, ok := out["properties"]; ok {
		if _, set := out["additionalProperties"]; !set {
			out["additionalProperties"] = false
		}
	}
	return out, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
