package check

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"go.yaml.in/yaml/v3"
)

var chartDir = filepath.Join(root, "deployments", "helm", "plugbus")

// natsStubVersion satisfies the chart's constraint on its nats dependency.
const natsStubVersion = "1.2.0"

// chartCopy copies the chart to a temporary directory with a stand-in for
// its nats dependency in charts/: the official chart cannot be downloaded
// here, and helm refuses to render a chart whose dependency is missing even
// when its condition is off. The stand-in renders one ConfigMap holding the
// values it was given, so the tests see what the chart passes to the real
// one.
func chartCopy(t *testing.T) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "plugbus")
	if err := os.CopyFS(dst, os.DirFS(chartDir)); err != nil {
		t.Fatal(err)
	}
	stub := filepath.Join(dst, "charts", "nats")
	if err := os.MkdirAll(filepath.Join(stub, "templates"), 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(p, s string) {
		if err := os.WriteFile(filepath.Join(stub, p), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("Chart.yaml", "apiVersion: v2\nname: nats\nversion: "+natsStubVersion+"\ndescription: a stand-in for the nats chart in deploy-check\n")
	write("templates/values.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: nats-stub-values\ndata:\n  values.json: {{ toJson .Values | quote }}\n")
	return dst
}

func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	h := tool(t, "helm", "go install helm.sh/helm/v3/cmd/helm@v3.22.0")
	cmd := exec.Command(h, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String() + stderr.String(), err
	}
	return stdout.String(), nil
}

var schemas struct {
	once sync.Once
	dir  string
	err  error
}

// kubeSchemas generates the Kubernetes JSON schemas once per run.
func kubeSchemas(t *testing.T) string {
	t.Helper()
	schemas.once.Do(func() {
		swagger, err := SwaggerPath()
		if err != nil {
			schemas.err = err
			return
		}
		schemas.dir, schemas.err = os.MkdirTemp("", "plugbus-k8s-schemas-")
		if schemas.err == nil {
			_, schemas.err = WriteKubeconformSchemas(swagger, schemas.dir)
		}
	})
	if schemas.err != nil {
		t.Fatalf("Kubernetes schemas: %v", schemas.err)
	}
	return schemas.dir
}

// kubeconform validates manifests strictly (no field the API does not
// define, no duplicate key, every kind known) against the generated
// schemas; ServiceMonitor, a Prometheus Operator CRD, has no schema here
// and is checked by the tests instead.
func kubeconform(t *testing.T, manifests string) (string, error) {
	t.Helper()
	kc := tool(t, "kubeconform", "go install github.com/yannh/kubeconform/cmd/kubeconform@v0.8.0")
	cmd := exec.Command(kc, "-strict", "-summary", "-output", "text",
		"-kubernetes-version", KubernetesVersion,
		"-schema-location", SchemaLocation(kubeSchemas(t)),
		"-skip", "ServiceMonitor", "-")
	cmd.Stdin = strings.NewReader(manifests)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

type object = map[string]any

// docs splits rendered manifests into objects.
func docs(t *testing.T, manifests string) []object {
	t.Helper()
	dec := yaml.NewDecoder(strings.NewReader(manifests))
	var out []object
	for {
		var o object
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("rendered YAML: %v", err)
		}
		if o != nil {
			out = append(out, o)
		}
	}
}

// get walks o along keys (map keys, or list indexes as ints).
func get(o any, keys ...any) any {
	for _, k := range keys {
		switch k := k.(type) {
		case string:
			m, ok := o.(map[string]any)
			if !ok {
				return nil
			}
			o = m[k]
		case int:
			l, ok := o.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			o = l[k]
		}
	}
	return o
}

func str(o any, keys ...any) string {
	s, _ := get(o, keys...).(string)
	return s
}

func find(objs []object, kind, name string) object {
	for _, o := range objs {
		if o["kind"] == kind && str(o, "metadata", "name") == name {
			return o
		}
	}
	return nil
}

func strs(v any) []string {
	var out []string
	l, _ := v.([]any)
	for _, x := range l {
		out = append(out, fmt.Sprint(x))
	}
	return out
}

// render is one set of values the chart is rendered and validated with.
type render struct {
	name    string
	release string
	set     []string
}

var renders = []render{
	{"external NATS", "plugbus", []string{"nats.enabled=false", `natsUrl=nats://nats-0.nats:4222\,nats://nats-1.nats:4222`}},
	{"nats dependency", "plugbus", nil},
	{"hostd Deployment, pre-issued credentials, ServiceMonitor", "bus", []string{
		"nats.enabled=false", "natsUrl=tls://nats.example:4222",
		"hostd.kind=Deployment", "hostd.replicas=1", "hostd.host=edge-1",
		"hostd.hostCreds.issue=false", "hostd.hostCreds.secretName=edge-1-creds",
		"broker.replicas=1", "broker.metrics.serviceMonitor.enabled=true", "webhookSink.enabled=false",
		"image.repository=registry.example/plugbus", "image.tag=0.2.0-rc1",
	}},
}

func (r render) args(chart string) []string {
	args := []string{"template", r.release, chart, "--namespace", "plugbus"}
	for _, s := range r.set {
		args = append(args, "--set", s)
	}
	return args
}

func TestHelmLint(t *testing.T) {
	chart := chartCopy(t)
	for _, r := range renders {
		args := []string{"lint", "--strict", chart}
		for _, s := range r.set {
			args = append(args, "--set", s)
		}
		if out, err := helm(t, args...); err != nil {
			t.Errorf("%s: helm %s: %v\n%s", r.name, strings.Join(args, " "), err, out)
		}
	}
	// The chart as it is in the repository, without the dependency: lint
	// passes and only warns that charts/ lacks it (helm dependency build).
	out, err := helm(t, "lint", chartDir, "--set", "nats.enabled=false", "--set", "natsUrl=nats://n:4222")
	if err != nil || !strings.Contains(out, "missing these dependencies: nats") {
		t.Errorf("helm lint of the chart in the repository: %v\n%s", err, out)
	}
}

func TestHelmRefusesBadValues(t *testing.T) {
	chart := chartCopy(t)
	for _, c := range []struct {
		set  []string
		want string
	}{
		{[]string{"broker.replicas=two"}, "/broker/replicas"},
		{[]string{"hostd.kind=StatefulSet"}, "/hostd/kind"},
		{[]string{"broker.streamReplicas=7"}, "streamReplicas"},
		{[]string{"brokers.replicas=2"}, "brokers"},
		{[]string{"hostd.host=Edge_1"}, "/hostd/host"},
		{[]string{"nats.enabled=false"}, "set natsUrl"},
		{[]string{"hostd.hostCreds.issue=false"}, "hostd.hostCreds"},
		{[]string{"hostd.hostCreds.issue=false", "hostd.hostCreds.secretName=c"}, "hostd.host"},
	} {
		args := []string{"template", "plugbus", chart}
		for _, s := range c.set {
			args = append(args, "--set", s)
		}
		out, err := helm(t, args...)
		if err == nil {
			t.Errorf("--set %v: rendered, want an error naming %s", c.set, c.want)
		} else if !strings.Contains(out, c.want) {
			t.Errorf("--set %v: the error does not name %s:\n%s", c.set, c.want, out)
		}
	}
}

func TestHelmTemplateKubeconform(t *testing.T) {
	chart := chartCopy(t)
	for _, r := range renders {
		out, err := helm(t, r.args(chart)...)
		if err != nil {
			t.Fatalf("%s: helm template: %v\n%s", r.name, err, out)
		}
		res, err := kubeconform(t, out)
		if err != nil {
			t.Errorf("%s: kubeconform: %v\n%s", r.name, err, res)
			continue
		}
		t.Logf("%s: %s", r.name, strings.TrimSpace(res))
		if !strings.Contains(res, "Invalid: 0, Errors: 0") {
			t.Errorf("%s: kubeconform: %s", r.name, res)
		}
	}
}

// kubeconform rejects what it should, so a pass above means something.
func TestKubeconformRefusesBadManifests(t *testing.T) {
	chart := chartCopy(t)
	out, err := helm(t, renders[0].args(chart)...)
	if err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string]string{
		"unknown field": strings.Replace(out, "imagePullPolicy: IfNotPresent", "imagePullPolicyy: IfNotPresent", 1),
		"wrong type":    regexp.MustCompile(`(?m)^  replicas: 2$`).ReplaceAllString(out, `  replicas: "2"`),
		"missing field": strings.Replace(out, "fieldPath: metadata.name", "fieldPat: metadata.name", 1),
		"unknown kind":  out + "\n---\napiVersion: v1\nkind: Sekret\nmetadata: {name: x}\n",
	} {
		if bad == out {
			t.Fatalf("%s: the mutation did not apply: update this test with the chart", name)
		}
		if res, err := kubeconform(t, bad); err == nil {
			t.Errorf("%s: kubeconform accepted it:\n%s", name, res)
		}
	}
}

// The rendered chart does what its values say.
func TestChartRendersTheValues(t *testing.T) {
	chart := chartCopy(t)

	out, err := helm(t, renders[0].args(chart)...)
	if err != nil {
		t.Fatal(err)
	}
	objs := docs(t, out)
	natsURL := "nats://nats-0.nats:4222,nats://nats-1.nats:4222"
	dep := find(objs, "Deployment", "plugbus-broker")
	if dep == nil {
		t.Fatalf("no Deployment plugbus-broker in %d objects", len(objs))
	}
	if get(dep, "spec", "replicas") != 2 {
		t.Errorf("broker replicas %v, want the default 2", get(dep, "spec", "replicas"))
	}
	pod := get(dep, "spec", "template", "spec")
	c := get(pod, "containers", 0)
	args := strs(get(c, "args"))
	for flag, want := range map[string]string{
		"--nats-url":            natsURL,
		"--replicas":            "3",
		"--creds":               "/etc/plugbus/broker/broker.creds",
		"--account-signing-key": "/etc/plugbus/broker/signing.nk",
		"--http":                "0.0.0.0:8080",
	} {
		if got, _ := flagValue(args, flag); got != want {
			t.Errorf("broker %s=%q, want %q", flag, got, want)
		}
	}
	for _, probe := range []string{"startupProbe", "readinessProbe", "livenessProbe"} {
		if str(c, probe, "httpGet", "path") != "/healthz" || str(c, probe, "httpGet", "port") != "http" {
			t.Errorf("broker %s is not /healthz on the http port: %v", probe, get(c, probe))
		}
	}
	if get(c, "ports", 0, "containerPort") != 8080 || str(c, "ports", 0, "name") != "http" {
		t.Errorf("broker port: %v", get(c, "ports"))
	}
	if get(c, "securityContext", "runAsNonRoot") != true || get(c, "securityContext", "readOnlyRootFilesystem") != true {
		t.Errorf("broker securityContext: %v", get(c, "securityContext"))
	}
	if str(c, "resources", "requests", "memory") != "128Mi" {
		t.Errorf("broker resources: %v", get(c, "resources"))
	}
	if str(pod, "volumes", 0, "secret", "secretName") != "plugbus-broker" {
		t.Errorf("broker credentials volume: %v", get(pod, "volumes", 0))
	}
	var keys []string
	for _, it := range get(pod, "volumes", 0, "secret", "items").([]any) {
		keys = append(keys, str(it, "key"))
	}
	if !slices.Equal(keys, []string{"broker.creds", "signing.nk"}) {
		t.Errorf("broker credentials keys %v", keys)
	}
	if str(c, "volumeMounts", 0, "mountPath") != "/etc/plugbus/broker" {
		t.Errorf("broker credentials mounted at %v", get(c, "volumeMounts", 0))
	}
	if ann := get(dep, "spec", "template", "metadata", "annotations"); str(ann, "prometheus.io/scrape") != "true" || str(ann, "prometheus.io/port") != "8080" {
		t.Errorf("broker metrics annotations: %v", ann)
	}
	if find(objs, "PodDisruptionBudget", "plugbus-broker") == nil {
		t.Error("no PodDisruptionBudget for 2 brokers")
	}
	if find(objs, "ConfigMap", "nats-stub-values") != nil {
		t.Error("nats.enabled=false rendered the nats dependency")
	}

	// hostd: a DaemonSet whose init container issues the host's
	// credentials for the pod's name, and a config hostd accepts.
	ds := find(objs, "DaemonSet", "plugbus-hostd")
	if ds == nil {
		t.Fatal("no DaemonSet plugbus-hostd")
	}
	hpod := get(ds, "spec", "template", "spec")
	initc := get(hpod, "initContainers", 0)
	iargs := strs(get(initc, "args"))
	if i := slices.Index(iargs, "creds"); i < 1 || iargs[i-1] != "hosts" || iargs[i+1] != "$(PLUGBUS_HOST)" {
		t.Errorf("init container args %v, want busctl … hosts creds $(PLUGBUS_HOST)", iargs)
	}
	if str(initc, "env", 0, "valueFrom", "fieldRef", "fieldPath") != "metadata.name" {
		t.Errorf("PLUGBUS_HOST is not the pod's name: %v", get(initc, "env"))
	}
	cm := find(objs, "ConfigMap", "plugbus-hostd")
	raw := str(cm, "data", "hostd.yaml")
	dir := t.TempDir()
	file := filepath.Join(dir, "hostd.yaml")
	if err := os.WriteFile(file, []byte(raw), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := hostdConfig(t, file, []string{"PLUGBUS_HOST=plugbus-hostd-x7k2p", "NATS_URL=" + natsURL})
	if cfg.Host != "plugbus-hostd-x7k2p" || cfg.NATSURL != natsURL {
		t.Errorf("hostd config: host %q, nats_url %q", cfg.Host, cfg.NATSURL)
	}
	out2, _ := flagValue(iargs, "--out")
	hc := get(hpod, "containers", 0)
	mounted := func(ctr any, p string, writable bool) bool {
		for _, m := range get(ctr, "volumeMounts").([]any) {
			mp := str(m, "mountPath")
			if p == mp || strings.HasPrefix(p, mp+"/") {
				return !writable || get(m, "readOnly") != true
			}
		}
		return false
	}
	if !mounted(initc, out2, true) || !mounted(hc, cfg.Creds, false) || path.Dir(out2) != path.Dir(cfg.Creds) {
		t.Errorf("the init container writes %s, hostd reads %s: not the same volume", out2, cfg.Creds)
	}
	if !mounted(hc, cfg.StateDir, true) {
		t.Errorf("hostd's state_dir %s is not on a writable volume", cfg.StateDir)
	}
	if cfgPath, _ := flagValue(strs(get(hc, "args")), "--config"); !mounted(hc, cfgPath, false) {
		t.Errorf("hostd --config=%s is not mounted", cfgPath)
	}
	if len(cfg.Plugins) != 3 || cfg.Plugins[2].Config["url"] != "http://plugbus-webhook-sink:8099/alerts" {
		t.Errorf("hostd plugins %+v", cfg.Plugins)
	}
	if find(objs, "Service", "plugbus-webhook-sink") == nil {
		t.Error("no webhook sink Service for notify-webhook's default url")
	}

	// Pre-issued credentials, one Deployment replica, a ServiceMonitor.
	out, err = helm(t, renders[2].args(chart)...)
	if err != nil {
		t.Fatal(err)
	}
	objs = docs(t, out)
	hd := find(objs, "Deployment", "bus-plugbus-hostd")
	if hd == nil {
		t.Fatal("no hostd Deployment")
	}
	if get(hd, "spec", "template", "spec", "initContainers") != nil {
		t.Error("pre-issued credentials: an init container issues them anyway")
	}
	if str(hd, "spec", "template", "spec", "containers", 0, "env", 0, "value") != "edge-1" {
		t.Errorf("hostd.host not in PLUGBUS_HOST: %v", get(hd, "spec", "template", "spec", "containers", 0, "env"))
	}
	if !strings.Contains(out, "secretName: edge-1-creds") {
		t.Error("the pre-issued credentials Secret is not mounted")
	}
	if img := str(find(objs, "Deployment", "bus-plugbus-broker"), "spec", "template", "spec", "containers", 0, "image"); img != "registry.example/plugbus:0.2.0-rc1" {
		t.Errorf("image %q", img)
	}
	if find(objs, "PodDisruptionBudget", "bus-plugbus-broker") != nil {
		t.Error("a PodDisruptionBudget for one broker blocks every drain")
	}
	sm := find(objs, "ServiceMonitor", "bus-plugbus-broker")
	if sm == nil || str(sm, "spec", "endpoints", 0, "port") != "http" || str(sm, "spec", "endpoints", 0, "path") != "/metrics" ||
		str(sm, "spec", "selector", "matchLabels", "app.kubernetes.io/component") != "broker" {
		t.Errorf("ServiceMonitor: %v", sm)
	}
	svc := find(objs, "Service", "bus-plugbus-broker")
	if str(svc, "spec", "ports", 0, "name") != "http" {
		t.Errorf("broker Service ports: %v", get(svc, "spec", "ports"))
	}
}

// With nats.enabled the chart connects to the dependency's service and
// gives it a JetStream cluster that includes plugbus's auth.
func TestChartNATSDependency(t *testing.T) {
	chart := chartCopy(t)
	for release, want := range map[string]string{"plugbus": "nats://plugbus-nats:4222", "nats-bus": "nats://nats-bus:4222"} {
		out, err := helm(t, "template", release, chart)
		if err != nil {
			t.Fatal(err)
		}
		objs := docs(t, out)
		dep := find(objs, "Deployment", release+"-plugbus-broker")
		if release == "plugbus" {
			dep = find(objs, "Deployment", "plugbus-broker")
		}
		if got, _ := flagValue(strs(get(dep, "spec", "template", "spec", "containers", 0, "args")), "--nats-url"); got != want {
			t.Errorf("release %s: --nats-url=%q, want the nats chart's service %q", release, got, want)
		}
		stub := find(objs, "ConfigMap", "nats-stub-values")
		if stub == nil {
			t.Fatal("nats.enabled: the nats dependency is not rendered")
		}
		var v map[string]any
		if err := json.Unmarshal([]byte(str(stub, "data", "values.json")), &v); err != nil {
			t.Fatal(err)
		}
		if get(v, "config", "cluster", "enabled") != true || fmt.Sprint(get(v, "config", "cluster", "replicas")) != "3" ||
			get(v, "config", "jetstream", "enabled") != true {
			t.Errorf("nats values: cluster %v, jetstream %v", get(v, "config", "cluster"), get(v, "config", "jetstream"))
		}
		include := str(v, "config", "merge", "00$include")
		vol := get(v, "podTemplate", "patch", 0, "value")
		mount := get(v, "container", "patch", 0, "value")
		if str(vol, "secret", "secretName") != "plugbus-nats-auth" || str(mount, "name") != str(vol, "name") {
			t.Errorf("nats auth volume %v, mount %v", vol, mount)
		}
		// The nats chart writes nats.conf in /etc/nats-config; includes are
		// relative to it.
		if got := path.Join("/etc/nats-config", include); got != str(mount, "mountPath")+"/plugbus-auth.conf" {
			t.Errorf("nats includes %s, but the auth Secret is mounted at %s", got, str(mount, "mountPath"))
		}
	}
}

// secrets.sh makes the Secrets the chart's defaults name, from what
// `broker auth init` writes.
func TestSecretsScript(t *testing.T) {
	authDir := authInit(t)
	out := run(t, root, nil, "sh", filepath.Join(root, "deployments", "helm", "secrets.sh"), authDir, "plugbus")
	if res, err := kubeconform(t, out); err != nil {
		t.Fatalf("kubeconform: %v\n%s", err, res)
	}
	objs := docs(t, out)
	want := map[string][]string{
		"plugbus-broker":    {"broker.creds", "signing.nk"},
		"plugbus-admin":     {"admin.creds"},
		"plugbus-nats-auth": {"plugbus-auth.conf"},
	}
	for name, keys := range want {
		s := find(objs, "Secret", name)
		if s == nil {
			t.Errorf("no Secret %s", name)
			continue
		}
		got := sortedKeys(get(s, "data").(map[string]any))
		if !slices.Equal(got, keys) {
			t.Errorf("Secret %s keys %v, want %v", name, got, keys)
		}
	}
	var values struct {
		Broker struct {
			Credentials struct {
				SecretName string `yaml:"secretName"`
			} `yaml:"credentials"`
		} `yaml:"broker"`
		Hostd struct {
			HostCreds struct {
				AdminSecretName string `yaml:"adminSecretName"`
			} `yaml:"hostCreds"`
		} `yaml:"hostd"`
	}
	if err := yaml.Unmarshal([]byte(readFile(t, filepath.Join(chartDir, "values.yaml"))), &values); err != nil {
		t.Fatal(err)
	}
	if values.Broker.Credentials.SecretName != "plugbus-broker" || values.Hostd.HostCreds.AdminSecretName != "plugbus-admin" {
		t.Errorf("the chart's defaults name %+v", values)
	}
	if _, err := runErr(root, nil, "sh", filepath.Join(root, "deployments", "helm", "secrets.sh"), t.TempDir()); err == nil {
		t.Error("secrets.sh accepted a directory without broker auth init's files")
	}
}
