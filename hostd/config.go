package hostd

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// Defaults of the config file's settings.
const (
	DefaultStateDir          = "data/hostd"
	DefaultStartTimeout      = 30 * time.Second
	DefaultStopGrace         = 10 * time.Second
	DefaultHeartbeatInterval = 5 * time.Second
	DefaultLogRate           = 200
)

// ErrInvalidConfig is wrapped by every config file error.
var ErrInvalidConfig = errors.New("invalid hostd config")

// Config is hostd's config file (YAML or JSON, schema
// schemas/hostd/v1/config.json): this host and the plugins it runs.
type Config struct {
	// Host is this host's name (default: the hostname's first label,
	// lower-cased).
	Host string `json:"host,omitempty"`
	// Labels are matched against the plugins' manifest components.
	Labels map[string]string `json:"labels,omitempty"`
	// NATSURL is the bus (default $NATS_URL, then nats://127.0.0.1:4222).
	NATSURL string `json:"nats_url,omitempty"`
	// Creds is hostd's own credentials file.
	Creds string `json:"creds,omitempty"`
	// TLS is the client TLS of hostd's connection, passed on to the
	// plugins it starts ($NATS_CERT, $NATS_KEY, $NATS_CA).
	TLS *TLSConfig `json:"tls,omitempty"`
	// Prefix is the bus's subject prefix (default plugbus).
	Prefix string `json:"prefix,omitempty"`
	// StateDir keeps the pidfiles and the plugins' credentials (relative
	// to the config file's folder).
	StateDir string `json:"state_dir,omitempty"`
	// StartTimeout bounds how long a started plugin has to become ready.
	StartTimeout schemas.Duration `json:"start_timeout,omitempty"`
	// StopGrace is the time between SIGTERM and SIGKILL.
	StopGrace schemas.Duration `json:"stop_grace,omitempty"`
	// HeartbeatInterval is how often the host record is refreshed.
	HeartbeatInterval schemas.Duration `json:"heartbeat_interval,omitempty"`
	// LogRate bounds the log lines per second and instance published to
	// the bus.
	LogRate int `json:"log_rate,omitempty"`
	// Plugins are the plugins this host runs.
	Plugins []PluginConfig `json:"plugins,omitempty"`
}

// TLSConfig is a client TLS setup, as the nats CLI's --tlscert, --tlskey
// and --tlsca: Cert and Key for mutual TLS, CA to verify the server.
type TLSConfig struct {
	Cert string `json:"cert,omitempty"`
	Key  string `json:"key,omitempty"`
	CA   string `json:"ca,omitempty"`
}

// PluginConfig is one plugin entry of the config file.
type PluginConfig struct {
	// Name must equal the manifest's name; empty takes the manifest's.
	Name string `json:"name,omitempty"`
	// Binary is the plugin binary: a path (relative ones are resolved
	// against the config file's folder) or a name in $PATH.
	Binary string `json:"binary"`
	// Args are extra arguments after listen.
	Args []string `json:"args,omitempty"`
	// Env are extra environment variables.
	Env map[string]string `json:"env,omitempty"`
	// Config is the initial config, passed as --config KEY=VALUE.
	Config map[string]any `json:"config,omitempty"`
	// Instances is how many instances run (default 1).
	Instances int `json:"instances,omitempty"`
	// Enabled false keeps the plugin stopped (default true).
	Enabled *bool `json:"enabled,omitempty"`
}

// IsEnabled reports the entry's own enabled setting (true by default).
func (p PluginConfig) IsEnabled() bool { return p.Enabled == nil || *p.Enabled }

// LoadConfig reads, validates and completes a config file: every field is
// checked against the schema (an error names the field), relative binary
// paths are resolved against the file's folder, and defaults are filled in.
func LoadConfig(path string) (Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}
	return ParseConfig(raw, filepath.Dir(path))
}

// ParseConfig is LoadConfig for a config's bytes; dir resolves relative
// paths. ${VAR} and ${VAR:-default} in the text are replaced from the
// environment first.
func ParseConfig(raw []byte, dir string) (Config, error) {
	var c Config
	// YAML 1.2 (yaml.v3): only true and false are booleans, so a plugin
	// named "off" or "no" stays a string.
	var tree any
	if err := yaml.Unmarshal([]byte(expandEnv(string(raw))), &tree); err != nil {
		return c, fmt.Errorf("%w: not YAML or JSON: %v", ErrInvalidConfig, err)
	}
	if tree == nil {
		tree = map[string]any{}
	}
	doc, err := json.Marshal(tree)
	if err != nil {
		return c, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}
	if err := schemas.Decode(schemas.HostdConfigV1, doc, &c); err != nil {
		return c, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if err := c.complete(dir); err != nil {
		return c, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return c, nil
}

var envRefRE = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

// expandEnv replaces ${VAR} with $VAR's value and ${VAR:-default} with
// the default when VAR is unset or empty. A lone $ is left as it is.
func expandEnv(s string) string {
	return envRefRE.ReplaceAllStringFunc(s, func(ref string) string {
		m := envRefRE.FindStringSubmatch(ref)
		if v := os.Getenv(m[1]); v != "" || m[2] == "" {
			return v
		}
		return m[3]
	})
}

var hostRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// DefaultHost is the host name hostd uses when the config names none: the
// first label of the hostname, lower-cased.
func DefaultHost() (string, error) {
	h, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("host: cannot read the hostname (%v): set host in the config", err)
	}
	h = strings.ToLower(strings.SplitN(h, ".", 2)[0])
	if !hostRE.MatchString(h) {
		return "", fmt.Errorf("host: the hostname %q is not a DNS label: set host in the config", h)
	}
	return h, nil
}

func (c *Config) complete(dir string) error {
	if c.Host == "" {
		h, err := DefaultHost()
		if err != nil {
			return err
		}
		c.Host = h
	}
	if c.NATSURL == "" {
		c.NATSURL = os.Getenv(wire.EnvNATSURL)
	}
	if c.NATSURL == "" {
		c.NATSURL = "nats://127.0.0.1:4222"
	}
	if c.Prefix == "" {
		c.Prefix = wire.DefaultPrefix
	}
	if err := wire.ValidatePrefix(c.Prefix); err != nil {
		return fmt.Errorf("prefix: %w", err)
	}
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir
	}
	if !filepath.IsAbs(c.StateDir) {
		c.StateDir = filepath.Join(dir, c.StateDir)
	}
	if c.Creds != "" && !filepath.IsAbs(c.Creds) {
		c.Creds = filepath.Join(dir, c.Creds)
	}
	if t := c.TLS; t != nil {
		if (t.Cert == "") != (t.Key == "") {
			return errors.New("tls: cert and key go together (mutual TLS needs both)")
		}
		for _, f := range []*string{&t.Cert, &t.Key, &t.CA} {
			if *f != "" && !filepath.IsAbs(*f) {
				*f = filepath.Join(dir, *f)
			}
		}
	}
	if c.StartTimeout == 0 {
		c.StartTimeout = schemas.Duration(DefaultStartTimeout)
	}
	if c.StopGrace == 0 {
		c.StopGrace = schemas.Duration(DefaultStopGrace)
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = schemas.Duration(DefaultHeartbeatInterval)
	}
	if c.LogRate == 0 {
		c.LogRate = DefaultLogRate
	}
	names := map[string]int{}
	for i := range c.Plugins {
		p := &c.Plugins[i]
		if p.Instances == 0 {
			p.Instances = 1
		}
		if strings.ContainsRune(p.Binary, os.PathSeparator) {
			if !filepath.IsAbs(p.Binary) {
				p.Binary = filepath.Join(dir, p.Binary)
			}
		} else if found, err := exec.LookPath(p.Binary); err == nil {
			p.Binary = found
		}
		if abs, err := filepath.Abs(p.Binary); err == nil {
			p.Binary = abs
		}
		key := p.Name
		if key == "" {
			key = p.Binary
		}
		if j, dup := names[key]; dup {
			return fmt.Errorf("plugins[%d]: %s is listed twice (also plugins[%d]); use instances to run more", i, key, j)
		}
		names[key] = i
	}
	return nil
}

// listenArgs are the arguments hostd starts a plugin with.
func (p PluginConfig) listenArgs() []string {
	return append([]string{"listen"}, p.Args...)
}

// configEnv is the plugin's initial config as the $PLUGBUS_CONFIG
// variable hostd starts it with (empty without config): in the
// environment, which only the plugin's user can read, rather than on the
// command line, which ps shows everyone.
func (p PluginConfig) configEnv() (string, error) {
	if len(p.Config) == 0 {
		return "", nil
	}
	v, err := json.Marshal(p.Config)
	if err != nil {
		return "", fmt.Errorf("config: %v", err)
	}
	return wire.EnvConfig + "=" + string(v), nil
}
