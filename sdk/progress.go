package sdk

// Long-running actions (docs/protocol.md#actions). A broker that knows them
// sends action requests with Async set: the instance runs the handler and,
// when it has not returned within the accept window, answers that it
// accepted the action; it reports progress (Plugin.Progress) on
// actions.progress.NAME and, once the handler returns, the result or the
// error on actions.complete.NAME, retrying with backoff until a broker
// answers (a broker restarting loses nothing). The broker tells the
// instance when an action ends without it (an operator cancelled it, it
// ran past its timeout) on plugin.NAME.cancel, and in the answer to the
// next progress report: the handler's context is then cancelled, with the
// reason as its cause.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/cenkalti/backoff/v5"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// DefaultActionAcceptAfter is how long an action handler may run before
// the instance answers the broker that it accepted the action instead of
// answering with the result.
const DefaultActionAcceptAfter = time.Second

// Errors of Plugin.Progress.
var (
	// ErrNotInAction: the context is not an action handler's of this
	// plugin.
	ErrNotInAction = errors.New("sdk: progress reported outside an action handler (pass the handler's ctx)")
	// ErrInvalidProgress: the percentage is not between 0 and 100.
	ErrInvalidProgress = errors.New("sdk: invalid progress")
)

// maxProgressMessage bounds a progress message, in bytes (the schema's
// limit); a longer one is cut.
const maxProgressMessage = 1024

// progressSpacing is the least time between two progress reports of one
// action: the latest value is sent, the ones in between are skipped.
const progressSpacing = 100 * time.Millisecond

// reportTimeout bounds one progress or completion report.
const reportTimeout = 5 * time.Second

// Progress reports how far the action whose handler's context is ctx has
// got: percent from 0 to 100 and a short message (at most 1024 bytes; a
// longer one is cut). It does not wait for the broker: reports are sent in
// the background, the latest one first, so a handler may call it as often
// as it likes (the broker records every report it gets and publishes at
// most one io.plugbus.machine.v1.action_progress event per second per
// action). It returns ErrNotInAction for a context that is not an action
// handler's, an error wrapping ErrInvalidProgress for a percentage out of
// range, and the context's cause once the action was cancelled or timed
// out.
func (p *Plugin) Progress(ctx context.Context, percent float64, message string) error {
	run, _ := ctx.Value(actionRunKey{}).(*actionRun)
	if run == nil || run.p != p {
		return ErrNotInAction
	}
	if run.silent {
		return nil // a broker that does not take progress reports
	}
	if math.IsNaN(percent) || percent < 0 || percent > 100 {
		return fmt.Errorf("%w: percent %v is not between 0 and 100", ErrInvalidProgress, percent)
	}
	if err := run.ctx.Err(); err != nil {
		return context.Cause(run.ctx)
	}
	run.report(percent, cut(message, maxProgressMessage))
	return nil
}

// cut shortens s to at most n bytes, at a rune boundary.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

type actionRunKey struct{}

// actionRuns are the actions an instance is running, by action id.
type actionRuns struct {
	mu   sync.Mutex
	runs map[string]*actionRun
	wg   sync.WaitGroup
}

func (a *actionRuns) get(id string) *actionRun {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.runs[id]
}

// all returns the running actions.
func (a *actionRuns) all() []*actionRun {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]*actionRun, 0, len(a.runs))
	for _, r := range a.runs {
		out = append(out, r)
	}
	return out
}

// actionRun is one action an instance runs: its handler's context, its
// progress reports and its completion.
type actionRun struct {
	p      *Plugin
	id     string
	log    zerolog.Logger
	ctx    context.Context
	cancel context.CancelCauseFunc
	// done is closed when the handler has returned; result and err are
	// what it returned.
	done   chan struct{}
	result any
	err    error
	// ended is set when the broker said the action ended without us.
	ended bool
	// silent: the broker takes no reports (it did not send Async).
	silent bool

	mu     sync.Mutex
	latest schemas.ActionProgressRequest
	kick   chan struct{}
	stop   chan struct{}
	sender chan struct{} // closed when the progress sender has returned
}

// startRun registers a run for an action request and returns it, or the
// run already registered for its id (the broker called again for an
// action this instance runs) and false.
func (p *Plugin) startRun(reqCtx context.Context, in schemas.ActionRequest, log zerolog.Logger) (*actionRun, bool) {
	p.acts.mu.Lock()
	defer p.acts.mu.Unlock()
	if r := p.acts.runs[in.ActionID]; r != nil {
		return r, false
	}
	if p.acts.runs == nil {
		p.acts.runs = map[string]*actionRun{}
	}
	// The handler outlives the request: its context keeps the request's
	// values (the trace) but not its deadline, and ends at the action's.
	ctx, cancel := context.WithCancelCause(context.WithoutCancel(reqCtx))
	if in.Deadline != nil {
		var stop context.CancelFunc
		ctx, stop = context.WithDeadlineCause(ctx, *in.Deadline, &schemas.Error{Code: schemas.CodeTimeout,
			Message: fmt.Sprintf("the action ran past its timeout of %s", in.Timeout.D())})
		inner := cancel
		cancel = func(cause error) { inner(cause); stop() }
	}
	r := &actionRun{p: p, id: in.ActionID, log: log, cancel: cancel, done: make(chan struct{}),
		kick: make(chan struct{}, 1), stop: make(chan struct{}), sender: make(chan struct{})}
	r.ctx = context.WithValue(ctx, actionRunKey{}, r)
	r.latest = schemas.ActionProgressRequest{ActionID: in.ActionID, Instance: p.InstanceID()}
	p.acts.runs[in.ActionID] = r
	p.acts.wg.Add(1)
	go r.sendProgress()
	return r, true
}

// remove forgets a run.
func (p *Plugin) removeRun(r *actionRun) {
	p.acts.mu.Lock()
	if p.acts.runs[r.id] == r {
		delete(p.acts.runs, r.id)
	}
	p.acts.mu.Unlock()
	p.acts.wg.Done()
}

// end cancels the run's handler with cause: the action ended without it.
func (r *actionRun) end(cause error) {
	r.mu.Lock()
	r.ended = true
	r.mu.Unlock()
	r.cancel(cause)
}

func (r *actionRun) endedByBroker() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ended
}

func (r *actionRun) report(percent float64, message string) {
	r.mu.Lock()
	r.latest.Seq++
	r.latest.Percent, r.latest.Message = percent, message
	r.mu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// sendProgress sends the run's latest progress report whenever there is a
// new one, at most one every progressSpacing, retrying with backoff while
// no broker answers, until the handler returns; then it sends the last
// report if it is not sent yet (once: the completion report follows).
func (r *actionRun) sendProgress() {
	defer close(r.sender)
	var sent uint64
	bo := &backoff.ExponentialBackOff{InitialInterval: 100 * time.Millisecond, RandomizationFactor: 0.2, Multiplier: 2, MaxInterval: 5 * time.Second}
	for {
		select {
		case <-r.stop:
			r.flushProgress(sent)
			return
		case <-r.kick:
		}
		for {
			r.mu.Lock()
			req := r.latest
			r.mu.Unlock()
			if req.Seq <= sent {
				break
			}
			resp, err := r.sendReport(req)
			wait := progressSpacing
			switch {
			case err == nil:
				sent = req.Seq
				bo.Reset()
				if schemas.ActionFinal(resp.Status) {
					r.end(endedCause(resp))
					return
				}
			case retryableReport(err):
				wait = bo.NextBackOff()
			default:
				r.log.Warn().Err(err).Msg("the broker refused a progress report; no more are sent for this action")
				return
			}
			select {
			case <-r.stop:
				r.flushProgress(sent)
				return
			case <-time.After(wait):
			}
		}
	}
}

// flushProgress sends the last report once when it is newer than sent.
func (r *actionRun) flushProgress(sent uint64) {
	r.mu.Lock()
	req := r.latest
	r.mu.Unlock()
	if req.Seq > sent {
		if _, err := r.sendReport(req); err != nil {
			r.log.Debug().Err(err).Msg("the last progress report was not sent; the completion report follows")
		}
	}
}

func (r *actionRun) sendReport(req schemas.ActionProgressRequest) (schemas.ActionReportResponse, error) {
	var resp schemas.ActionReportResponse
	err := r.p.report(wire.PluginAPISubject(r.p.opts.prefix, schemas.APIActionsProgress, r.p.manifest.Name), req, &resp)
	return resp, err
}

// report sends one progress or completion report. While the connection
// is down it fails at once (a request would wait in the reconnect buffer
// for its whole timeout): the caller retries.
func (p *Plugin) report(subject string, req, resp any) error {
	nc := p.Conn()
	if nc == nil || nc.IsReconnecting() {
		return nats.ErrConnectionReconnecting
	}
	ctx, cancel := context.WithTimeout(context.Background(), reportTimeout)
	defer cancel()
	return wire.Call(ctx, nc, subject, req, resp)
}

// endedCause is the cause given to a handler whose action the broker
// ended without it.
func endedCause(resp schemas.ActionReportResponse) error {
	if resp.Error != nil {
		return resp.Error
	}
	return &schemas.Error{Code: schemas.CodeConflict, Message: fmt.Sprintf("the action already %s", resp.Status)}
}

// retryableReport reports whether a report may succeed later: nobody
// answers (a broker restarting), it was slow, or it failed inside.
func retryableReport(err error) bool {
	var se *schemas.Error
	if errors.As(err, &se) {
		switch se.Code {
		case schemas.CodeNoResponders, schemas.CodeTimeout, schemas.CodeInternal, schemas.CodeUnavailable:
			return true
		}
		return false
	}
	return !errors.Is(err, nats.ErrConnectionClosed) && !errors.Is(err, nats.ErrBadSubject)
}

// serveAsyncAction serves an action request from a broker that takes an
// accepted answer: the handler runs on its own, and the request is
// answered with its outcome if it ends within the accept window, else
// with accepted; then the outcome is reported on actions.complete.
func (p *Plugin) serveAsyncAction(ctx context.Context, req *wire.Request, in schemas.ActionRequest, h ActionHandler, log zerolog.Logger) {
	run, fresh := p.startRun(ctx, in, log)
	if !fresh {
		// The broker asked again (it restarted before it heard from us):
		// the action runs here already.
		log.Info().Msg("action asked for again while it runs; answering accepted")
		p.respond(req, schemas.VerbAction, schemas.ActionResponse{Accepted: true, Instance: p.InstanceID()}, nil)
		return
	}
	go func() {
		run.result, run.err = p.invoke(run.ctx, &Call{Kind: KindAction, Name: in.Command, Request: &Action{ActionRequest: in}},
			func(ctx context.Context, c *Call) (any, error) { return h(ctx, c.Request.(*Action)) })
		close(run.stop)
		<-run.sender
		close(run.done)
	}()
	timer := time.NewTimer(p.opts.actionAcceptAfter)
	defer timer.Stop()
	select {
	case <-run.done:
		defer p.removeRun(run)
		resp, err := p.actionOutcome(run)
		if err != nil {
			p.stats.actionsFailed.Add(1)
			log.Warn().Err(err).Msg("action failed")
			p.respond(req, schemas.VerbAction, nil, err)
			return
		}
		p.stats.actionsHandled.Add(1)
		log.Debug().Msg("action done")
		p.respond(req, schemas.VerbAction, resp, nil)
	case <-timer.C:
		log.Debug().Msg("action accepted; it runs on")
		p.respond(req, schemas.VerbAction, schemas.ActionResponse{Accepted: true, Instance: p.InstanceID()}, nil)
		go func() {
			defer p.removeRun(run)
			<-run.done
			p.completeRun(run)
		}()
	}
}

// actionOutcome is a finished run's answer: its encoded result, or its
// error as the broker gets it.
func (p *Plugin) actionOutcome(run *actionRun) (schemas.ActionResponse, error) {
	var resp schemas.ActionResponse
	err := run.err
	if err != nil && run.ctx.Err() != nil && errors.Is(err, run.ctx.Err()) {
		// The handler gave up because its context ended: say why.
		err = context.Cause(run.ctx)
	}
	if err == nil {
		resp.Result, err = encodeResult(run.result)
	}
	return resp, p.pluginError(err)
}

// completeRun reports an accepted action's outcome until a broker takes
// it (or the instance stops and its stop bound is over).
func (p *Plugin) completeRun(run *actionRun) {
	resp, err := p.actionOutcome(run)
	if err != nil {
		p.stats.actionsFailed.Add(1)
	} else {
		p.stats.actionsHandled.Add(1)
	}
	if run.endedByBroker() {
		run.log.Info().Err(context.Cause(run.ctx)).Msg("action ended by the broker; its handler has returned")
		return
	}
	req := schemas.ActionCompleteRequest{ActionID: run.id, Result: resp.Result, Instance: p.InstanceID()}
	if err != nil {
		req.Error = schemas.AsError(err)
	}
	subject := wire.PluginAPISubject(p.opts.prefix, schemas.APIActionsComplete, p.manifest.Name)
	log := run.log
	notified := 0 // while disconnected, one log line is enough
	for attempt := 0; ; attempt++ {
		var out schemas.ActionReportResponse
		_, rerr := backoff.Retry(p.stopping(), func() (struct{}, error) {
			err := p.report(subject, req, &out)
			if err != nil && !retryableReport(err) {
				return struct{}{}, backoff.Permanent(err)
			}
			return struct{}{}, err
		}, append(retryForever(100*time.Millisecond, 2*time.Second), backoff.WithNotify(func(err error, next time.Duration) {
			if !errors.Is(err, nats.ErrConnectionReconnecting) || notified == 0 {
				log.Warn().Err(err).Dur(FieldDelay, next).Msg("cannot report the action's completion yet; retrying")
			}
			notified++
		}))...)
		switch {
		case rerr == nil:
			ev := log.Info()
			if !out.Recorded {
				ev = log.Warn().Str(FieldState, out.Status)
			}
			ev.Bool("recorded", out.Recorded).Msg("action completion reported")
			return
		case attempt == 0 && req.Error == nil && errors.Is(rerr, schemas.ErrTooLarge):
			// The result does not fit: say so instead.
			req.Result = nil
			req.Error = &schemas.Error{Code: schemas.CodeTooLarge, Plugin: p.manifest.Name,
				Message: fmt.Sprintf("the action's result could not be reported: %v", rerr)}
			continue
		}
		log.Error().Err(rerr).Msg("the action's completion was not recorded; the broker ends it at its timeout")
		return
	}
}

// stopping returns a context that ends when the instance has stopped and
// the bound on finishing its actions' reports is over.
func (p *Plugin) stopping() context.Context {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.stopCtx == nil {
		return context.Background()
	}
	return p.stopCtx
}

// subscribeCancels subscribes to the broker's notices that an action ended
// without the instance: every instance gets them (no queue group), and
// only the one running the action answers.
func (p *Plugin) subscribeCancels(nc *nats.Conn) (*nats.Subscription, error) {
	return nc.Subscribe(wire.PluginSubject(p.opts.prefix, p.manifest.Name, schemas.VerbCancel), func(msg *nats.Msg) {
		var n schemas.ActionCancelNotice
		if err := schemas.Decode(schemas.APIActionCancelNotice, msg.Data, &n); err != nil {
			p.Logger().Warn().Err(err).Msg("malformed cancel notice ignored")
			return
		}
		run := p.acts.get(n.ActionID)
		if run == nil {
			return // another instance's, or over already
		}
		run.log.Info().Err(n.Error).Msg("the action ended without this instance; cancelling its handler")
		run.end(n.Error)
		if msg.Reply != "" {
			_ = nc.PublishMsg(wire.ReplyMsg(msg.Reply, schemas.ActionCancelNoticeResponse{Instance: p.InstanceID()}, nil))
		}
	})
}

// actionStopBound bounds how long a stopping instance waits for the
// handlers it cancelled to return and for their failures to be reported
// (no broker may be there to take them: the deadline ends those actions).
const actionStopBound = 5 * time.Second

// actionStopCause is the cause given to the handlers still running when
// the instance stops.
var actionStopCause = &schemas.Error{Code: schemas.CodeUnavailable, Message: "the plugin instance stopped during the action: run it again"}

// stopActions cancels the actions still running when the instance stops
// and waits, bounded, for their handlers to return and their completion
// (failed, unavailable) to be reported.
func (p *Plugin) stopActions(log *zerolog.Logger, bound time.Duration) {
	runs := p.acts.all()
	if len(runs) == 0 {
		return
	}
	log.Warn().Int("actions", len(runs)).Msg("stopping with actions running: cancelling them")
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	p.mu.Lock()
	p.stopCtx = ctx
	p.mu.Unlock()
	for _, r := range runs {
		r.cancel(actionStopCause)
	}
	done := make(chan struct{})
	go func() { p.acts.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		log.Warn().Msg("action handlers still running at the stop bound; stopping anyway")
	}
}
