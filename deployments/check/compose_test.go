package check

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v3"

	"github.com/plugbus/plugbus/hostd"
)

var composeDir = filepath.Join(root, "deployments", "compose")

// loadCompose loads a compose file as `docker compose config` does: the
// compose-spec loader (the one docker compose is built on) validates it
// against the compose JSON schema, interpolates ${VAR:-default} (from env
// only, not this machine's environment), merges the YAML anchors, resolves
// paths and checks that it is consistent (depends_on, volumes, networks).
// Every profile is on, so the tools service is loaded too.
func loadCompose(file string, env []string) (*types.Project, error) {
	opts, err := cli.NewProjectOptions([]string{file},
		cli.WithWorkingDirectory(filepath.Dir(file)),
		cli.WithEnv(env),
		cli.WithProfiles([]string{"*"}),
		cli.WithResolvedPaths(true),
		cli.WithConsistency(true),
	)
	if err != nil {
		return nil, err
	}
	return opts.LoadProject(context.Background())
}

func composeProject(t *testing.T) *types.Project {
	t.Helper()
	p, err := loadCompose(filepath.Join(composeDir, "docker-compose.yml"), nil)
	if err != nil {
		t.Fatalf("deployments/compose/docker-compose.yml: %v", err)
	}
	return p
}

// argv is a service's entrypoint followed by its command.
func argv(s types.ServiceConfig) []string {
	return append(append([]string{}, s.Entrypoint...), s.Command...)
}

// flagValue returns the value of --name=VALUE or --name VALUE in args.
func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v, true
		}
		if a == name && i+1 < len(args) {
			return args[i+1], true
		}
	}
	return "", false
}

// mountOf returns the volume of s mounted at target.
func mountOf(s types.ServiceConfig, target string) (types.ServiceVolumeConfig, bool) {
	for _, v := range s.Volumes {
		if v.Target == target {
			return v, true
		}
	}
	return types.ServiceVolumeConfig{}, false
}

// under reports whether path is inside a volume of s (a named volume, a
// bind mount), and which.
func under(s types.ServiceConfig, path string) (types.ServiceVolumeConfig, bool) {
	for _, v := range s.Volumes {
		if path == v.Target || strings.HasPrefix(path, strings.TrimSuffix(v.Target, "/")+"/") {
			return v, true
		}
	}
	return types.ServiceVolumeConfig{}, false
}

func plugbusServices(p *types.Project) []types.ServiceConfig {
	var out []types.ServiceConfig
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for n := range p.Services {
			if !yield(n) {
				return
			}
		}
	}) {
		if s := p.Services[name]; s.Image == plugbusImage {
			out = append(out, s)
		}
	}
	return out
}

func TestComposeFileLoads(t *testing.T) {
	p := composeProject(t)
	want := []string{"auth", "broker-1", "broker-2", "busctl", "grafana", "host-creds", "hostd", "n1", "n2", "n3", "prometheus", "webhook-sink"}
	got := slices.Sorted(func(yield func(string) bool) {
		for n := range p.Services {
			if !yield(n) {
				return
			}
		}
	})
	if !slices.Equal(got, want) {
		t.Fatalf("services %v, want %v", got, want)
	}
	// What `docker compose config` would print, for a look: bin/deploy-check/compose-config.yml.
	out, err := p.MarshalYAML()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "bin", "deploy-check")
	if err := os.MkdirAll(dir, 0o755); err == nil {
		_ = os.WriteFile(filepath.Join(dir, "compose-config.yml"), out, 0o644)
	}
}

// The loader is strict: a misspelt key, a dependency on a service that is
// not there, or a volume that is not declared is an error, as with docker
// compose. This keeps TestComposeFileLoads honest.
func TestComposeLoaderRefusesBadFiles(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(composeDir, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(string) string{
		"unknown key": func(s string) string {
			return strings.Replace(s, "    restart: unless-stopped\n", "    restrat: unless-stopped\n", 1)
		},
		"missing dependency": func(s string) string {
			return strings.Replace(s, "      host-creds: {condition: service_completed_successfully}", "      host-credz: {condition: service_completed_successfully}", 1)
		},
		"undeclared volume": func(s string) string {
			return strings.Replace(s, "      - hostd-state:/var/lib/plugbus/hostd", "      - hostd-stat:/var/lib/plugbus/hostd", 1)
		},
		"bad depends condition": func(s string) string {
			return strings.Replace(s, "condition: service_healthy", "condition: healthy", 1)
		},
	} {
		bad := mutate(string(raw))
		if bad == string(raw) {
			t.Fatalf("%s: the mutation did not apply: update this test with the compose file", name)
		}
		dir := t.TempDir()
		file := filepath.Join(dir, "docker-compose.yml")
		if err := os.WriteFile(file, []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := loadCompose(file, nil); err == nil {
			t.Errorf("%s: the loader accepted it", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

func TestComposeServices(t *testing.T) {
	p := composeProject(t)

	// Every plugbus service runs the image the repository's Dockerfile builds.
	for _, s := range plugbusServices(p) {
		if s.Build == nil || s.Build.Context != root || s.Build.Dockerfile != "Dockerfile" {
			t.Errorf("service %s: build %+v, want the repository root with its Dockerfile", s.Name, s.Build)
		}
		if a := argv(s); len(a) == 0 || !strings.HasPrefix(a[0], "/usr/local/bin/") {
			t.Errorf("service %s runs %q: name the binary by its path in the image", s.Name, a)
		}
	}
	if n := len(plugbusServices(p)); n != 7 {
		t.Errorf("%d services run the plugbus image, want 7 (auth, 2 brokers, host-creds, hostd, webhook-sink, busctl)", n)
	}

	// Three NATS nodes, each with its own config, the shared one and the auth volume.
	natsNodes := []string{"n1", "n2", "n3"}
	for _, n := range natsNodes {
		s := p.Services[n]
		if got := argv(s); !slices.Equal(got, []string{"--config", "/etc/nats/nats.conf"}) {
			t.Errorf("%s: command %q", n, got)
		}
		for target, source := range map[string]string{
			"/etc/nats/nats.conf":    filepath.Join(composeDir, "nats", n+".conf"),
			"/etc/nats/cluster.conf": filepath.Join(composeDir, "nats", "cluster.conf"),
		} {
			if v, ok := mountOf(s, target); !ok || v.Type != types.VolumeTypeBind || v.Source != source || !v.ReadOnly {
				t.Errorf("%s: %s is %+v, want %s read-only", n, target, v, rel(source))
			}
		}
		if v, ok := mountOf(s, "/etc/nats/auth"); !ok || v.Type != types.VolumeTypeVolume || v.Source != "auth" {
			t.Errorf("%s: /etc/nats/auth is %+v, want the auth volume", n, v)
		}
		if v, ok := mountOf(s, "/data"); !ok || v.Type != types.VolumeTypeVolume || v.Source != n+"-data" {
			t.Errorf("%s: /data (the JetStream store_dir) is %+v, want volume %s-data", n, v, n)
		}
		if d, ok := s.DependsOn["auth"]; !ok || d.Condition != types.ServiceConditionCompletedSuccessfully {
			t.Errorf("%s: does not wait for auth to complete", n)
		}
		if s.HealthCheck == nil || len(s.HealthCheck.Test) == 0 {
			t.Errorf("%s: no healthcheck (the brokers wait for it)", n)
		}
		conf := readFile(t, filepath.Join(composeDir, "nats", n+".conf"))
		if !regexp.MustCompile(`(?m)^server_name: `+n+`$`).MatchString(conf) || !strings.Contains(conf, "include cluster.conf") {
			t.Errorf("nats/%s.conf: want server_name %s and include cluster.conf", n, n)
		}
	}
	cluster := readFile(t, filepath.Join(composeDir, "nats", "cluster.conf"))
	routes := regexp.MustCompile(`nats://([a-z0-9-]+):6222`).FindAllStringSubmatch(cluster, -1)
	var routeHosts []string
	for _, r := range routes {
		routeHosts = append(routeHosts, r[1])
	}
	if !slices.Equal(routeHosts, natsNodes) {
		t.Errorf("cluster.conf routes to %v, want %v", routeHosts, natsNodes)
	}
	if !strings.Contains(cluster, "include auth/plugbus-auth.conf") {
		t.Error("cluster.conf does not include auth/plugbus-auth.conf (what broker auth init writes)")
	}

	natsURL := "nats://n1:4222,nats://n2:4222,nats://n3:4222"
	var brokerTargets []string
	for _, name := range []string{"broker-1", "broker-2"} {
		s := p.Services[name]
		a := argv(s)
		want := map[string]string{
			"--nats-url":            natsURL,
			"--creds":               "/var/lib/plugbus/auth/creds/broker.creds",
			"--account-signing-key": "/var/lib/plugbus/auth/signing.nk",
			"--replicas":            "3",
		}
		for flag, v := range want {
			if got, _ := flagValue(a, flag); got != v {
				t.Errorf("%s: %s=%q, want %q", name, flag, got, v)
			}
		}
		if v, ok := under(s, "/var/lib/plugbus/auth/creds/broker.creds"); !ok || v.Source != "auth" || !v.ReadOnly {
			t.Errorf("%s: the credentials are not on the auth volume, read-only: %+v", name, v)
		}
		httpAddr, _ := flagValue(a, "--http")
		host, port, ok := strings.Cut(httpAddr, ":")
		if !ok || host != "0.0.0.0" {
			t.Errorf("%s: --http=%q: Prometheus cannot reach a loopback address", name, httpAddr)
		}
		brokerTargets = append(brokerTargets, name+":"+port)
		for _, n := range natsNodes {
			if d, ok := s.DependsOn[n]; !ok || d.Condition != types.ServiceConditionHealthy {
				t.Errorf("%s: does not wait for %s to be healthy", name, n)
			}
		}
		if s.HealthCheck == nil {
			t.Errorf("%s: no healthcheck (host-creds waits for it)", name)
		}
	}

	// hostd: the host named in its credentials, the credentials on the
	// volume host-creds writes, every plugin binary an absolute path in
	// the image, and its config valid for hostd itself.
	hc := p.Services["host-creds"]
	ha := argv(hc)
	i := slices.Index(ha, "creds")
	if i < 1 || ha[i-1] != "hosts" || i+1 >= len(ha) {
		t.Fatalf("host-creds runs %q, want busctl hosts creds HOST", ha)
	}
	host := ha[i+1]
	out, _ := flagValue(ha, "--out")
	hv, ok := under(hc, out)
	if !ok || hv.ReadOnly {
		t.Errorf("host-creds writes %s outside a writable volume", out)
	}
	hd := p.Services["hostd"]
	cfgPath, _ := flagValue(argv(hd), "--config")
	cfgMount, ok := mountOf(hd, cfgPath)
	if !ok {
		t.Fatalf("hostd: --config=%s is not mounted", cfgPath)
	}
	var env []string
	for k, v := range hd.Environment {
		if v != nil {
			env = append(env, k+"="+*v)
		}
	}
	cfg := hostdConfig(t, cfgMount.Source, env)
	if cfg.Host != host {
		t.Errorf("hostd is host %q, host-creds issues credentials for %q", cfg.Host, host)
	}
	if v, ok := under(hd, cfg.Creds); !ok || v.Source != hv.Source {
		t.Errorf("hostd reads its credentials %s, not from the volume host-creds writes (%s)", cfg.Creds, hv.Source)
	}
	if v, ok := under(hd, cfg.StateDir); !ok || v.ReadOnly || v.Type != types.VolumeTypeVolume {
		t.Errorf("hostd's state_dir %s is not on a writable volume", cfg.StateDir)
	}
	if cfg.NATSURL != natsURL {
		t.Errorf("hostd's nats_url %q, want %q", cfg.NATSURL, natsURL)
	}
	if len(cfg.Plugins) != 3 {
		t.Errorf("hostd runs %d plugins, want the 3 samples", len(cfg.Plugins))
	}
	if d, ok := hd.DependsOn["host-creds"]; !ok || d.Condition != types.ServiceConditionCompletedSuccessfully {
		t.Error("hostd does not wait for host-creds to complete")
	}

	// Prometheus scrapes exactly the brokers, at their --http port, and
	// loads the rules from the observability work.
	pm := p.Services["prometheus"]
	promCfgMount, ok := mountOf(pm, "/etc/prometheus/prometheus.yml")
	if !ok {
		t.Fatal("prometheus: no /etc/prometheus/prometheus.yml")
	}
	var prom struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			MetricsPath   string `yaml:"metrics_path"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal([]byte(readFile(t, promCfgMount.Source)), &prom); err != nil {
		t.Fatal(err)
	}
	var targets []string
	for _, sc := range prom.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			targets = append(targets, st.Targets...)
		}
	}
	if !slices.Equal(targets, brokerTargets) {
		t.Errorf("prometheus scrapes %v, want the brokers %v", targets, brokerTargets)
	}
	rules, ok := mountOf(pm, "/etc/prometheus/rules/plugbus.yml")
	if !ok || rules.Source != filepath.Join(root, "deployments", "prometheus", "rules.yml") {
		t.Errorf("prometheus does not mount deployments/prometheus/rules.yml: %+v", rules)
	}
	if len(prom.RuleFiles) != 1 || prom.RuleFiles[0] != "/etc/prometheus/rules/*.yml" {
		t.Errorf("prometheus rule_files %v", prom.RuleFiles)
	}

	// Grafana: the data source and dashboard provisioning, and the dashboard.
	gf := p.Services["grafana"]
	if v, ok := mountOf(gf, "/etc/grafana/dashboards/plugbus.json"); !ok || v.Source != filepath.Join(root, "deployments", "grafana", "plugbus.json") {
		t.Errorf("grafana does not mount deployments/grafana/plugbus.json: %+v", v)
	}
	prov := readFile(t, filepath.Join(composeDir, "grafana", "provisioning", "dashboards", "plugbus.yml"))
	if !strings.Contains(prov, "path: /etc/grafana/dashboards") {
		t.Error("the dashboard provider does not read /etc/grafana/dashboards")
	}
	ds := readFile(t, filepath.Join(composeDir, "grafana", "provisioning", "datasources", "prometheus.yml"))
	if !strings.Contains(ds, "url: http://prometheus:9090") || !strings.Contains(ds, "type: prometheus") {
		t.Error("the Grafana data source is not the compose Prometheus")
	}
	// The dashboard reads a Prometheus data source (its datasource
	// variable), which the provisioned one is.
	var dash struct {
		UID        string `json:"uid"`
		Templating struct {
			List []struct {
				Name, Type string
				Query      any
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal([]byte(readFile(t, filepath.Join(root, "deployments", "grafana", "plugbus.json"))), &dash); err != nil {
		t.Fatalf("deployments/grafana/plugbus.json: %v", err)
	}
	if dash.UID == "" || !slices.ContainsFunc(dash.Templating.List, func(v struct {
		Name, Type string
		Query      any
	}) bool {
		return v.Type == "datasource" && v.Query == "prometheus"
	}) {
		t.Errorf("deployments/grafana/plugbus.json: no uid or no prometheus datasource variable: %+v", dash)
	}
}

// Every bind mount's source is in the repository (docker would otherwise
// create an empty directory in its place).
func TestComposeBindSourcesExist(t *testing.T) {
	p := composeProject(t)
	for _, s := range p.Services {
		for _, v := range s.Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			if !strings.HasPrefix(v.Source, root+string(filepath.Separator)) {
				t.Errorf("%s mounts %s, outside the repository", s.Name, v.Source)
				continue
			}
			if exists(v.Source) {
				continue
			}
			t.Errorf("%s mounts %s, which does not exist", s.Name, rel(v.Source))
		}
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// hostdConfig parses a hostd config file as hostd does (its schema, ${VAR}
// from env), after checking that every plugin binary is an absolute path
// (it runs in the image, not here).
func hostdConfig(t *testing.T, path string, env []string) hostd.Config {
	t.Helper()
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := hostd.ParseConfig(raw, filepath.Dir(path))
	if err != nil {
		t.Fatalf("%s: %v", rel(path), err)
	}
	return cfg
}
