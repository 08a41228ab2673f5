package schemas_test

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/plugbus/plugbus/schemas"
)

func ExampleValidate() {
	manifest := []byte(`{
		"name": "incrementer",
		"version": "1.2.0",
		"events": {"types": ["io.plugbus.machine.v1.*"], "ack_wait": "30s", "max_deliver": 5},
		"actions": [{"command": "increment", "model": "machines", "required_params": ["incrementer/parameter"]}]
	}`)
	fmt.Println(schemas.Validate(schemas.ManifestV1, manifest))

	err := schemas.Validate(schemas.ManifestV1, []byte(`{"name": "Incrementer", "version": "1.2.0"}`))
	var e *schemas.Error
	if errors.As(err, &e) {
		fmt.Println(e.Code, e.Field)
		fmt.Println(e.Message)
	}
	fmt.Println(errors.Is(err, schemas.ErrInvalidField))
	// Output:
	// <nil>
	// invalid_field name
	// field "name": must be lower-case letters, digits and dashes, starting with a letter (at most 63) (got "Incrementer")
	// true
}

func ExampleDecode() {
	var req schemas.JobDeployRequest
	err := schemas.Decode(schemas.APIJobDeployRequest, []byte(`{"name": "web", "version": "1", "imgae": "nginx"}`), &req)
	fmt.Println(err)

	err = schemas.Decode(schemas.APIJobDeployRequest, []byte(`{"name": "web", "version": "1", "image": "nginx:1.27"}`), &req)
	fmt.Println(err, req.Image)
	// Output:
	// invalid_field: field "imgae": is not a known field (known fields: env, image, labels, name, version) (field imgae)
	// <nil> nginx:1.27
}

func ExampleCompileConfigSchema() {
	cs, err := schemas.CompileConfigSchema(json.RawMessage(`{
		"type": "object",
		"required": ["endpoint"],
		"properties": {"step": {"type": "integer", "minimum": 1}}
	}`))
	if err != nil {
		panic(err)
	}
	fmt.Println(cs.Validate(map[string]any{"endpoint": "https://db", "step": 2}))
	fmt.Println(cs.Validate(map[string]any{"step": 2}))
	fmt.Println(cs.Validate(map[string]any{"endpoint": "https://db", "step": 0}))
	// Output:
	// <nil>
	// invalid_field: field "config.endpoint": is required (field config.endpoint)
	// invalid_field: field "config.step": must be at least 1 (got 0) (field config.step)
}
