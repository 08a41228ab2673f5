package broker

import (
	"bytes"
	"encoding/json"
	"maps"
	"reflect"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/nats-io/nats.go"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// The hook envelope's requests are what json.Marshal gives for the
// schemas.HookRequest: strings that need escaping, an empty and a full
// env, a payload after merge patches (whose result the broker sends as it
// is, so it must be compact too).
func TestHookEnvelopeMatchesMarshal(t *testing.T) {
	// A payload as runChain has it: encoding/json's (compact, HTML
	// characters escaped), then a merge patch's result.
	payload, err := json.Marshal(schemas.JobDeployRequest{Name: "web", Image: "nginx", Env: map[string]string{"A": "1"},
		Labels: map[string]string{"team": "x<y>&z"}})
	if err != nil {
		t.Fatal(err)
	}
	patched, err := jsonpatch.MergePatch(payload, []byte(`{"labels": {"stamp": "<01>", "team": null}, "image" : "nginx & co"}`))
	if err != nil {
		t.Fatal(err)
	}
	if canon, _ := json.Marshal(json.RawMessage(patched)); !bytes.Equal(canon, patched) {
		t.Fatalf("a merge patch's result is not as encoding/json writes it:\n%s\n%s", patched, canon)
	}
	for _, tt := range []struct {
		name                  string
		hook, chainID, object string
		step                  int
		payload               json.RawMessage
		env                   map[string]string
	}{
		{"gate", schemas.HookJobPreDeploy, "0b8f1c1e-3f5e-4a8e-9f5e-0d3c9a1f2b11", "job/web", 0, payload, nil},
		{"patched", schemas.HookJobPreDeploy, "c", "job/web", 3, patched, map[string]string{}},
		{"env", schemas.HookJobRuntimeEnv, "c", `job/we"b\<&>`, 12, payload, map[string]string{"B": "2", "A": "é\u2028<x>", "Z_9": ""}},
		{"no payload", schemas.HookAlertPreNotify, "", "alert/ünïcode", 1, nil, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h, err := newHookEnvelope(tt.hook, tt.chainID, tt.object)
			if err != nil {
				t.Fatal(err)
			}
			got, err := h.encode(tt.step, tt.payload, tt.env)
			if err != nil {
				t.Fatal(err)
			}
			want, err := json.Marshal(schemas.HookRequest{Hook: tt.hook, ChainID: tt.chainID, Object: tt.object, Step: tt.step, Payload: tt.payload, Env: tt.env})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("envelope\n%s\njson.Marshal\n%s", got, want)
			}
		})
	}
}

// decodeHookReply gives what wire.DecodeReply gives: for a plain continue
// (its shortcut), other answers, an error reply with the same body, and
// into a response already holding values.
func TestDecodeHookReplyMatches(t *testing.T) {
	errReply := wire.ReplyMsg("r", nil, schemas.Errorf(schemas.CodePluginError, "", "boom"))
	errLike := wire.ReplyMsg("r", nil, schemas.Errorf(schemas.CodePluginError, "", "boom"))
	errLike.Data = []byte(`{"outcome":"continue"}`)
	used := schemas.HookResponse{Reason: "earlier", Env: map[string]string{"A": "1"}}
	for _, msg := range []*nats.Msg{
		{Data: []byte(`{"outcome":"continue"}`)},
		{Data: []byte(` {"outcome":"continue"}`)},
		{Data: []byte(`{"outcome":"continue","patch":{"a":1}}`)},
		{Data: []byte(`{"outcome":"reject","reason":"no"}`)},
		{Data: []byte(`{}`)},
		{Data: nil},
		{Data: []byte(`{"outcome":`)},
		errReply,
		errLike,
	} {
		for _, start := range []schemas.HookResponse{{}, used} {
			got, want := start, start
			got.Env, want.Env = maps.Clone(start.Env), maps.Clone(start.Env)
			gerr, werr := decodeHookReply(msg, &got), wire.DecodeReply(msg, &want)
			if !reflect.DeepEqual(got, want) || (gerr == nil) != (werr == nil) || gerr != nil && gerr.Error() != werr.Error() {
				t.Errorf("%s %v into %+v: got %+v, %v; want %+v, %v", msg.Data, msg.Header, start, got, gerr, want, werr)
			}
		}
	}
}
