package tracing_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/plugbus/plugbus/internal/tracing"
	"github.com/plugbus/plugbus/internal/tracing/otlptest"
	"github.com/plugbus/plugbus/wire"
)

func clearEnv(t *testing.T) {
	for _, k := range []string{tracing.EnvEndpoint, tracing.EnvTracesEndpoint, tracing.EnvProtocol, tracing.EnvTracesProtocol,
		tracing.EnvSDKDisabled, tracing.EnvTracesExporter, "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"} {
		t.Setenv(k, "")
	}
}

func TestEnabled(t *testing.T) {
	cases := []struct {
		env  map[string]string
		want bool
	}{
		{map[string]string{}, false},
		{map[string]string{tracing.EnvEndpoint: "http://127.0.0.1:4318"}, true},
		{map[string]string{tracing.EnvTracesEndpoint: "http://127.0.0.1:4318/v1/traces"}, true},
		{map[string]string{tracing.EnvEndpoint: "http://x", tracing.EnvSDKDisabled: "true"}, false},
		{map[string]string{tracing.EnvEndpoint: "http://x", tracing.EnvTracesExporter: "none"}, false},
	}
	for _, c := range cases {
		if got := tracing.Enabled(func(k string) string { return c.env[k] }); got != c.want {
			t.Errorf("Enabled(%v) = %v, want %v", c.env, got, c.want)
		}
	}
}

func TestSetupOff(t *testing.T) {
	clearEnv(t)
	tp, shutdown, err := tracing.Setup(context.Background(), "test", "0.0.0", nil)
	if err != nil || tp != nil {
		t.Fatalf("Setup with no endpoint: %v, %v; want tracing off (nil provider)", tp, err)
	}
	if err := shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestSetupRefusesGRPC(t *testing.T) {
	clearEnv(t)
	t.Setenv(tracing.EnvEndpoint, "http://127.0.0.1:4317")
	t.Setenv(tracing.EnvProtocol, "grpc")
	if _, _, err := tracing.Setup(context.Background(), "test", "0.0.0", nil); !errors.Is(err, tracing.ErrUnsupported) {
		t.Fatalf("grpc: %v, want ErrUnsupported", err)
	}
}

// TestSetupExports: with OTEL_EXPORTER_OTLP_ENDPOINT set, spans reach a
// real OTLP/HTTP receiver, protobuf and JSON, named after the process or
// OTEL_SERVICE_NAME.
func TestSetupExports(t *testing.T) {
	for _, c := range []struct{ protocol, service, want string }{
		{"", "", "plugbus-test"},
		{"http/json", "renamed", "renamed"},
	} {
		t.Run("protocol="+c.protocol, func(t *testing.T) {
			clearEnv(t)
			rcv := otlptest.Start(t)
			t.Setenv(tracing.EnvEndpoint, rcv.URL())
			t.Setenv(tracing.EnvProtocol, c.protocol)
			t.Setenv("OTEL_SERVICE_NAME", c.service)
			tp, shutdown, err := tracing.Setup(context.Background(), "plugbus-test", "1.2.3", func(err error) { t.Errorf("tracing: %v", err) })
			if err != nil || tp == nil {
				t.Fatalf("Setup: %v, %v", tp, err)
			}
			_, span := wire.NewTracer(tp).Start(context.Background(), trace.SpanKindServer, "api", "jobs.deploy")
			span.End()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			spans := rcv.Spans()
			if len(spans) != 1 || spans[0].Name != "api jobs.deploy" || spans[0].Service != c.want ||
				spans[0].TraceID != span.SpanContext().TraceID().String() || spans[0].Kind != "SPAN_KIND_SERVER" {
				t.Fatalf("received %+v", spans)
			}
		})
	}
}
