package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk/client"
)

// These examples need a running broker (`make run`), so they compile but do
// not run as tests.

func Example() {
	nc, err := nats.Connect(nats.DefaultURL)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()

	c := client.New(nc)
	plugins, err := c.ListPlugins(context.Background(), "")
	if errors.Is(err, schemas.ErrNoResponders) {
		log.Fatal("is the broker running? start it with `make run`")
	}
	if err != nil {
		log.Fatal(err)
	}
	for _, p := range plugins {
		fmt.Println(p.Name, p.Version, p.State)
	}
}

func ExampleNew() {
	nc, err := nats.Connect(nats.DefaultURL)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()

	// A bus under another subject prefix, with calls bounded at 3s when the
	// context has no deadline of its own.
	c := client.New(nc, client.WithPrefix("staging"), client.WithTimeout(3*time.Second))
	fmt.Println(c.Prefix())
}

func ExampleClient_DeployJob() {
	nc, err := nats.Connect(nats.DefaultURL)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()

	res, err := client.New(nc).DeployJob(context.Background(), schemas.JobDeployRequest{
		Name:    "web",
		Version: "1.2.0",
		Image:   "nginx:1.27",
		Env:     map[string]string{"LOG_LEVEL": "debug"},
	})
	var rejected *schemas.Error
	if errors.As(err, &rejected) && rejected.Code == schemas.CodeRejected {
		log.Fatalf("a hook refused the deploy: %s", rejected.Message)
	}
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("deployed", res.Job.Name, res.Job.Version, "event", res.EventID)
}

func ExampleClient_MachineAction() {
	nc, err := nats.Connect(nats.DefaultURL)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()

	res, err := client.New(nc).MachineAction(context.Background(), schemas.MachineActionRequest{
		Machine: "m1",
		Command: "increment",
		Params:  map[string]any{"incrementer/touched": 1},
	})
	var e *schemas.Error
	if errors.As(err, &e) && e.Code == schemas.CodeMissingParam {
		log.Fatalf("pass %s", e.Field)
	}
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s answered: %s\n", res.Plugin, res.Result)
}

func ExampleClient_ConfigPlugin() {
	nc, err := nats.Connect(nats.DefaultURL)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()

	rec, err := client.New(nc).ConfigPlugin(context.Background(), "incrementer", map[string]any{"step": 2})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(rec.Config)
}

func ExampleClient_Call() {
	nc, err := nats.Connect(nats.DefaultURL)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()

	// Call reaches any endpoint, here with the reply kept as raw JSON.
	var raw map[string]any
	err = client.New(nc).Call(context.Background(), schemas.APIMachinesGet, schemas.MachineRef{Name: "m1"}, &raw)
	if errors.Is(err, schemas.ErrNotFound) {
		fmt.Println("no machine m1")
		return
	}
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(raw["params"])
}

func ExampleClient_ListHosts() {
	nc, err := nats.Connect(nats.DefaultURL)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()

	// The hosts whose hostd stopped reporting, and what they were running.
	hosts, err := client.New(nc).ListHosts(context.Background(), schemas.HostLost)
	if err != nil {
		log.Fatal(err)
	}
	for _, h := range hosts {
		fmt.Println(h.Name, "last heartbeat", h.HeartbeatAt.Format(time.RFC3339))
		for _, in := range h.Plugins {
			fmt.Printf("  %s/%s was %s\n", in.Plugin, in.Instance, in.State)
		}
	}
}

func ExampleClient_DisablePlugin() {
	nc, err := nats.Connect(nats.DefaultURL)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()

	res, err := client.New(nc).DisablePlugin(context.Background(), "incrementer", "laptop")
	if errors.Is(err, schemas.ErrNotFound) {
		log.Fatal("host laptop has never reported: is its hostd running?")
	}
	if err != nil {
		log.Fatal(err)
	}
	// The override is stored; the host's hostd stops the plugin when it
	// sees it.
	for _, c := range res.Controls {
		fmt.Println("disabled", c.Plugin, "on", c.Host)
	}
}

func ExampleClient_RestartPlugin() {
	nc, err := nats.Connect(nats.DefaultURL)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()

	// No host: every host that runs incrementer restarts its instances.
	res, err := client.New(nc).RestartPlugin(context.Background(), "incrementer", "")
	if err != nil {
		log.Fatal(err)
	}
	for _, c := range res.Controls {
		fmt.Println("restart requested on", c.Host)
	}
}
