package check

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// dockerfile is the repository's Dockerfile, parsed by BuildKit's own
// parser, with its lint warnings (BuildKit's build checks that run at
// parse time).
type dockerfile struct {
	stages   []instructions.Stage
	metaArgs map[string]string
	warnings []string
}

func parseDockerfile(t *testing.T, file string) dockerfile {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := parser.Parse(f)
	if err != nil {
		t.Fatalf("%s: %v", rel(file), err)
	}
	var d dockerfile
	for _, w := range res.Warnings {
		d.warnings = append(d.warnings, w.Short)
	}
	lint := linter.New(&linter.Config{Warn: func(rule, _, _, msg string, loc []parser.Range) {
		line := 0
		if len(loc) > 0 {
			line = loc[0].Start.Line
		}
		d.warnings = append(d.warnings, fmt.Sprintf("line %d: %s: %s", line, rule, msg))
	}})
	stages, metaArgs, err := instructions.Parse(res.AST, lint)
	if err != nil {
		t.Fatalf("%s: %v", rel(file), err)
	}
	d.stages = stages
	d.metaArgs = map[string]string{}
	for _, a := range metaArgs {
		for _, kv := range a.Args {
			if kv.Value != nil {
				d.metaArgs[kv.Key] = *kv.Value
			}
		}
	}
	return d
}

func (d dockerfile) stage(name string) (instructions.Stage, bool) {
	for _, s := range d.stages {
		if s.Name == name {
			return s, true
		}
	}
	return instructions.Stage{}, false
}

func expand(s string, vars map[string]string) string {
	return os.Expand(s, func(k string) string { return vars[k] })
}

func TestDockerfile(t *testing.T) {
	d := parseDockerfile(t, filepath.Join(root, "Dockerfile"))
	for _, p := range d.problems(readFile(t, filepath.Join(root, "go.mod"))) {
		t.Errorf("Dockerfile: %s", p)
	}
}

// problems are what is wrong with the Dockerfile: lint warnings, stages,
// bases, the user.
func (d dockerfile) problems(gomod string) []string {
	out := append([]string{}, d.warnings...)
	if len(d.stages) < 2 {
		return append(out, fmt.Sprintf("%d stages: want a build stage and a runtime stage", len(d.stages)))
	}
	build, ok := d.stage("build")
	if !ok {
		return append(out, "no stage named build")
	}
	// The Go of the build stage is the one go.mod names.
	goVersion := regexp.MustCompile(`(?m)^go (\S+)$`).FindStringSubmatch(gomod)[1]
	if base := expand(build.BaseName, d.metaArgs); !strings.HasPrefix(base, "golang:"+goVersion+"-") {
		out = append(out, fmt.Sprintf("build stage FROM %s, want golang:%s (go.mod's version)", base, goVersion))
	}
	final := d.stages[len(d.stages)-1]
	base := expand(final.BaseName, d.metaArgs)
	if base != "scratch" && !strings.HasPrefix(base, "gcr.io/distroless/") {
		out = append(out, fmt.Sprintf("runtime stage FROM %s, want distroless or scratch", base))
	}
	var user string
	for _, c := range final.Commands {
		switch c := c.(type) {
		case *instructions.UserCommand:
			user = c.User
		case *instructions.RunCommand:
			out = append(out, fmt.Sprintf("runtime stage RUN %q: a distroless image has no shell", c.CmdLine))
		case *instructions.CopyCommand:
			if c.From != "" {
				if _, ok := d.stage(c.From); !ok {
					out = append(out, fmt.Sprintf("COPY --from=%s: no such stage", c.From))
				}
			}
		}
	}
	uid, _, _ := strings.Cut(user, ":")
	if n, err := strconv.Atoi(uid); err != nil || n == 0 {
		out = append(out, fmt.Sprintf("runtime stage USER %q: want a numeric non-root uid (Kubernetes' runAsNonRoot can check only a number)", user))
	}
	return out
}

// image is the runtime stage's filesystem as the build stage's commands,
// run on this machine, make it: image path → file here.
type image struct {
	files map[string]string
	user  string
}

var built struct {
	once sync.Once
	img  image
	err  error
	log  string
}

// buildImage runs the Dockerfile's build stage on this machine, once per
// run: its RUN lines, unchanged, with its ENV and ARG values (OUT set to a
// temporary directory), in a copy of the build context (the repository
// less what .dockerignore excludes) standing for WORKDIR; then maps the
// runtime stage's COPY --from=build lines onto what that produced.
func buildImage(t *testing.T) image {
	t.Helper()
	built.once.Do(func() {
		built.img, built.log, built.err = doBuild()
	})
	if built.err != nil {
		t.Fatalf("the Dockerfile's build stage: %v\n%s", built.err, built.log)
	}
	return built.img
}

func doBuild() (image, string, error) {
	var log strings.Builder
	tmp, err := os.MkdirTemp("", "plugbus-docker-build-")
	if err != nil {
		return image{}, "", err
	}
	ctx := filepath.Join(tmp, "context")
	out := filepath.Join(tmp, "out")
	if err := copyContext(root, ctx); err != nil {
		return image{}, "", err
	}
	f, err := os.Open(filepath.Join(root, "Dockerfile"))
	if err != nil {
		return image{}, "", err
	}
	res, err := parser.Parse(f)
	f.Close()
	if err != nil {
		return image{}, "", err
	}
	stages, metaArgs, err := instructions.Parse(res.AST, nil)
	if err != nil {
		return image{}, "", err
	}
	vars := map[string]string{}
	for _, a := range metaArgs {
		for _, kv := range a.Args {
			if kv.Value != nil {
				vars[kv.Key] = *kv.Value
			}
		}
	}
	var buildStage, final *instructions.Stage
	for i := range stages {
		if stages[i].Name == "build" {
			buildStage = &stages[i]
		}
	}
	final = &stages[len(stages)-1]
	if buildStage == nil {
		return image{}, "", fmt.Errorf("no build stage")
	}
	workdir := ""
	for _, c := range buildStage.Commands {
		switch c := c.(type) {
		case *instructions.WorkdirCommand:
			workdir = c.Path
		case *instructions.EnvCommand:
			for _, kv := range c.Env {
				vars[kv.Key] = expand(kv.Value, vars)
			}
		case *instructions.ArgCommand:
			for _, kv := range c.Args {
				if kv.Key == "OUT" {
					vars["OUT"] = out
				} else if kv.Value != nil {
					vars[kv.Key] = expand(*kv.Value, vars)
				}
			}
		case *instructions.CopyCommand:
			if c.From != "" {
				return image{}, log.String(), fmt.Errorf("build stage COPY --from is not supported by this check")
			}
			for _, src := range c.SourcePaths {
				if _, err := os.Stat(filepath.Join(ctx, src)); err != nil {
					return image{}, log.String(), fmt.Errorf("COPY %s: not in the build context (.dockerignore?): %v", src, err)
				}
			}
		case *instructions.RunCommand:
			if workdir != "/src" {
				return image{}, log.String(), fmt.Errorf("RUN in WORKDIR %q: this check runs the build stage with the context as /src", workdir)
			}
			script := strings.Join(c.CmdLine, " ")
			if !c.PrependShell {
				return image{}, log.String(), fmt.Errorf("RUN %q: exec form is not supported by this check", script)
			}
			fmt.Fprintf(&log, "RUN %s\n", script)
			cmd := exec.Command("sh", "-c", script)
			cmd.Dir = ctx
			cmd.Env = os.Environ()
			for k, v := range vars {
				cmd.Env = append(cmd.Env, k+"="+v)
			}
			b, err := cmd.CombinedOutput()
			log.Write(b)
			if err != nil {
				return image{}, log.String(), fmt.Errorf("RUN %s: %v", script, err)
			}
		}
	}
	img := image{files: map[string]string{}}
	for _, c := range final.Commands {
		switch c := c.(type) {
		case *instructions.UserCommand:
			img.user = c.User
		case *instructions.CopyCommand:
			if c.From != "build" {
				continue
			}
			for _, src := range c.SourcePaths {
				if !strings.HasPrefix(src, "/out/") {
					return image{}, log.String(), fmt.Errorf("COPY --from=build %s: outside /out (OUT)", src)
				}
				here := filepath.Join(out, strings.TrimPrefix(src, "/out/"))
				err := filepath.WalkDir(here, func(p string, _ fs.DirEntry, err error) error {
					if err != nil {
						return err
					}
					r, _ := filepath.Rel(here, p)
					img.files[path.Join(c.DestPath, filepath.ToSlash(r))] = p
					return nil
				})
				if err != nil {
					return image{}, log.String(), fmt.Errorf("COPY --from=build %s: %v", src, err)
				}
			}
		}
	}
	return img, log.String(), nil
}

// copyContext copies the build context: src less what its .dockerignore
// excludes (matched as docker does, with moby/patternmatcher).
func copyContext(src, dst string) error {
	var patterns []string
	if f, err := os.Open(filepath.Join(src, ".dockerignore")); err == nil {
		patterns, err = ignorefile.ReadAll(f)
		f.Close()
		if err != nil {
			return err
		}
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		return err
	}
	return filepath.WalkDir(src, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		r, _ := filepath.Rel(src, p)
		if r != "." {
			if skip, err := pm.MatchesOrParentMatches(filepath.ToSlash(r)); err != nil {
				return err
			} else if skip {
				if e.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
		}
		target := filepath.Join(dst, r)
		if e.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !e.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, info.Mode().Perm())
	})
}

// started is one command a deployment starts in the plugbus image.
type started struct {
	where string
	argv  []string
}

// composeStarts lists the commands the compose file starts in the plugbus
// image (entrypoint and command, healthchecks) and the plugins of its
// hostd config.
func composeStarts(t *testing.T) (cmds []started, plugins []started) {
	p := composeProject(t)
	for _, s := range plugbusServices(p) {
		cmds = append(cmds, started{"compose service " + s.Name, argv(s)})
		if hc := s.HealthCheck; hc != nil && len(hc.Test) > 1 && hc.Test[0] == "CMD" {
			cmds = append(cmds, started{"compose healthcheck of " + s.Name, hc.Test[1:]})
		}
	}
	hd := p.Services["hostd"]
	cfgPath, _ := flagValue(argv(hd), "--config")
	m, _ := mountOf(hd, cfgPath)
	var env []string
	for k, v := range hd.Environment {
		if v != nil {
			env = append(env, k+"="+*v)
		}
	}
	for _, pl := range hostdConfig(t, m.Source, env).Plugins {
		plugins = append(plugins, started{"compose hostd.yaml", []string{pl.Binary}})
	}
	return cmds, plugins
}

var k8sVar = regexp.MustCompile(`\$\(([A-Z_][A-Z0-9_]*)\)`)

// chartStarts lists the commands the chart starts in the plugbus image
// (containers and init containers, with Kubernetes' $(VAR) expanded) and
// the plugins of its hostd config, over every set of values the tests
// render.
func chartStarts(t *testing.T) (cmds []started, plugins []started) {
	chart := chartCopy(t)
	for _, r := range renders {
		out, err := helm(t, r.args(chart)...)
		if err != nil {
			t.Fatalf("%s: %v\n%s", r.name, err, out)
		}
		for _, o := range docs(t, out) {
			name := fmt.Sprintf("chart (%s) %s %s", r.name, o["kind"], str(o, "metadata", "name"))
			if o["kind"] == "ConfigMap" && str(o, "data", "hostd.yaml") != "" {
				file := filepath.Join(t.TempDir(), "hostd.yaml")
				if err := os.WriteFile(file, []byte(str(o, "data", "hostd.yaml")), 0o644); err != nil {
					t.Fatal(err)
				}
				for _, pl := range hostdConfig(t, file, []string{"PLUGBUS_HOST=h", "NATS_URL=nats://n:4222"}).Plugins {
					plugins = append(plugins, started{name, []string{pl.Binary}})
				}
			}
			pod := get(o, "spec", "template", "spec")
			if pod == nil {
				continue
			}
			for _, list := range []string{"initContainers", "containers"} {
				ctrs, _ := get(pod, list).([]any)
				for _, c := range ctrs {
					img := str(c, "image")
					if !strings.Contains(img, "plugbus:") {
						continue
					}
					env := map[string]string{}
					envs, _ := get(c, "env").([]any)
					for _, e := range envs {
						v := str(e, "value")
						if v == "" {
							v = "from-" + str(e, "name")
						}
						env[str(e, "name")] = v
					}
					var a []string
					for _, s := range append(strs(get(c, "command")), strs(get(c, "args"))...) {
						a = append(a, k8sVar.ReplaceAllStringFunc(s, func(m string) string { return env[k8sVar.FindStringSubmatch(m)[1]] }))
					}
					cmds = append(cmds, started{name + " " + list + " " + str(c, "name"), a})
				}
			}
		}
	}
	return cmds, plugins
}

// Every binary the compose file and the chart start is in the image the
// Dockerfile builds, is executable, and takes the flags they pass; every
// plugin a hostd config names is in the image and prints its manifest.
func TestImageRunsWhatDeploymentsStart(t *testing.T) {
	img := buildImage(t)
	cc, cp := composeStarts(t)
	hc, hp := chartStarts(t)
	cmds, plugins := append(cc, hc...), append(cp, hp...)
	if len(cmds) < 10 || len(plugins) < 6 {
		t.Fatalf("found %d commands and %d plugins in the deployments: fewer than they have", len(cmds), len(plugins))
	}
	binaries := map[string]bool{}
	for _, c := range cmds {
		here, ok := img.files[c.argv[0]]
		if !ok {
			t.Errorf("%s runs %s, which the image does not have", c.where, c.argv[0])
			continue
		}
		binaries[c.argv[0]] = true
		if st, err := os.Stat(here); err != nil || st.Mode()&0o111 == 0 {
			t.Errorf("%s runs %s, which is not executable", c.where, c.argv[0])
			continue
		}
		// Every flag they pass exists and takes the value given: with
		// --help last, the binaries parse all the flags (an unknown flag
		// or a bad value fails) and print their help instead of running.
		if out, err := runErr(root, nil, here, append(c.argv[1:], "--help")...); err != nil {
			t.Errorf("%s: %s %s: %v\n%s", c.where, c.argv[0], strings.Join(c.argv[1:], " "), err, out)
		}
	}
	for _, want := range []string{"/usr/local/bin/broker", "/usr/local/bin/hostd", "/usr/local/bin/busctl", "/usr/local/bin/webhook-sink"} {
		if !binaries[want] {
			t.Errorf("no deployment runs %s", want)
		}
	}
	for _, p := range plugins {
		here, ok := img.files[p.argv[0]]
		if !ok {
			t.Errorf("%s names plugin %s, which the image does not have", p.where, p.argv[0])
			continue
		}
		out, err := exec.Command(here, "define").Output()
		if err != nil {
			t.Errorf("%s: %s define: %v", p.where, p.argv[0], err)
			continue
		}
		var m struct{ Name string }
		if err := json.Unmarshal(out, &m); err != nil || m.Name != path.Base(p.argv[0]) {
			t.Errorf("%s: %s define printed %q (%v)", p.where, p.argv[0], m.Name, err)
		}
	}
	// Every binary make build builds is in the image.
	var want []string
	entries, _ := os.ReadDir(filepath.Join(root, "cmd"))
	for _, e := range entries {
		want = append(want, "/usr/local/bin/"+e.Name())
	}
	entries, _ = os.ReadDir(filepath.Join(root, "plugins"))
	for _, e := range entries {
		want = append(want, "/usr/local/lib/plugbus/plugins/"+e.Name())
	}
	for _, w := range want {
		if _, ok := img.files[w]; !ok {
			t.Errorf("the image lacks %s", w)
		}
	}
	// The directories the containers write to are there (a named volume
	// mounted on one takes its owner, the image's user).
	for _, dir := range []string{"/var/lib/plugbus/auth", "/var/lib/plugbus/host-creds", "/var/lib/plugbus/hostd", "/var/lib/plugbus/data"} {
		if _, ok := img.files[dir]; !ok {
			t.Errorf("the image lacks %s", dir)
		}
	}
	t.Logf("%d commands and %d plugins checked against the image's %d files (user %s)", len(cmds), len(plugins), len(img.files), img.user)
}

// The check fails on a Dockerfile that it should fail on.
func TestDockerfileChecksFail(t *testing.T) {
	good := readFile(t, filepath.Join(root, "Dockerfile"))
	gomod := readFile(t, filepath.Join(root, "go.mod"))
	for name, c := range map[string]struct{ from, to, want string }{
		"root user":     {"USER 65532:65532", "USER root", "USER"},
		"no user":       {"USER 65532:65532\n", "\n", "USER"},
		"lint warning":  {"FROM golang:${GO_VERSION}-bookworm AS build", "FROM golang:${GO_VERSION}-bookworm as build", "FromAsCasing"},
		"other Go":      {"ARG GO_VERSION=", "ARG GO_VERSION=1.19 #", "go.mod's version"},
		"full base":     {"FROM gcr.io/distroless/static-debian12:nonroot AS runtime", "FROM debian:12 AS runtime", "distroless or scratch"},
		"missing stage": {"COPY --from=build /out/usr/local/", "COPY --from=builder /out/usr/local/", "no such stage"},
		"shell at run":  {"USER 65532:65532", "RUN echo hi\nUSER 65532:65532", "no shell"},
	} {
		bad := strings.Replace(good, c.from, c.to, 1)
		if bad == good {
			t.Fatalf("%s: the mutation did not apply: update this test with the Dockerfile", name)
		}
		file := filepath.Join(t.TempDir(), "Dockerfile")
		if err := os.WriteFile(file, []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		problems := parseDockerfile(t, file).problems(gomod)
		if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, c.want) }) {
			t.Errorf("%s: no problem naming %q: %v", name, c.want, problems)
		}
	}
}
