package broker

import (
	"bytes"
	"encoding/json"
	"strconv"

	"github.com/nats-io/nats.go"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// hookEnvelope encodes the requests of one chain run's steps. What every
// step's request shares (the hook point, the chain id, the object) is
// encoded once per run; each step appends its position, the payload as it
// stands and the env collected so far. The bytes are those json.Marshal
// gives for the schemas.HookRequest (TestHookEnvelopeMatchesMarshal) when
// the payload is as encoding/json writes it (compact, HTML characters
// escaped), which the broker's payloads are (its own encoding, or a merge
// patch's result); encoding/json would otherwise re-validate, escape and
// copy the payload again on every step.
type hookEnvelope struct {
	head []byte
}

func newHookEnvelope(hook, chainID, object string) (hookEnvelope, error) {
	head := make([]byte, 0, 64+len(hook)+len(chainID)+len(object))
	for _, f := range []struct{ key, v string }{{`{"hook":`, hook}, {`,"chain_id":`, chainID}, {`,"object":`, object}} {
		q, err := json.Marshal(f.v)
		if err != nil {
			return hookEnvelope{}, err
		}
		head = append(append(head, f.key...), q...)
	}
	return hookEnvelope{head: append(head, `,"step":`...)}, nil
}

// encode returns step's request.
func (h hookEnvelope) encode(step int, payload json.RawMessage, env map[string]string) ([]byte, error) {
	var envJSON []byte
	if len(env) > 0 {
		var err error
		if envJSON, err = json.Marshal(env); err != nil {
			return nil, err
		}
	}
	out := make([]byte, 0, len(h.head)+len(payload)+len(envJSON)+32)
	out = strconv.AppendInt(append(out, h.head...), int64(step), 10)
	out = append(out, `,"payload":`...)
	if len(payload) == 0 {
		out = append(out, "null"...)
	} else {
		out = append(out, payload...)
	}
	if envJSON != nil {
		out = append(append(out, `,"env":`...), envJSON...)
	}
	return append(out, '}'), nil
}

// plainContinue is the answer most steps give, a plain continue, as
// encoding/json writes it (what sdk.Continue() and the examples send).
var plainContinue = []byte(`{"outcome":"continue"}`)

// decodeHookReply decodes a step's reply as wire.DecodeReply does
// (TestDecodeHookReplyMatches), without decoding a plain continue.
func decodeHookReply(msg *nats.Msg, resp *schemas.HookResponse) error {
	if bytes.Equal(msg.Data, plainContinue) && msg.Header.Get(schemas.HeaderErrorCode) == "" {
		resp.Outcome = schemas.HookContinue
		return nil
	}
	return wire.DecodeReply(msg, resp)
}
