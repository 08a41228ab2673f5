package sdk_test

import (
	"fmt"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk"
)

// A handler tells a replayed event by its mark; its id is the original.
func ExampleReplayOf() {
	e := event.New()
	e.SetID("4cejl63OeNS5OA1UsTykaT")
	fmt.Printf("new: %q\n", sdk.ReplayOf(e))
	// What the SDK sets on an event a replay redelivers.
	e.SetExtension(schemas.ExtensionReplay, "6o6ao4c5qLX61AxS7leCjh")
	fmt.Printf("replayed by %s, id %s\n", sdk.ReplayOf(e), e.ID())
	// Output:
	// new: ""
	// replayed by 6o6ao4c5qLX61AxS7leCjh, id 4cejl63OeNS5OA1UsTykaT
}
