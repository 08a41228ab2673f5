package faults

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/plugbus/plugbus/schemas"
)

// apiDecoders are the broker API's request decoders: each request schema
// with the Go type the broker decodes it into.
var apiDecoders = []struct {
	schema string
	new    func() any
}{
	{schemas.APIAlertFireRequest, func() any { return new(schemas.AlertFireRequest) }},
	{schemas.APIAlertRef, func() any { return new(schemas.AlertRef) }},
	{schemas.APIJobDeployRequest, func() any { return new(schemas.JobDeployRequest) }},
	{schemas.APIJobRef, func() any { return new(schemas.JobRef) }},
	{schemas.APIMachineActionRequest, func() any { return new(schemas.MachineActionRequest) }},
	{schemas.APIMachineSetParamRequest, func() any { return new(schemas.MachineSetParamRequest) }},
	{schemas.APIPluginConfigRequest, func() any { return new(schemas.PluginConfigRequest) }},
	{schemas.APIRegisterRequest, func() any { return new(schemas.RegisterRequest) }},
	{schemas.APIHookRequest, func() any { return new(schemas.HookRequest) }},
	{schemas.APIStreamReadRequest, func() any { return new(schemas.StreamReadRequest) }},
}

// FuzzAPIRequests feeds any bytes to the API request decoders (the first
// byte picks one): every refusal is a bad_request or an invalid_field that
// names its field, and what decodes encodes again into a request its
// schema accepts (what the broker passes on — hook payloads, event data —
// stays valid).
func FuzzAPIRequests(f *testing.F) {
	for i, seed := range []string{
		`{"id":"a1","severity":"critical","summary":"disk full","labels":{"host":"m1"}}`,
		`{"id":"a1"}`,
		`{"name":"web","version":"1","image":"nginx","env":{"A":"1"},"labels":{"team":"x"}}`,
		`{"name":"web","version":"1"}`,
		`{"machine":"m1","command":"increment","params":{"incrementer/step":2}}`,
		`{"machine":"m1","param":"p","value":null}`,
		`{"name":"incrementer","set":{"step":null}}`,
		`{"manifest":{"name":"a","version":"1.0.0"}}`,
		`{"hook":"alert.pre_notify","chain_id":"c","object":"alert/a","payload":{}}`,
		`{"stream":"PLUGBUS_EVENTS","last":10,"deliver":"_INBOX.x"}`,
		`{"severity":5}`, `{"id":"a","severity":"warning","summary":"s","sevrity":"x"}`, `[]`, `null`, `{`, ``,
	} {
		f.Add(byte(i%len(apiDecoders)), []byte(seed))
	}
	f.Fuzz(func(t *testing.T, which byte, doc []byte) {
		d := apiDecoders[int(which)%len(apiDecoders)]
		v := d.new()
		err := schemas.Decode(d.schema, doc, v)
		if err != nil {
			var e *schemas.Error
			if !errors.As(err, &e) {
				t.Fatalf("%s: error %T %v is not a *schemas.Error", d.schema, err, err)
			}
			switch {
			case e.Code == schemas.CodeInvalidField && e.Field != "" && e.Message != "":
			case e.Code == schemas.CodeBadRequest && e.Message != "":
			default:
				t.Fatalf("%s: %q refused with %#v: want bad_request or invalid_field naming the field", d.schema, doc, e)
			}
			return
		}
		again, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("%s: %q decodes but does not encode: %v", d.schema, doc, err)
		}
		if err := schemas.Validate(d.schema, again); err != nil {
			t.Fatalf("%s: %q decodes into %+v, which encodes as %s, refused by the same schema: %v", d.schema, doc, v, again, err)
		}
	})
}
