package sdk_test

import (
	"bytes"
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk"
)

var mainManifest = schemas.Manifest{
	Name: "mainer", Version: "0.1.0", Description: "test plugin",
	Actions: []schemas.ActionSpec{{Command: "poke", Model: "machines", OptionalParams: []string{"x"}}},
}

func TestMainVerbs(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{name: "define", args: []string{"define"}, wantCode: sdk.ExitOK, wantStdout: `"name": "mainer"`},
		{name: "no verb", args: nil, wantCode: sdk.ExitUsage, wantStderr: "missing verb"},
		{name: "unknown verb", args: []string{"serve"}, wantCode: sdk.ExitUsage, wantStderr: `unknown verb "serve"`},
		{name: "unknown flag", args: []string{"listen", "--nope"}, wantCode: sdk.ExitUsage, wantStderr: "unknown flag: --nope"},
		{name: "define takes no args", args: []string{"define", "x"}, wantCode: sdk.ExitUsage, wantStderr: "takes no arguments"},
		{name: "bad config flag", args: []string{"listen", "--config", "oops"}, wantCode: sdk.ExitUsage, wantStderr: "want KEY=VALUE"},
		{name: "bad log format", args: []string{"listen", "--log-format", "xml"}, wantCode: sdk.ExitUsage, wantStderr: "--log-format"},
		{name: "bad log level", args: []string{"listen", "--log-level", "loud"}, wantCode: sdk.ExitUsage, wantStderr: "--log-level"},
		{name: "bad prefix", args: []string{"listen", "--prefix", "a.b"}, wantCode: sdk.ExitUsage, wantStderr: "prefix"},
		{name: "help", args: []string{"--help"}, wantCode: sdk.ExitOK, wantStdout: "listen"},
		{name: "version", args: []string{"--version"}, wantCode: sdk.ExitOK, wantStdout: "mainer 0.1.0 (plugbus "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := sdk.RunMain(context.Background(), tt.args, &stdout, &stderr, mainManifest, nil)
			if code != tt.wantCode {
				t.Errorf("exit code %d, want %d (stderr %q)", code, tt.wantCode, stderr.String())
			}
			if !strings.Contains(stdout.String(), tt.wantStdout) {
				t.Errorf("stdout %q does not contain %q", stdout.String(), tt.wantStdout)
			}
			if !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Errorf("stderr %q does not contain %q", stderr.String(), tt.wantStderr)
			}
		})
	}
}

func TestMainDefinePrintsTheManifest(t *testing.T) {
	var stdout bytes.Buffer
	if code := sdk.RunMain(context.Background(), []string{"define"}, &stdout, &bytes.Buffer{}, mainManifest, nil); code != 0 {
		t.Fatalf("exit %d", code)
	}
	var got schemas.Manifest
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, mainManifest) {
		t.Errorf("define printed %+v, want %+v", got, mainManifest)
	}
}

func TestMainListen(t *testing.T) {
	s := startServer(t)
	b := newFakeBroker(t, s.ClientURL())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr syncBuffer
	plugins := make(chan *sdk.Plugin, 1)
	setup := func(p *sdk.Plugin) error {
		p.HandleAction("poke", func(context.Context, *sdk.Action) (any, error) { return "poked", nil })
		plugins <- p
		return nil
	}
	code := make(chan int, 1)
	go func() {
		code <- sdk.RunMain(ctx, []string{"listen", "-s", s.ClientURL(), "--config", "n=2", "--config", "url=http://x",
			"--log-format", "json", "--log-level", "debug"}, &bytes.Buffer{}, &stderr, mainManifest, setup)
	}()
	waitFor(t, "registration", func() bool {
		e, err := b.plugins.Get(context.Background(), "mainer")
		return err == nil && strings.Contains(string(e.Value()), `"ACTIVE"`)
	})
	e, err := b.configs.Get(context.Background(), "mainer")
	if err != nil || string(e.Value()) != `{"n":2,"url":"http://x"}` {
		t.Errorf("stored config = %s, %v", e.Value(), err)
	}
	select {
	case p := <-plugins:
		<-p.Ready()
	case <-time.After(10 * time.Second):
		t.Fatal("setup was not called")
	}
	cancel()
	select {
	case c := <-code:
		if c != sdk.ExitOK {
			t.Errorf("exit code %d, stderr:\n%s", c, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("listen did not stop")
	}
	// JSON logs with the constant field names.
	first, _, _ := strings.Cut(stderr.String(), "\n")
	var line map[string]any
	if err := json.Unmarshal([]byte(first), &line); err != nil || line[sdk.FieldPlugin] != "mainer" {
		t.Errorf("first log line %q is not JSON with plugin=mainer", first)
	}
}
