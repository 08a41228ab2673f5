package broker

import (
	"net/http"
	"net/http/pprof"
)

// servePprof adds Go's runtime profiles (heap, goroutine, CPU, …) under
// /debug/pprof/, for `go tool pprof http://HOST:PORT/debug/pprof/heap`.
func servePprof(mux *http.ServeMux) {
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
}
