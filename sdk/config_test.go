package sdk_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk"
)

// decoded returns a config as it arrives from the wire (JSON types).
func decoded(t *testing.T, doc string) sdk.Config {
	t.Helper()
	var c sdk.Config
	if err := json.Unmarshal([]byte(doc), &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestConfigGetters(t *testing.T) {
	c := decoded(t, `{"s":"x","n":3,"f":1.5,"big":1e30,"ns":"42","b":true,"bs":"false","d":"1m30s","dn":2,
		"list":["a","b"],"csv":"a, b,,c","mixed":["a",1],"obj":{"k":1},"null":null}`)
	tests := []struct {
		name string
		got  any
		want any
	}{
		{"string", c.String("s", "def"), "x"},
		{"string from number", c.String("n", "def"), "3"},
		{"string from bool", c.String("b", "def"), "true"},
		{"string missing", c.String("missing", "def"), "def"},
		{"string null", c.String("null", "def"), "def"},
		{"string from object", c.String("obj", "def"), "def"},
		{"int", c.Int("n", 7), 3},
		{"int from string", c.Int("ns", 7), 42},
		{"int fraction", c.Int("f", 7), 7},
		{"int overflow", c.Int("big", 7), 7},
		{"int from word", c.Int("s", 7), 7},
		{"int missing", c.Int("missing", 7), 7},
		{"float", c.Float("f", 0), 1.5},
		{"bool", c.Bool("b", false), true},
		{"bool from string", c.Bool("bs", true), false},
		{"bool from word", c.Bool("s", true), true},
		{"duration", c.Duration("d", 0), 90 * time.Second},
		{"duration seconds", c.Duration("dn", 0), 2 * time.Second},
		{"duration bad", c.Duration("s", time.Minute), time.Minute},
		{"strings", c.Strings("list"), []string{"a", "b"}},
		{"strings csv", c.Strings("csv"), []string{"a", "b", "c"}},
		{"strings mixed", c.Strings("mixed"), []string(nil)},
		{"strings missing", c.Strings("missing"), []string(nil)},
		{"has", c.Has("s"), true},
		{"has null", c.Has("null"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !reflect.DeepEqual(tt.got, tt.want) {
				t.Errorf("got %#v, want %#v", tt.got, tt.want)
			}
		})
	}
}

func TestConfigDecode(t *testing.T) {
	var v struct {
		URL     string   `json:"url"`
		Retries int      `json:"retries"`
		Tags    []string `json:"tags"`
	}
	if err := decoded(t, `{"url":"http://x","retries":2,"tags":["a"]}`).Decode(&v); err != nil {
		t.Fatal(err)
	}
	if v.URL != "http://x" || v.Retries != 2 || len(v.Tags) != 1 {
		t.Errorf("decoded %+v", v)
	}
	if err := decoded(t, `{"retries":"two"}`).Decode(&v); err == nil {
		t.Error("decoding a string into an int did not fail")
	}
}

func TestActionGetters(t *testing.T) {
	var req schemas.ActionRequest
	if err := json.Unmarshal([]byte(`{"command":"c","params":{"n":2,"f":2.5,"s":"x","b":"yes","l":["a"],"null":null}}`), &req); err != nil {
		t.Fatal(err)
	}
	a := &sdk.Action{ActionRequest: req}
	tests := []struct {
		name    string
		call    func() (any, error)
		want    any
		wantErr bool
	}{
		{"int", func() (any, error) { return a.Int("n", 0) }, 2, false},
		{"int default", func() (any, error) { return a.Int("missing", 9) }, 9, false},
		{"int null is default", func() (any, error) { return a.Int("null", 9) }, 9, false},
		{"int fraction", func() (any, error) { return a.Int("f", 9) }, 9, true},
		{"int word", func() (any, error) { return a.Int("s", 9) }, 9, true},
		{"float", func() (any, error) { return a.Float("f", 0) }, 2.5, false},
		{"string", func() (any, error) { return a.String("s", "") }, "x", false},
		{"string from list", func() (any, error) { return a.String("l", "d") }, "d", true},
		{"bool word", func() (any, error) { return a.Bool("b", false) }, false, true},
		{"strings", func() (any, error) { return a.Strings("l") }, []string{"a"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.call()
			if tt.wantErr {
				if !errors.Is(err, schemas.ErrInvalidField) {
					t.Fatalf("error = %v, want invalid_field", err)
				}
				var se *schemas.Error
				if errors.As(err, &se); se.Field == "" {
					t.Errorf("error %v names no field", err)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
		})
	}
	var dst []string
	if err := a.Decode("l", &dst); err != nil || len(dst) != 1 {
		t.Errorf("Decode = %v, %v", dst, err)
	}
	if err := a.Decode("n", &dst); !errors.Is(err, schemas.ErrInvalidField) {
		t.Errorf("Decode of a number into []string: %v", err)
	}
}

func TestErrors(t *testing.T) {
	base := errors.New("down")
	tests := []struct {
		name      string
		err       error
		permanent bool
		delay     time.Duration
		retry     bool
		msg       string
	}{
		{name: "nil permanent", err: sdk.Permanent(nil)},
		{name: "permanent", err: sdk.Permanent(base), permanent: true, msg: "down"},
		{name: "wrapped permanent", err: errors.Join(errors.New("ctx"), sdk.Permanent(base)), permanent: true, msg: "ctx\ndown"},
		{name: "retry after", err: sdk.RetryAfter(time.Second, base), delay: time.Second, retry: true, msg: "retry after 1s: down"},
		{name: "retry after without cause", err: sdk.RetryAfter(-time.Second, nil), retry: true, msg: "retry after 0s"},
		{name: "plain", err: base, msg: "down"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.msg == "" {
				if tt.err != nil {
					t.Fatalf("got %v, want nil", tt.err)
				}
				return
			}
			if tt.err.Error() != tt.msg {
				t.Errorf("message %q, want %q", tt.err, tt.msg)
			}
			if sdk.IsPermanent(tt.err) != tt.permanent {
				t.Errorf("IsPermanent = %v", !tt.permanent)
			}
			d, ok := sdk.RetryDelay(tt.err)
			if ok != tt.retry || d != tt.delay {
				t.Errorf("RetryDelay = %s, %v", d, ok)
			}
			if tt.msg != "retry after 0s" && !errors.Is(tt.err, base) {
				t.Error("cause is not unwrapped")
			}
		})
	}
}
