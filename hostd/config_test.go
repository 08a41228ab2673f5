package hostd

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseConfig(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("HOSTD_TEST_SINK", "127.0.0.1:9999")
	t.Setenv(("NATS_URL"), "nats://10.0.0.1:4222")
	c, err := ParseConfig([]byte(`
host: edge-1
labels: {zone: a}
plugins:
  - binary: plugins/inc          # relative to the file's folder
    instances: 2
  - name: off                    # YAML 1.2: a string, not false
    binary: /usr/bin/true
    enabled: false
    config:
      url: http://${HOSTD_TEST_SINK}/alerts
      other: ${HOSTD_TEST_UNSET:-fallback}
`), dir)
	if err != nil {
		t.Fatal(err)
	}
	if c.Host != "edge-1" || c.NATSURL != "nats://10.0.0.1:4222" || c.Prefix != "plugbus" || c.StateDir != filepath.Join(dir, "data/hostd") ||
		c.StartTimeout.D() != 30*time.Second || c.StopGrace.D() != 10*time.Second || c.HeartbeatInterval.D() != 5*time.Second || c.LogRate != 200 {
		t.Errorf("defaults: %+v", c)
	}
	if p := c.Plugins[0]; p.Binary != filepath.Join(dir, "plugins/inc") || p.Instances != 2 || !p.IsEnabled() {
		t.Errorf("plugin 0: %+v", p)
	}
	p := c.Plugins[1]
	if p.Name != "off" || p.IsEnabled() || p.Config["url"] != "http://127.0.0.1:9999/alerts" || p.Config["other"] != "fallback" || p.Instances != 1 {
		t.Errorf("plugin 1: %+v", p)
	}
	if args := p.listenArgs(); strings.Join(args, " ") != "listen" {
		t.Errorf("listen args %q: the config must not be on the command line", args)
	}
	if env, err := p.configEnv(); err != nil || env != `PLUGBUS_CONFIG={"other":"fallback","url":"http://127.0.0.1:9999/alerts"}` {
		t.Errorf("config env %q (%v)", env, err)
	}

	for name, tc := range map[string]struct{ doc, field string }{
		"unknown field":   {"plugins:\n  - binary: x\n    instnces: 2\n", "plugins[0].instnces"},
		"no binary":       {"plugins:\n  - name: x\n", "plugins[0].binary"},
		"zero instances":  {"plugins:\n  - binary: x\n    instances: 0\n", "plugins[0].instances"},
		"bad host":        {"host: Bad_Host\n", "host"},
		"bad duration":    {"start_timeout: soon\n", "start_timeout"},
		"listed twice":    {"plugins:\n  - binary: /bin/a\n  - binary: /bin/a\n", "plugins[1]"},
		"bad prefix":      {"prefix: a.b\n", "prefix"},
		"not yaml":        {"plugins: [\n", "not YAML"},
		"top-level list":  {"- a\n- b\n", "object"},
		"bad label value": {"labels: {a: [1]}\n", "labels.a"},
		"tls cert alone":  {"tls: {cert: c.pem}\n", "tls: cert and key go together"},
		"tls typo":        {"tls: {cafile: ca.pem}\n", "tls.cafile"},
	} {
		_, err := ParseConfig([]byte(tc.doc), dir)
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: error %v, want one naming %s", name, err, tc.field)
		}
	}
	if c, err := ParseConfig([]byte("tls: {ca: ca.pem, cert: /etc/c.pem, key: k.pem}\n"), dir); err != nil ||
		*c.TLS != (TLSConfig{CA: filepath.Join(dir, "ca.pem"), Cert: "/etc/c.pem", Key: filepath.Join(dir, "k.pem")}) {
		t.Errorf("tls paths: %+v (%v), want them relative to the file's folder", c.TLS, err)
	}
	if _, err := LoadConfig(filepath.Join(dir, "missing.yaml")); !errors.Is(err, ErrInvalidConfig) || !errors.Is(err, os.ErrNotExist) && !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing file: %v", err)
	}
}

func TestPlacement(t *testing.T) {
	labels := map[string]string{"gpu": "yes", "zone": "a"}
	for _, tc := range []struct {
		components []string
		ok         bool
	}{
		{nil, true},
		{[]string{"gpu"}, true},
		{[]string{"zone=a", "gpu"}, true},
		{[]string{"zone=b"}, false},
		{[]string{"gpu", "edge"}, false},
	} {
		ok, why := placed(tc.components, labels)
		if ok != tc.ok || (!ok && !strings.Contains(why, "needs components")) {
			t.Errorf("placed(%v) = %v %q, want %v", tc.components, ok, why, tc.ok)
		}
	}
}

func TestExpandEnv(t *testing.T) {
	t.Setenv("HOSTD_X", "x")
	t.Setenv("HOSTD_EMPTY", "")
	for in, want := range map[string]string{
		"a ${HOSTD_X} b":          "a x b",
		"${HOSTD_EMPTY:-d}":       "d",
		"${HOSTD_UNSET:-}":        "",
		"${HOSTD_UNSET}":          "",
		"$HOSTD_X stays":          "$HOSTD_X stays",
		"${HOSTD_X:-unused}/path": "x/path",
		"price: $5":               "price: $5",
	} {
		if got := expandEnv(in); got != want {
			t.Errorf("expandEnv(%q) = %q, want %q", in, got, want)
		}
	}
}
