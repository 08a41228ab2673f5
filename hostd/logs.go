package hostd

import (
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/plugbus/plugbus/hostd/supervisor"
	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// Logs of the plugins hostd runs go two ways: re-logged by hostd with the
// plugin, instance and host fields (the child's level and fields kept),
// and published, rate-limited, on <prefix>.log.<host>.<plugin>.<instance>
// into the stream PLUGBUS_LOGS, which `busctl plugins logs` reads. They
// are not CloudEvents in PLUGBUS_EVENTS on purpose: log lines are many,
// each worth little, and must not share the events' retention or wake
// the plugins that consume events; their own stream is bounded by age and
// size (broker --log-max-age, --log-max-bytes).

// lines returns the line handler of one instance.
func (d *Daemon) lines(cfg Config, plugin, instance string) func(supervisor.Line) {
	relog := supervisor.Relog(d.opts.Logger, plugin, instance, cfg.Host)
	pub := &logPublisher{
		d: d, subject: wire.LogSubject(cfg.Prefix, cfg.Host, plugin, instance),
		host: cfg.Host, plugin: plugin, instance: instance,
		limit: rate.NewLimiter(rate.Limit(cfg.LogRate), 2*cfg.LogRate),
	}
	return func(l supervisor.Line) {
		relog(l)
		pub.publish(l)
	}
}

// dropReportDelay bounds how long a count of dropped lines waits for the
// next line let through before it is published on its own.
const dropReportDelay = time.Second

// logPublisher publishes one instance's lines, dropping what exceeds the
// rate and saying how many it dropped with the next line it lets through,
// or after dropReportDelay when no line comes.
type logPublisher struct {
	d                      *Daemon
	subject                string
	host, plugin, instance string
	limit                  *rate.Limiter
	mu                     sync.Mutex
	dropped                int
	droppedStream          string
	report                 *time.Timer
}

func (p *logPublisher) publish(l supervisor.Line) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.limit.Allow() {
		p.dropped++
		p.droppedStream = string(l.Stream)
		if p.report == nil {
			p.report = time.AfterFunc(dropReportDelay, p.reportDropped)
		}
		return
	}
	p.sendDropped()
	p.send(schemas.LogRecord{Time: l.Time.UTC(), Level: l.Level.String(), Message: l.Message, Fields: l.Fields,
		Stream: string(l.Stream), Host: p.host, Plugin: p.plugin, Instance: p.instance, Truncated: l.Truncated})
}

// reportDropped publishes the count of dropped lines when no line let
// through did.
func (p *logPublisher) reportDropped() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sendDropped()
}

// sendDropped publishes the count of lines dropped since the last report,
// if any. p.mu is held.
func (p *logPublisher) sendDropped() {
	if p.report != nil {
		p.report.Stop()
		p.report = nil
	}
	if p.dropped == 0 {
		return
	}
	p.send(schemas.LogRecord{Time: time.Now().UTC(), Level: "warn", Stream: p.droppedStream,
		Message: fmt.Sprintf("hostd dropped %d log lines over the rate limit of %.0f lines/s", p.dropped, float64(p.limit.Limit())),
		Host:    p.host, Plugin: p.plugin, Instance: p.instance, Dropped: p.dropped})
	p.dropped = 0
}

func (p *logPublisher) send(r schemas.LogRecord) {
	if r.Level == "" || r.Level == "???" {
		r.Level = "info"
	}
	body, err := json.Marshal(r)
	if err != nil {
		return
	}
	if nc := p.d.nc; nc != nil {
		_ = nc.Publish(p.subject, body)
	}
}
