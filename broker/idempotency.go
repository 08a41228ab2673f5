package broker

// Idempotent requests: a caller sends the header Idempotency-Key
// (wire.HeaderIdempotencyKey) with a mutating request; a repeat with the
// same key, on the same endpoint and subject, within the idempotency
// window gets the first reply and changes nothing. The key also becomes
// the operation's id (commit.go), so the events of a retried operation
// keep their ids and an operation a crash interrupted is completed, not
// done twice.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// maxIdempotencyKey bounds the header's length.
const maxIdempotencyKey = 200

// storedReply is a reply kept in the requests bucket.
type storedReply struct {
	Data   []byte              `json:"data"`
	Header map[string][]string `json:"header,omitempty"`
}

// requestKey is the requests bucket key of an idempotency key: the
// endpoint and subject (which names the caller of a scoped endpoint) make
// keys of different calls distinct.
func requestKey(endpoint, subject, key string) string {
	h := sha256.Sum256([]byte(endpoint + "\x00" + subject + "\x00" + key))
	return hex.EncodeToString(h[:16])
}

// idempotencyKey reads and checks a request's idempotency key ("" for
// none).
func idempotencyKey(h nats.Header) (string, error) {
	key := h.Get(wire.HeaderIdempotencyKey)
	if len(key) > maxIdempotencyKey {
		return "", schemas.Errorf(schemas.CodeInvalidField, wire.HeaderIdempotencyKey,
			"the %s header is %d bytes, over %d: send a shorter key (a UUID or nuid)", wire.HeaderIdempotencyKey, len(key), maxIdempotencyKey)
	}
	return key, nil
}

// lookupReply returns the reply kept for rk.
func (b *Broker) lookupReply(ctx context.Context, rk string) (*nats.Msg, bool) {
	e, err := b.st.requests.Get(ctx, rk)
	if err != nil {
		return nil, false
	}
	var sr storedReply
	if json.Unmarshal(e.Value(), &sr) != nil {
		return nil, false
	}
	return &nats.Msg{Data: sr.Data, Header: nats.Header(sr.Header)}, true
}

// keepReply stores a final reply for the window. Transient failures
// (timeouts, unavailable, internal) are not kept: a retry may succeed.
func (b *Broker) keepReply(ctx context.Context, rk string, msg *nats.Msg) {
	switch msg.Header.Get(schemas.HeaderErrorCode) {
	case schemas.CodeTimeout, schemas.CodeUnavailable, schemas.CodeInternal, schemas.CodeNoResponders:
		return
	}
	body, err := json.Marshal(storedReply{Data: msg.Data, Header: msg.Header})
	if err != nil {
		return
	}
	if _, err := b.st.requests.Put(context.WithoutCancel(ctx), rk, body); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		b.log.Warn().Err(err).Str("request", rk).Msg(fmt.Sprintf("cannot keep the reply of an idempotent request: a retry would run it again"))
	}
}
