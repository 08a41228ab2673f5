package schemas_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/plugbus/plugbus/schemas"
)

func FuzzValidateManifest(f *testing.F) {
	good, err := json.Marshal(sampleManifest())
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{
		string(good),
		`{"name":"a","version":"1.0.0"}`,
		`{"name":"Bad","version":"1.0"}`,
		`{"name":"a","version":"1.0.0","events":{"types":[],"max_deliver":0,"start":"x"}}`,
		`{"name":"a","version":"1.0.0","hooks":[{"hook":"a.b","timeout":"99999999999999999999h"}]}`,
		`{"name":"a","version":"1.0.0","config_schema":{"type":"nope"}}`,
		`{"name":"a","version":"1.0.0","priority":1e400}`,
		`[]`, `null`, `"x"`, `{`, ``, `{"a":` + string(make([]byte, 0)) + `}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		err := schemas.Validate(schemas.ManifestV1, doc)
		if err == nil {
			// A valid manifest decodes, unless a number or duration is
			// out of Go's range, which Decode reports as a field error.
			var m schemas.Manifest
			if err := schemas.Decode(schemas.ManifestV1, doc, &m); err != nil && !errors.Is(err, schemas.ErrInvalidField) {
				t.Fatalf("valid manifest %q does not decode: %v", doc, err)
			}
			return
		}
		var e *schemas.Error
		if !errors.As(err, &e) {
			t.Fatalf("error %T %v is not a *schemas.Error", err, err)
		}
		switch e.Code {
		case schemas.CodeInvalidField:
			if e.Field == "" || e.Message == "" {
				t.Fatalf("invalid_field error without a field or message: %#v", e)
			}
		case schemas.CodeBadRequest:
			if e.Message == "" {
				t.Fatalf("bad_request without a message: %#v", e)
			}
		default:
			t.Fatalf("unexpected code %q: %v", e.Code, e)
		}
	})
}
