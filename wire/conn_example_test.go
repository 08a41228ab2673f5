package wire_test

import (
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/plugbus/plugbus/wire"
)

// A long-lived client of a clustered bus (a service calling the broker
// API, a custom consumer) connects with the same bound as plugbus's own
// components, so it leaves a frozen NATS node within seconds.
func ExampleStaleServerOptions() {
	opts := append([]nats.Option{nats.Name("my-service")}, wire.StaleServerOptions()...)
	nc, err := nats.Connect("nats://127.0.0.1:4222", opts...)
	if err != nil {
		fmt.Println("connect:", err)
		return
	}
	defer nc.Close()
}
