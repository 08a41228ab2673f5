package broker

import (
	"net/http"

	"github.com/plugbus/plugbus/broker/dashboard"
	"github.com/plugbus/plugbus/broker/identity"
)

// mountDashboard adds the ops dashboard (package dashboard) to the HTTP
// mux: its pages at /, /plugins, /hooks, /dead-letters and /hosts, the
// rest below /dash/. Admin logins are checked against the bus's
// authority; a broker without one serves the dashboard read-only.
func (b *Broker) mountDashboard(mux *http.ServeMux) {
	var verify dashboard.Verifier
	if b.auth != nil {
		verify = func(userJWT string) (identity.Role, error) {
			_, role, err := b.auth.Verify(userJWT)
			return role, err
		}
	}
	d, err := dashboard.New(dashboard.Config{Conn: b.nc, JetStream: b.js, Prefix: b.cfg.Prefix, Logger: b.log, Verify: verify})
	if err != nil {
		b.log.Error().Err(err).Msg("the dashboard cannot start; /healthz and /metrics are served without it")
		return
	}
	d.Register(mux)
	b.dash = d
}

// Dashboard returns the ops dashboard the broker serves on its HTTP port,
// once ready; nil when it serves no HTTP.
func (b *Broker) Dashboard() *dashboard.Dashboard { return b.dash }
