package supervisor_test

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/rs/zerolog"

	"github.com/plugbus/plugbus/hostd/supervisor"
)

// How hostd runs one plugin instance: kill what a previous hostd left
// behind, then keep the instance running until SIGTERM, with its logs
// re-emitted and its state changes reported.
func Example() {
	log := zerolog.New(os.Stderr).With().Timestamp().Logger()
	const stateDir = "/run/plugbus/hostd"
	if killed, err := supervisor.ReapOrphans(stateDir); err != nil || len(killed) > 0 {
		log.Warn().Err(err).Ints("pids", killed).Msg("orphans reaped")
	}
	spec := supervisor.Spec{
		Plugin:   "echo",
		Instance: "1",
		Binary:   "/usr/lib/plugbus/plugins/echo",
		Env:      []string{"NATS_URL=nats://127.0.0.1:4222"},
	}
	s, err := supervisor.New(spec,
		supervisor.WithStateDir(stateDir),
		supervisor.WithLines(supervisor.Relog(log, spec.Plugin, spec.Instance, "host-a")),
		supervisor.WithOnChange(func(st supervisor.Status) {
			log.Info().Str(supervisor.FieldPlugin, st.Plugin).Str("state", string(st.State)).Int("pid", st.PID).Msg("instance state")
		}),
	)
	if err != nil {
		log.Fatal().Err(err).Msg("bad spec")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	_ = s.Run(ctx) // returns once the child is stopped
}

func ExampleRelog() {
	relog := supervisor.Relog(zerolog.New(os.Stdout), "echo", "1", "host-a")
	relog(supervisor.Line{
		Stream:  supervisor.Stderr,
		Level:   zerolog.WarnLevel,
		Message: "slow consumer",
		Fields:  map[string]any{"subject": "orders", "lag": 12},
	})
	relog(supervisor.Line{Stream: supervisor.Stdout, Level: supervisor.PlainStdoutLevel, Message: "listening on :8080"})
	// Output:
	// {"level":"warn","plugin":"echo","instance":"1","host":"host-a","stream":"stderr","lag":12,"subject":"orders","message":"slow consumer"}
	// {"level":"info","plugin":"echo","instance":"1","host":"host-a","stream":"stdout","message":"listening on :8080"}
}
