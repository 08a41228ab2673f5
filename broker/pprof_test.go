package broker

import (
	"encoding/json"
	"net/http"
	"testing"
)

// --pprof serves the runtime profiles and POST /debug/free-os-memory,
// which answers the heap's figures after returning free pages to the OS;
// without it neither is served.
func TestPprofEndpoints(t *testing.T) {
	on := startBroker(t, Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Pprof: true})
	base := "http://" + on.b.HTTPAddr()
	resp, err := http.Post(base+"/debug/free-os-memory", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var m memoryAfterFree
	err = json.NewDecoder(resp.Body).Decode(&m)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || m.HeapInuseBytes == 0 || m.SysBytes < m.HeapInuseBytes || m.HeapReleasedBytes > m.HeapIdleBytes {
		t.Fatalf("free-os-memory: %s %+v %v", resp.Status, m, err)
	}
	if resp, err := http.Get(base + "/debug/pprof/"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("pprof index: %v %v", resp, err)
	}

	off := startBroker(t, Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"})
	for _, path := range []string{"/debug/free-os-memory", "/debug/pprof/"} {
		method := http.MethodGet
		if path == "/debug/free-os-memory" {
			method = http.MethodPost
		}
		req, _ := http.NewRequest(method, "http://"+off.b.HTTPAddr()+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s %s without --pprof: %s, want 404", method, path, resp.Status)
		}
	}
}
