// Command incrementer is the plugbus port of Digital Rebar's sample plugin:
// it offers three actions on machines.
//
//	increment        adds incrementer/step (default 1) to the machine param
//	                 named by incrementer/parameter (default incrementer/count)
//	reset_count      sets that param back to 0; needs incrementer/touched
//	firmware-update  a long action: pretends to flash the machine's firmware
//	                 for duration (default 20s), reporting progress
//
// Both params are optional action params, so the broker fills them in from
// the machine's own params when the call does not pass them. Run it with
// `incrementer listen`; `incrementer define` prints its manifest.
package main

import (
	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk"
)

// Version is the plugin's version.
const Version = "1.0.0"

// Param names the actions use.
const (
	ParamStep      = "incrementer/step"
	ParamParameter = "incrementer/parameter"
	ParamTouched   = "incrementer/touched"
	// DefaultParameter is the machine param incremented when
	// incrementer/parameter is not set.
	DefaultParameter = "incrementer/count"
)

// Manifest returns the plugin's manifest.
func Manifest() schemas.Manifest {
	return schemas.Manifest{
		Name:        "incrementer",
		Version:     Version,
		Description: "Increments a parameter on a machine (the Digital Rebar sample plugin)",
		URL:         "https://github.com/plugbus/plugbus/tree/main/plugins/incrementer",
		Category:    "example",
		Actions: []schemas.ActionSpec{
			{
				Command:        "increment",
				Model:          "machines",
				Description:    "Add incrementer/step (default 1) to the machine param incrementer/parameter (default incrementer/count)",
				OptionalParams: []string{ParamStep, ParamParameter},
			},
			{
				Command:        "reset_count",
				Model:          "machines",
				Description:    "Set the machine param incrementer/parameter (default incrementer/count) to 0",
				RequiredParams: []string{ParamTouched},
				OptionalParams: []string{ParamParameter},
			},
			{
				Command:        "firmware-update",
				Model:          "machines",
				Description:    "Flash the machine's firmware over duration (default 20s), reporting progress (a demo: it changes nothing)",
				OptionalParams: []string{ParamDuration},
				Timeout:        schemas.Duration(UpdateTimeout),
			},
		},
	}
}

func main() {
	sdk.Main(Manifest(), Setup)
}

// Setup registers the plugin's action handlers.
func Setup(p *sdk.Plugin) error {
	inc := &Incrementer{Machines: BrokerMachines{Bus: p.Client()}}
	p.HandleAction("increment", inc.Increment)
	p.HandleAction("reset_count", inc.ResetCount)
	p.HandleAction("firmware-update", inc.FirmwareUpdate(p.Progress))
	return nil
}
