package broker

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nuid"
	"go.opentelemetry.io/otel/trace"

	"github.com/plugbus/plugbus/internal/logging"
	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/wire"
)

// apiHandler handles one decoded, validated API request.
type apiHandler func(ctx context.Context, req any) (any, error)

// apiEndpoint describes one broker API endpoint: its name, the schema its
// request must satisfy, a constructor for the request value and the handler.
type apiEndpoint struct {
	name       string
	schema     string
	respSchema string
	// object, when set, names the object a request is about ("job/NAME");
	// requests on one object are handled one at a time in arrival order.
	object  func(data []byte) string
	newReq  func() any
	handler apiHandler
}

type callerKey struct{}

// callerName returns the name a scoped endpoint's subject carries
// (schemas.IsScoped): the server let only that identity publish it.
func callerName(ctx context.Context) string {
	s, _ := ctx.Value(callerKey{}).(string)
	return s
}

func endpoint[T any](name, schema, respSchema string, h func(ctx context.Context, req *T) (any, error)) apiEndpoint {
	return apiEndpoint{
		name:       name,
		schema:     schema,
		respSchema: respSchema,
		newReq:     func() any { return new(T) },
		handler:    func(ctx context.Context, req any) (any, error) { return h(ctx, req.(*T)) },
	}
}

// objectFields are the request fields that name an operation's object.
type objectFields struct {
	Name    string `json:"name"`
	Machine string `json:"machine"`
	ID      string `json:"id"`
}

// sequenced marks an endpoint's requests as operations on the object named
// by prefix + the value of field ("name", "machine" or "id") in the body.
func sequenced(ep apiEndpoint, prefix, field string) apiEndpoint {
	pick := map[string]func(objectFields) string{
		"name":    func(f objectFields) string { return f.Name },
		"machine": func(f objectFields) string { return f.Machine },
		"id":      func(f objectFields) string { return f.ID },
	}[field]
	ep.object = func(data []byte) string {
		var f objectFields
		if json.Unmarshal(data, &f) != nil || pick(f) == "" {
			return ""
		}
		return prefix + pick(f)
	}
	return ep
}

func (b *Broker) endpoints() []apiEndpoint {
	return []apiEndpoint{
		endpoint(schemas.APIPluginsRegister, schemas.APIRegisterRequest, schemas.APIRegisterResponse, b.handleRegister),
		endpoint(schemas.APIPluginsList, schemas.APIPluginListRequest, schemas.APIPluginListResponse, b.handlePluginList),
		endpoint(schemas.APIPluginsGet, schemas.APIPluginGetRequest, schemas.APIPluginRecord, b.handlePluginGet),
		endpoint(schemas.APIPluginsUnregister, schemas.APIPluginUnregisterRequest, schemas.APIPluginRecord, b.handlePluginUnregister),
		endpoint(schemas.APIPluginsConfig, schemas.APIPluginConfigRequest, schemas.APIPluginRecord, b.handlePluginConfig),
		sequenced(endpoint(schemas.APIJobsDeploy, schemas.APIJobDeployRequest, schemas.APIJobResponse, b.handleJobDeploy), "job/", "name"),
		sequenced(endpoint(schemas.APIJobsDelete, schemas.APIJobRef, schemas.APIJobResponse, b.handleJobDelete), "job/", "name"),
		endpoint(schemas.APIJobsList, schemas.APIJobListRequest, schemas.APIJobListResponse, b.handleJobList),
		endpoint(schemas.APIJobsGet, schemas.APIJobRef, schemas.APIJob, b.handleJobGet),
		sequenced(endpoint(schemas.APIMachinesAction, schemas.APIMachineActionRequest, schemas.APIMachineActionResponse, b.handleMachineAction), "machine/", "machine"),
		endpoint(schemas.APIMachinesGet, schemas.APIMachineRef, schemas.APIMachine, b.handleMachineGet),
		endpoint(schemas.APIMachinesList, schemas.APIMachineListRequest, schemas.APIMachineListResponse, b.handleMachineList),
		// Not sequenced: a plugin's action sets params on the machine it
		// runs on, inside the action's turn (the write is compare-and-set).
		endpoint(schemas.APIMachinesSetParam, schemas.APIMachineSetParamRequest, schemas.APIMachine, b.handleMachineSetParam),
		sequenced(endpoint(schemas.APIAlertsFire, schemas.APIAlertFireRequest, schemas.APIAlertResponse, b.handleAlertFire), "alert/", "id"),
		endpoint(schemas.APIHooksList, schemas.APIHookListRequest, schemas.APIHookListResponse, b.handleHooksList),
		endpoint(schemas.APIChainsGet, schemas.APIChainGetRequest, schemas.APIChainStatus, b.handleChainsGet),
		endpoint(schemas.APIChainsList, schemas.APIChainListRequest, schemas.APIChainListResponse, b.handleChainsList),
		sequenced(endpoint(schemas.APIAlertsResolve, schemas.APIAlertRef, schemas.APIAlertResponse, b.handleAlertResolve), "alert/", "id"),
		endpoint(schemas.APIHostsList, schemas.APIHostListRequest, schemas.APIHostListResponse, b.handleHostsList),
		endpoint(schemas.APIHostsGet, schemas.APIHostRef, schemas.APIHost, b.handleHostsGet),
		endpoint(schemas.APIPluginsEnable, schemas.APIPluginHostRequest, schemas.APIPluginHostResponse, b.handlePluginsEnable),
		endpoint(schemas.APIPluginsDisable, schemas.APIPluginHostRequest, schemas.APIPluginHostResponse, b.handlePluginsDisable),
		endpoint(schemas.APIPluginsRestart, schemas.APIPluginHostRequest, schemas.APIPluginHostResponse, b.handlePluginsRestart),
		endpoint(schemas.APIPluginsCreds, schemas.APICredsRequest, schemas.APICredsResponse, b.handlePluginsCreds),
		endpoint(schemas.APIPluginsRevoke, schemas.APICredsRequest, schemas.APIRevokeResponse, b.handlePluginsRevoke),
		endpoint(schemas.APIHostsCreds, schemas.APIHostCredsRequest, schemas.APICredsResponse, b.handleHostsCreds),
		endpoint(schemas.APIHostsRevoke, schemas.APICredsRequest, schemas.APIRevokeResponse, b.handleHostsRevoke),
		endpoint(schemas.APIHostsPluginCreds, schemas.APICredsRequest, schemas.APICredsResponse, b.handleHostsPluginCreds),
		endpoint(schemas.APIStreamsRead, schemas.APIStreamReadRequest, schemas.APIStreamReadResponse, b.handleStreamsRead),
		endpoint(schemas.APIStreamsStop, schemas.APIStreamStopRequest, schemas.APIStreamStopResponse, b.handleStreamsStop),
		endpoint(schemas.APIPluginsVerify, schemas.APIPluginGetRequest, schemas.APIPluginRecord, b.handlePluginVerify),
		endpoint(schemas.APIAlertsList, schemas.APIAlertListRequest, schemas.APIAlertListResponse, b.handleAlertsList),
		endpoint(schemas.APIAlertsGet, schemas.APIAlertRef, schemas.APIAlert, b.handleAlertsGet),
		endpoint(schemas.APIEventsGet, schemas.APIEventGetRequest, schemas.APIStoredMessage, b.handleEventsGet),
		endpoint(schemas.APIDLQList, schemas.APIDLQListRequest, schemas.APIDLQListResponse, b.handleDLQList),
		endpoint(schemas.APIDLQGet, schemas.APIDLQRef, schemas.APIDeadLetter, b.handleDLQGet),
		endpoint(schemas.APIDLQReplay, schemas.APIDLQReplayRequest, schemas.APIDLQReplayResponse, b.handleDLQReplay),
		endpoint(schemas.APIDLQPurge, schemas.APIDLQPurgeRequest, schemas.APIDLQPurgeResponse, b.handleDLQPurge),
		endpoint(schemas.APIPluginsReplay, schemas.APIPluginReplayRequest, schemas.APIReplayStatus, b.handlePluginReplay),
		endpoint(schemas.APIPluginsReplayStatus, schemas.APIPluginGetRequest, schemas.APIReplayStatus, b.handlePluginReplayStatus),
		endpoint(schemas.APIPluginsReplayCancel, schemas.APIPluginGetRequest, schemas.APIReplayStatus, b.handlePluginReplayCancel),
		endpoint(schemas.APIActionsGet, schemas.APIActionRef, schemas.APIActionRecord, b.handleActionGet),
		endpoint(schemas.APIActionsList, schemas.APIActionListRequest, schemas.APIActionListResponse, b.handleActionList),
		endpoint(schemas.APIActionsCancel, schemas.APIActionCancelRequest, schemas.APIActionCancelResponse, b.handleActionCancel),
		endpoint(schemas.APIActionsProgress, schemas.APIActionProgressRequest, schemas.APIActionReportResponse, b.handleActionProgress),
		endpoint(schemas.APIActionsComplete, schemas.APIActionCompleteRequest, schemas.APIActionReportResponse, b.handleActionComplete),
	}
}

// startAPI starts the broker's service with one endpoint per API call.
// Every broker replica serves the same subjects in one queue group, so
// each request is handled once.
func (b *Broker) startAPI() (*wire.Service, error) {
	svc, err := wire.NewService(b.nc, wire.Config{
		Name:        wire.BrokerService,
		Version:     Version,
		Description: "plugbus broker API",
		Metadata:    map[string]string{wire.MetadataPrefix: b.cfg.Prefix},
	})
	if err != nil {
		return nil, fmt.Errorf("start broker API service: %w", err)
	}
	if b.journal != nil {
		// The operations this broker journals name it by its instance.
		b.journal.owner = svc.ID()
	}
	for _, ep := range b.endpoints() {
		ep := ep
		subject := wire.APISubject(b.cfg.Prefix, ep.name)
		if schemas.IsScoped(ep.name) {
			// The caller's name is the last token (callerName).
			subject += ".*"
		}
		we := wire.Endpoint{
			Name:        endpointName(ep.name),
			Subject:     subject,
			Concurrency: b.cfg.MaxConcurrency,
			Handler:     func(ctx context.Context, req *wire.Request) { b.handle(ctx, ep, req) },
		}
		if ep.object != nil {
			// The place in the object's queue is taken on the receiving
			// goroutine, so operations on one object keep arrival order.
			we.OnReceive = func(req *wire.Request) {
				if data := req.Data(); len(data) <= b.cfg.MaxRequestBytes {
					if obj := ep.object(data); obj != "" {
						req.Local = b.seq.enqueue(obj)
					}
				}
			}
		}
		if err := svc.AddEndpoint(we); err != nil {
			_ = svc.Stop(context.Background())
			return nil, fmt.Errorf("add API endpoint %s: %w", we.Subject, err)
		}
	}
	return svc, nil
}

// endpointName turns "machines.set-param" into a service endpoint name.
func endpointName(api string) string {
	out := []byte(api)
	for i, c := range out {
		if c == '.' {
			out[i] = '_'
		}
	}
	return string(out)
}

// handle serves one request (on its own goroutine, bounded per endpoint by
// MaxConcurrency, so slow calls never hold up other endpoints) and answers
// it.
func (b *Broker) handle(ctx context.Context, ep apiEndpoint, req *wire.Request) {
	start := time.Now()
	// The span of the call: a child of the caller's, when it sent one
	// (wire.Service hands it over), and the parent of the hook chains it
	// runs and of the events it publishes.
	ctx, span := b.tracer.Start(ctx, trace.SpanKindServer, "api", ep.name)
	if span.IsRecording() {
		span.SetAttributes(wire.AttrMessagingSystem.String("nats"), wire.AttrMessagingDestination.String(req.Subject()),
			wire.AttrEndpoint.String(ep.name))
	}
	if _, ok := ctx.Deadline(); !ok {
		// A caller that sent no deadline gets the broker's.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, b.cfg.RequestTimeout)
		defer cancel()
	}
	var resp any
	var err error
	tn, _ := req.Local.(*turn)
	var ol *objectLock
	if tn != nil {
		err = tn.wait(ctx)
		if err != nil {
			e := schemas.Errorf(schemas.CodeTimeout, "", "gave up waiting for an earlier operation on %s: %v (nothing was done; retry with more time)", tn.object, err)
			e.Details = map[string]any{schemas.DetailObject: tn.object, schemas.DetailCommitted: false}
			err = e
		} else {
			// This broker's turn; now the bus's (buslock.go): brokers
			// serialise operations on one object through its lock.
			ctx, ol, err = b.locks.lock(ctx, tn.object)
		}
	}
	// The lock goes after the reply (the next operation on the object
	// waits for it either way), then the broker's own turn.
	defer func() {
		ol.release()
		if tn != nil {
			tn.done()
		}
	}()
	var rk string
	var run *opRun
	madeKey := false
	if err == nil && schemas.Idempotent(ep.name) {
		var key string
		key, err = idempotencyKey(req.Headers())
		if err == nil && key == "" && b.journal != nil {
			// A key of the broker's own, so that the operation can be
			// resumed under it if its broker dies mid-chain (resume.go).
			key, madeKey = brokerKeyPrefix+nuid.Next(), true
		}
		if key != "" {
			rk = requestKey(ep.name, req.Subject(), key)
			op := base62(sha256.Sum256([]byte(rk)))
			ctx = withOp(ctx, op)
			deadline, _ := ctx.Deadline()
			run = b.journal.newOpRun(op, ep.name, req.Subject(), key, req.Data(), req.ReplySubject(), deadline)
			ctx = withOpRun(ctx, run)
		}
		if key != "" && !madeKey {
			if msg, ok := b.lookupReply(ctx, rk); ok {
				// A repeat: the first reply, nothing done again.
				b.metrics.apiRequests.WithLabelValues(ep.name, "replayed").Inc()
				if rerr := req.Respond(msg); rerr != nil {
					b.log.Warn().Err(rerr).Str(logging.FieldEndpoint, ep.name).Msg("reply failed")
				}
				if span.IsRecording() {
					span.SetAttributes(wire.AttrReplayed.Bool(true))
				}
				span.End()
				return
			}
		}
	}
	if err == nil {
		if schemas.IsScoped(ep.name) {
			subj := req.Subject()
			ctx = context.WithValue(ctx, callerKey{}, subj[strings.LastIndexByte(subj, '.')+1:])
		}
		resp, err = b.serve(ctx, ep, req.Data())
		if err != nil && ol != nil && ol.epoch.Err() != nil {
			// The lock was lost under the operation: say so, unless it
			// had committed (its answer then says that).
			if e := schemas.AsError(err); e.Details[schemas.DetailCommitted] != true {
				err = lockLostError(ol.object)
			}
		}
	}
	msg := wire.ReplyMsg(req.ReplySubject(), resp, err)
	if rk != "" && (!madeKey || run.journalled()) {
		b.keepReply(ctx, rk, msg)
	}
	// After the reply is kept (a journal that says "done" always has it).
	// An answer that says to retry is recorded before the reply, so that
	// a retry starts a new attempt; any other answer after the reply, so
	// its record can wait until the caller has it. Both are recorded
	// before the object's turn passes on (the deferred release above).
	later := !transientCode(msg.Header.Get(schemas.HeaderErrorCode))
	if !later {
		run.finish(ctx, msg)
	}
	code := "ok"
	if err != nil {
		e := schemas.AsError(err)
		code = e.Code
		if isBadInput(code) {
			b.metrics.badInput.WithLabelValues(code).Inc()
		}
		lvl := b.log.Debug()
		if code == schemas.CodeInternal {
			lvl = b.log.Error()
		}
		lvl.Str(logging.FieldEndpoint, ep.name).Str(logging.FieldCode, code).Msg(e.Message)
	}
	b.metrics.apiRequests.WithLabelValues(ep.name, metricCode(code)).Inc()
	b.metrics.apiDuration.WithLabelValues(ep.name).Observe(time.Since(start).Seconds())
	if rerr := req.Respond(msg); rerr != nil {
		b.log.Warn().Err(rerr).Str(logging.FieldEndpoint, ep.name).Msg("reply failed")
	}
	if later {
		run.answerWaiting(msg, req.ReplySubject())
		run.finish(ctx, msg)
	}
	wire.EndSpan(span, err)
}

// isBadInput reports whether an error code means the caller sent bad input.
func isBadInput(code string) bool {
	switch code {
	case schemas.CodeBadRequest, schemas.CodeInvalidField, schemas.CodeMissingParam,
		schemas.CodeUnknownAction, schemas.CodeTooLarge:
		return true
	}
	return false
}

// serve checks the size, validates the request against its schema, decodes
// it, calls the handler and validates the reply.
func (b *Broker) serve(ctx context.Context, ep apiEndpoint, data []byte) (any, error) {
	if len(data) > b.cfg.MaxRequestBytes {
		return nil, schemas.Errorf(schemas.CodeTooLarge, "",
			"request to %s is %d bytes, above the limit of %d: send less data (the limit is the broker's max request size setting)",
			ep.name, len(data), b.cfg.MaxRequestBytes)
	}
	if len(data) == 0 {
		data = []byte("{}")
	}
	req := ep.newReq()
	if err := schemas.Decode(ep.schema, data, req); err != nil {
		return nil, err
	}
	pctx, pend := withPending(ctx)
	resp, err := ep.handler(pctx, req)
	resp, err = awaitPending(ctx, pend, resp, err)
	if err != nil {
		return nil, err
	}
	// Replies are checked against their schema too: a failure here is a
	// broker bug, reported as internal rather than sent malformed.
	if !b.cfg.SelfCheck {
		return resp, nil
	}
	if verr := schemas.ValidateValue(ep.respSchema, resp); verr != nil {
		return nil, &schemas.Error{Code: schemas.CodeInternal, Message: fmt.Sprintf("reply of %s fails its schema: %v", ep.name, verr)}
	}
	return resp, nil
}
