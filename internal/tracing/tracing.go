// Package tracing turns OpenTelemetry tracing on in a plugbus process (the
// broker, a plugin built with sdk.Main, busctl) when the standard
// OpenTelemetry environment asks for it, and leaves it off otherwise
// (docs/tracing.md).
//
// Tracing is on when OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set, unless OTEL_SDK_DISABLED is
// true or OTEL_TRACES_EXPORTER is none. Spans are then batched and
// exported over OTLP/HTTP (protobuf, or JSON with
// OTEL_EXPORTER_OTLP_PROTOCOL=http/json); every other OTEL_EXPORTER_OTLP_*
// variable (headers, timeout, TLS, compression), OTEL_SERVICE_NAME,
// OTEL_RESOURCE_ATTRIBUTES and OTEL_TRACES_SAMPLER are read by the
// OpenTelemetry SDK as it documents them. Off, Setup returns a nil
// provider, which plugbus takes as "start no span": no cost on any path.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// The environment variables Setup reads itself (the OpenTelemetry SDK
// reads the others).
const (
	EnvEndpoint       = "OTEL_EXPORTER_OTLP_ENDPOINT"
	EnvTracesEndpoint = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	EnvProtocol       = "OTEL_EXPORTER_OTLP_PROTOCOL"
	EnvTracesProtocol = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	EnvSDKDisabled    = "OTEL_SDK_DISABLED"
	EnvTracesExporter = "OTEL_TRACES_EXPORTER"
)

// ErrUnsupported is wrapped by Setup's error when the environment asks for
// an export plugbus does not do (OTLP over gRPC, another exporter).
var ErrUnsupported = errors.New("unsupported tracing setting")

// Enabled reports whether getenv (os.Getenv) asks for traces to be
// exported.
func Enabled(getenv func(string) string) bool {
	if strings.EqualFold(strings.TrimSpace(getenv(EnvSDKDisabled)), "true") {
		return false
	}
	if strings.EqualFold(strings.TrimSpace(getenv(EnvTracesExporter)), "none") {
		return false
	}
	return getenv(EnvEndpoint) != "" || getenv(EnvTracesEndpoint) != ""
}

// Shutdown flushes the spans not exported yet and stops exporting.
type Shutdown func(ctx context.Context) error

func noShutdown(context.Context) error { return nil }

// Setup returns the tracer provider of a process named service (the
// resource's service.name, unless OTEL_SERVICE_NAME says otherwise) at
// version: nil when the environment does not turn tracing on. When it is
// on, the provider is also made the global one (otel.SetTracerProvider)
// with the W3C Trace Context propagator, so a plugin's own instrumentation
// joins the same traces, and onError (when not nil) gets what goes wrong
// in the background, such as an export the receiver refused or could not
// be reached for (spans are dropped then; nothing else waits on them).
// Call the Shutdown before the process exits.
func Setup(ctx context.Context, service, version string, onError func(error)) (trace.TracerProvider, Shutdown, error) {
	if !Enabled(os.Getenv) {
		return nil, noShutdown, nil
	}
	if exp := strings.TrimSpace(os.Getenv(EnvTracesExporter)); exp != "" && exp != "otlp" {
		return nil, noShutdown, fmt.Errorf("%w: %s=%s: plugbus exports traces over OTLP only (otlp, or none to turn tracing off)", ErrUnsupported, EnvTracesExporter, exp)
	}
	for _, key := range []string{EnvTracesProtocol, EnvProtocol} {
		if p := strings.TrimSpace(os.Getenv(key)); p != "" {
			if p != "http/protobuf" && p != "http/json" {
				return nil, noShutdown, fmt.Errorf("%w: %s=%s: plugbus exports OTLP over HTTP only (http/protobuf or http/json, usually port 4318)", ErrUnsupported, key, p)
			}
			break
		}
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, noShutdown, fmt.Errorf("set up the OTLP trace exporter: %w", err)
	}
	res, err := resource.New(ctx,
		resource.WithTelemetrySDK(),
		resource.WithAttributes(semconv.ServiceName(service), semconv.ServiceVersion(version)),
		// The environment's OTEL_SERVICE_NAME and attributes win.
		resource.WithFromEnv(),
	)
	if err != nil && res == nil {
		_ = exp.Shutdown(ctx)
		return nil, noShutdown, fmt.Errorf("describe the traced process: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	if onError != nil {
		otel.SetErrorHandler(otel.ErrorHandlerFunc(onError))
	}
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	return tp, tp.Shutdown, nil
}
