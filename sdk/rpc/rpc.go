// Package rpc is the request/reply convention every plugbus subject follows:
// JSON bodies, and errors as a schemas.Error body with the error code and
// message in the NATS micro error headers (Nats-Service-Error-Code,
// Nats-Service-Error). Broker, SDK and busctl all speak through it.
package rpc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/plugbus/plugbus/schemas"
)

// Call sends req as JSON to subject and decodes the reply into resp (which
// may be nil). An error reply comes back as a *schemas.Error, so
// errors.Is(err, schemas.ErrNotFound) works; no responder and timeouts are
// reported as schemas.ErrNoResponders and schemas.ErrTimeout with a message
// that says what to check.
func Call(ctx context.Context, nc *nats.Conn, subject string, req, resp any) error {
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encode request for %s: %w", subject, err)
	}
	msg, err := nc.RequestWithContext(ctx, subject, body)
	if err != nil {
		return TransportError(subject, err)
	}
	return DecodeReply(msg, resp)
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

// Respond answers a micro request: with err as an error reply when err is
// not nil (any error that is not a *schemas.Error becomes CodeInternal),
// otherwise with resp as JSON.
func Respond(req micro.Request, resp any, err error) error {
	if err != nil {
		return RespondError(req, err)
	}
	body, merr := json.Marshal(resp)
	if merr != nil {
		return RespondError(req, fmt.Errorf("encode reply: %w", merr))
	}
	return req.Respond(body)
}

// RespondError sends err as an error reply.
func RespondError(req micro.Request, err error) error {
	e := schemas.AsError(err)
	body, _ := json.Marshal(e)
	return req.Error(e.Code, e.Message, body)
}

// ReplyMsg builds the reply to a request on subject reply: an error reply
// (error headers plus a schemas.Error body) when err is not nil, otherwise
// resp as JSON. Use it with nats.Conn.PublishMsg to answer a request from
// another goroutine than the one that received it (micro.Request is not
// safe for that).
func ReplyMsg(reply string, resp any, err error) *nats.Msg {
	msg := &nats.Msg{Subject: reply, Header: nats.Header{}}
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
	msg.Header.Set(schemas.HeaderError, e.Message)
	msg.Header.Set(schemas.HeaderErrorCode, e.Code)
	return msg
}
