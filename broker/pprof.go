package broker

import (
	"encoding/json"
	"net/http"
	"net/http/pprof"
	"runtime"
	"runtime/debug"
)

// servePprof adds Go's runtime profiles (heap, goroutine, CPU, …) under
// /debug/pprof/, for `go tool pprof http://HOST:PORT/debug/pprof/heap`,
// and POST /debug/free-os-memory.
func servePprof(mux *http.ServeMux) {
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("POST /debug/free-os-memory", freeOSMemory)
}

// memoryAfterFree is what POST /debug/free-os-memory answers: the Go
// heap right after a collection that returned every free page to the OS.
type memoryAfterFree struct {
	HeapInuseBytes    uint64 `json:"heap_inuse_bytes"`
	HeapIdleBytes     uint64 `json:"heap_idle_bytes"`
	HeapReleasedBytes uint64 `json:"heap_released_bytes"`
	StackInuseBytes   uint64 `json:"stack_inuse_bytes"`
	SysBytes          uint64 `json:"sys_bytes"`
}

// freeOSMemory runs a collection and returns the memory it freed to the
// OS at once (debug.FreeOSMemory), instead of as the runtime's scavenger
// would, over minutes: what the process's RSS shows after it is the
// memory the broker holds, not pages the runtime has yet to give back.
func freeOSMemory(w http.ResponseWriter, _ *http.Request) {
	debug.FreeOSMemory()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(memoryAfterFree{HeapInuseBytes: m.HeapInuse, HeapIdleBytes: m.HeapIdle,
		HeapReleasedBytes: m.HeapReleased, StackInuseBytes: m.StackInuse, SysBytes: m.Sys})
}
