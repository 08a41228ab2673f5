package client

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/plugbus/plugbus/schemas"
)

// Reading the bus's streams (events, dead letters, plugin logs) as an
// admin: the broker pushes the messages into the caller's own inbox
// (schemas.APIStreamsRead), because admins hold no JetStream consumer
// permissions on the bus (docs/security.md).

// StreamMsg is one message a StreamReader delivers.
type StreamMsg struct {
	Subject string
	Header  nats.Header
	Data    []byte
	// Seq is its stream sequence and Time when the stream stored it.
	Seq  uint64
	Time time.Time
	// Pending is how many messages matching the read's filters the stream
	// held after this one when it was delivered.
	Pending uint64
}

// ErrReadGap is wrapped by StreamReader.Next when messages were lost on
// the way (the reader fell too far behind): read again from the last
// sequence seen.
var ErrReadGap = errors.New("messages were lost on the way")

// StreamReader delivers what one streams.read asked for. Want says how
// many messages the requested window holds; after those, Next goes on with
// new messages when the read follows, and blocks until ctx ends.
type StreamReader struct {
	c       *Client
	nc      *nats.Conn
	stream  string
	sub     *nats.Subscription
	resp    schemas.StreamReadResponse
	lastSeq uint64 // consumer sequence of the last message delivered
}

// ReadStream starts reading req.Stream as req says (req.Deliver is set
// here: a new inbox of the client's connection). Stop the reader when
// done; a reader that goes away without stopping leaves a consumer behind
// for a few seconds.
func (c *Client) ReadStream(ctx context.Context, req schemas.StreamReadRequest) (*StreamReader, error) {
	nc, err := c.connection(schemas.APIStreamsRead)
	if err != nil {
		return nil, err
	}
	req.Deliver = nc.NewInbox()
	// Subscribe first: the consumer pushes as soon as the broker makes it.
	sub, err := nc.SubscribeSync(req.Deliver)
	if err != nil {
		return nil, fmt.Errorf("subscribe to %s: %w", req.Deliver, err)
	}
	// Room for large windows; the consumer's flow control keeps it bounded.
	_ = sub.SetPendingLimits(1<<20, 256<<20)
	if err := nc.Flush(); err != nil {
		_ = sub.Unsubscribe()
		return nil, err
	}
	r := &StreamReader{c: c, nc: nc, stream: req.Stream, sub: sub}
	if err := c.Call(ctx, schemas.APIStreamsRead, req, &r.resp); err != nil {
		_ = sub.Unsubscribe()
		return nil, err
	}
	return r, nil
}

// Want is how many messages the requested window holds.
func (r *StreamReader) Want() uint64 { return r.resp.Want }

// Next returns the next message, answering the consumer's flow control
// and skipping its heartbeats on the way. It fails with ctx's error when
// ctx ends first, and with an error wrapping ErrReadGap when messages were
// lost.
func (r *StreamReader) Next(ctx context.Context) (*StreamMsg, error) {
	if r.resp.Consumer == "" {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	for {
		m, err := r.sub.NextMsgWithContext(ctx)
		if err != nil {
			return nil, err
		}
		if len(m.Data) == 0 && m.Header.Get("Status") == "100" {
			// Flow control asks for an answer; heartbeats carry the last
			// consumer sequence, which tells of lost messages.
			if m.Reply != "" {
				_ = m.Respond(nil)
			}
			if stalled := m.Header.Get("Nats-Consumer-Stalled"); stalled != "" {
				_ = r.nc.Publish(stalled, nil)
			}
			if last := m.Header.Get("Nats-Last-Consumer"); last != "" {
				if n, err := strconv.ParseUint(last, 10, 64); err == nil && n > r.lastSeq {
					return nil, fmt.Errorf("%w: the consumer sent up to %d, the reader got %d", ErrReadGap, n, r.lastSeq)
				}
			}
			continue
		}
		meta, err := m.Metadata()
		if err != nil {
			return nil, fmt.Errorf("a message of %s without JetStream metadata: %w", r.stream, err)
		}
		if meta.Sequence.Consumer != r.lastSeq+1 {
			return nil, fmt.Errorf("%w: got consumer sequence %d after %d", ErrReadGap, meta.Sequence.Consumer, r.lastSeq)
		}
		r.lastSeq = meta.Sequence.Consumer
		return &StreamMsg{Subject: m.Subject, Header: m.Header, Data: m.Data, Seq: meta.Sequence.Stream,
			Time: meta.Timestamp, Pending: meta.NumPending}, nil
	}
}

// Stop ends the read: no more messages, and the broker deletes the
// consumer (schemas.APIStreamsStop).
func (r *StreamReader) Stop(ctx context.Context) error {
	err := r.sub.Unsubscribe()
	if r.resp.Consumer == "" {
		return err
	}
	if serr := r.c.Call(ctx, schemas.APIStreamsStop, schemas.StreamStopRequest{Stream: r.stream, Consumer: r.resp.Consumer}, nil); serr != nil {
		return serr
	}
	return err
}

// connection returns the client's connection for endpoint.
func (c *Client) connection(endpoint string) (*nats.Conn, error) {
	if c.err != nil {
		return nil, c.err
	}
	nc := c.nc
	if c.conn != nil {
		if nc = c.conn(); nc == nil {
			return nil, fmt.Errorf("%w: %s: the plugin's client works once Run has connected (in handlers, OnShutdown, or after Ready)", ErrNotConnected, endpoint)
		}
	}
	if nc == nil {
		return nil, fmt.Errorf("%w: nil NATS connection", ErrInvalidOption)
	}
	return nc, nil
}
