package wire

// This file is the request/reply convention every plugbus subject follows:
// JSON bodies, errors as a schemas.Error body with the error code and
// message in the NATS micro error headers (Nats-Service-Error-Code,
// Nats-Service-Error), and the caller's deadline in HeaderTimeout.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/plugbus/plugbus/schemas"
)

// Call sends req as JSON to subject and decodes the reply into resp (which
// may be nil). An error reply comes back as a *schemas.Error, so
// errors.Is(err, schemas.ErrNotFound) works; no responder and timeouts are
// reported as schemas.ErrNoResponders and schemas.ErrTimeout with a message
// that says what to check.
func Call(ctx context.Context, nc *nats.Conn, subject string, req, resp any) error {
	return CallHeader(ctx, nc, subject, nil, req, resp)
}

// CallHeader is Call with headers on the request (such as
// HeaderIdempotencyKey). Both carry the span context of ctx, when it has
// one, in HeaderTraceparent and HeaderTracestate.
func CallHeader(ctx context.Context, nc *nats.Conn, subject string, hdr nats.Header, req, resp any) error {
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encode request for %s: %w", subject, err)
	}
	return CallBody(ctx, nc, subject, hdr, body, resp)
}

// CallBody is CallHeader with the request already encoded: body must be
// the request's JSON.
func CallBody(ctx context.Context, nc *nats.Conn, subject string, hdr nats.Header, body []byte, resp any) error {
	msg, err := RequestBody(ctx, nc, subject, hdr, body)
	if err != nil {
		return err
	}
	return DecodeReply(msg, resp)
}

// RequestBody sends an encoded request as CallBody does and returns the
// reply undecoded (DecodeReply decodes it).
func RequestBody(ctx context.Context, nc *nats.Conn, subject string, hdr nats.Header, body []byte) (*nats.Msg, error) {
	out := &nats.Msg{Subject: subject, Data: body}
	if len(hdr) > 0 {
		out.Header = nats.Header{}
		for k, v := range hdr {
			out.Header[k] = append([]string(nil), v...)
		}
	}
	SetTimeout(out, ctx)
	out.Header = InjectTrace(ctx, out.Header)
	msg, err := nc.RequestMsgWithContext(ctx, out)
	if err != nil {
		// A caller that cancels ctx with a *schemas.Error as the cause
		// (such as the NATS server refusing the publish) gets that error.
		var cause *schemas.Error
		if errors.As(context.Cause(ctx), &cause) {
			return nil, cause
		}
		return nil, TransportError(subject, err)
	}
	return msg, nil
}

// TransportError turns a nats request error into a *schemas.Error with a
// code and a message that says what to do.
func TransportError(subject string, err error) error {
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return &schemas.Error{Code: schemas.CodeNoResponders,
			Message: fmt.Sprintf("nothing answers on %s: is the broker (or plugin) running and connected to this NATS server?", subject)}
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return &schemas.Error{Code: schemas.CodeTimeout,
			Message: fmt.Sprintf("no reply on %s in time: the responder is slow or stuck; retry or raise the timeout", subject)}
	case errors.Is(err, nats.ErrMaxPayload):
		return &schemas.Error{Code: schemas.CodeTooLarge,
			Message: fmt.Sprintf("request to %s exceeds the server's max payload: send less data", subject)}
	default:
		return fmt.Errorf("request %s: %w", subject, err)
	}
}

// DecodeReply decodes a reply message into resp, or returns the
// *schemas.Error it carries.
func DecodeReply(msg *nats.Msg, resp any) error {
	if code := msg.Header.Get(schemas.HeaderErrorCode); code != "" {
		e := &schemas.Error{}
		if err := json.Unmarshal(msg.Data, e); err != nil || e.Code == "" {
			e = &schemas.Error{Code: code, Message: msg.Header.Get(schemas.HeaderError)}
		}
		return e
	}
	if resp == nil || len(msg.Data) == 0 {
		return nil
	}
	if err := json.Unmarshal(msg.Data, resp); err != nil {
		return fmt.Errorf("decode reply from %s: %w", msg.Subject, err)
	}
	return nil
}

// ReplyMsg builds the reply to a request on subject reply: an error reply
// (error headers plus a schemas.Error body) when err is not nil, otherwise
// resp as JSON. Service handlers answer with Request.Reply, which builds
// its message with ReplyMsg; use it directly to answer a request received
// outside a Service.
func ReplyMsg(reply string, resp any, err error) *nats.Msg {
	msg := &nats.Msg{Subject: reply}
	if err == nil {
		body, merr := json.Marshal(resp)
		if merr == nil {
			msg.Data = body
			return msg
		}
		err = fmt.Errorf("encode reply: %w", merr)
	}
	e := schemas.AsError(err)
	body, merr := json.Marshal(e)
	if merr != nil {
		// Details that cannot be encoded must not cost the error itself.
		bare := *e
		bare.Details = nil
		body, _ = json.Marshal(&bare)
	}
	msg.Data = body
	msg.Header = nats.Header{}
	msg.Header.Set(schemas.HeaderError, e.Message)
	msg.Header.Set(schemas.HeaderErrorCode, e.Code)
	return msg
}

// HeaderIdempotencyKey carries a caller's idempotency key on a mutating
// broker API request: a repeat with the same key within the broker's
// idempotency window gets the first reply and changes nothing (the name of
// the IETF draft's HTTP header). The broker sends it on every hook step
// request too, set to the step's key (schemas.StepKey: the chain id and
// the step's position): a step sent again after a broker crash carries the
// same key, so a plugin can tell a repeat (sdk.HookAnswers).
const HeaderIdempotencyKey = "Idempotency-Key"

// HeaderTimeout carries how long the caller will wait for the reply, in
// milliseconds, so the deadline travels with the request: a Service gives
// its handler a context that ends then, and whatever the handler calls in
// turn inherits it. It is a duration, not a time, so clocks need not agree.
const HeaderTimeout = "Plugbus-Timeout"

// SetTimeout puts the time left before ctx's deadline in msg's
// HeaderTimeout; without a deadline it does nothing.
func SetTimeout(msg *nats.Msg, ctx context.Context) {
	dl, ok := ctx.Deadline()
	if !ok {
		return
	}
	left := time.Until(dl).Milliseconds()
	if left < 1 {
		left = 1
	}
	if msg.Header == nil {
		msg.Header = nats.Header{}
	}
	msg.Header[HeaderTimeout] = []string{strconv.FormatInt(left, 10)}
}

// Timeout reads HeaderTimeout from h; ok is false when it is absent or
// malformed.
func Timeout(h nats.Header) (d time.Duration, ok bool) {
	v := h.Get(HeaderTimeout)
	if v == "" {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return 0, false
	}
	return time.Duration(n) * time.Millisecond, true
}
