package broker

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// httpHandler serves /healthz (200 once ready and connected, 503 otherwise;
// the body's second line is "role: leader" or "role: follower"), /metrics
// (Prometheus, OpenMetrics when the scraper asks for it), POST /v1/alerts
// (the alert intake, intake.go) and the ops dashboard (dashboard.go), plus
// /debug/pprof/ when Config.Pprof is set.
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
		// The second line says whether this broker leads the bus
		// (leader.go); the header says the same for probes.
		role := b.role()
		w.Header().Set("Plugbus-Role", role)
		_, _ = w.Write([]byte("ok\nrole: " + role + "\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(b.metrics.reg, promhttp.HandlerOpts{EnableOpenMetrics: true}))
	mux.Handle("POST "+IntakePath, b.intake)
	b.mountDashboard(mux)
	if b.cfg.Pprof {
		servePprof(mux)
	}
	return mux
}
