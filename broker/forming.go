package broker

import (
	"context"
	"errors"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/plugbus/plugbus/internal/logging"
)

// JetStream API error codes a cluster answers while it is still forming:
// its nodes have not all joined the meta group yet (no suitable peers for
// an R3 placement), or the group has no leader yet.
const (
	jsErrClusterNoPeers      jetstream.ErrorCode = 10005
	jsErrClusterNotAvailable jetstream.ErrorCode = 10008
)

// clusterForming reports whether err is what a JetStream cluster answers
// while it is forming (or electing a meta leader), which passes by itself.
func clusterForming(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode == jsErrClusterNoPeers || apiErr.ErrorCode == jsErrClusterNotAvailable
	}
	// A request the meta group could not answer yet.
	return errors.Is(err, nats.ErrTimeout)
}

// whileClusterForms runs setup (creating the streams and buckets) again
// with backoff while it fails because the cluster is still forming — as
// when brokers start together with their NATS nodes — until ctx ends; any
// other error is returned at once.
func whileClusterForms(ctx context.Context, log zerolog.Logger, setup func() error) error {
	tries := 0
	_, err := backoff.Retry(ctx, func() (struct{}, error) {
		err := setup()
		if err == nil || !clusterForming(err) {
			return struct{}{}, backoff.Permanent(err)
		}
		return struct{}{}, err
	}, backoff.WithBackOff(&backoff.ExponentialBackOff{InitialInterval: 100 * time.Millisecond, RandomizationFactor: 0.2, Multiplier: 2, MaxInterval: 2 * time.Second}),
		backoff.WithMaxElapsedTime(0),
		backoff.WithNotify(func(err error, next time.Duration) {
			tries++
			if tries == 1 || tries%10 == 0 {
				log.Warn().Err(err).Dur(logging.FieldDelay, next).Msg("the NATS cluster is still forming; creating the streams and buckets again")
			}
		}))
	return err
}
