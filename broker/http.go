package broker

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// httpHandler serves /healthz (200 once ready and connected, 503 otherwise),
// /metrics (Prometheus, OpenMetrics when the scraper asks for it), POST
// /v1/alerts (the alert intake, intake.go) and the ops dashboard
// (dashboard.go), plus /debug/pprof/ when Config.Pprof is set.
func (b *Broker) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		select {
		case <-b.ready:
		default:
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		if !b.nc.IsConnected() {
			http.Error(w, "not connected to NATS", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(b.metrics.reg, promhttp.HandlerOpts{EnableOpenMetrics: true}))
	mux.Handle("POST "+IntakePath, b.intake)
	b.mountDashboard(mux)
	if b.cfg.Pprof {
		servePprof(mux)
	}
	return mux
}
