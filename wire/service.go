package wire

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/nats-io/nuid"

	"github.com/plugbus/plugbus/schemas"
)

// This file is a NATS micro service whose handlers may run concurrently.
//
// nats.go's micro package calls an endpoint's handler on the subscription's
// goroutine and counts a request, its processing time and its error when
// the handler returns. A handler that hands the request to a goroutine (the
// broker must, or one hung plugin would hold up every request behind it)
// therefore shows up in `nats micro stats` with no errors and the dispatch
// time only. Service speaks the same micro protocol (PING, INFO and STATS on
// $SRV, answered with micro's own types, so `nats micro ls|info|stats` work
// as with any micro service) but counts a request when its reply is sent:
// processing time from receipt to reply, an error for every error reply.

// Config describes a Service.
type Config struct {
	// Name is the service name ("plugbus-broker"); letters, digits, '-'
	// and '_'.
	Name string
	// Version is a semantic version.
	Version string
	// Description is shown by `nats micro info`.
	Description string
	// Metadata annotates the service.
	Metadata map[string]string
	// QueueGroup is the queue group of every endpoint (default micro's "q"),
	// so the instances of a service share requests.
	QueueGroup string
}

// ErrInvalidService is wrapped by NewService and AddEndpoint when the
// configuration is wrong.
var ErrInvalidService = errors.New("invalid service")

var (
	serviceNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	semverRE      = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$`)
)

// HandlerFunc handles one request. ctx ends when the caller stops waiting
// (HeaderTimeout) or when Stop gives up waiting, and carries the caller's
// trace context (HeaderTraceparent) as the remote parent. The handler answers with
// req.Reply (or Respond) before it returns; a request it returns from
// unanswered gets an internal error reply, so no caller waits in vain.
type HandlerFunc func(ctx context.Context, req *Request)

// Endpoint describes one endpoint of a Service.
type Endpoint struct {
	// Name is shown by `nats micro info|stats`.
	Name string
	// Subject the endpoint listens on (wildcards allowed).
	Subject string
	// Metadata annotates the endpoint.
	Metadata map[string]string
	// Concurrency bounds how many of its requests are handled at once.
	// 0 or 1 handles them one at a time, in arrival order, on the
	// subscription's goroutine; above 1 they run on up to Concurrency
	// worker goroutines, and a request that finds every worker busy waits
	// for one (the endpoint stops reading until then).
	Concurrency int
	// OnReceive, when set, runs on the subscription's goroutine, in arrival
	// order, before the request is handed to its handler goroutine: the
	// place to take a turn in a per-object queue.
	OnReceive func(req *Request)
	// Handler handles each request.
	Handler HandlerFunc
}

// Service is a running NATS micro service (see the file comment).
type Service struct {
	nc      *nats.Conn
	cfg     Config
	id      string
	started time.Time
	base    context.Context
	cancel  context.CancelFunc

	mu        sync.Mutex
	endpoints []*endpoint
	verbSubs  []*nats.Subscription
	stopped   bool
	inflight  sync.WaitGroup
}

type endpoint struct {
	cfg Endpoint
	sub *nats.Subscription
	// slots bounds the endpoint's workers (Concurrency); work hands a
	// request to an idle one.
	slots chan struct{}
	work  chan func()

	mu    sync.Mutex
	stats micro.EndpointStats
}

// NewService starts a service on nc: it answers PING, INFO and STATS at
// once and serves the endpoints added with AddEndpoint.
func NewService(nc *nats.Conn, cfg Config) (*Service, error) {
	if nc == nil {
		return nil, fmt.Errorf("%w: nil NATS connection", ErrInvalidService)
	}
	if !serviceNameRE.MatchString(cfg.Name) {
		return nil, fmt.Errorf("%w: name %q: use letters, digits, '-' and '_'", ErrInvalidService, cfg.Name)
	}
	if !semverRE.MatchString(cfg.Version) {
		return nil, fmt.Errorf("%w: version %q is not a semantic version", ErrInvalidService, cfg.Version)
	}
	if cfg.QueueGroup == "" {
		cfg.QueueGroup = micro.DefaultQueueGroup
	}
	cfg.Metadata = maps.Clone(cfg.Metadata)
	if cfg.Metadata == nil {
		cfg.Metadata = map[string]string{}
	}
	s := &Service{nc: nc, cfg: cfg, id: nuid.Next(), started: time.Now().UTC()}
	s.base, s.cancel = context.WithCancel(context.Background())
	verbs := map[micro.Verb]func() any{
		micro.PingVerb:  func() any { return micro.Ping{ServiceIdentity: s.identity(), Type: micro.PingResponseType} },
		micro.InfoVerb:  func() any { return s.Info() },
		micro.StatsVerb: func() any { return s.Stats() },
	}
	for verb, value := range verbs {
		for _, subj := range []string{s.control(verb, "", ""), s.control(verb, cfg.Name, ""), s.control(verb, cfg.Name, s.id)} {
			sub, err := nc.Subscribe(subj, func(m *nats.Msg) {
				body, _ := json.Marshal(value())
				_ = m.Respond(body)
			})
			if err != nil {
				s.unsubscribeAll()
				return nil, fmt.Errorf("subscribe %s: %w", subj, err)
			}
			s.verbSubs = append(s.verbSubs, sub)
		}
	}
	return s, nil
}

func (s *Service) control(verb micro.Verb, name, id string) string {
	subj, _ := micro.ControlSubject(verb, name, id)
	return subj
}

// ID returns the instance id (a NUID, as micro's).
func (s *Service) ID() string { return s.id }

// Name returns the service name.
func (s *Service) Name() string { return s.cfg.Name }

func (s *Service) identity() micro.ServiceIdentity {
	s.mu.Lock()
	md := maps.Clone(s.cfg.Metadata)
	s.mu.Unlock()
	return micro.ServiceIdentity{Name: s.cfg.Name, ID: s.id, Version: s.cfg.Version, Metadata: md}
}

// SetMetadata sets one metadata key; PING, INFO and STATS answer with it
// from then on (the SDK keeps a plugin instance's readiness there).
func (s *Service) SetMetadata(key, value string) {
	s.mu.Lock()
	s.cfg.Metadata[key] = value
	s.mu.Unlock()
}

// AddEndpoint starts serving ep.
func (s *Service) AddEndpoint(ep Endpoint) error {
	if !serviceNameRE.MatchString(ep.Name) {
		return fmt.Errorf("%w: endpoint name %q: use letters, digits, '-' and '_'", ErrInvalidService, ep.Name)
	}
	if ep.Subject == "" {
		return fmt.Errorf("%w: endpoint %s has no subject", ErrInvalidService, ep.Name)
	}
	if ep.Handler == nil {
		return fmt.Errorf("%w: endpoint %s has no handler", ErrInvalidService, ep.Name)
	}
	ep.Metadata = maps.Clone(ep.Metadata)
	e := &endpoint{cfg: ep, stats: micro.EndpointStats{Name: ep.Name, Subject: ep.Subject, QueueGroup: s.cfg.QueueGroup}}
	if ep.Concurrency > 1 {
		e.slots = make(chan struct{}, ep.Concurrency)
		e.work = make(chan func())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return fmt.Errorf("%w: service %s is stopped", ErrInvalidService, s.cfg.Name)
	}
	sub, err := s.nc.QueueSubscribe(ep.Subject, s.cfg.QueueGroup, func(m *nats.Msg) { s.receive(e, m) })
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", ep.Subject, err)
	}
	// Requests wait in the client's buffer while every slot is taken; let
	// that buffer hold a burst rather than drop it as a slow consumer.
	_ = sub.SetPendingLimits(1<<20, 1<<30)
	e.sub = sub
	s.endpoints = append(s.endpoints, e)
	return nil
}

// receive runs on the endpoint's subscription goroutine.
func (s *Service) receive(e *endpoint, m *nats.Msg) {
	s.inflight.Add(1)
	req := &Request{msg: m, ep: e, received: time.Now()}
	// The caller's trace context, when it sent one, is the parent of
	// whatever the handler does.
	ctx := ExtractTrace(s.base, m.Header)
	var cancel context.CancelFunc
	if d, ok := Timeout(m.Header); ok {
		ctx, cancel = context.WithTimeout(ctx, d)
	} else {
		ctx, cancel = context.WithCancel(ctx)
	}
	if e.cfg.OnReceive != nil {
		e.cfg.OnReceive(req)
	}
	run := func() {
		defer s.inflight.Done()
		defer cancel()
		e.cfg.Handler(ctx, req)
		req.finish()
	}
	if e.slots == nil {
		run()
		return
	}
	// An idle worker takes it, or a new one while the endpoint has fewer
	// than Concurrency; else it waits for either.
	select {
	case e.work <- run:
		return
	default:
	}
	select {
	case e.work <- run:
	case e.slots <- struct{}{}:
		go e.worker(s.base, run)
	}
}

// workerIdle is how long a worker of an endpoint waits for a request
// before it ends.
const workerIdle = 10 * time.Second

// worker runs first, then the requests handed to it, until it has been
// idle for workerIdle or the service stops. Workers outlive a request so
// that one does not start a goroutine, and grow its stack again, for each.
func (e *endpoint) worker(base context.Context, first func()) {
	defer func() { <-e.slots }()
	first()
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		select {
		case run := <-e.work:
			run()
			idle.Reset(workerIdle)
		case <-idle.C:
			return
		case <-base.Done():
			return
		}
	}
}

// Info returns what INFO answers.
func (s *Service) Info() micro.Info {
	s.mu.Lock()
	eps := make([]micro.EndpointInfo, 0, len(s.endpoints))
	for _, e := range s.endpoints {
		eps = append(eps, micro.EndpointInfo{Name: e.cfg.Name, Subject: e.cfg.Subject, QueueGroup: s.cfg.QueueGroup, Metadata: maps.Clone(e.cfg.Metadata)})
	}
	s.mu.Unlock()
	return micro.Info{ServiceIdentity: s.identity(), Type: micro.InfoResponseType, Description: s.cfg.Description, Endpoints: eps}
}

// Stats returns what STATS answers: per endpoint, requests, error replies,
// the last error and the time from receipt to reply.
func (s *Service) Stats() micro.Stats {
	s.mu.Lock()
	eps := append([]*endpoint(nil), s.endpoints...)
	s.mu.Unlock()
	out := micro.Stats{ServiceIdentity: s.identity(), Type: micro.StatsResponseType, Started: s.started, Endpoints: make([]*micro.EndpointStats, 0, len(eps))}
	for _, e := range eps {
		e.mu.Lock()
		st := e.stats
		e.mu.Unlock()
		if st.NumRequests > 0 {
			st.AverageProcessingTime = st.ProcessingTime / time.Duration(st.NumRequests)
		}
		out.Endpoints = append(out.Endpoints, &st)
	}
	return out
}

// Stop stops taking requests and waits, until ctx ends, for the requests
// already received to be handled; their replies still go out. When ctx
// ends first the handlers' contexts are cancelled and Stop returns ctx's
// error. The service answers PING, INFO and STATS until Stop returns.
func (s *Service) Stop(ctx context.Context) error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return nil
	}
	s.stopped = true
	eps := append([]*endpoint(nil), s.endpoints...)
	s.mu.Unlock()
	defer s.unsubscribeAll()
	defer s.cancel()
	for _, e := range eps {
		if err := e.sub.Drain(); err != nil {
			_ = e.sub.Unsubscribe()
		}
	}
	// A draining subscription still hands buffered requests to receive;
	// once every one is closed no more can start.
	for _, e := range eps {
		for e.sub.IsValid() {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	done := make(chan struct{})
	go func() { s.inflight.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Service) unsubscribeAll() {
	for _, sub := range s.verbSubs {
		_ = sub.Unsubscribe()
	}
}

// Request is one request to an endpoint.
type Request struct {
	msg      *nats.Msg
	ep       *endpoint
	received time.Time
	replied  atomic.Bool
	// Local carries what OnReceive wants the handler to have (such as a
	// place in a queue).
	Local any
}

// Data returns the request body.
func (r *Request) Data() []byte { return r.msg.Data }

// Headers returns the request headers (nil when there are none).
func (r *Request) Headers() nats.Header { return r.msg.Header }

// Subject returns the subject the request arrived on.
func (r *Request) Subject() string { return r.msg.Subject }

// ReplySubject returns the subject the reply goes to ("" for a publish
// that expects none).
func (r *Request) ReplySubject() string { return r.msg.Reply }

// Received returns when the request arrived.
func (r *Request) Received() time.Time { return r.received }

// Reply answers with resp as JSON, or with err as an error reply (code,
// message and the schemas.Error body; any other error is internal). Only
// the first answer counts. The request is counted in the endpoint's stats
// now: processing time since receipt, and an error when err is not nil.
func (r *Request) Reply(resp any, err error) error {
	if !r.replied.CompareAndSwap(false, true) {
		return errors.New("request already answered")
	}
	msg := ReplyMsg(r.msg.Reply, resp, err)
	r.count(msg)
	if r.msg.Reply == "" {
		return nil
	}
	return r.msg.RespondMsg(msg)
}

// Respond answers with msg as it is (its subject is set to the reply
// subject); an error code header marks it as an error reply.
func (r *Request) Respond(msg *nats.Msg) error {
	if !r.replied.CompareAndSwap(false, true) {
		return errors.New("request already answered")
	}
	r.count(msg)
	if r.msg.Reply == "" {
		return nil
	}
	return r.msg.RespondMsg(msg)
}

func (r *Request) count(msg *nats.Msg) {
	elapsed := time.Since(r.received)
	e := r.ep
	e.mu.Lock()
	e.stats.NumRequests++
	e.stats.ProcessingTime += elapsed
	if code := msg.Header.Get(schemas.HeaderErrorCode); code != "" {
		e.stats.NumErrors++
		e.stats.LastError = code + ": " + msg.Header.Get(schemas.HeaderError)
	}
	e.mu.Unlock()
}

// finish answers a request its handler returned from without answering.
func (r *Request) finish() {
	if r.replied.Load() {
		return
	}
	if r.msg.Reply == "" {
		// A publish expects no answer.
		_ = r.Respond(&nats.Msg{})
		return
	}
	_ = r.Reply(nil, &schemas.Error{Code: schemas.CodeInternal,
		Message: fmt.Sprintf("endpoint %s returned without answering", r.ep.cfg.Name)})
}
