package sdk_test

import (
	"bufio"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk"
)

// A plugin's metrics: the SDK's own series, each declared action's at 0
// from the start, and the plugin's own metrics registered beside them.
// sdk.Main serves them on --metrics-addr; MetricsHandler mounts them
// anywhere else.
func ExamplePlugin_MetricsHandler() {
	p, err := sdk.New(schemas.Manifest{
		Name: "greeter", Version: "1.0.0",
		Actions: []schemas.ActionSpec{{Command: "greet", Model: "machines"}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	greetings := prometheus.NewCounter(prometheus.CounterOpts{Name: "greeter_greetings_total", Help: "Greetings sent."})
	p.MetricsRegistry().MustRegister(greetings)
	greetings.Add(2)

	rec := httptest.NewRecorder()
	p.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	sc := bufio.NewScanner(rec.Body)
	for sc.Scan() {
		if l := sc.Text(); strings.HasPrefix(l, `plugbus_sdk_handler_calls_total{kind="action"`) || strings.HasPrefix(l, "greeter_") {
			fmt.Println(l)
		}
	}
	// Output:
	// greeter_greetings_total 2
	// plugbus_sdk_handler_calls_total{kind="action",name="greet",plugin="greeter",result="error"} 0
	// plugbus_sdk_handler_calls_total{kind="action",name="greet",plugin="greeter",result="ok"} 0
}
