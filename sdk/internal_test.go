package sdk

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/schemas"
)

func TestEventRoutes(t *testing.T) {
	var r eventRoutes
	mk := func(name string) EventHandler {
		return func(ctx context.Context, _ event.Event) error {
			*ctx.Value(&r).(*string) = name
			return nil
		}
	}
	for _, p := range []string{"io.plugbus.alert.v1.fired", "io.plugbus.alert.v1.*", "io.plugbus.*", "*"} {
		if err := r.add(p, mk(p)); err != nil {
			t.Fatal(err)
		}
	}
	tests := map[string]string{
		"io.plugbus.alert.v1.fired":    "io.plugbus.alert.v1.fired",
		"io.plugbus.alert.v1.resolved": "io.plugbus.alert.v1.*",
		"io.plugbus.alert":             "io.plugbus.*",
		"io.plugbus.alert.v1.x.y":      "*",
		"io.plugbus.alert.v1.":         "*",
		"com.example.thing":            "*",
	}
	for typ, want := range tests {
		t.Run(typ, func(t *testing.T) {
			var got string
			h := r.lookup(typ)
			if h == nil {
				t.Fatal("no handler")
			}
			_ = h(context.WithValue(context.Background(), &r, &got), event.New())
			if got != want {
				t.Errorf("routed to %q, want %q", got, want)
			}
		})
	}
	for _, bad := range []string{"", "io.*.x", "io.plugbus.alert.v1.*", "io.plugbus.alert.v1.fired", "*", ".*"} {
		if err := r.add(bad, mk(bad)); err == nil {
			t.Errorf("add(%q) accepted", bad)
		}
	}
	var empty eventRoutes
	if empty.lookup("x") != nil || !empty.empty() {
		t.Error("empty routes route something")
	}
}

func TestDeliverySettings(t *testing.T) {
	ms := func(n int) schemas.Duration { return schemas.Duration(time.Duration(n) * time.Millisecond) }
	tests := []struct {
		name      string
		manifest  []schemas.Duration
		consumer  jetstream.ConsumerConfig
		wantDelay []time.Duration // for attempts 1..n
		ackWait   time.Duration
		max       int
	}{
		{name: "defaults", wantDelay: []time.Duration{time.Second, time.Second}, ackWait: DefaultAckWait, max: -1},
		{name: "manifest backoff, last repeats", manifest: []schemas.Duration{ms(1), ms(2), ms(5)},
			consumer:  jetstream.ConsumerConfig{AckWait: time.Minute, MaxDeliver: 5},
			wantDelay: []time.Duration{time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond, 5 * time.Millisecond}, ackWait: time.Minute, max: 5},
		{name: "consumer backoff when the manifest has none",
			consumer:  jetstream.ConsumerConfig{BackOff: []time.Duration{3 * time.Second}},
			wantDelay: []time.Duration{3 * time.Second, 3 * time.Second}, ackWait: DefaultAckWait, max: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &Plugin{manifest: schemas.Manifest{Events: &schemas.EventSubscription{Backoff: tt.manifest}}}
			s := p.settingsFor(&jetstream.ConsumerInfo{Config: tt.consumer})
			if s.ackWait != tt.ackWait || s.maxDeliver != tt.max {
				t.Errorf("ackWait %s max %d, want %s %d", s.ackWait, s.maxDeliver, tt.ackWait, tt.max)
			}
			for i, want := range tt.wantDelay {
				if got := s.retryDelay(uint64(i + 1)); got != want {
					t.Errorf("delay after attempt %d = %s, want %s", i+1, got, want)
				}
			}
			if got := s.retryDelay(0); got != tt.wantDelay[0] {
				t.Errorf("delay for attempt 0 = %s", got)
			}
		})
	}
}

func TestParseConfigFlags(t *testing.T) {
	tests := []struct {
		in      []string
		want    map[string]any
		wantErr bool
	}{
		{in: nil, want: nil},
		{in: []string{"url=https://example.com/x?a=b"}, want: map[string]any{"url": "https://example.com/x?a=b"}},
		{in: []string{"n=8080", "b=true", `l=["a","b"]`, `o={"k":1}`, `q="42"`, "e="}, want: map[string]any{
			"n": float64(8080), "b": true, "l": []any{"a", "b"}, "o": map[string]any{"k": float64(1)}, "q": "42", "e": ""}},
		{in: []string{"k=a=b"}, want: map[string]any{"k": "a=b"}},
		{in: []string{"novalue"}, wantErr: true},
		{in: []string{"=v"}, wantErr: true},
	}
	for _, tt := range tests {
		got, err := parseConfigFlags(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("%q: error %v", tt.in, err)
			continue
		}
		if !tt.wantErr && !equalJSON(got, tt.want) {
			t.Errorf("%q: got %#v, want %#v", tt.in, got, tt.want)
		}
	}
}

// hostd passes the initial config in $PLUGBUS_CONFIG; --config flags win.
func TestInitialConfig(t *testing.T) {
	got, err := initialConfig(`{"url":"http://a","token":"s3cret"}`, []string{"url=http://b"})
	if err != nil || !equalJSON(got, map[string]any{"url": "http://b", "token": "s3cret"}) {
		t.Errorf("got %v (%v)", got, err)
	}
	if got, err := initialConfig("null", []string{"a=1"}); err != nil || !equalJSON(got, map[string]any{"a": float64(1)}) {
		t.Errorf("null env: got %v (%v)", got, err)
	}
	if _, err := initialConfig(`[1]`, nil); err == nil || !strings.Contains(err.Error(), "$PLUGBUS_CONFIG is not a JSON object") {
		t.Errorf("a list in $PLUGBUS_CONFIG: error %v", err)
	}
	if got, err := initialConfig("", nil); err != nil || got != nil {
		t.Errorf("nothing: got %v (%v)", got, err)
	}
}

func equalJSON(a, b map[string]any) bool {
	if len(a) != len(b) {
		return false
	}
	ca, cb := cloneConfig(a), cloneConfig(b)
	x, _ := jsonMarshal(ca)
	y, _ := jsonMarshal(cb)
	return x == y
}

func jsonMarshal(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}

// FuzzConfigValues checks that the getters never panic and agree with
// each other on arbitrary JSON documents and --config flags.
func FuzzConfigValues(f *testing.F) {
	for _, s := range []string{`{"k":1}`, `{"k":"1.5"}`, `{"k":[1,"a"]}`, `{"k":1e400}`, `{"k":-9.3e18}`, `{"k":"true"}`, `{"k":null}`, `k=v`, `k={"a":`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, doc string) {
		var c Config
		if json.Unmarshal([]byte(doc), &c) == nil {
			n, ok, err := toInt(c["k"])
			if ok && err == nil && float64(n) != c.Float("k", float64(n)+1) && c.String("k", "") != "" {
				if _, isString := c["k"].(string); !isString {
					t.Errorf("Int %d disagrees with Float %v for %s", n, c.Float("k", 0), doc)
				}
			}
			_ = c.String("k", "")
			_ = c.Bool("k", false)
			_ = c.Duration("k", 0)
			_ = c.Strings("k")
			_ = cloneConfig(c)
		}
		_, _ = parseConfigFlags([]string{doc})
	})
}

func TestHookHandlerTimeout(t *testing.T) {
	tests := map[time.Duration]time.Duration{
		0:                      4500 * time.Millisecond, // the default 5s
		5 * time.Second:        4500 * time.Millisecond,
		schemas.MaxHookTimeout: 29500 * time.Millisecond,
		time.Second:            900 * time.Millisecond,
		100 * time.Millisecond: 90 * time.Millisecond,
	}
	for timeout, want := range tests {
		if got := hookHandlerTimeout(timeout); got != want {
			t.Errorf("hookHandlerTimeout(%s) = %s, want %s", timeout, got, want)
		}
	}
}

func TestSlowHandlersResetsAckTimerOnlyWhenNeeded(t *testing.T) {
	p := &Plugin{opts: defaultOptions()}
	s := deliverySettings{ackWait: 30 * time.Second}
	if p.slowHandlers(s) {
		t.Fatal("fresh plugin counted as slow")
	}
	for range 100 {
		p.observeHandler(time.Millisecond)
	}
	if p.slowHandlers(s) {
		t.Fatalf("1ms handlers × %d buffered cannot eat a quarter of 30s", p.opts.eventBuffer)
	}
	for range 100 {
		p.observeHandler(time.Second)
	}
	if !p.slowHandlers(s) {
		t.Fatalf("1s handlers × %d buffered must reset the ack timer", p.opts.eventBuffer)
	}
}

// An event handler's deadline leaves the SDK time to answer for the
// delivery before the server's ack wait runs out.
func TestEventHandlerTimeout(t *testing.T) {
	for ackWait, want := range map[time.Duration]time.Duration{
		30 * time.Second:       28 * time.Second,
		time.Minute:            58 * time.Second,
		time.Second:            900 * time.Millisecond,
		100 * time.Millisecond: 90 * time.Millisecond,
	} {
		if got := (deliverySettings{ackWait: ackWait}).handlerTimeout(); got != want {
			t.Errorf("handler timeout for ack wait %s = %s, want %s", ackWait, got, want)
		}
	}
}
