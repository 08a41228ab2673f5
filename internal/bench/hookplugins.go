package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk"
)

// hookMode says how the plugins of the hook-chain measurement are built.
type hookMode struct {
	// suffix tells the mode's figures apart ("" for the SDK).
	suffix string
	desc   string
	// target bounds the time a step adds to a raw round trip (µs, p50).
	target float64
	start  func(bus *Bus, m schemas.Manifest) error
}

// Targets of the time a hook step adds (docs/performance.md): the
// broker's share alone, and with SDK plugins.
const (
	targetStepBrokerUs = 5
	targetStepSDKUs    = 10
)

var hookModes = []hookMode{
	{
		suffix: "",
		desc:   "SDK plugins (sdk.New + HandleHook returning sdk.Continue()), each on its own in-process connection",
		target: targetStepSDKUs,
		start: func(bus *Bus, m schemas.Manifest) error {
			p, err := sdk.New(m, sdk.WithPrefix(bus.Prefix), sdk.WithLogger(prodLogger()))
			if err != nil {
				return err
			}
			p.HandleHook(schemas.HookJobPreDeploy, func(context.Context, *sdk.HookRequest) (*schemas.HookResponse, error) {
				return sdk.Continue(), nil
			})
			_, err = bus.StartPlugin(p, InProcess)
			return err
		},
	},
	{
		suffix: " [micro]",
		desc:   "micro services answering the hook subject with fixed {\"outcome\":\"continue\"} bytes (no decoding): the broker's share alone",
		target: targetStepBrokerUs,
		start: func(bus *Bus, m schemas.Manifest) error {
			nc, err := bus.Connect(InProcess, m.Name)
			if err != nil {
				return err
			}
			if _, err := startFakePlugin(nc, bus.Prefix, m, continueReply); err != nil {
				return err
			}
			if err := nc.Flush(); err != nil {
				return err
			}
			_, err = register(context.Background(), nc, bus.Prefix, m)
			return err
		},
	},
}

func hookManifest(i int) schemas.Manifest {
	prio := i
	return schemas.Manifest{Name: fmt.Sprintf("hook-%02d", i), Version: "1.0.0", Description: "busbench hook step",
		Hooks: []schemas.HookSpec{{Hook: schemas.HookJobPreDeploy, Priority: &prio, Timeout: schemas.Duration(5 * time.Second)}}}
}
